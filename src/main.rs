//! The `spotload` operator CLI: parse, run on one runtime, map the error to
//! an exit code.

use clap::Parser;
use spotload::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    spotload::init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
