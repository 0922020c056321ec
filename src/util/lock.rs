//! The run lock (`ROOT/.lock/<name>`, core-rsync-coda.md §8.1) and the check that the backup
//! filesystem is mounted.

use anyhow::{Context, bail};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An exclusive lock held until dropped (flock on an open file).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Returned when another process holds the lock; the CLI maps it to a clear message.
#[derive(Debug, thiserror::Error)]
#[error("another deltaic {name} is already running (lock {path} is held); wait for it to finish")]
pub struct LockConflict {
    /// Lock name (`backup`).
    pub name: String,
    /// The lock file.
    pub path: String,
}

/// Takes `ROOT/.lock/<name>` without blocking. Fails with [`LockConflict`] when it is held.
pub fn acquire(root: &Path, name: &str) -> anyhow::Result<Lock> {
    let dir = root.join(".lock");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(LockConflict {
            name: name.to_string(),
            path: path.display().to_string(),
        }
        .into()),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
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

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "backup").unwrap();
        let err = acquire(dir.path(), "backup").unwrap_err();
        assert!(err.downcast_ref::<LockConflict>().is_some(), "{err:#}");
        drop(first);
        acquire(dir.path(), "backup").unwrap();
    }

    #[test]
    fn a_plain_directory_is_not_a_mounted_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        assert!(require_mounted(&root).is_err());
    }
}
