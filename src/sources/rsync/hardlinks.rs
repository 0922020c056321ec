//! Makes `rsync --inplace` safe next to `-H`.
//!
//! `--inplace` lets rsync rewrite only the changed blocks of a file, so the unchanged blocks stay
//! shared with older snapshots (btrfs extents, LVM thin chunks, dir-backend reflinks). But rsync
//! writes *through* the destination inode: when two names of the backup share an inode (a hard
//! link, `-H`) and the host has since broken that link, updating one name in place changes the
//! other too, and rsync then "repairs" the other by writing its content back over the first.
//! Both names end up wrong.
//!
//! [`unshare`] removes the hazard before rsync starts: every regular file of the destination with
//! more than one link gets its own inode, cloned with `FICLONE` (no data is copied, the extents
//! stay shared) together with its mode, times and xattrs, and renamed over the old name. rsync's
//! `-H` then links again whatever is still linked on the host (itemized `hf`), so hard links
//! survive exactly as the host has them.
//!
//! Where the filesystem cannot clone (ext4), nothing is changed and [`Unshared::CannotClone`]
//! tells the caller to run without `--inplace`, as the original did.

use crate::util::atomic_file;
use anyhow::Context;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What [`unshare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unshared {
    /// Every multiply-linked file now has its own inode (this many were split).
    Done(usize),
    /// Some file has several links and the filesystem cannot clone it: use no `--inplace`.
    CannotClone,
}

/// Gives every multiply-linked regular file under `dest` its own inode (see the module doc).
/// Symlinks are never followed. A missing `dest` (first backup) has nothing to do.
pub fn unshare(dest: &Path) -> anyhow::Result<Unshared> {
    let linked = multiply_linked_files(dest)?;
    let mut split = 0;
    for path in &linked {
        match clone_into_own_inode(path) {
            Ok(()) => split += 1,
            Err(e) if cannot_clone(&e) => {
                tracing::info!(
                    "{}: the filesystem cannot clone files ({e}); rsync runs without --inplace",
                    path.display()
                );
                return Ok(Unshared::CannotClone);
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("giving hard-linked {} its own inode", path.display())
                });
            }
        }
    }
    Ok(Unshared::Done(split))
}

/// Regular files under `root` with a link count above 1 (lstat; symlinks not followed), less
/// one name per inode: once the others have their own inodes, that one is alone.
fn multiply_linked_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut seen = std::collections::HashSet::new();
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir == root => return Ok(found),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let file_type = entry
                .file_type()
                .with_context(|| format!("stat {}", entry.path().display()))?;
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() {
                let meta = entry
                    .metadata()
                    .with_context(|| format!("stat {}", entry.path().display()))?;
                if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
                    found.push(entry.path());
                }
            }
        }
    }
    Ok(found)
}

/// Clones `path` into a temporary file beside it (data, mode, times, xattrs) and renames the
/// clone over `path`; the other names keep the old inode.
fn clone_into_own_inode(path: &Path) -> io::Result<()> {
    let source = File::open(path)?;
    let meta = source.metadata()?;
    let temp = atomic_file::temp_path(path);
    let result = (|| {
        let clone = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        rustix::fs::ioctl_ficlone(&clone, &source)?;
        for name in xattr::list(path)? {
            if let Some(value) = xattr::get(path, &name)? {
                xattr::set(&temp, &name, &value)?;
            }
        }
        if rustix::process::geteuid().is_root() {
            rustix::fs::fchown(
                &clone,
                Some(rustix::fs::Uid::from_raw(meta.uid())),
                Some(rustix::fs::Gid::from_raw(meta.gid())),
            )?;
        }
        clone.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        clone.set_times(
            FileTimes::new()
                .set_accessed(meta.accessed()?)
                .set_modified(meta.modified()?),
        )?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Whether `e` says the filesystem (or this pair of files) does not support cloning.
fn cannot_clone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if [
            rustix::io::Errno::OPNOTSUPP,
            rustix::io::Errno::XDEV,
            rustix::io::Errno::INVAL,
            rustix::io::Errno::NOTTY,
            rustix::io::Errno::NOSYS,
        ]
        .iter()
        .any(|errno| errno.raw_os_error() == code)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_destination_has_nothing_to_unshare() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            unshare(&dir.path().join("none")).unwrap(),
            Unshared::Done(0)
        );
    }

    #[test]
    fn only_multiply_linked_regular_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/a"), "a").unwrap();
        fs::hard_link(d.join("sub/a"), d.join("b")).unwrap();
        fs::write(d.join("single"), "s").unwrap();
        std::os::unix::fs::symlink("sub/a", d.join("link")).unwrap();
        fs::write(d.join("sub/c"), "c").unwrap();
        fs::hard_link(d.join("sub/c"), d.join("sub/c2")).unwrap();
        fs::hard_link(d.join("sub/c"), d.join("sub/c3")).unwrap();
        let found = multiply_linked_files(d).unwrap();
        // One name per inode is left out: 1 of {a, b} and 2 of {c, c2, c3}.
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(!found.contains(&d.join("single")) && !found.contains(&d.join("link")));
    }

    #[test]
    fn without_clone_support_nothing_changes() {
        // tmpfs and ext4 (where tests usually run) cannot clone; btrfs is covered in
        // tests/it/rsync.rs. Either way the two names must still hold the same data.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a"), "data").unwrap();
        fs::hard_link(d.join("a"), d.join("b")).unwrap();
        match unshare(d).unwrap() {
            Unshared::CannotClone => assert_eq!(fs::metadata(d.join("a")).unwrap().nlink(), 2),
            Unshared::Done(n) => {
                assert_eq!(n, 1);
                assert_eq!(fs::metadata(d.join("a")).unwrap().nlink(), 1);
            }
        }
        assert_eq!(fs::read(d.join("a")).unwrap(), b"data");
        assert_eq!(fs::read(d.join("b")).unwrap(), b"data");
    }
}
