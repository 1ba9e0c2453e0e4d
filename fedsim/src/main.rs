//! The `fedsim` command line: parse, then hand over to the subcommand (`cli/`).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let Ok(exe) = std::env::current_exe() {
        fedsim::sys::reaper::set_binary(exe);
    }
    cli::dispatch(cli)
}
