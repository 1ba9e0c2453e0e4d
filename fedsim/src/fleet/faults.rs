//! Faults injected on purpose, as the coordinator's rounds start: a site's agent killed, or its
//! network link cut. The coordinator sees the fleet only through this watch.

use super::Fleet;
use crate::federation::coordinator::Watch;
use crate::scenario::{FaultKind, FaultSpec};

pub struct Injector<'a> {
    fleet: &'a mut dyn Fleet,
    faults: &'a [FaultSpec],
}

impl<'a> Injector<'a> {
    pub fn new(fleet: &'a mut dyn Fleet, faults: &'a [FaultSpec]) -> Self {
        Injector { fleet, faults }
    }
}

impl Watch for Injector<'_> {
    fn dead_site(&mut self) -> Option<(String, String)> {
        self.fleet.dead_site()
    }

    fn round_starts(&mut self, round: u32) {
        for f in self.faults.iter().filter(|f| f.round == round) {
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
                    tracing::error!(phase = "federate", site = %f.site, round, error = %e, "could not inject fault")
                }
            }
        }
    }
}
