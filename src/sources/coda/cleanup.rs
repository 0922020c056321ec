//! After a dump has been applied: the garbage collection of a full dump, and the directory
//! mtimes, which come last (BUG-C11) because removing or renaming a directory's entries changes
//! its mtime.
//!
//! The GC ([`crate::util::gc`]) walks with `lstat` semantics, so a stale symlink to a directory
//! is removed like any other stale name (BUG-C4), and compares paths relative to the volume's
//! directory (BUG-C5). It must only run after a *complete* full dump (the strict reader and the
//! pipeline status have both said so): anything the dump did not contain is deleted.

use super::paths::Tree;
use super::tar_apply::progress;
use crate::util::{file_time, gc};
use anyhow::Context;
use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

/// Removes every path under the volume's directory that the full dump did not contain
/// (temporary files left by a crash included), printing `- <path>` for each; returns how many
/// were removed.
pub fn collect_garbage(tree: &Tree, valid: &HashSet<PathBuf>) -> anyhow::Result<u64> {
    let mut removed = 0;
    gc::collect(tree.root(), valid, &mut |rel, _is_dir| {
        progress('-', &tree.abs(rel));
        removed += 1;
    })
    .with_context(|| {
        format!(
            "removing what the full dump no longer contains from {}",
            tree.root().display()
        )
    })?;
    Ok(removed)
}

/// Sets each directory's atime and mtime to the dump's, where they differ; a path that is no
/// longer a directory reached through real directories is skipped.
pub fn restore_dir_mtimes(tree: &mut Tree, dirs: &[(PathBuf, i64)]) -> anyhow::Result<()> {
    for (rel, mtime) in dirs {
        if !tree.parents_are_real(rel) {
            continue;
        }
        let abs = tree.abs(rel);
        match fs::symlink_metadata(&abs) {
            Ok(meta) if meta.is_dir() => {
                file_time::ensure_mtime(&abs, *mtime)
                    .with_context(|| format!("setting the mtime of {}", abs.display()))?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn stale_names_go_and_directory_mtimes_are_set_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = Tree::open(&dir.path().join("vol")).unwrap();
        let root = tree.root().to_path_buf();
        fs::create_dir_all(root.join("d/old")).unwrap();
        fs::create_dir_all(root.join("keep")).unwrap();
        fs::write(root.join("d/a"), b"a").unwrap();
        fs::write(root.join("d/old/x"), b"x").unwrap();
        fs::write(root.join(".backup-tmp1-2"), b"t").unwrap();
        std::os::unix::fs::symlink("keep", root.join("stale-dir-link")).unwrap();
        let valid: HashSet<PathBuf> = ["d", "d/a", "keep"].iter().map(PathBuf::from).collect();
        assert_eq!(collect_garbage(&tree, &valid).unwrap(), 4);
        assert!(root.join("d/a").exists() && root.join("keep").is_dir());
        assert!(fs::symlink_metadata(root.join("stale-dir-link")).is_err());
        assert!(!root.join("d/old").exists());

        let dirs = vec![
            (PathBuf::from("d"), 1_000_000_000),
            (PathBuf::from("keep"), 1_100_000_000),
            (PathBuf::from("gone"), 5),
        ];
        restore_dir_mtimes(&mut tree, &dirs).unwrap();
        assert_eq!(file_time::mtime_secs(&root.join("d")), Some(1_000_000_000));
        assert_eq!(
            file_time::mtime_secs(&root.join("keep")),
            Some(1_100_000_000)
        );
        assert!(!Path::new(&root.join("gone")).exists());
    }

    #[test]
    fn a_directory_behind_a_symlink_is_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("b")).unwrap();
        file_time::set_mtime(&outside.join("b"), 77).unwrap();
        let mut tree = Tree::open(&dir.path().join("vol")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.root().join("a")).unwrap();
        restore_dir_mtimes(&mut tree, &[(PathBuf::from("a/b"), 12345)]).unwrap();
        assert_eq!(file_time::mtime_secs(&outside.join("b")), Some(77));
    }
}
