//! `deltaic prune`: snapshot retention and log pruning (see [`crate::prune`]).

use crate::config::Config;
use std::process::ExitCode;

/// Options of `deltaic prune`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  deltaic prune                        remove expired snapshots and old logs
  deltaic prune -n                     show each snapshot, kept or removed, and by which rule
  deltaic ls | deltaic prune --simulate --as-of 2025-01-01
                                       what would be kept on a date, without touching anything")]
pub struct Args {
    /// Print what would be kept and removed (and by which rule); change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Show the snapshot tools' own output
    #[arg(short, long)]
    pub verbose: bool,
    /// Read snapshot names (one a line) from stdin and print the decisions; touch nothing
    #[arg(long)]
    pub simulate: bool,
    /// With --simulate: prune as if today were DATE (YYYY-MM-DD)
    #[arg(long, value_name = "DATE", requires = "simulate")]
    pub as_of: Option<String>,
    /// Print the decisions as JSON
    #[arg(long)]
    pub json: bool,
}

/// Runs `deltaic prune`.
pub fn execute(_config: &Config, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deltaic prune` is not implemented yet")
}
