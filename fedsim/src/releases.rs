//! `releases.jsonl`: the release audit. Every message a site sends to the coordinator with its
//! data in it (the `Ready` of each analysis, each round's reply) is recorded by the site as it
//! sends it (its agent logs a `released` milestone), and the run gathers the records from the
//! merged log: what statistics, their shapes, how many numbers and bytes, the smallest count
//! behind any number, and whether the coordinator saw them masked.

use serde::{Deserialize, Serialize};

use crate::logs::{LogLine, Milestone};

/// One message a site released.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub site: String,
    /// The analysis's name (its kind, for a run of one `[algorithm]`).
    pub analysis: String,
    /// The round as the coordinator numbers it (0: loading the analysis, its `Ready`).
    pub round: u32,
    /// Each statistic with its shape: `Moments{n: 1, sum_x: 3, sum_y: 1}`.
    pub statistics: String,
    /// How many numbers it holds.
    pub numbers: u64,
    /// The message's size, before the frame's encryption.
    pub bytes: u64,
    /// The smallest count (above 0) behind any of its numbers, and what it counts.
    pub min_count: f64,
    pub smallest: String,
    /// Under secure aggregation the coordinator sees the shape and masked numbers only (their
    /// sum over the sites, once unmasked).
    pub masked: bool,
    /// Under differential privacy: the noise its numbers carry, and what the round cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<crate::dp::Noise>,
}

/// What one site spent of its differential-privacy budget over the run, from its releases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spent {
    pub site: String,
    pub mechanism: crate::scenario::Mechanism,
    /// The rounds it released with noise, and their summed cost (ρ, or ε for Laplace).
    pub rounds: usize,
    pub cost: f64,
    /// The ε that comes to (at the scenario's δ for the Gaussian mechanism), and its budget.
    pub epsilon: f64,
    pub budget: f64,
}

/// Each site's spending, from the release records (sites that released nothing with noise
/// are left out).
pub fn spent(releases: &[Release], spec: &crate::scenario::DpSpec) -> Vec<Spent> {
    let mut out: Vec<Spent> = Vec::new();
    for r in releases {
        let Some(noise) = r.noise else { continue };
        let at = match out.iter().position(|s| s.site == r.site) {
            Some(i) => i,
            None => {
                out.push(Spent {
                    site: r.site.clone(),
                    mechanism: noise.mechanism,
                    rounds: 0,
                    cost: 0.0,
                    epsilon: 0.0,
                    budget: spec.epsilon,
                });
                out.len() - 1
            }
        };
        out[at].rounds += 1;
        out[at].cost += noise.cost;
    }
    for s in &mut out {
        s.epsilon =
            crate::dp::accountant::spent_epsilon(s.mechanism, s.cost, spec.delta.unwrap_or(0.0));
    }
    out
}

/// The noise an agent's `released` line records, if it carried any.
fn noise(l: &LogLine) -> Option<crate::dp::Noise> {
    let number = |k: &str| l.fields.get(k).and_then(serde_json::Value::as_f64);
    let mechanism = match l.text("dp_mechanism")?.as_str() {
        "laplace" => crate::scenario::Mechanism::Laplace,
        _ => crate::scenario::Mechanism::Gaussian,
    };
    Some(crate::dp::Noise {
        mechanism,
        clip: number("dp_clip")?,
        scale: number("dp_scale")?,
        cost: number("dp_cost")?,
    })
}

/// The releases in a merged log, in time order; `names` names the analyses by index.
pub fn from_log(lines: &[LogLine], names: &[String]) -> Vec<Release> {
    lines
        .iter()
        .filter(|l| l.milestone == Some(Milestone::Released))
        .map(|l| {
            let int = |k: &str| l.fields.get(k).and_then(serde_json::Value::as_u64);
            let text = |k: &str| l.text(k).unwrap_or_default().to_string();
            let index = int("analysis").unwrap_or(0) as usize;
            Release {
                site: l.source.clone(),
                analysis: names
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| index.to_string()),
                round: int("round").unwrap_or(0) as u32,
                statistics: text("statistics"),
                numbers: int("numbers").unwrap_or(0),
                bytes: int("bytes").unwrap_or(0),
                min_count: l
                    .fields
                    .get("min_count")
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(0.0),
                smallest: text("smallest"),
                masked: l
                    .fields
                    .get("masked")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
                noise: noise(l),
            }
        })
        .collect()
}
