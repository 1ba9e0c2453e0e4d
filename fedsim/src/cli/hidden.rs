//! Subcommands fedsim runs on itself, not for people: `reach` (is an address reachable from
//! this site?) and `reap` (run a step and leave none of its descendants).

use std::time::Duration;

use super::Exit;

#[derive(clap::Args)]
pub struct ReachArgs {
    addr: String,
}

#[derive(clap::Args)]
pub struct ReapArgs {
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

pub fn reach(a: ReachArgs) -> Exit {
    let reached = a
        .addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| e.to_string())
        .and_then(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| e.to_string())
        });
    match reached {
        Ok(_) => Exit::Succeeded,
        Err(e) => {
            say!("cannot connect: {e}");
            Exit::Failed
        }
    }
}

/// The step's own exit code is passed on: it is not one of fedsim's.
pub fn reap(a: ReapArgs) -> std::process::ExitCode {
    let code = fedsim::sys::reaper::run(&a.command[0], &a.command[1..]);
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
