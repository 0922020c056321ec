//! `deltaic`: see the crate documentation in lib.rs and README.md.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(code) = deltaic::sources::github::askpass::run_if_requested() {
        return code; // started by git as GIT_ASKPASS: answer the prompt, nothing else
    }
    let cli = deltaic::cli::Cli::parse();
    deltaic::logging::init(cli.verbose, cli.quiet);
    match deltaic::cli::execute(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
