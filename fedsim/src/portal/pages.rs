//! The portal's HTML: server-rendered, self-contained (inline style and script, no external assets),
//! with stable ids so that step scripts can name what they click.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{ProjectView, Role, RunState, Status, Viewer};

const STYLE: &str = r#"
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1f3a5f;color:#fff;padding:.7em 1.5em;display:flex;align-items:center;gap:1em}
header h1{font-size:1.2em;margin:0;flex:1}
header form{margin:0}
main{max-width:60em;margin:1.5em auto;padding:0 1.5em}
section{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:1em 1.4em;margin-bottom:1.2em}
h2{font-size:1.1em;margin:.2em 0 .8em}
label{display:block;margin:.5em 0}
input{font:inherit;padding:.35em .5em;border:1px solid #b8bfcc;border-radius:4px;width:22em}
button{font:inherit;padding:.4em 1.1em;border:0;border-radius:4px;background:#2a6fdb;color:#fff;cursor:pointer}
button:disabled{background:#a9b3c4;cursor:default}
header button{background:#35567f}
table{border-collapse:collapse;margin:.4em 0}
td,th{padding:.25em .9em .25em 0;text-align:left}
th{font-weight:600;color:#4a5365}
code{background:#eef1f6;padding:.1em .35em;border-radius:3px}
dl{display:grid;grid-template-columns:9em auto;margin:0}
dt{color:#4a5365}
dd{margin:0 0 .3em}
.error{background:#fde8e8;border:1px solid #e8a0a0;color:#8a1c1c;padding:.6em 1em;border-radius:4px}
.ok{color:#1f7a3a;font-weight:600}
.wait{color:#9a6b00}
.gone{color:#8a1c1c;font-weight:600}
ol#events{font:13px/1.4 ui-monospace,monospace;max-height:22em;overflow:auto;padding-left:2.5em}
.num{text-align:right;font-variant-numeric:tabular-nums}
"#;

fn page(title: &str, who: Option<&Viewer>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "fedsim portal · " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "fedsim portal" }
                    @if let Some(w) = who {
                        span { "Logged in as " strong #whoami { (w.user) } " (" (role_name(w.role)) ")" }
                        form method="post" action="/logout" { button #logout type="submit" { "Log out" } }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Coordinator => "coordinator",
        Role::Participant => "site",
    }
}

fn error_box(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p #error .error role="alert" { (e) } }
    }
}

pub fn login(error: Option<&str>) -> String {
    page(
        "log in",
        None,
        html! {
            section {
                h2 { "Log in" }
                (error_box(error))
                form #login-form method="post" action="/login" {
                    label { "User " input #user name="user" autocomplete="username" required; }
                    label { "Password " input #password name="password" type="password" autocomplete="current-password" required; }
                    button #login type="submit" { "Log in" }
                }
            }
        },
    )
}

pub fn project(
    who: &Viewer,
    project: Option<&ProjectView>,
    status: &Status,
    error: Option<&str>,
    results: Option<&serde_json::Value>,
) -> String {
    let coordinator = who.role == Role::Coordinator;
    let body = html! {
        (error_box(error))
        @match project {
            None if coordinator => section #new-project {
                h2 { "New project" }
                form #create-form method="post" action="/project/create" {
                    label { "Project name " input #project-name name="name" required; }
                    button #create type="submit" { "Create project" }
                }
            },
            None => section #join-project {
                h2 { "Join a project" }
                p { "Enter the join token the coordinator sent to your site." }
                form #join-form method="post" action="/project/join" {
                    label { "Join token " input #token name="token" autocomplete="off" required; }
                    button #join type="submit" { "Join project" }
                }
            },
            Some(p) => (project_section(p, coordinator)),
        }
        @if let Some(r) = results { (results_section(r)) }
        (log_section(status, coordinator))
        script { (PreEscaped(poll_script(status))) }
    };
    page(
        project.map_or("project", |p| p.name.as_str()),
        Some(who),
        body,
    )
}

fn project_section(p: &ProjectView, coordinator: bool) -> Markup {
    let all_joined = p.sites.iter().all(|s| s.joined || s.left);
    html! {
        section #project {
            h2 { "Project " span #project-title { (p.name) } }
            dl {
                dt { "Algorithm" } dd #algorithm { (p.algorithm) }
                dt { "State" } dd #state { (p.state.as_str()) }
                dt { "Round" } dd #round { (p.round) }
                @if let Some(f) = &p.failure { dt { "Failure" } dd #failure .error { (f) } }
            }
            h2 { "Sites" }
            table #sites {
                tr { th { "Site" } th { "Status" } @if coordinator { th { "Join token" } } }
                @for s in &p.sites {
                    tr data-site=(s.name) {
                        td { (s.name) }
                        td .joined .ok[s.joined] .wait[!s.joined && !s.left] .gone[s.left] {
                            @if s.joined { "joined" } @else if s.left { "left" } @else { "waiting" }
                        }
                        @if coordinator {
                            td .token {
                                @if let Some(t) = p.tokens.get(&s.name) { code data-token-for=(s.name) { (t) } }
                                @else if s.joined { "used" }
                                @else { "—" }
                            }
                        }
                    }
                }
            }
            @if coordinator && p.state == RunState::Open {
                div {
                    @if !p.tokens_made {
                        form method="post" action="/project/tokens" style="display:inline" {
                            button #make-tokens type="submit" { "Create join tokens" }
                        }
                    }
                    " "
                    form method="post" action="/project/start" style="display:inline" {
                        button #start type="submit" disabled[!all_joined] { "Start run" }
                    }
                }
            }
        }
    }
}

/// Six significant digits, in plain notation where that stays short.
fn fmt(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(x) if x == 0.0 || (1e-3..1e6).contains(&x.abs()) => {
            let decimals = (5 - x.abs().log10().floor() as i32).clamp(0, 8) as usize;
            format!("{x:.decimals$}")
        }
        Some(x) => format!("{x:.5e}"),
        None => v.to_string(),
    }
}

fn results_section(r: &serde_json::Value) -> Markup {
    let est = &r["results"];
    let list = |k: &str| est[k].as_array().cloned().unwrap_or_default();
    let (terms, coef, se) = (list("terms"), list("coef"), list("se"));
    let sv = list("singular_values");
    html! {
        section #results {
            h2 { "Results" }
            p { a #download href="/project/results.json" download { "Download results (JSON)" } }
            dl { dt { "Rows" } dd #rows { (est["n"]) } }
            @if !coef.is_empty() {
                table #estimates {
                    tr { th { "Term" } th .num { "Estimate" } th .num { "Std. error" } }
                    @for (i, c) in coef.iter().enumerate() {
                        tr {
                            td { (terms.get(i).and_then(|t| t.as_str()).unwrap_or("")) }
                            td .num { (fmt(c)) }
                            td .num { (se.get(i).map(fmt).unwrap_or_default()) }
                        }
                    }
                }
            }
            @if !sv.is_empty() {
                table #estimates {
                    tr { th { "Component" } th .num { "Singular value" } }
                    @for (i, s) in sv.iter().enumerate() { tr { td { (i + 1) } td .num { (fmt(s)) } } }
                }
            }
        }
    }
}

fn log_section(status: &Status, coordinator: bool) -> Markup {
    html! {
        section #log {
            h2 { @if coordinator { "Log (all sites)" } @else { "Log (your site)" } }
            ol #events {
                @for e in &status.events {
                    li data-seq=(e.seq) {
                        (format!("{:8.3} s ", e.secs))
                        @if let Some(s) = &e.site { "[" (s) "] " }
                        (e.text)
                    }
                }
            }
        }
    }
}

/// Keep state, round, joined sites and the log current without reloading (a reload would pull
/// elements from under someone's click); reload once when the run ends, to show the results.
fn poll_script(status: &Status) -> String {
    let since = status.events.last().map_or(0, |e| e.seq + 1);
    let state = serde_json::to_string(&status.state).unwrap_or_default();
    format!(
        r#"(function(){{
const rendered={state};let since={since};
function set(id,v){{const e=document.getElementById(id);if(e&&e.textContent!==String(v))e.textContent=v;}}
async function poll(){{
 try{{
  const r=await fetch('/api/project/status?since='+since,{{credentials:'same-origin'}});
  if(r.ok){{
   const s=await r.json();
   if(s.state!==rendered&&(s.state==='finished'||s.state==='failed')){{location.reload();return;}}
   set('state',s.state.replace('_',' '));set('round',s.round);
   for(const site of s.joined){{
    const row=document.querySelector('tr[data-site="'+CSS.escape(site)+'"]');
    if(!row)continue;
    const c=row.querySelector('.joined');if(c&&c.textContent!=='joined'){{c.textContent='joined';c.className='joined ok';}}
    const t=row.querySelector('[data-token-for]');if(t)t.replaceWith(document.createTextNode('used'));
   }}
   const b=document.getElementById('start');if(b)b.disabled=!(s.state==='open'&&s.joined.length===s.sites);
   const ol=document.getElementById('events');
   for(const e of s.events){{
    since=e.seq+1;
    const li=document.createElement('li');li.dataset.seq=e.seq;
    li.textContent=e.secs.toFixed(3).padStart(8)+' s '+(e.site?'['+e.site+'] ':'')+e.text;
    ol.appendChild(li);
   }}
  }}
 }}catch(e){{}}
 setTimeout(poll,400);
}}
setTimeout(poll,400);
}})();"#
    )
}
