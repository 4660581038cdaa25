//! `chatmesh-loadtest`: parse arguments, run the chosen scenario, exit 1 when a threshold is
//! breached and 2 when the run itself failed.

use std::process::ExitCode;

use clap::Parser as _;

use chatmesh_loadtest::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(chatmesh_loadtest::run::run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
