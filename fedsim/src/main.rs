//! The `fedsim` command line: parse, then hand over to the subcommand (`cli/`).

/// `println!` that carries on when stdout is gone (`fedsim probe | head -2`): a reader that
/// closed the pipe has what it wanted, and the command still ends with its own exit code
/// instead of a panic.
macro_rules! say {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let Ok(exe) = std::env::current_exe() {
        fedsim::sys::reaper::set_binary(exe);
    }
    cli::dispatch(cli)
}
