//! Faults injected on purpose, as the coordinator's rounds start: a site's agent killed, or its
//! network link cut. The coordinator sees the fleet only through this watch.

use super::{Fleet, FleetError};
use crate::federation::coordinator::{FedError, Watch};
use crate::scenario::{FaultKind, FaultSpec};

pub struct Injector<'a> {
    fleet: &'a mut dyn Fleet,
    faults: &'a [FaultSpec],
    /// Each fault is made once: a run that goes on without a lost site starts its rounds
    /// again, and round 2 comes twice.
    done: Vec<bool>,
}

impl<'a> Injector<'a> {
    pub fn new(fleet: &'a mut dyn Fleet, faults: &'a [FaultSpec]) -> Self {
        Injector {
            fleet,
            faults,
            done: vec![false; faults.len()],
        }
    }
}

impl Watch for Injector<'_> {
    fn dead_site(&mut self) -> Option<(String, String)> {
        self.fleet.dead_site()
    }

    fn round_starts(&mut self, round: u32) -> Result<(), FedError> {
        for (i, f) in self.faults.iter().enumerate() {
            if f.round != round || self.done[i] {
                continue;
            }
            self.done[i] = true;
            let done = match f.kind {
                FaultKind::Kill => self.fleet.kill(&f.site),
                FaultKind::Cut => self.fleet.cut(&f.site),
                FaultKind::Slow | FaultKind::WrongPassword | FaultKind::WrongToken => continue,
            };
            match done {
                Ok(()) => {
                    tracing::warn!(phase = "federate", site = %f.site, round, fault = %f.kind, "injected fault")
                }
                Err(e) => {
                    return Err(FedError::Fault {
                        site: f.site.clone(),
                        round,
                        kind: f.kind.to_string(),
                        // The fleets report a failed kill or cut as a start error.
                        reason: match e {
                            FleetError::Start { reason, .. } => reason,
                            e => e.to_string(),
                        },
                    });
                }
            }
        }
        Ok(())
    }
}
