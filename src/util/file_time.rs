//! Whole-second modification times, read and set without following symlinks
//! (core-rsync-coda.md §8.2 `lutime`, `datetime_to_time_t`). Sources that store remote items
//! set a file's mtime to the item's own "last updated" time and compare it on the next run.

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The mtime of `path` in whole seconds (fractions truncated), or `None` when it does not exist
/// or cannot be read.
pub fn mtime_secs(path: &Path) -> Option<i64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.mtime())
}

/// Sets the atime and mtime of `path` (not following a symlink) to `secs`.
pub fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("setting the mtime of {}: {e}", path.display()),
        )
    })
}

/// Sets the mtime of `path` to `secs` unless it already is; returns whether it changed.
pub fn ensure_mtime(path: &Path, secs: i64) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.mtime() == secs && meta.mtime_nsec() == 0 {
        return Ok(false);
    }
    set_mtime(path, secs)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_then_read_back_and_ensure_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(mtime_secs(&path), None);
        std::fs::write(&path, b"x").unwrap();
        set_mtime(&path, 1_300_000_000).unwrap();
        assert_eq!(mtime_secs(&path), Some(1_300_000_000));
        assert!(!ensure_mtime(&path, 1_300_000_000).unwrap());
        assert!(ensure_mtime(&path, 1_300_000_001).unwrap());
        assert_eq!(mtime_secs(&path), Some(1_300_000_001));
    }
}
