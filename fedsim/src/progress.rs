//! Live progress for people at a terminal: one line for the pipeline's phase, one per site for
//! its rounds. Hidden when stderr is not a terminal or with `--quiet`, and never on stdout,
//! which carries only machine output (the run directory).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Sites shown one line each; more share one line.
pub const MAX_SITE_LINES: usize = 16;

pub struct Progress {
    multi: MultiProgress,
    phase: ProgressBar,
    sites: Mutex<Vec<ProgressBar>>,
    names: Mutex<Vec<String>>,
}

/// Whether progress bars will be drawn: asked for, and stderr is a terminal.
pub fn wanted(asked: bool) -> bool {
    asked && std::io::stderr().is_terminal()
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let phase = multi.add(ProgressBar::new_spinner());
        phase.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}")
                .expect("static template"),
        );
        phase.enable_steady_tick(Duration::from_millis(120));
        Progress {
            multi,
            phase,
            sites: Mutex::new(Vec::new()),
            names: Mutex::new(Vec::new()),
        }
    }

    pub fn phase(&self, message: impl Into<String>) {
        self.phase.set_message(message.into());
    }

    /// One line per site, for the rounds; beyond [`MAX_SITE_LINES`] sites, one line for all of
    /// them (a thousand lines would scroll the phase away), showing the latest site's news.
    pub fn sites(&self, names: &[String]) {
        let style =
            ProgressStyle::with_template("  {prefix:<12} {wide_msg}").expect("static template");
        let lines: Vec<String> = if names.len() > MAX_SITE_LINES {
            vec![format!("{} sites", names.len())]
        } else {
            names.to_vec()
        };
        let bars = lines
            .iter()
            .map(|n| {
                let b = self.multi.add(ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(n.clone());
                b.set_message("waiting to connect");
                b
            })
            .collect();
        if let Ok(mut s) = self.sites.lock() {
            *s = bars;
        }
        if let Ok(mut n) = self.names.lock() {
            *n = names.to_vec();
        }
    }

    pub fn site(&self, index: usize, message: impl Into<String>) {
        let Ok(bars) = self.sites.lock() else { return };
        if bars.len() == 1 && self.names.lock().is_ok_and(|n| n.len() > MAX_SITE_LINES) {
            let name = self
                .names
                .lock()
                .ok()
                .and_then(|n| n.get(index).cloned())
                .unwrap_or_default();
            bars[0].set_message(format!("{name}: {}", message.into()));
        } else if let Some(b) = bars.get(index) {
            b.set_message(message.into());
        }
    }

    pub fn finish(&self, message: impl Into<String>) {
        for b in self.sites.lock().map(|s| s.clone()).unwrap_or_default() {
            b.finish();
        }
        self.phase.finish_with_message(message.into());
    }
}
