//! `fedsim bench --sites ... --workload logistic` against Flower: the same Newton workload through
//! Flower's Message API in its simulation engine (`bench/flower_message.py`), run by the same
//! command with the same site counts, rows and rounds when a Python with flwr is found, and its
//! figures set beside fedsim's as ratios (Flower / fedsim).
//!
//! The script is carried in the binary and written into the bench folder, so no checkout is
//! needed. Where flwr is missing the comparison is skipped and the bench carries on; a script that
//! fails, prints nothing readable or disagrees with the pooled fit is an error of its own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The script and the module it imports, written into the bench folder.
const SCRIPTS: [(&str, &str); 2] = [
    (
        "flower_message.py",
        include_str!("../../../bench/flower_message.py"),
    ),
    (
        "flower_common.py",
        include_str!("../../../bench/flower_common.py"),
    ),
];

/// A Python to use for Flower, before the default places.
pub const PYTHON_VAR: &str = "FEDSIM_FLWR_PYTHON";
/// Where the bench looks next: a venv under the user's cache (`~/.cache/fedsim-flwr`).
const VENV: &str = ".cache/fedsim-flwr/bin/python3";
/// The script's machine-readable line.
const MARK: &str = "FLOWER_JSON ";
/// What the script writes besides its result lines (Flower's and Ray's logs).
pub const LOG: &str = "flower.log";

#[derive(Debug, thiserror::Error)]
pub enum FlowerError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {}: {source}", python.display())]
    Spawn {
        python: PathBuf,
        source: std::io::Error,
    },
    #[error("lost the Flower script while waiting for it: {0}")]
    Wait(std::io::Error),
    #[error("the Flower script failed ({status}); the end of its output:\n{tail}")]
    Failed { status: ExitStatus, tail: String },
    #[error("the Flower script printed no {MARK:?} line; the end of its output:\n{tail}")]
    NoResult { tail: String },
    #[error("the Flower script's result line does not read: {0}")]
    BadOutput(#[source] serde_json::Error),
    #[error(
        "the Flower script ran {got:?} sites, {rows} rows, {rounds} rounds; asked for {want:?}"
    )]
    Mismatch {
        want: Vec<usize>,
        got: Vec<usize>,
        rows: usize,
        rounds: usize,
    },
    #[error("Flower's coefficients with {sites} sites differ from the pooled fit by {max_diff:e} (tolerance {tolerance:e})")]
    Disagrees {
        sites: usize,
        max_diff: f64,
        tolerance: f64,
    },
    /// The script could not import flwr after all (it says so and exits 0).
    #[error("{0}")]
    Skipped(String),
    #[error("cancelled")]
    Cancelled,
}

/// One site count as the script measured it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowerCase {
    pub sites: usize,
    /// `run_simulation` from call to return: Ray's start, the clients, every round, the stop.
    pub run_secs: f64,
    /// From the call to the end of round 1.
    pub first_round_secs: f64,
    pub rounds: usize,
    pub mean_round_secs: f64,
    pub max_round_secs: f64,
    pub round_secs: Vec<f64>,
    /// Peak summed PSS of the script and every process it started, Ray's included.
    pub total_pss_mib: f64,
    pub coefficients: Vec<f64>,
    pub pooled_coefficients: Vec<f64>,
    /// Largest absolute difference from the pooled Newton fit of the same rows.
    pub max_diff: f64,
    pub agrees: bool,
}

/// The script's whole result line.
#[derive(Debug, Deserialize)]
pub struct FlowerRun {
    pub flwr: String,
    pub api: String,
    pub rows: usize,
    pub rounds: usize,
    /// The largest difference from the pooled fit that agrees.
    pub tolerance: f64,
    pub cases: Vec<FlowerCase>,
}

/// Flower's figures for one site count beside fedsim's: ratios are Flower / fedsim.
#[derive(Debug, Serialize)]
pub struct FlowerVsFedsim {
    #[serde(flatten)]
    pub flower: FlowerCase,
    pub run_ratio: f64,
    pub first_round_ratio: f64,
    pub mean_round_ratio: f64,
    pub memory_ratio: f64,
}

impl FlowerVsFedsim {
    fn new(flower: FlowerCase, fedsim: &super::sites::SitesCase) -> FlowerVsFedsim {
        let ratio = |f: f64, s: f64| f / s.max(1e-9);
        FlowerVsFedsim {
            run_ratio: ratio(flower.run_secs, fedsim.run_secs),
            first_round_ratio: ratio(flower.first_round_secs, fedsim.first_round_secs),
            mean_round_ratio: ratio(flower.mean_round_secs, fedsim.mean_round_secs),
            memory_ratio: ratio(flower.total_pss_mib, fedsim.total_pss_mib),
            flower,
        }
    }
}

/// What became of the comparison, in `sites.json` as `flower`.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Flower {
    /// Ran and agreed with the pooled fit; each case has its figures under `flower`.
    Ran {
        python: PathBuf,
        flwr: String,
        api: String,
        rounds: usize,
        tolerance: f64,
        log: PathBuf,
    },
    /// No Python with flwr, or `--no-flower`.
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
    },
}

impl Flower {
    pub fn failed(&self) -> bool {
        matches!(self, Flower::Failed { .. })
    }
}

/// A Python that imports flwr and numpy, and flwr's version; or why there is none.
/// `FEDSIM_FLWR_PYTHON` if set (and only it), else `~/.cache/fedsim-flwr/bin/python3`, else
/// `python3` on the PATH.
pub fn find_python() -> Result<(PathBuf, String), String> {
    let candidates: Vec<PathBuf> = match std::env::var_os(PYTHON_VAR) {
        Some(p) => vec![PathBuf::from(p)],
        None => std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(VENV))
            .filter(|p| p.is_file())
            .into_iter()
            .chain(crate::sys::proc::which("python3"))
            .collect(),
    };
    let mut why = Vec::new();
    for python in candidates {
        let probe = Command::new(&python)
            .args(["-c", "import numpy, flwr; print(flwr.__version__)"])
            .stdin(Stdio::null())
            .output();
        match probe {
            Ok(o) if o.status.success() => {
                let version = String::from_utf8_lossy(&o.stdout).trim().to_string();
                return Ok((python, version));
            }
            Ok(o) => why.push(format!(
                "{} cannot import flwr ({})",
                python.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("no message")
            )),
            Err(e) => why.push(format!("{}: {e}", python.display())),
        }
    }
    if why.is_empty() {
        why.push("no python3 found".into());
    }
    Err(format!(
        "{}; pip install \"flwr[simulation]==1.42.*\" numpy into a venv at ~/.cache/fedsim-flwr, or set {PYTHON_VAR}",
        why.join("; ")
    ))
}

/// Run the script with `python` in `out` for these counts, rows and rounds, and read its result.
pub fn run(
    python: &Path,
    out: &Path,
    counts: &[usize],
    rows: usize,
    rounds: usize,
) -> Result<FlowerRun, FlowerError> {
    std::fs::create_dir_all(out).map_err(|source| FlowerError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    for (name, text) in SCRIPTS {
        let path = out.join(name);
        crate::sys::fsio::write_atomic(&path, text.as_bytes())
            .map_err(|source| FlowerError::Write { path, source })?;
    }
    let log_path = out.join(LOG);
    let log = std::fs::File::create(&log_path).map_err(|source| FlowerError::Write {
        path: log_path.clone(),
        source,
    })?;
    let sites: Vec<String> = counts.iter().map(|n| n.to_string()).collect();
    let mut cmd = Command::new(python);
    cmd.arg(SCRIPTS[0].0)
        .args(["--sites", &sites.join(",")])
        .args(["--rows", &rows.to_string()])
        .args(["--rounds", &rounds.to_string()])
        .current_dir(out)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Inherited by Ray's processes too: what fedsim started is found by its environment.
        .env(
            crate::sys::children::PARENT_VAR,
            std::process::id().to_string(),
        )
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // Its own group, with Ray's processes in it: the whole group goes when it is done.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    crate::sys::children::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| FlowerError::Spawn {
        python: python.to_path_buf(),
        source,
    })?;
    let pid = child.id();
    crate::sys::children::track(pid);
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(s) = stdout {
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                if !line.starts_with(MARK) {
                    tracing::info!(phase = "bench", flower = %line);
                }
                lines.push(line);
            }
        }
        lines
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if crate::sys::cancel::requested() => break Err(FlowerError::Cancelled),
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => break Err(FlowerError::Wait(e)),
        }
    };
    // Whatever is left of the group (Ray's workers, on a failure or a cancel), gone before the
    // bench goes on: a killed process is still there until the kernel has taken it down.
    // SAFETY: signalling the process group we created; no memory is touched.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    let _ = child.wait();
    for _ in 0..500 {
        if !group_alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::sys::children::untrack(pid);
    let status = status?;
    let lines = reader.join().unwrap_or_default();
    let tail = || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let all: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .chain(log.lines())
            .collect();
        all[all.len().saturating_sub(20)..].join("\n")
    };
    if !status.success() {
        return Err(FlowerError::Failed {
            status,
            tail: tail(),
        });
    }
    if let Some(skipped) = lines.iter().find_map(|l| l.strip_prefix("SKIPPED: ")) {
        return Err(FlowerError::Skipped(skipped.to_string()));
    }
    let Some(json) = lines.iter().rev().find_map(|l| l.strip_prefix(MARK)) else {
        return Err(FlowerError::NoResult { tail: tail() });
    };
    let report: FlowerRun = serde_json::from_str(json).map_err(FlowerError::BadOutput)?;
    let got: Vec<usize> = report.cases.iter().map(|c| c.sites).collect();
    if got != counts
        || report.rows != rows
        || report.rounds != rounds
        || report.cases.iter().any(|c| c.rounds != rounds)
    {
        return Err(FlowerError::Mismatch {
            want: counts.to_vec(),
            got,
            rows: report.rows,
            rounds: report.rounds,
        });
    }
    if let Some(c) = report
        .cases
        .iter()
        .find(|c| !c.agrees || c.max_diff > report.tolerance)
    {
        return Err(FlowerError::Disagrees {
            sites: c.sites,
            max_diff: c.max_diff,
            tolerance: report.tolerance,
        });
    }
    Ok(report)
}

/// Whether a process of group `pgid` is still running (a zombie is not).
fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    let pgid = pgid.to_string();
    dir.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": the command may hold spaces and parentheses.
        let mut fields = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace();
        let state = fields.next();
        state.is_some_and(|s| s != "Z") && fields.nth(1) == Some(pgid.as_str())
    })
}

/// After fedsim's own counts: Flower on the same counts, rows and rounds, its figures and the
/// ratios put into `cases`. Cancellation is the only error; any other becomes `Flower::Failed`.
pub fn compare(
    out: &Path,
    cases: &mut [super::sites::SitesCase],
    rows: usize,
) -> Result<Flower, FlowerError> {
    let (python, _) = match find_python() {
        Ok(found) => found,
        Err(reason) => return Ok(Flower::Skipped { reason }),
    };
    let counts: Vec<usize> = cases.iter().map(|c| c.sites).collect();
    // As many Newton steps as fedsim took to converge, so whole runs compare.
    let rounds = cases.iter().map(|c| c.rounds).max().unwrap_or(0).max(1);
    tracing::info!(phase = "bench", python = %python.display(), ?counts, rounds, "running Flower");
    match run(&python, out, &counts, rows, rounds) {
        Ok(report) => {
            for (case, f) in cases.iter_mut().zip(report.cases) {
                case.flower = Some(FlowerVsFedsim::new(f, case));
            }
            Ok(Flower::Ran {
                python,
                flwr: report.flwr,
                api: report.api,
                rounds,
                tolerance: report.tolerance,
                log: out.join(LOG),
            })
        }
        Err(FlowerError::Cancelled) => Err(FlowerError::Cancelled),
        Err(FlowerError::Skipped(reason)) => Ok(Flower::Skipped { reason }),
        Err(e) => Ok(Flower::Failed {
            error: e.to_string(),
        }),
    }
}

/// Flower's lines of the table, after fedsim's.
pub fn table(flower: &Flower, cases: &[super::sites::SitesCase]) -> String {
    let (flwr, api, rounds) = match flower {
        Flower::Skipped { reason } => return format!("Flower: skipped: {reason}\n"),
        Flower::Failed { error } => return format!("Flower: FAILED: {error}\n"),
        Flower::Ran {
            flwr, api, rounds, ..
        } => (flwr, api, rounds),
    };
    let mut s = format!(
        "Flower {flwr} ({api} API, simulation engine), {rounds} Newton rounds; x: Flower / fedsim\n\
         {:>6} {:>8} {:>9} {:>10} {:>9} {:>10} {:>9} {:>8} {:>9} {:>9} {:>8}\n",
        "sites",
        "run s",
        "1st rnd s",
        "mean rnd s",
        "max rnd s",
        "total MiB",
        "max diff",
        "x run",
        "x 1st rnd",
        "x rnd",
        "x MiB"
    );
    for c in cases {
        if let Some(f) = &c.flower {
            let g = &f.flower;
            s.push_str(&format!(
                "{:>6} {:>8.2} {:>9.2} {:>10.3} {:>9.3} {:>10.0} {:>9.1e} {:>8.1} {:>9.1} {:>9.1} {:>8.2}\n",
                c.sites,
                g.run_secs,
                g.first_round_secs,
                g.mean_round_secs,
                g.max_round_secs,
                g.total_pss_mib,
                g.max_diff,
                f.run_ratio,
                f.first_round_ratio,
                f.mean_round_ratio,
                f.memory_ratio
            ));
        }
    }
    s
}
