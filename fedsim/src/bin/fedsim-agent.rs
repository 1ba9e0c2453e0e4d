//! `fedsim-agent`: what a site runs, and nothing else. One process per site is the isolation, so
//! this binary is kept small: it links only what a site needs (frames, algorithms, data
//! reading), not SSH/OpenSSL, the portal, the browser driver or the report, and it is linked
//! position-dependent (build.rs), so its pointer tables are shared between all the agents on a
//! machine instead of being relocated into each one's private memory.
//!
//! Its commands are the site-side ones of `fedsim` (`agent`, `reach`, `reap`, `supervise`), with the same
//! arguments, so a site runs either binary alike.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fedsim::agent::cli;

#[derive(Parser)]
#[command(
    name = "fedsim-agent",
    version,
    about = "A fedsim site: started by fedsim on each site"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a site agent from its bundle directory.
    Agent(cli::AgentArgs),
    /// Exit 0 if a TCP connection to ADDR opens within 5 s.
    Reach(cli::ReachArgs),
    /// Run PROGRAM and leave none of its descendants behind.
    Reap(cli::ReapArgs),
    /// Start the agents of this host's sites from a spec file and outlive none of them.
    Supervise(cli::SuperviseArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Ok(exe) = std::env::current_exe() {
        fedsim::sys::reaper::set_binary(exe);
    }
    match args.command {
        Command::Agent(a) => cli::agent(a),
        Command::Reach(a) => cli::reach(a),
        Command::Reap(a) => cli::reap(a),
        Command::Supervise(a) => cli::supervise(a),
    }
}
