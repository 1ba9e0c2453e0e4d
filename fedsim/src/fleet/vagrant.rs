//! The `vagrant` provider: the project's Vagrantfile (one VM per site, each on a libvirt network
//! of its own), `vagrant up` of the sites not running yet, then `vagrant ssh-config` read into
//! ssh sites. Each VM prints the SSH host key it made at first boot on its serial console, which
//! libvirt writes to a file: fedsim pins that key, so nothing is trusted on first use. The VMs
//! this process brought up are destroyed when the fleet goes; VMs that were up before (a
//! `fedsim fleet up`, or `vagrant up` by hand) stay.

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bundle::Bundle;
use crate::fleet::remote::SshFleet;
use crate::fleet::{Fleet, FleetError, SiteExit};
use crate::scenario::SiteSpec;

#[derive(Debug, thiserror::Error)]
pub enum VagrantError {
    #[error("no Vagrantfile in {} (fleet.vagrant_dir, relative to the scenario file)", dir.display())]
    NoVagrantfile { dir: PathBuf },
    #[error("`vagrant {args}` in {}: {reason}", dir.display())]
    Command {
        args: String,
        dir: PathBuf,
        reason: String,
    },
    #[error("vagrant ssh-config: host {host:?} has no {field}")]
    Incomplete { host: String, field: &'static str },
    #[error("{site} announced no SSH host key on its serial console {}: {reason}. fedsim's box announces it at every boot (provision/vm_image.sh); another box must print `FEDSIM-HOSTKEY <its ed25519 public key>` to its first serial port, since fedsim trusts no host key on first use", console.display())]
    NoHostKey {
        site: String,
        console: PathBuf,
        reason: String,
    },
    #[error("the Vagrant VMs {missing} are not up in {}: bring them up first (`fedsim fleet up -c FILE`)", dir.display())]
    NotUp { dir: PathBuf, missing: String },
    #[error("cancelled while `vagrant up` ran; the VMs it started were destroyed")]
    Cancelled,
}

impl VagrantError {
    /// The site a failure belongs to, when it is one site's.
    pub fn site(&self) -> Option<&str> {
        match self {
            VagrantError::Incomplete { host, .. } => Some(host),
            VagrantError::NoHostKey { site, .. } => Some(site),
            _ => None,
        }
    }

    /// The scenario's folder or box is wrong, or its VMs are not up where they must be.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            VagrantError::NoVagrantfile { .. }
                | VagrantError::NotUp { .. }
                | VagrantError::NoHostKey { .. }
        )
    }
}

/// `vagrant up` of several VMs under software emulation takes minutes; give up after this.
const UP_LIMIT: Duration = Duration::from_secs(1800);
/// `vagrant destroy` and the quick commands.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// One Vagrantfile's sites, `site-1` .. `site-N`, and the environment fedsim gives Vagrant.
#[derive(Debug, Clone)]
pub struct Vagrant {
    dir: PathBuf,
    sites: Vec<String>,
    /// Vagrant's state folder (`VAGRANT_DOTFILE_PATH`, else `.vagrant` next to the Vagrantfile).
    dot: PathBuf,
}

impl Vagrant {
    pub fn new(dir: &Path, count: usize) -> Result<Vagrant, VagrantError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !dir.join("Vagrantfile").is_file() {
            return Err(VagrantError::NoVagrantfile { dir });
        }
        let dot = match std::env::var_os("VAGRANT_DOTFILE_PATH") {
            Some(p) => dir.join(p),
            None => dir.join(".vagrant"),
        };
        Ok(Vagrant {
            sites: (1..=count).map(|i| format!("site-{i}")).collect(),
            dir,
            dot,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// fedsim's own files in Vagrant's state folder: consoles, the machines it started.
    pub fn state_dir(&self) -> PathBuf {
        self.dot.join("fedsim")
    }

    /// Where libvirt writes each VM's serial console (the Vagrantfile's FEDSIM_CONSOLE_DIR).
    pub fn console(&self, site: &str) -> PathBuf {
        self.dot.join("fedsim/consoles").join(format!("{site}.log"))
    }

    /// The machines fedsim brought up and has not destroyed yet, kept across a killed run.
    fn started_file(&self) -> PathBuf {
        self.dot.join("fedsim/started")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("vagrant");
        c.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .env("FEDSIM_SITES", self.sites.len().to_string())
            .env("FEDSIM_CONSOLE_DIR", self.dot.join("fedsim/consoles"));
        if std::env::var_os("FEDSIM_LIBVIRT_DRIVER").is_none() {
            // KVM only where a real one is loaded (see `vm::machine::accel`).
            let driver = match crate::fleet::vm::machine::accel(crate::scenario::Accel::Auto) {
                Ok("kvm") => "kvm",
                _ => "qemu",
            };
            c.env("FEDSIM_LIBVIRT_DRIVER", driver);
        }
        c
    }

    fn fail(&self, args: &[&str], reason: impl Into<String>) -> VagrantError {
        VagrantError::Command {
            args: args.join(" "),
            dir: self.dir.clone(),
            reason: reason.into(),
        }
    }

    /// Run a short command to its end (bounded) and return its output.
    fn output(&self, args: &[&str]) -> Result<String, VagrantError> {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| self.fail(args, format!("{e} (is Vagrant installed?)")))?;
        let out = wait_output(child, COMMAND_LIMIT).map_err(|e| self.fail(args, e))?;
        if !out.status.success() {
            // Vagrant's error spans lines ("... Please run `vagrant up` command again."):
            // all of it, clipped, not its last words.
            let err = clean(&String::from_utf8_lossy(&out.stderr));
            let err: Vec<&str> = err
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            return Err(self.fail(args, cut(&err.join(" "), 600)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The sites whose VM is running.
    pub fn running(&self) -> Result<Vec<String>, VagrantError> {
        let mut args = vec!["status", "--machine-readable"];
        args.extend(self.sites.iter().map(String::as_str));
        let text = self.output(&args)?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f.len() >= 4 && f[2] == "state" && f[3] == "running").then(|| f[1].to_string())
            })
            .collect())
    }

    /// The machines an earlier fedsim process started and could not destroy (it was killed).
    fn left_by_fedsim(&self) -> Vec<String> {
        std::fs::read_to_string(self.started_file())
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn record_started(&self, names: &[String]) {
        let mut all = self.left_by_fedsim();
        for n in names {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        let _ = std::fs::create_dir_all(self.dot.join("fedsim"));
        let _ = crate::sys::fsio::write_atomic(
            &self.started_file(),
            (all.join("\n") + "\n").as_bytes(),
        );
    }

    /// These sites are no longer fedsim's to destroy (destroyed, or kept up on purpose).
    fn forget(&self, sites: &[String]) {
        let left: Vec<String> = self
            .left_by_fedsim()
            .into_iter()
            .filter(|s| !sites.contains(s))
            .collect();
        let _ = if left.is_empty() {
            std::fs::remove_file(self.started_file())
        } else {
            crate::sys::fsio::write_atomic(
                &self.started_file(),
                (left.join("\n") + "\n").as_bytes(),
            )
        };
    }

    /// `vagrant up` of the sites not running yet, cancellable. Every line Vagrant prints goes to
    /// `log`; its steps also go to the run's log. Returns the sites it started: they are
    /// recorded before the first one boots, so even a killed run's VMs are known.
    pub fn up(&self, log: &Path) -> Result<Vec<String>, VagrantError> {
        let running = self.running()?;
        let left = self.left_by_fedsim();
        let missing: Vec<String> = self
            .sites
            .iter()
            .filter(|s| !running.contains(s))
            .cloned()
            .collect();
        // VMs a killed fedsim started are still fedsim's to destroy.
        let mut started: Vec<String> = left
            .into_iter()
            .filter(|s| running.contains(s) && self.sites.contains(s))
            .collect();
        if missing.is_empty() {
            return Ok(started);
        }
        self.record_started(&missing);
        started.extend(missing.iter().cloned());
        std::fs::create_dir_all(self.dot.join("fedsim/consoles"))
            .map_err(|e| self.fail(&["up"], format!("{}: {e}", self.dot.display())))?;
        // One machine after the other: vagrant-libvirt's parallel up races on the shared pool
        // (the box's volume, uploaded once per pool, and each domain's disk), and libvirt
        // defines the domains one at a time anyway.
        let mut args = vec!["up", "--no-tty", "--no-parallel"];
        args.extend(missing.iter().map(String::as_str));
        let began = Instant::now();
        tracing::info!(phase = "provision", sites = %missing.join(" "), dir = %self.dir.display(), "vagrant up");
        let mut child = self
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| self.fail(&args, format!("{e} (is Vagrant installed?)")))?;
        let file = std::fs::File::create(log)
            .map_err(|e| self.fail(&args, format!("{}: {e}", log.display())))?;
        let file = std::sync::Arc::new(std::sync::Mutex::new(file));
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let readers: Vec<_> = [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                false,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                true,
            ),
        ]
        .into_iter()
        .filter_map(|(stream, is_stderr)| stream.map(|s| (s, is_stderr)))
        .map(|(stream, is_stderr)| {
            let file = file.clone();
            let errors = errors.clone();
            std::thread::spawn(move || follow(stream, is_stderr, &file, &errors))
        })
        .collect();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e.to_string()),
            }
            if crate::sys::cancel::requested() {
                stop(&mut child);
                break Err("cancelled".into());
            }
            if began.elapsed() > UP_LIMIT {
                stop(&mut child);
                break Err(format!("not done after {} s", UP_LIMIT.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        for r in readers {
            let _ = r.join();
        }
        let fail = |reason: String| {
            let _ = self.destroy(&started);
            if crate::sys::cancel::requested() {
                VagrantError::Cancelled
            } else {
                self.fail(
                    &args,
                    format!("{reason} (all of Vagrant's output: {})", log.display()),
                )
            }
        };
        match status {
            Ok(s) if s.success() => {
                tracing::info!(
                    phase = "provision",
                    secs = began.elapsed().as_secs_f64(),
                    "vagrant up done"
                );
                Ok(started)
            }
            Ok(s) => {
                let errors = errors.lock().map(|e| e.join(" ")).unwrap_or_default();
                Err(fail(if errors.is_empty() {
                    s.to_string()
                } else {
                    errors
                }))
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// `vagrant destroy -f` of these sites (their disks and, with the last VM on it, each site's
    /// network go too). Cleanup: it runs even after a cancel.
    pub fn destroy(&self, sites: &[String]) -> Result<(), String> {
        if sites.is_empty() {
            return Ok(());
        }
        let mut args = vec!["destroy", "-f"];
        args.extend(sites.iter().map(String::as_str));
        // First what Vagrant never recorded: a domain of that name makes `vagrant destroy`
        // itself fail. Then what Vagrant knows, then anything still left.
        let mut problems = self.sweep_libvirt(sites, true);
        match self.output(&args) {
            Ok(_) => {
                tracing::info!(phase = "cleanup", sites = %sites.join(" "), "vagrant destroy");
            }
            Err(e) => {
                tracing::warn!(phase = "cleanup", error = %e, "vagrant destroy failed: the VMs may still run");
                problems.push(e.to_string());
            }
        }
        // A `vagrant up` stopped halfway (a cancel) may have made a disk, a domain or a network
        // it had not yet recorded, which `vagrant destroy` then does not know of.
        problems.extend(self.sweep_libvirt(sites, false));
        if problems.is_empty() {
            self.forget(sites);
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The libvirt domain name vagrant-libvirt gives a site: the project folder's name, `_`,
    /// the machine's name, with what libvirt does not take removed.
    fn domain_name(&self, site: &str) -> String {
        let folder = self
            .dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{folder}_{site}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .collect()
    }

    /// Remove what libvirt still holds of these sites: their domains (with their disks), a
    /// disk made before its domain, and each site's network once no domain uses it. Without
    /// virsh (VirtualBox) there is nothing to do. Returns what could not be removed.
    fn sweep_libvirt(&self, sites: &[String], unrecorded_only: bool) -> Vec<String> {
        if crate::sys::proc::which("virsh").is_none() {
            return Vec::new();
        }
        let domains = || -> Vec<String> {
            virsh(&["list", "--all", "--name"])
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        let pool = std::env::var("FEDSIM_LIBVIRT_POOL").unwrap_or_else(|_| "default".into());
        let mut problems = Vec::new();
        for site in sites {
            if unrecorded_only && self.domain(site).is_some() {
                continue;
            }
            let dom = self.domain_name(site);
            if domains().contains(&dom) {
                tracing::warn!(phase = "cleanup", domain = %dom, "a libvirt domain vagrant did not destroy");
                let _ = virsh(&["destroy", &dom]);
                if let Err(e) = virsh(&["undefine", &dom, "--remove-all-storage"]) {
                    problems.push(e);
                }
            }
            let volume = format!("{dom}.img");
            if virsh(&["vol-info", &volume, "--pool", &pool]).is_ok() {
                if let Err(e) = virsh(&["vol-delete", &volume, "--pool", &pool]) {
                    problems.push(e);
                }
            }
        }
        if unrecorded_only {
            return problems;
        }
        let used: Vec<String> = domains()
            .iter()
            .filter_map(|d| virsh(&["domiflist", d]).ok())
            .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect();
        for i in 1..=self.sites.len() {
            let net = format!("fedsim-site-{i}");
            if !used.contains(&net) && virsh(&["net-info", &net]).is_ok() {
                let _ = virsh(&["net-destroy", &net]);
                if let Err(e) = virsh(&["net-undefine", &net]) {
                    problems.push(e);
                }
            }
        }
        problems
    }

    /// The running sites as ssh sites, their host keys (read from their consoles) pinned in
    /// `known_hosts`.
    pub fn ssh_sites(&self, known_hosts: &Path) -> Result<Vec<SiteSpec>, VagrantError> {
        let mut args = vec!["ssh-config"];
        args.extend(self.sites.iter().map(String::as_str));
        let specs = parse_ssh_config(&self.output(&args)?, known_hosts)?;
        let mut lines = String::new();
        for s in &specs {
            let key = self.host_key(&s.name)?;
            let host = if s.port == 22 {
                s.host.clone()
            } else {
                format!("[{}]:{}", s.host, s.port)
            };
            lines.push_str(&format!("{host} {key}\n"));
        }
        crate::sys::fsio::write_atomic(known_hosts, lines.as_bytes())
            .map_err(|e| self.fail(&["ssh-config"], format!("{}: {e}", known_hosts.display())))?;
        Ok(specs)
    }

    /// The key a site's VM announced on its console. The VM answered SSH, so the unit that
    /// prints it (ordered before sshd) has run; a few seconds cover the console's buffering.
    fn host_key(&self, site: &str) -> Result<String, VagrantError> {
        let console = self.console(site);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reason = match std::fs::read(&console) {
                Ok(text) => {
                    match super::vm::console::announced_host_key(&String::from_utf8_lossy(&text)) {
                        Some(k) => return Ok(k),
                        None => "the console holds no FEDSIM-HOSTKEY line".to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(VagrantError::NoHostKey {
                    site: site.into(),
                    console,
                    reason,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The libvirt domain of a site (its id in Vagrant's state folder).
    fn domain(&self, site: &str) -> Option<String> {
        std::fs::read_to_string(self.dot.join("machines").join(site).join("libvirt/id"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Take a site's network link down (or up) in libvirt, as a cable pulled.
    pub fn set_link(&self, site: &str, up: bool) -> Result<(), String> {
        let domain = self.domain(site).ok_or_else(|| {
            format!("no libvirt domain recorded for {site} (only libvirt VMs can be cut)")
        })?;
        let list = virsh(&["domiflist", &domain])?;
        let iface = list
            .lines()
            .skip(2)
            .find_map(|l| l.split_whitespace().next().map(str::to_string))
            .ok_or_else(|| format!("{site}'s VM has no network interface"))?;
        virsh(&[
            "domif-setlink",
            &domain,
            &iface,
            if up { "up" } else { "down" },
        ])
        .map(|_| ())
    }
}

/// Keep each line Vagrant writes (after the last carriage return: progress bars redraw the
/// line), in the file and, for its steps and errors, in the run's log.
/// Follow one of Vagrant's streams into its log. What Vagrant writes on stderr is its error,
/// kept whole (clipped) for the message; on stdout, lines that mention an error are warnings.
fn follow(
    stream: Box<dyn std::io::Read + Send>,
    is_stderr: bool,
    file: &std::sync::Mutex<std::fs::File>,
    errors: &std::sync::Mutex<Vec<String>>,
) {
    let reader = std::io::BufReader::new(stream);
    for line in reader.split(b'\n').map_while(Result::ok) {
        let line = clean(&String::from_utf8_lossy(&line));
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(mut f) = file.lock() {
            let _ = writeln!(f, "{line}");
        }
        let step = line.trim_start();
        if step.starts_with("==>") {
            tracing::info!(phase = "provision", source_tool = "vagrant", "{step}");
        } else if is_stderr || step.to_ascii_lowercase().contains("error") {
            tracing::warn!(phase = "provision", source_tool = "vagrant", "{step}");
            if let Ok(mut e) = errors.lock() {
                if e.len() < 24 {
                    e.push(cut(step, 200));
                }
            }
        }
    }
}

/// `virsh ARGS` on the system libvirt (where vagrant-libvirt puts its VMs): its output, or
/// what it said went wrong.
fn virsh(args: &[&str]) -> Result<String, String> {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("virsh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "virsh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Vagrant's words, at most `most` characters of them.
fn cut(text: &str, most: usize) -> String {
    let mut s: String = text.chars().take(most).collect();
    if text.chars().count() > most {
        s.push('…');
    }
    s
}

/// A line as shown last: its last segment after a carriage return that shows anything, without
/// terminal escapes.
fn clean(text: &str) -> String {
    text.lines()
        .map(|l| {
            l.split('\r')
                .map(crate::logs::plain_text)
                .rfind(|p| !p.trim().is_empty())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Interrupt Vagrant (its whole process group) so it can clean up, then kill it.
fn stop(child: &mut Child) {
    let group = child.id() as i32;
    // SAFETY: signals to a process group this process created.
    unsafe { libc::kill(-group, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = child.wait();
}

/// A child's output, or an error once `limit` has passed (the child is then killed).
fn wait_output(mut child: Child, limit: Duration) -> Result<std::process::Output, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                stop(&mut child);
                return Err(format!("no answer within {} s", limit.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Parse `vagrant ssh-config` output: one site per `Host` block, in the order given.
pub fn parse_ssh_config(text: &str, known_hosts: &Path) -> Result<Vec<SiteSpec>, VagrantError> {
    let mut sites: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let value = value.trim().trim_matches('"').to_string();
        if key.eq_ignore_ascii_case("Host") {
            sites.push((value, Vec::new()));
        } else if let Some((_, fields)) = sites.last_mut() {
            fields.push((key.to_ascii_lowercase(), value));
        }
    }
    sites
        .into_iter()
        .map(|(host, fields)| {
            let get = |k: &'static str| {
                fields
                    .iter()
                    .find(|(f, _)| f == k)
                    .map(|(_, v)| v.clone())
                    .ok_or(VagrantError::Incomplete {
                        host: host.clone(),
                        field: k,
                    })
            };
            Ok(SiteSpec {
                host: get("hostname")?,
                port: get("port").ok().and_then(|p| p.parse().ok()).unwrap_or(22),
                user: get("user")?,
                key: PathBuf::from(get("identityfile")?),
                known_hosts: Some(known_hosts.to_path_buf()),
                env: None,
                cut_command: None,
                name: host,
                count: 1,
            })
        })
        .collect()
}

/// The VMs this process brought up: destroyed when dropped (the run's end, a failure, a
/// cancel). VMs that were up before are not touched.
pub struct Machines {
    vagrant: Vagrant,
    started: Vec<String>,
}

impl Machines {
    /// Bring the sites up (when `boot`; otherwise they must be up already) and describe them as
    /// ssh sites, their host keys pinned in `known_hosts`.
    pub fn up(
        vagrant: Vagrant,
        boot: bool,
        log: &Path,
        known_hosts: &Path,
    ) -> Result<(Machines, Vec<SiteSpec>), VagrantError> {
        let started = if boot {
            vagrant.up(log)?
        } else {
            let running = vagrant.running()?;
            let missing: Vec<&str> = vagrant
                .sites
                .iter()
                .filter(|s| !running.contains(s))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(VagrantError::NotUp {
                    dir: vagrant.dir.clone(),
                    missing: missing.join(", "),
                });
            }
            Vec::new()
        };
        let machines = Machines { vagrant, started };
        // A cut an earlier run could not undo (it was killed) would leave a site unreachable.
        for site in &machines.vagrant.sites {
            if machines.vagrant.domain(site).is_some() {
                let _ = machines.vagrant.set_link(site, true);
            }
        }
        let specs = machines.vagrant.ssh_sites(known_hosts)?;
        Ok((machines, specs))
    }

    /// Keep the VMs up past this process (`fedsim fleet up`): no later run destroys them.
    pub fn keep(mut self) {
        self.vagrant.forget(&std::mem::take(&mut self.started));
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        if let Err(e) = self.vagrant.destroy(&self.started) {
            tracing::warn!(phase = "cleanup", error = %e, "Vagrant VMs may be left");
        }
    }
}

/// Sites in Vagrant VMs: the ssh fleet on them, and the VMs this run brought up.
pub struct VagrantFleet {
    /// First, so its SSH sessions close before the VMs go.
    inner: SshFleet,
    machines: Machines,
    /// Sites whose link a fault took down: back up before the agents are stopped.
    cut: Vec<String>,
}

impl VagrantFleet {
    pub fn new(inner: SshFleet, machines: Machines) -> VagrantFleet {
        VagrantFleet {
            inner,
            machines,
            cut: Vec::new(),
        }
    }
}

impl Fleet for VagrantFleet {
    fn install(&mut self, bundles: &mut [Bundle]) -> Result<(), FleetError> {
        self.inner.install(bundles)
    }
    fn start(&mut self, dial: &super::Dial) -> Result<(), FleetError> {
        self.inner.start(dial)
    }
    fn dead_site(&mut self) -> Option<(String, String)> {
        self.inner.dead_site()
    }
    fn stop(&mut self, grace: Duration) -> Vec<SiteExit> {
        for site in std::mem::take(&mut self.cut) {
            if let Err(e) = self.machines.vagrant.set_link(&site, true) {
                tracing::warn!(phase = "finish", %site, error = %e, "link not restored");
            }
            self.inner.set_quiet(&site, false);
        }
        self.inner.stop(grace)
    }
    fn collect_logs(&mut self, dest: &Path) -> Result<Vec<String>, FleetError> {
        self.inner.collect_logs(dest)
    }
    fn kill(&mut self, site: &str) -> Result<(), FleetError> {
        self.inner.kill(site)
    }
    /// The VM's link goes down in libvirt; the coordinator notices by the missing heartbeats.
    fn cut(&mut self, site: &str) -> Result<(), FleetError> {
        self.machines
            .vagrant
            .set_link(site, false)
            .map_err(|reason| FleetError::Start {
                site: site.into(),
                reason,
            })?;
        self.cut.push(site.to_string());
        self.inner.set_quiet(site, true);
        Ok(())
    }
    fn pids(&mut self) -> Vec<(String, u32)> {
        self.inner.pids()
    }
    fn location(&self, site: &str) -> Option<String> {
        self.inner
            .location(site)
            .map(|l| format!("Vagrant VM {site}: {l}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from `vagrant ssh-config` with the libvirt provider and two VMs.
    const RECORDED: &str = include_str!("../../../test_data/vagrant_ssh_config.txt");

    #[test]
    fn parses_recorded_ssh_config() {
        let sites = parse_ssh_config(RECORDED, Path::new("kh")).unwrap();
        assert_eq!(sites.len(), 2);
        assert_eq!(sites[0].name, "site-1");
        assert_eq!(sites[0].host, "192.168.121.23");
        assert_eq!(sites[0].port, 22);
        assert_eq!(sites[0].user, "vagrant");
        assert_eq!(
            sites[0].key,
            PathBuf::from("/home/ana/fedsim/.vagrant/machines/site-1/libvirt/private_key")
        );
        assert_eq!(sites[1].name, "site-2");
        assert_eq!(sites[1].host, "127.0.0.1");
        assert_eq!(sites[1].port, 2200);
        assert_eq!(
            sites[1].key,
            PathBuf::from("/home/ana/my vms/.vagrant/machines/site-2/virtualbox/private_key")
        );
        assert!(sites
            .iter()
            .all(|s| s.known_hosts.as_deref() == Some(Path::new("kh"))));
    }

    #[test]
    fn incomplete_block_is_named() {
        let e = parse_ssh_config("Host site-1\n  User vagrant\n", Path::new("kh")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vagrant ssh-config: host \"site-1\" has no hostname"
        );
    }

    #[test]
    fn progress_bars_keep_their_last_state() {
        let raw = "==> site-1: Uploading\r\u{1b}[KProgress: 0%\r\u{1b}[KProgress: 100%\r\u{1b}[K\n==> site-1: Creating image";
        assert_eq!(clean(raw), "Progress: 100%\n==> site-1: Creating image");
    }

    #[test]
    fn no_vagrantfile_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Vagrant::new(tmp.path(), 2).unwrap_err();
        assert!(e.to_string().starts_with("no Vagrantfile in "), "{e}");
    }
}
