//! `deltaic ls`, `df`, `mount`, `umount` and `snapshot`: the snapshot layer for people.

use crate::config::Config;
use std::process::ExitCode;

/// Options of `deltaic ls`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  deltaic ls\n  deltaic ls --json | jq '.[] | select(.complete == false)'")]
pub struct LsArgs {
    /// Print JSON: [{"name": ..., "complete": ...}]
    #[arg(long)]
    pub json: bool,
}

/// Options of `deltaic df`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  deltaic df\n  deltaic df -c     (cron: prints and exits 1 only when below df-warning)")]
pub struct DfArgs {
    /// Print only resources below `df-warning` percent free, and exit 1 if there are any
    #[arg(short, long)]
    pub check: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Options of `deltaic mount`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  deltaic mount 20240101-1\n  deltaic mount $(deltaic ls | tail -n 1)")]
pub struct MountArgs {
    /// Snapshots to mount (YYYYMMDD-N)
    #[arg(required = true, value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
}

/// Options of `deltaic umount`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  deltaic umount 20240101-1\n  deltaic umount -a")]
pub struct UmountArgs {
    /// Unmount every mounted snapshot
    #[arg(short, long, conflicts_with = "snapshots")]
    pub all: bool,
    /// Snapshots to unmount
    #[arg(value_name = "SNAPSHOT", required_unless_present = "all")]
    pub snapshots: Vec<String>,
}

/// Options of `deltaic snapshot`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  deltaic snapshot      freeze the backup root now (e.g. after a manual backup)")]
pub struct SnapshotArgs {}

/// Runs `deltaic ls`.
pub fn ls(_config: &Config, _args: LsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deltaic ls` is not implemented yet")
}

/// Runs `deltaic df`.
pub fn df(_config: &Config, _args: DfArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deltaic df` is not implemented yet")
}

/// Runs `deltaic mount`.
pub fn mount(_config: &Config, _args: MountArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deltaic mount` is not implemented yet")
}

/// Runs `deltaic umount`.
pub fn umount(_config: &Config, _args: UmountArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deltaic umount` is not implemented yet")
}

/// Runs `deltaic snapshot`.
pub fn snapshot(_config: &Config, _args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deltaic snapshot` is not implemented yet")
}
