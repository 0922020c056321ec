//! The locks under `ROOT/.lock/` (core-rsync-coda.md §8.1) and the check that the backup
//! filesystem is mounted.
//!
//! Two levels, both `flock`s on files that are never deleted:
//! * `ROOT/.lock/backup` ([`BACKUP_LOCK`]): `deltaic run` and `deltaic snapshot` hold it
//!   exclusively, so a snapshot never freezes a tree that something is writing into. A unit
//!   started by hand (`deltaic rsync backup HOST`) holds it *shared*: manual units may run side by
//!   side, but not during a run or a snapshot, and a snapshot waits for them.
//! * `ROOT/.lock/<source>-<unit>` (e.g. `rsync-octopus`): one per unit, always exclusive, so the
//!   same unit never runs twice at once.
//!
//! A unit child of `deltaic run` finds the run's pid in [`RUN_PID_ENV`]; when that is its parent,
//! the run already holds `.lock/backup` exclusively for it, so the unit takes only its own lock
//! ([`unit_locks`]).

use anyhow::{Context, bail};
use rustix::process::Pid;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Name of the lock of the whole backup root (`ROOT/.lock/backup`).
pub const BACKUP_LOCK: &str = "backup";

/// Environment variable through which `deltaic run` gives its unit children its pid.
pub const RUN_PID_ENV: &str = "DELTAIC_RUN_PID";

/// A lock held until dropped (flock on an open file).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Returned when another process holds the lock; the message says who and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LockConflict {
    /// Lock name (`backup`, `rsync-octopus`).
    pub name: String,
    /// The lock file.
    pub path: String,
    /// The message shown to the user.
    pub message: String,
}

/// Opens (creating it and `ROOT/.lock` as needed) the lock file `name`.
fn open(root: &Path, name: &str) -> anyhow::Result<(File, PathBuf)> {
    let dir = root.join(".lock");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    Ok((file, path))
}

/// Takes `ROOT/.lock/<name>` exclusively, without blocking. Fails with [`LockConflict`] when
/// anyone holds it, saying whether that is another exclusive holder or manual unit backups
/// holding it shared.
pub fn acquire(root: &Path, name: &str) -> anyhow::Result<Lock> {
    let (file, path) = open(root, name)?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => {
            // A shared lock on a second open file tells who holds it, without waiting.
            let (probe, _) = open(root, name)?;
            let message = if probe.try_lock_shared().is_ok() {
                format!(
                    "deltaic units started by hand (e.g. `deltaic rsync backup HOST`) are \
                     writing into the backup root (they hold lock {} shared); try again when \
                     they end",
                    path.display()
                )
            } else {
                already_running(name, &path)
            };
            Err(conflict(name, &path, message))
        }
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Takes `ROOT/.lock/<name>` exclusively, waiting for any holder: for short critical sections
/// (a read-modify-write of a small state file), never for whole runs.
pub fn acquire_blocking(root: &Path, name: &str) -> anyhow::Result<Lock> {
    let (file, path) = open(root, name)?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(Lock { _file: file })
}

/// Takes `ROOT/.lock/<name>` shared, without blocking: any number of shared holders, but none
/// while someone holds it exclusively. Fails with [`LockConflict`] in that case.
pub fn acquire_shared(root: &Path, name: &str) -> anyhow::Result<Lock> {
    let (file, path) = open(root, name)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => {
            let message = if name == BACKUP_LOCK {
                format!(
                    "a deltaic run or snapshot is in progress; try again when it ends (lock {} \
                     is held)",
                    path.display()
                )
            } else {
                already_running(name, &path)
            };
            Err(conflict(name, &path, message))
        }
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {} (shared)", path.display()))
        }
    }
}

/// The message for a lock another exclusive holder has.
fn already_running(name: &str, path: &Path) -> String {
    format!(
        "another deltaic {name} is already running (lock {} is held); wait for it to finish",
        path.display()
    )
}

fn conflict(name: &str, path: &Path, message: String) -> anyhow::Error {
    LockConflict {
        name: name.to_string(),
        path: path.display().to_string(),
        message,
    }
    .into()
}

/// The locks a unit command holds while it writes into the backup root (see the module doc).
#[derive(Debug)]
pub struct UnitLocks {
    /// `.lock/backup` shared; `None` under a run, which holds it exclusively itself.
    _backup: Option<Lock>,
    _unit: Lock,
}

/// Takes the locks of the unit whose own lock is `ROOT/.lock/<unit_lock>` (e.g. `rsync-octopus`):
/// under `deltaic run` ([`started_by_run`]) only that one; by hand also `.lock/backup` shared, so
/// that no run or snapshot is going on and none starts until the unit ends.
///
/// Errors: [`LockConflict`] when a run or snapshot is in progress (manual only), or when the unit
/// is already running.
pub fn unit_locks(root: &Path, unit_lock: &str) -> anyhow::Result<UnitLocks> {
    unit_locks_as(root, unit_lock, started_by_run())
}

fn unit_locks_as(root: &Path, unit_lock: &str, under_run: bool) -> anyhow::Result<UnitLocks> {
    let backup = if under_run {
        None
    } else {
        Some(acquire_shared(root, BACKUP_LOCK)?)
    };
    Ok(UnitLocks {
        _backup: backup,
        _unit: acquire(root, unit_lock)?,
    })
}

/// The pid in [`RUN_PID_ENV`], if set.
///
/// Errors: it is set but not a process id.
pub fn run_pid_from_env() -> anyhow::Result<Option<Pid>> {
    let Some(value) = std::env::var_os(RUN_PID_ENV) else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    match text.parse::<i32>().ok().and_then(Pid::from_raw) {
        Some(pid) => Ok(Some(pid)),
        None => bail!(
            "{RUN_PID_ENV}=`{text}` is not a process id (deltaic run sets it for its units; \
             unset it when running a unit by hand)"
        ),
    }
}

/// True when this process is a unit child of a live `deltaic run`: [`RUN_PID_ENV`] names its
/// parent. (A stale value from a shell does not count: that shell is not a run.)
pub fn started_by_run() -> bool {
    matches!(run_pid_from_env(), Ok(Some(pid)) if rustix::process::getppid() == Some(pid))
}

/// Fails unless `root` is a mount point, i.e. on another device than its parent (so a backup
/// never fills the system disk when the backup volume is missing). `root` must be normalised.
pub fn require_mounted(root: &Path) -> anyhow::Result<()> {
    let parent = root.parent().unwrap_or(Path::new("/"));
    let dev = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.dev())
            .with_context(|| format!("stat {}", p.display()))
    };
    if dev(root)? == dev(parent)? {
        bail!(
            "backup filesystem is not mounted at {} (it is on the same device as {}); \
             mount it, or use `snapshot-backend: dir`, which does not need its own filesystem",
            root.display(),
            parent.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(err: &anyhow::Error) -> String {
        err.downcast_ref::<LockConflict>()
            .unwrap_or_else(|| panic!("not a LockConflict: {err:#}"))
            .to_string()
    }

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "backup").unwrap();
        let err = acquire(dir.path(), "backup").unwrap_err();
        assert!(
            message(&err).starts_with("another deltaic backup is already running"),
            "{err:#}"
        );
        drop(first);
        acquire(dir.path(), "backup").unwrap();
    }

    #[test]
    fn shared_holders_coexist_and_keep_the_exclusive_lock_out_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let one = acquire_shared(dir.path(), BACKUP_LOCK).unwrap();
        let two = acquire_shared(dir.path(), BACKUP_LOCK).unwrap();
        let err = acquire(dir.path(), BACKUP_LOCK).unwrap_err();
        assert!(
            message(&err).starts_with("deltaic units started by hand"),
            "{err:#}"
        );
        drop(one);
        assert!(acquire(dir.path(), BACKUP_LOCK).is_err(), "one is left");
        drop(two);
        let exclusive = acquire(dir.path(), BACKUP_LOCK).unwrap();
        let err = acquire_shared(dir.path(), BACKUP_LOCK).unwrap_err();
        assert!(
            message(&err)
                .starts_with("a deltaic run or snapshot is in progress; try again when it ends"),
            "{err:#}"
        );
        drop(exclusive);
        acquire_shared(dir.path(), BACKUP_LOCK).unwrap();
    }

    #[test]
    fn a_manual_unit_holds_the_backup_lock_shared_and_its_own_exclusively() {
        let dir = tempfile::tempdir().unwrap();
        let first = unit_locks_as(dir.path(), "rsync-a", false).unwrap();
        // Another unit by hand may run beside it; the same unit may not; a run may not.
        let other = unit_locks_as(dir.path(), "rsync-b", false).unwrap();
        let err = unit_locks_as(dir.path(), "rsync-a", false).unwrap_err();
        assert!(
            message(&err).starts_with("another deltaic rsync-a is already running"),
            "{err:#}"
        );
        assert!(acquire(dir.path(), BACKUP_LOCK).is_err());
        drop((first, other));
        let run = acquire(dir.path(), BACKUP_LOCK).unwrap();
        let err = unit_locks_as(dir.path(), "rsync-a", false).unwrap_err();
        assert!(
            message(&err).starts_with("a deltaic run or snapshot is in progress"),
            "{err:#}"
        );
        // The run's own units take only their unit lock.
        let child = unit_locks_as(dir.path(), "rsync-a", true).unwrap();
        assert!(unit_locks_as(dir.path(), "rsync-a", true).is_err());
        drop((child, run));
    }

    #[test]
    fn without_the_variable_this_process_is_not_a_run_child() {
        // The test runner never sets DELTAIC_RUN_PID.
        assert!(std::env::var_os(RUN_PID_ENV).is_none());
        assert!(!started_by_run());
        assert_eq!(run_pid_from_env().unwrap(), None);
    }

    #[test]
    fn a_plain_directory_is_not_a_mounted_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        assert!(require_mounted(&root).is_err());
    }
}
