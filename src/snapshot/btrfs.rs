//! Read-only btrfs subvolume snapshots (core-rsync-coda.md §5.9).
//!
//! ROOT must be a btrfs subvolume, and the snapshot directory (`snapshot-dir`, default
//! `<root>.snapshots`) a directory on the same btrfs filesystem. A snapshot is
//! `btrfs subvolume snapshot -r ROOT SNAPDIR/.tmp-NAME`, renamed to `SNAPDIR/NAME` once made
//! (renaming a read-only subvolume's directory entry is allowed) and synced with `syncfs`, so a
//! failed or interrupted create leaves nothing listed; leftovers are deleted by the next create.
//! Removal is `btrfs subvolume delete`, through sudo for a user other than root (the kernel
//! refuses it to unprivileged users unless the filesystem is mounted `user_subvol_rm_allowed`).
//!
//! A snapshot is readable where it is, so `mount` only returns its path and `unmount` does
//! nothing. Writes into it fail with EROFS; `user.*` xattrs are kept (test-infra.md §2).

use super::fs_usage::filesystem_rows;
use super::snapdir::SnapDir;
use super::tools::Tools;
use super::{SnapshotBackend, SnapshotError, SnapshotName, UsageRow};
use crate::config::Config;
use anyhow::{Context, bail};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `statfs` magic number of btrfs.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
/// Inode number of every subvolume's root directory.
const SUBVOLUME_ROOT_INO: u64 = 256;

/// The `btrfs` backend.
#[derive(Debug)]
pub struct Btrfs {
    root: PathBuf,
    snapdir: SnapDir,
    tools: Tools,
}

/// Whether `meta` (of a directory) is the root of a btrfs subvolume.
fn is_subvolume_root(meta: &fs::Metadata) -> bool {
    meta.is_dir() && meta.ino() == SUBVOLUME_ROOT_INO
}

/// Whether `path` is on a btrfs filesystem.
fn is_btrfs(path: &Path) -> anyhow::Result<bool> {
    let st = rustix::fs::statfs(path).with_context(|| format!("statfs {}", path.display()))?;
    Ok(st.f_type as i64 == BTRFS_SUPER_MAGIC)
}

impl Btrfs {
    /// Opens the backend for `config`. Nothing is checked until a snapshot is taken.
    pub fn new(config: &Config) -> anyhow::Result<Btrfs> {
        Ok(Btrfs::with_tools(
            config.root(),
            &config.settings.snapshot_dir(),
            Tools::from_env(),
        ))
    }

    /// Opens the backend for the subvolume `root`, keeping snapshots in `snapdir`.
    pub fn with_tools(root: &Path, snapdir: &Path, tools: Tools) -> Btrfs {
        Btrfs {
            root: root.to_owned(),
            snapdir: SnapDir {
                path: snapdir.to_owned(),
            },
            tools,
        }
    }

    /// Checks that ROOT is a btrfs subvolume.
    fn check_root(&self) -> anyhow::Result<()> {
        let meta = fs::metadata(&self.root)
            .with_context(|| format!("stat backup root {}", self.root.display()))?;
        if !is_btrfs(&self.root)? || !is_subvolume_root(&meta) {
            bail!(
                "backup root {} is not a btrfs subvolume; the btrfs snapshot backend needs one \
                 (create it with `btrfs subvolume create`, or use snapshot-backend: dir)",
                self.root.display()
            );
        }
        Ok(())
    }

    /// Checks that the (existing) snapshot directory is on btrfs.
    fn check_snapdir(&self) -> anyhow::Result<()> {
        if !is_btrfs(&self.snapdir.path)? {
            bail!(
                "snapshot directory {} is not on btrfs; set snapshot-dir to a directory on the \
                 same btrfs filesystem as {}",
                self.snapdir.path.display(),
                self.root.display()
            );
        }
        Ok(())
    }

    /// Deletes the subvolume at `path` (`btrfs subvolume delete PATH`).
    fn delete_subvolume(&self, path: &Path) -> anyhow::Result<()> {
        let mut cmd = self
            .tools
            .privileged(&self.tools.btrfs, ["subvolume", "delete"]);
        cmd.arg(path);
        self.tools
            .run(&mut cmd)
            .with_context(|| format!("deleting btrfs subvolume {}", path.display()))?;
        Ok(())
    }

    /// Deletes whatever is at `path`: a subvolume, or a plain leftover directory.
    fn delete_leftover(&self, path: &Path) -> anyhow::Result<()> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
        };
        if is_subvolume_root(&meta) {
            self.delete_subvolume(path)
        } else if meta.is_dir() {
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        } else {
            fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
        }
    }

    fn require(&self, name: &SnapshotName) -> Result<PathBuf, SnapshotError> {
        match self.snapdir.metadata(name)? {
            Some(meta) if is_subvolume_root(&meta) => Ok(self.snapdir.entry(name)),
            _ => Err(SnapshotError::NotFound(*name)),
        }
    }
}

impl SnapshotBackend for Btrfs {
    fn list(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
        Ok(self.snapdir.list(is_subvolume_root, "a btrfs subvolume")?)
    }

    fn next_name(&self, date: jiff::civil::Date) -> Result<SnapshotName, SnapshotError> {
        Ok(self.snapdir.next_name(date)?)
    }

    fn create(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        self.check_root()?;
        self.snapdir.ensure()?;
        self.check_snapdir()?;
        if self.snapdir.metadata(name)?.is_some() {
            return Err(SnapshotError::AlreadyExists(*name));
        }
        for leftover in self.snapdir.leftovers()? {
            tracing::info!("removing leftover {}", leftover.display());
            self.delete_leftover(&leftover)?;
        }
        let temp = self.snapdir.temp_entry(name);
        let result = (|| -> Result<(), SnapshotError> {
            let mut cmd = snapshot_command(&self.tools, &self.root, &temp);
            self.tools
                .run(&mut cmd)
                .with_context(|| format!("snapshotting {} as {name}", self.root.display()))?;
            self.snapdir.sync_filesystem(&temp)?;
            self.snapdir.publish(&temp, name)
        })();
        if result.is_err()
            && let Err(err) = self.delete_leftover(&temp)
        {
            tracing::warn!("{err:#}; the next snapshot will retry");
        }
        result
    }

    fn remove(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        let path = self.require(name)?;
        Ok(self.delete_subvolume(&path)?)
    }

    fn mount(&self, name: &SnapshotName) -> Result<PathBuf, SnapshotError> {
        self.require(name)
    }

    fn unmount(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        self.require(name).map(|_| ())
    }

    fn mounted(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
        Ok(Vec::new())
    }

    fn usage(&self) -> Result<Vec<UsageRow>, SnapshotError> {
        Ok(filesystem_rows(&self.root)?)
    }
}

/// `btrfs subvolume snapshot -r ROOT TARGET`.
fn snapshot_command(tools: &Tools, root: &Path, target: &Path) -> std::process::Command {
    let mut cmd = crate::util::process::command(&tools.btrfs, ["subvolume", "snapshot", "-r"]);
    cmd.arg(root).arg(target);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tools::fake::{FakeRunner, tools};

    #[test]
    fn create_refuses_a_root_that_is_not_a_subvolume_before_running_anything() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let runner = FakeRunner::new(|_| (0, String::new()));
        let backend = Btrfs::with_tools(&root, &dir.path().join("snaps"), tools(runner.clone()));
        let err = format!(
            "{:#}",
            backend.create(&"20240101-1".parse().unwrap()).unwrap_err()
        );
        assert!(err.contains("is not a btrfs subvolume"), "{err}");
        assert!(runner.calls().is_empty());
        assert!(
            !dir.path().join("snaps").exists(),
            "nothing is made for a bad root"
        );
    }

    #[test]
    fn the_snapshot_argv_is_read_only() {
        let cmd = snapshot_command(
            &Tools::default(),
            Path::new("/b/root"),
            Path::new("/b/s/.tmp-20240101-1"),
        );
        assert_eq!(
            crate::util::process::display(&cmd),
            "btrfs subvolume snapshot -r /b/root /b/s/.tmp-20240101-1"
        );
    }
}
