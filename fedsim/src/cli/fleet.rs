//! `fedsim fleet up|status|down`: VMs that stay up between runs (provider "vm" or "vagrant").

use std::path::{Path, PathBuf};

use fedsim::scenario::{Provider, Scenario};

use super::{Exit, Global};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Boot the scenario's VMs (one per site) and leave them up for later runs.
    Up {
        /// The scenario whose sites the VMs are for (provider "vm" or "vagrant").
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Every fleet that is up: each VM, its qemu and whether it answers SSH.
    Status,
    /// Stop the scenario's VMs and remove their disks.
    Down {
        /// The scenario whose fleet to stop.
        #[arg(short, long)]
        config: PathBuf,
    },
}

/// `fedsim fleet up|status|down`.
pub fn exec(what: Command, g: &Global) -> Exit {
    use fedsim::fleet::vm;
    let scenario_of = |config: &Path| -> Result<Scenario, Exit> {
        let s = super::load(config).map_err(|e| super::fail(&e))?;
        if !matches!(s.fleet.provider, Provider::Vm | Provider::Vagrant) {
            eprintln!(
                "error: {}: fleet.provider is \"{}\"; fleets that stay up are for providers \"vm\" and \"vagrant\"",
                config.display(),
                s.fleet.provider
            );
            return Err(Exit::BadInput);
        }
        Ok(s)
    };
    match what {
        Command::Up { config } => {
            let s = match scenario_of(&config) {
                Ok(s) => s,
                Err(exit) => return exit,
            };
            super::install_signal_handler(g);
            let started = std::time::Instant::now();
            if s.fleet.provider == Provider::Vagrant {
                return vagrant_up(&s, started, g);
            }
            match vm::up(&s) {
                Ok(state) => {
                    if !g.quiet {
                        eprintln!(
                            "fleet {}: {} VMs up after {:.1} s",
                            state.scenario,
                            state.machines.len(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                    say!("{}", vm::fleet_dir(&state.scenario).display());
                    Exit::Succeeded
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::failed_or_cancelled()
                }
            }
        }
        Command::Status => {
            let fleets = vm::FleetState::all();
            if fleets.is_empty() {
                say!("no fleet is up");
            }
            let mut healthy = true;
            for f in &fleets {
                say!("fleet {} (up since {})", f.scenario, f.started);
                if let Some(why) = &f.broken {
                    healthy = false;
                    say!("  ✘ broken: {why}; `fedsim fleet down`, then `fedsim fleet up`");
                }
                for (m, running) in vm::status(f) {
                    let ssh = running && vm::reachable(f, &m);
                    healthy &= ssh;
                    say!(
                        "  {} {:<10} qemu pid {:<8} {:<8} ssh 127.0.0.1:{} {}",
                        if ssh { "✔" } else { "✘" },
                        m.site,
                        m.pid,
                        if running { "running" } else { "gone" },
                        m.port,
                        if ssh { "answers" } else { "does not answer" }
                    );
                }
            }
            if healthy {
                Exit::Succeeded
            } else {
                Exit::Failed
            }
        }
        Command::Down { config } => {
            let s = match scenario_of(&config) {
                Ok(s) => s,
                Err(exit) => return exit,
            };
            if s.fleet.provider == Provider::Vagrant {
                return vagrant_down(&s, g);
            }
            match vm::down(&s.scenario.name) {
                Ok(n) => {
                    if !g.quiet {
                        eprintln!("fleet {}: {n} VMs stopped", s.scenario.name);
                    }
                    Exit::Succeeded
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::Failed
                }
            }
        }
    }
}

/// `fedsim fleet up` for provider "vagrant": `vagrant up` of the sites that are not running,
/// their host keys read from their consoles, and the VMs left up for later runs.
fn vagrant_up(s: &Scenario, started: std::time::Instant, g: &Global) -> Exit {
    use fedsim::fleet::vagrant::{Machines, Vagrant};
    let up = Vagrant::new(&fedsim::fleet::vagrant_dir(s), s.partition.sites).and_then(|v| {
        let state = v.state_dir();
        std::fs::create_dir_all(&state).map_err(|e| {
            fedsim::fleet::vagrant::VagrantError::Command {
                args: "up".into(),
                dir: v.dir().to_path_buf(),
                reason: format!("{}: {e}", state.display()),
            }
        })?;
        let dir = v.dir().to_path_buf();
        Machines::up(
            v,
            true,
            &state.join("vagrant-up.log"),
            &state.join("known_hosts"),
        )
        .map(|(m, specs)| (m, specs, dir))
    });
    match up {
        Ok((machines, specs, dir)) => {
            machines.keep();
            if !g.quiet {
                eprintln!(
                    "fleet {}: {} Vagrant VMs up after {:.1} s (`vagrant status` in {})",
                    s.scenario.name,
                    specs.len(),
                    started.elapsed().as_secs_f64(),
                    dir.display()
                );
            }
            say!("{}", dir.display());
            Exit::Succeeded
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::failed_or_cancelled()
        }
    }
}

/// `fedsim fleet down` for provider "vagrant": `vagrant destroy -f` of the scenario's sites.
fn vagrant_down(s: &Scenario, g: &Global) -> Exit {
    use fedsim::fleet::vagrant::Vagrant;
    let v = match Vagrant::new(&fedsim::fleet::vagrant_dir(s), s.partition.sites) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    let running = match v.running() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failed;
        }
    };
    let sites: Vec<String> = (1..=s.partition.sites)
        .map(|i| format!("site-{i}"))
        .collect();
    if let Err(e) = v.destroy(&sites) {
        eprintln!("error: destroying the VMs in {}: {e}", v.dir().display());
        return Exit::Failed;
    }
    if !g.quiet {
        eprintln!(
            "fleet {}: {} Vagrant VMs destroyed",
            s.scenario.name,
            running.len()
        );
    }
    Exit::Succeeded
}
