//! `deltaic run`: the nightly driver (core-rsync-coda.md §4, D2, D3).
//!
//! The algorithm, with the module doing each step:
//! 1. [`lock_root`]: ROOT exists (and, for `lvm`, is a mounted filesystem), then take
//!    `ROOT/.lock/backup`.
//! 2. [`plan`]: every source's units; a source that cannot be planned fails alone (BUG-5).
//! 3. [`scheduler`]: one worker pool per source, all at once; each unit a child process
//!    ([`child`], logs in [`unit_log`], failure excerpts from [`excerpt`]), progress to a
//!    [`progress::Reporter`].
//! 4. [`execute`] then records each unit's outcome ([`unit_status`]), writes the run manifest
//!    ([`manifest`], built by [`summary`]) and only then takes the snapshot, even after
//!    failures: the manifest says whether the tree is complete (every unit of the full plan
//!    last succeeded). The CLI prints the outcome and maps it to the exit status.
//!
//! A unit child never outlives the run ([`unit_guard`]), and runs under the run's lock.

pub mod child;
pub mod excerpt;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod scheduler;
pub mod signals;
pub mod summary;
pub mod unit_guard;
pub mod unit_log;
pub mod unit_session;
pub mod unit_status;

use crate::config::{Config, SnapshotBackendKind};
use crate::snapshot::{SnapshotBackend, SnapshotError, SnapshotName};
use crate::util::lock::{self, Lock};
use jiff::ZonedDateTime;
use jiff::civil::Date;
use manifest::RunManifest;
use plan::Plan;
use progress::Reporter;
use scheduler::UnitRunner;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Name of the lock `deltaic run` holds exclusively (`ROOT/.lock/backup`, §8.1).
pub const LOCK_NAME: &str = lock::BACKUP_LOCK;

/// Checks that the backup root is there and takes the run lock (§4.2 step 1, §8.1).
///
/// Errors: ROOT is missing or not a directory; with the `lvm` backend, ROOT is not a mounted
/// filesystem (so a missing volume never fills the system disk); another run holds the lock
/// ([`lock::LockConflict`]).
pub fn lock_root(config: &Config) -> anyhow::Result<Lock> {
    let root = config.root();
    if !root.is_dir() {
        anyhow::bail!(
            "backup root {} does not exist or is not a directory; create it (with the btrfs \
             backend: `btrfs subvolume create {}`) or fix `settings.root` in {}",
            root.display(),
            root.display(),
            config.path.display()
        );
    }
    if config.settings.snapshot_backend == SnapshotBackendKind::Lvm {
        lock::require_mounted(root)?;
    }
    lock::acquire(root, LOCK_NAME)
}

/// Opens the snapshot backend when the run wants a snapshot (normally [`crate::snapshot::open`]).
pub type OpenBackend<'a> = &'a dyn Fn() -> anyhow::Result<Box<dyn SnapshotBackend>>;

/// What a run did.
#[derive(Debug)]
pub struct RunOutcome {
    /// The manifest as written (its `snapshot` is set only when the snapshot was taken).
    pub manifest: RunManifest,
    /// The snapshot taken, if any.
    pub snapshot: Option<SnapshotName>,
    /// Whether a snapshot was asked for.
    pub snapshot_requested: bool,
    /// Run-level problems (no snapshot, manifest not written, interrupted), one message each.
    pub problems: Vec<String>,
}

impl RunOutcome {
    /// True when every source of this run was planned, every unit it ran succeeded and nothing
    /// else went wrong. (A `--only` run can succeed and still leave the tree partial, when a
    /// unit it did not run last failed: see [`manifest::RunManifest::complete`].)
    pub fn success(&self) -> bool {
        self.manifest.planning_errors.is_empty()
            && self
                .manifest
                .units
                .iter()
                .all(|u| u.status == manifest::UnitStatus::Ok)
            && self.problems.is_empty()
    }
}

/// Runs the planned units, writes the manifest and, when `snapshots` is given, takes the
/// snapshot (§4.2 steps 2–5). Never fails as a whole: every problem is in the outcome.
pub fn execute(
    config: &Config,
    plan: &Plan,
    runner: &dyn UnitRunner,
    reporter: &dyn Reporter,
    stop: &AtomicBool,
    snapshots: Option<OpenBackend<'_>>,
) -> RunOutcome {
    let started = ZonedDateTime::now();
    let records = scheduler::run_pools(&plan.sources, runner, reporter, stop);
    let manifest = summary::build_manifest(&started, &ZonedDateTime::now(), &plan.errors, records);
    let mut outcome = RunOutcome {
        manifest,
        snapshot: None,
        snapshot_requested: snapshots.is_some(),
        problems: Vec::new(),
    };
    judge_tree(config.root(), plan, &mut outcome);
    let backend = if stop.load(Ordering::SeqCst) {
        outcome
            .problems
            .push("deltaic run was interrupted; no snapshot taken".into());
        None
    } else {
        snapshots.map(|open| open())
    };
    record_and_snapshot(
        config.root(),
        &mut outcome,
        backend,
        ZonedDateTime::now().date(),
    );
    outcome
}

/// Records the outcome of the units this run ran in `ROOT/.deltaic/unit-status.json`, then
/// judges the whole tree on the full plan ([`unit_status::judge`]): sets the manifest's
/// `complete` and [`manifest::Coverage`]. A status file that cannot be written is a problem of
/// the run; the judgement then uses the statuses in memory.
fn judge_tree(root: &Path, plan: &Plan, outcome: &mut RunOutcome) {
    let manifest = &mut outcome.manifest;
    let mut statuses = unit_status::load(root);
    let ran = manifest.units.iter().filter(|r| scheduler::was_started(r));
    unit_status::update(&mut statuses, ran, &manifest.finished);
    if let Err(err) = unit_status::save(root, &statuses) {
        outcome.problems.push(format!("{err:#}"));
    }
    let verdict = judge_plan(&statuses, plan);
    manifest.complete &= verdict.complete;
    manifest.coverage = manifest::Coverage {
        only: plan.selection.as_ref().map(|s| s.only.clone()),
        units_not_ok: verdict.units_not_ok,
        left_out_planning_errors: plan
            .selection
            .iter()
            .flat_map(|s| &s.left_out_errors)
            .map(ToString::to_string)
            .collect(),
        manual_snapshot: false,
    };
}

/// Judges the tree on `plan`'s full plan, selected or not.
fn judge_plan(statuses: &unit_status::UnitStatuses, plan: &Plan) -> unit_status::Verdict {
    unit_status::judge(statuses, plan.full_plan_units(), plan.full_plan_failed())
}

/// The record of a snapshot taken by `deltaic snapshot`, not by a run: no units, and
/// `complete` judged like a run's, on the full `plan` and each unit's last outcome
/// ([`unit_status`]).
pub fn manual_snapshot_manifest(root: &Path, plan: &Plan) -> RunManifest {
    let now = ZonedDateTime::now();
    let mut manifest = summary::build_manifest(&now, &now, &plan.errors, Vec::new());
    let verdict = judge_plan(&unit_status::load(root), plan);
    manifest.complete = verdict.complete;
    manifest.coverage = manifest::Coverage {
        units_not_ok: verdict.units_not_ok,
        manual_snapshot: true,
        ..manifest::Coverage::default()
    };
    manifest
}

/// Writes the manifest, then takes the snapshot named after `today` (§5.9): the manifest names
/// the snapshot before it exists, so the snapshot carries its own record. Without a backend
/// (none requested, or it could not be opened) only the manifest is written. If the manifest
/// cannot be written, no snapshot is taken (it would count as complete without its record).
/// If the snapshot fails, the manifest is rewritten without it.
pub(crate) fn record_and_snapshot(
    root: &Path,
    outcome: &mut RunOutcome,
    backend: Option<anyhow::Result<Box<dyn SnapshotBackend>>>,
    today: Date,
) {
    let backend = match backend {
        None => return write_manifest(root, outcome),
        Some(Err(err)) => {
            outcome.problems.push(format!(
                "no snapshot taken: cannot open the snapshot backend: {err:#}"
            ));
            return write_manifest(root, outcome);
        }
        Some(Ok(backend)) => backend,
    };
    let name = match backend.next_name(today) {
        Ok(name) => name,
        Err(err) => {
            outcome.problems.push(format!(
                "no snapshot taken: cannot choose a snapshot name: {}",
                describe(&err)
            ));
            return write_manifest(root, outcome);
        }
    };
    outcome.manifest.snapshot = Some(name);
    if let Err(err) = outcome.manifest.write(root) {
        outcome.manifest.snapshot = None;
        outcome.problems.push(format!(
            "no snapshot taken, because the run manifest could not be written first: {err:#}"
        ));
        return;
    }
    match backend.create(&name) {
        Ok(()) => {
            tracing::info!("snapshot {name} taken");
            outcome.snapshot = Some(name);
        }
        Err(err) => {
            outcome
                .problems
                .push(format!("snapshot {name} failed: {}", describe(&err)));
            outcome.manifest.snapshot = None;
            let _ = std::fs::remove_file(manifest::record_path(root, &name));
            write_manifest(root, outcome);
        }
    }
}

fn write_manifest(root: &Path, outcome: &mut RunOutcome) {
    if let Err(err) = outcome.manifest.write(root) {
        outcome.problems.push(format!("{err:#}"));
    }
}

/// A snapshot error with its whole context chain.
fn describe(err: &SnapshotError) -> String {
    match err {
        SnapshotError::Other(inner) => format!("{inner:#}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::manifest::{UnitStatus, state_dir};
    use crate::run::plan::tests::{FakeSource, config};
    use crate::run::progress::tests::Recorder;
    use crate::run::scheduler::tests::{Act, FakeRunner};
    use crate::snapshot::UsageRow;
    use rand::SeedableRng;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    /// A snapshot backend in memory that checks, at `create`, that the manifest naming the
    /// snapshot is already written.
    struct FakeBackend {
        root: PathBuf,
        existing: Vec<SnapshotName>,
        fail_list: bool,
        fail_create: bool,
        created: Arc<Mutex<Vec<(SnapshotName, RunManifest)>>>,
    }

    impl SnapshotBackend for FakeBackend {
        fn list(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
            if self.fail_list {
                return Err(SnapshotError::Other(anyhow::anyhow!(
                    "lvs: volume group not found"
                )));
            }
            Ok(self.existing.clone())
        }
        fn create(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
            let latest: RunManifest = serde_json::from_slice(
                &std::fs::read(state_dir(&self.root).join("manifest.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(
                latest.snapshot,
                Some(*name),
                "the manifest must name the snapshot before it is taken"
            );
            let record = RunManifest::read(&self.root, name)
                .unwrap()
                .expect("the snapshot's run record");
            assert_eq!(record, latest);
            if self.fail_create {
                return Err(SnapshotError::AlreadyExists(*name));
            }
            self.created.lock().unwrap().push((*name, latest));
            Ok(())
        }
        fn remove(&self, _: &SnapshotName) -> Result<(), SnapshotError> {
            unreachable!("run never removes snapshots")
        }
        fn mount(&self, _: &SnapshotName) -> Result<PathBuf, SnapshotError> {
            unreachable!("run never mounts snapshots")
        }
        fn unmount(&self, _: &SnapshotName) -> Result<(), SnapshotError> {
            unreachable!("run never unmounts snapshots")
        }
        fn mounted(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
            unreachable!("run never lists mounts")
        }
        fn usage(&self) -> Result<Vec<UsageRow>, SnapshotError> {
            unreachable!("run never asks for usage")
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        created: Arc<Mutex<Vec<(SnapshotName, RunManifest)>>>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
                created: Arc::default(),
            }
        }
        fn backend(&self, existing: &[&str], fail_list: bool, fail_create: bool) -> FakeBackend {
            FakeBackend {
                root: self.dir.path().to_owned(),
                existing: existing.iter().map(|s| s.parse().unwrap()).collect(),
                fail_list,
                fail_create,
                created: Arc::clone(&self.created),
            }
        }
        fn latest(&self) -> RunManifest {
            serde_json::from_slice(
                &std::fs::read(state_dir(self.dir.path()).join("manifest.json")).unwrap(),
            )
            .unwrap()
        }
    }

    fn plan_of(sources: &[&dyn crate::sources::Source], root: &Path) -> Plan {
        plan::plan(
            &config(root),
            sources,
            &mut rand::rngs::StdRng::seed_from_u64(1),
        )
    }

    #[test]
    fn a_failed_unit_and_a_planning_error_make_a_partial_run_that_is_still_snapshotted() {
        let fx = Fixture::new();
        let config = config(fx.dir.path());
        let coda = FakeSource {
            label: "coda",
            units: Err("volutil not found"),
            workers: 1,
        };
        let rsync = FakeSource {
            label: "rsync",
            units: Ok(vec!["rsync/a", "rsync/b"]),
            workers: 2,
        };
        let plan = plan_of(&[&coda, &rsync], fx.dir.path());
        let runner = FakeRunner::new(&[("rsync/a", Act::Fail(12))]);
        let stop = AtomicBool::new(false);
        let open = || -> anyhow::Result<Box<dyn SnapshotBackend>> {
            Ok(Box::new(fx.backend(&["20000101-1"], false, false)))
        };
        let outcome = execute(
            &config,
            &plan,
            &runner,
            &Recorder::default(),
            &stop,
            Some(&open),
        );

        let today = ZonedDateTime::now().date();
        let expected = SnapshotName::next_free(today, &[]);
        assert_eq!(outcome.snapshot, Some(expected));
        assert!(!outcome.success());
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        let m = &outcome.manifest;
        assert!(!m.complete);
        assert_eq!(m.snapshot, Some(expected));
        assert_eq!(
            m.planning_errors,
            ["coda: listing repositories: volutil not found"]
        );
        let units: Vec<(&str, UnitStatus, Option<i32>)> = m
            .units
            .iter()
            .map(|u| (u.unit.as_str(), u.status, u.exit_code))
            .collect();
        assert_eq!(
            units,
            [
                ("rsync/a", UnitStatus::Failed, Some(12)),
                ("rsync/b", UnitStatus::Ok, Some(0))
            ]
        );
        assert!(m.units.iter().all(|u| u.duration_secs >= 0.0));
        assert_eq!(&fx.latest(), m);
        assert_eq!(fx.created.lock().unwrap().len(), 1);
        // The record of the snapshot says partial, so prune knows.
        assert!(!manifest::is_complete(fx.dir.path(), &expected));
    }

    /// A run outcome with no units, asking for a snapshot.
    fn empty_outcome() -> RunOutcome {
        RunOutcome {
            manifest: summary::build_manifest(
                &ZonedDateTime::now(),
                &ZonedDateTime::now(),
                &[],
                vec![],
            ),
            snapshot: None,
            snapshot_requested: true,
            problems: vec![],
        }
    }

    #[test]
    fn a_clean_run_is_complete_and_numbers_its_snapshot_after_todays() {
        let fx = Fixture::new();
        let today = ZonedDateTime::now().date();
        let first = SnapshotName::first_of(today).to_string();
        let mut outcome = empty_outcome();
        record_and_snapshot(
            fx.dir.path(),
            &mut outcome,
            Some(Ok(Box::new(fx.backend(&[&first], false, false)))),
            today,
        );
        assert!(outcome.success());
        assert_eq!(outcome.snapshot.unwrap().revision, 2);
        assert!(manifest::is_complete(
            fx.dir.path(),
            &outcome.snapshot.unwrap()
        ));
    }

    #[test]
    fn without_snapshot_the_manifest_is_written_without_a_name() {
        let fx = Fixture::new();
        let plan = plan_of(
            &[&FakeSource {
                label: "rsync",
                units: Ok(vec!["rsync/a"]),
                workers: 1,
            }],
            fx.dir.path(),
        );
        let stop = AtomicBool::new(false);
        let outcome = execute(
            &config(fx.dir.path()),
            &plan,
            &FakeRunner::default(),
            &Recorder::default(),
            &stop,
            None,
        );
        assert!(outcome.success());
        assert_eq!(outcome.snapshot, None);
        assert_eq!(fx.latest().snapshot, None);
        assert!(fx.latest().complete);
        assert!(!state_dir(fx.dir.path()).join("runs").exists());
    }

    #[test]
    fn a_failed_snapshot_fails_the_run_and_leaves_no_record_for_it() {
        let fx = Fixture::new();
        let today = jiff::civil::date(2024, 5, 6);
        let mut outcome = empty_outcome();
        record_and_snapshot(
            fx.dir.path(),
            &mut outcome,
            Some(Ok(Box::new(fx.backend(&[], false, true)))),
            today,
        );
        assert!(!outcome.success());
        assert_eq!(
            outcome.problems,
            ["snapshot 20240506-1 failed: snapshot 20240506-1 already exists"]
        );
        assert_eq!(fx.latest().snapshot, None);
        assert!(!manifest::record_path(fx.dir.path(), &"20240506-1".parse().unwrap()).exists());
    }

    #[test]
    fn a_backend_that_cannot_list_or_open_fails_the_run_but_the_manifest_is_written() {
        let fx = Fixture::new();
        let fresh = empty_outcome;
        let mut listed = fresh();
        record_and_snapshot(
            fx.dir.path(),
            &mut listed,
            Some(Ok(Box::new(fx.backend(&[], true, false)))),
            ZonedDateTime::now().date(),
        );
        assert_eq!(
            listed.problems,
            ["no snapshot taken: cannot choose a snapshot name: lvs: volume group not found"]
        );
        assert!(fx.latest().complete);

        let mut opened = fresh();
        record_and_snapshot(
            fx.dir.path(),
            &mut opened,
            Some(Err(anyhow::anyhow!("backup-lv missing"))),
            ZonedDateTime::now().date(),
        );
        assert!(!opened.success());
        assert!(opened.problems[0].contains("cannot open the snapshot backend: backup-lv missing"));
        assert!(fx.created.lock().unwrap().is_empty());
    }

    #[test]
    fn an_interrupted_run_takes_no_snapshot() {
        let fx = Fixture::new();
        let plan = plan_of(
            &[&FakeSource {
                label: "rsync",
                units: Ok(vec!["rsync/a"]),
                workers: 1,
            }],
            fx.dir.path(),
        );
        let stop = AtomicBool::new(true);
        let open =
            || -> anyhow::Result<Box<dyn SnapshotBackend>> { panic!("must not open the backend") };
        let outcome = execute(
            &config(fx.dir.path()),
            &plan,
            &FakeRunner::default(),
            &Recorder::default(),
            &stop,
            Some(&open),
        );
        assert!(!outcome.success());
        assert_eq!(outcome.manifest.units[0].status, UnitStatus::Failed);
        assert!(outcome.problems[0].contains("interrupted"));
        assert!(!fx.latest().complete);
        // A unit that never started keeps its last outcome (it was not touched).
        assert!(unit_status::load(fx.dir.path()).is_empty());
    }

    #[test]
    fn an_only_run_is_partial_while_a_unit_it_did_not_run_last_failed() {
        let fx = Fixture::new();
        let config = config(fx.dir.path());
        let source = FakeSource {
            label: "rsync",
            units: Ok(vec!["rsync/a", "rsync/b"]),
            workers: 1,
        };
        let stop = AtomicBool::new(false);
        let run = |only: &[&str], runner: &FakeRunner| {
            let mut plan = plan_of(&[&source], fx.dir.path());
            let only: Vec<String> = only.iter().map(|u| u.to_string()).collect();
            plan.select(&only).unwrap();
            let open = || -> anyhow::Result<Box<dyn SnapshotBackend>> {
                Ok(Box::new(fx.backend(&[], false, false)))
            };
            execute(
                &config,
                &plan,
                runner,
                &Recorder::default(),
                &stop,
                Some(&open),
            )
        };
        let root_of = |name: &str| crate::sources::UnitRoot::try_from(name.to_string()).unwrap();

        // The full run: b fails.
        let first = run(&[], &FakeRunner::new(&[("rsync/b", Act::Fail(23))]));
        assert!(!first.success() && !first.manifest.complete);
        assert_eq!(first.manifest.coverage.units_not_ok, [root_of("rsync/b")]);
        assert_eq!(first.manifest.coverage.only, None);

        // Only a, which succeeds: the run succeeds, but b's data may still be torn.
        let second = run(&["rsync/a"], &FakeRunner::default());
        assert!(second.success(), "{:?}", second.problems);
        let m = &second.manifest;
        assert!(!m.complete);
        assert_eq!(m.units.len(), 1);
        assert_eq!(m.coverage.only, Some(vec![root_of("rsync/a")]));
        assert_eq!(m.coverage.units_not_ok, [root_of("rsync/b")]);
        assert!(!manifest::is_complete(
            fx.dir.path(),
            &second.snapshot.unwrap()
        ));
        let line = summary::one_line(&second);
        assert!(
            line.contains("1 unit did not succeed in its last run or never ran (rsync/b)")
                && line.ends_with("taken, recorded as partial"),
            "{line}"
        );

        // Only b, which succeeds now: every unit last succeeded, so the tree is complete.
        let third = run(&["rsync/b"], &FakeRunner::default());
        assert!(third.success() && third.manifest.complete);
        assert!(third.manifest.coverage.units_not_ok.is_empty());
        assert!(manifest::is_complete(
            fx.dir.path(),
            &third.snapshot.unwrap()
        ));
        let statuses = unit_status::load(fx.dir.path());
        assert_eq!(statuses.len(), 2);
        assert!(statuses.values().all(|o| o.status == UnitStatus::Ok));
    }

    #[test]
    fn a_source_left_out_by_only_that_cannot_be_planned_keeps_the_tree_partial() {
        let fx = Fixture::new();
        let rsync = FakeSource {
            label: "rsync",
            units: Ok(vec!["rsync/a"]),
            workers: 1,
        };
        let github = FakeSource {
            label: "github",
            units: Err("HTTP 502"),
            workers: 1,
        };
        let mut plan = plan_of(&[&github, &rsync], fx.dir.path());
        plan.select(&["rsync/a".to_string()]).unwrap();
        let outcome = execute(
            &config(fx.dir.path()),
            &plan,
            &FakeRunner::default(),
            &Recorder::default(),
            &AtomicBool::new(false),
            None,
        );
        assert!(outcome.success(), "the run did all it was asked");
        assert!(!outcome.manifest.complete);
        assert!(outcome.manifest.planning_errors.is_empty());
        assert_eq!(
            outcome.manifest.coverage.left_out_planning_errors,
            ["github: listing repositories: HTTP 502"]
        );
    }

    #[test]
    fn lock_root_refuses_a_missing_root_and_a_second_run() {
        let fx = Fixture::new();
        let missing = config(&fx.dir.path().join("nope"));
        let err = lock_root(&missing).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(
            !fx.dir.path().join("nope").exists(),
            "the lock must not create the root"
        );

        let present = config(fx.dir.path());
        let _held = lock_root(&present).unwrap();
        let err = lock_root(&present).unwrap_err();
        assert!(
            err.downcast_ref::<lock::LockConflict>().is_some(),
            "{err:#}"
        );
    }
}
