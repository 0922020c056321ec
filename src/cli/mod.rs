//! The command line: the only layer that sees argv or prints for people (or `--json`).
//!
//! Each subcommand is a module with an `Args` struct and an `execute` function that returns the
//! process exit code; errors bubble up to `main`, which prints `error: …` and exits 1. clap
//! itself exits 2 on usage errors (core-rsync-coda.md §2.3).

mod config_check;
mod mkconf;
mod prune;
mod run;
mod storage;

use crate::config::{self, Config};
use crate::sources;
use anyhow::bail;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  deltaic run                          back up every configured unit, then snapshot
  deltaic -c /etc/deltaic.conf ls      list snapshots of another configuration
  deltaic prune -n                     show which snapshots prune would remove
  deltaic rsync backup host.example.org
  deltaic mkconf crontab | crontab -   install the nightly jobs";

/// Back up rsync hosts (and more sources to come) into one filesystem and snapshot it.
#[derive(Debug, Parser)]
#[command(name = "deltaic", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Configuration file [default: $XDG_CONFIG_HOME/deltaic.conf or ~/.config/deltaic.conf]
    #[arg(
        short = 'c',
        long = "config",
        visible_alias = "config-file",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// More diagnostics on stderr (-v info, -vv debug)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Run even as root (deltaic is meant to run as an unprivileged backup user)
    #[arg(long, env = "DELTAIC_ALLOW_ROOT", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub allow_root: bool,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up every unit of every source, then take a snapshot (the nightly job)
    Run(run::Args),
    /// Remove old snapshots by the retention rules, and prune old logs
    Prune(prune::Args),
    /// List snapshots, with whether their run was complete
    Ls(storage::LsArgs),
    /// Show free space of the backup filesystem (and LVM pool)
    Df(storage::DfArgs),
    /// Make snapshots readable under ROOT/Snapshots
    Mount(storage::MountArgs),
    /// Unmount snapshots mounted with `deltaic mount`
    Umount(storage::UmountArgs),
    /// Take a snapshot of the backup root now, without backing anything up
    Snapshot(storage::SnapshotArgs),
    /// Print a crontab or sudoers file for this installation
    Mkconf(mkconf::Args),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// The rsync source: back up or restore one host
    #[command(subcommand)]
    Rsync(crate::sources::rsync::command::RsyncCommand),
    /// The github source: back up organisations' repositories, wikis, issues and releases
    #[command(subcommand)]
    Github(crate::sources::github::command::GithubCommand),
    /// The rbd source: back up, restore and drop Ceph RBD images and snapshots
    #[command(subcommand)]
    Rbd(crate::sources::rbd::command::RbdCommand),
    /// The rgw source: back up or restore S3 buckets (Ceph RADOS Gateway or any S3 service)
    #[command(subcommand)]
    Rgw(crate::sources::rgw::command::RgwCommand),
    /// The coda source: Coda volume replicas dumped over ssh
    #[command(subcommand)]
    Coda(crate::sources::coda::command::CodaCommand),
}

/// Runs a source command: a unit child of `deltaic run` arms its guard before anything else,
/// config loading included (it must not outlive the run: [`crate::run::unit_guard`]); a unit
/// run by hand that succeeded is then recorded as ok ([`crate::run::unit_session`]).
fn unit_command(
    load: &dyn Fn() -> anyhow::Result<Config>,
    execute: impl FnOnce(&Config) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    crate::run::unit_guard::arm()?;
    let code = execute(&load()?)?;
    if code == ExitCode::SUCCESS {
        crate::run::unit_session::finish()?;
    }
    Ok(code)
}

/// Runs the parsed command line and returns the exit code.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    // core-rsync-coda.md §2.2 step 3: refuse root before the config is read.
    if rustix::process::geteuid().is_root() && !cli.allow_root {
        bail!(
            "refusing to run as root: run deltaic as the backup user \
             (or pass --allow-root / set DELTAIC_ALLOW_ROOT=1 if you really mean it)"
        );
    }
    let config_path = cli.config.clone().unwrap_or_else(config::default_path);
    let load = || -> anyhow::Result<Config> {
        let config = Config::load(&config_path)?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        Ok(config)
    };
    match cli.command {
        Command::Run(args) => run::execute(&load()?, args),
        Command::Prune(args) => prune::execute(&load()?, args),
        Command::Ls(args) => storage::ls(&load()?, args),
        Command::Df(args) => storage::df(&load()?, args),
        Command::Mount(args) => storage::mount(&load()?, args),
        Command::Umount(args) => storage::umount(&load()?, args),
        Command::Snapshot(args) => storage::snapshot(&load()?, args),
        Command::Mkconf(args) => mkconf::execute(&load()?, args),
        Command::Config(cmd) => config_check::execute(&config_path, cmd),
        Command::Rsync(cmd) => unit_command(&load, |c| sources::rsync::command::execute(c, cmd)),
        Command::Github(cmd) => unit_command(&load, |c| sources::github::command::execute(c, cmd)),
        Command::Rbd(cmd) => unit_command(&load, |c| sources::rbd::command::execute(c, cmd)),
        Command::Rgw(cmd) => unit_command(&load, |c| sources::rgw::command::execute(c, cmd)),
        Command::Coda(cmd) => unit_command(&load, |c| sources::coda::command::execute(c, cmd)),
    }
}
