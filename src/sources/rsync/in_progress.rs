//! The in-progress marker `ROOT/.deltaic/in-progress/rsync-<alias>`: proof that a backup ended
//! with its data on disk.
//!
//! rsync decides what to send by size and modification time (the quick check). After a power
//! loss, a file's new size and time can be on disk while some of its new blocks are not (ext4
//! and XFS order data and metadata of *in-place* writes loosely; rsync sets the time last, and
//! without `--inplace` it does not fsync either). Such a file then looks current to every later
//! run until a random scrub reads it.
//!
//! So the marker is written (atomically, fsynced) before the first change to the destination
//! and removed only after rsync has exited by itself and `syncfs` has flushed the destination's
//! filesystem. A marker found at the start means the previous run may have been cut off by a
//! crash: that run's successor compares every file by checksum (a scrub). An rsync that failed
//! with a status (a network error, unreadable files) leaves nothing a quick check would miss:
//! a file it did not finish keeps the time of its last write, not the host's.

use crate::run::manifest::state_dir;
use crate::util::atomic_file;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The marker of one rsync unit.
#[derive(Debug, Clone)]
pub struct InProgress {
    path: PathBuf,
}

impl InProgress {
    /// The marker of host `alias` in the backup `root`.
    pub fn new(root: &Path, alias: &str) -> InProgress {
        InProgress {
            path: state_dir(root)
                .join("in-progress")
                .join(format!("rsync-{alias}")),
        }
    }

    /// Where the marker lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the markers (also deltaic's scratch space on the backup
    /// filesystem).
    pub fn dir(&self) -> &Path {
        self.path.parent().expect("the marker has a parent")
    }

    /// The marker's file name (`rsync-<alias>`), also a stem for this unit's scratch files.
    pub fn name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("built from a UTF-8 alias")
    }

    /// Whether a marker is present (the previous backup did not finish cleanly).
    pub fn is_present(&self) -> io::Result<bool> {
        self.path.try_exists()
    }

    /// Creates the marker durably: the file and every directory entry leading to it are fsynced,
    /// so a crash right after cannot lose it.
    pub fn set(&self, host: &str) -> io::Result<()> {
        let dir = self.dir();
        fs::create_dir_all(dir)?;
        let state = dir.parent().expect("in-progress has a parent");
        atomic_file::sync_dir(state)?;
        if let Some(root) = state.parent() {
            atomic_file::sync_dir(root)?;
        }
        let text = format!(
            "rsync backup of {host} by process {} since {}\n",
            std::process::id(),
            jiff::Timestamp::now()
        );
        atomic_file::write(&self.path, text.as_bytes())
    }

    /// Flushes the filesystem holding `dest` (`syncfs`), then removes the marker durably.
    /// On an error the marker stays, and the next backup scrubs.
    pub fn clear_after_sync(&self, dest: &Path) -> io::Result<()> {
        let target = if dest.exists() { dest } else { self.dir() };
        rustix::fs::syncfs(File::open(target)?)?;
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        atomic_file::sync_dir(self.dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_set_found_and_cleared() {
        let root = tempfile::tempdir().unwrap();
        let marker = InProgress::new(root.path(), "octopus");
        assert_eq!(
            marker.path(),
            root.path().join(".deltaic/in-progress/rsync-octopus")
        );
        assert!(!marker.is_present().unwrap());
        marker.set("octopus.example.org").unwrap();
        assert!(marker.is_present().unwrap());
        let text = fs::read_to_string(marker.path()).unwrap();
        assert!(
            text.starts_with("rsync backup of octopus.example.org by process "),
            "{text}"
        );
        let dest = root.path().join("rsync/octopus");
        fs::create_dir_all(&dest).unwrap();
        marker.clear_after_sync(&dest).unwrap();
        assert!(!marker.is_present().unwrap());
        // Clearing twice (or without a destination) is harmless.
        marker
            .clear_after_sync(&root.path().join("missing"))
            .unwrap();
        assert_eq!(
            fs::read_dir(marker.dir()).unwrap().count(),
            0,
            "no temp files left"
        );
    }
}
