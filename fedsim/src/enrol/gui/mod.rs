//! The GUI path: every account clicks through the portal in its own headless browser, following a
//! step script. Each browser gets only its own account's `.env`; a value one account must give
//! another (a join token) travels through a `read` step, as an e-mail would.

pub mod browser;
pub mod script;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use thirtyfour::prelude::*;

use crate::enrol::participants::{Actor, DriveError, DriveReport, Leave, StepFailure, StepTime};
use crate::portal::Role;
use browser::{Driver, Scratch};
use script::{expand, Action, Script, Step, BUILTINS};

/// The browser machinery is there and can be run: checked before a run starts anything, so a
/// missing package is bad input, not a failure halfway through.
pub fn check_binaries(chromedriver: &Path, browser: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for (key, path, package) in [
        ("chromedriver", chromedriver, "chromium-driver"),
        ("browser", browser, "chromium"),
    ] {
        let problem = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "not found".to_string(),
            Err(e) => e.to_string(),
            Ok(m) if !m.is_file() => "not a file".to_string(),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => "not executable".to_string(),
            Ok(_) => continue,
        };
        return Err(format!(
            "[gui] {key} = {:?}: {problem}; install Debian's {package} or set [gui] {key} (needed because [gui] enabled = true)",
            path.display().to_string()
        ));
    }
    Ok(())
}

/// How often a waiting step looks at the page again.
const POLL: Duration = Duration::from_millis(100);

pub struct GuiOptions<'a> {
    pub chromedriver: &'a Path,
    pub browser: &'a Path,
    pub step_timeout: Duration,
    pub portal_url: String,
    pub project: String,
    /// Where each account's downloads and screenshots go (a folder per account).
    pub portal_dir: &'a Path,
    pub chromedriver_log: &'a Path,
}

/// What every browser shares: values sent between accounts, and what was recorded.
struct Shared<'a> {
    opts: &'a GuiOptions<'a>,
    script: &'a Script,
    accounts: Vec<String>,
    /// Sites that failed and were let go.
    left: Mutex<Vec<String>>,
    /// Values sent to each account by a `read` step, by account, then variable.
    sent: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    steps: Mutex<Vec<StepTime>>,
    downloads: Mutex<BTreeMap<String, PathBuf>>,
    screenshots: Mutex<Vec<PathBuf>>,
}

/// One account's browser.
struct Seat<'a> {
    actor: &'a Actor,
    session: WebDriver,
    scratch: Scratch,
}

/// Drive every account through `script`, phase by phase; the first failing step ends the drive,
/// with a screenshot of that account's page.
pub async fn drive(
    script: &Script,
    opts: &GuiOptions<'_>,
    coordinator: &Actor,
    sites: &[Actor],
    leave: Leave<'_>,
) -> Result<DriveReport, DriveError> {
    let log = opts.chromedriver_log.to_path_buf();
    let driver = Driver::start(opts.chromedriver, &log)
        .await
        .map_err(DriveError::Setup)?;
    let actors: Vec<&Actor> = std::iter::once(coordinator).chain(sites).collect();
    let shared = Shared {
        opts,
        script,
        accounts: actors.iter().map(|a| a.account.clone()).collect(),
        left: Mutex::new(Vec::new()),
        sent: Mutex::new(BTreeMap::new()),
        steps: Mutex::new(Vec::new()),
        downloads: Mutex::new(BTreeMap::new()),
        screenshots: Mutex::new(Vec::new()),
    };
    let t = Instant::now();
    let opened = join_all(actors.iter().map(|a| open_seat(&driver, opts, a))).await;
    let mut phases = vec![("browsers".to_string(), t.elapsed().as_secs_f64())];
    let mut seats = Vec::new();
    let mut failure = None;
    for o in opened {
        match o {
            Ok(s) => seats.push(s),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if failure.is_none() {
        'phases: for phase in &script.phases {
            let t = Instant::now();
            let gone = shared.left.lock().map(|l| l.clone()).unwrap_or_default();
            let done = join_all(
                seats
                    .iter()
                    .filter(|s| !gone.contains(&s.actor.account))
                    .map(|s| run_phase(&shared, s, phase)),
            )
            .await;
            for r in done {
                match r {
                    Ok(()) => {}
                    Err(DriveError::Step(f)) if f.role == Role::Participant && leave(&f) => {
                        if let Ok(mut l) = shared.left.lock() {
                            l.push(f.account.clone());
                        }
                    }
                    Err(e) => {
                        failure = Some(e);
                        break 'phases;
                    }
                }
            }
            phases.push((phase.clone(), t.elapsed().as_secs_f64()));
        }
    }
    // The browsers' profiles go only once the browsers are gone: a closing Chromium still
    // writes its preferences, and would bring a removed profile back.
    let (sessions, scratches): (Vec<WebDriver>, Vec<Scratch>) =
        seats.into_iter().map(|s| (s.session, s.scratch)).unzip();
    join_all(sessions.into_iter().map(|s| s.quit())).await;
    drop(driver);
    drop(scratches);
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(DriveReport {
        driver: "gui".into(),
        url: opts.portal_url.clone(),
        script: Some(script.source.display().to_string()),
        steps: shared.steps.into_inner().unwrap_or_default(),
        phases,
        downloads: shared.downloads.into_inner().unwrap_or_default(),
        screenshots: shared.screenshots.into_inner().unwrap_or_default(),
        finished: true,
    })
}

async fn open_seat<'a>(
    driver: &Driver,
    opts: &GuiOptions<'_>,
    actor: &'a Actor,
) -> Result<Seat<'a>, DriveError> {
    let setup = |e: String| DriveError::Setup(format!("{}: {e}", actor.account));
    let scratch = Scratch::new().map_err(|e| setup(e.to_string()))?;
    std::fs::create_dir_all(scratch.downloads()).map_err(|e| setup(e.to_string()))?;
    std::fs::create_dir_all(actor.dir(opts.portal_dir)).map_err(|e| setup(e.to_string()))?;
    let session = driver
        .session(opts.browser, &scratch.profile(), &scratch.downloads())
        .await
        .map_err(setup)?;
    Ok(Seat {
        actor,
        session,
        scratch,
    })
}

async fn run_phase(shared: &Shared<'_>, seat: &Seat<'_>, phase: &str) -> Result<(), DriveError> {
    let coordinator = !seat.actor.is_site();
    for (i, step) in shared.script.steps.iter().enumerate() {
        if step.phase != phase || !step.applies_to(coordinator) {
            continue;
        }
        let t = Instant::now();
        let outcome = run_step(shared, seat, step).await;
        let name = format!("{} ({})", i + 1, step.describe());
        if let Ok(mut s) = shared.steps.lock() {
            s.push(StepTime {
                account: seat.actor.account.clone(),
                phase: phase.to_string(),
                step: name.clone(),
                secs: t.elapsed().as_secs_f64(),
            });
        }
        if let Err(reason) = outcome {
            let shot = seat
                .actor
                .dir(shared.opts.portal_dir)
                .join(format!("failure-{phase}-step{}.png", i + 1));
            let screenshot = seat.session.screenshot(&shot).await.ok().map(|()| shot);
            tracing::error!(phase = "gui", account = %seat.actor.account, step = %name, %reason, "GUI step failed");
            return Err(DriveError::Step(Box::new(StepFailure {
                account: seat.actor.account.clone(),
                role: seat.actor.role,
                phase: phase.to_string(),
                step: name,
                reason,
                screenshot,
            })));
        }
    }
    Ok(())
}

/// `${VAR}` for this account: fedsim's built-ins, its `.env`, what was sent to it.
fn fill_in(shared: &Shared<'_>, actor: &Actor, template: &str) -> Result<String, String> {
    let sent = shared
        .sent
        .lock()
        .map(|s| s.get(&actor.account).cloned().unwrap_or_default())
        .unwrap_or_default();
    expand(template, |name| match name {
        "PORTAL_URL" => Some(shared.opts.portal_url.clone()),
        "ACCOUNT" => Some(actor.account.clone()),
        "PROJECT" => Some(shared.opts.project.clone()),
        _ => actor.var(name, &sent),
    })
    .map_err(|e| {
        format!(
            "{e} for {}: not one of {}, not in its .env, and no step sent it",
            actor.account,
            BUILTINS.join(", ")
        )
    })
}

fn wd(e: WebDriverError) -> String {
    browser::first_words(&e)
}

/// Run `act` again (up to three times) when the element it found was replaced under it, as when
/// a page redraws between finding a field and typing into it.
async fn afresh<F, Fut>(act: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut tries = 0;
    loop {
        match act().await {
            Err(e) if e.contains("stale element") && tries < 3 => tries += 1,
            other => return other,
        }
    }
}

/// Wait for `selector` (holding `text`, if given); fail at once if `fail_on` appears.
async fn find(
    session: &WebDriver,
    selector: &str,
    text: Option<&str>,
    fail_on: Option<&str>,
    timeout: Duration,
) -> Result<WebElement, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(f) = fail_on {
            if let Ok(e) = session.find(By::Css(f)).await {
                let said = e.text().await.unwrap_or_default();
                return Err(format!("the page says: {}", said.trim()));
            }
        }
        if let Ok(e) = session.find(By::Css(selector)).await {
            match text {
                None => return Ok(e),
                Some(t) if e.text().await.is_ok_and(|x| x.contains(t)) => return Ok(e),
                Some(_) => {}
            }
        }
        if Instant::now() >= deadline {
            let what = if text.is_some() {
                " to show the expected text"
            } else {
                ""
            };
            return Err(format!(
                "timed out after {:.0} s waiting for {selector}{what}",
                timeout.as_secs_f64()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn run_step(shared: &Shared<'_>, seat: &Seat<'_>, step: &Step) -> Result<(), String> {
    let actor = seat.actor;
    let s = &seat.session;
    let timeout = step
        .timeout_secs
        .map(Duration::from_secs_f64)
        .unwrap_or(shared.opts.step_timeout);
    let sel = step.selector.as_deref().unwrap_or_default();
    let fail_on = step.fail_on.as_deref();
    match step.action {
        Action::Goto => {
            let url = fill_in(shared, actor, step.url.as_deref().unwrap_or_default())?;
            s.goto(url.as_str()).await.map_err(wd)
        }
        Action::Fill => {
            let value = fill_in(shared, actor, step.value.as_deref().unwrap_or_default())?;
            afresh(|| async {
                let e = find(s, sel, None, fail_on, timeout).await?;
                e.clear().await.map_err(wd)?;
                e.send_keys(value.as_str()).await.map_err(wd)
            })
            .await
        }
        Action::Click => {
            afresh(|| async {
                let e = find(s, sel, None, fail_on, timeout).await?;
                e.click().await.map_err(wd)
            })
            .await?;
            // A click that submits a form lands on a page that may carry the refusal.
            if let Some(f) = fail_on {
                if let Ok(e) = s.find(By::Css(f)).await {
                    let said = e.text().await.unwrap_or_default();
                    return Err(format!("the page says: {}", said.trim()));
                }
            }
            Ok(())
        }
        Action::WaitFor => {
            let text = step
                .text
                .as_deref()
                .map(|t| fill_in(shared, actor, t))
                .transpose()?;
            find(s, sel, text.as_deref(), fail_on, timeout)
                .await
                .map(|_| ())
        }
        Action::Read => read(shared, s, step, sel, timeout).await,
        Action::Download => {
            let name = step.save_as.as_deref().unwrap_or("download");
            let path = download(
                s,
                sel,
                &seat.scratch.downloads(),
                timeout,
                actor,
                shared,
                name,
            )
            .await?;
            if let Ok(mut d) = shared.downloads.lock() {
                d.insert(actor.account.clone(), path);
            }
            Ok(())
        }
        Action::Screenshot => {
            let name = step.name.as_deref().unwrap_or("page");
            let path = actor
                .dir(shared.opts.portal_dir)
                .join(format!("{name}.png"));
            s.screenshot(&path).await.map_err(wd)?;
            if let Ok(mut shots) = shared.screenshots.lock() {
                shots.push(path);
            }
            Ok(())
        }
    }
}

/// Read the text of every element at `sel` into `into`: for the account named by each element's
/// `key_attribute`, or for everyone.
async fn read(
    shared: &Shared<'_>,
    s: &WebDriver,
    step: &Step,
    sel: &str,
    timeout: Duration,
) -> Result<(), String> {
    find(s, sel, None, step.fail_on.as_deref(), timeout).await?;
    let into = step.into.clone().unwrap_or_default();
    let mut values = Vec::new();
    for e in s.find_all(By::Css(sel)).await.map_err(wd)? {
        let value = e.text().await.map_err(wd)?.trim().to_string();
        let to = match &step.key_attribute {
            Some(k) => Some(
                e.attr(k.as_str())
                    .await
                    .map_err(wd)?
                    .ok_or_else(|| format!("an element at {sel} has no {k} attribute"))?,
            ),
            None => None,
        };
        values.push((to, value));
    }
    let mut sent = shared.sent.lock().map_err(|_| "poisoned".to_string())?;
    if step.in_order == Some(true) {
        // The coordinator is first; the sites still taking part follow in order.
        let left = shared.left.lock().map(|l| l.clone()).unwrap_or_default();
        let sites: Vec<&String> = shared.accounts[1..]
            .iter()
            .filter(|a| !left.contains(a))
            .collect();
        if values.len() < sites.len() {
            return Err(format!(
                "found {} values at {sel} for {} sites",
                values.len(),
                sites.len()
            ));
        }
        for (site, (_, value)) in sites.into_iter().zip(values) {
            sent.entry(site.clone())
                .or_default()
                .insert(into.clone(), value);
        }
        return Ok(());
    }
    for (to, value) in values {
        match to {
            Some(account) => {
                sent.entry(account).or_default().insert(into.clone(), value);
            }
            None => {
                for a in &shared.accounts {
                    sent.entry(a.clone())
                        .or_default()
                        .insert(into.clone(), value.clone());
                }
            }
        }
    }
    Ok(())
}

/// Click the link at `sel`, wait for the browser to finish writing the new file, and keep it in the
/// account's directory as `name`.
async fn download(
    s: &WebDriver,
    sel: &str,
    dir: &Path,
    timeout: Duration,
    actor: &Actor,
    shared: &Shared<'_>,
    name: &str,
) -> Result<PathBuf, String> {
    let listing = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    let before = listing(dir);
    let e = find(s, sel, None, None, timeout).await?;
    e.click().await.map_err(wd)?;
    let deadline = Instant::now() + timeout;
    loop {
        let fresh: Vec<PathBuf> = listing(dir)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        // Chromium writes to a hidden temporary, renames it to *.crdownload, then to its name.
        let partial = |p: &PathBuf| {
            p.extension()
                .is_some_and(|x| x == "crdownload" || x == "tmp")
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        };
        if let (false, Some(done)) = (fresh.iter().any(partial), fresh.first()) {
            let dest = actor.dir(shared.opts.portal_dir).join(name);
            match std::fs::copy(done, &dest) {
                Ok(_) => return Ok(dest),
                // Renamed under us: look again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("keeping {}: {e}", dest.display())),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no download finished within {:.0} s of clicking {sel}",
                timeout.as_secs_f64()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
