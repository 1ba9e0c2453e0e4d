//! The federation in one process: every site's local step on its rows, the aggregate on their
//! replies, round after round, with no frames and no masks. `fedsim validate` predicts the
//! sites' refusals with it, and the differencing probe differences two of them.

use super::{build, AlgoError, AlgorithmConfig, Estimates, LocalData, Runner, Step};

/// An analysis running on the sites' data, at its current question.
pub struct Simulation {
    pub algorithm: Box<dyn Runner>,
    /// Each site's rows, shaped for the algorithm, in site order.
    pub data: Vec<LocalData>,
    /// The current round's request.
    pub request: Vec<u8>,
}

impl Simulation {
    pub fn start(config: &AlgorithmConfig, data: Vec<LocalData>) -> Result<Simulation, AlgoError> {
        let mut algorithm = build(config);
        let request = algorithm.start()?;
        Ok(Simulation {
            algorithm,
            data,
            request,
        })
    }

    /// Every site's answer to the current request.
    pub fn answer(&self) -> Result<Vec<Vec<u8>>, AlgoError> {
        self.data
            .iter()
            .map(|d| self.algorithm.local(&self.request, d))
            .collect()
    }

    /// Aggregate the round's replies: true if the algorithm asks another round (now the
    /// current one), false when it is done or cannot go on.
    pub fn advance(&mut self, replies: Vec<Vec<u8>>) -> bool {
        matches!(self.step(replies), Ok(None))
    }

    /// Aggregate the round's replies: None if the algorithm asks another round (now the
    /// current one), else its estimates.
    pub fn step(&mut self, replies: Vec<Vec<u8>>) -> Result<Option<Box<Estimates>>, AlgoError> {
        match self.algorithm.aggregate(replies)? {
            Step::Next(next) => {
                self.request = next;
                Ok(None)
            }
            Step::Done(e) => Ok(Some(e)),
        }
    }
}
