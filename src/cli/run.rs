//! `deltaic run`: the nightly driver (see [`crate::run`]).

use crate::config::Config;
use std::process::ExitCode;

/// Options of `deltaic run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  deltaic run                          back up everything, then snapshot (cron: `deltaic run >/dev/null && echo OK`)
  deltaic run --only rsync/octopus     back up one unit, then snapshot
  deltaic run -S                       back up without taking a snapshot
  deltaic run --dry-run                print the plan (units, scrubs) and do nothing")]
pub struct Args {
    /// Do not take a snapshot after the units finish
    #[arg(short = 'S', long, overrides_with = "snapshot")]
    pub no_snapshot: bool,
    /// Take a snapshot after the units finish (the default)
    #[arg(long, overrides_with = "no_snapshot")]
    pub snapshot: bool,
    /// Run only these units (e.g. rsync/octopus); may be repeated
    #[arg(long, value_name = "UNIT", num_args = 1..)]
    pub only: Vec<String>,
    /// Print the units that would run, with their command lines, and exit
    #[arg(long)]
    pub dry_run: bool,
    /// Print the run summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `deltaic run`.
pub fn execute(_config: &Config, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deltaic run` is not implemented yet")
}
