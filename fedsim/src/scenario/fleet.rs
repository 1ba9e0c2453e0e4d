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
    /// The site's name; with `count` > 1 the prefix of its sites' names (`<name>-1`..).
    pub name: String,
    /// Sites on this host (default 1): `count = 250` runs 250 sites there, each its own agent
    /// process and folder, under one supervisor on the host.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: usize,
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

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl SiteSpec {
    /// The sites this entry stands for, one spec each (count 1): itself when its count is 1,
    /// else `<name>-1`..`<name>-<count>` on its host.
    pub fn expand(&self) -> Vec<SiteSpec> {
        if self.count <= 1 {
            return vec![SiteSpec {
                count: 1,
                ..self.clone()
            }];
        }
        (1..=self.count)
            .map(|k| SiteSpec {
                name: format!("{}-{k}", self.name),
                count: 1,
                ..self.clone()
            })
            .collect()
    }
}

/// One spec per site, in the order of the sites (`[[sites]]` entries expanded by their
/// `count`), and for each the entry (host) it came from.
pub fn expand_sites(entries: &[SiteSpec]) -> Vec<(usize, SiteSpec)> {
    entries
        .iter()
        .enumerate()
        .flat_map(|(i, e)| e.expand().into_iter().map(move |s| (i, s)))
        .collect()
}

/// `[[sites]]`: one per site for provider "ssh", none otherwise; unique, usable names. Then the
/// coordinator's address.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    match s.fleet.provider {
        Provider::Ssh => {
            for (i, site) in s.sites.iter().enumerate() {
                if site.count == 0 {
                    return Err(at(
                        &format!("sites.{i}.count"),
                        "expected the number of sites on this host, 1 or more, found 0".into(),
                    ));
                }
                if site.count > 1 && site.cut_command.is_some() {
                    return Err(at(
                        &format!("sites.{i}.cut_command"),
                        format!("`cut_command` cuts one site's link, but this entry's {} sites share their host's (count = {}): a site to cut needs a host of its own (count = 1)", site.count, site.count),
                    ));
                }
                if site.count > 1 && site.env.is_some() {
                    return Err(at(
                        &format!("sites.{i}.env"),
                        format!("`env` gives one site's credentials, but this entry stands for {} sites (count = {}): give each site with its own credentials its own [[sites]] entry", site.count, site.count),
                    ));
                }
            }
            let total: usize = s.sites.iter().map(|x| x.count).sum();
            if total != s.partition.sites {
                let counted = s.sites.iter().any(|x| x.count != 1);
                return Err(at(
                    "partition.sites",
                    if counted {
                        format!(
                            "provider \"ssh\" needs a site on a host for every site: partition.sites = {}, but the [[sites]] entries' counts add up to {total} (each entry is `count` sites, 1 unless given)",
                            s.partition.sites
                        )
                    } else {
                        format!(
                            "provider \"ssh\" needs one [[sites]] entry per site (or entries whose `count`s add up to the sites): partition.sites = {}, but {} [[sites]] are given",
                            s.partition.sites,
                            s.sites.len()
                        )
                    },
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
    let expanded = expand_sites(&s.sites);
    for (i, site) in expanded.iter().map(|(i, x)| (*i, x)) {
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
                    "duplicate site name {:?}: every site needs its own name (an entry with `count` = N names its sites <name>-1..<name>-N)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// An ssh scenario for `sites` sites over the `[[sites]]` entries given.
    fn ssh(sites: usize, entries: &str) -> Result<Scenario, ScenarioError> {
        let text = format!(
            "[scenario]\nname = \"s\"\n[data]\ngenerate = {{ kind = \"linear\", rows = 1000, cols = 2 }}\ntarget = \"y\"\n[partition]\nkind = \"horizontal\"\nsites = {sites}\n[algorithm]\nkind = \"linear_regression\"\n[fleet]\nprovider = \"ssh\"\n{entries}"
        );
        Scenario::parse(&text, Path::new("shards.toml"))
    }

    fn host(name: &str, count: Option<usize>, extra: &str) -> String {
        let count = count.map(|c| format!("count = {c}\n")).unwrap_or_default();
        format!("[[sites]]\nname = \"{name}\"\n{count}host = \"127.0.0.1\"\nuser = \"u\"\nkey = \"k\"\n{extra}")
    }

    #[test]
    fn an_entry_with_a_count_stands_for_that_many_named_sites() {
        let s = ssh(
            5,
            &format!("{}{}", host("a", Some(3), ""), host("b", None, "")),
        )
        .unwrap_err();
        assert!(s.to_string().contains("add up to 4"), "{s}");
        let s = ssh(
            4,
            &format!("{}{}", host("a", Some(3), ""), host("b", None, "")),
        )
        .unwrap();
        assert_eq!(s.site_names(), ["a-1", "a-2", "a-3", "b"]);
        let groups: Vec<usize> = expand_sites(&s.sites).iter().map(|(h, _)| *h).collect();
        assert_eq!(groups, [0, 0, 0, 1]);
        // Written back as it was given: no count where it is 1.
        let text = toml::to_string(&View { sites: &s.sites }).unwrap();
        assert_eq!(text.matches("count").count(), 1, "{text}");
    }

    #[derive(Serialize)]
    struct View<'a> {
        sites: &'a [SiteSpec],
    }

    #[test]
    fn a_bad_count_is_named_in_the_file() {
        let e = ssh(
            2,
            &format!("{}{}", host("a", Some(0), ""), host("b", Some(2), "")),
        )
        .unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("shards.toml:")
                && e.contains("sites.0.count")
                && e.contains("1 or more, found 0"),
            "{e}"
        );
        let e = ssh(3, &host("a", Some(2), "")).unwrap_err().to_string();
        assert!(
            e.starts_with("shards.toml:")
                && e.contains("partition.sites")
                && e.contains("partition.sites = 3, but the [[sites]] entries' counts add up to 2"),
            "{e}"
        );
        let e = ssh(2, &host("a", Some(2), "env = \"a.env\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sites.0.env") && e.contains("count = 2"), "{e}");
        let e = ssh(2, &host("a", Some(2), "cut_command = \"true\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sites.0.cut_command"), "{e}");
        // `a-1` from an entry with a count, and an entry of that name: one name, twice.
        let e = ssh(
            3,
            &format!("{}{}", host("a", Some(2), ""), host("a-1", None, "")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sites.1.name") && e.contains("duplicate"), "{e}");
    }
}
