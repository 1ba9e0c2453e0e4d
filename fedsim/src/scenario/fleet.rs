//! `[fleet]` and `[[sites]]`: where the sites run, and the hosts of an ssh fleet.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{check_address, default_address, Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    Local,
    Ssh,
    /// One VM per site, booted by fedsim from its own image (see `[vm]`).
    Vm,
    Vagrant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    #[serde(default)]
    pub provider: Provider,
    /// Address the coordinator listens on; port 0 picks a free one.
    #[serde(default = "default_address")]
    pub coordinator: String,
    /// vagrant: the folder holding the Vagrantfile (relative to the scenario file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vagrant_dir: Option<PathBuf>,
    /// ssh/vagrant: agents reach the coordinator through an SSH reverse forward (for sites that
    /// cannot reach the coordinator's address). Default: on for vagrant (VMs on networks of
    /// their own cannot reach the controller's loopback), off for ssh. VMs always use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<bool>,
}

impl FleetSpec {
    /// Whether agents come through SSH reverse forwards.
    pub fn tunnel(&self) -> bool {
        self.tunnel
            .unwrap_or(matches!(self.provider, Provider::Vagrant | Provider::Vm))
            || self.provider == Provider::Vm
    }
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            provider: Provider::Local,
            coordinator: default_address(),
            vagrant_dir: None,
            tunnel: None,
        }
    }
}

/// One site host reached over SSH. No passwords: key files only, host keys checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub name: String,
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    /// Private key file (relative to the scenario file).
    pub key: PathBuf,
    /// known_hosts file holding this host's key (default ~/.ssh/known_hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// A `.env` with this site's own credentials (FEDSIM_TOKEN); default: a fresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<PathBuf>,
    /// Fault injection: a command run on the controller that cuts this site's network link
    /// (the test fleet in namespaces writes `ip link set <veth> down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_command: Option<String>,
}

impl Provider {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Ssh => "ssh",
            Provider::Vm => "vm",
            Provider::Vagrant => "vagrant",
        }
    }
}

fn default_ssh_port() -> u16 {
    22
}

/// `[[sites]]`: one per site for provider "ssh", none otherwise; unique, usable names. Then the
/// coordinator's address.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    match s.fleet.provider {
        Provider::Ssh => {
            if s.sites.len() != s.partition.sites {
                return Err(at(
                    "partition.sites",
                    format!(
                        "provider \"ssh\" needs one [[sites]] entry per site: partition.sites = {}, but {} [[sites]] are given",
                        s.partition.sites,
                        s.sites.len()
                    ),
                ));
            }
        }
        Provider::Local | Provider::Vagrant | Provider::Vm => {
            if s.fleet.tunnel == Some(true) && s.fleet.provider == Provider::Local {
                return Err(at("fleet.tunnel", "tunnel applies to providers \"ssh\", \"vm\" and \"vagrant\"; local sites reach the coordinator directly".into()));
            }
            if !s.sites.is_empty() {
                return Err(at(
                    "sites",
                    "[[sites]] entries are for provider \"ssh\" (local sites need no hosts; vm and vagrant make their own)".into(),
                ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, site) in s.sites.iter().enumerate() {
        let key = |k: &str| format!("sites.{i}.{k}");
        if !valid_name(&site.name) {
            return Err(at(
                &key("name"),
                format!(
                    "expected a site name of letters, digits, '-', '_' or '.', found {:?}",
                    site.name
                ),
            ));
        }
        if !seen.insert(site.name.as_str()) {
            return Err(at(
                &key("name"),
                format!(
                    "duplicate site name {:?}: every site needs its own name",
                    site.name
                ),
            ));
        }
        if site.host.trim().is_empty() {
            return Err(at(&key("host"), "expected a host name or address".into()));
        }
        if site.user.trim().is_empty() {
            return Err(at(&key("user"), "expected a user name".into()));
        }
    }
    check_address(at, "fleet.coordinator", &s.fleet.coordinator)?;
    reachable_coordinator(s, at)
}

/// Sites dial the coordinator's address unless they come through SSH tunnels; an address on the
/// controller's loopback is reachable only from sites on this machine. Caught here, not after
/// the run has waited for agents that can never join.
fn reachable_coordinator(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let Ok(addr) = s.fleet.coordinator.parse::<std::net::SocketAddr>() else {
        return Ok(());
    };
    if s.fleet.tunnel() || !addr.ip().is_loopback() {
        return Ok(());
    }
    let key = if s.fleet.tunnel.is_some() {
        "fleet.tunnel"
    } else {
        "fleet.coordinator"
    };
    match s.fleet.provider {
        Provider::Vagrant => Err(at(
            key,
            format!(
                "Vagrant VMs cannot reach {addr} on this machine's loopback: leave fleet.tunnel on (the default for vagrant), or give fleet.coordinator an address the VMs can reach"
            ),
        )),
        Provider::Ssh => {
            for (i, site) in s.sites.iter().enumerate() {
                if remote_address(&site.host).is_some() {
                    return Err(at(
                        key,
                        format!(
                            "site {} at {} cannot reach the coordinator at {addr}, on this machine's loopback (sites.{i}.host): set fleet.tunnel = true, or give fleet.coordinator an address that site can reach",
                            site.name, site.host
                        ),
                    ));
                }
            }
            Ok(())
        }
        Provider::Local | Provider::Vm => Ok(()),
    }
}

/// A site host's address when it is certainly not this machine's loopback: an IP address off
/// 127.0.0.0/8 and ::1. Names are left to `fedsim check`, which dials from the site (validating
/// a scenario makes no DNS queries).
fn remote_address(host: &str) -> Option<std::net::IpAddr> {
    let ip = host.parse::<std::net::IpAddr>().ok()?;
    (!ip.is_loopback()).then_some(ip)
}

/// A site name names files and folders on the controller and on the site.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}
