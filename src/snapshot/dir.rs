//! Directory snapshots: a copy of ROOT, reflinked where the filesystem supports it
//! (core-rsync-coda.md §5.9). For small installations and the quickstart.
//!
//! A snapshot is `SNAPDIR/NAME` (`snapshot-dir`, default `<root>.snapshots`), made with
//! `cp -a --preserve=xattr --reflink=auto --sparse=auto -T ROOT SNAPDIR/.tmp-NAME`. GNU cp
//! clones extents (FICLONE) on btrfs and xfs and copies elsewhere, and keeps what the sources
//! rely on: `user.*` xattrs (`--preserve=xattr` makes a failure to copy one an error instead of
//! silence), modes, ownership where permitted, mtimes of files and directories, symlinks, hard
//! links within ROOT and holes in sparse files (tests/it/snapshot.rs checks each). `ROOT/.lock`
//! is left out. The copy is then made read-only, synced with `syncfs` and renamed into place,
//! so a crash or a failure leaves nothing listed (see `snapshot/snapdir.rs`).
//!
//! **Modes are kept exactly; only the snapshot's top directory is made read-only.** Clearing
//! the write bits of every file would protect a snapshot better against accidents, but it would
//! also change the data: a restore from the snapshot of a file whose real mode is not recorded
//! in a `user.rsync.%stat` xattr (files owned by the backup user itself, as in the quickstart)
//! would come back without its write bits. Fidelity wins: the top directory's write bits are
//! cleared (no entry can be added or removed there by the backup user), everything below keeps
//! the live root's modes, and root is stopped by nothing (use btrfs or lvm for hard read-only
//! snapshots). `remove` gives directories their owner bits back before deleting. `mount`
//! returns the path; nothing is mounted.

use super::fs_usage::root_and_snapdir_rows;
use super::snapdir::{SnapDir, rename_noreplace};
use super::tools::Tools;
use super::{SnapshotBackend, SnapshotError, SnapshotName, UsageRow};
use crate::config::Config;
use anyhow::Context;
use std::fs::{self, FileTimes};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `dir` backend.
#[derive(Debug)]
pub struct DirBackend {
    root: PathBuf,
    snapdir: SnapDir,
    tools: Tools,
}

impl DirBackend {
    /// Opens the backend for `config`.
    pub fn new(config: &Config) -> anyhow::Result<DirBackend> {
        Ok(DirBackend::with_tools(
            config.root(),
            &config.settings.snapshot_dir(),
            Tools::from_env(),
        ))
    }

    /// Opens the backend for `root`, keeping snapshots in `snapdir`.
    pub fn with_tools(root: &Path, snapdir: &Path, tools: Tools) -> DirBackend {
        DirBackend {
            root: root.to_owned(),
            snapdir: SnapDir {
                path: snapdir.to_owned(),
            },
            tools,
        }
    }

    /// `cp -a --preserve=xattr --reflink=auto --sparse=auto -T ROOT TARGET`.
    fn copy_command(&self, target: &Path) -> Command {
        let mut cmd = crate::util::process::command(
            &self.tools.cp,
            [
                "-a",
                "--preserve=xattr",
                "--reflink=auto",
                "--sparse=auto",
                "-T",
                "--",
            ],
        );
        cmd.arg(&self.root).arg(target);
        cmd
    }

    /// Copies ROOT into `temp`, makes its top directory read-only and the copy durable.
    fn build(&self, temp: &Path) -> anyhow::Result<()> {
        self.tools
            .run(&mut self.copy_command(temp))
            .with_context(|| format!("copying {} to {}", self.root.display(), temp.display()))?;
        drop_lock_dir(temp)?;
        let meta =
            fs::symlink_metadata(temp).with_context(|| format!("stat {}", temp.display()))?;
        strip_write_bits(temp, &meta)
            .with_context(|| format!("making {} read-only", temp.display()))?;
        self.snapdir.sync_filesystem(temp)
    }

    fn require(&self, name: &SnapshotName) -> Result<PathBuf, SnapshotError> {
        match self.snapdir.metadata(name)? {
            Some(meta) if meta.is_dir() => Ok(self.snapdir.entry(name)),
            _ => Err(SnapshotError::NotFound(*name)),
        }
    }
}

/// Removes the copy of `ROOT/.lock` from `copy`, keeping the copy's own timestamps.
fn drop_lock_dir(copy: &Path) -> anyhow::Result<()> {
    let lock = copy.join(".lock");
    if fs::symlink_metadata(&lock).is_err() {
        return Ok(());
    }
    let meta = fs::metadata(copy).with_context(|| format!("stat {}", copy.display()))?;
    remove_tree(&lock)?;
    let times = FileTimes::new()
        .set_accessed(meta.accessed()?)
        .set_modified(meta.modified()?);
    fs::File::open(copy)
        .and_then(|dir| dir.set_times(times))
        .with_context(|| format!("restoring the timestamps of {}", copy.display()))
}

/// Calls `visit` on `top` and everything below it, each directory before its entries, without
/// following symlinks.
fn walk(
    top: &Path,
    visit: &mut dyn FnMut(&Path, &fs::Metadata) -> io::Result<()>,
) -> anyhow::Result<()> {
    let mut stack = vec![top.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        visit(&path, &meta)
            .with_context(|| format!("changing permissions of {}", path.display()))?;
        if meta.is_dir() {
            for entry in
                fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))?
            {
                stack.push(
                    entry
                        .with_context(|| format!("listing {}", path.display()))?
                        .path(),
                );
            }
        }
    }
    Ok(())
}

/// Clears the write bits of anything but a symlink (whose mode Linux ignores).
fn strip_write_bits(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let mode = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() || mode & 0o222 == 0 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o222))
}

/// Gives directories their owner bits back so that their entries can be listed and removed.
fn make_dir_writable(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() || mode & 0o700 == 0o700 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700))
}

/// Deletes a (possibly read-only) snapshot tree or leftover.
fn remove_tree(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
        Ok(meta) if !meta.is_dir() => {
            return fs::remove_file(path).with_context(|| format!("removing {}", path.display()));
        }
        Ok(_) => {}
    }
    walk(path, &mut make_dir_writable)?;
    fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

impl SnapshotBackend for DirBackend {
    fn list(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
        Ok(self.snapdir.list(|m| m.is_dir(), "a directory")?)
    }

    fn next_name(&self, date: jiff::civil::Date) -> Result<SnapshotName, SnapshotError> {
        Ok(self.snapdir.next_name(date)?)
    }

    fn create(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        if !self.root.is_dir() {
            return Err(
                anyhow::anyhow!("backup root {} is not a directory", self.root.display()).into(),
            );
        }
        self.snapdir.ensure()?;
        if self.snapdir.metadata(name)?.is_some() {
            return Err(SnapshotError::AlreadyExists(*name));
        }
        for leftover in self.snapdir.leftovers()? {
            tracing::info!("removing leftover {}", leftover.display());
            remove_tree(&leftover)?;
        }
        let temp = self.snapdir.temp_entry(name);
        let result = self
            .build(&temp)
            .map_err(SnapshotError::from)
            .and_then(|()| self.snapdir.publish(&temp, name));
        if result.is_err()
            && let Err(err) = remove_tree(&temp)
        {
            tracing::warn!("{err:#}; the next snapshot will retry");
        }
        result
    }

    fn remove(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        let path = self.require(name)?;
        // Rename first, so an interrupted removal never leaves a partial snapshot listed.
        let doomed = self.snapdir.removal_entry(name);
        remove_tree(&doomed)?;
        rename_noreplace(&path, &doomed)
            .with_context(|| format!("renaming {} to {}", path.display(), doomed.display()))?;
        crate::util::atomic_file::sync_dir(&self.snapdir.path)
            .with_context(|| format!("syncing {}", self.snapdir.path.display()))?;
        Ok(remove_tree(&doomed)?)
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
        Ok(root_and_snapdir_rows(&self.root, &self.snapdir.path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn name(s: &str) -> SnapshotName {
        s.parse().unwrap()
    }

    fn setup() -> (tempfile::TempDir, DirBackend) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/file"), "data").unwrap();
        fs::create_dir_all(root.join(".lock")).unwrap();
        fs::write(root.join(".lock/backup"), "").unwrap();
        let backend = DirBackend::with_tools(&root, &dir.path().join("snaps"), Tools::default());
        (dir, backend)
    }

    #[test]
    fn the_copy_argv_keeps_xattrs_strictly_and_reflinks_when_possible() {
        let backend =
            DirBackend::with_tools(Path::new("/b/root"), Path::new("/b/s"), Tools::default());
        let cmd = backend.copy_command(Path::new("/b/s/.tmp-20240101-1"));
        assert_eq!(
            crate::util::process::display(&cmd),
            "cp -a --preserve=xattr --reflink=auto --sparse=auto -T -- /b/root /b/s/.tmp-20240101-1"
        );
    }

    #[test]
    fn create_leaves_out_the_lock_keeps_the_root_mtime_and_clears_write_bits() {
        let (dir, backend) = setup();
        let root = dir.path().join("root");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::open(&root)
            .unwrap()
            .set_times(FileTimes::new().set_modified(old))
            .unwrap();
        backend.create(&name("20240101-1")).unwrap();
        let snap = dir.path().join("snaps/20240101-1");
        assert!(!snap.join(".lock").exists());
        assert_eq!(fs::metadata(&snap).unwrap().modified().unwrap(), old);
        assert_eq!(fs::read(snap.join("sub/file")).unwrap(), b"data");
        assert_eq!(
            fs::metadata(&snap).unwrap().mode() & 0o222,
            0,
            "top directory writable"
        );
        for p in ["sub", "sub/file"] {
            assert_eq!(
                fs::metadata(snap.join(p)).unwrap().mode(),
                fs::metadata(root.join(p)).unwrap().mode(),
                "{p}: mode changed by the snapshot"
            );
        }
        assert_eq!(backend.list().unwrap(), [name("20240101-1")]);
        backend.remove(&name("20240101-1")).unwrap();
        assert!(backend.list().unwrap().is_empty());
        assert!(
            fs::read_dir(dir.path().join("snaps"))
                .unwrap()
                .next()
                .is_none(),
            "nothing left"
        );
    }

    #[test]
    fn leftovers_of_an_interrupted_create_are_removed_by_the_next() {
        let (dir, backend) = setup();
        let leftover = dir.path().join("snaps/.tmp-20231231-4/deep");
        fs::create_dir_all(&leftover).unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(
            leftover.parent().unwrap(),
            fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        backend.create(&name("20240101-1")).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path().join("snaps"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["20240101-1"]);
    }

    #[test]
    fn a_missing_root_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let backend = DirBackend::with_tools(
            &dir.path().join("nope"),
            &dir.path().join("snaps"),
            Tools::default(),
        );
        let err = format!("{:#}", backend.create(&name("20240101-1")).unwrap_err());
        assert!(err.contains("is not a directory"), "{err}");
        assert!(backend.list().unwrap().is_empty());
    }
}
