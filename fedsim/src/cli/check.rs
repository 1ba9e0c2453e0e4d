//! `fedsim check`: the health of every site, as a table.

use fedsim::scenario::Provider;

use super::{Exit, Global, ScenarioArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scenario: ScenarioArgs,
}

pub fn exec(a: Args, g: &Global) -> Exit {
    let opts = match super::options(None, g) {
        Ok(o) => o,
        Err(exit) => return exit,
    };
    let result = a
        .scenario
        .load()
        .and_then(|(_, s)| fedsim::run::plan(&s, None, false).map(|p| (s, p)))
        .and_then(|(s, p)| fedsim::check::check(&s, &p.plan, &opts.agent_exe).map(|h| (s, h)));
    match result {
        Ok((s, health)) if health.is_empty() => {
            match s.fleet.provider {
                Provider::Vagrant => say!("no Vagrant VM of {} is up: `fedsim fleet up -c FILE` brings them up, then check finds them; `fedsim validate` checks the scenario and data", s.scenario.name),
                Provider::Vm => say!("no fleet of {} is up: `fedsim fleet up -c FILE` boots it, then check finds its VMs; `fedsim validate` checks the scenario and data", s.scenario.name),
                _ => say!("provider {} has no hosts to check; `fedsim validate` checks the scenario and data", s.fleet.provider),
            }
            Exit::Succeeded
        }
        Ok((_, health)) => {
            print!("{}", fedsim::check::table(&health));
            Exit::ok_if(health.iter().all(|h| h.ok()))
        }
        Err(e) => super::fail(&e),
    }
}
