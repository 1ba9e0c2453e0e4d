//! The Snakemake SLURM profile (`workflows/profiles/slurm`) against a real single-node Slurm:
//! Debian's munged, slurmctld and slurmd, started by this test in a network namespace of its own
//! (loopback only, so nothing listens or talks beyond 127.0.0.1), with their configuration,
//! key, sockets, state and logs in a temporary directory. A 2-point sweep of the diabetes OLS
//! runs with `snakemake --profile workflows/profiles/slurm`; every rule of it must have been a
//! Slurm job (submitted, allocated on the node, its step launched by slurmd, completed with exit
//! 0, still listed by `squeue`), and every point must match statsmodels. Nothing the test started
//! may outlive it. Needs root, Slurm, munge and the Slurm executor plugin in the Snakemake venv
//! (`.ci/run` installs them); says SKIPPED otherwise.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The partition of the test's cluster: not the profile's placeholder, so the test overrides it
/// on the command line, as a user on a real cluster does with theirs.
const PARTITION: &str = "fedsim-test";

/// A program from PATH or the system's sbin directories (the daemons are in /usr/sbin).
fn which(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The network namespace of `pid` ("net:[4026532...]"), or None once it is gone or a zombie.
fn net_ns(pid: u32) -> Option<String> {
    if !alive(pid) {
        return None;
    }
    fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

/// The last `n` lines of a file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "--- {} (last {n} lines)\n{}",
        path.display(),
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

/// A one-node Slurm of the test's own. Its daemons are children of the test, each in its own
/// process group, all inside a network and mount namespace that a holder process keeps open.
/// `stop` (also run on drop) kills every process in that namespace: daemons, job steps, jobs.
struct Cluster {
    dir: tempfile::TempDir,
    /// The holder (`sleep infinity` in the new namespaces): every other process enters its.
    holder: Child,
    ns: String,
    /// (name, process), in start order.
    daemons: Vec<(&'static str, Child)>,
    conf: PathBuf,
    node: String,
    stopped: bool,
}

impl Cluster {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program` inside the cluster's namespaces, in `cwd`, with SLURM_CONF set.
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("--target")
            .arg(self.holder.id().to_string())
            .args(["--net", "--mount"])
            .arg(format!("--wd={}", cwd.display()))
            .arg("--")
            .arg(program)
            .env("SLURM_CONF", &self.conf);
        c
    }

    /// A Slurm client (`sinfo`, `squeue`) in the cluster; its output.
    fn client(&self, program: &str, args: &[&str]) -> Output {
        let exe = which(program).unwrap_or_else(|| panic!("{program} is not installed"));
        self.command(&exe, self.dir.path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// Start a daemon in the foreground, its output into `<name>.out`.
    fn start(&mut self, name: &'static str, program: &str, args: &[&str]) {
        let exe = which(program).unwrap_or_else(|| panic!("{program} is not installed"));
        let out = fs::File::create(self.path(&format!("{name}.out"))).unwrap();
        let child = self
            .command(&exe, self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        self.daemons.push((name, child));
    }

    /// Fail with every daemon's output if one has exited.
    fn check_daemons(&mut self) {
        let mut dead = Vec::new();
        for (name, child) in &mut self.daemons {
            if let Some(status) = child.try_wait().unwrap() {
                dead.push(format!("{name} exited ({status})"));
            }
        }
        if !dead.is_empty() {
            panic!("{}\n{}", dead.join(", "), self.logs());
        }
    }

    /// The daemons' outputs and logs, for failure messages.
    fn logs(&self) -> String {
        let mut all: Vec<String> = self
            .daemons
            .iter()
            .map(|(name, _)| tail(&self.path(&format!("{name}.out")), 15))
            .collect();
        all.push(tail(&self.path("slurmctld.log"), 30));
        all.push(tail(&self.path("slurmd.log"), 30));
        all.join("\n")
    }

    /// Every live process in the cluster's network namespace, as "pid: command line".
    fn processes(&self) -> Vec<String> {
        pids()
            .into_iter()
            .filter(|p| net_ns(*p).as_deref() == Some(self.ns.as_str()))
            .map(|p| format!("{p}: {}", cmdline(p)))
            .collect()
    }

    /// Stop the daemons (slurmd first, munged last: SIGTERM to each process group, SIGKILL after
    /// 5 s), then kill whatever else is in the namespace (job steps, jobs), then the holder.
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let signal_group = |child: &Child, sig: i32| {
            // SAFETY: signals a process group this test created (the child's own).
            unsafe { libc::kill(-(child.id() as i32), sig) };
        };
        for (_, child) in self.daemons.iter_mut().rev() {
            signal_group(child, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            signal_group(child, libc::SIGKILL);
            let _ = child.wait();
        }
        let holder = self.holder.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<u32> = pids()
                .into_iter()
                .filter(|p| *p != holder && net_ns(*p).as_deref() == Some(self.ns.as_str()))
                .collect();
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for p in left {
                // SAFETY: signals a process inside this test's own network namespace.
                unsafe { libc::kill(p as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start munged, slurmctld and slurmd for one node, `node`, at 127.0.0.1; wait until the node
/// is idle.
fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    // munged wants every directory above its socket searchable by all.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let d = |name: &str| {
        let p = dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    };
    let (key_dir, socket_dir, state, spool, etc) = (
        d("munge"),
        d("munge-socket"),
        d("state"),
        d("spool"),
        d("etc-slurm"),
    );
    fs::set_permissions(&key_dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o755)).unwrap();

    // The cluster's own munge key: 1024 random bytes, readable by root only.
    let key = key_dir.join("munge.key");
    let mut bytes = vec![0u8; 1024];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let socket = socket_dir.join("munge.socket");

    // The node as slurmd sees this machine (its name is the short hostname, which slurmd
    // registers under), reached at 127.0.0.1.
    let probe = Command::new(which("slurmd").unwrap())
        .arg("-C")
        .output()
        .expect("slurmd -C runs");
    let hardware = String::from_utf8_lossy(&probe.stdout);
    let node_line = hardware
        .lines()
        .find(|l| l.starts_with("NodeName="))
        .unwrap_or_else(|| panic!("slurmd -C printed no NodeName line: {hardware}"))
        .to_string();
    let node = node_line["NodeName=".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let p = |path: &Path| path.display().to_string();
    // The cluster has a network namespace of its own, whose ports are all free: Slurm's
    // default ports are used, and only on its loopback.
    let conf_text = format!(
        "# Written by fedsim/tests/slurm.rs: one node, loopback only, no systemd, no cgroups.
ClusterName=fedsimtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket}
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay listed for 5 minutes: the profile's status checks (squeue) and this test
# read their final state there.
MinJobAge=300
{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=60 State=UP
",
        socket = p(&socket),
        state = p(&state),
        spool = p(&spool),
        dir = p(dir.path()),
    );
    // The same file as SLURM_CONF for the daemons and clients, and as /etc/slurm/slurm.conf
    // inside the namespace: the jobstep plugin removes every SLURM_* variable (SLURM_CONF too)
    // before the `srun` it runs each rule with, so that srun finds the configuration where a
    // real cluster keeps it.
    let conf = dir.path().join("slurm.conf");
    fs::write(&conf, &conf_text).unwrap();
    fs::write(etc.join("slurm.conf"), &conf_text).unwrap();

    // The holder: new network and mount namespaces, loopback up, the configuration on
    // /etc/slurm (private to the namespace), then it waits to be killed. Loopback gets a second
    // address, 127.0.0.2: the daemons look up the address to listen on with AI_ADDRCONFIG,
    // which glibc answers only when an IPv4 address other than 127.0.0.1 is configured.
    let ready = dir.path().join("namespace-ready");
    let mut holder = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .args([
            "sh",
            "-c",
            "ip link set lo up && ip addr add 127.0.0.2/8 dev lo && mount --bind \"$0\" /etc/slurm && touch \"$1\" && exec sleep infinity",
        ])
        .arg(&etc)
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("unshare runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        if let Some(status) = holder.try_wait().unwrap() {
            let mut err = String::new();
            holder
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!(
                "the cluster's namespaces could not be made (unshare --net --mount, loopback up \
                 with 127.0.0.2, mount --bind onto /etc/slurm, which the slurm-client package creates): \
                 {status}: {err}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "the namespace holder is not ready after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ns = net_ns(holder.id()).expect("the holder's network namespace");
    assert_ne!(
        Some(ns.as_str()),
        net_ns(std::process::id()).as_deref(),
        "the cluster has a network namespace of its own"
    );

    let mut cluster = Cluster {
        dir,
        holder,
        ns,
        daemons: Vec::new(),
        conf,
        node,
        stopped: false,
    };
    cluster.start(
        "munged",
        "munged",
        &[
            "-F",
            &format!("--key-file={}", p(&key)),
            &format!("--socket={}", p(&socket)),
            &format!("--pid-file={}", p(&key_dir.join("munged.pid"))),
            &format!("--seed-file={}", p(&key_dir.join("munged.seed"))),
            &format!("--log-file={}", p(&key_dir.join("munged.log"))),
            "--origin=127.0.0.1",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        cluster.check_daemons();
        assert!(
            Instant::now() < deadline,
            "munged made no socket in 10 s\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.start("slurmctld", "slurmctld", &["-D"]);
    cluster.start("slurmd", "slurmd", &["-D"]);

    // The node registers and is idle.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        cluster.check_daemons();
        let o = cluster.client("sinfo", &["-h", "-N", "-o", "%N %T"]);
        let said = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && said == format!("{} idle", cluster.node) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node is not idle after 60 s (sinfo: {said:?} {})\n{}",
            stderr(&o),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    cluster
}

/// One Slurm job of the sweep, as snakemake reported submitting it.
#[derive(Debug)]
struct Submitted {
    jobid: String,
    /// The job's log, `.snakemake/slurm_logs/rule_<rule>/[<point>/]<jobid>.log`.
    log: PathBuf,
}

/// The jobs snakemake submitted ("... has been submitted with SLURM jobid N (log: PATH).").
fn submitted(output: &str) -> Vec<Submitted> {
    output
        .lines()
        .filter_map(|l| {
            l.split_once("has been submitted with SLURM jobid ")
                .map(|x| x.1)
        })
        .map(|rest| {
            let (jobid, log) = rest
                .split_once(" (log: ")
                .unwrap_or_else(|| panic!("unexpected submission line: {rest}"));
            Submitted {
                jobid: jobid.to_string(),
                log: PathBuf::from(log.trim_end_matches(").")),
            }
        })
        .collect()
}

#[test]
fn the_slurm_profile_runs_a_sweep_on_a_real_single_node_slurm() {
    // SAFETY: geteuid reads a process attribute.
    let is_root = unsafe { libc::geteuid() } == 0;
    let tools = [
        "munged",
        "slurmctld",
        "slurmd",
        "sinfo",
        "squeue",
        "sbatch",
        "srun",
        "unshare",
        "nsenter",
        "ip",
    ];
    let missing: Vec<&str> = tools.into_iter().filter(|t| which(t).is_none()).collect();
    if !is_root || !missing.is_empty() {
        eprintln!(
            "SKIPPED: the Slurm test needs root and {} (missing: {missing:?}; .ci/run installs \
             slurmctld, slurmd, slurm-client and munge)",
            tools.join(", ")
        );
        return;
    }
    let snakemake = venv_bin().join("snakemake");
    let python = venv_bin().join("python");
    let plugin = Command::new(&python)
        .args(["-c", "import snakemake_executor_plugin_slurm"])
        .output();
    if !snakemake.is_file() || !plugin.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED: snakemake and snakemake-executor-plugin-slurm are not installed in \
             ~/.cache/fedsim-venv (.ci/run installs them)"
        );
        return;
    }
    let started = Instant::now();
    let mut cluster = start_cluster();
    eprintln!(
        "slurm: node {} idle after {:.1} s",
        cluster.node,
        started.elapsed().as_secs_f64()
    );

    // A 2-point sweep of the diabetes OLS, in a working directory the node shares (the same
    // machine), as a real cluster's shared filesystem.
    let work = cluster.path("work");
    fs::create_dir(&work).unwrap();
    let out = work.join("sweep");
    let config = work.join("sweep.yaml");
    fs::write(
        &config,
        format!(
            "scenario: {}\nout: {}\nsweep:\n  partition.sites: [2, 3]\n",
            root().join("resources/config_linreg.toml").display(),
            out.display()
        ),
    )
    .unwrap();
    let log = cluster.path("snakemake.out");
    let log_file = fs::File::create(&log).unwrap();
    // The shipped profile, with what this cluster needs changed on the command line, as a user
    // does for theirs: the partition and resources that fit the node (one cpu per point, two
    // sites or three in it; --default-resources replaces the profile's whole list), no account
    // (this cluster has no accounting), job states from squeue (no slurmdbd for sacct), the
    // first status check after 2 s rather than 40, and the jobs' logs kept to check below.
    let mut sm = cluster
        .command(&snakemake, &work)
        .args(["--profile"])
        .arg(root().join("workflows/profiles/slurm"))
        .arg("-s")
        .arg(root().join("workflows/Snakefile"))
        .arg("--configfile")
        .arg(&config)
        .args([
            "--default-resources",
            &format!("slurm_partition={PARTITION}"),
            "runtime=10",
            "mem_mb=500",
            "cpus_per_task=1",
            "--slurm-no-account",
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-keep-successful-logs",
        ])
        .env("PATH", path_with_fedsim())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .expect("snakemake starts");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = sm.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: signals the process group of the snakemake this test started.
            unsafe { libc::kill(-(sm.id() as i32), libc::SIGKILL) };
            let _ = sm.wait();
            panic!(
                "the sweep did not finish in 10 minutes\n{}\n{}\nsqueue: {}",
                tail(&log, 60),
                cluster.logs(),
                String::from_utf8_lossy(&cluster.client("squeue", &["--states=all"]).stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let said = fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "snakemake --profile workflows/profiles/slurm failed ({status})\n{}\n{}",
        tail(&log, 80),
        cluster.logs()
    );
    let sweep_secs = started.elapsed().as_secs_f64();

    // Every rule but `all` was a Slurm job: the two points, the table, the page, the verdict.
    let jobs = submitted(&said);
    let mut rules: Vec<String> = jobs
        .iter()
        .map(|j| {
            let rel = j
                .log
                .strip_prefix(work.join(".snakemake/slurm_logs"))
                .unwrap_or_else(|_| panic!("{}: not under .snakemake/slurm_logs", j.log.display()));
            assert_eq!(
                j.log.file_name().unwrap().to_string_lossy(),
                format!("{}.log", j.jobid),
                "{said}"
            );
            rel.parent().unwrap().display().to_string()
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            "rule_page",
            "rule_point/sites-2",
            "rule_point/sites-3",
            "rule_table",
            "rule_verdict"
        ],
        "{said}"
    );
    let run_id = said
        .lines()
        .find_map(|l| l.strip_prefix("SLURM run ID: "))
        .unwrap_or_else(|| panic!("snakemake named no SLURM run ID\n{said}"))
        .trim()
        .to_string();

    // What Slurm itself says of each job: squeue still lists it (MinJobAge), completed, under
    // the sweep's run ID, in the partition given; slurmctld submitted it, allocated it on the
    // node and saw it exit 0; slurmd launched its batch step and the step `srun` ran the rule in.
    let q = cluster.client("squeue", &["-h", "--states=all", "-o", "%i|%T|%j|%P|%N"]);
    assert!(q.status.success(), "squeue: {}", stderr(&q));
    let queue = String::from_utf8_lossy(&q.stdout).into_owned();
    let ctld = fs::read_to_string(cluster.path("slurmctld.log")).unwrap();
    let slurmd = fs::read_to_string(cluster.path("slurmd.log")).unwrap();
    for job in &jobs {
        let id = &job.jobid;
        let want = format!("{id}|COMPLETED|{run_id}|{PARTITION}|{}", cluster.node);
        assert!(
            queue.lines().any(|l| l.trim() == want),
            "job {id}: no line {want:?} in squeue:\n{queue}"
        );
        for line in [
            format!("_slurm_rpc_submit_batch_job: JobId={id} "),
            format!("_job_complete: JobId={id} WEXITSTATUS 0"),
        ] {
            assert!(
                ctld.contains(&line),
                "job {id}: slurmctld.log lacks {line:?}\n{ctld}"
            );
        }
        // Allocated on the node by the main scheduler, or by the backfill scheduler when that
        // pass came first.
        let allocated = [
            format!("sched: Allocate JobId={id} NodeList={} ", cluster.node),
            format!(
                "sched/backfill: _start_job: Started JobId={id} in {PARTITION} on {}",
                cluster.node
            ),
        ];
        assert!(
            allocated.iter().any(|l| ctld.contains(l)),
            "job {id}: slurmctld.log shows no allocation on {} ({allocated:?})\n{ctld}",
            cluster.node
        );
        for line in [
            format!("Launching batch job {id} "),
            format!("launch task StepId={id}.0 "),
        ] {
            assert!(
                slurmd.contains(&line),
                "job {id}: slurmd.log lacks {line:?}\n{slurmd}"
            );
        }
        let job_log =
            fs::read_to_string(&job.log).unwrap_or_else(|e| panic!("{}: {e}", job.log.display()));
        assert!(
            job_log.contains("--mode remote") && job_log.contains("1 of 1 steps (100%) done"),
            "job {id} ran no rule to its end:\n{job_log}"
        );
    }
    for point in ["sites-2", "sites-3"] {
        let job = jobs
            .iter()
            .find(|j| {
                j.log
                    .parent()
                    .unwrap()
                    .ends_with(format!("rule_point/{point}"))
            })
            .unwrap();
        let job_log = fs::read_to_string(&job.log).unwrap();
        assert!(
            job_log.contains(&format!("wildcards: point={point}")),
            "{job_log}"
        );
    }

    // Every point's result, independently of the sweep's own verdict.
    let csv = fs::read_to_string(out.join("sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {csv}"))
    };
    assert_eq!(rows.len(), 2, "{csv}");
    let mut sites = Vec::new();
    for r in &rows {
        assert_eq!(r[col("status")], "succeeded", "{csv}");
        assert_eq!(r[col("exit")], "0", "{csv}");
        assert_eq!(r[col("reference_passed")], "True", "{csv}");
        let point = r[col("point")];
        let s = summary(&out.join("runs").join(point));
        assert_eq!(
            s.sites.len().to_string(),
            r[col("partition.sites")],
            "{point}: {}",
            pretty(&s)
        );
        let want = reference("diabetes.csv", "ols");
        let coef = &s.results.expect("results").coef;
        let d = max_rel(coef, &floats(&want["coef"]));
        assert!(d <= 1e-8, "{point}: coefficients {d:e} from statsmodels'");
        sites.push(r[col("partition.sites")]);
    }
    sites.sort();
    assert_eq!(sites, ["2", "3"]);
    assert!(out.join("sweep.html").is_file());
    assert_eq!(
        fs::read_to_string(out.join("all-points-passed")).unwrap(),
        "2 points succeeded\n"
    );

    // Nothing outlives the cluster: no process in its namespace, none of its daemons.
    let pids: Vec<(&str, u32)> = cluster
        .daemons
        .iter()
        .map(|(n, c)| (*n, c.id()))
        .chain([("holder", cluster.holder.id())])
        .collect();
    let before = cluster.processes();
    assert!(
        before.iter().any(|p| p.contains("slurmctld"))
            && before.iter().any(|p| p.contains("munged")),
        "the cluster's processes are seen: {before:?}"
    );
    cluster.stop();
    let left = cluster.processes();
    assert!(left.is_empty(), "left running: {left:?}");
    for (name, pid) in pids {
        assert!(!alive(pid), "{name} (pid {pid}) still running");
    }
    let named = pgrep(&cluster.dir.path().display().to_string());
    assert!(
        named.trim().is_empty(),
        "processes naming the cluster's directory: {named}"
    );
    eprintln!(
        "slurm: {} jobs, sweep done after {sweep_secs:.1} s, all stopped after {:.1} s",
        jobs.len(),
        started.elapsed().as_secs_f64()
    );
}
