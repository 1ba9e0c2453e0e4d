//! What the end of a run means as an exit code (the codes themselves: `fedsim::sys::exit`).

use fedsim::bundle::PrepError;
use fedsim::run::{RunError, RunOutcome};
use fedsim::rundir::RunDirError;
use fedsim::summary::Status;

pub use fedsim::sys::exit::Exit;

/// The exit code of a run's status, outcome or error.
pub trait Outcome {
    /// A run that ended with this status (bad input is decided before a status exists, or by
    /// the outcome for hosts that could not be reached).
    fn of_status(status: Status) -> Exit;
    /// A run that went to its end: its status, unless its sites could not be provisioned as
    /// the scenario describes them (unreachable host, unknown or changed host key).
    fn of_outcome(outcome: &RunOutcome) -> Exit;
    /// A run that never got a status: input the user must fix, a cancel, or a run that could
    /// not be carried out.
    fn of_error(e: &RunError) -> Exit;
}

impl Outcome for Exit {
    fn of_status(status: Status) -> Exit {
        match status {
            Status::Succeeded => Exit::Succeeded,
            Status::Failed => Exit::Failed,
            Status::Degraded => Exit::Degraded,
            Status::Cancelled => Exit::Cancelled,
        }
    }

    fn of_outcome(outcome: &RunOutcome) -> Exit {
        if outcome.input_error && outcome.summary.status != Status::Cancelled {
            Exit::BadInput
        } else {
            Exit::of_status(outcome.summary.status)
        }
    }

    fn of_error(e: &RunError) -> Exit {
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
}
