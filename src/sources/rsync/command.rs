//! `deltaic rsync backup` and `deltaic rsync restore`.

use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// The `deltaic rsync` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RsyncCommand {
    /// Back up one host from the `rsync:` section
    #[command(after_help = "\
Examples:
  deltaic rsync backup host.example.org
  deltaic rsync backup --scrub host.example.org   (compare file contents by checksum)")]
    Backup {
        /// Compare every file by checksum, re-transferring files whose content differs
        #[arg(short = 'c', long)]
        scrub: bool,
        /// The host, as named under `rsync:` in the config
        host: String,
    },
    /// Copy files from the backup (or a mounted snapshot) back to a host
    #[command(after_help = "\
Examples:
  deltaic rsync restore /backup/rsync/octopus/etc octopus.example.org /tmp/etc
  deltaic rsync restore /backup/rsync/octopus/home octopus.example.org /home --delete --dry-run")]
    Restore {
        /// The data came from a Coda volume (no ACLs, xattrs, groups or devices)
        #[arg(long)]
        coda: bool,
        /// Remote user
        #[arg(short, long, default_value = "root")]
        user: String,
        /// Local path inside the backup or a mounted snapshot
        source: PathBuf,
        /// Host to restore to
        host: String,
        /// Directory on the host
        destdir: String,
        /// Extra rsync options, passed through (e.g. --delete --dry-run)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rsync_args: Vec<String>,
    },
}

/// Runs a `deltaic rsync` subcommand.
pub fn execute(config: &Config, cmd: RsyncCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RsyncCommand::Backup { scrub, host } => super::backup::run(config, &host, scrub),
        RsyncCommand::Restore {
            coda,
            user,
            source,
            host,
            destdir,
            rsync_args,
        } => {
            let request = super::restore::RestoreRequest {
                coda,
                user: &user,
                source: &source,
                host: &host,
                destdir: &destdir,
                rsync_args: &rsync_args,
            };
            super::restore::run(config, &request)
        }
    }
}
