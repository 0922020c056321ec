//! `deltaic coda backup`: the command `deltaic run` gives each Coda unit. This version accepts
//! the original's options and fails with a clear message: the Coda backup itself is not
//! implemented yet, and a configured volume must fail its unit rather than be skipped.

use crate::config::Config;
use std::process::ExitCode;

/// The `deltaic coda` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CodaCommand {
    /// Back up one replica of a Coda volume (not implemented in this version)
    #[command(
        after_help = "Examples:\n  deltaic coda backup coda1.example.org a:foo\n  \
                            deltaic coda backup --incremental coda1.example.org a:foo"
    )]
    Backup {
        /// Incremental dump instead of a full one
        #[arg(short, long)]
        incremental: bool,
        /// Do not re-clone the backup volume first
        #[arg(short = 'R', long)]
        skip_refresh: bool,
        /// The Coda server
        host: String,
        /// The volume name
        volume: String,
    },
}

/// Runs a `deltaic coda` subcommand.
pub fn execute(_config: &Config, cmd: CodaCommand) -> anyhow::Result<ExitCode> {
    let CodaCommand::Backup { host, volume, .. } = cmd;
    anyhow::bail!(
        "cannot back up Coda volume {volume} on {host}: the coda source is not implemented in \
         this version of deltaic; remove the `coda:` section or run the original Deltaic for it"
    )
}
