//! What a unit command does before it writes into the backup root, and after: locks, and the
//! unit's last outcome when it was started by hand.
//!
//! Under `deltaic run` the run records each unit's outcome itself ([`super::unit_status`]). A
//! unit run by hand (`deltaic rsync backup HOST`) writes into the same tree, so it must leave its
//! outcome too, or a later `deltaic snapshot` would call a tree complete although a manual run
//! died half-way through it (torn `--inplace` files). So [`start`] records the unit as
//! failed before any work, and the CLI records it as ok ([`finish`]) only when the command
//! ended successfully. A crash, a kill or an error leaves "failed" until the unit next succeeds.
//!
//! The read-modify-write of `unit-status.json` is serialised by `ROOT/.lock/unit-status`;
//! manual units hold `.lock/backup` shared, so no run (which updates the file under that lock
//! held exclusively) can be going on at the same time.

use super::manifest::UnitStatus;
use super::summary::rfc3339;
use super::unit_status::{self, LastOutcome};
use crate::config::{Config, SnapshotBackendKind};
use crate::sources::UnitRoot;
use crate::util::lock::{self, UnitLocks};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The lock serialising updates of `unit-status.json` by manual units.
const STATUS_LOCK: &str = "unit-status";

/// The manual unit this process started, remembered for [`finish`].
static MANUAL_UNIT: Mutex<Option<(PathBuf, UnitRoot)>> = Mutex::new(None);

/// The name of `unit`'s own lock under `ROOT/.lock/`: its root with `/` as `-`
/// (`rsync/octopus` → `rsync-octopus`).
pub fn lock_name(unit: &UnitRoot) -> String {
    unit.as_str().replace('/', "-")
}

/// Checks that the backup filesystem is there, takes `unit`'s locks ([`lock::unit_locks`]) and,
/// when it was started by hand, records it as failed until [`finish`] says otherwise. Every unit
/// command calls it before it writes anything.
///
/// Errors: with the lvm and btrfs backends, ROOT is not its own filesystem or subvolume (a
/// backup into an unmounted root would fill the system disk and never be snapshotted); a lock
/// is held ([`lock::LockConflict`]); the outcome cannot be recorded.
pub fn start(config: &Config, unit: &UnitRoot) -> anyhow::Result<UnitLocks> {
    match config.settings.snapshot_backend {
        SnapshotBackendKind::Lvm | SnapshotBackendKind::Btrfs => {
            lock::require_mounted(config.root())?
        }
        SnapshotBackendKind::Dir => {}
    }
    start_at(config.root(), unit)
}

/// [`start`] without the filesystem check.
fn start_at(root: &Path, unit: &UnitRoot) -> anyhow::Result<UnitLocks> {
    let locks = lock::unit_locks(root, &lock_name(unit))?;
    if !lock::started_by_run() {
        record(root, unit, UnitStatus::Failed)?;
        *MANUAL_UNIT.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((root.to_path_buf(), unit.clone()));
    }
    Ok(locks)
}

/// Records the manual unit this process started (if any) as ok. The CLI calls it after a unit
/// command returned success; nothing else should.
///
/// Errors: the outcome cannot be recorded (the unit then stays "failed": the safe side).
pub fn finish() -> anyhow::Result<()> {
    let started = MANUAL_UNIT.lock().unwrap_or_else(|e| e.into_inner()).take();
    match started {
        Some((root, unit)) => record(&root, &unit, UnitStatus::Ok),
        None => Ok(()),
    }
}

/// Sets `unit`'s last outcome to `status`, now, under the status lock.
fn record(root: &Path, unit: &UnitRoot, status: UnitStatus) -> anyhow::Result<()> {
    let _lock = lock::acquire_blocking(root, STATUS_LOCK)?;
    let mut statuses = unit_status::load(root);
    let time = rfc3339(&jiff::ZonedDateTime::now());
    statuses.insert(unit.clone(), LastOutcome { status, time });
    unit_status::save(root, &statuses)
        .with_context(|| format!("recording the outcome of unit {unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str) -> UnitRoot {
        UnitRoot::try_from(name.to_string()).unwrap()
    }

    #[test]
    fn lock_names_keep_the_historical_form() {
        assert_eq!(lock_name(&unit("rsync/octopus")), "rsync-octopus");
        assert_eq!(lock_name(&unit("github/org/repo")), "github-org-repo");
    }

    #[test]
    fn a_manual_unit_is_failed_until_it_finishes_and_others_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let other = unit("rsync/other");
        record(dir.path(), &other, UnitStatus::Ok).unwrap();

        let this = unit("rsync/octopus");
        let locks = start_at(dir.path(), &this).unwrap();
        let statuses = unit_status::load(dir.path());
        assert_eq!(statuses[&this].status, UnitStatus::Failed);
        assert_eq!(statuses[&other].status, UnitStatus::Ok);
        // The unit's own lock is held while it works.
        assert!(lock::acquire(dir.path(), "rsync-octopus").is_err());

        finish().unwrap();
        drop(locks);
        let statuses = unit_status::load(dir.path());
        assert_eq!(statuses[&this].status, UnitStatus::Ok);
        assert_eq!(statuses[&other].status, UnitStatus::Ok);
        // A second finish has nothing left to record.
        finish().unwrap();
    }
}
