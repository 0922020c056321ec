//! `deltaic ls`, `df`, `mount`, `umount` and `snapshot`: the snapshot layer for people
//! (core-rsync-coda.md §5.5–§5.8). The backends live in [`crate::snapshot`]; this module parses
//! names, prints, and turns per-snapshot failures into the exit status.

use crate::config::{Config, SnapshotBackendKind};
use crate::run::manifest::{self, RunManifest};
use crate::run::plan::Plan;
use crate::run::{self, RunOutcome, summary};
use crate::snapshot::{self, SnapshotBackend, SnapshotName, UsageRow};
use crate::sources::ALL_SOURCES;
use crate::util::{humanize, lock};
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

/// Runs `deltaic snapshot`: takes the backup lock exclusively (so it never freezes a run or a
/// unit started by hand half-way), writes the snapshot's record (complete only when every
/// configured unit last succeeded: [`crate::run::unit_status`]), takes one snapshot named after
/// today, prints its name on stdout and whether it is complete or partial on stderr.
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
    let _lock = lock::acquire(root, lock::BACKUP_LOCK)?;
    let backend = snapshot::open(config)?;
    let plan = run::plan::plan(config, ALL_SOURCES, &mut rand::rng());
    let (name, record) = take_snapshot(backend, root, &plan, jiff::ZonedDateTime::now().date())?;
    println!("{name}");
    if record.complete {
        eprintln!("snapshot {name} recorded as complete");
    } else {
        eprintln!(
            "snapshot {name} recorded as partial: {}",
            summary::earlier_problems(&record).join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the record of the next free snapshot of `date`, judged on `plan`, then creates the
/// snapshot; returns its name and record.
///
/// A record already there for that free name can only be left by a `deltaic run` that crashed
/// between writing its manifest and making its snapshot (§5.9); it is replaced.
fn take_snapshot(
    backend: Box<dyn SnapshotBackend>,
    root: &Path,
    plan: &Plan,
    date: jiff::civil::Date,
) -> anyhow::Result<(SnapshotName, RunManifest)> {
    let mut outcome = RunOutcome {
        manifest: run::manual_snapshot_manifest(root, plan),
        snapshot: None,
        snapshot_requested: true,
        problems: Vec::new(),
    };
    run::record_and_snapshot(root, &mut outcome, Some(Ok(backend)), date);
    match outcome.snapshot {
        Some(name) if outcome.problems.is_empty() => Ok((name, outcome.manifest)),
        _ => anyhow::bail!("{}", outcome.problems.join("; ")),
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

    /// A `dir` backend for `root`, its snapshots beside it.
    fn dir_backend(dir: &Path, root: &Path) -> Box<dyn SnapshotBackend> {
        Box::new(crate::snapshot::dir::DirBackend::with_tools(
            root,
            &dir.join("snaps"),
            crate::snapshot::tools::Tools::default(),
        ))
    }

    fn new_root(dir: &Path) -> std::path::PathBuf {
        let root = dir.join("root");
        std::fs::create_dir(&root).unwrap();
        root
    }

    /// A plan of rsync units `names` (and a planning error for github when `unplanned`).
    fn plan_of(names: &[&str], unplanned: bool) -> Plan {
        let units = names
            .iter()
            .map(|n| crate::sources::Unit {
                root: n.to_string().try_into().unwrap(),
                backup_args: vec![],
            })
            .collect();
        Plan {
            sources: vec![run::plan::SourcePlan {
                label: "rsync",
                workers: std::num::NonZeroUsize::MIN,
                units,
            }],
            errors: if unplanned {
                vec![run::plan::PlanningError {
                    source: "github",
                    message: "HTTP 502".into(),
                }]
            } else {
                vec![]
            },
            selection: None,
        }
    }

    #[test]
    fn snapshot_takes_the_next_free_name_of_the_day_with_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_root(dir.path());
        let day = jiff::civil::date(2024, 1, 1);
        let plan = plan_of(&[], false);
        let (first, record) =
            take_snapshot(dir_backend(dir.path(), &root), &root, &plan, day).unwrap();
        assert_eq!(first.to_string(), "20240101-1");
        assert!(record.complete, "nothing configured, nothing torn");
        assert!(record.coverage.manual_snapshot);
        assert_eq!(RunManifest::read(&root, &first).unwrap(), Some(record));
        let (second, _) = take_snapshot(dir_backend(dir.path(), &root), &root, &plan, day).unwrap();
        assert_eq!(second.to_string(), "20240101-2");
        assert_eq!(dir_backend(dir.path(), &root).list().unwrap().len(), 2);
        // The snapshot carries its own record.
        let inside = dir.path().join("snaps/20240101-2/.deltaic/manifest.json");
        let inside: RunManifest = serde_json::from_slice(&std::fs::read(inside).unwrap()).unwrap();
        assert_eq!(inside.snapshot, Some(second));
    }

    #[test]
    fn a_manual_snapshot_is_partial_while_a_unit_last_failed_never_ran_or_a_source_is_unplanned() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_root(dir.path());
        let day = jiff::civil::date(2024, 1, 1);
        let mut statuses = crate::run::unit_status::UnitStatuses::new();
        let record = |name: &str, status| manifest::UnitRecord {
            unit: name.to_string().try_into().unwrap(),
            status,
            exit_code: None,
            duration_secs: 0.0,
            report: manifest::UnitReport::default(),
        };
        crate::run::unit_status::update(
            &mut statuses,
            &[
                record("rsync/a", manifest::UnitStatus::Ok),
                record("rsync/b", manifest::UnitStatus::Failed),
            ],
            "2024-01-01T01:00:00Z",
        );
        crate::run::unit_status::save(&root, &statuses).unwrap();

        let cases: [(&[&str], bool, bool, &str); 4] = [
            (&["rsync/a"], false, true, ""),
            (
                &["rsync/a", "rsync/b"],
                false,
                false,
                "1 unit did not succeed in its last run or never ran (rsync/b)",
            ),
            (
                &["rsync/a", "rsync/new"],
                false,
                false,
                "1 unit did not succeed in its last run or never ran (rsync/new)",
            ),
            (
                &["rsync/a"],
                true,
                false,
                "1 source could not be planned (github)",
            ),
        ];
        for (units, unplanned, complete, why) in cases {
            let plan = plan_of(units, unplanned);
            let (name, record) =
                take_snapshot(dir_backend(dir.path(), &root), &root, &plan, day).unwrap();
            assert_eq!(record.complete, complete, "{units:?}");
            assert_eq!(manifest::is_complete(&root, &name), complete, "{units:?}");
            assert_eq!(summary::earlier_problems(&record).join("; "), why);
        }
    }

    #[test]
    fn snapshot_replaces_the_record_a_crashed_run_left_for_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_root(dir.path());
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
            coverage: manifest::Coverage::default(),
        };
        crashed.write(&root).unwrap();
        assert!(!manifest::is_complete(&root, &name));
        let day = jiff::civil::date(2024, 1, 1);
        let (taken, record) = take_snapshot(
            dir_backend(dir.path(), &root),
            &root,
            &plan_of(&[], false),
            day,
        )
        .unwrap();
        assert_eq!(taken, name);
        assert_eq!(RunManifest::read(&root, &name).unwrap(), Some(record));
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
