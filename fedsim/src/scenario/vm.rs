//! `[vm]`: the virtual machines of provider "vm".

use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

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

/// Sane VM sizes.
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
    Ok(())
}
