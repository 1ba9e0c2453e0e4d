//! The browsers: one `chromedriver` started and stopped by fedsim, and one headless Chromium
//! session per account, each with a fresh profile and its own download directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;
use thirtyfour::ChromiumLikeCapabilities;

/// The Chromium flags (see DESIGN.md): headless, no sandbox (root in CI), nothing that phones home.
pub const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A running chromedriver; dropping it kills its process group (chromedriver and any browser).
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Driver {
    /// Start `chromedriver` on a free loopback port, its log in `log`, and wait until it answers.
    pub async fn start(chromedriver: &Path, log: &Path) -> Result<Driver, String> {
        if !chromedriver.exists() {
            return Err(format!(
                "{} not found: install chromium-driver (Debian) or set [gui] chromedriver",
                chromedriver.display()
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for chromedriver: {e}"))?
            .port();
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            // At INFO, chromedriver logs every command with its arguments: typed passwords too.
            .arg("--log-level=SEVERE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        crate::sys::children::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromedriver.display()))?;
        crate::sys::children::track(child.id());
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                return Ok(driver);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver did not answer within 20 s (log: {})",
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new browser session with a fresh profile; files it downloads land in `downloads`.
    pub async fn session(
        &self,
        browser: &Path,
        profile: &Path,
        downloads: &Path,
    ) -> Result<WebDriver, String> {
        // Debian's chromedriver answers to browserName "chrome"; the binary is chromium.
        let mut caps = DesiredCapabilities::chrome();
        let setup = |e: WebDriverError| format!("browser options: {e}");
        caps.set_binary(&browser.to_string_lossy()).map_err(setup)?;
        for flag in FLAGS {
            caps.add_arg(flag).map_err(setup)?;
        }
        caps.add_arg("--window-size=1280,1200").map_err(setup)?;
        caps.add_arg(&format!("--user-data-dir={}", profile.display()))
            .map_err(setup)?;
        caps.add_experimental_option(
            "prefs",
            serde_json::json!({
                "download.default_directory": downloads.to_string_lossy(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            }),
        )
        .map_err(setup)?;
        WebDriver::new(self.url.as_str(), caps).await.map_err(|e| {
            format!(
                "cannot open a browser session ({}): {}",
                browser.display(),
                first_words(&e)
            )
        })
    }
}

/// A WebDriver error's useful part: the driver's message, without its stack trace.
pub fn first_words(e: &WebDriverError) -> String {
    let text = e.to_string();
    let said = text
        .lines()
        .map(str::trim)
        .find(|l| l.contains(": ") && !l.starts_with("Status") && !l.starts_with("Additional"))
        .unwrap_or_else(|| text.lines().next().unwrap_or_default());
    said.to_string()
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: signalling our own child's process group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        // The browsers die of the same signal, but not before kill() returns: wait (briefly)
        // until none of the group is left, so nothing writes into a profile being removed.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        // SAFETY: signal 0 only asks whether the group still has a process.
        while unsafe { libc::kill(-pgid, 0) } == 0 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        crate::sys::children::untrack(pgid as u32);
    }
}

/// Per-account scratch space: a browser profile and a download directory, removed afterwards.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> std::io::Result<Scratch> {
        Ok(Scratch {
            dir: tempfile::Builder::new()
                .prefix("fedsim-browser-")
                .tempdir()?,
        })
    }

    pub fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    pub fn downloads(&self) -> PathBuf {
        self.dir.path().join("downloads")
    }
}
