//! `[vm]`: the virtual machines of provider "vm", and `[[links]]`: the network each site is
//! behind (latency, jitter, loss, bandwidth), applied with netem inside the site's VM.

use serde::{Deserialize, Serialize};

use super::{Locate, Provider, Scenario, ScenarioError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    /// KVM where a real one is loaded (kvm_intel or kvm_amd), software emulation otherwise.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Memory per VM.
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    #[serde(default)]
    pub accel: Accel,
    /// How long all VMs may take to boot until SSH answers (software emulation on 2 cores:
    /// about 30 s for one VM, 140 s for four).
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout_secs: f64,
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec {
            memory_mib: default_memory(),
            cpus: default_cpus(),
            accel: Accel::Auto,
            boot_timeout_secs: default_boot_timeout(),
        }
    }
}

fn default_memory() -> u32 {
    256
}
fn default_cpus() -> u32 {
    1
}
fn default_boot_timeout() -> f64 {
    600.0
}

/// The network one site is behind: what it sends is delayed, jittered, dropped and rate-limited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub site: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_kbit: Option<f64>,
}

impl LinkSpec {
    /// The netem arguments (`delay 50ms 5ms loss 1% rate 1000kbit`).
    pub fn netem(&self) -> String {
        let mut a = Vec::new();
        if self.delay_ms.is_some() || self.jitter_ms.is_some() {
            a.push(format!("delay {}ms", self.delay_ms.unwrap_or(0.0)));
            if let Some(j) = self.jitter_ms {
                a.push(format!("{j}ms"));
            }
        }
        if let Some(l) = self.loss_pct {
            a.push(format!("loss {l}%"));
        }
        if let Some(r) = self.rate_kbit {
            a.push(format!("rate {r}kbit"));
        }
        a.join(" ")
    }

    /// For people: `50 ms +- 5 ms, 1% loss, 1000 kbit/s`.
    pub fn describe(&self) -> String {
        let mut a = Vec::new();
        if let Some(d) = self.delay_ms {
            a.push(match self.jitter_ms {
                Some(j) => format!("{d} ms +- {j} ms"),
                None => format!("{d} ms"),
            });
        }
        if let Some(l) = self.loss_pct {
            a.push(format!("{l}% loss"));
        }
        if let Some(r) = self.rate_kbit {
            a.push(format!("{r} kbit/s"));
        }
        a.join(", ")
    }
}

/// Sane VM sizes; links only where they can be applied, for real sites, with real numbers.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let v = &s.vm;
    if !(64..=65536).contains(&v.memory_mib) {
        return Err(at(
            "vm.memory_mib",
            format!("expected 64 to 65536 MiB, found {}", v.memory_mib),
        ));
    }
    if !(1..=64).contains(&v.cpus) {
        return Err(at("vm.cpus", format!("expected 1 to 64, found {}", v.cpus)));
    }
    if !(v.boot_timeout_secs.is_finite() && v.boot_timeout_secs > 0.0) {
        return Err(at(
            "vm.boot_timeout_secs",
            format!("expected seconds > 0, found {}", v.boot_timeout_secs),
        ));
    }
    if s.links.is_empty() {
        return Ok(());
    }
    if s.fleet.provider != Provider::Vm {
        return Err(at(
            "links",
            format!(
                "link conditions need provider \"vm\": they are applied with netem inside each site's VM, and provider \"{}\" has no network of its own to shape (this machine's kernel has no netem)",
                s.fleet.provider
            ),
        ));
    }
    let names: Vec<String> = (1..=s.partition.sites)
        .map(|i| format!("site-{i}"))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (i, l) in s.links.iter().enumerate() {
        let key = |k: &str| format!("links.{i}.{k}");
        if !names.contains(&l.site) {
            return Err(at(
                &key("site"),
                format!("no site {:?}; sites are {}", l.site, names.join(", ")),
            ));
        }
        if !seen.insert(l.site.as_str()) {
            return Err(at(
                &key("site"),
                format!("site {:?} has two [[links]]; give one per site", l.site),
            ));
        }
        for (k, v, max) in [
            ("delay_ms", l.delay_ms, 60_000.0),
            ("jitter_ms", l.jitter_ms, 60_000.0),
            ("loss_pct", l.loss_pct, 100.0),
            ("rate_kbit", l.rate_kbit, 1e8),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0 && v <= max) || (k == "rate_kbit" && v < 1.0) {
                    return Err(at(
                        &key(k),
                        format!(
                            "expected a number from {} to {max}, found {v}",
                            if k == "rate_kbit" { 1 } else { 0 }
                        ),
                    ));
                }
            }
        }
        if l.netem().is_empty() {
            return Err(at(
                &format!("links.{i}"),
                "a link needs at least one of delay_ms, jitter_ms, loss_pct, rate_kbit".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_arguments_and_words() {
        let l = LinkSpec {
            site: "site-1".into(),
            delay_ms: Some(50.0),
            jitter_ms: Some(5.0),
            loss_pct: Some(1.0),
            rate_kbit: Some(1000.0),
        };
        assert_eq!(l.netem(), "delay 50ms 5ms loss 1% rate 1000kbit");
        assert_eq!(l.describe(), "50 ms +- 5 ms, 1% loss, 1000 kbit/s");
    }
}
