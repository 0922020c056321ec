//! Garbage collection of a bucket directory against a complete listing (github-rgw-rbd.md
//! §2.5 step 5, with BUG-6 and BUG-7 fixed): walking bottom-up, every file that is not a key
//! file of a listed key is removed (temporary files, strays, the original's `_t` files,
//! `A`/`C` files below the top), then every directory left empty. Directories without `_d`
//! no longer crash the walk: nothing in them decodes, so they are emptied and removed. The walk
//! is [`crate::util::gc::collect_where`]'s; this module decides what stays.

use super::paths::{self, BUCKET_ACL, BUCKET_CORS};
use crate::util::gc::{self, Verdict};
use std::collections::HashSet;
use std::io;
use std::path::Path;

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Files removed.
    pub files: u64,
    /// Files removed that were written during this run (their key vanished meanwhile).
    pub fresh: u64,
}

/// Removes from `dir` every file not belonging to a key in `valid`, reporting each removal
/// (relative path) through `report`. `started` (epoch seconds) tells fresh files apart. A
/// top-level directory named `skip` is left alone (the versions tree has its own rules).
pub fn collect(
    dir: &Path,
    valid: &HashSet<Vec<u8>>,
    started: i64,
    skip: Option<&str>,
    report: &mut dyn FnMut(&Path),
) -> io::Result<Collected> {
    let keep = |rel: &Path| -> bool {
        let top = rel.components().count() == 1;
        (top && (rel == Path::new(BUCKET_ACL) || rel == Path::new(BUCKET_CORS)))
            || paths::decode(rel).is_some_and(|(key, _)| valid.contains(&key))
    };
    let verdict = |rel: &Path, is_dir: bool| match skip {
        Some(skip) if is_dir && rel == Path::new(skip) => Verdict::KeepTree,
        _ => file_verdict(&keep, rel, is_dir),
    };
    collect_where(dir, &verdict, started, report)
}

/// Removes from `dir` every file for which `keep(relative path)` is false, then the
/// directories left empty; reports like [`collect`].
pub fn collect_with(
    dir: &Path,
    keep: &dyn Fn(&Path) -> bool,
    started: i64,
    report: &mut dyn FnMut(&Path),
) -> io::Result<Collected> {
    collect_where(
        dir,
        &|rel, is_dir| file_verdict(keep, rel, is_dir),
        started,
        report,
    )
}

/// Files as `keep` says; every directory removed once empty.
fn file_verdict(keep: &dyn Fn(&Path) -> bool, rel: &Path, is_dir: bool) -> Verdict {
    match is_dir || !keep(rel) {
        true => Verdict::Remove,
        false => Verdict::Keep,
    }
}

/// [`util::gc::collect_where`](crate::util::gc::collect_where), counting the files removed.
fn collect_where(
    dir: &Path,
    verdict: &dyn Fn(&Path, bool) -> Verdict,
    started: i64,
    report: &mut dyn FnMut(&Path),
) -> io::Result<Collected> {
    let mut collected = Collected::default();
    gc::collect_where(dir, verdict, &mut |removed| {
        if let Some(mtime) = removed.mtime {
            collected.files += 1;
            collected.fresh += u64::from(mtime >= started);
            report(removed.path);
        }
    })?;
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    #[test]
    fn only_listed_keys_and_top_level_bucket_files_survive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let files = [
            "bucket_A",
            "bucket_C",
            "a_k",
            "a_m",
            "a_a",
            "gone_k",
            "old_t",
            ".backup-tmp12-0badf00d",
            "x_d/bucket_A",
            "x_d/y_k",
            "x_d/z_k",
            "nodsuffix/q_k",
            "empty_d/gone_d/w_k",
            "keep_V/anything",
        ];
        for f in files {
            let p = dir.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"x").unwrap();
        }
        let valid: HashSet<Vec<u8>> = [b"a".to_vec(), b"x/y".to_vec()].into_iter().collect();
        let mut removed = Vec::new();
        let got = collect(dir, &valid, i64::MAX, Some("keep_V"), &mut |p: &Path| {
            removed.push(p.to_path_buf())
        })
        .unwrap();
        removed.sort();
        let expect: Vec<PathBuf> = [
            ".backup-tmp12-0badf00d",
            "empty_d/gone_d/w_k",
            "gone_k",
            "nodsuffix/q_k",
            "old_t",
            "x_d/bucket_A",
            "x_d/z_k",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(removed, expect);
        assert_eq!(got, Collected { files: 7, fresh: 0 });
        for kept in [
            "bucket_A",
            "bucket_C",
            "a_k",
            "a_m",
            "a_a",
            "x_d/y_k",
            "keep_V/anything",
        ] {
            assert!(dir.join(kept).exists(), "{kept}");
        }
        assert!(!dir.join("empty_d").exists() && !dir.join("nodsuffix").exists());
        // A file removed with an mtime from this run counts as fresh.
        fs::write(dir.join("new_k"), b"x").unwrap();
        let got = collect(dir, &valid, 0, Some("keep_V"), &mut |_| {}).unwrap();
        assert_eq!(got, Collected { files: 1, fresh: 1 });
    }
}
