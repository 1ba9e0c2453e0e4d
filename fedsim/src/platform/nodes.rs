//! A platform's nodes on sites fedsim reaches over SSH (providers `ssh` and `vm`), through the
//! fleet that installed them: what Python each site has, the platform's packages installed into
//! a venv of the site's own from the controller's wheelhouse (once: the venv is named for the
//! wheels' digest and kept), steps run on every site at once, and each node started detached
//! under the site's reaper, dialling the coordinator through the fleet's tunnel. The fleet then
//! kills, cuts, stops and pulls the log of each node as it does an agent.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::wheelhouse::{self, Target, Wheelhouse};
use super::PlatformError;
use crate::fleet::{Dial, Fleet, SiteFile};

/// How long a step on the sites may take (a probe, a key): emulated VMs on two cores are slow.
const STEP_LIMIT: Duration = Duration::from_secs(300);

/// How long installing the venv may take: 2 min 40 s in each of two emulated VMs at once here
/// (about 8 s on this machine itself).
const INSTALL_LIMIT: Duration = Duration::from_secs(1200);

/// Where the venv of a wheelhouse is on a site (a shell expression, under `run_each`).
pub fn venv(house: &Wheelhouse) -> String {
    format!("\"$FEDSIM_ROOT\"/venvs/{}", house.id)
}

pub struct RemoteSites<'f> {
    fleet: &'f mut dyn Fleet,
    names: Vec<String>,
}

impl<'f> RemoteSites<'f> {
    pub fn new(fleet: &'f mut dyn Fleet, names: Vec<String>) -> RemoteSites<'f> {
        RemoteSites { fleet, names }
    }

    /// Run `scripts[i]` on the i-th site; what each printed, or an error naming the first site
    /// where `step` failed (and how many others did).
    pub fn run_each(
        &mut self,
        step: &str,
        scripts: &[Option<String>],
    ) -> Result<Vec<String>, PlatformError> {
        self.run_each_within(step, scripts, STEP_LIMIT)
    }

    /// [`RemoteSites::run_each`], each script given up to `limit`.
    fn run_each_within(
        &mut self,
        step: &str,
        scripts: &[Option<String>],
        limit: Duration,
    ) -> Result<Vec<String>, PlatformError> {
        let outs = self.fleet.run_each(scripts, limit);
        self.first_failure(step, &outs)?;
        Ok(outs.into_iter().map(|o| o.unwrap_or_default()).collect())
    }

    /// Put `files[i]` on the i-th site (paths relative to its folder for this run).
    pub fn put_each(&mut self, step: &str, files: &[Vec<SiteFile>]) -> Result<(), PlatformError> {
        let outs = self.fleet.put_each(files);
        self.first_failure(step, &outs)
    }

    fn first_failure<T>(
        &self,
        step: &str,
        outs: &[Result<T, String>],
    ) -> Result<(), PlatformError> {
        let failed: Vec<(&String, &String)> = self
            .names
            .iter()
            .zip(outs)
            .filter_map(|(n, o)| o.as_ref().err().map(|e| (n, e)))
            .collect();
        match failed.first() {
            None => Ok(()),
            Some((site, reason)) => Err(PlatformError::Site {
                site: (*site).clone(),
                what: step.to_string(),
                reason: match failed.len() {
                    1 => (*reason).clone(),
                    n => format!("{reason} (and on {} other sites)", n - 1),
                },
            }),
        }
    }

    /// Every site's Python, machine and C library.
    pub fn targets(&mut self) -> Result<Vec<Target>, PlatformError> {
        let probe = vec![Some(Target::PROBE.to_string()); self.names.len()];
        let outs = self.run_each("asking what Python the site has", &probe)?;
        outs.iter()
            .zip(&self.names)
            .map(|(out, site)| {
                Target::read(out).map_err(|reason| PlatformError::Site {
                    site: site.clone(),
                    what: "the platform's Python".into(),
                    reason,
                })
            })
            .collect()
    }

    /// Each site's wheelhouse, installed into its venv unless the site has that venv already:
    /// the wheels are sent only to the sites that lack it. `warm`: modules imported once after
    /// the install, so their bytecode is compiled then and not by every process the platform
    /// starts (in an emulated VM the first import of flwr took about 90 s).
    pub fn ensure_venvs(
        &mut self,
        python: &Path,
        requirements: &[String],
        warm: &[&str],
    ) -> Result<Vec<Wheelhouse>, PlatformError> {
        let targets = self.targets()?;
        let mut houses: Vec<Wheelhouse> = Vec::with_capacity(targets.len());
        for t in &targets {
            let house = match houses.iter().zip(&targets).find(|(_, seen)| *seen == t) {
                Some((h, _)) => h.clone(),
                None => wheelhouse::ensure(python, t, requirements)?,
            };
            houses.push(house);
        }
        let check: Vec<Option<String>> = houses
            .iter()
            .map(|h| {
                Some(format!(
                    "if [ -f {v}/.ok ]; then echo HAVE=1; else echo HAVE=0; fi",
                    v = venv(h)
                ))
            })
            .collect();
        let have = self.run_each("looking for the platform's venv", &check)?;
        let lacking: Vec<bool> = have.iter().map(|o| !o.contains("HAVE=1")).collect();
        if lacking.iter().any(|l| *l) {
            let files: Vec<Vec<SiteFile>> = houses
                .iter()
                .zip(&lacking)
                .map(|(h, lacks)| match lacks {
                    true => h
                        .wheels
                        .iter()
                        .map(|(w, bytes)| (bytes.clone(), format!("wheels/{w}"), 0o600))
                        .collect(),
                    false => Vec::new(),
                })
                .collect();
            tracing::info!(
                phase = "provision",
                sites = lacking.iter().filter(|l| **l).count(),
                "sending the platform's wheels to the sites that lack its venv"
            );
            self.put_each("sending the platform's wheels", &files)?;
            let install: Vec<Option<String>> = houses
                .iter()
                .zip(&lacking)
                .map(|(h, lacks)| lacks.then(|| install_script(h, warm)))
                .collect();
            self.run_each_within("installing the platform's venv", &install, INSTALL_LIMIT)?;
        }
        Ok(houses)
    }

    /// Start `script` on every site, each dialling `dial(site)`.
    pub fn start(
        &mut self,
        script: &str,
        server: SocketAddr,
        dial: &dyn Fn(&str) -> SocketAddr,
    ) -> Result<(), PlatformError> {
        let relays = self
            .names
            .iter()
            .map(|n| (n.clone(), dial(n)))
            .filter(|(_, a)| *a != server)
            .collect();
        let dial = Dial {
            coordinator: server,
            relays,
        };
        self.fleet
            .start_script(&dial, script)
            .map_err(|e| PlatformError::Site {
                site: e.site().to_string(),
                what: "starting the node".into(),
                reason: e.to_string(),
            })
    }

    pub fn fleet(&mut self) -> &mut dyn Fleet {
        self.fleet
    }
}

/// Install a wheelhouse sent to `wheels/` into its venv, with no index: pip run from its own
/// wheel into a venv made without pip (Debian's python3 has no ensurepip unless python3-venv
/// is installed). Under a lock, since sites of one account share `~/.fedsim`; the other venvs
/// go (each is about 200 MB).
fn install_script(h: &Wheelhouse, warm: &[&str]) -> String {
    let pip = h
        .wheels
        .iter()
        .map(|(w, _)| w)
        .find(|w| w.starts_with("pip-"))
        .expect("ensure checked the wheelhouse has pip");
    let reqs: Vec<String> = h
        .requirements
        .iter()
        .map(|r| crate::fleet::ssh::shell_quote(r))
        .collect();
    format!(
        "set -e\nmkdir -p \"$FEDSIM_ROOT\"/venvs\nexec 9>\"$FEDSIM_ROOT\"/venvs/.lock\nflock 9\nv={v}\nif [ ! -f \"$v\"/.ok ]; then\n  rm -rf \"$v\"\n  python3 -m venv --without-pip \"$v\"\n  if ! \"$v\"/bin/python wheels/{pip}/pip install --quiet --no-compile --no-index --disable-pip-version-check --find-links wheels {reqs} > pip.log 2>&1; then tail -n 5 pip.log >&2; exit 1; fi\n  {warm}\n  touch \"$v\"/.ok\nfi\nrm -rf wheels\nfind \"$FEDSIM_ROOT\"/venvs -mindepth 1 -maxdepth 1 -type d ! -name {id} -exec rm -rf {{}} +\n[ -f \"$v\"/.ok ]\n",
        v = venv(h),
        pip = pip,
        reqs = reqs.join(" "),
        id = h.id,
        warm = match warm.is_empty() {
            true => "true".to_string(),
            false => format!(
                "\"$v\"/bin/python -c {}",
                crate::fleet::ssh::shell_quote(&format!("import {}", warm.join(", ")))
            ),
        },
    )
}
