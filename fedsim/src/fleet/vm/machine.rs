//! One site's VM: a copy-on-write overlay on the image, direct kernel boot, its own user-mode
//! network with `restrict=on` (no route anywhere, not even to another site's forwarded port; the
//! coordinator is reached through the SSH reverse tunnel), SSH forwarded from a loopback port,
//! the serial console into a file and the monitor on a Unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::image::Image;
use super::VmError;
use crate::scenario::{Accel, VmSpec};

/// Where a VM's files are and how to reach it; what a fleet that stays up writes down.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineState {
    pub site: String,
    /// The loopback port forwarded to the VM's SSH.
    pub port: u16,
    pub pid: u32,
    /// Overlay, console, monitor socket and qemu's own log.
    pub dir: PathBuf,
}

pub struct Machine {
    pub state: MachineState,
    /// Present when this process started qemu (and must reap it).
    child: Option<Child>,
    /// The qemu process belongs to this run: it dies with the controller.
    owned: bool,
}

/// The accelerator to ask qemu for. KVM only where a real one is loaded: `/dev/kvm` alone may be
/// a nested backend (kvm-pvm) that cannot boot a stock kernel.
pub fn accel(wanted: Accel) -> Result<&'static str, VmError> {
    let real_kvm = (Path::new("/sys/module/kvm_intel").exists()
        || Path::new("/sys/module/kvm_amd").exists())
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
    match (wanted, real_kvm) {
        (Accel::Tcg, _) | (Accel::Auto, false) => Ok("tcg,tb-size=64"),
        (Accel::Kvm, true) | (Accel::Auto, true) => Ok("kvm"),
        (Accel::Kvm, false) => Err(VmError::Boot {
            site: "all".into(),
            reason: "[vm] accel = \"kvm\", but neither kvm_intel nor kvm_amd is loaded (or /dev/kvm is not usable); use \"auto\" or \"tcg\"".into(),
        }),
    }
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Machine {
    pub fn console(&self) -> PathBuf {
        self.state.dir.join("console.log")
    }

    fn monitor_path(&self) -> PathBuf {
        self.state.dir.join("monitor.sock")
    }

    /// Start qemu for `site` (not waiting for the boot). An `owned` VM is tied to this process's
    /// life; otherwise it stays up after this process exits (`fedsim fleet up`).
    pub fn boot(
        image: &Image,
        site: &str,
        dir: &Path,
        spec: &VmSpec,
        owned: bool,
    ) -> Result<Machine, VmError> {
        let fail = |reason: String| VmError::Boot {
            site: site.to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let overlay = dir.join("disk.qcow2");
        let _ = std::fs::remove_file(&overlay);
        let made = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&image.base)
            .arg(&overlay)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(format!("qemu-img: {e} (install Debian's qemu-utils)")))?;
        if !made.status.success() {
            return Err(fail(format!(
                "qemu-img create: {}",
                String::from_utf8_lossy(&made.stderr).trim()
            )));
        }
        let port = free_port().map_err(|e| fail(format!("no free port: {e}")))?;
        let accel = accel(spec.accel)?;
        let console = dir.join("console.log");
        let monitor = dir.join("monitor.sock");
        let _ = std::fs::remove_file(&monitor);
        let log = std::fs::File::create(dir.join("qemu.log"))
            .map_err(|e| fail(format!("qemu log: {e}")))?;
        let log2 = log.try_clone().map_err(|e| fail(e.to_string()))?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.arg("-name")
            .arg(site)
            .args(["-accel", accel, "-machine", "q35"])
            // Every instruction set the accelerator offers: qemu's default CPU (qemu64) lacks
            // SSE4.2 and AVX, and today's Python wheels (numpy 2) die on it with SIGILL.
            .args([
                "-cpu",
                if accel.starts_with("kvm") {
                    "host"
                } else {
                    "max"
                },
            ])
            .args(["-m", &spec.memory().to_string()])
            .args(["-smp", &spec.cpus.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-monitor")
            .arg(format!("unix:{},server,nowait", monitor.display()))
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .arg("-append")
            .arg(format!(
                "root=/dev/vda rw console=ttyS0 systemd.hostname={site} quiet"
            ))
            .arg("-drive")
            .arg(format!(
                "file={},format=qcow2,if=none,id=d0,cache=unsafe",
                overlay.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=d0"])
            // restrict=on: the guest gets no route out, not even to 10.0.2.2 (this host's
            // loopback, where the other sites' SSH ports are forwarded).
            .arg("-netdev")
            .arg(format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
            ))
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        if owned {
            crate::sys::children::die_with_parent(&mut cmd);
        }
        let child = cmd.spawn().map_err(|e| {
            fail(format!(
                "qemu-system-x86_64: {e} (install Debian's qemu-system-x86)"
            ))
        })?;
        if owned {
            crate::sys::children::track(child.id());
        }
        tracing::info!(
            phase = "provision",
            site,
            pid = child.id(),
            port,
            accel,
            "VM started"
        );
        Ok(Machine {
            state: MachineState {
                site: site.to_string(),
                port,
                pid: child.id(),
                dir: dir.to_path_buf(),
            },
            child: Some(child),
            owned,
        })
    }

    /// A VM another `fedsim` process started and left up.
    pub fn adopt(state: MachineState) -> Machine {
        Machine {
            state,
            child: None,
            owned: false,
        }
    }

    /// The host key the VM announced on its serial console, once it has.
    pub fn announced_host_key(&self) -> Option<String> {
        let text = std::fs::read(self.console()).ok()?;
        super::console::announced_host_key(&String::from_utf8_lossy(&text))
    }

    /// Whether qemu is still running (and is this VM's qemu, not a reused pid).
    pub fn alive(&mut self) -> bool {
        if let Some(c) = self.child.as_mut() {
            return matches!(c.try_wait(), Ok(None));
        }
        self.is_running()
    }

    /// Whether this VM's qemu runs, from /proc (for a VM another process started).
    pub fn is_running(&self) -> bool {
        std::fs::read(format!("/proc/{}/cmdline", self.state.pid))
            .map(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("qemu-system") && c.contains(&self.state.dir.display().to_string())
            })
            .unwrap_or(false)
    }

    /// A command to the qemu monitor, e.g. `set_link n0 off`.
    pub fn monitor(&self, command: &str) -> Result<String, VmError> {
        let fail = |reason: String| VmError::Boot {
            site: self.state.site.clone(),
            reason: format!("monitor: {reason}"),
        };
        let mut s = UnixStream::connect(self.monitor_path()).map_err(|e| fail(e.to_string()))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| fail(e.to_string()))?;
        s.write_all(format!("{command}\n").as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Pull the plug: SIGKILL to qemu, as a power failure.
    pub fn power_off(&mut self) {
        // SAFETY: signalling the qemu process of this VM.
        unsafe { libc::kill(self.state.pid as i32, libc::SIGKILL) };
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        } else {
            // Not our child (a fleet kept up): wait for it to be gone, so whoever asks next
            // whether it runs hears no.
            for _ in 0..200 {
                if !self.is_running() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.owned {
            crate::sys::children::untrack(self.state.pid);
        }
    }

    /// Stop the VM and remove its disk overlay (the console and logs stay).
    pub fn destroy(&mut self) {
        if self.child.is_some() || self.alive() {
            self.power_off();
        }
        // A qemu we did not start is not our child: wait for it to be gone.
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{}", self.state.pid)).exists() || self.child.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.state.dir.join("disk.qcow2"));
        let _ = std::fs::remove_file(self.monitor_path());
    }
}

impl Drop for Machine {
    /// A VM of this run does not outlive it.
    fn drop(&mut self) {
        if self.owned {
            self.destroy();
        }
    }
}
