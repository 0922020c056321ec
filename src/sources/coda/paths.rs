//! Where a tar entry lands, without ever leaving the volume's directory (BUG-C6).
//!
//! Entry names come from the Coda server and are untrusted. [`entry_path`] turns a name into a
//! relative path: a leading `./`, `.` components and repeated slashes are dropped (as the
//! original's `pathlib` did), and absolute names, `..` components and NUL bytes are refused.
//! Names are bytes: a non-UTF-8 name is kept exactly (BUG-C3).
//!
//! [`Tree`] then walks to the entry's parent one component at a time with `lstat`, creating
//! missing directories and refusing to pass through anything that is not a real directory: an
//! existing symlink in the backup (left by an earlier dump, or made earlier in this stream) is
//! never followed. Only this process writes into the volume's directory (it holds the unit's
//! lock), so a component checked once stays a directory until this process removes it; removals
//! go through [`Tree::forget`], which drops the cached checks below the removed path.

use anyhow::{Context, bail};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

/// Why an entry name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tar entry {name:?} {reason}; the dump is refused so nothing is written outside the volume's directory"
)]
pub struct UnsafeEntry {
    /// The name as received (lossily decoded).
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The relative path of the entry named `name`; the empty path is the volume root (`.`).
///
/// Errors: the name is empty or absolute, or has a `..` component or a NUL byte.
pub fn entry_path(name: &[u8]) -> Result<PathBuf, UnsafeEntry> {
    let refuse = |reason| UnsafeEntry {
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("has an empty name"));
    }
    if name.starts_with(b"/") {
        return Err(refuse("is an absolute path"));
    }
    if name.contains(&0) {
        return Err(refuse("contains a NUL byte"));
    }
    let mut path = PathBuf::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(refuse("has a `..` component")),
            part => path.push(OsStr::from_bytes(part)),
        }
    }
    debug_assert!(path.components().all(|c| matches!(c, Component::Normal(_))));
    Ok(path)
}

/// The volume's directory, and the directories below it known to be real (see the module doc).
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    dirs: HashSet<PathBuf>,
}

impl Tree {
    /// The tree rooted at `root`, which is created if missing and must be a real directory.
    ///
    /// Errors: `root` is a symlink or not a directory, or cannot be created.
    pub fn open(root: &Path) -> anyhow::Result<Tree> {
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let meta = fs::symlink_metadata(root).with_context(|| format!("{}", root.display()))?;
        if !meta.is_dir() {
            bail!(
                "{} is not a directory (a symlink or a file); move it away so the volume can be \
                 backed up there",
                root.display()
            );
        }
        Ok(Tree {
            root: root.to_path_buf(),
            dirs: HashSet::new(),
        })
    }

    /// The volume's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `rel`.
    pub fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// Makes sure every ancestor of `rel` below the root is a real directory, creating missing
    /// ones (mode 0755; their own entry sets the metadata), and returns `rel`'s absolute path.
    ///
    /// Errors: an ancestor is a symlink or another non-directory (an inconsistent or crafted
    /// dump); creating one fails.
    pub fn prepare_parent(&mut self, rel: &Path) -> anyhow::Result<PathBuf> {
        self.walk_parents(rel, true)?;
        Ok(self.abs(rel))
    }

    /// Like [`Tree::prepare_parent`], without creating anything: `Ok(None)` when an ancestor is
    /// missing.
    pub fn existing_parent(&mut self, rel: &Path) -> anyhow::Result<Option<PathBuf>> {
        Ok(self.walk_parents(rel, false)?.then(|| self.abs(rel)))
    }

    /// Whether every ancestor of `rel` is (now) a real directory, without creating any and
    /// without failing on a symlink: for checks after the stream, where anything else is skipped.
    pub fn parents_are_real(&mut self, rel: &Path) -> bool {
        matches!(self.walk_parents(rel, false), Ok(true))
    }

    /// Records that `rel` is a real directory (just created or checked).
    pub fn know_dir(&mut self, rel: &Path) {
        self.dirs.insert(rel.to_path_buf());
    }

    /// Forgets what is known about `rel` and everything below it (it is being removed).
    pub fn forget(&mut self, rel: &Path) {
        self.dirs.retain(|d| !d.starts_with(rel));
    }

    fn walk_parents(&mut self, rel: &Path, create: bool) -> anyhow::Result<bool> {
        let Some(parent) = rel.parent() else {
            return Ok(true);
        };
        let mut prefix = PathBuf::new();
        for part in parent.components() {
            prefix.push(part);
            if self.dirs.contains(&prefix) {
                continue;
            }
            let abs = self.abs(&prefix);
            match fs::symlink_metadata(&abs) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    let what = if meta.file_type().is_symlink() {
                        "a symlink"
                    } else {
                        "not a directory"
                    };
                    bail!(
                        "tar entry {} lies beneath {}, which is {what} in the backup; refusing \
                         to follow it (the dump is inconsistent or crafted)",
                        rel.display(),
                        abs.display()
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&abs)
                        .with_context(|| format!("creating {}", abs.display()))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e).with_context(|| format!("{}", abs.display())),
            }
            self.dirs.insert(prefix.clone());
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_normalised_like_pathlib() {
        let ok = |name: &[u8]| entry_path(name).unwrap();
        assert_eq!(ok(b"."), PathBuf::new());
        assert_eq!(ok(b"./"), PathBuf::new());
        assert_eq!(ok(b"./a/b"), Path::new("a/b"));
        assert_eq!(ok(b"a//./b/"), Path::new("a/b"));
        assert_eq!(ok(b"..CodaACLs.yaml"), Path::new("..CodaACLs.yaml"));
        assert_eq!(ok(b"./a..b/...").as_os_str().as_bytes(), b"a..b/...");
        assert_eq!(ok(b"./caf\xe9").as_os_str().as_bytes(), b"caf\xe9");
    }

    #[test]
    fn escaping_names_are_refused() {
        for (name, reason) in [
            (&b""[..], "has an empty name"),
            (b"/etc/passwd", "is an absolute path"),
            (b"//x", "is an absolute path"),
            (b"..", "has a `..` component"),
            (b"./../x", "has a `..` component"),
            (b"a/../../x", "has a `..` component"),
            (b"a/b/..", "has a `..` component"),
            (b"a\0b", "contains a NUL byte"),
        ] {
            assert_eq!(entry_path(name).unwrap_err().reason, reason, "{name:?}");
        }
    }

    #[test]
    fn parents_are_created_but_symlinks_and_files_are_never_passed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let mut tree = Tree::open(&dir.path().join("vol")).unwrap();
        let abs = tree.prepare_parent(Path::new("a/b/c")).unwrap();
        assert_eq!(abs, dir.path().join("vol/a/b/c"));
        assert!(dir.path().join("vol/a/b").is_dir());
        std::os::unix::fs::symlink(&outside, dir.path().join("vol/link")).unwrap();
        let err = tree.prepare_parent(Path::new("link/x")).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        fs::write(dir.path().join("vol/file"), b"").unwrap();
        let err = tree.prepare_parent(Path::new("file/x")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(tree.existing_parent(Path::new("none/x")).unwrap(), None);
        assert!(!tree.parents_are_real(Path::new("link/x")));

        // A directory replaced by a symlink is not trusted from the cache once forgotten.
        fs::remove_dir_all(dir.path().join("vol/a")).unwrap();
        tree.forget(Path::new("a"));
        std::os::unix::fs::symlink(&outside, dir.path().join("vol/a")).unwrap();
        assert!(tree.prepare_parent(Path::new("a/b/c")).is_err());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_symlinked_volume_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("vol")).unwrap();
        assert!(Tree::open(&dir.path().join("vol")).is_err());
    }

    proptest! {
        /// Whatever the name, an accepted path is relative, made of normal components only, and
        /// so stays below the root when joined.
        #[test]
        fn no_accepted_name_escapes(name in proptest::collection::vec(
            prop_oneof![Just(b'/'), Just(b'.'), Just(b'a'), Just(0xffu8), Just(0u8)], 0..24)) {
            if let Ok(rel) = entry_path(&name) {
                prop_assert!(rel.is_relative());
                prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
                let root = Path::new("/backup/coda/s/v");
                prop_assert!(root.join(&rel).starts_with(root));
                prop_assert!(!rel.as_os_str().as_bytes().contains(&0));
            } else {
                let bad = name.is_empty() || name[0] == b'/' || name.contains(&0)
                    || name.split(|&b| b == b'/').any(|p| p == b"..");
                prop_assert!(bad, "{:?} refused", name);
            }
        }
    }
}
