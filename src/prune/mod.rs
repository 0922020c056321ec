//! `deltaic prune`: snapshot retention and log pruning (core-rsync-coda.md §6, D3).
//!
//! Deciding and doing are separate. [`retention::plan`] is a pure function from the snapshot
//! list (with each snapshot's complete/partial state), today's date and the [`RetentionPolicy`]
//! to a [`PrunePlan`] that explains every decision; [`apply`] carries a plan out through a
//! [`SnapshotBackend`] and deletes the removed snapshots' run records; [`logs::prune_logs`]
//! thins `ROOT/Logs`. Only the CLI (`cli/prune.rs`) prints.

pub mod logs;
pub mod retention;

pub use logs::{LogPruneReport, prune_logs};
pub use retention::{
    Decision, KeepRule, PlanEntry, PrunePlan, RemoveReason, RetentionPolicy, plan,
};

use crate::run::manifest;
use crate::snapshot::{SnapshotBackend, SnapshotError, SnapshotName};
use crate::util::atomic_file;
use anyhow::Context;
use std::path::Path;

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Snapshots that are gone, in the order they were removed.
    pub removed: Vec<SnapshotName>,
    /// Every failure, with the snapshot it concerns. A snapshot whose removal failed is not in
    /// `removed`; one whose run record could not be deleted afterwards is in both.
    pub failures: Vec<(SnapshotName, anyhow::Error)>,
}

/// Removes the snapshots `plan` marks for removal, oldest first, and after each one its run
/// record (`ROOT/.deltaic/runs/<name>.json`, see [`manifest::record_path`]).
///
/// A failed removal does not stop the others: every failure is collected in the report, and
/// the caller decides the exit status. A snapshot that is already gone ([`SnapshotError::NotFound`],
/// e.g. removed by a concurrent prune) counts as removed, with a warning. A run record is
/// deleted only once its snapshot is gone, so a failed removal never leaves a snapshot without
/// its record (which would make a partial snapshot count as complete).
pub fn apply(plan: &PrunePlan, backend: &dyn SnapshotBackend, root: &Path) -> ApplyReport {
    let mut report = ApplyReport::default();
    for entry in plan.removed() {
        let name = entry.name;
        match backend.remove(&name) {
            Ok(()) => tracing::info!("removed snapshot {name}"),
            Err(SnapshotError::NotFound(_)) => tracing::warn!("snapshot {name} was already gone"),
            Err(err) => {
                let err = anyhow::Error::new(err).context(format!("removing snapshot {name}"));
                report.failures.push((name, err));
                continue;
            }
        }
        report.removed.push(name);
        if let Err(err) = delete_record(root, &name) {
            report.failures.push((name, err));
        }
    }
    report
}

/// Deletes the run record of a removed snapshot (durably); a missing record is fine.
fn delete_record(root: &Path, name: &SnapshotName) -> anyhow::Result<()> {
    let path = manifest::record_path(root, name);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "snapshot {name} is removed, but deleting its run record {} failed; \
                     delete that file by hand",
                    path.display()
                )
            });
        }
    }
    let dir = path.parent().unwrap_or(root);
    atomic_file::sync_dir(dir).with_context(|| {
        format!(
            "syncing {} after deleting {}",
            dir.display(),
            path.display()
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::run::manifest::RunManifest;
    use crate::snapshot::UsageRow;
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    /// An in-memory backend for prune tests (here and in `cli/prune.rs`); removing a name in
    /// `failing` fails, and every `remove` call is recorded in `calls`.
    #[derive(Default)]
    pub(crate) struct FakeBackend {
        pub(crate) snapshots: RefCell<BTreeSet<SnapshotName>>,
        pub(crate) failing: BTreeSet<SnapshotName>,
        pub(crate) calls: RefCell<Vec<SnapshotName>>,
    }

    impl FakeBackend {
        /// A backend holding `names`, whose removal of `failing` fails.
        pub(crate) fn with(names: &[SnapshotName], failing: &[SnapshotName]) -> FakeBackend {
            FakeBackend {
                snapshots: RefCell::new(names.iter().copied().collect()),
                failing: failing.iter().copied().collect(),
                calls: RefCell::default(),
            }
        }
    }

    impl SnapshotBackend for FakeBackend {
        fn list(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
            Ok(self.snapshots.borrow().iter().copied().collect())
        }
        fn create(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
            if !self.snapshots.borrow_mut().insert(*name) {
                return Err(SnapshotError::AlreadyExists(*name));
            }
            Ok(())
        }
        fn remove(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
            self.calls.borrow_mut().push(*name);
            if self.failing.contains(name) {
                return Err(anyhow::anyhow!("lvremove: device busy").into());
            }
            if !self.snapshots.borrow_mut().remove(name) {
                return Err(SnapshotError::NotFound(*name));
            }
            Ok(())
        }
        fn mount(&self, _: &SnapshotName) -> Result<PathBuf, SnapshotError> {
            unreachable!("prune never mounts")
        }
        fn unmount(&self, _: &SnapshotName) -> Result<(), SnapshotError> {
            unreachable!("prune never unmounts")
        }
        fn mounted(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
            Ok(Vec::new())
        }
        fn usage(&self) -> Result<Vec<UsageRow>, SnapshotError> {
            Ok(Vec::new())
        }
    }

    fn name(s: &str) -> SnapshotName {
        s.parse().unwrap()
    }

    /// Writes the run record of `snapshot` under `root`, as `deltaic run` does.
    pub(crate) fn write_record(root: &Path, snapshot: SnapshotName, complete: bool) {
        RunManifest {
            version: 1,
            deltaic_version: "test".into(),
            started: "2024-01-01T00:00:00Z".into(),
            finished: "2024-01-01T01:00:00Z".into(),
            snapshot: Some(snapshot),
            complete,
            planning_errors: Vec::new(),
            units: Vec::new(),
            coverage: Default::default(),
        }
        .write(root)
        .unwrap();
    }

    #[test]
    fn apply_removes_in_order_goes_on_past_a_failure_and_deletes_records() {
        let root = tempfile::tempdir().unwrap();
        let backend = FakeBackend::default();
        // 12 snapshots on one old day plus a newer one: -1..-11 go (in numeric order), -12 stays.
        let mut all: Vec<SnapshotName> = (1..=12).map(|r| name(&format!("20240101-{r}"))).collect();
        all.push(name("20240102-1"));
        for n in &all {
            backend.create(n).unwrap();
            write_record(root.path(), *n, true);
        }
        let failing = name("20240101-10");
        let backend = FakeBackend {
            failing: [failing].into(),
            ..backend
        };

        let snapshots: Vec<(SnapshotName, bool)> = backend
            .list()
            .unwrap()
            .into_iter()
            .map(|n| (n, manifest::is_complete(root.path(), &n)))
            .collect();
        let plan = plan(
            &snapshots,
            jiff::civil::date(2024, 6, 15),
            &RetentionPolicy::default(),
        );
        let report = apply(&plan, &backend, root.path());

        let to_remove: Vec<SnapshotName> =
            (1..=11).map(|r| name(&format!("20240101-{r}"))).collect();
        assert_eq!(
            *backend.calls.borrow(),
            to_remove,
            "removed in (date, revision) order"
        );
        let expected_removed: Vec<SnapshotName> = to_remove
            .iter()
            .copied()
            .filter(|n| *n != failing)
            .collect();
        assert_eq!(report.removed, expected_removed);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].0, failing);
        let message = format!("{:#}", report.failures[0].1);
        assert!(
            message.contains("removing snapshot 20240101-10") && message.contains("device busy"),
            "{message}"
        );

        let left: Vec<SnapshotName> = backend.list().unwrap();
        assert_eq!(left, [failing, name("20240101-12"), name("20240102-1")]);
        for n in &expected_removed {
            assert!(
                !manifest::record_path(root.path(), n).exists(),
                "record of {n} left behind"
            );
        }
        for n in &left {
            assert!(
                manifest::record_path(root.path(), n).exists(),
                "record of {n} deleted"
            );
        }
    }

    #[test]
    fn a_snapshot_already_gone_counts_as_removed() {
        let root = tempfile::tempdir().unwrap();
        let backend = FakeBackend::default();
        backend.create(&name("20240102-1")).unwrap();
        // 20240101-1 is in the plan but not in the backend (a concurrent prune took it).
        let snapshots = [
            (name("20240101-1"), true),
            (name("20240101-2"), true),
            (name("20240102-1"), true),
        ];
        backend.create(&name("20240101-2")).unwrap();
        let plan = plan(
            &snapshots,
            jiff::civil::date(2024, 6, 15),
            &RetentionPolicy::default(),
        );
        let report = apply(&plan, &backend, root.path());
        assert_eq!(report.removed, [name("20240101-1")]);
        assert!(report.failures.is_empty());
    }

    #[test]
    fn a_plan_without_removals_touches_nothing() {
        let root = tempfile::tempdir().unwrap();
        let backend = FakeBackend::with(&[name("20240614-1")], &[]);
        let plan = plan(
            &[(name("20240614-1"), false)],
            jiff::civil::date(2024, 6, 15),
            &RetentionPolicy::default(),
        );
        let report = apply(&plan, &backend, root.path());
        assert!(report.removed.is_empty() && report.failures.is_empty());
        assert!(backend.calls.borrow().is_empty());
    }
}
