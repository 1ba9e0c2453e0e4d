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
    /// Memory per VM: 256 MiB unless said, 1024 MiB for a platform's nodes (the scenario as
    /// resolved says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
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
            memory_mib: None,
            cpus: default_cpus(),
            accel: Accel::Auto,
            boot_timeout_secs: default_boot_timeout(),
        }
    }
}

/// A site's VM: its agent is small.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// A platform's node in a VM: Flower's SuperNode, its SuperExec and a ClientApp (each a Python
/// with numpy and gRPC) thrashed 256 MiB until the guest stopped answering SSH.
pub const PLATFORM_MEMORY_MIB: u32 = 1024;

impl VmSpec {
    /// The memory each VM gets.
    pub fn memory(&self) -> u32 {
        self.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB)
    }
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
    match v.memory_mib {
        Some(m) if !(64..=65536).contains(&m) => {
            return Err(at(
                "vm.memory_mib",
                format!("expected 64 to 65536 MiB, found {m}"),
            ))
        }
        Some(m) if m < PLATFORM_MEMORY_MIB && s.platform.is_some() && s.fleet.provider == super::Provider::Vm => {
            return Err(at(
                "vm.memory_mib",
                format!("a platform's node needs {PLATFORM_MEMORY_MIB} MiB or more in each VM (Flower's SuperNode, its SuperExec and a ClientApp thrash a smaller one), found {m}; leave it out to get {PLATFORM_MEMORY_MIB}"),
            ))
        }
        _ => {}
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
