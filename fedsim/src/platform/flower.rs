//! Flower's deployment engine as a platform: `flower-superlink` at the coordinator (TLS with the
//! run's certificates unless `insecure`), one `flower-supernode` per site in the site's folder
//! with `--node-config` naming its partition and data file, and `flwr run` of the App, streamed
//! into the run's log. The same adapter with `simulation` runs the App in Flower's own simulation
//! engine (a SuperLink started with `--simulation`) on the same partitions, for the side-by-side.
//!
//! The App's side of the contract (docs/flower.md): the ServerApp writes `result.json`
//! (`{"result": {name: number}, "rounds": [seconds]}`) into the run config's `result-dir`, and
//! waits for `min-nodes` nodes; a ClientApp reads its rows from the node config's `data-path`, or
//! in the simulation from `partition-<partition-id>.csv` in `partition-dir`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::certs::{self, Certs};
use super::nodes::RemoteSites;
use super::procs::{self, Proc};
use super::{Platform, PlatformError, PlatformResult, SiteSeat};
use crate::algorithms::Estimates;
use crate::scenario::PlatformSpec;

/// Where flwr's programs are ([`PlatformSpec::flwr_bin`]), as a platform error.
pub fn find_flwr(spec: &PlatformSpec) -> Result<PathBuf, PlatformError> {
    spec.flwr_bin().map_err(PlatformError::Missing)
}

/// The Flower adapter for one run: the deployment, or (with `simulation`) Flower's simulation.
pub struct Flower<'f> {
    spec: PlatformSpec,
    bin: PathBuf,
    /// `<run>/flower/<deployment|simulation>`: certificates, Flower's homes, the result.
    dir: PathBuf,
    /// The run's `logs/`.
    logs: PathBuf,
    simulation: bool,
    sites: usize,
    certs: Option<Certs>,
    superlink: Option<Proc>,
    addr: Option<SocketAddr>,
    nodes: Vec<(String, Proc)>,
    run: Option<Proc>,
    round: Arc<AtomicU32>,
    /// Flower's words on failures, from the run's stream.
    notes: Arc<std::sync::Mutex<Vec<String>>>,
    /// The fewest nodes the ServerApp waits for (all, unless the run may go on without some).
    min_nodes: usize,
    submitted: Option<Instant>,
    finished: Option<Instant>,
    /// Sites reached over SSH (`ssh`, `vm`): their nodes run there, through the fleet.
    remote: Option<RemoteSites<'f>>,
    /// Remote nodes were started (and are to be stopped).
    remote_started: bool,
    /// How long a remote node keeps trying to reach the SuperLink before it gives up: a site
    /// whose link was cut, which fedsim can no longer reach to stop, ends by itself.
    give_up_secs: f64,
}

impl<'f> Flower<'f> {
    pub fn new(
        spec: &PlatformSpec,
        bin: PathBuf,
        run_dir: &Path,
        logs: &Path,
        simulation: bool,
        sites: usize,
    ) -> Result<Flower<'f>, PlatformError> {
        let dir = run_dir.join("flower").join(if simulation {
            "simulation"
        } else {
            "deployment"
        });
        for d in [dir.join("result"), dir.join("home"), logs.to_path_buf()] {
            std::fs::create_dir_all(&d).map_err(|e| PlatformError::Io {
                path: d.clone(),
                source: e,
            })?;
        }
        // `flwr run` works in the run's folder: the App's path must not be relative to ours.
        let mut spec = spec.clone();
        spec.app = std::path::absolute(&spec.app).unwrap_or(spec.app);
        Ok(Flower {
            spec,
            bin,
            dir,
            logs: logs.to_path_buf(),
            simulation,
            sites,
            certs: None,
            superlink: None,
            addr: None,
            nodes: Vec::new(),
            run: None,
            round: Arc::new(AtomicU32::new(0)),
            notes: Default::default(),
            min_nodes: sites,
            submitted: None,
            finished: None,
            remote: None,
            remote_started: false,
            give_up_secs: 60.0,
        })
    }

    /// Run the SuperNodes on sites reached over SSH, through the fleet that installed them;
    /// a node that cannot reach the SuperLink for `give_up_secs` exits.
    pub fn on_remote_sites(mut self, sites: RemoteSites<'f>, give_up_secs: f64) -> Flower<'f> {
        self.remote = Some(sites);
        self.give_up_secs = give_up_secs;
        self
    }

    /// Let the ServerApp go on with as few as `n` nodes (`on_dropout = "continue"`).
    pub fn with_min_nodes(mut self, n: usize) -> Flower<'f> {
        self.min_nodes = n.clamp(1, self.sites.max(1));
        self
    }

    /// The log sources this adapter writes (`logs/<source>.jsonl`).
    pub fn log_sources(&self) -> Vec<String> {
        match self.simulation {
            true => vec!["flower-simulation".into()],
            false => vec!["flower-superlink".into(), "flwr-run".into()],
        }
    }

    fn log(&self, source: &str) -> PathBuf {
        self.logs.join(format!("{source}.jsonl"))
    }

    fn partition_dir(&self) -> PathBuf {
        self.dir.join("partitions")
    }

    fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// The environment every Flower process gets: its home in the run, flwr's bin first on PATH.
    fn env(&self, home: &Path) -> Vec<(&'static str, String)> {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        vec![
            ("HOME", home.display().to_string()),
            ("FLWR_HOME", home.join(".flwr").display().to_string()),
            ("PATH", path),
        ]
    }

    fn write(&self, path: &Path, text: &str) -> Result<(), PlatformError> {
        crate::sys::fsio::write_atomic(path, text.as_bytes()).map_err(|e| PlatformError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// The home `flwr` (the CLI) runs in: the run's own, whose config knows one SuperLink.
    fn cli_home(&self) -> PathBuf {
        self.dir.join("home").join("flwr")
    }

    /// Write the CLI's config: this run's SuperLink, trusted through the run's CA.
    fn write_cli_config(&self, addr: SocketAddr) -> Result<(), PlatformError> {
        let flwr_home = self.cli_home().join(".flwr");
        std::fs::create_dir_all(&flwr_home).map_err(|e| PlatformError::Io {
            path: flwr_home.clone(),
            source: e,
        })?;
        let mut conn = toml::Table::new();
        conn.insert("address".into(), toml::Value::String(addr.to_string()));
        match &self.certs {
            Some(c) => conn.insert(
                "root-certificates".into(),
                toml::Value::String(c.ca.display().to_string()),
            ),
            None => conn.insert("insecure".into(), toml::Value::Boolean(true)),
        };
        let mut links = toml::Table::new();
        links.insert("default".into(), toml::Value::String("fedsim".into()));
        links.insert("fedsim".into(), toml::Value::Table(conn));
        let mut config = toml::Table::new();
        config.insert("superlink".into(), toml::Value::Table(links));
        self.write(&flwr_home.join("config.toml"), &config.to_string())
    }

    /// A key pair made at the site (OpenSSH ECDSA P-384, as Flower reads it), its public half
    /// registered with the SuperLink; returns the private key's path, which stays at the site.
    fn enrol_node(&self, site: &SiteSeat) -> Result<PathBuf, PlatformError> {
        let failed = |reason: String| PlatformError::Start {
            what: format!("the SuperNode key of {}", site.name),
            reason,
        };
        let key = site.dir.join("flower-node-key");
        let public = site.dir.join("flower-node-key.pub");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(&public);
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C"])
            .arg(&site.name)
            .arg("-f")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| failed(format!("ssh-keygen: {e}")))?;
        if !made.status.success() {
            return Err(failed(format!(
                "ssh-keygen: {}",
                String::from_utf8_lossy(&made.stderr).trim()
            )));
        }
        self.register_key(&site.name, &public)?;
        Ok(key)
    }

    /// Register a site's public key with the SuperLink: only registered SuperNodes may join.
    fn register_key(&self, site: &str, public: &Path) -> Result<(), PlatformError> {
        let failed = |reason: String| PlatformError::Start {
            what: format!("the SuperNode key of {site}"),
            reason,
        };
        let home = self.cli_home();
        let mut cmd = std::process::Command::new(self.program("flwr"));
        cmd.args(["supernode", "register"])
            .arg(public)
            .arg("fedsim")
            .args(["--name", site])
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env(&home))
            .env("FLWR_TELEMETRY_ENABLED", "0")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        crate::sys::children::die_with_parent(&mut cmd);
        let out = cmd
            .output()
            .map_err(|e| failed(format!("flwr supernode register: {e}")))?;
        if !out.status.success() {
            return Err(failed(format!(
                "flwr supernode register: {}",
                crate::logs::plain_text(String::from_utf8_lossy(&out.stdout).trim())
            )));
        }
        Ok(())
    }

    /// The run config fedsim hands `flwr run`: the scenario's, then the keys fedsim sets.
    fn run_config(&self) -> toml::Table {
        let mut t = self.spec.run_config.clone();
        let set = |t: &mut toml::Table, k: &str, v: toml::Value| {
            t.insert(k.to_string(), v);
        };
        set(
            &mut t,
            "num-server-rounds",
            toml::Value::Integer(self.spec.rounds.into()),
        );
        set(
            &mut t,
            "min-nodes",
            toml::Value::Integer(self.min_nodes as i64),
        );
        set(
            &mut t,
            "result-dir",
            toml::Value::String(self.dir.join("result").display().to_string()),
        );
        if self.simulation {
            set(
                &mut t,
                "partition-dir",
                toml::Value::String(self.partition_dir().display().to_string()),
            );
        }
        t
    }

    /// Start one local site's SuperNode in its folder.
    fn start_site(&mut self, site: &SiteSeat, dial: SocketAddr) -> Result<(), PlatformError> {
        let port = procs::free_port()?;
        let data = toml::Value::String(site.dir.join(&site.data_name).display().to_string());
        let mut args: Vec<String> = vec![
            "--superlink".into(),
            dial.to_string(),
            "--port".into(),
            port.to_string(),
            "--node-config".into(),
            format!(
                "partition-id={} num-partitions={} data-path={data}",
                site.index, site.sites
            ),
        ];
        match &self.certs {
            Some(c) => {
                let key = self.enrol_node(site)?;
                args.extend([
                    "--root-certificates".into(),
                    c.ca.display().to_string(),
                    "--auth-supernode-private-key".into(),
                    key.display().to_string(),
                ]);
            }
            None => args.push("--insecure".into()),
        }
        let home = site.dir.join("flower-home");
        let _ = std::fs::create_dir_all(&home);
        let p = procs::spawn(
            &format!("flower-supernode {}", site.name),
            &self.program("flower-supernode"),
            &args,
            &site.dir,
            &self.env(&home),
            &self.logs.join(format!("{}.jsonl", site.name)),
            None,
        )?;
        self.nodes.push((site.name.clone(), p));
        Ok(())
    }

    /// What the sites' venv installs: the App's own dependencies, flwr pinned to the version
    /// the SuperLink runs (an App may ask for extras the sites do not need, like simulation).
    fn requirements(&self, python: &Path) -> Result<Vec<String>, PlatformError> {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('flwr'))",
            ])
            .output()
            .map_err(|e| PlatformError::Missing(format!("{}: {e}", python.display())))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || version.is_empty() {
            return Err(PlatformError::Missing(format!(
                "{} has no flwr: the sites' venv is made from the controller's Flower",
                python.display()
            )));
        }
        let pyproject = self.spec.app.join("pyproject.toml");
        let text = std::fs::read_to_string(&pyproject).map_err(|e| PlatformError::Io {
            path: pyproject.clone(),
            source: e,
        })?;
        let doc: toml::Table = toml::from_str(&text)
            .map_err(|e| PlatformError::Missing(format!("{}: {e}", pyproject.display())))?;
        let deps: Vec<String> = doc
            .get("project")
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .filter_map(|x| x.as_str())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let is_flwr = |d: &str| {
            let name: String = d
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            name.eq_ignore_ascii_case("flwr")
        };
        Ok(std::iter::once(format!("flwr=={version}"))
            .chain(deps.into_iter().filter(|d| !is_flwr(d)))
            .collect())
    }

    /// Start the SuperNodes on sites reached over SSH: the venv (installed once per site from
    /// the controller's wheels), the run's CA, a key made at each site (its public half
    /// registered here), and a script that runs the SuperNode under the site's reaper.
    fn start_remote(
        &mut self,
        sites: &[SiteSeat],
        dial: &dyn Fn(&str) -> SocketAddr,
    ) -> Result<(), PlatformError> {
        use crate::fleet::ssh::shell_quote;
        let python = ["python3", "python"]
            .iter()
            .map(|p| self.bin.join(p))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                PlatformError::Missing(format!(
                    "no python3 beside flwr in {}: the sites' wheels are downloaded with it",
                    self.bin.display()
                ))
            })?;
        let requirements = self.requirements(&python)?;
        let server = self
            .addr
            .ok_or_else(|| PlatformError::Run("start the SuperLink first".into()))?;
        let ca = match &self.certs {
            Some(c) => Some(std::sync::Arc::<[u8]>::from(std::fs::read(&c.ca).map_err(
                |e| PlatformError::Io {
                    path: c.ca.clone(),
                    source: e,
                },
            )?)),
            None => None,
        };
        let remote = self.remote.as_mut().expect("remote sites");
        // What a SuperNode, its SuperExec and a ClientApp import.
        let warm = [
            "flwr.supernode.cli",
            "flwr.supercore.cli",
            "flwr.supernode.runtime.run_clientapp",
            "flwr.clientapp",
            "flwr.app",
            "numpy",
        ];
        let houses = remote.ensure_venvs(&python, &requirements, &warm)?;
        if let Some(ca) = &ca {
            let files: Vec<_> = sites
                .iter()
                .map(|_| vec![(ca.clone(), "flower-ca.pem".to_string(), 0o644)])
                .collect();
            remote.put_each("sending the run's CA certificate", &files)?;
        }
        let scripts: Vec<Option<String>> = sites
            .iter()
            .zip(&houses)
            .map(|(site, house)| {
                let venv = super::nodes::venv(house);
                let data = format!("$FEDSIM_BUNDLE/{}", site.data_name);
                let secure = match ca {
                    Some(_) => "--root-certificates flower-ca.pem --auth-supernode-private-key flower-node-key",
                    None => "--insecure",
                };
                let node = format!(
                    "port=$(python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])')\nexec \"$FEDSIM_AGENT\" reap --log node.jsonl ${{2:+--lease \"$2\" --lease-secs {wait}}} --process {process} -- env HOME=\"$PWD/flower-home\" FLWR_HOME=\"$PWD/flower-home/.flwr\" PATH={venv}/bin:\"$PATH\" LANG=C.UTF-8 FLWR_TELEMETRY_ENABLED=0 PYTHONUNBUFFERED=1 NO_COLOR=1 {venv}/bin/flower-supernode --superlink \"$1\" --port \"$port\" --max-wait-time {wait} --node-config \"partition-id={i} num-partitions={n} data-path=\\\"{data}\\\"\" {secure}\n",
                    process = shell_quote(&format!("flower-supernode {}", site.name)),
                    i = site.index,
                    n = site.sites,
                    wait = self.give_up_secs.ceil(),
                );
                let key = match ca {
                    Some(_) => format!(
                        "rm -f flower-node-key flower-node-key.pub\nssh-keygen -q -t ecdsa -b 384 -N '' -C {c} -f flower-node-key < /dev/null\necho \"PUB=$(cat flower-node-key.pub)\"\n",
                        c = shell_quote(&site.name)
                    ),
                    None => String::new(),
                };
                Some(format!(
                    "set -e\numask 077\nmkdir -p flower-home\ncat > node.sh <<'FEDSIM_NODE'\n{node}FEDSIM_NODE\n{key}"
                ))
            })
            .collect();
        let outs = remote.run_each("making the SuperNode's key", &scripts)?;
        if ca.is_some() {
            let keys = self.dir.join("keys");
            let _ = std::fs::create_dir_all(&keys);
            for (site, out) in sites.iter().zip(&outs) {
                let public = out
                    .lines()
                    .find_map(|l| l.strip_prefix("PUB="))
                    .filter(|k| k.starts_with("ecdsa-sha2-nistp384 "))
                    .ok_or_else(|| PlatformError::Site {
                        site: site.name.clone(),
                        what: "the SuperNode's key".into(),
                        reason: format!(
                            "ssh-keygen on the site gave no public key: {}",
                            out.trim()
                        ),
                    })?;
                let path = keys.join(format!("{}.pub", site.name));
                self.write(&path, &format!("{public}\n"))?;
                self.register_key(&site.name, &path)?;
            }
        }
        self.remote_started = true;
        let remote = self.remote.as_mut().expect("remote sites");
        remote.start("node.sh", server, dial)?;
        tracing::info!(
            phase = "federate",
            platform = "flower",
            sites = sites.len(),
            "SuperNodes started on the sites"
        );
        Ok(())
    }
}

impl Platform for Flower<'_> {
    fn name(&self) -> &'static str {
        "flower"
    }

    fn start_server(&mut self) -> Result<SocketAddr, PlatformError> {
        let port = procs::free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            // No index to install an App's dependencies from: the environment has them.
            "--disable-runtime-dependency-installation".into(),
            "--database".into(),
            ":flwr-in-memory-state:".into(),
        ];
        if self.simulation {
            args.push("--simulation".into());
        }
        if self.spec.insecure {
            args.push("--insecure".into());
        } else {
            let c = certs::make(&self.dir)?;
            args.extend([
                "--ssl-certfile".into(),
                c.server_cert.display().to_string(),
                "--ssl-keyfile".into(),
                c.server_key.display().to_string(),
                "--ssl-ca-certfile".into(),
                c.ca.display().to_string(),
            ]);
            self.certs = Some(c);
            if !self.simulation {
                // Only SuperNodes whose keys the run registered may join.
                args.push("--enable-supernode-auth".into());
            }
        }
        let home = self.dir.join("home").join("superlink");
        let _ = std::fs::create_dir_all(&home);
        let source = self.log_sources()[0].clone();
        let mut p = procs::spawn(
            "flower-superlink",
            &self.program("flower-superlink"),
            &args,
            &self.dir,
            &self.env(&home),
            &self.log(&source),
            None,
        )?;
        let up = procs::wait_listening(&mut p, addr, 60);
        self.superlink = Some(p);
        up?;
        tracing::info!(phase = "federate", platform = "flower", %addr, simulation = self.simulation, tls = !self.spec.insecure, "SuperLink up");
        self.addr = Some(addr);
        self.write_cli_config(addr)?;
        Ok(addr)
    }

    fn start_sites(
        &mut self,
        sites: &[SiteSeat],
        dial: &dyn Fn(&str) -> SocketAddr,
    ) -> Result<(), PlatformError> {
        if self.simulation {
            // Flower's simulation makes its own nodes: it gets each site's rows as a partition.
            let dir = self.partition_dir();
            let _ = std::fs::create_dir_all(&dir);
            for site in sites {
                let to = dir.join(format!("partition-{}.csv", site.index));
                crate::sys::fsio::write_atomic(&to, &site.data).map_err(|e| PlatformError::Io {
                    path: to,
                    source: e,
                })?;
            }
            return Ok(());
        }
        if self.remote.is_some() {
            return self.start_remote(sites, dial);
        }
        for site in sites {
            crate::sys::cancel::check().map_err(|_| PlatformError::Cancelled)?;
            self.start_site(site, dial(&site.name))?;
        }
        Ok(())
    }

    fn cut_site(&mut self, site: &str) -> Result<(), PlatformError> {
        let fault = |reason: String| PlatformError::Fault {
            site: site.into(),
            kind: crate::scenario::FaultKind::Cut,
            reason,
        };
        match self.remote.as_mut() {
            Some(r) => r.fleet().cut(site).map_err(|e| fault(e.to_string())),
            None => Err(fault(
                "local sites have no network of their own to cut".into(),
            )),
        }
    }

    fn start_run(&mut self) -> Result<(), PlatformError> {
        let home = self.cli_home();
        let rc = self.dir.join("run-config.toml");
        self.write(&rc, &self.run_config().to_string())?;
        let mut args: Vec<String> = vec![
            "run".into(),
            self.spec.app.display().to_string(),
            "fedsim".into(),
            "--run-config".into(),
            rc.display().to_string(),
            "--stream".into(),
        ];
        if self.simulation {
            args.extend([
                "--federation-config".into(),
                format!("num-supernodes={}", self.sites),
            ]);
        }
        // Flower's rounds as the ServerApp logs them: "[ROUND 3/10]".
        let (round, notes) = (self.round.clone(), self.notes.clone());
        let nodes = self.sites;
        // Whether the round in progress has aggregated replies: a round with none (its
        // round-timeout passed first) prints no `aggregate_train` line at all.
        let aggregated = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let on_line: procs::OnLine = Box::new(move |line: &str| {
            let note = |text: String| {
                if let Ok(mut n) = notes.lock() {
                    if n.len() < 50 {
                        n.push(text);
                    }
                }
            };
            if line.contains("aggregate_train: Received") {
                aggregated.store(true, Ordering::SeqCst);
            }
            // A round that ended with failures, or with fewer replies than nodes (its
            // round-timeout passed first).
            let failed = line.contains("Received error in reply")
                || line
                    .split_once("aggregate_train: Received ")
                    .is_some_and(|(_, rest)| {
                        let replies = rest.split_whitespace().next().and_then(|n| n.parse().ok());
                        !rest.contains(" 0 failures") || replies.is_some_and(|r: usize| r < nodes)
                    });
            if failed {
                let at = round.load(Ordering::SeqCst);
                let said = line.split_once(':').map_or(line, |(_, rest)| rest).trim();
                note(format!("round {at}: {said}"));
            }
            if let Some(r) = line
                .split("[ROUND ")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .and_then(|r| r.trim().parse::<u32>().ok())
            {
                if !aggregated.swap(false, Ordering::SeqCst) {
                    note(format!(
                        "round {}: no site replied within the round's timeout",
                        r.saturating_sub(1)
                    ));
                }
                round.fetch_max(r, Ordering::SeqCst);
            }
        });
        let source = self.log_sources().last().cloned().expect("a source");
        let p = procs::spawn(
            "flwr run",
            &self.program("flwr"),
            &args,
            &self.dir,
            &self.env(&home),
            &self.log(&source),
            Some(on_line),
        )?;
        tracing::info!(phase = "federate", platform = "flower", app = %self.spec.app.display(), rounds = self.spec.rounds, simulation = self.simulation, "flwr run submitted");
        self.submitted = Some(Instant::now());
        self.run = Some(p);
        Ok(())
    }

    fn poll(&mut self) -> Option<Result<(), PlatformError>> {
        if let Some(s) = self.superlink.as_mut().and_then(Proc::exited) {
            return Some(Err(PlatformError::Run(format!(
                "the SuperLink exited during the run ({s}); its log: {}",
                self.superlink
                    .as_ref()
                    .map(|p| p.log.display().to_string())
                    .unwrap_or_default()
            ))));
        }
        let run = self.run.as_mut()?;
        let status = run.exited()?;
        self.finished = Some(Instant::now());
        if self.dir.join("result").join("result.json").is_file() {
            return Some(Ok(()));
        }
        Some(Err(PlatformError::Run(format!(
            "flwr run ended ({status}) and the ServerApp wrote no result.json; the run's log: {}",
            run.log.display()
        ))))
    }

    fn round(&self) -> u32 {
        self.round.load(Ordering::SeqCst)
    }

    fn dead_site(&mut self) -> Option<(String, String)> {
        if let Some(r) = self.remote.as_mut() {
            return r
                .fleet()
                .dead_site()
                .map(|(site, why)| (site, format!("its SuperNode ended: {why}")));
        }
        self.nodes.iter_mut().find_map(|(site, p)| {
            p.exited()
                .map(|s| (site.clone(), format!("its SuperNode exited ({s})")))
        })
    }

    fn kill_site(&mut self, site: &str) -> Result<(), PlatformError> {
        if let Some(r) = self.remote.as_mut() {
            return r.fleet().kill(site).map_err(|e| PlatformError::Fault {
                site: site.into(),
                kind: crate::scenario::FaultKind::Kill,
                reason: e.to_string(),
            });
        }
        let (_, p) = self
            .nodes
            .iter_mut()
            .find(|(s, _)| s == site)
            .ok_or_else(|| PlatformError::Fault {
                site: site.into(),
                kind: crate::scenario::FaultKind::Kill,
                reason: "no such site runs a SuperNode".into(),
            })?;
        p.kill();
        Ok(())
    }

    fn result(&mut self) -> Result<PlatformResult, PlatformError> {
        let path = self.dir.join("result").join("result.json");
        let bad = |m: String| PlatformError::Run(format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let named = crate::algorithms::external::parse_result(&v, "the ServerApp")
            .map_err(|e| bad(e.to_string()))?;
        let round_ends = v
            .get("rounds")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default();
        let run_secs = match (self.submitted, self.finished) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        Ok(PlatformResult {
            result: Estimates {
                named,
                ..Default::default()
            },
            round_ends,
            run_secs,
            first_round_secs: 0.0,
            peak_pss_kib: 0,
            round_bytes: Vec::new(),
        })
    }

    fn pids(&self) -> Vec<u32> {
        self.superlink
            .iter()
            .chain(self.nodes.iter().map(|(_, p)| p))
            .chain(&self.run)
            .map(|p| p.child.id())
            .collect()
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    fn stop(&mut self) {
        let grace = Duration::from_secs(3);
        // The run first, then the nodes, the SuperLink last (so nodes do not spin reconnecting).
        if let Some(p) = self.run.take() {
            p.stop(grace);
        }
        for (_, p) in self.nodes.drain(..) {
            p.stop(grace);
        }
        if let (Some(r), true) = (self.remote.as_mut(), self.remote_started) {
            // The nodes never end by themselves: TERM at once (their reapers take every
            // worker along), KILL what is left.
            self.remote_started = false;
            let exits = r.fleet().stop(Duration::ZERO);
            tracing::info!(
                phase = "federate",
                platform = "flower",
                sites = exits.len(),
                "SuperNodes on the sites stopped"
            );
        }
        if let Some(p) = self.superlink.take() {
            p.stop(grace);
        }
    }
}

impl Drop for Flower<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}
