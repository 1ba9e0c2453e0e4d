//! `[federation]` and `[[faults]]`: timeouts, heartbeats, what a lost site does to the run, secure
//! aggregation, and the faults injected on purpose.

use serde::{Deserialize, Serialize};

use super::{Locate, PartitionKind, Scenario, ScenarioError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    /// How long the coordinator waits for every site to connect.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// How long one round may take before the slowest site is declared lost.
    #[serde(default = "default_round_timeout")]
    pub round_timeout_secs: f64,
    /// Both ends send a heartbeat this often; four missed in a row and the peer is lost.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: f64,
    /// What a lost site does to the run: "fail" it, or "continue" with the others.
    #[serde(default)]
    pub on_dropout: OnDropout,
    /// With on_dropout = "continue": the fewest sites the run may go on with.
    #[serde(default = "default_min_sites")]
    pub min_sites: usize,
    /// Sites add pairwise masks that cancel in the sum, so the coordinator learns only sums.
    #[serde(default)]
    pub secure_aggregation: bool,
}

impl Default for FederationSpec {
    fn default() -> Self {
        FederationSpec {
            connect_timeout_secs: default_connect_timeout(),
            round_timeout_secs: default_round_timeout(),
            heartbeat_secs: default_heartbeat(),
            on_dropout: OnDropout::Fail,
            min_sites: default_min_sites(),
            secure_aggregation: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDropout {
    #[default]
    Fail,
    Continue,
}

impl OnDropout {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDropout::Fail => "fail",
            OnDropout::Continue => "continue",
        }
    }
}

fn default_connect_timeout() -> f64 {
    30.0
}
fn default_round_timeout() -> f64 {
    120.0
}
fn default_heartbeat() -> f64 {
    1.0
}
fn default_min_sites() -> usize {
    1
}

/// A fault injected on purpose, to see what the run does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub site: String,
    pub kind: FaultKind,
    /// The round in which it strikes (1 = the algorithm's first round); none for the portal's
    /// wrong_password and wrong_token, which strike before the run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
    /// slow: seconds the site waits before answering that round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The site's agent process is killed (SIGKILL) as the round starts.
    Kill,
    /// The site's network link goes down as the round starts (ssh test fleet in namespaces).
    Cut,
    /// The site answers the round `delay_secs` late (userspace delay; heartbeats go on).
    Slow,
    /// The site's person mistypes its portal password.
    WrongPassword,
    /// The site's person mistypes the join token the coordinator sent.
    WrongToken,
}

impl FaultKind {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Cut => "cut",
            FaultKind::Slow => "slow",
            FaultKind::WrongPassword => "wrong_password",
            FaultKind::WrongToken => "wrong_token",
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Timeouts, heartbeats, dropout policy, secure aggregation, then each fault against the sites.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let f = &s.federation;
    for (key, v) in [
        ("federation.connect_timeout_secs", f.connect_timeout_secs),
        ("federation.round_timeout_secs", f.round_timeout_secs),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(at(
                key,
                format!("expected a number of seconds > 0, found {v}"),
            ));
        }
    }
    if !(f.heartbeat_secs.is_finite() && f.heartbeat_secs >= 0.05 && f.heartbeat_secs <= 60.0) {
        return Err(at(
            "federation.heartbeat_secs",
            format!(
                "expected seconds from 0.05 to 60, found {}",
                f.heartbeat_secs
            ),
        ));
    }
    if f.min_sites == 0 || f.min_sites > s.partition.sites {
        return Err(at(
            "federation.min_sites",
            format!(
                "expected 1 to {} (partition.sites), found {}",
                s.partition.sites, f.min_sites
            ),
        ));
    }
    if f.on_dropout == OnDropout::Continue && (s.partition.kind == PartitionKind::Vertical) {
        return Err(at("federation.on_dropout", "a vertical split cannot go on without a site: its columns would be missing; use \"fail\"".into()));
    }
    if f.secure_aggregation && s.partition.kind == PartitionKind::Vertical {
        return Err(at("federation.secure_aggregation", "secure aggregation masks sums of same-shaped statistics; a vertical split sends different blocks per site".into()));
    }
    if f.secure_aggregation && s.partition.sites < 2 {
        return Err(at(
            "federation.secure_aggregation",
            "secure aggregation needs at least 2 sites (one site's sum is its own statistic)"
                .into(),
        ));
    }
    validate_faults(s, at)
}

/// Each fault names a site that exists and carries exactly the keys its kind uses.
fn validate_faults(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let names: Vec<String> = if s.sites.is_empty() {
        (1..=s.partition.sites)
            .map(|i| format!("site-{i}"))
            .collect()
    } else {
        s.site_specs().into_iter().map(|x| x.name).collect()
    };
    for (i, fault) in s.faults.iter().enumerate() {
        let key = |k: &str| format!("faults.{i}.{k}");
        if !names.contains(&fault.site) {
            return Err(at(
                &key("site"),
                format!("no site {:?}; sites are {}", fault.site, names.join(", ")),
            ));
        }
        let portal = matches!(fault.kind, FaultKind::WrongPassword | FaultKind::WrongToken);
        if portal && fault.round != 0 {
            return Err(at(
                &key("round"),
                "a portal fault strikes before the first round; remove `round`".into(),
            ));
        }
        if !portal && fault.round == 0 {
            return Err(at(
                &key("round"),
                "expected the round it strikes in, counting from 1".into(),
            ));
        }
        match (fault.kind, fault.delay_secs) {
            (FaultKind::Slow, None) => return Err(at(&format!("faults.{i}"), "missing key `delay_secs`: a slow fault needs the delay".into())),
            (FaultKind::Slow, Some(d)) if !(d.is_finite() && d >= 0.0) => {
                return Err(at(&key("delay_secs"), format!("expected seconds >= 0, found {d}")))
            }
            (FaultKind::Kill | FaultKind::Cut | FaultKind::WrongPassword | FaultKind::WrongToken, Some(_)) => return Err(at(&key("delay_secs"), "`delay_secs` applies to kind \"slow\" only".into())),
            (FaultKind::Cut, None) if !matches!(s.fleet.provider, super::Provider::Vm | super::Provider::Vagrant) && !s.site_specs().iter().any(|x| x.name == fault.site && x.cut_command.is_some()) => {
                return Err(at(&key("kind"), "a network cut needs provider \"vm\" or \"vagrant\" (fedsim takes the VM's link down) or the site's `cut_command` in its [[sites]] entry (the ssh test fleet in namespaces writes one); local sites share this host's network".into()))
            }
            _ => {}
        }
    }
    Ok(())
}
