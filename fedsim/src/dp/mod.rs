//! Differential privacy (`[privacy.dp]`): each site clips its data to public bounds, adds noise
//! scaled to what one record can change to everything it releases, and spends its own budget
//! round by round ([`accountant`], [`mechanism`]). The controller predicts what the noise costs
//! each estimate, and holds the federated answer to that instead of the exact rule
//! ([`predict`]).

pub mod accountant;
pub mod mechanism;
pub mod predict;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::algorithms::{AlgoError, AlgorithmConfig, LocalData, Params, Runner};
use crate::disclosure::Refusal;
use crate::scenario::DpSpec;

pub use accountant::{Budget, Charge};
pub use mechanism::{Clipping, Noise};

/// The rounds an analysis plans under noise, which a site's budget is split over: fixed by its
/// kind and options, never by the data. None: the kind cannot run under noise.
pub fn rounds(config: &AlgorithmConfig) -> Option<usize> {
    match &config.params {
        // Means, the centred Gram matrix, the residuals.
        Params::LinearRegression => Some(3),
        Params::LogisticRegression(newton) => Some(newton.max_iter),
        // The weighted counts, the first step from the means, then max_iter steps.
        Params::Glm(g) if g.family != crate::scenario::Family::NegativeBinomial => {
            Some(2 + g.max_iter)
        }
        // Counts and sums, then the centred sums (no quantiles, no extremes).
        Params::Describe(d) if d.quantiles.is_empty() && !d.extremes => Some(2),
        Params::Crosstab(_) => Some(1),
        _ => None,
    }
}

/// The rounds a run's analyses plan together: each site's budget is split over all of them.
pub fn run_rounds(configs: &[AlgorithmConfig]) -> Result<usize, String> {
    configs
        .iter()
        .map(|c| {
            rounds(c).ok_or_else(|| format!("{} cannot run under differential privacy", c.kind()))
        })
        .sum()
}

/// Under `[privacy.dp]`, every numeric column an analysis reads has bounds (the noise is scaled
/// to them) and every bound names such a column (a misspelt one would leave its column without).
pub fn check_bounds(
    s: &crate::scenario::Scenario,
    dp: &DpSpec,
    plans: &[crate::plan::Plan],
) -> Result<(), crate::scenario::ScenarioError> {
    let mut numeric: Vec<String> = Vec::new();
    for plan in plans {
        Clipping::new(&plan.design, &dp.bounds, dp.mechanism)
            .map_err(|e| s.locate("privacy.dp.bounds", e))?;
        numeric.extend(plan.config.numeric_columns());
    }
    if let Some(c) = dp.bounds.keys().find(|c| !numeric.contains(c)) {
        return Err(s.locate(
            &format!("privacy.dp.bounds.{c}"),
            format!(
                "no analysis reads {c:?} as a number; the bounded columns are {}",
                numeric.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The spec as a site's `.env` holds it (JSON in single quotes: no shell or dotenv expansion).
pub fn encode(spec: &DpSpec) -> String {
    format!(
        "'{}'",
        serde_json::to_string(spec).expect("a DP spec always serializes")
    )
}

/// The spec back from the `.env`'s value (dotenv has already removed the quotes).
pub fn decode(text: &str) -> Result<DpSpec, String> {
    serde_json::from_str(text).map_err(|e| format!("malformed: {e}"))
}

/// Why a site cannot release a round under noise.
#[derive(Debug, thiserror::Error)]
pub enum DpError {
    /// Its budget has no room for the round.
    #[error("{0}")]
    Refused(Refusal),
    #[error(transparent)]
    Algorithm(#[from] AlgoError),
}

/// A site's differential privacy over the run: its budget, and its own noise.
pub struct SiteDp {
    pub spec: DpSpec,
    pub budget: Budget,
    rng: ChaCha20Rng,
}

impl SiteDp {
    /// `rounds`: what the run's analyses plan together. `seed`: a fixed noise stream (tests
    /// and predictions); None draws the site's from the operating system, as a site must, so
    /// that no one else can know its noise.
    pub fn new(spec: &DpSpec, rounds: usize, seed: Option<u64>) -> SiteDp {
        let rng = match seed {
            Some(s) => ChaCha20Rng::seed_from_u64(s),
            None => ChaCha20Rng::from_os_rng(),
        };
        SiteDp {
            budget: Budget::new(
                spec.mechanism,
                spec.epsilon,
                spec.delta.unwrap_or(0.0),
                rounds,
            ),
            spec: spec.clone(),
            rng,
        }
    }

    /// The clipping of an analysis this site loaded with `levels` agreed.
    pub fn clipping(
        &self,
        config: &AlgorithmConfig,
        levels: &crate::data::design::Levels,
    ) -> Result<Clipping, String> {
        Clipping::new(
            &config.design(levels),
            &self.spec.bounds,
            self.spec.mechanism,
        )
    }

    /// The round's reply as it may leave: the budget charged, rows clipped, noise added.
    pub fn release(
        &mut self,
        clipping: &Clipping,
        algorithm: &dyn Runner,
        request: &[u8],
        data: &LocalData,
    ) -> Result<(Vec<u8>, Noise), DpError> {
        let charge = self.budget.charge().map_err(DpError::Refused)?;
        Ok(clipping.release(algorithm, request, data, charge, &mut self.rng)?)
    }
}
