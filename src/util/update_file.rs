//! "Write only if different" (core-rsync-coda.md §8.4): new content is streamed and compared
//! with the existing file block by block; identical content leaves the file untouched (same
//! inode, same mtime, no copy-on-write in the snapshot volume), different content replaces it
//! atomically through [`atomic_file`]'s temp + fsync + rename + fsync(dir).
//!
//! [`UpdateFile::flush`] lets a writer of several files of one directory sync that directory
//! once, and a bulk writer that flushes the whole filesystem once at the end skip the per-file
//! directory fsync and the fsync of files it creates ([`Flush`]).
//!
//! The replacement is a new inode with mode 0644: hard links break and xattrs are dropped, so
//! callers re-apply their xattrs after a modifying commit. Dropping an [`UpdateFile`] without
//! [`UpdateFile::commit`] aborts: the temporary file is removed and the target is left alone
//! (the original's `__del__` committed, §8.4 item 6).

use super::atomic_file;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Comparison block size (the original's 256 KiB).
const BLOCK: usize = 256 * 1024;

/// How much a committed update is flushed to disk before it counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The new file and its directory (the default): the rename survives a crash.
    FileAndDir,
    /// The new file, not its directory: for callers that replace several files of one
    /// directory and then call [`atomic_file::sync_dir`] once. Until then a crash may undo the
    /// rename (never tear the file).
    File,
    /// The new file before the rename when it replaces an existing file, nothing when it
    /// creates one, and never the directory: old content is never lost to a crash, but a file
    /// created (or a rename done) just before a crash may be missing, empty or short. For bulk
    /// writers that flush the whole filesystem (`syncfs`) before recording their work as done,
    /// and that detect an interrupted run and then compare every file with its source (the
    /// coda source's marker).
    Replacements,
}

/// A streaming "write only if different" update of one file. Write the new content through
/// [`Write`], then [`commit`](UpdateFile::commit).
pub struct UpdateFile {
    path: PathBuf,
    /// The old file, read in step with the new data while everything so far was identical.
    old: Option<File>,
    /// Bytes known identical at the start of both.
    common: u64,
    /// The temporary file, once the content is known to differ.
    temp: Option<(PathBuf, File)>,
    /// Scratch buffer for comparisons.
    scratch: Vec<u8>,
    /// An earlier write failed: the update can only be aborted.
    failed: bool,
    /// What commit flushes.
    flush: Flush,
    /// Whether a file existed when the update started.
    replacing: bool,
}

impl UpdateFile {
    /// Starts an update of `path`. An old file that cannot be opened counts as absent.
    pub fn new(path: &Path) -> UpdateFile {
        let old = open_noatime(path)
            .ok()
            .filter(|f| f.metadata().map(|m| m.is_file()).unwrap_or(false));
        UpdateFile {
            path: path.to_path_buf(),
            replacing: old.is_some(),
            old,
            common: 0,
            temp: None,
            scratch: Vec::new(),
            failed: false,
            flush: Flush::FileAndDir,
        }
    }

    /// Sets what [`UpdateFile::commit`] flushes (default [`Flush::FileAndDir`]).
    pub fn flush(mut self, flush: Flush) -> UpdateFile {
        self.flush = flush;
        self
    }

    /// The file being updated.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the temporary file and copies the common prefix of the old file into it.
    fn diverge(&mut self) -> io::Result<&mut File> {
        if self.temp.is_none() {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(dir)?;
            let temp = atomic_file::temp_path(&self.path);
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&temp)?;
            // Recorded at once, so that any later error removes the temp file (Drop).
            self.temp = Some((temp, file));
            self.old = None;
            if self.common > 0 {
                let mut old = open_noatime(&self.path)?;
                let out = &mut self.temp.as_mut().expect("just stored").1;
                let copied = io::copy(&mut (&mut old).take(self.common), out)?;
                if copied != self.common {
                    return Err(io::Error::other(format!(
                        "{} shrank while being updated",
                        self.path.display()
                    )));
                }
            }
        }
        Ok(&mut self.temp.as_mut().expect("just created").1)
    }

    /// Finishes the update. Returns whether the file was (re)written: `false` means the content
    /// was identical and nothing was touched.
    pub fn commit(mut self) -> io::Result<bool> {
        self.check()?;
        if self.temp.is_none() {
            if let Some(old) = self.old.as_mut() {
                let mut byte = [0u8; 1];
                if read_full(old, &mut byte)? == 0 {
                    return Ok(false);
                }
                // The old file is longer: the new content is a truncation.
            }
            self.diverge()?;
        }
        let (temp, file) = self.temp.as_ref().expect("diverged");
        if self.flush != Flush::Replacements || self.replacing {
            file.sync_all()?;
        }
        // mode() at creation is subject to the umask; the contract is 0644.
        file.set_permissions(Permissions::from_mode(0o644))?;
        fs::rename(temp, &self.path)?;
        self.temp = None;
        if self.flush == Flush::FileAndDir {
            atomic_file::sync_dir(self.path.parent().unwrap_or(Path::new(".")))?;
        }
        Ok(true)
    }
}

impl Write for UpdateFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let result = self.write_inner(buf);
        self.failed = result.is_err();
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UpdateFile {
    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(format!(
                "update of {} already failed",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn write_inner(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.temp.is_none()
            && let Some(old) = self.old.as_mut()
        {
            let n = buf.len().min(BLOCK);
            self.scratch.resize(n, 0);
            let got = read_full(old, &mut self.scratch[..n])?;
            if got == n && self.scratch[..n] == buf[..n] {
                self.common += n as u64;
                return Ok(n);
            }
        }
        self.diverge()?.write_all(buf)?;
        Ok(buf.len())
    }
}

impl Drop for UpdateFile {
    /// Aborts an uncommitted update: the temporary file goes, the target stays as it was.
    fn drop(&mut self) {
        if let Some((temp, _)) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Opens `path` for reading without updating its access time where allowed (the owner, or
/// root): comparing a file must not turn into a metadata write, which would cost copy-on-write
/// space in the snapshot volume for every unchanged file. Falls back to a plain open.
fn open_noatime(path: &Path) -> io::Result<File> {
    let noatime = rustix::fs::OFlags::NOATIME.bits() as i32;
    OpenOptions::new()
        .read(true)
        .custom_flags(noatime)
        .open(path)
        .or_else(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                File::open(path)
            } else {
                Err(e)
            }
        })
}

/// Reads until `buf` is full or end of file; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Replaces `path` with `data` unless it already holds exactly that; returns whether it wrote.
/// Parent directories are created as needed.
pub fn update_file(path: &Path, data: &[u8]) -> io::Result<bool> {
    let mut update = UpdateFile::new(path);
    update.write_all(data)?;
    update.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn data() -> Vec<u8> {
        (0..(2 * 1024 * 1024 + 30))
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn new_file_then_identical_content_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file");
        assert!(update_file(&path, &data()).unwrap());
        let before = fs::metadata(&path).unwrap();
        assert_eq!(before.mode() & 0o777, 0o644);
        assert!(!update_file(&path, &data()).unwrap());
        let after = fs::metadata(&path).unwrap();
        assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));
        assert_eq!(entries(&dir.path().join("a/b")), 1);
    }

    #[test]
    fn changes_at_any_offset_extensions_and_truncations_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let base = data();
        for offset in [0usize, 1000, 512 * 1024, 520 * 1024, 1024 * 1024] {
            update_file(&path, &base).unwrap();
            let mut changed = base.clone();
            changed[offset] ^= 0xff;
            assert!(update_file(&path, &changed).unwrap(), "offset {offset}");
            assert_eq!(fs::read(&path).unwrap(), changed, "offset {offset}");
        }
        let mut longer = base.clone();
        longer.extend_from_slice(b"more");
        assert!(update_file(&path, &longer).unwrap());
        assert_eq!(fs::read(&path).unwrap(), longer);
        assert!(update_file(&path, &base[..300_000]).unwrap());
        assert_eq!(fs::read(&path).unwrap(), &base[..300_000]);
        assert!(update_file(&path, b"").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert!(!update_file(&path, b"").unwrap());
        assert!(update_file(&path, b"x").unwrap());
        assert_eq!(entries(dir.path()), 1);
    }

    #[test]
    fn streaming_in_odd_pieces_compares_correctly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let base = data();
        update_file(&path, &base).unwrap();
        let ino = fs::metadata(&path).unwrap().ino();
        let mut update = UpdateFile::new(&path);
        for piece in base.chunks(384 * 1024) {
            update.write_all(piece).unwrap();
        }
        assert!(!update.commit().unwrap());
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);

        let mut changed = base.clone();
        changed[2 * 1024 * 1024 + 5] = changed[2 * 1024 * 1024 + 5].wrapping_add(1);
        let mut update = UpdateFile::new(&path);
        for piece in changed.chunks(384 * 1024 + 7) {
            update.write_all(piece).unwrap();
        }
        assert!(update.commit().unwrap());
        assert_eq!(fs::read(&path).unwrap(), changed);
    }

    #[test]
    fn every_flush_level_replaces_and_compares_alike() {
        let dir = tempfile::tempdir().unwrap();
        for (i, flush) in [Flush::FileAndDir, Flush::File, Flush::Replacements]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("f{i}"));
            let write = |data: &[u8]| {
                let mut update = UpdateFile::new(&path).flush(flush);
                update.write_all(data).unwrap();
                update.commit().unwrap()
            };
            assert!(write(b"one"), "{flush:?}");
            assert!(!write(b"one"), "{flush:?}");
            assert!(write(b"two"), "{flush:?}");
            assert_eq!(fs::read(&path).unwrap(), b"two");
            assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        }
        assert_eq!(entries(dir.path()), 3, "no temporary file left");
    }

    #[test]
    fn an_aborted_update_keeps_the_old_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        update_file(&path, b"old content").unwrap();
        let mut update = UpdateFile::new(&path);
        update.write_all(b"new content that differs").unwrap();
        drop(update);
        assert_eq!(fs::read(&path).unwrap(), b"old content");
        assert_eq!(entries(dir.path()), 1);

        // Aborting a brand-new file leaves nothing at all.
        let fresh = dir.path().join("fresh");
        let mut update = UpdateFile::new(&fresh);
        update.write_all(b"partial").unwrap();
        drop(update);
        assert!(!fresh.exists());
        assert_eq!(entries(dir.path()), 1);
    }
}
