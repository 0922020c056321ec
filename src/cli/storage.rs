//! `deltaic ls`, `df`, `mount`, `umount` and `snapshot`: the snapshot layer for people
//! (core-rsync-coda.md §5.5–§5.8). The backends live in [`crate::snapshot`]; this module parses
//! names, prints, and turns per-snapshot failures into the exit status.

use crate::config::{Config, SnapshotBackendKind};
use crate::run::manifest;
use crate::snapshot::{self, SnapshotBackend, SnapshotName, UsageRow};
use crate::util::{atomic_file, humanize, lock};
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

/// Options of `deltaic ls`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  deltaic ls\n  deltaic ls --json | jq '.[] | select(.complete == false)'"
)]
pub struct LsArgs {
    /// Print JSON: [{"name": ..., "complete": ...}]
    #[arg(long)]
    pub json: bool,
}

/// Options of `deltaic df`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  deltaic df\n  deltaic df -c     (cron: prints and exits 1 only when below df-warning)"
)]
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
#[command(
    after_help = "Examples:\n  deltaic mount 20240101-1\n  deltaic mount $(deltaic ls | tail -n 1 | cut -d' ' -f1)"
)]
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
#[command(
    after_help = "Examples:\n  deltaic snapshot      freeze the backup root now (e.g. after a manual backup)"
)]
pub struct SnapshotArgs {}

/// Parses the snapshot names given on the command line.
fn parse_names(args: &[String]) -> anyhow::Result<Vec<SnapshotName>> {
    args.iter()
        .map(|a| a.parse::<SnapshotName>().map_err(anyhow::Error::from))
        .collect()
}

/// Runs `op` on each name, printing failures and going on; the exit status tells (1 if any).
fn for_each(
    names: &[SnapshotName],
    mut op: impl FnMut(&SnapshotName) -> anyhow::Result<()>,
) -> ExitCode {
    let mut failed = false;
    for name in names {
        if let Err(err) = op(name) {
            eprintln!("error: {err:#}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One line of `deltaic ls --json`.
#[derive(Debug, serde::Serialize)]
struct LsEntry {
    name: SnapshotName,
    complete: bool,
}

/// Runs `deltaic ls`: each snapshot, oldest first, with `complete` or `partial` (§5.5, D3).
pub fn ls(config: &Config, args: LsArgs) -> anyhow::Result<ExitCode> {
    let backend = snapshot::open(config)?;
    let entries: Vec<LsEntry> = backend
        .list()?
        .into_iter()
        .map(|name| LsEntry {
            complete: manifest::is_complete(config.root(), &name),
            name,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string(&entries)?);
    } else {
        for e in &entries {
            println!(
                "{} {}",
                e.name,
                if e.complete { "complete" } else { "partial" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `df` line (§5.8): `label:` left-aligned in 25 columns, the value right-aligned in 14
/// (raw counts get 4 trailing spaces to line up with the units), then `(%4.1f%)`; `n/a` when a
/// figure is unknown (BUG-14).
pub fn format_usage_row(row: &UsageRow) -> String {
    let value = match (row.free, row.bytes) {
        (Some(free), true) => humanize::size(free),
        (Some(free), false) => format!("{free}    "),
        (None, _) => "n/a".to_string(),
    };
    let percent = match row.free_percent {
        Some(p) => format!("{p:4.1}%"),
        None => "  n/a".to_string(),
    };
    format!("{:<25} {value:>14} ({percent})", format!("{}:", row.label))
}

/// The rows `df` prints: all of them (BUG-15 fixed), or with `-c` those below `threshold`
/// percent free (rows whose percentage is unknown cannot be compared and are left out).
pub fn rows_to_report(rows: &[UsageRow], check: bool, threshold: f64) -> Vec<&UsageRow> {
    rows.iter()
        .filter(|r| !check || r.free_percent.is_some_and(|p| p < threshold))
        .collect()
}

/// Runs `deltaic df [-c] [--json]`.
pub fn df(config: &Config, args: DfArgs) -> anyhow::Result<ExitCode> {
    let rows = snapshot::open(config)?.usage()?;
    let report = rows_to_report(&rows, args.check, config.settings.df_warning);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for row in &report {
            println!("{}", format_usage_row(row));
        }
    }
    Ok(if args.check && !report.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `deltaic mount`: prints where each snapshot can be read (§5.6).
pub fn mount(config: &Config, args: MountArgs) -> anyhow::Result<ExitCode> {
    let names = parse_names(&args.snapshots)?;
    let backend = snapshot::open(config)?;
    Ok(for_each(&names, |name| {
        let path = backend.mount(name)?;
        println!("{}", path.display());
        Ok(())
    }))
}

/// Runs `deltaic umount [-a] [SNAPSHOT...]` (§5.7; BUG-13 fixed: `-a` unmounts what is mounted).
pub fn umount(config: &Config, args: UmountArgs) -> anyhow::Result<ExitCode> {
    let backend = snapshot::open(config)?;
    let names = if args.all {
        backend.mounted()?
    } else {
        parse_names(&args.snapshots)?
    };
    Ok(for_each(&names, |name| Ok(backend.unmount(name)?)))
}

/// Runs `deltaic snapshot`: takes the backup lock (so it never freezes a run half-way), takes
/// one snapshot named after today, and prints its name.
pub fn snapshot(config: &Config, _args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let root = config.root();
    if !root.is_dir() {
        anyhow::bail!(
            "backup root {} is not a directory; check `root` in {}",
            root.display(),
            config.path.display()
        );
    }
    if config.settings.snapshot_backend == SnapshotBackendKind::Lvm {
        // Never drop a lock directory into the empty mount point of an unmounted LV (§8.1).
        lock::require_mounted(root)?;
    }
    let _lock = lock::acquire(root, "backup")?;
    let backend = snapshot::open(config)?;
    let name = take_snapshot(backend.as_ref(), root, jiff::ZonedDateTime::now().date())?;
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

/// Creates the next free snapshot of `date` and returns its name.
///
/// A run record for that free name can only be left by a `deltaic run` that crashed between
/// writing its manifest and making its snapshot (§5.9). It does not describe this snapshot, so
/// it is deleted first: a snapshot made here has no record and counts as complete, as documented
/// (otherwise `ls` and `prune` would take the crashed run's word, e.g. `partial`).
fn take_snapshot(
    backend: &dyn SnapshotBackend,
    root: &Path,
    date: jiff::civil::Date,
) -> anyhow::Result<SnapshotName> {
    let name = backend.next_name(date)?;
    discard_stale_record(root, &name)?;
    backend
        .create(&name)
        .with_context(|| format!("taking snapshot {name}"))?;
    Ok(name)
}

/// Durably deletes the run record of the not yet existing snapshot `name`, if there is one.
fn discard_stale_record(root: &Path, name: &SnapshotName) -> anyhow::Result<()> {
    let path = manifest::record_path(root, name);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            tracing::warn!(
                "deleted {}: a run crashed before taking snapshot {name}, which this new \
                 snapshot is not",
                path.display()
            );
            let dir = path.parent().unwrap_or(root);
            atomic_file::sync_dir(dir).with_context(|| {
                format!(
                    "syncing {} after deleting {}",
                    dir.display(),
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| {
            format!(
                "deleting the stale run record {} (left by a crashed run); delete it by hand, \
                 or snapshot {name} would be described by that run",
                path.display()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, free: Option<u64>, bytes: bool, pct: Option<f64>) -> UsageRow {
        UsageRow {
            label: label.into(),
            free,
            bytes,
            free_percent: pct,
        }
    }

    #[test]
    fn df_lines_match_the_original_format() {
        // Expected strings printed by the original's f"{labelc:<25} {value_string:>14} ({pct:4.1f}%)".
        let cases = [
            (
                row(
                    "Free filesystem space",
                    Some(1_352_399_302_164),
                    true,
                    Some(12.3),
                ),
                "Free filesystem space:           1.2 TiB (12.3%)",
            ),
            (
                row("Free inodes", Some(123_456), false, Some(99.95)),
                "Free inodes:                  123456     (100.0%)",
            ),
            (
                row("Free LVM data space", Some(0), true, Some(0.0)),
                "Free LVM data space:             0.0   B ( 0.0%)",
            ),
            (
                row("Free LVM metadata space", Some(4 << 20), true, Some(100.0)),
                "Free LVM metadata space:         4.0 MiB (100.0%)",
            ),
            (
                row("Free inodes", None, false, None),
                "Free inodes:                         n/a (  n/a)",
            ),
            (
                row("Free LVM data space", Some(512), true, Some(5.25)),
                "Free LVM data space:           512.0   B ( 5.2%)",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(format_usage_row(&r), want);
        }
    }

    #[test]
    fn df_prints_every_row_without_check_and_only_low_ones_with_it() {
        let rows = [
            row("a", Some(1), true, Some(100.0)), // BUG-15: shown without -c
            row("b", Some(1), true, Some(4.9)),
            row("c", Some(1), true, Some(5.0)),
            row("d", None, false, None),
        ];
        assert_eq!(rows_to_report(&rows, false, 5.0).len(), 4);
        let low: Vec<&str> = rows_to_report(&rows, true, 5.0)
            .iter()
            .map(|r| r.label.as_str())
            .collect();
        assert_eq!(low, ["b"]);
    }

    #[test]
    fn snapshot_takes_the_next_free_name_of_the_day() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let backend = crate::snapshot::dir::DirBackend::with_tools(
            &root,
            &dir.path().join("snaps"),
            crate::snapshot::tools::Tools::default(),
        );
        let day = jiff::civil::date(2024, 1, 1);
        assert_eq!(
            take_snapshot(&backend, &root, day).unwrap().to_string(),
            "20240101-1"
        );
        assert_eq!(
            take_snapshot(&backend, &root, day).unwrap().to_string(),
            "20240101-2"
        );
        assert_eq!(backend.list().unwrap().len(), 2);
    }

    #[test]
    fn snapshot_drops_the_record_a_crashed_run_left_for_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let backend = crate::snapshot::dir::DirBackend::with_tools(
            &root,
            &dir.path().join("snaps"),
            crate::snapshot::tools::Tools::default(),
        );
        let name: SnapshotName = "20240101-1".parse().unwrap();
        let crashed = manifest::RunManifest {
            version: 1,
            deltaic_version: "test".into(),
            started: "2024-01-01T00:00:00Z".into(),
            finished: "2024-01-01T01:00:00Z".into(),
            snapshot: Some(name),
            complete: false,
            planning_errors: Vec::new(),
            units: Vec::new(),
        };
        crashed.write(&root).unwrap();
        assert!(!manifest::is_complete(&root, &name));
        let day = jiff::civil::date(2024, 1, 1);
        assert_eq!(take_snapshot(&backend, &root, day).unwrap(), name);
        assert!(!manifest::record_path(&root, &name).exists());
        assert!(manifest::is_complete(&root, &name));
    }

    #[test]
    fn bad_names_on_the_command_line_are_errors() {
        assert!(parse_names(&["20240101-1".into(), "2024-01-01".into()]).is_err());
        assert_eq!(
            parse_names(&["20240101-10".into()]).unwrap()[0].revision,
            10
        );
    }
}
