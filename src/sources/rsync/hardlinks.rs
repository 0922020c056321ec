//! Hard links of the backup, made safe for `rsync --inplace`.
//!
//! `--inplace` lets rsync rewrite only the changed blocks of a file, so the unchanged blocks stay
//! shared with older snapshots (btrfs extents, LVM thin chunks, dir-backend reflinks). But rsync
//! writes *through* the destination inode: when two names of the backup share an inode (a hard
//! link, `-H`) and the host has since broken that link, updating one name changes the other too,
//! and rsync then "repairs" the other by writing its content back over the first. Both names end
//! up wrong. Attribute changes (mode, owner in `user.rsync.%stat`, ACLs, xattrs) go through the
//! shared inode the same way, with or without `--inplace`.
//!
//! The remedy is to give such a name its own inode before rsync touches it: [`give_own_inode`]
//! clones it with `FICLONE` (no data copied, the extents stay shared) or, where the filesystem
//! cannot clone (ext4), copies it, with its mode, times and xattrs, and renames the result over
//! the name. rsync's `-H` then links again whatever is still linked on the host (itemized `hf`).
//! Which names need it is the caller's decision (`inplace.rs`); [`Linked`] lists the candidates,
//! and [`clone_supported`] asks the filesystem once per run what it can do.

use crate::util::atomic_file;
use anyhow::Context;
use std::collections::HashMap;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// An inode: (device, inode number).
pub type InodeKey = (u64, u64);

/// The regular files of a destination with more than one link, grouped by inode.
#[derive(Debug, Default)]
pub struct Linked {
    by_path: HashMap<Rc<Path>, InodeKey>,
    groups: HashMap<InodeKey, Vec<Rc<Path>>>,
}

impl Linked {
    /// Walks `root` (lstat; symlinks are never followed). A missing `root` (first backup) has
    /// no links.
    pub fn scan(root: &Path) -> anyhow::Result<Linked> {
        let mut linked = Linked::default();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound && dir == root => {
                    return Ok(linked);
                }
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
                    if meta.nlink() > 1 {
                        let key = (meta.dev(), meta.ino());
                        let path: Rc<Path> = Rc::from(entry.path());
                        linked.by_path.insert(Rc::clone(&path), key);
                        linked.groups.entry(key).or_default().push(path);
                    }
                }
            }
        }
        Ok(linked)
    }

    /// Whether no file of the destination has a second link.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// How many names the walk found (all names of every multiply-linked inode).
    pub fn names(&self) -> usize {
        self.by_path.len()
    }

    /// The inode `path` shared with other names when the walk saw it, if it did.
    pub fn inode_of(&self, path: &Path) -> Option<InodeKey> {
        self.by_path.get(path).copied()
    }

    /// Every name the walk found for `key`.
    pub fn group(&self, key: InodeKey) -> &[Rc<Path>] {
        self.groups.get(&key).map_or(&[], Vec::as_slice)
    }

    /// Every name but one of each inode, sorted: once these have their own inodes, the one
    /// left is alone.
    pub fn all_but_one(&self) -> Vec<(PathBuf, InodeKey)> {
        let mut out: Vec<(PathBuf, InodeKey)> = self
            .groups
            .iter()
            .flat_map(|(key, names)| names.iter().skip(1).map(|n| (n.to_path_buf(), *key)))
            .collect();
        out.sort();
        out
    }
}

/// How a name gets its own inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `FICLONE`: the new inode shares the old one's extents (btrfs, XFS with reflink).
    Clone,
    /// A full copy of the data (filesystems that cannot clone, such as ext4).
    Copy,
}

impl Method {
    /// "cloned" or "copied", for messages.
    pub fn verb(self) -> &'static str {
        match self {
            Method::Clone => "cloned",
            Method::Copy => "copied",
        }
    }
}

/// Whether the filesystem of `dir` can clone files: one `FICLONE` between two scratch files
/// `<stem>.clone-probe-{1,2}` in `dir`, removed again (and first, should a crash have left
/// them). Asked once per run, in a directory outside the backed-up tree, so a refusal leaves no
/// trace there (no changed directory times). `stem` must be unique to the caller's lock.
pub fn clone_supported(dir: &Path, stem: &str) -> io::Result<bool> {
    let source_path = dir.join(format!("{stem}.clone-probe-1"));
    let target_path = dir.join(format!("{stem}.clone-probe-2"));
    let remove = || {
        for path in [&source_path, &target_path] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    };
    remove()?;
    let result = (|| {
        let mut source = new_private_file(&source_path)?;
        io::Write::write_all(&mut source, b"clone probe\n")?;
        let target = new_private_file(&target_path)?;
        match rustix::fs::ioctl_ficlone(&target, &source) {
            Ok(()) => Ok(true),
            Err(e) if cannot_clone(&e.into()) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    })();
    let removed = remove();
    let answer = result?;
    removed.map(|()| answer)
}

/// Gives `path` an inode of its own, by `method`, if it is still a regular file sharing inode
/// `key` with another name; returns how (`None`: nothing to do). A clone the filesystem refuses
/// is done as a copy. The new inode has the data, mode, times, xattrs (and, as root, owner) of
/// the old one and is fsynced before it is renamed over `path`; the other names keep the old
/// inode.
pub fn give_own_inode(path: &Path, key: InodeKey, method: Method) -> io::Result<Option<Method>> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() || (meta.dev(), meta.ino()) != key || meta.nlink() < 2 {
        return Ok(None);
    }
    match replace_with_own_inode(path, method) {
        Err(e) if method == Method::Clone && cannot_clone(&e) => {
            replace_with_own_inode(path, Method::Copy).map(|()| Some(Method::Copy))
        }
        other => other.map(|()| Some(method)),
    }
}

/// Creates `path` (mode 0600) for reading and writing, failing if it exists.
fn new_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Clones or copies `path` into a temporary file beside it and renames that over `path`.
fn replace_with_own_inode(path: &Path, method: Method) -> io::Result<()> {
    let mut source = File::open(path)?;
    let meta = source.metadata()?;
    let temp = atomic_file::temp_path(path);
    let result = (|| {
        let mut copy = new_private_file(&temp)?;
        match method {
            Method::Clone => rustix::fs::ioctl_ficlone(&copy, &source)?,
            Method::Copy => {
                let copied = io::copy(&mut source, &mut copy)?;
                if copied != meta.len() {
                    return Err(io::Error::other(format!(
                        "{} changed size while being copied",
                        path.display()
                    )));
                }
            }
        }
        copy_metadata(path, &temp, &copy, &meta)?;
        copy.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Gives `copy` (open at `copy_path`) the xattrs of `original` and the owner (as root), mode and
/// times of `meta`.
fn copy_metadata(
    original: &Path,
    copy_path: &Path,
    copy: &File,
    meta: &fs::Metadata,
) -> io::Result<()> {
    for name in xattr::list(original)? {
        if let Some(value) = xattr::get(original, &name)? {
            xattr::set(copy_path, &name, &value)?;
        }
    }
    if rustix::process::geteuid().is_root() {
        rustix::fs::fchown(
            copy,
            Some(rustix::fs::Uid::from_raw(meta.uid())),
            Some(rustix::fs::Gid::from_raw(meta.gid())),
        )?;
    }
    copy.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    copy.set_times(
        FileTimes::new()
            .set_accessed(meta.accessed()?)
            .set_modified(meta.modified()?),
    )
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

    /// The names of `dir`'s entries, sorted.
    fn names_in(dir: &Path) -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| PathBuf::from(e.unwrap().file_name()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_missing_destination_has_no_links() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Linked::scan(&dir.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn only_multiply_linked_regular_files_are_found_grouped_by_inode() {
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
        let linked = Linked::scan(d).unwrap();
        assert_eq!(linked.names(), 5);
        assert_eq!(linked.inode_of(&d.join("single")), None);
        assert_eq!(linked.inode_of(&d.join("link")), None);
        let key = linked.inode_of(&d.join("sub/c2")).unwrap();
        assert_eq!(linked.group(key).len(), 3);
        assert_eq!(
            linked.inode_of(&d.join("b")),
            linked.inode_of(&d.join("sub/a"))
        );
        // One name per inode is left out: 1 of {a, b} and 2 of {c, c2, c3}.
        assert_eq!(linked.all_but_one().len(), 3);
    }

    #[test]
    fn a_name_gets_its_own_inode_with_data_mode_times_and_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a"), "data").unwrap();
        fs::set_permissions(d.join("a"), fs::Permissions::from_mode(0o640)).unwrap();
        xattr::set(d.join("a"), "user.rsync.%stat", b"100640 0,0 12:34").unwrap();
        let past = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(d.join("a"))
            .unwrap()
            .set_modified(past)
            .unwrap();
        fs::hard_link(d.join("a"), d.join("b")).unwrap();
        let linked = Linked::scan(d).unwrap();
        let key = linked.inode_of(&d.join("b")).unwrap();
        let clones = clone_supported(d, "t").unwrap();
        for method in [Method::Copy, Method::Clone] {
            fs::remove_file(d.join("b")).ok();
            fs::hard_link(d.join("a"), d.join("b")).unwrap();
            let key = (key.0, fs::metadata(d.join("a")).unwrap().ino());
            let used = give_own_inode(&d.join("b"), key, method).unwrap();
            let expected = if method == Method::Clone && !clones {
                Method::Copy
            } else {
                method
            };
            assert_eq!(used, Some(expected));
            let (a, b) = (
                fs::metadata(d.join("a")).unwrap(),
                fs::metadata(d.join("b")).unwrap(),
            );
            assert_ne!(a.ino(), b.ino());
            assert_eq!((a.nlink(), b.nlink()), (1, 1));
            assert_eq!(fs::read(d.join("b")).unwrap(), b"data");
            assert_eq!(b.mode() & 0o7777, 0o640);
            assert_eq!(b.modified().unwrap(), past);
            assert_eq!(
                xattr::get(d.join("b"), "user.rsync.%stat")
                    .unwrap()
                    .as_deref(),
                Some(&b"100640 0,0 12:34"[..])
            );
            // Alone now: nothing more to do, whatever the caller believes.
            assert_eq!(
                give_own_inode(&d.join("b"), (b.dev(), b.ino()), method).unwrap(),
                None
            );
            assert_eq!(
                names_in(d),
                [PathBuf::from("a"), PathBuf::from("b")],
                "no temp left"
            );
        }
    }

    #[test]
    fn a_name_that_changed_since_the_walk_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a"), "data").unwrap();
        fs::hard_link(d.join("a"), d.join("b")).unwrap();
        let meta = fs::metadata(d.join("a")).unwrap();
        let other_inode = (meta.dev(), meta.ino() + 1_000_000);
        assert_eq!(
            give_own_inode(&d.join("b"), other_inode, Method::Copy).unwrap(),
            None
        );
        assert_eq!(fs::metadata(d.join("b")).unwrap().nlink(), 2);
    }

    #[test]
    fn the_clone_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("t.clone-probe-2"), "left by a crash").unwrap();
        let answer = clone_supported(dir.path(), "t").unwrap();
        // The tests' temp dir is usually ext4 or tmpfs (no clones); btrfs is covered in
        // tests/it/rsync.rs.
        eprintln!("clone support in the temp dir: {answer}");
        assert!(names_in(dir.path()).is_empty());
    }
}
