//! The snapshot directory of the `btrfs` and `dir` backends (core-rsync-coda.md §5.9): one entry
//! per snapshot, named `YYYYMMDD-N`.
//!
//! A snapshot is built under the temporary name `.tmp-YYYYMMDD-N` and renamed into place (with
//! `RENAME_NOREPLACE`, so an existing snapshot is never replaced) only once it is complete and
//! synced; a crash or a failure therefore never leaves a half-made snapshot listed. Removal
//! renames the snapshot to a temporary name first, for the same reason. Leftover temporaries are
//! deleted by the next `create`.

use super::{SnapshotError, SnapshotName};
use anyhow::Context;
use rustix::fs::{CWD, RenameFlags};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Prefix of snapshots under construction or being removed.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// A snapshot directory.
#[derive(Debug, Clone)]
pub(super) struct SnapDir {
    /// Where the snapshots live.
    pub path: PathBuf,
}

impl SnapDir {
    /// Where snapshot `name` lives.
    pub fn entry(&self, name: &SnapshotName) -> PathBuf {
        self.path.join(name.to_string())
    }

    /// Where snapshot `name` is built before it is published.
    pub fn temp_entry(&self, name: &SnapshotName) -> PathBuf {
        self.path.join(format!("{TEMP_PREFIX}{name}"))
    }

    /// Where snapshot `name` goes while it is being removed.
    pub fn removal_entry(&self, name: &SnapshotName) -> PathBuf {
        self.path.join(format!("{TEMP_PREFIX}removing-{name}"))
    }

    /// Creates the directory if needed.
    pub fn ensure(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.path)
            .with_context(|| format!("creating snapshot directory {}", self.path.display()))
    }

    /// The `lstat` of snapshot `name`, `None` when nothing has that name.
    pub fn metadata(&self, name: &SnapshotName) -> anyhow::Result<Option<fs::Metadata>> {
        let path = self.entry(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
        }
    }

    /// Every entry whose name parses as a snapshot name, with its `lstat`, in no order. A missing
    /// directory has none. Other names are skipped; visible ones with a warning (BUG-10).
    pub fn names(&self) -> anyhow::Result<Vec<(SnapshotName, fs::Metadata)>> {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("listing snapshot directory {}", self.path.display())
                });
            }
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry
                .with_context(|| format!("listing snapshot directory {}", self.path.display()))?;
            let file_name = entry.file_name();
            let text = file_name.to_string_lossy();
            match text.parse::<SnapshotName>() {
                Ok(name) => {
                    let meta = entry
                        .metadata()
                        .with_context(|| format!("stat {}", entry.path().display()))?;
                    found.push((name, meta));
                }
                Err(err) if !text.starts_with('.') && text != "lost+found" => {
                    tracing::warn!("skipping {}: {err}", entry.path().display());
                }
                Err(_) => {}
            }
        }
        Ok(found)
    }

    /// The snapshots whose entry passes `is_snapshot`, oldest first; other entries with a
    /// snapshot name are skipped with a warning naming `what` they should have been.
    pub fn list(
        &self,
        is_snapshot: impl Fn(&fs::Metadata) -> bool,
        what: &str,
    ) -> anyhow::Result<Vec<SnapshotName>> {
        let mut names: Vec<SnapshotName> = self
            .names()?
            .into_iter()
            .filter_map(|(name, meta)| {
                if is_snapshot(&meta) {
                    Some(name)
                } else {
                    tracing::warn!("skipping {}: not {what}", self.entry(&name).display());
                    None
                }
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The next free name of `date` among every entry that parses, snapshot or not.
    pub fn next_name(&self, date: jiff::civil::Date) -> anyhow::Result<SnapshotName> {
        let names: Vec<SnapshotName> = self.names()?.into_iter().map(|(n, _)| n).collect();
        Ok(SnapshotName::next_free(date, &names))
    }

    /// Leftover temporaries (`.tmp-*`) of an interrupted create or remove.
    pub fn leftovers(&self) -> anyhow::Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.path.display())),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", self.path.display()))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                found.push(entry.path());
            }
        }
        found.sort();
        Ok(found)
    }

    /// Renames the finished `temp` to `name` without ever replacing an existing entry, then
    /// makes the rename durable. `AlreadyExists` when `name` exists.
    pub fn publish(&self, temp: &Path, name: &SnapshotName) -> Result<(), SnapshotError> {
        let target = self.entry(name);
        match rename_noreplace(temp, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(SnapshotError::AlreadyExists(*name));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!(
                        "renaming {} to {}",
                        temp.display(),
                        target.display()
                    ))
                    .into());
            }
        }
        crate::util::atomic_file::sync_dir(&self.path)
            .with_context(|| format!("syncing snapshot directory {}", self.path.display()))?;
        Ok(())
    }

    /// Flushes the whole filesystem of the snapshot directory (every file of a new snapshot).
    pub fn sync_filesystem(&self, path: &Path) -> anyhow::Result<()> {
        let dir = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        rustix::fs::syncfs(&dir)
            .with_context(|| format!("syncing the filesystem of {}", path.display()))
    }
}

/// `rename(from, to)` that fails with `AlreadyExists` instead of replacing `to`.
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SnapshotName {
        s.parse().unwrap()
    }

    #[test]
    fn a_missing_directory_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let snapdir = SnapDir {
            path: dir.path().join("missing"),
        };
        assert!(snapdir.list(|_| true, "x").unwrap().is_empty());
        assert!(snapdir.leftovers().unwrap().is_empty());
    }

    #[test]
    fn foreign_and_temporary_names_are_not_listed_but_count_for_next_name() {
        let dir = tempfile::tempdir().unwrap();
        let snapdir = SnapDir {
            path: dir.path().to_owned(),
        };
        for d in [
            "20240101-10",
            "20240101-9",
            "junk",
            ".tmp-20240101-11",
            "20240101",
        ] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("20240101-12"), "a file").unwrap();
        let listed = snapdir.list(|m| m.is_dir(), "a directory").unwrap();
        assert_eq!(listed, [name("20240101-9"), name("20240101-10")]);
        // The plain file 20240101-12 is not listed but would collide: next is -13.
        assert_eq!(
            snapdir.next_name(name("20240101-1").date).unwrap(),
            name("20240101-13")
        );
        assert_eq!(
            snapdir.leftovers().unwrap(),
            [dir.path().join(".tmp-20240101-11")]
        );
    }

    #[test]
    fn publish_never_replaces_an_existing_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snapdir = SnapDir {
            path: dir.path().to_owned(),
        };
        let n = name("20240101-1");
        fs::create_dir(snapdir.entry(&n)).unwrap(); // empty: plain rename(2) would replace it
        fs::create_dir(snapdir.temp_entry(&n)).unwrap();
        assert!(matches!(
            snapdir.publish(&snapdir.temp_entry(&n), &n),
            Err(SnapshotError::AlreadyExists(_))
        ));
        fs::remove_dir(snapdir.entry(&n)).unwrap();
        snapdir.publish(&snapdir.temp_entry(&n), &n).unwrap();
        assert!(snapdir.entry(&n).is_dir() && !snapdir.temp_entry(&n).exists());
    }
}
