//! The `spotload` operator CLI: parse, run, map the error to an exit code.

use clap::Parser;
use spotload::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    spotload::init_logging(cli.verbose);
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
