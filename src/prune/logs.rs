//! Log pruning (core-rsync-coda.md §6.2): in every directory under `ROOT/Logs` (including
//! `Logs/Archive/...`), keep the files of the newest `gc-log-distinct-days` distinct days and
//! delete the rest. A file's "day" is its name without the last extension, so `20240101.out`
//! and `20240101.err` are one day. Directories are never removed. A missing `ROOT/Logs` (no run
//! yet) is not an error (BUG-17 fixed).
//!
//! [`select_removals`] is the pure per-directory rule; [`prune_logs`] walks the tree, applies it
//! and reports what it deleted and what it could not, going on past errors.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What [`prune_logs`] did.
#[derive(Debug, Default)]
pub struct LogPruneReport {
    /// Files deleted, in the order they were deleted.
    pub removed: Vec<PathBuf>,
    /// Directories that could not be read and files that could not be deleted, each with the
    /// path in its message. The walk goes on past them.
    pub errors: Vec<anyhow::Error>,
}

/// The "day" of a log file name: the name without its last extension, as Python's
/// `os.path.splitext` has it (leading dots do not start an extension: `.out` has none).
pub fn day_of(name: &OsStr) -> &OsStr {
    let bytes = name.as_bytes();
    match bytes.iter().rposition(|&b| b == b'.') {
        Some(dot) if bytes[..dot].iter().any(|&b| b != b'.') => OsStr::from_bytes(&bytes[..dot]),
        _ => name,
    }
}

/// Of the file names in one directory, the ones to delete: going through the names in
/// descending (byte) order, a file is kept when its day is one of the first `distinct_days`
/// distinct days met. The result is in descending order.
pub fn select_removals(names: &[OsString], distinct_days: u32) -> Vec<OsString> {
    let mut sorted: Vec<&OsString> = names.iter().collect();
    sorted.sort_by(|a, b| b.cmp(a));
    let limit = usize::try_from(distinct_days).unwrap_or(usize::MAX);
    let mut days: HashSet<&OsStr> = HashSet::new();
    let mut remove = Vec::new();
    for name in sorted {
        let day = day_of(name);
        if days.contains(day) {
            continue;
        }
        if days.len() < limit {
            days.insert(day);
        } else {
            remove.push(name.clone());
        }
    }
    remove
}

/// Prunes every directory under `logs_dir` (normally `ROOT/Logs`), keeping `distinct_days`
/// days of files in each. Symbolic links are never followed: a link to a directory is left
/// alone, any other link is treated as a file (deleting it deletes the link only).
///
/// A missing `logs_dir` gives an empty report. Errors reading a directory or deleting a file
/// are collected in the report and the walk goes on.
pub fn prune_logs(logs_dir: &Path, distinct_days: u32) -> LogPruneReport {
    let mut report = LogPruneReport::default();
    match fs::metadata(logs_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return report,
        Err(e) => {
            report
                .errors
                .push(anyhow::Error::new(e).context(format!("reading {}", logs_dir.display())));
            return report;
        }
        Ok(meta) if !meta.is_dir() => {
            report.errors.push(anyhow::anyhow!(
                "{} is not a directory; move it away so that deltaic can keep its logs there",
                logs_dir.display()
            ));
            return report;
        }
        Ok(_) => {}
    }
    let mut pending = vec![logs_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let (files, subdirs) = match list_dir(&dir) {
            Ok(listing) => listing,
            Err(e) => {
                report.errors.push(
                    anyhow::Error::new(e)
                        .context(format!("reading log directory {}", dir.display())),
                );
                continue;
            }
        };
        for name in select_removals(&files, distinct_days) {
            let path = dir.join(&name);
            match fs::remove_file(&path) {
                Ok(()) => report.removed.push(path),
                Err(e) => report.errors.push(
                    anyhow::Error::new(e).context(format!("deleting old log {}", path.display())),
                ),
            }
        }
        // Depth-first in name order, so the report reads like a sorted listing.
        pending.extend(subdirs.into_iter().rev().map(|name| dir.join(name)));
    }
    report
}

/// The file names and the subdirectory names (sorted) of `dir`, without following links.
fn list_dir(dir: &Path) -> io::Result<(Vec<OsString>, Vec<OsString>)> {
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            subdirs.push(entry.file_name());
        } else if kind.is_symlink() && fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            // os.walk lists it as a directory and does not descend into it: leave it alone.
        } else {
            files.push(entry.file_name());
        }
    }
    subdirs.sort();
    Ok((files, subdirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn day_is_the_name_without_its_last_extension() {
        for (name, day) in [
            ("20240101.out", "20240101"),
            ("20240101.err", "20240101"),
            ("20240101", "20240101"),
            ("a.b.c", "a.b"),
            (".out", ".out"),
            ("..out", "..out"),
            (".a.b", ".a"),
            ("x.", "x"),
        ] {
            assert_eq!(day_of(OsStr::new(name)), OsStr::new(day), "{name}");
        }
    }

    #[test]
    fn keeps_the_newest_distinct_days() {
        let files = names(&[
            "20240101.out",
            "20240101.err",
            "20240103.err",
            "20240102.out",
            "20240103.out",
            "20240102.err",
            "20231231.out",
        ]);
        assert_eq!(
            select_removals(&files, 2),
            names(&["20240101.out", "20240101.err", "20231231.out"])
        );
        assert_eq!(select_removals(&files, 3), names(&["20231231.out"]));
        assert!(select_removals(&files, 60).is_empty());
        assert!(select_removals(&[], 2).is_empty());
    }

    #[test]
    fn a_day_already_kept_stays_kept_even_when_met_later() {
        // Descending: 20240102.out (day 20240102), 20240102-extra.log (day 20240102-extra),
        // 20240102 (day 20240102 again, not adjacent to its first file), 20240101.out.
        let files = names(&[
            "20240102.out",
            "20240102",
            "20240102-extra.log",
            "20240101.out",
        ]);
        assert_eq!(select_removals(&files, 2), names(&["20240101.out"]));
    }

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"log\n").unwrap();
    }

    #[test]
    fn prunes_every_directory_of_a_tree_and_reports_what_it_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("Logs");
        for unit in [
            "rsync/octopus",
            "coda/server/vol",
            "Archive/s3/rsync/octopus",
        ] {
            for day in ["20240101", "20240102", "20240103"] {
                touch(&logs.join(unit).join(format!("{day}.out")));
                touch(&logs.join(unit).join(format!("{day}.err")));
            }
        }
        touch(&logs.join("stray.txt")); // the top directory is pruned too, on its own
        touch(&logs.join("old.txt"));
        touch(&logs.join("a.txt"));
        fs::create_dir_all(logs.join("rsync/empty")).unwrap();
        std::os::unix::fs::symlink(logs.join("rsync"), logs.join("rsync/octopus/0-link-to-dir"))
            .unwrap();

        let report = prune_logs(&logs, 2);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let mut removed: Vec<String> = report
            .removed
            .iter()
            .map(|p| p.strip_prefix(&logs).unwrap().display().to_string())
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                "Archive/s3/rsync/octopus/20240101.err",
                "Archive/s3/rsync/octopus/20240101.out",
                "a.txt",
                "coda/server/vol/20240101.err",
                "coda/server/vol/20240101.out",
                "rsync/octopus/20240101.err",
                "rsync/octopus/20240101.out",
            ]
        );
        for p in &report.removed {
            assert!(!p.exists(), "{} still there", p.display());
        }
        assert!(logs.join("rsync/octopus/20240103.err").exists());
        assert!(logs.join("rsync/octopus/20240102.out").exists());
        assert!(logs.join("stray.txt").exists());
        assert!(
            logs.join("rsync/empty").is_dir(),
            "directories are never removed"
        );
        assert!(logs.join("rsync/octopus/0-link-to-dir").is_symlink());

        // A second run finds nothing more to do.
        let again = prune_logs(&logs, 2);
        assert!(again.removed.is_empty() && again.errors.is_empty());
    }

    #[test]
    fn bug_17_a_missing_logs_directory_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let report = prune_logs(&tmp.path().join("Logs"), 2);
        assert!(report.removed.is_empty() && report.errors.is_empty());
    }

    #[test]
    fn a_file_in_place_of_the_logs_directory_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("Logs");
        fs::write(&logs, b"").unwrap();
        let report = prune_logs(&logs, 2);
        assert_eq!(report.errors.len(), 1);
        assert!(
            format!("{:#}", report.errors[0]).contains("is not a directory"),
            "{:#}",
            report.errors[0]
        );
    }
}
