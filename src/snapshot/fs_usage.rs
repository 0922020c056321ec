//! The filesystem rows of `deltaic df` (core-rsync-coda.md §5.8): free space and free inodes from
//! `statvfs`, with the divisions guarded (BUG-14: btrfs reports `f_files == 0`).

use super::UsageRow;
use anyhow::Context;
use std::path::Path;

/// The `statvfs` figures the rows are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FsFigures {
    /// Fragment size: the unit of the block counts.
    pub frsize: u64,
    /// Size of the filesystem, in fragments.
    pub blocks: u64,
    /// Fragments free for unprivileged users.
    pub bavail: u64,
    /// Inodes in all (0 when the filesystem has no fixed count).
    pub files: u64,
    /// Inodes free for unprivileged users.
    pub favail: u64,
}

impl FsFigures {
    /// Reads the figures of the filesystem holding `path`.
    pub fn of(path: &Path) -> anyhow::Result<FsFigures> {
        let st =
            rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
        Ok(FsFigures {
            frsize: st.f_frsize,
            blocks: st.f_blocks,
            bavail: st.f_bavail,
            files: st.f_files,
            favail: st.f_favail,
        })
    }

    /// The two rows: free space (bytes) and free inodes (a count).
    pub fn rows(&self, space_label: &str, inode_label: &str) -> [UsageRow; 2] {
        let inodes_known = self.files != 0;
        [
            UsageRow {
                label: space_label.to_string(),
                free: Some(self.frsize.saturating_mul(self.bavail)),
                bytes: true,
                free_percent: percent(self.bavail, self.blocks),
            },
            UsageRow {
                label: inode_label.to_string(),
                free: inodes_known.then_some(self.favail),
                bytes: false,
                free_percent: percent(self.favail, self.files),
            },
        ]
    }
}

/// `100 * part / total`, or `None` when `total` is 0 (BUG-14).
pub(super) fn percent(part: u64, total: u64) -> Option<f64> {
    (total != 0).then(|| 100.0 * part as f64 / total as f64)
}

/// `Free filesystem space` and `Free inodes` of the filesystem holding `path`.
pub(super) fn filesystem_rows(path: &Path) -> anyhow::Result<Vec<UsageRow>> {
    Ok(FsFigures::of(path)?
        .rows("Free filesystem space", "Free inodes")
        .to_vec())
}

/// The filesystem rows for `root`, plus `Free snapshot space`/`Free snapshot inodes` when the
/// snapshot directory `snapdir` lives on another filesystem (the `dir` backend may copy there).
pub(super) fn root_and_snapdir_rows(root: &Path, snapdir: &Path) -> anyhow::Result<Vec<UsageRow>> {
    let mut rows = filesystem_rows(root)?;
    if let (Ok(a), Ok(b)) = (rustix::fs::statvfs(root), rustix::fs::statvfs(snapdir))
        && a.f_fsid != b.f_fsid
    {
        rows.extend(FsFigures::of(snapdir)?.rows("Free snapshot space", "Free snapshot inodes"));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_original_formulas() {
        let fig = FsFigures {
            frsize: 4096,
            blocks: 1000,
            bavail: 250,
            files: 200,
            favail: 50,
        };
        let [space, inodes] = fig.rows("Free filesystem space", "Free inodes");
        assert_eq!(space.free, Some(4096 * 250));
        assert_eq!(space.free_percent, Some(25.0));
        assert!(space.bytes);
        assert_eq!(inodes.free, Some(50));
        assert_eq!(inodes.free_percent, Some(25.0));
        assert!(!inodes.bytes);
    }

    #[test]
    fn bug_14_zero_totals_give_none_instead_of_dividing_by_zero() {
        let btrfs = FsFigures {
            frsize: 4096,
            blocks: 0,
            bavail: 0,
            files: 0,
            favail: 0,
        };
        let [space, inodes] = btrfs.rows("s", "i");
        assert_eq!(space.free_percent, None);
        assert_eq!(space.free, Some(0));
        assert_eq!(inodes.free, None);
        assert_eq!(inodes.free_percent, None);
    }

    #[test]
    fn a_real_directory_has_plausible_rows() {
        let dir = tempfile::tempdir().unwrap();
        let rows = filesystem_rows(dir.path()).unwrap();
        assert_eq!(rows.len(), 2);
        let pct = rows[0].free_percent.expect("a real filesystem has blocks");
        assert!((0.0..=100.0).contains(&pct), "{pct}");
        // Same filesystem: no extra snapshot rows.
        assert_eq!(
            root_and_snapdir_rows(dir.path(), dir.path()).unwrap().len(),
            2
        );
    }
}
