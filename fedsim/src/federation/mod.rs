//! The built-in "native" federation: a coordinator inside the controller and one agent per site,
//! talking in encrypted, authenticated frames. Agents dial the coordinator, so sites need no
//! inbound port.

pub mod coordinator;
pub mod frame;
pub mod openings;
pub mod secagg;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::algorithms::AlgorithmConfig;
use crate::data::design::Levels;

/// A value carried as JSON text inside a postcard frame.
mod as_json {
    use serde::de::{DeserializeOwned, Error as _};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}

/// The coordinator's own account at a portal. It is no site: a failure it causes is blamed on
/// no site.
pub const COORDINATOR: &str = "coordinator";

/// Why the start did not come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoStart {
    /// A participant gave up before the start (say, its login was refused).
    Aborted {
        site: String,
        reason: String,
    },
    TimedOut,
    Cancelled,
}

/// Whoever holds the rounds until someone presses start (the portal, in `enrol`), and is told
/// how the run goes so people can follow it. The coordinator knows no more of the portal.
pub trait StartGate: Sync {
    /// Wait at most `wait` for the start, or for the cancel flag.
    fn wait_start(&self, wait: Duration, cancel: &AtomicBool) -> Result<(), NoStart>;
    /// Participants let go before the start (on_dropout = "continue"), with the reason.
    fn left(&self) -> Vec<(String, String)>;
    /// A line for the people following the run (a site's, or everyone's).
    fn event(&self, site: Option<&str>, text: String);
    fn set_round(&self, round: u32);
}

/// Everything that crosses the wire between coordinator and agents.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// Agent -> coordinator, first frame after the handshake: who is calling. Arriving sealed
    /// under the session's keys, it shows the agent finished the handshake with the site's key.
    Hello {
        site: String,
        agent_version: String,
        pid: u32,
    },
    /// Coordinator -> agent: accepted; what to compute: the run's analyses, in the order they
    /// run (the site loads the first at once; each next one on `Begin`).
    Welcome {
        run_id: String,
        /// As JSON inside the frame: an analysis is a tagged enum, which postcard (not
        /// self-describing) cannot carry.
        #[serde(with = "as_json")]
        analyses: Vec<AlgorithmConfig>,
        /// Heartbeat period (seconds) both ends keep.
        heartbeat_secs: f64,
        /// Injected delays for this site: (round, seconds).
        delays: Vec<(u32, f64)>,
        /// Replies are masked pairwise (secure aggregation).
        secure: bool,
    },
    /// Agent -> coordinator: data loaded, ready for rounds. `rows` counts the complete rows
    /// (`dropped`: the incomplete ones left out); both are 0 under secure aggregation.
    /// `levels`: the levels of each categorical column among the site's complete rows.
    /// `load_secs`: the site's time from its start (or the `Begin`) to this, its loading.
    Ready {
        rows: u64,
        peak_rss_kib: u64,
        dropped: u64,
        levels: Levels,
        load_secs: f64,
    },
    /// Coordinator -> agent: the previous analysis is over; load analysis `analysis` (its
    /// columns and complete rows) and say `Ready` for it.
    Begin { analysis: u32 },
    /// Coordinator -> agent, before round 1 when there are categorical columns: the levels of
    /// every site together, which every site codes its rows with.
    Levels { levels: Levels },
    /// Coordinator -> agent: one round's request (algorithm-specific bytes).
    /// `sites`: how many take part in this round (a site's `min_sites` rule counts them).
    /// `active`: which, under secure aggregation only (the masks are over them); otherwise empty,
    /// or every task of a round would carry every site's name: quadratic in the sites.
    Task {
        round: u32,
        body: Vec<u8>,
        sites: u32,
        active: Vec<String>,
    },
    /// Agent -> coordinator: the round's aggregates and how long the site computed.
    Reply {
        round: u32,
        body: Vec<u8>,
        compute_secs: f64,
        /// The site process's peak resident memory so far.
        peak_rss_kib: u64,
        /// Secure aggregation: the reply's numbers, masked; `body` then holds only its shape.
        masked: Option<Vec<u128>>,
    },
    /// Agent -> coordinator: the site cannot go on.
    Failed { round: u32, reason: String },
    /// Agent -> coordinator: the site will not release what the round (or loading the
    /// analysis, round 0 of it) asks: its disclosure rules forbid it. It stays in step.
    Refused {
        round: u32,
        refusal: crate::disclosure::Refusal,
    },
    /// Either way: still here (sent every heartbeat period).
    Heartbeat,
    /// Coordinator -> agent: the run is over; exit.
    Shutdown { status: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::{Params, SvdParams};
    use crate::scenario::SvdMethod;

    /// The Welcome carries each kind with only its own options, through postcard and back; in
    /// JSON (plan.json) the kind is a `kind` field beside them.
    #[test]
    fn every_kind_of_analysis_travels_in_the_welcome() {
        let svd = Params::Svd(SvdParams {
            k: 3,
            center: true,
            scale: false,
            method: SvdMethod::Gram,
            oversample: 10,
            max_iter: 1000,
            tol: 1e-10,
        });
        for params in [Params::LinearRegression, svd] {
            let config = AlgorithmConfig {
                params,
                features: vec!["x1".into(), "x2".into()],
                target: None,
                intercept: false,
                vertical: false,
                seed: 7,
                categorical: Vec::new(),
                missing: Default::default(),
                noisy: false,
            };
            let msg = Message::Welcome {
                run_id: "r".into(),
                analyses: vec![config.clone()],
                heartbeat_secs: 1.0,
                delays: Vec::new(),
                secure: false,
            };
            let bytes = postcard::to_allocvec(&msg).unwrap();
            match postcard::from_bytes::<Message>(&bytes).unwrap() {
                Message::Welcome { analyses, .. } => assert_eq!(analyses, vec![config]),
                other => panic!("{other:?}"),
            }
        }
        let json = serde_json::to_value(AlgorithmConfig::ols(&[])).unwrap();
        assert_eq!(json["kind"], "linear_regression");
        assert!(json.get("k").is_none(), "no svd option on an OLS: {json}");
    }
}
