//! Every exit code fedsim gives, decided here and nowhere else. The README's table is checked
//! against [`TABLE`] by a test, so the two cannot drift apart.

use std::process::ExitCode;

use fedsim::bundle::PrepError;
use fedsim::run::{RunError, RunOutcome};
use fedsim::rundir::RunDirError;
use fedsim::summary::Status;

/// What a command's end means to a script or a CI job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Succeeded,
    Failed,
    BadInput,
    Degraded,
    Cancelled,
}

/// Each code and what it means, as the README's table gives them.
#[cfg_attr(not(test), allow(dead_code))]
pub const TABLE: &[(Exit, &str)] = &[
    (Exit::Succeeded, "succeeded"),
    (Exit::Failed, "the run failed"),
    (Exit::BadInput, "bad input"),
    (Exit::Degraded, "degraded"),
    (Exit::Cancelled, "cancelled"),
];

impl Exit {
    pub const fn code(self) -> u8 {
        match self {
            Exit::Succeeded => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::Degraded => 3,
            Exit::Cancelled => 130,
        }
    }

    /// A run that ended with this status (bad input is decided before a status exists, or by
    /// the outcome for hosts that could not be reached).
    pub fn of_status(status: Status) -> Exit {
        match status {
            Status::Succeeded => Exit::Succeeded,
            Status::Failed => Exit::Failed,
            Status::Degraded => Exit::Degraded,
            Status::Cancelled => Exit::Cancelled,
        }
    }

    /// A run that went to its end: its status, unless its sites could not be provisioned as
    /// the scenario describes them (unreachable host, unknown or changed host key).
    pub fn of_outcome(outcome: &RunOutcome) -> Exit {
        if outcome.input_error && outcome.summary.status != Status::Cancelled {
            Exit::BadInput
        } else {
            Exit::of_status(outcome.summary.status)
        }
    }

    /// A run that never got a status: input the user must fix, a cancel, or a run that could
    /// not be carried out.
    pub fn of_error(e: &RunError) -> Exit {
        match e {
            RunError::Scenario(_)
            | RunError::Plan(_)
            | RunError::Reference(_)
            | RunError::Gui(_)
            | RunError::NoFleet { .. }
            | RunError::Limits(_)
            | RunError::Trace(_)
            | RunError::BrokenFleet(_)
            | RunError::RunDir(RunDirError::Unusable { .. })
            | RunError::Prep(PrepError::Credentials { .. }) => Exit::BadInput,
            RunError::Cancelled => Exit::Cancelled,
            _ => Exit::Failed,
        }
    }

    /// Failed, or cancelled when the cancel flag is up (a long step that gave up because of it).
    pub fn failed_or_cancelled() -> Exit {
        if fedsim::sys::cancel::requested() {
            Exit::Cancelled
        } else {
            Exit::Failed
        }
    }

    pub fn ok_if(ok: bool) -> Exit {
        if ok {
            Exit::Succeeded
        } else {
            Exit::Failed
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's exit-code table lists exactly these codes, in this order, each with its
    /// meaning's first words.
    #[test]
    fn the_readme_table_is_this_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let rows: Vec<(u8, String)> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| exit | meaning |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                let code = cells[0].trim_matches('`').parse().expect("a code");
                (code, cells[1].to_string())
            })
            .collect();
        assert_eq!(rows.len(), TABLE.len(), "README exit table: {rows:?}");
        for ((code, meaning), (exit, want)) in rows.iter().zip(TABLE) {
            assert_eq!(*code, exit.code(), "README row {meaning:?}");
            assert!(
                meaning.starts_with(want),
                "README says {code} is {meaning:?}; the code says {want:?}"
            );
        }
    }
}
