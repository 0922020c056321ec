//! The tar-to-directory update (core-rsync-coda.md §10.4): applies one dump, entry by entry, to
//! the volume's directory, changing only what differs, so an unchanged file keeps its inode and
//! costs nothing in the next snapshot.
//!
//! Per entry: the name is made safe ([`paths`]); an existing path of another type is removed;
//! then a directory is created if missing, a file is rewritten through [`UpdateFile`] only if
//! its content differs (temp + fsync + rename for a replaced file; new files and directories
//! are flushed once for the whole dump by the caller's `syncfs`), a symlink is re-created only if its target
//! differs (an empty target, an unresolved link in this replica, is skipped), and a hard link is
//! re-made only if it points elsewhere. Files and directories get `user.rsync.%stat` (mode, uid,
//! gid, for `rsync --fake-super` on restore); files and symlinks get their mtime, without
//! following the symlink (BUG-C2). Directory mtimes are returned, to be applied last
//! ([`super::cleanup`], BUG-C11). Progress lines `d|f|s|l <absolute path>` go to stdout, the
//! path as raw bytes (BUG-C3).
//!
//! A file that the stream leaves hard-linked to a name the stream did not link it to shares its
//! inode with a stale partner; it gets an inode of its own after the stream (BUG-C12).
//!
//! Errors: [`ApplyError::Damaged`] for the stream itself (the attempt is retried), anything
//! else (an unsafe name, an unexpected entry type, a missing hard-link target, a local I/O
//! error) is [`ApplyError::Fatal`].

use super::paths::{self, Tree};
use super::tar_stream::{self, Damaged};
use crate::util::file_time;
use crate::util::update_file::{Flush, UpdateFile};
use anyhow::{Context, anyhow, bail};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The xattr holding mode and owner in rsync's `--fake-super` format (a compatibility contract).
pub const STAT_XATTR: &str = "user.rsync.%stat";

/// How applying a dump failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The stream is truncated or garbled: retry the dump.
    #[error(transparent)]
    Damaged(#[from] Damaged),
    /// Anything else: the backup fails without retrying.
    #[error(transparent)]
    Fatal(#[from] anyhow::Error),
}

/// What applying a whole dump found.
#[derive(Debug, Default)]
pub struct Applied {
    /// Every path the dump named, relative to the volume's directory (the root excluded).
    pub valid: HashSet<PathBuf>,
    /// Directories and their mtimes, to be set last.
    pub dir_mtimes: Vec<(PathBuf, i64)>,
    /// Files (re)written.
    pub files_written: u64,
    /// Bytes of the files (re)written.
    pub bytes_written: u64,
    /// Entries in the stream.
    pub entries: u64,
}

/// Progress lines on stdout: `<tag> <absolute path>`.
pub fn progress(tag: char, path: &Path) {
    let mut line = Vec::with_capacity(path.as_os_str().len() + 3);
    line.push(tag as u8);
    line.push(b' ');
    line.extend_from_slice(path.as_os_str().as_bytes());
    line.push(b'\n');
    let _ = io::stdout().lock().write_all(&line);
}

/// The kinds of entries codadump2tar writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    HardLink,
    Symlink,
}

impl Kind {
    /// From the raw typeflag byte (the `tar` crate maps NUL to regular; the original refused
    /// it, and codadump2tar never writes it).
    fn from_typeflag(flag: u8) -> Option<Kind> {
        match flag {
            b'5' => Some(Kind::Dir),
            b'0' => Some(Kind::File),
            b'1' => Some(Kind::HardLink),
            b'2' => Some(Kind::Symlink),
            _ => None,
        }
    }

    /// What it is on disk: a hard link is a regular file.
    fn on_disk(self) -> Existing {
        match self {
            Kind::Dir => Existing::Dir,
            Kind::File | Kind::HardLink => Existing::File,
            Kind::Symlink => Existing::Symlink,
        }
    }
}

/// What a path is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Dir,
    File,
    Symlink,
    Other,
}

fn existing_kind(meta: &fs::Metadata) -> Existing {
    let t = meta.file_type();
    if t.is_dir() {
        Existing::Dir
    } else if t.is_file() {
        Existing::File
    } else if t.is_symlink() {
        Existing::Symlink
    } else {
        Existing::Other
    }
}

/// A readable name for a typeflag.
fn describe_typeflag(flag: u8) -> String {
    let what = match flag {
        0 => "old-style regular file (NUL)",
        b'3' => "character device",
        b'4' => "block device",
        b'6' => "FIFO",
        b'7' => "contiguous file",
        b'x' | b'g' => "pax extended header",
        b'L' | b'K' => "GNU long name",
        b'S' => "GNU sparse file",
        _ => "unknown type",
    };
    format!("{what} (typeflag {:?})", flag as char)
}

/// Applies the tar stream `reader` to `tree` (see the module doc).
pub fn apply(reader: impl Read, tree: &mut Tree) -> Result<Applied, ApplyError> {
    let mut state = State {
        tree,
        applied: Applied::default(),
        shared_unchanged: Vec::new(),
        links_to: HashMap::new(),
    };
    tar_stream::for_each_entry(reader, |entry| state.entry(entry))?;
    state.separate_stale_links()?;
    Ok(state.applied)
}

struct State<'t> {
    tree: &'t mut Tree,
    applied: Applied,
    /// Unchanged files that had other names (nlink > 1) when the stream reached them.
    shared_unchanged: Vec<(PathBuf, u64, u64)>,
    /// Hard-link records: target → names linked to it.
    links_to: HashMap<PathBuf, Vec<PathBuf>>,
}

impl State<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar_stream::Entry<'_, R>) -> Result<(), ApplyError> {
        self.applied.entries += 1;
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let header = entry.header();
        let flag = header.as_bytes()[156];
        let Some(kind) = Kind::from_typeflag(flag) else {
            return Err(anyhow!(
                "tar entry {name:?} is a {}, which a Coda dump never contains; the dump is \
                 refused (check coda-codadump2tar-path)",
                describe_typeflag(flag)
            )
            .into());
        };
        let field = |what: &str, value: io::Result<u64>| {
            value.map_err(|e| Damaged(format!("the {what} of tar entry {name:?}: {e}")))
        };
        let mode = field("mode", header.mode().map(u64::from))? as u32 & 0o7777;
        let uid = field("uid", header.uid())?;
        let gid = field("gid", header.gid())?;
        let mtime = field("mtime", header.mtime())? as i64;
        let link_name = header.link_name_bytes().map(|l| l.into_owned());

        let rel = paths::entry_path(&raw_name).map_err(anyhow::Error::from)?;
        if rel.as_os_str().is_empty() && kind != Kind::Dir {
            return Err(anyhow!(
                "tar entry {name:?} names the volume root but is not a directory; the dump is \
                 refused"
            )
            .into());
        }
        let abs = self.tree.prepare_parent(&rel)?;
        let existing = self.remove_if_other_type(&rel, &abs, kind)?;
        match kind {
            Kind::Dir => {
                if existing.is_none() {
                    progress('d', &abs);
                    fs::DirBuilder::new()
                        .create(&abs)
                        .with_context(|| format!("creating {}", abs.display()))?;
                }
                self.tree.know_dir(&rel);
                set_stat(&abs, 0o040000 | mode, uid, gid)?;
                self.applied.dir_mtimes.push((rel.clone(), mtime));
            }
            Kind::File => {
                let linked = existing
                    .as_ref()
                    .filter(|m| m.nlink() > 1)
                    .map(|m| (m.dev(), m.ino()));
                // A replaced file is flushed before the rename (its old content is never
                // lost); new files and all renames are flushed by one syncfs before the dump
                // counts as done, and a crash before that makes the next dump a full one,
                // which compares every file (see `super::backup`).
                let mut update = UpdateFile::new(&abs).flush(Flush::Replacements);
                let written = tar_stream::read_data(entry, &name, |piece| {
                    update
                        .write_all(piece)
                        .with_context(|| format!("writing {}", abs.display()))
                        .map_err(ApplyError::Fatal)
                })?;
                let modified = update
                    .commit()
                    .with_context(|| format!("replacing {}", abs.display()))?;
                if modified {
                    progress('f', &abs);
                    self.applied.files_written += 1;
                    self.applied.bytes_written += written;
                } else if let Some((dev, ino)) = linked {
                    self.shared_unchanged.push((rel.clone(), dev, ino));
                }
                set_stat(&abs, 0o100000 | mode, uid, gid)?;
                file_time::ensure_mtime(&abs, mtime)
                    .with_context(|| format!("setting the mtime of {}", abs.display()))?;
            }
            Kind::Symlink => {
                let target = link_name.unwrap_or_default();
                if !target.is_empty() {
                    let target = OsStr::from_bytes(&target);
                    let current = existing.as_ref().and_then(|_| fs::read_link(&abs).ok());
                    if current.as_deref().map(Path::as_os_str) != Some(target) {
                        progress('s', &abs);
                        if existing.is_some() {
                            remove_file(&abs)?;
                        }
                        std::os::unix::fs::symlink(target, &abs)
                            .with_context(|| format!("creating the symlink {}", abs.display()))?;
                    }
                    file_time::ensure_mtime(&abs, mtime)
                        .with_context(|| format!("setting the mtime of {}", abs.display()))?;
                }
            }
            Kind::HardLink => {
                let link_name = link_name.unwrap_or_default();
                self.hard_link(&rel, &abs, &name, &link_name, existing.as_ref())?;
            }
        }
        if !rel.as_os_str().is_empty() {
            self.applied.valid.insert(rel);
        }
        Ok(())
    }

    /// Removes what is at `abs` if it is not of `kind`'s type (a whole tree for a directory);
    /// returns the metadata of what stays.
    fn remove_if_other_type(
        &mut self,
        rel: &Path,
        abs: &Path,
        kind: Kind,
    ) -> anyhow::Result<Option<fs::Metadata>> {
        let meta = match fs::symlink_metadata(abs) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{}", abs.display())),
        };
        let existing = existing_kind(&meta);
        if existing == kind.on_disk() {
            return Ok(Some(meta));
        }
        if existing == Existing::Dir {
            if rel.as_os_str().is_empty() {
                bail!("refusing to remove the volume root {}", abs.display());
            }
            self.tree.forget(rel);
            fs::remove_dir_all(abs).with_context(|| format!("removing {}", abs.display()))?;
        } else {
            remove_file(abs)?;
        }
        Ok(None)
    }

    /// A hard-link record: `rel` must be the same inode as the file named `link_name`.
    fn hard_link(
        &mut self,
        rel: &Path,
        abs: &Path,
        name: &str,
        link_name: &[u8],
        existing: Option<&fs::Metadata>,
    ) -> Result<(), ApplyError> {
        let target_rel = paths::entry_path(link_name).map_err(anyhow::Error::from)?;
        let missing = || {
            anyhow!(
                "hard link {name:?} points to {:?}, which the backup does not have as a regular \
                 file; the dump is inconsistent (a later full dump may fix it)",
                String::from_utf8_lossy(link_name)
            )
        };
        let Some(target) = self.tree.existing_parent(&target_rel)? else {
            return Err(missing().into());
        };
        let target_meta = match fs::symlink_metadata(&target) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Err(missing().into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing().into()),
            Err(e) => return Err(anyhow!(e).context(format!("{}", target.display())).into()),
        };
        let same =
            existing.is_some_and(|m| (m.dev(), m.ino()) == (target_meta.dev(), target_meta.ino()));
        if !same {
            progress('l', abs);
            if existing.is_some() {
                remove_file(abs)?;
            }
            fs::hard_link(&target, abs)
                .with_context(|| format!("linking {} to {}", abs.display(), target.display()))?;
        }
        self.links_to
            .entry(target_rel)
            .or_default()
            .push(rel.to_path_buf());
        Ok(())
    }

    /// BUG-C12: an unchanged file whose inode has more names than the stream gave it (its own
    /// plus its hard-link records) shares the inode with a stale name. It gets a copy of its
    /// own, with its metadata, and its hard-link records are pointed at the copy.
    fn separate_stale_links(&mut self) -> anyhow::Result<()> {
        for (rel, dev, ino) in std::mem::take(&mut self.shared_unchanged) {
            let abs = self.tree.abs(&rel);
            if !self.tree.parents_are_real(&rel) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&abs) else {
                continue;
            };
            let links = self.links_to.get(&rel).map_or(&[][..], Vec::as_slice);
            let expected = 1 + links.len() as u64;
            if (meta.dev(), meta.ino()) != (dev, ino) || !meta.is_file() || meta.nlink() <= expected
            {
                continue;
            }
            let stat = xattr::get(&abs, STAT_XATTR)
                .with_context(|| format!("reading {STAT_XATTR} of {}", abs.display()))?;
            copy_to_own_inode(&abs)
                .with_context(|| format!("giving {} an inode of its own", abs.display()))?;
            if let Some(stat) = stat {
                xattr::set(&abs, STAT_XATTR, &stat)
                    .with_context(|| format!("setting {STAT_XATTR} on {}", abs.display()))?;
            }
            file_time::set_mtime(&abs, meta.mtime())?;
            progress('f', &abs);
            for link in links {
                if !self.tree.parents_are_real(link) {
                    continue;
                }
                let link_abs = self.tree.abs(link);
                progress('l', &link_abs);
                remove_file(&link_abs)?;
                fs::hard_link(&abs, &link_abs).with_context(|| {
                    format!("linking {} to {}", link_abs.display(), abs.display())
                })?;
            }
        }
        Ok(())
    }
}

/// Replaces `abs` with a copy of itself (temp + fsync + rename, mode 0644): a new inode with
/// the same content, leaving the old inode to its other names.
fn copy_to_own_inode(abs: &Path) -> io::Result<()> {
    let temp = crate::util::atomic_file::temp_path(abs);
    let result = (|| {
        let mut from = fs::File::open(abs)?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        io::copy(&mut from, &mut to)?;
        to.set_permissions(fs::Permissions::from_mode(0o644))?;
        to.sync_all()?;
        fs::rename(&temp, abs)?;
        crate::util::atomic_file::sync_dir(abs.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Unlinks a non-directory.
fn remove_file(abs: &Path) -> anyhow::Result<()> {
    fs::remove_file(abs).with_context(|| format!("removing {}", abs.display()))
}

/// Sets `user.rsync.%stat` to `"<mode in octal> 0,0 <uid>:<gid>"` unless it already is that.
fn set_stat(abs: &Path, mode: u32, uid: u64, gid: u64) -> anyhow::Result<()> {
    let value = format!("{mode:o} 0,0 {uid}:{gid}");
    let current = xattr::get(abs, STAT_XATTR).with_context(|| {
        format!(
            "reading {STAT_XATTR} of {} (does the filesystem support user xattrs?)",
            abs.display()
        )
    })?;
    if current.as_deref() != Some(value.as_bytes()) {
        xattr::set(abs, STAT_XATTR, value.as_bytes()).with_context(|| {
            format!(
                "setting {STAT_XATTR} on {}; the backup filesystem must support user xattrs",
                abs.display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One raw ustar entry (names are written as given, `..` and absolute ones included).
    fn entry(out: &mut Vec<u8>, flag: u8, name: &[u8], link: &[u8], mtime: u64, data: &[u8]) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        let mut num = |range: std::ops::Range<usize>, value: u64| {
            let width = range.len() - 1;
            h[range.start..range.start + width]
                .copy_from_slice(format!("{value:0width$o}").as_bytes());
        };
        num(100..108, 0o644);
        num(108..116, 7);
        num(116..124, 0);
        num(124..136, data.len() as u64);
        num(136..148, mtime);
        h[156] = flag;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn finish(mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn types_change_empty_symlinks_keep_the_old_one_and_dangling_links_get_their_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::open(&dir.path().join("vol")).unwrap();
        let root = tree.root().to_path_buf();
        fs::create_dir_all(root.join("was-dir/inner")).unwrap();
        fs::write(root.join("was-file"), b"x").unwrap();
        std::os::unix::fs::symlink("old-target", root.join("kept")).unwrap();
        let mut s = Vec::new();
        entry(&mut s, b'5', b".", b"", 5, b"");
        entry(&mut s, b'0', b"./was-dir", b"", 6, b"now a file");
        entry(&mut s, b'5', b"./was-file", b"", 7, b"");
        entry(&mut s, b'2', b"./kept", b"", 8, b"");
        entry(&mut s, b'2', b"./dangling", b"missing", 9, b"");
        let applied = apply(&finish(s)[..], &mut tree).unwrap();
        assert_eq!(fs::read(root.join("was-dir")).unwrap(), b"now a file");
        assert!(root.join("was-file").is_dir());
        assert_eq!(
            fs::read_link(root.join("kept")).unwrap(),
            Path::new("old-target")
        );
        assert_eq!(file_time::mtime_secs(&root.join("dangling")), Some(9));
        assert_eq!(file_time::mtime_secs(&root.join("was-dir")), Some(6));
        let valid: HashSet<PathBuf> = ["was-dir", "was-file", "kept", "dangling"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(applied.valid, valid);
        assert_eq!(
            applied.dir_mtimes,
            [(PathBuf::new(), 5), (PathBuf::from("was-file"), 7)]
        );
    }

    #[test]
    fn a_root_entry_that_is_not_a_directory_and_a_missing_link_target_are_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::open(&dir.path().join("vol")).unwrap();
        let mut s = Vec::new();
        entry(&mut s, b'0', b"./", b"", 1, b"x");
        let err = apply(&finish(s)[..], &mut tree).unwrap_err();
        assert!(matches!(&err, ApplyError::Fatal(e) if e.to_string().contains("volume root")));
        let mut s = Vec::new();
        entry(&mut s, b'1', b"./l", b"./missing", 1, b"");
        let err = apply(&finish(s)[..], &mut tree).unwrap_err();
        assert!(matches!(&err, ApplyError::Fatal(e) if e.to_string().contains("./missing")));
    }

    #[test]
    fn bug_c12_an_unchanged_file_linked_to_a_stale_name_gets_its_own_inode() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::open(&dir.path().join("vol")).unwrap();
        let root = tree.root().to_path_buf();
        let mut s = Vec::new();
        entry(&mut s, b'0', b"./a", b"", 1, b"same");
        entry(&mut s, b'1', b"./b", b"./a", 1, b"");
        entry(&mut s, b'1', b"./stale", b"./a", 1, b"");
        apply(&finish(s)[..], &mut tree).unwrap();
        assert_eq!(fs::metadata(root.join("a")).unwrap().nlink(), 3);
        // `stale` is no longer a link of `a` at the source (it is not in this dump at all).
        let mut s = Vec::new();
        entry(&mut s, b'0', b"./a", b"", 1, b"same");
        entry(&mut s, b'1', b"./b", b"./a", 1, b"");
        apply(&finish(s)[..], &mut tree).unwrap();
        let ino = |n: &str| fs::metadata(root.join(n)).unwrap().ino();
        assert_eq!(ino("a"), ino("b"));
        assert_ne!(ino("a"), ino("stale"));
        assert_eq!(fs::metadata(root.join("a")).unwrap().nlink(), 2);
        assert_eq!(fs::read(root.join("a")).unwrap(), b"same");
        assert_eq!(
            xattr::get(root.join("a"), STAT_XATTR).unwrap().as_deref(),
            Some(&b"100644 0,0 7:0"[..])
        );
        assert_eq!(file_time::mtime_secs(&root.join("a")), Some(1));
    }

    /// One generated entry: type, name, and a symlink or hard-link target.
    fn arb_entry() -> impl Strategy<Value = (u8, Vec<u8>, Vec<u8>)> {
        let component = prop_oneof![
            Just(b"a".to_vec()),
            Just(b"b".to_vec()),
            Just(b"..".to_vec()),
            Just(b".".to_vec()),
            Just(b"".to_vec()),
            Just(b"out".to_vec()),
        ];
        let name = proptest::collection::vec(component, 1..4).prop_map(|parts| parts.join(&b'/'));
        let target = prop_oneof![
            Just(b"../../outside".to_vec()),
            Just(b"/".to_vec()),
            Just(b"a".to_vec()),
            Just(b"./a/b".to_vec()),
            Just(b"".to_vec()),
        ];
        let abs = prop_oneof![Just(false), Just(true)];
        (
            prop_oneof![Just(b'0'), Just(b'1'), Just(b'2'), Just(b'5')],
            name,
            target,
            abs,
        )
            .prop_map(|(flag, name, target, abs)| {
                let name = if abs {
                    [b"/".as_slice(), &name].concat()
                } else {
                    name
                };
                (flag, name, target)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Whatever the stream (absolute names, `..`, symlinks to outside followed by entries
        /// beneath them, type changes), nothing appears outside the volume's directory.
        #[test]
        fn no_entry_escapes_the_volume(entries in proptest::collection::vec(arb_entry(), 1..12)) {
            let dir = tempfile::tempdir().unwrap();
            let outside = dir.path().join("outside");
            fs::create_dir(&outside).unwrap();
            // A symlink to the outside already in the backup.
            let mut tree = Tree::open(&dir.path().join("r/vol")).unwrap();
            std::os::unix::fs::symlink(&outside, tree.root().join("out")).unwrap();
            let mut s = Vec::new();
            for (flag, name, target) in &entries {
                let data: &[u8] = if *flag == b'0' { b"data" } else { b"" };
                entry(&mut s, *flag, name, target, 1, data);
            }
            let _ = apply(&finish(s)[..], &mut tree);
            prop_assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
            let beside: Vec<_> = fs::read_dir(dir.path().join("r")).unwrap()
                .map(|e| e.unwrap().file_name()).collect();
            prop_assert_eq!(beside, vec![std::ffi::OsString::from("vol")]);
            prop_assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        }
    }
}
