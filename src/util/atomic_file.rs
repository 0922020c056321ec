//! Crash-safe file replacement: write a temporary file beside the target, fsync it, rename it
//! over the target, fsync the directory. A crash at any point leaves either the old or the new
//! content, never a mix. Temporary names start with `.backup-tmp` (core-rsync-coda.md §8.3, §11).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Prefix of every temporary file (a compatibility contract: sources garbage-collect it).
pub const TEMP_PREFIX: &str = ".backup-tmp";

/// Atomically replaces `path` with `data` (mode 0644), creating parent directories as needed.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    let temp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// fsyncs a directory so that a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Longest file name most Linux filesystems accept (NAME_MAX).
const NAME_MAX: usize = 255;

/// A fresh temporary name beside `path`: `.backup-tmp<pid>-<nonce>`. It never embeds the file
/// name, so it fits wherever `path` fits (a 250-byte name would otherwise give ENAMETOOLONG).
pub fn temp_path(path: &Path) -> PathBuf {
    parent(path).join(short_temp_name())
}

/// Like [`temp_path`], with `-<file name>` appended when the result still fits NAME_MAX, for
/// callers that find their own leftovers by that suffix (git clones). A longer name gets the
/// short form.
pub fn labelled_temp_path(path: &Path) -> PathBuf {
    let short = short_temp_name();
    let name = path.file_name().map(|n| n.to_string_lossy());
    match name {
        Some(name) if short.len() + 1 + name.len() <= NAME_MAX => {
            parent(path).join(format!("{short}-{name}"))
        }
        _ => parent(path).join(short),
    }
}

/// `.backup-tmp<pid>-<random>`.
fn short_temp_name() -> String {
    let nonce: u32 = rand::random();
    format!("{TEMP_PREFIX}{}-{nonce:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn temporary_names_are_short_whatever_the_file_name() {
        let long = "x".repeat(250);
        let path = Path::new("/srv/backup").join(&long);
        let temp = temp_path(&path);
        assert_eq!(temp.parent(), Some(Path::new("/srv/backup")));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(TEMP_PREFIX), "{name}");
        assert!(!name.contains('x') && name.len() < 40, "{name}");
        assert_ne!(temp, temp_path(&path), "a fresh nonce each time");
        let labelled = labelled_temp_path(Path::new("/g/repo.git"));
        assert!(
            labelled.to_str().unwrap().ends_with("-repo.git"),
            "{labelled:?}"
        );
        let name = labelled_temp_path(&path);
        assert!(name.file_name().unwrap().len() <= NAME_MAX, "{name:?}");
    }

    #[test]
    fn a_file_with_a_name_of_250_bytes_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n".repeat(250));
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
