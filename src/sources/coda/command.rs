//! `deltaic coda backup [-i|--incremental] [-R|--skip-refresh] [-v] HOST VOLUME`: the command
//! `deltaic run` gives each Coda unit, and the one an operator runs by hand (§10.2).

use super::backup::{self, Request};
use crate::config::Config;
use std::process::ExitCode;

/// The `deltaic coda` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CodaCommand {
    /// Back up one replica of a Coda volume into ROOT/coda/<server short name>/<volume>
    #[command(after_help = "\
Examples:
  deltaic coda backup coda1.example.org a:foo
  deltaic coda backup --incremental coda1.example.org a:foo

A full dump (the default) removes from the backup whatever the volume no longer holds; an
incremental one only adds and updates. Without a record of a completed dump (the xattr
user.coda.incremental-ok on the volume's directory) a full dump is done anyway.")]
    Backup {
        /// Incremental dump instead of a full one
        #[arg(short, long)]
        incremental: bool,
        /// Do not re-clone the backup volume first (volutil lock/backup)
        #[arg(short = 'R', long)]
        skip_refresh: bool,
        /// Show volutil's output
        #[arg(short, long)]
        verbose: bool,
        /// The Coda server
        host: String,
        /// The volume name (e.g. a:foo, or / for the root volume)
        volume: String,
    },
}

/// Runs a `deltaic coda` subcommand.
pub fn execute(config: &Config, cmd: CodaCommand) -> anyhow::Result<ExitCode> {
    let CodaCommand::Backup {
        incremental,
        skip_refresh,
        verbose,
        host,
        volume,
    } = cmd;
    let request = Request {
        host: &host,
        volume: &volume,
        incremental,
        skip_refresh,
        verbose,
    };
    backup::run(config, &request)
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn the_driver_argv_and_the_original_short_options_parse() {
        let cli = Cli::try_parse_from([
            "deltaic",
            "coda",
            "backup",
            "coda1.example.org",
            "a:foo",
            "--incremental",
        ])
        .unwrap();
        let Command::Coda(super::CodaCommand::Backup {
            incremental,
            host,
            volume,
            ..
        }) = cli.command
        else {
            panic!()
        };
        assert!(incremental);
        assert_eq!(
            (host.as_str(), volume.as_str()),
            ("coda1.example.org", "a:foo")
        );
        let cli =
            Cli::try_parse_from(["deltaic", "coda", "backup", "-i", "-R", "-v", "h", "/"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Coda(super::CodaCommand::Backup {
                incremental: true,
                skip_refresh: true,
                verbose: true,
                ..
            })
        ));
    }
}
