//! `deltaic rbd backup`, `restore`, `drop` and `ls` (github-rgw-rbd.md §3.6–§3.9), plus a
//! hidden `apply-diff` for benchmarks and manual repair.

use super::backup::{self, ImageUnit, Outcome, unit_path};
use super::config::{Kind, lookup};
use super::state::{self, Xattrs};
use super::tool::Rbd;
use crate::config::Config;
use crate::run::manifest::UnitReport;
use crate::run::unit_session;
use crate::sources::{UnitRoot, check_component};
use crate::util::lock;
use anyhow::{Context, anyhow};
use std::path::PathBuf;
use std::process::ExitCode;

/// The `deltaic rbd` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RbdCommand {
    /// Back up one RBD image (incrementally) or snapshot from the `rbd:` section
    #[command(after_help = "\
Examples:
  deltaic rbd backup rbd vm1           image rbd.rbd.images.vm1
  deltaic rbd backup -s rbd golden     snapshot rbd.rbd.snapshots.golden
  deltaic rbd backup -c rbd vm1        then compare the whole file with the snapshot")]
    Backup {
        /// Then compare the whole backup file with the snapshot and repair differences
        #[arg(short = 'c', long)]
        scrub: bool,
        /// The unit is a configured snapshot, not an image
        #[arg(short = 's', long)]
        snapshot: bool,
        /// The pool, as named under `rbd:` in the config
        pool: String,
        /// The friendly name under `images:` (or `snapshots:` with -s)
        name: String,
    },
    /// Import a backup file (or a file in a mounted snapshot) as a new RBD image
    #[command(after_help = "\
Examples:
  deltaic rbd restore /backup/rbd/rbd/images/vm1 rbd vm1-restored
  deltaic rbd restore --image-feature layering /backup/rbd/rbd/images/vm1 rbd vm1-krbd")]
    Restore {
        /// Create the image with only these features (repeat the flag), as `rbd import
        /// --image-feature` does; by default the cluster's default features
        #[arg(long = "image-feature", value_name = "FEATURE")]
        image_features: Vec<String>,
        /// The backup file: ROOT/rbd/POOL/images/NAME or .../snapshots/NAME
        path: PathBuf,
        /// The pool to create the image in
        pool: String,
        /// The new image's name (it must not exist)
        image: String,
    },
    /// Remove Deltaic's RBD snapshots of a backed-up image (before deleting the image)
    #[command(after_help = "\
Examples:
  deltaic rbd drop rbd vm1     then the image can be deleted; the next backup is a full one")]
    Drop {
        /// The pool
        pool: String,
        /// The friendly name under `images:`
        name: String,
    },
    /// List the configured RBD units and the state of their backups
    #[command(
        after_help = "Examples:\n  deltaic rbd ls\n  deltaic rbd ls rbd\n  deltaic rbd ls --json | jq -r '.[] | select(.state != \"complete\") | .unit'"
    )]
    Ls {
        /// Print JSON: one object per unit (unit, pool, kind, name, rbd, state, snapshots
        /// recorded, sizes)
        #[arg(long)]
        json: bool,
        /// Only this pool
        pool: Option<String>,
    },
    /// Apply an export-diff stream to a file (benchmarks, manual repair)
    #[command(hide = true)]
    ApplyDiff {
        /// Treat the stream as a full export: unmentioned ranges become zeros
        #[arg(long)]
        full: bool,
        /// The export-diff v1 stream (`-` for stdin)
        diff: PathBuf,
        /// The sparse file to update (created when missing)
        target: PathBuf,
    },
}

/// Runs a `deltaic rbd` subcommand.
pub fn execute(config: &Config, cmd: RbdCommand) -> anyhow::Result<ExitCode> {
    let rbd = Rbd::from_config(config);
    let root = config.root();
    match cmd {
        RbdCommand::Backup {
            scrub,
            snapshot,
            pool,
            name,
        } => {
            check_component(&pool).map_err(|e| anyhow!("pool: {e}"))?;
            check_component(&name).map_err(|e| anyhow!("name: {e}"))?;
            let kind = if snapshot {
                Kind::Snapshot
            } else {
                Kind::Image
            };
            let rbd_name = lookup(config, &pool, kind, &name)?;
            let unit = UnitRoot::from_components(&["rbd", &pool, kind.dir(), &name])?;
            let _locks = unit_session::start(config, &unit)?;
            let path = unit_path(root, &pool, kind, &name);
            let result = match kind {
                Kind::Image => ImageUnit::new(&rbd, &pool, rbd_name, path).backup(scrub),
                Kind::Snapshot => backup::backup_snapshot(&rbd, &path, &pool, rbd_name, scrub),
            };
            let failed = Outcome::default();
            report(result.as_ref().unwrap_or(&failed), scrub);
            result.with_context(|| format!("backup of rbd/{pool}/{}/{name} failed", kind.dir()))?;
        }
        RbdCommand::Restore {
            image_features,
            path,
            pool,
            image,
        } => {
            backup::restore(&rbd, &path, &pool, &image, &image_features)?;
        }
        RbdCommand::Drop { pool, name } => {
            check_component(&pool).map_err(|e| anyhow!("pool: {e}"))?;
            check_component(&name).map_err(|e| anyhow!("name: {e}"))?;
            let unit = UnitRoot::from_components(&["rbd", &pool, Kind::Image.dir(), &name])?;
            let _locks = lock::unit_locks(root, &unit_session::lock_name(&unit))?;
            let image = config
                .rbd
                .get(&pool)
                .and_then(|p| p.images.get(&name))
                .map(String::as_str);
            let path = unit_path(root, &pool, Kind::Image, &name);
            backup::drop_image(&rbd, &path, &pool, image)?;
        }
        RbdCommand::Ls { json, pool } => ls(config, pool.as_deref(), json)?,
        RbdCommand::ApplyDiff { full, diff, target } => apply_diff(&diff, &target, full)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the unit report for `deltaic run` (failing to is only logged).
fn report(outcome: &Outcome, scrub: bool) {
    let report = UnitReport {
        bytes_transferred: Some(outcome.bytes_received),
        files_transferred: Some(u64::from(outcome.changed)),
        scrubbed: scrub,
        scrub_mismatches: outcome.scrub_mismatches,
        warnings: outcome.warnings.clone(),
    };
    if let Err(err) = report.write_if_requested() {
        tracing::error!("{err:#}");
    }
}

/// The backup state of one configured unit, as `rbd ls` shows it.
#[derive(Debug, serde::Serialize)]
struct UnitState {
    /// The unit root, `rbd/POOL/images|snapshots/NAME`.
    unit: String,
    pool: String,
    /// `image` or `snapshot`.
    kind: &'static str,
    /// The friendly name in the config.
    name: String,
    /// The RBD image (or snapshot spec) it backs up.
    rbd: String,
    /// `never` (no file), `complete`, `staged` (a diff not yet applied) or `incomplete` (an
    /// interrupted full fetch).
    state: &'static str,
    /// `user.rbd.snapshot`: the snapshot the file equals.
    snapshot: Option<String>,
    /// `user.rbd.pending-snapshot`: the snapshot of the staged diff.
    pending_snapshot: Option<String>,
    /// `user.rbd.retired-snapshot`: the previous base, removed by the next run.
    retired_snapshot: Option<String>,
    /// The image size (the file's length).
    size: Option<u64>,
    /// The bytes the sparse file occupies on disk.
    allocated: Option<u64>,
}

/// One line (or, with `json`, one object) per configured unit: its path, RBD name and backup
/// state.
fn ls(config: &Config, only: Option<&str>, json: bool) -> anyhow::Result<()> {
    if let Some(pool) = only
        && !config.rbd.contains_key(pool)
    {
        anyhow::bail!("pool `{pool}` is not configured under `rbd:`");
    }
    let mut units = Vec::new();
    for (pool, entries) in &config.rbd {
        if only.is_some_and(|o| o != pool) {
            continue;
        }
        for (kind, map) in [
            (Kind::Image, &entries.images),
            (Kind::Snapshot, &entries.snapshots),
        ] {
            for (friendly, name) in map {
                let path = unit_path(config.root(), pool, kind, friendly);
                let x = Xattrs::new(&path);
                let metadata = std::fs::metadata(&path).ok();
                let (snapshot, pending) = (x.get(state::SNAPSHOT)?, x.get(state::PENDING)?);
                let state = match (&metadata, &snapshot, &pending) {
                    (None, _, _) => "never",
                    (_, _, Some(_)) => "staged",
                    (_, Some(_), None) => "complete",
                    (_, None, None) => "incomplete",
                };
                units.push(UnitState {
                    unit: format!("rbd/{pool}/{}/{friendly}", kind.dir()),
                    pool: pool.clone(),
                    kind: match kind {
                        Kind::Image => "image",
                        Kind::Snapshot => "snapshot",
                    },
                    name: friendly.clone(),
                    rbd: name.clone(),
                    state,
                    snapshot,
                    pending_snapshot: pending,
                    retired_snapshot: x.get(state::RETIRED)?,
                    size: metadata.as_ref().map(|m| m.len()),
                    allocated: metadata.as_ref().map(|m| {
                        use std::os::unix::fs::MetadataExt;
                        m.blocks() * 512
                    }),
                });
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&units)?);
        return Ok(());
    }
    for u in &units {
        let state = match (u.state, &u.snapshot, &u.pending_snapshot) {
            ("never", _, _) => "never backed up".to_string(),
            (_, _, Some(p)) => format!("staged diff to {p} not yet applied"),
            (_, Some(s), None) => {
                let size = crate::util::humanize::size(u.size.unwrap_or(0));
                format!("{s}, {size}")
            }
            _ => "incomplete (interrupted fetch)".to_string(),
        };
        println!("{}\t{}\t{state}", u.unit, u.rbd);
    }
    Ok(())
}

/// Applies a stream from a file (or stdin) to `target`; prints what changed.
fn apply_diff(diff: &std::path::Path, target: &std::path::Path, full: bool) -> anyhow::Result<()> {
    use super::apply::{self, CHUNK, ImageFile, Mode};
    use super::diff::DiffReader;
    use std::io::Read;
    let input: Box<dyn Read> = if diff.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(diff).with_context(|| format!("opening {}", diff.display()))?)
    };
    let mut reader = DiffReader::new(std::io::BufReader::with_capacity(CHUNK, input))?;
    let mut file = ImageFile::open(target, true)?;
    let mode = if full { Mode::Full } else { Mode::Incremental };
    let stats = apply::apply(&mut reader, &mut file, mode)
        .with_context(|| format!("applying {} to {}", diff.display(), target.display()))?;
    file.sync()?;
    println!("{stats}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn the_driver_arguments_parse_in_either_order() {
        for argv in [
            ["deltaic", "rbd", "backup", "-c", "-s", "pool", "gold"],
            [
                "deltaic",
                "rbd",
                "backup",
                "pool",
                "gold",
                "--scrub",
                "--snapshot",
            ],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Rbd(super::RbdCommand::Backup {
                scrub,
                snapshot,
                pool,
                name,
            }) = cli.command
            else {
                panic!("{argv:?}")
            };
            assert!(
                scrub && snapshot && pool == "pool" && name == "gold",
                "{argv:?}"
            );
        }
        assert!(Cli::try_parse_from(["deltaic", "rbd", "restore", "/p", "pool"]).is_err());
    }
}
