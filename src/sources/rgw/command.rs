//! `deltaic rgw backup` and `deltaic rgw restore` (github-rgw-rbd.md §2.5, §2.8).

use super::backup::{self, Summary};
use super::listing::Scrub;
use super::{client, restore};
use crate::config::Config;
use crate::run::manifest::UnitReport;
use crate::run::unit_session;
use crate::sources::{UnitRoot, check_component};
use anyhow::{anyhow, bail};
use std::process::ExitCode;

/// The `deltaic rgw` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RgwCommand {
    /// Back up one bucket into ROOT/rgw/BUCKET
    #[command(after_help = "\
Examples:
  deltaic rgw backup photos            fetch what the listing says changed
  deltaic rgw backup -A photos         also re-read every object ACL
  deltaic rgw backup -c photos         re-read everything (scrub)")]
    Backup {
        /// Re-read every object's ACL (ACL changes do not show in listings)
        #[arg(short = 'A', long)]
        scrub_acls: bool,
        /// Re-read every object's data, metadata and ACL
        #[arg(short = 'c', long)]
        scrub: bool,
        /// The bucket
        bucket: String,
    },
    /// Upload a backed-up bucket (or one in a mounted snapshot) into a bucket
    #[command(after_help = "\
Examples:
  deltaic rgw restore photos photos-restored
  deltaic rgw restore /backup/Snapshots/20240102-1/rgw/photos photos-restored
  deltaic rgw restore --force photos photos        over a bucket that still has objects")]
    Restore {
        /// Restore into a bucket that already holds objects (same keys are overwritten)
        #[arg(short = 'f', long)]
        force: bool,
        /// A bucket name under ROOT/rgw, or a path (anything containing `/`)
        source: String,
        /// The bucket to restore into (created if missing)
        dest_bucket: String,
    },
}

/// Runs a `deltaic rgw` subcommand.
pub fn execute(config: &Config, cmd: RgwCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RgwCommand::Backup {
            scrub_acls,
            scrub,
            bucket,
        } => {
            let level = if scrub {
                Scrub::All
            } else if scrub_acls {
                Scrub::Acls
            } else {
                Scrub::None
            };
            run_backup(config, &bucket, level)
        }
        RgwCommand::Restore {
            force,
            source,
            dest_bucket,
        } => restore::run(config, &source, &dest_bucket, force),
    }
}

fn run_backup(config: &Config, bucket: &str, scrub: Scrub) -> anyhow::Result<ExitCode> {
    check_component(bucket).map_err(|e| anyhow!("bucket: {e}"))?;
    let target = super::target(config, bucket)?;
    let root = config.root();
    let unit = UnitRoot::from_components(&["rgw", bucket])?;
    let _locks = unit_session::start(config, &unit)?;
    let threads = config.settings.rgw_threads.get();
    let runtime = client::runtime(threads)?;
    let counter = client::RequestCounter::default();
    let dir = root.join("rgw").join(bucket);
    let result = runtime.block_on(async {
        let s3 = super::bucket_client(&target, &counter).await?;
        backup::backup_bucket(&s3, bucket, &dir, scrub, threads, target.versions).await
    });
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            println!("{} S3 requests", counter.get());
            return Err(err);
        }
    };
    println!(
        "rgw/{bucket}: {} objects listed, {} updated ({} bytes), {} vanished, {} files deleted; \
         {} S3 requests ({} list)",
        summary.listed,
        summary.updated,
        summary.bytes,
        summary.vanished,
        summary.deleted_files,
        counter.get(),
        summary.list_requests
    );
    report(&summary, scrub);
    if summary.errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for error in &summary.errors {
        eprintln!("{error}");
    }
    bail!(
        "backup of rgw/{bucket} had {} error(s) (listed above); the keys concerned keep their \
         previous copies and are tried again next run",
        summary.errors.len()
    )
}

/// The unit report for `deltaic run` (D6: scrub mismatches are counted, not failures).
fn report(summary: &Summary, scrub: Scrub) {
    let report = UnitReport {
        bytes_transferred: Some(summary.bytes),
        files_transferred: Some(summary.updated),
        scrubbed: scrub != Scrub::None,
        scrub_mismatches: (scrub != Scrub::None).then_some(summary.scrub_mismatches),
        warnings: summary.warnings.iter().take(20).cloned().collect(),
    };
    if let Err(err) = report.write_if_requested() {
        tracing::error!("{err:#}");
    }
}
