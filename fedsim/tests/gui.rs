//! The portal clicked through in real headless Chromium (Debian `chromium` and `chromium-driver`,
//! which `.ci/run` installs): every account in its own browser with only its own credentials,
//! following `resources/gui/portal.toml`. One GUI run at a time: four browsers on two cores are
//! enough.

mod common;

use std::path::Path;
use std::sync::Mutex;

use common::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const ACCOUNTS: [&str; 4] = ["coordinator", "site-1", "site-2", "site-3"];

fn need_browser() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: install chromium and chromium-driver (.ci/run does)"
        );
    }
}

/// The three-site OLS of these tests (held against the reference), through the GUI; `extra`
/// goes on in its `[gui]` section.
fn gui_ols(name: &str, extra: &str) -> String {
    Ols::on(name, "diabetes.csv", 3)
        .reference()
        .extra("[gui]\nenabled = true\n")
        .extra(extra)
        .toml()
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 5_000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn three_site_ols_through_the_gui_gives_the_api_paths_numbers() {
    need_browser();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = browser_scratch();
    let tmp = tempfile::tempdir().unwrap();

    let api_cfg = Ols::on("portal-api", "diabetes.csv", 3)
        .reference()
        .write(tmp.path(), "api");
    let api_out = tmp.path().join("api");
    let o = run_to(tmp.path(), &api_cfg, &api_out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let gui_cfg = scenario(tmp.path(), "gui", &gui_ols("portal-gui", ""));
    let out = tmp.path().join("gui");
    let o = run_to(tmp.path(), &gui_cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let terminal = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    no_browser_left(&scratch);

    // The same numbers as the API path, and as statsmodels.
    let (gui, api) = (summary(&out), summary(&api_out));
    assert_eq!(gui.status, Status::Succeeded);
    assert!(
        gui.reference
            .as_ref()
            .expect("a reference")
            .comparison
            .passed
    );
    let (g, a) = (
        gui.results.as_ref().expect("GUI results"),
        api.results.as_ref().expect("API results"),
    );
    for (key, g, a) in [
        ("coef", &g.coef, &a.coef),
        ("se", &g.se, &a.se),
        ("t", &g.t, &a.t),
        ("p", &g.p, &a.p),
    ] {
        assert_eq!(g.len(), 11);
        assert!(max_rel(g, a) <= 1e-12, "{key}: gui {g:?} vs api {a:?}");
    }
    let want = reference("diabetes.csv", "ols");
    assert!(max_rel(&g.coef, &floats(&want["coef"])) < 1e-8);
    assert!(max_rel(&g.se, &floats(&want["se"])) < 1e-8);

    // Every account downloaded the results through its page: the coordinator's, byte for byte.
    let first = std::fs::read(out.join("portal/coordinator/results.json")).unwrap();
    let file: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(floats(&file["results"]["coef"]), g.coef);
    for a in ACCOUNTS {
        let got = std::fs::read(out.join("portal").join(a).join("results.json")).unwrap();
        assert_eq!(got, first, "{a}'s download");
        assert!(
            is_png(&out.join("portal").join(a).join("results.png")),
            "{a}"
        );
    }
    assert!(is_png(&out.join("portal/coordinator/project.png")));
    assert!(files(&out.join("portal"))
        .iter()
        .all(|f| !f.to_string_lossy().contains("failure-")));

    // Time per GUI step, for every account and phase, in metrics.json.
    let portal = metrics(&out).portal.expect("the portal's steps");
    assert_eq!(portal.driver, "gui");
    let phases: Vec<&str> = portal.phases.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        phases,
        ["browsers", "login", "create", "join", "start", "finish"]
    );
    let steps = &portal.steps;
    for a in ACCOUNTS {
        for phase in ["login", "finish"] {
            assert!(
                steps
                    .iter()
                    .any(|s| s.account == a && s.phase == phase && s.secs > 0.0),
                "{a} {phase}"
            );
        }
    }
    assert!(steps
        .iter()
        .any(|s| s.account == "site-2" && s.step.contains("fill #token")));
    let api_portal = metrics(&api_out).portal.expect("the API's steps");
    assert_eq!(api_portal.driver, "api");

    // Typed passwords reach neither chromedriver's log nor anything else.
    assert!(out.join("logs/chromedriver.log").exists());
    let secrets = run_secrets(&out, &["site-1", "site-2", "site-3"]);
    assert_secrets_stay_home(
        &out,
        &secrets,
        vec![("terminal".into(), terminal.into_bytes())],
    );
}

/// Runs a GUI scenario with one fault and checks it failed at `site`'s `phase`, with a screenshot.
fn fails_at(fault: &str, site: &str, phase: &str, says: &str) {
    need_browser();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = browser_scratch();
    let tmp = tempfile::tempdir().unwrap();
    let extra = format!("[[faults]]\nsite = \"{site}\"\nkind = \"{fault}\"\n");
    let cfg = scenario(tmp.path(), fault, &gui_ols(fault, &extra));
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    no_browser_left(&scratch);
    let s = expect_status(&o, &out, Status::Failed);
    let error = s.error.as_ref().expect("an error");
    assert_eq!(error.site.as_deref(), Some(site));
    let message = &error.message;
    assert!(
        message.starts_with(&format!(
            "site {site} could not take part through the portal: {phase} step"
        )),
        "{message}"
    );
    assert!(message.contains(says), "{message}");
    assert!(stderr(&o).contains(message.as_str()), "{}", stderr(&o));
    assert!(s.results.is_none());
    let shots: Vec<_> = files(&out.join("portal"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("failure-"))
        .collect();
    assert_eq!(shots.len(), 1, "{shots:?}");
    assert!(shots[0].starts_with(out.join("portal").join(site)));
    assert!(is_png(&shots[0]));
    assert!(message.contains(&shots[0].display().to_string()));
    let secrets = run_secrets(&out, &["site-1", "site-2", "site-3"]);
    assert_secrets_stay_home(&out, &secrets, vec![("stderr".into(), o.stderr.clone())]);
}

#[test]
fn a_wrong_password_fails_that_sites_login_and_names_it() {
    fails_at(
        "wrong_password",
        "site-2",
        "login",
        "the page says: wrong user name or password",
    );
}

#[test]
fn a_wrong_join_token_fails_that_sites_join_and_names_it() {
    fails_at(
        "wrong_token",
        "site-3",
        "join",
        "the page says: this join token is not valid for this site",
    );
}

/// `[gui] script` takes another step script: here the portal's own, but handing out the tokens in
/// site order (as for a platform whose tokens are not tied to a site) and with its own phase names.
#[test]
fn another_step_script_drives_the_same_portal() {
    need_browser();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = browser_scratch();
    let tmp = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(root().join("resources/gui/portal.toml")).unwrap();
    let script = shipped
        .replace("key_attribute = \"data-token-for\"", "in_order = true")
        .replace("\"finish\"", "\"results\"");
    assert_ne!(script, shipped);
    let path = tmp.path().join("in_order.toml");
    std::fs::write(&path, script).unwrap();
    let extra = format!("script = \"{}\"\n", path.display());
    let cfg = scenario(tmp.path(), "custom", &gui_ols("custom-script", &extra));
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    no_browser_left(&scratch);
    let portal = metrics(&out).portal.expect("the portal's steps");
    assert_eq!(portal.script, Some(path.display().to_string()));
    assert_eq!(portal.phases[5].0, "results");
    for a in ACCOUNTS {
        assert!(
            out.join("portal").join(a).join("results.json").exists(),
            "{a}"
        );
    }
}

/// With on_dropout = "continue", the browsers go on without a site whose login failed.
#[test]
fn with_continue_the_browsers_go_on_without_a_site_that_cannot_log_in() {
    need_browser();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = browser_scratch();
    let tmp = tempfile::tempdir().unwrap();
    let body = gui_ols(
        "gui-leave",
        "[federation]\non_dropout = \"continue\"\nmin_sites = 2\n[[faults]]\nsite = \"site-2\"\nkind = \"wrong_password\"\n",
    );
    let cfg = scenario(tmp.path(), "leave", &body);
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    no_browser_left(&scratch);
    let s = expect_status(&o, &out, Status::Degraded);
    assert_eq!(s.lost_sites[0].site, "site-2");
    assert!(s.comparison.as_ref().expect("a comparison").passed);
    assert!(is_png(&out.join("portal/site-2/failure-login-step5.png")));
    for a in ["coordinator", "site-1", "site-3"] {
        assert!(
            out.join("portal").join(a).join("results.json").exists(),
            "{a}"
        );
    }
}
