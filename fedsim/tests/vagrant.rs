//! Sites in Vagrant VMs (libvirt), end to end: fedsim's own box, `fedsim fleet up` on the
//! project's Vagrantfile, `fedsim check`, a run that matches the reference, the isolation probe
//! from inside a site, a cut link found by the heartbeats, `fedsim fleet down`, and a run
//! cancelled while `vagrant up` boots its VMs: nothing is left (no domain, network, disk or
//! qemu). libvirtd and virtlogd are started by the test inside a network namespace it creates, so
//! the sites' networks exist only there. Needs root, vagrant, vagrant-libvirt, libvirt and the
//! image's tools (`.ci/run` installs them); says SKIPPED otherwise.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn have(p: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
        .unwrap_or(false)
}

/// Whether a live process (not a zombie) has this name.
fn running(name: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            return false;
        };
        &stat[open + 1..close] == name && !stat[close + 1..].trim_start().starts_with('Z')
    })
}

fn succeeds(c: &mut Command) -> bool {
    c.status().is_ok_and(|s| s.success())
}

/// A libvirt of the test's own: its daemons in a network namespace, a storage pool in the
/// test's directory. Everything goes when dropped.
struct Libvirt {
    ns: String,
    pool: String,
    dir: tempfile::TempDir,
}

impl Libvirt {
    fn start() -> Option<Libvirt> {
        // SAFETY: geteuid reads a process attribute.
        let root = unsafe { libc::geteuid() } == 0;
        let tools = [
            "vagrant",
            "libvirtd",
            "virtlogd",
            "virsh",
            "ip",
            "qemu-system-x86_64",
            "mmdebstrap",
            "syslinux",
        ];
        if !root || !tools.iter().all(|t| have(t)) {
            eprintln!(
                "SKIPPED: Vagrant tests need root, {} (.ci/run installs them)",
                tools.join(", ")
            );
            return None;
        }
        if running("libvirtd") {
            eprintln!("SKIPPED: a libvirtd already runs here; this test starts its own inside a network namespace");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // libvirt's qemu runs as its own user: it must reach the pool's disks.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let id = std::process::id();
        let lv = Libvirt {
            ns: format!("fedsim-vt-{id}"),
            pool: format!("fedsim-test-{id}"),
            dir,
        };
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        assert!(ok(Command::new("ip").args(["netns", "add", &lv.ns])));
        assert!(ok(Command::new("ip").args([
            "netns", "exec", &lv.ns, "ip", "link", "set", "lo", "up"
        ])));
        for daemon in ["virtlogd", "libvirtd"] {
            let pid = lv.dir.path().join(format!("{daemon}.pid"));
            assert!(
                ok(lv.in_ns(daemon).arg("-d").arg("-p").arg(&pid)),
                "{daemon} starts"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(Command::new("virsh")
            .args(["-c", "qemu:///system", "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()))
        {
            assert!(Instant::now() < deadline, "libvirtd answers within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        let pool = lv.dir.path().join("pool");
        std::fs::create_dir(&pool).unwrap();
        assert!(ok(lv
            .virsh(&["pool-define-as", &lv.pool, "dir", "--target"])
            .arg(&pool)));
        assert!(succeeds(&mut lv.virsh(&["pool-start", &lv.pool])));
        Some(lv)
    }

    fn in_ns(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    fn virsh(&self, args: &[&str]) -> Command {
        let mut c = Command::new("virsh");
        c.args(["-c", "qemu:///system"]).args(args);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    fn virsh_out(&self, args: &[&str]) -> String {
        let o = Command::new("virsh")
            .args(["-c", "qemu:///system"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn vagrant_home(&self) -> PathBuf {
        self.dir.path().join("vagrant.d")
    }

    /// A command in the namespace with Vagrant pointed at the test's home and pool.
    fn with_env(&self, mut c: Command, cwd: &Path) -> Command {
        c.current_dir(cwd)
            .env("VAGRANT_HOME", self.vagrant_home())
            .env("FEDSIM_LIBVIRT_POOL", &self.pool)
            .env_remove("VAGRANT_DOTFILE_PATH")
            .env_remove("FEDSIM_LIBVIRT_DRIVER");
        c
    }

    fn fedsim(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut c = self.with_env(self.in_ns(bin()), cwd);
        c.args(args).output().unwrap()
    }

    /// What this test's VMs left behind: domains, the sites' networks, disks, qemu processes.
    fn leftovers(&self, project: &str) -> Vec<String> {
        let mut left = Vec::new();
        for d in self.virsh_out(&["list", "--all", "--name"]).lines() {
            if d.starts_with(project) {
                left.push(format!("domain {d}"));
            }
        }
        for n in self.virsh_out(&["net-list", "--all", "--name"]).lines() {
            if n.starts_with("fedsim-site-") {
                left.push(format!("network {n}"));
            }
        }
        for v in self.virsh_out(&["vol-list", &self.pool]).lines() {
            if v.contains(project) {
                left.push(format!("volume {}", v.trim()));
            }
        }
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.starts_with("/usr/bin/qemu-system") && cmd.contains(&format!("guest={project}"))
            {
                left.push(format!("qemu {}", e.file_name().to_string_lossy()));
            }
        }
        left
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        // Whatever a failed test left: its domains and networks, then the pool and daemons.
        for d in self.virsh_out(&["list", "--all", "--name"]).lines() {
            if !d.trim().is_empty() {
                let _ = self.virsh(&["destroy", d]).status();
                let _ = self
                    .virsh(&["undefine", d, "--remove-all-storage"])
                    .status();
            }
        }
        for n in self.virsh_out(&["net-list", "--all", "--name"]).lines() {
            if n.starts_with("fedsim-site-") {
                let _ = self.virsh(&["net-destroy", n]).status();
                let _ = self.virsh(&["net-undefine", n]).status();
            }
        }
        let _ = self.virsh(&["pool-destroy", &self.pool]).status();
        let _ = self.virsh(&["pool-undefine", &self.pool]).status();
        for daemon in ["libvirtd", "virtlogd"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.path().join(format!("{daemon}.pid")))
            {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: signals a daemon this test started.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Run `command` as root inside a site's VM over SSH (pinned host key, the box's key).
fn in_site(lv: &Libvirt, known_hosts: &Path, ip: &str, command: &str) -> (i32, String) {
    let key = lv
        .vagrant_home()
        .join("boxes/fedsim-VAGRANTSLASH-bookworm/0/libvirt/id_ed25519");
    let o = lv
        .in_ns("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(&key)
        .arg(format!("root@{ip}"))
        .arg(command)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &*String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn vagrant_sites_boot_from_fedsims_box_stay_isolated_and_leave_nothing_behind() {
    let Some(lv) = Libvirt::start() else {
        return;
    };
    let tmp = lv.dir.path().to_path_buf();

    // fedsim's box: self-contained, added to the test's Vagrant home.
    let o = fedsim(&tmp, &["vm", "box", "-q"]);
    assert!(o.status.success(), "vm box: {}", stderr(&o));
    let boxfile = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let o = lv
        .with_env(Command::new("vagrant"), &tmp)
        .args(["box", "add", "--name", "fedsim/bookworm", &boxfile])
        .output()
        .unwrap();
    assert!(o.status.success(), "vagrant box add: {}", stderr(&o));

    // The project's Vagrantfile, as a user has it, and a 2-site scenario next to it.
    let project = tmp.join("proj");
    std::fs::create_dir(&project).unwrap();
    std::fs::copy(root().join("Vagrantfile"), project.join("Vagrantfile")).unwrap();
    let body = format!(
        "[scenario]\nname = \"vagrant-ols\"\nseed = 4\n[data]\npath = \"{}\"\ntarget = \"progression\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"linear_regression\"\n[fleet]\nprovider = \"vagrant\"\n[federation]\nconnect_timeout_secs = 120\nround_timeout_secs = 300\n[compare]\nreference = \"{}\"\n",
        test_data("diabetes.csv").display(),
        test_data("reference.jsonl").display()
    );
    let cfg = scenario(&project, "s", &body);
    let cfg_s = cfg.to_str().unwrap();

    // Up, kept for the runs below.
    let began = Instant::now();
    let o = lv.fedsim(&project, &["fleet", "up", "-q", "-c", cfg_s]);
    assert!(o.status.success(), "fleet up: {}", stderr(&o));
    eprintln!(
        "fleet up of 2 Vagrant VMs: {:.0} s",
        began.elapsed().as_secs_f64()
    );
    struct Down<'a>(&'a Libvirt, &'a Path, &'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .fedsim(self.1, &["fleet", "down", "-q", "-c", self.2]);
        }
    }
    let down = Down(&lv, &project, cfg_s);
    // libvirt's qemu with the Vagrantfile's 64 MiB translation cache, not its 1 GiB default.
    let xml = lv.virsh_out(&["dumpxml", "proj_site-1"]);
    assert!(
        xml.contains("<tb-cache unit='KiB'>65536</tb-cache>"),
        "{xml}"
    );

    let o = lv.fedsim(&project, &["check", "-c", cfg_s]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "check: {table}{}", stderr(&o));
    assert!(
        table.contains("site-1") && table.contains("site-2"),
        "{table}"
    );

    // The run: the reference's numbers; host keys pinned from the consoles, the sites reached
    // through the tunnels (the default for vagrant).
    let out = tmp.join("run");
    let o = lv.fedsim(
        &project,
        &["run", "-q", "-c", cfg_s, "--out", out.to_str().unwrap()],
    );
    let s = expect_status(&o, &out, Status::Succeeded);
    assert!(
        s.reference.as_ref().expect("a reference").comparison.passed,
        "{}",
        pretty(&s)
    );
    let location = s.sites[0].location.as_deref().expect("a location");
    assert!(location.starts_with("Vagrant VM site-1"), "{location}");
    let known_hosts = out.join("known_hosts");
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    let ips: Vec<String> = pinned
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(ips.len(), 2, "{pinned}");
    for (i, line) in pinned.lines().enumerate() {
        let console = std::fs::read_to_string(
            project.join(format!(".vagrant/fedsim/consoles/site-{}.log", i + 1)),
        )
        .unwrap();
        let key: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert!(
            console.contains(&format!("FEDSIM-HOSTKEY {}", key.join(" "))),
            "the pinned key is the one site-{} announced",
            i + 1
        );
    }
    let log = std::fs::read_to_string(out.join("logs/controller.jsonl")).unwrap();
    assert_eq!(log.matches("reverse tunnel open").count(), 2, "{log}");
    let up = lv.virsh_out(&["list", "--name"]);
    assert_eq!(
        up.lines().filter(|d| d.starts_with("proj_")).count(),
        2,
        "a run leaves the VMs of `fleet up` up: {up}"
    );

    // Isolation: site-1 has no route out, and even with one added through this host it
    // reaches site-2 neither by TCP (its SSH) nor by ping: the host forwards nothing between
    // the sites' networks.
    let (code, routes) = in_site(&lv, &known_hosts, &ips[0], "ip -4 route");
    assert_eq!(code, 0, "{routes}");
    assert!(!routes.contains("default"), "no way out: {routes}");
    let gw1 = {
        let mut p: Vec<&str> = ips[0].split('.').collect();
        p[3] = "1";
        p.join(".")
    };
    let probe = format!(
        "ip route add default via {gw1}; nc -z -w 3 {ip2} 22 && echo REACHED-SITE-2; ping -c 1 -W 2 {ip2} >/dev/null && echo PINGED-SITE-2; ip route del default; true",
        ip2 = ips[1]
    );
    let (code, said) = in_site(&lv, &known_hosts, &ips[0], &probe);
    assert_eq!(code, 0, "{said}");
    assert!(
        !said.contains("REACHED") && !said.contains("PINGED"),
        "site-1 got through: {said}"
    );

    // A cut link is found by the heartbeats, and the link is back for the next run.
    let cut_cfg = scenario(
        &project,
        "cut",
        &(body.replace("[federation]\n", "[federation]\nheartbeat_secs = 0.5\n")
            + "[[faults]]\nsite = \"site-2\"\nkind = \"cut\"\nround = 2\n"),
    );
    let cut_out = tmp.join("cut");
    let o = lv.fedsim(
        &project,
        &[
            "run",
            "-q",
            "-c",
            cut_cfg.to_str().unwrap(),
            "--out",
            cut_out.to_str().unwrap(),
        ],
    );
    let s = expect_status(&o, &cut_out, Status::Failed);
    let error = s.error.as_ref().expect("an error");
    assert_eq!(error.site.as_deref(), Some("site-2"));
    let msg = &error.message;
    assert!(
        msg.contains("round 2") && msg.contains("no heartbeat for 2.0 s"),
        "{msg}"
    );
    let (code, _) = in_site(&lv, &known_hosts, &ips[1], "true");
    assert_eq!(code, 0, "site-2's link is up again");

    // Down: nothing of the fleet is left.
    drop(down);
    assert_eq!(lv.leftovers("proj_"), Vec::<String>::new());

    // What a `vagrant up` stopped halfway makes before Vagrant records it (a disk, a domain, a
    // network): `fleet down` sweeps it too, though `vagrant destroy` knows nothing of it.
    let stray = tmp.join("stray.xml");
    std::fs::write(
        &stray,
        "<domain type='qemu'><name>proj_site-2</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64'>hvm</type></os></domain>",
    )
    .unwrap();
    let net = tmp.join("net.xml");
    std::fs::write(
        &net,
        "<network><name>fedsim-site-2</name><ip address='10.231.2.1' netmask='255.255.255.0'/></network>",
    )
    .unwrap();
    assert!(succeeds(&mut lv.virsh(&[
        "vol-create-as",
        &lv.pool,
        "proj_site-2.img",
        "1M"
    ])));
    assert!(succeeds(
        &mut lv.virsh(&["define", stray.to_str().unwrap()])
    ));
    assert!(succeeds(
        &mut lv.virsh(&["net-define", net.to_str().unwrap()])
    ));
    assert_eq!(
        lv.leftovers("proj_").len(),
        3,
        "{:?}",
        lv.leftovers("proj_")
    );
    let o = lv.fedsim(&project, &["fleet", "down", "-q", "-c", cfg_s]);
    assert!(o.status.success(), "fleet down: {}", stderr(&o));
    assert_eq!(lv.leftovers("proj_"), Vec::<String>::new());

    // A run brings its own VMs up; cancelled while they boot, it destroys them.
    let cancelled = tmp.join("cancelled");
    let mut child = lv
        .with_env(lv.in_ns(bin()), &project)
        .args([
            "run",
            "-q",
            "-c",
            cfg_s,
            "--out",
            cancelled.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let vagrant_log = cancelled.join("logs/vagrant.log");
    while !std::fs::read_to_string(&vagrant_log).is_ok_and(|l| l.contains("Starting domain")) {
        assert!(Instant::now() < deadline, "vagrant up starts the domains");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run waits for its VMs"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // `ip netns exec` passes the signal on: it execs the program.
    // SAFETY: signals the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert_eq!(lv.leftovers("proj_"), Vec::<String>::new());
    assert!(!project.join(".vagrant/fedsim/started").exists());
}
