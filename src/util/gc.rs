//! Garbage collection of a directory tree against the set of paths still valid
//! (core-rsync-coda.md §8.7): walking bottom-up, every file (or symlink, BUG-C4) not in the set is
//! unlinked and every directory not in it is removed if empty. Paths are compared relative to the
//! root (BUG-C5). Callers must only collect after a complete listing of what should exist.

use super::atomic_file::TEMP_PREFIX;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Removes from the tree under `root` every entry whose path relative to `root` is not in
/// `valid`; directories only when empty. `report(relative path, is_dir)` is called for every
/// removal. A missing `root` is an empty tree. Errors while listing or unlinking abort the walk.
pub fn collect(
    root: &Path,
    valid: &HashSet<PathBuf>,
    report: &mut dyn FnMut(&Path, bool),
) -> io::Result<()> {
    let verdict = |rel: &Path, _is_dir: bool| match valid.contains(rel) {
        true => Verdict::Keep,
        false => Verdict::Remove,
    };
    collect_where(root, &verdict, &mut |removed| {
        report(removed.path, removed.mtime.is_none())
    })
}

/// What [`collect_where`] does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Kept (a directory is still walked).
    Keep,
    /// Removed (a directory after its walk, and only if that left it empty).
    Remove,
    /// A directory kept with everything in it, not walked.
    KeepTree,
}

/// One entry [`collect_where`] removed.
#[derive(Debug)]
pub struct Removed<'a> {
    /// Its path relative to the root.
    pub path: &'a Path,
    /// A file's mtime (epoch seconds) before its removal; `None` for a directory.
    pub mtime: Option<i64>,
}

/// [`collect`] with `verdict(relative path, is_dir)` deciding each entry.
pub fn collect_where(
    root: &Path,
    verdict: &dyn Fn(&Path, bool) -> Verdict,
    report: &mut dyn FnMut(Removed<'_>),
) -> io::Result<()> {
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return Ok(()),
        Ok(_) => {}
    }
    walk(root, Path::new(""), verdict, report)
}

fn walk(
    root: &Path,
    rel: &Path,
    verdict: &dyn Fn(&Path, bool) -> Verdict,
    report: &mut dyn FnMut(Removed<'_>),
) -> io::Result<()> {
    let dir = root.join(rel);
    let mut entries = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| with_path(e, &dir))? {
        let entry = entry.map_err(|e| with_path(e, &dir))?;
        entries.push((entry.file_name(), entry.file_type()?));
    }
    for (name, kind) in entries {
        let child = rel.join(&name);
        let path = root.join(&child);
        match (kind.is_dir(), verdict(&child, kind.is_dir())) {
            (_, Verdict::KeepTree) | (false, Verdict::Keep) => {}
            (true, keep) => {
                walk(root, &child, verdict, report)?;
                if keep == Verdict::Remove && fs::remove_dir(&path).is_ok() {
                    report(Removed {
                        path: &child,
                        mtime: None,
                    });
                }
            }
            (false, Verdict::Remove) => {
                let mtime = fs::symlink_metadata(&path).map(|m| m.mtime()).unwrap_or(0);
                fs::remove_file(&path).map_err(|e| with_path(e, &path))?;
                report(Removed {
                    path: &child,
                    mtime: Some(mtime),
                });
            }
        }
    }
    Ok(())
}

/// Removes the stray temporary files (`.backup-tmp*`) directly inside `dir` (not below it);
/// returns their names. A missing `dir` has none.
pub fn sweep_temp_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        other => other.map_err(|e| with_path(e, dir))?,
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
            && !entry.file_type()?.is_dir()
        {
            fs::remove_file(entry.path()).map_err(|e| with_path(e, &entry.path()))?;
            removed.push(PathBuf::from(entry.file_name()));
        }
    }
    Ok(removed)
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_invalid_files_and_empty_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("releases");
        for f in [
            "v1/info.json",
            "v1/assets/a.bin",
            "v2/info.json",
            "v2/assets/old.bin",
            ".backup-tmp1-x",
        ] {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"x").unwrap();
        }
        std::os::unix::fs::symlink("/", root.join("link")).unwrap();
        let valid: HashSet<PathBuf> = ["v1/info.json", "v1/assets/a.bin"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let mut removed = Vec::new();
        collect(&root, &valid, &mut |p, d| {
            removed.push((p.to_path_buf(), d))
        })
        .unwrap();
        removed.sort();
        let expect: Vec<(PathBuf, bool)> = vec![
            (".backup-tmp1-x".into(), false),
            ("link".into(), false),
            ("v2".into(), true),
            ("v2/assets".into(), true),
            ("v2/assets/old.bin".into(), false),
            ("v2/info.json".into(), false),
        ];
        assert_eq!(removed, expect);
        assert!(root.join("v1/assets/a.bin").exists());
        assert!(
            fs::symlink_metadata("/").is_ok(),
            "the symlink target is untouched"
        );
        // A missing root is fine.
        collect(&dir.path().join("none"), &valid, &mut |_, _| panic!()).unwrap();
    }

    #[test]
    fn sweep_removes_only_top_level_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".backup-tmp1-info.json"), b"x").unwrap();
        fs::write(dir.path().join("info.json"), b"x").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/.backup-tmp2"), b"x").unwrap();
        let removed = sweep_temp_files(dir.path()).unwrap();
        assert_eq!(removed, vec![PathBuf::from(".backup-tmp1-info.json")]);
        assert!(dir.path().join("info.json").exists());
        assert!(dir.path().join("sub/.backup-tmp2").exists());
    }
}
