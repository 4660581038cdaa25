//! `install-nats`: makes sure a nats-server >= 2.11 is available, installing the pinned
//! 2.15.1 into `<workspace>/.local/nats/` if none is found. `--force` reinstalls regardless.
//! Prints the path of the binary on stdout.

use std::process::ExitCode;

fn main() -> ExitCode {
    let force = std::env::args().skip(1).any(|a| a == "--force");
    let result = if force {
        natsd::install()
    } else {
        natsd::ensure_installed()
    };
    match result.and_then(|path| natsd::check_binary(&path).map(|v| (path, v))) {
        Ok((path, version)) => {
            eprintln!("nats-server {version} at {}", path.display());
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("install-nats: {error}");
            ExitCode::FAILURE
        }
    }
}
