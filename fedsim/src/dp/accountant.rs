//! A site's privacy budget: what `[privacy.dp]` allows over the whole run, split evenly over
//! the rounds its analyses plan, and spent round by round. Gaussian rounds compose in
//! zero-concentrated DP (Bun & Steinke 2016): a round with L2 sensitivity Δ and noise σ costs
//! ρ = Δ² / 2σ², costs add up, and ρ converts to (ε, δ) by ε = ρ + 2 √(ρ ln 1/δ). Laplace rounds
//! are pure ε-DP and add up. Noise is drawn only under a [`Charge`], which only a budget with
//! room for it hands out: no noise leaves a site unaccounted for.

use serde::{Deserialize, Serialize};

use crate::disclosure::Refusal;
use crate::scenario::Mechanism;

/// The largest ρ whose (ε, δ) conversion stays within `epsilon`.
pub fn rho_of(epsilon: f64, delta: f64) -> f64 {
    let l = (1.0 / delta).ln();
    ((l + epsilon).sqrt() - l.sqrt()).powi(2)
}

/// The ε that ρ-zCDP guarantees at `delta`.
pub fn epsilon_of(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// One round's share of the budget, spent: the noise it allows per unit of sensitivity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    /// The round's cost: ρ (Gaussian) or ε (Laplace).
    pub cost: f64,
    mechanism: Mechanism,
}

impl Charge {
    /// The noise's scale for a release of sensitivity `clip`: σ = Δ / √(2ρ), or b = Δ / ε.
    pub fn scale(&self, clip: f64) -> f64 {
        match self.mechanism {
            Mechanism::Gaussian => clip / (2.0 * self.cost).sqrt(),
            Mechanism::Laplace => clip / self.cost,
        }
    }

    /// The noise's variance per number, at that scale.
    pub fn variance(&self, clip: f64) -> f64 {
        let s = self.scale(clip);
        match self.mechanism {
            Mechanism::Gaussian => s * s,
            Mechanism::Laplace => 2.0 * s * s,
        }
    }
}

/// A site's budget over the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub mechanism: Mechanism,
    pub epsilon: f64,
    pub delta: f64,
    /// The whole budget, as the mechanism composes it (ρ, or ε).
    pub total: f64,
    /// The rounds it is split over.
    pub rounds: usize,
    pub spent: f64,
    pub charged: usize,
}

impl Budget {
    pub fn new(mechanism: Mechanism, epsilon: f64, delta: f64, rounds: usize) -> Budget {
        let total = match mechanism {
            Mechanism::Gaussian => rho_of(epsilon, delta),
            Mechanism::Laplace => epsilon,
        };
        Budget {
            mechanism,
            epsilon,
            delta,
            total,
            rounds: rounds.max(1),
            spent: 0.0,
            charged: 0,
        }
    }

    /// The next round's share, or a refusal once every planned round has had its own.
    pub fn charge(&mut self) -> Result<Charge, Refusal> {
        if self.charged >= self.rounds {
            return Err(Refusal {
                rule: "dp.epsilon".into(),
                threshold: self.epsilon.to_string(),
                statistic: format!(
                    "another round would spend more than the site's budget, split over the {} rounds its analyses planned",
                    self.rounds
                ),
            });
        }
        let cost = self.total / self.rounds as f64;
        self.spent += cost;
        self.charged += 1;
        Ok(Charge {
            cost,
            mechanism: self.mechanism,
        })
    }

    /// The ε spent so far (with this budget's δ for the Gaussian mechanism).
    pub fn epsilon_spent(&self) -> f64 {
        spent_epsilon(self.mechanism, self.spent, self.delta)
    }
}

/// The (ε, δ) a site's summed round costs come to.
pub fn spent_epsilon(mechanism: Mechanism, cost: f64, delta: f64) -> f64 {
    match mechanism {
        Mechanism::Gaussian if cost > 0.0 => epsilon_of(cost, delta),
        Mechanism::Gaussian => 0.0,
        Mechanism::Laplace => cost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rho_and_epsilon_convert_both_ways() {
        for (eps, delta) in [(1.0, 1e-6), (0.1, 1e-5), (8.0, 1e-9)] {
            let rho = rho_of(eps, delta);
            assert!((epsilon_of(rho, delta) - eps).abs() < 1e-12 * eps.max(1.0));
        }
        // ε = 1, δ = 1e-6: ρ = (√(ln 1e6 + 1) - √(ln 1e6))² ≈ 0.01747.
        assert!((rho_of(1.0, 1e-6) - 0.017_47).abs() < 1e-4);
    }

    #[test]
    fn a_budget_spends_exactly_its_rounds_then_refuses() {
        let mut b = Budget::new(Mechanism::Gaussian, 1.0, 1e-6, 3);
        for _ in 0..3 {
            b.charge().unwrap();
        }
        assert!((b.epsilon_spent() - 1.0).abs() < 1e-12);
        let refusal = b.charge().unwrap_err();
        assert_eq!(refusal.rule, "dp.epsilon");
        let mut l = Budget::new(Mechanism::Laplace, 2.0, 0.0, 4);
        let c = l.charge().unwrap();
        assert_eq!(c.cost, 0.5);
        assert_eq!(c.scale(1.0), 2.0);
        assert_eq!(c.variance(1.0), 8.0);
    }
}
