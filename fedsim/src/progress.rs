//! Live progress for people at a terminal: one line for the pipeline's phase, one per site for
//! its rounds. Hidden when stderr is not a terminal or with `--quiet`, and never on stdout,
//! which carries only machine output (the run directory).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    multi: MultiProgress,
    phase: ProgressBar,
    sites: Mutex<Vec<ProgressBar>>,
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
        }
    }

    pub fn phase(&self, message: impl Into<String>) {
        self.phase.set_message(message.into());
    }

    /// One line per site, for the rounds.
    pub fn sites(&self, names: &[String]) {
        let style =
            ProgressStyle::with_template("  {prefix:<12} {wide_msg}").expect("static template");
        let bars = names
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
    }

    pub fn site(&self, index: usize, message: impl Into<String>) {
        if let Some(b) = self.sites.lock().ok().and_then(|s| s.get(index).cloned()) {
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
