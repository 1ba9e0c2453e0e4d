//! The portal over real HTTP on loopback: who may do what through the JSON API and the pages, that
//! a site sees only its own log lines, that pages load nothing from elsewhere; and the non-GUI
//! path failing, named, when one site's credentials are wrong.

mod common;

use std::sync::Arc;

use common::*;
use fedsim::portal::{serve, Account, Board, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A client of a portal's JSON API.
struct Api {
    url: String,
    http: reqwest::Client,
}

/// A portal served in this process, and a client of it.
struct Portal {
    api: Api,
    board: Arc<Board>,
    _server: fedsim::portal::Server,
}

impl std::ops::Deref for Portal {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

async fn portal() -> Portal {
    let board = Board::new(
        "linear_regression of y on 3 features",
        vec!["north".into(), "south".into()],
        vec![
            Account::new("coordinator", Role::Coordinator, "coordinator-pass-1"),
            Account::new("north", Role::Participant, "north-pass-123"),
            Account::new("south", Role::Participant, "south-pass-456"),
        ],
    );
    let server = serve(board.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Portal {
        api: Api::new(&server.url()),
        board,
        _server: server,
    }
}

impl Api {
    /// Redirects are not followed, so that tests see them.
    fn new(url: &str) -> Api {
        Api {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(s) = session {
            r = r.bearer_auth(s);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn join(&self, session: &str, token: &str) -> (StatusCode, Value) {
        let body = json!({ "token": token });
        self.call("POST", "/api/project/join", Some(session), Some(body))
            .await
    }

    /// A call that must succeed; its JSON answer.
    async fn ok(
        &self,
        method: &str,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, v) = self.call(method, path, session, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    async fn login(&self, user: &str, password: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/api/login",
                None,
                Some(json!({"user": user, "password": password})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["session"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lets_each_account_do_only_its_part() {
    let p = portal().await;
    let (s, v) = p
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"user": "north", "password": "south-pass-456"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"], "wrong user name or password");
    let (s, _) = p.call("GET", "/api/project/status", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = p
        .call("GET", "/api/project/status", Some("forged"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let c = p.login("coordinator", "coordinator-pass-1").await;
    let n = p.login("north", "north-pass-123").await;
    let so = p.login("south", "south-pass-456").await;

    let (s, v) = p
        .call("POST", "/api/project", Some(&n), Some(json!({"name": "x"})))
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("only the coordinator can create a project")
        )
    );
    let (s, _) = p
        .call(
            "POST",
            "/api/project",
            Some(&c),
            Some(json!({"name": "study"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = p.call("POST", "/api/project/tokens", Some(&n), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, tokens) = p.call("POST", "/api/project/tokens", Some(&c), None).await;
    assert_eq!(s, StatusCode::OK);
    let (tn, ts) = (
        tokens["north"].as_str().unwrap(),
        tokens["south"].as_str().unwrap(),
    );
    assert_ne!(tn, ts);

    // A site cannot see the project before joining, nor join with another site's token.
    let (s, _) = p.call("GET", "/api/project", Some(&n), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = p.join(&n, ts).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("this join token is not valid for this site")
        )
    );
    let (s, _) = p.join(&c, tn).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = p.join(&n, tn).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = p.join(&n, tn).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Only the coordinator starts, and only once everyone has joined.
    let (s, v) = p.call("POST", "/api/project/start", Some(&c), None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("cannot start yet: waiting for south to join")
        )
    );
    let (s, _) = p.join(&so, ts).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = p.call("POST", "/api/project/start", Some(&n), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = p.call("GET", "/api/project", Some(&c), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v.get("tokens").is_none(),
        "used tokens are no longer shown: {v}"
    );
    let (s, _) = p.call("POST", "/api/project/start", Some(&c), None).await;
    assert_eq!(s, StatusCode::OK);

    // The coordinator's side reports per site; each site sees only its own lines.
    p.board.set_round(1);
    p.board.event(Some("north"), "round 1: sent 800 B");
    p.board.event(Some("south"), "round 1: sent 960 B");
    let (_, north) = p.call("GET", "/api/project/status", Some(&n), None).await;
    let (_, all) = p.call("GET", "/api/project/status", Some(&c), None).await;
    assert_eq!(north["round"], 1);
    let lines = |v: &Value| -> Vec<(Option<String>, String)> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["site"].as_str().map(str::to_string),
                    e["text"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (north, all) = (lines(&north), lines(&all));
    assert!(
        north.iter().all(|(s, _)| s.as_deref() == Some("north")),
        "{north:?}"
    );
    assert!(north.iter().any(|(_, t)| t == "round 1: sent 800 B"));
    assert!(north.iter().all(|(_, t)| !t.contains("south")), "{north:?}");
    assert!(all.iter().any(|(_, t)| t == "round 1: sent 960 B"));
    assert!(all.iter().any(|(s, _)| s.is_none()));

    // Results only once the run is over, for those who took part.
    let (s, v) = p.call("GET", "/api/project/results", Some(&so), None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("no results: the run is running"))
    );
    p.board.finish(br#"{"results":{"n":3}}"#.to_vec());
    let resp = p
        .http
        .get(format!("{}/api/project/results", p.url))
        .bearer_auth(&so)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment; filename=\"results-study.json\""));
    assert_eq!(resp.text().await.unwrap(), r#"{"results":{"n":3}}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_use_a_session_cookie_and_load_nothing_from_elsewhere() {
    let p = portal().await;
    let (s, _) = p.call("GET", "/project", None, None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let login = p
        .http
        .get(format!("{}/login", p.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("id=\"password\"") && login.contains("type=\"password\""));
    let resp = p
        .http
        .post(format!("{}/login", p.url))
        .form(&[("user", "south"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("id=\"error\""));
    let resp = p
        .http
        .post(format!("{}/login", p.url))
        .form(&[("user", "coordinator"), ("password", "coordinator-pass-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = p
        .http
        .get(format!("{}/project", p.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"create\""),
        "the coordinator may create a project"
    );
    for page in [&login, &page] {
        for outside in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
            assert!(!page.contains(outside), "{outside} in a page");
        }
    }
    // A site's page has no create form and no start button.
    let n = p.login("north", "north-pass-123").await;
    let page = p
        .http
        .get(format!("{}/project", p.url))
        .header("cookie", format!("fedsim_session={n}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"join\"")
            && !page.contains("id=\"create\"")
            && !page.contains("id=\"start\"")
    );
}

#[test]
fn the_api_path_names_the_site_whose_password_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(
        tmp.path(),
        "pw",
        &ols_toml(
            "api-wrong-password",
            "diabetes.csv",
            3,
            "[[faults]]\nsite = \"site-1\"\nkind = \"wrong_password\"\n",
        ),
    );
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Failed);
    let error = s.error.expect("an error");
    assert_eq!(error.site.as_deref(), Some("site-1"));
    assert_eq!(
        error.message,
        "site site-1 could not take part through the portal: login step POST /api/login: the portal answered 401 Unauthorized: wrong user name or password"
    );
}

/// A bad step script is bad input: `fedsim validate` names the script's file, line and key.
#[test]
fn a_bad_step_script_is_located_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    for (script, line, says) in [
        (
            "unknown_action.toml",
            12,
            "step[1].do: unknown variant `clik`",
        ),
        ("unclosed_variable.toml", 9, "step.0.value: unclosed ${"),
    ] {
        let path = test_data("bad/gui").join(script);
        let extra = format!("[gui]\nenabled = true\nscript = \"{}\"\n", path.display());
        let cfg = scenario(
            tmp.path(),
            script,
            &ols_toml("bad-script", "diabetes.csv", 3, &extra),
        );
        let o = fedsim(tmp.path(), &["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{}:{line}:", path.display())),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
    }
}

/// With on_dropout = "continue", a site that cannot log in is let go before the first round: the
/// run ends "degraded" (exit 3), names it, and matches the pooled answer of the others.
#[test]
fn with_continue_a_site_that_cannot_log_in_is_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(
        tmp.path(),
        "leave",
        &ols_toml(
            "api-leave",
            "diabetes.csv",
            3,
            "[federation]\non_dropout = \"continue\"\nmin_sites = 2\n[[faults]]\nsite = \"site-3\"\nkind = \"wrong_password\"\n",
        ),
    );
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Degraded);
    let lost = &s.lost_sites[0];
    assert_eq!(lost.site, "site-3");
    assert_eq!(lost.round, 0);
    assert!(
        lost.cause.contains("wrong user name or password"),
        "{}",
        lost.cause
    );
    assert!(s.comparison.as_ref().expect("a comparison").passed);
    let rows: usize = ["site-1", "site-2"]
        .iter()
        .map(|n| s.sites.iter().find(|x| x.name == *n).unwrap().rows)
        .sum();
    assert_eq!(s.results.as_ref().expect("results").n, rows);
    assert!(out.join("portal/site-1/results.json").exists());
    assert!(!out.join("portal/site-3/results.json").exists());
}

/// Without "continue", or when too few sites would remain, a site failing at the portal stops
/// the run.
#[test]
fn a_site_may_leave_only_while_enough_remain() {
    let board = Board::new(
        "x",
        vec!["a".into(), "b".into()],
        vec![Account::new("coordinator", Role::Coordinator, "pc")],
    );
    assert!(!board.leave("a", "typo"), "fail is the default policy");
    board.continue_with(Some(1));
    assert!(board.leave("a", "typo"));
    assert!(!board.leave("b", "typo"), "one site must remain");
    assert_eq!(board.left(), [("a".to_string(), "typo".to_string())]);
}

/// `fedsim run --by-hand`: fedsim only serves the portal. People (here, plain HTTP calls, each
/// with its own account's `.env`) log in, create the project, join, start and download; the run
/// waits for them and ends when everyone has the results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_hand_the_run_waits_for_people_to_click() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(
        tmp.path(),
        "hand",
        &ols_toml("by-hand", "diabetes.csv", 2, ""),
    );
    let out = tmp.path().join("run");
    let mut child = run_command(tmp.path(), &cfg, &out)
        .arg("--by-hand")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The portal's address, from the controller's log.
    let mut url = None;
    for _ in 0..300 {
        let log = std::fs::read_to_string(out.join("logs/controller.jsonl")).unwrap_or_default();
        url = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v["url"].as_str().map(str::to_string));
        if url.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let url = url.expect("the portal's address in the controller's log");
    let api = Api::new(&url);
    let creds = |env: std::path::PathBuf| -> (String, String) {
        let text = std::fs::read_to_string(env).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_string()
        };
        (get("FEDSIM_PORTAL_USER"), get("FEDSIM_PORTAL_PASSWORD"))
    };
    let (user, password) = creds(out.join("controller.env"));
    let c = api.login(&user, &password).await;
    let sites = ["site-1", "site-2"];
    let mut s = Vec::new();
    for site in sites {
        let (user, password) = creds(out.join("sites").join(site).join(".env"));
        s.push(api.login(&user, &password).await);
    }
    api.ok(
        "POST",
        "/api/project",
        Some(&c),
        Some(json!({"name": "by hand"})),
    )
    .await;
    let tokens = api.ok("POST", "/api/project/tokens", Some(&c), None).await;
    for (site, session) in sites.iter().zip(&s) {
        let token = tokens[*site].as_str().unwrap();
        api.ok(
            "POST",
            "/api/project/join",
            Some(session),
            Some(json!({"token": token})),
        )
        .await;
    }
    api.ok("POST", "/api/project/start", Some(&c), None).await;
    let mut results = None;
    for _ in 0..300 {
        let st = api.ok("GET", "/api/project/status", Some(&c), None).await;
        if st["state"] == "finished" {
            results = Some(api.ok("GET", "/api/project/results", Some(&c), None).await);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let results = results.expect("the run finished");
    for session in &s {
        api.ok("GET", "/api/project/results", Some(session), None)
            .await;
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let summary = summary(&out);
    assert_eq!(summary.status, Status::Succeeded);
    assert_eq!(
        floats(&results["results"]["coef"]),
        summary.results.expect("results").coef
    );
    let portal = metrics(&out).portal.expect("the portal's report");
    assert_eq!(portal.driver, "people");
}

/// Issue 20.3: guessing passwords. Before, ~3,900 wrong logins a second were accepted, each a
/// thread waiting for an argon2 hash (memory grew to 2.9 GB and stayed), and every refusal
/// became a line of the log forever. Now an account gets 5 tries and then waits (the answer is
/// 429 without any hash), an address that fails 100 times waits too, checks queue as futures
/// (past 256 the portal answers 503), and the log keeps a line for the first refusals and one
/// per lock-out. Another site from the same address still logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_throttled_and_leaves_a_short_log() {
    let p = portal().await;
    let guess = |i: usize| {
        let api = &p.api;
        async move {
            api.call(
                "POST",
                "/api/login",
                None,
                Some(json!({"user": "north", "password": format!("guess-{i}")})),
            )
            .await
            .0
        }
    };
    let answers = futures_util::future::join_all((0..60).map(guess)).await;
    let wrong = answers
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let locked = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS || **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(wrong + locked, 60, "{answers:?}");
    assert!(
        wrong <= fedsim::portal::throttle::ACCOUNT_FREE as usize + 2,
        "{wrong} guesses were checked"
    );
    // Even the right password waits now: the lock-out is the account's.
    let (s, v) = p
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"user": "north", "password": "north-pass-123"})),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("too many failed logins: try again in"));
    // Another site, same address: not held back.
    let so = p.login("south", "south-pass-456").await;
    assert!(!so.is_empty());
    // The log: a line per early refusal and one for the lock-out, not sixty.
    let c = p.login("coordinator", "coordinator-pass-1").await;
    let status = p.ok("GET", "/api/project/status", Some(&c), None).await;
    let refusals = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("login refused")
        })
        .count();
    assert!(
        refusals <= fedsim::portal::throttle::ACCOUNT_FREE as usize + 1,
        "{status}"
    );
    let _ = &p.board;
}
