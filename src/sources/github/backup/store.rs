//! Writing one unit's files: every write goes through "write only if different"
//! ([`UpdateFile`]), items carrying an `updated_at` get it as their mtime, and the scrub
//! bookkeeping of D6 lives here (an item rewritten although its mtime already matched its
//! `updated_at` is a mismatch). Changed files are printed as `f <path>`, removed ones as
//! `- <path>`, like the original.

use super::Summary;
use super::format;
use crate::util::file_time::{ensure_mtime, mtime_secs};
use crate::util::gc;
use crate::util::update_file::UpdateFile;
use anyhow::Context;
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Decides from an old file's bytes whether it was written in an older format, so that its
/// rewrite is a format upgrade rather than a scrub mismatch.
pub(super) type OldFormat = fn(&[u8]) -> bool;

/// One unit's directory and what was done to it.
pub(super) struct Store {
    dir: PathBuf,
    scrub: bool,
    /// Figures for the run report.
    pub summary: Summary,
}

/// An item update in progress: the new content is written into `update`, then
/// [`Store::commit_item`] finishes it.
pub(super) struct PendingItem {
    /// The file being written.
    pub update: UpdateFile,
    rel: PathBuf,
    updated: i64,
    /// The old file's mtime already equalled `updated`.
    was_current: bool,
    /// The old file was in an older format ([`OldFormat`]).
    old_format: bool,
}

impl Store {
    /// A store for the unit directory `dir`.
    pub fn new(dir: PathBuf, scrub: bool) -> Store {
        Store {
            dir,
            scrub,
            summary: Summary::default(),
        }
    }

    /// The unit directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The absolute path of `rel`.
    pub fn path(&self, rel: &Path) -> PathBuf {
        self.dir.join(rel)
    }

    /// Whether `rel` exists with its mtime equal to `updated` (the "unchanged" test of §1.7).
    pub fn is_current(&self, rel: &Path, updated: i64) -> bool {
        mtime_secs(&self.path(rel)) == Some(updated)
    }

    fn note_written(&mut self, path: &Path) {
        self.summary.files_written += 1;
        println!("f {}", path.display());
    }

    /// Writes a file without an `updated_at` (`info.json`, `labels.json`, `teams.json`, …).
    pub fn write_file(&mut self, rel: &Path, value: &Value) -> anyhow::Result<bool> {
        let path = self.path(rel);
        let modified =
            crate::util::update_file::update_file(&path, format::to_json(value).as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        if modified {
            self.note_written(&path);
        }
        Ok(modified)
    }

    /// Writes `rel` if its bytes changed and sets its mtime to `mtime`, whatever the old mtime
    /// was: for files whose mtime is not a reliable change marker (`comments/<sha>.json`: the
    /// newest comment's `updated_at` does not change when an older comment is deleted).
    pub fn write_dated(&mut self, rel: &Path, value: &Value, mtime: i64) -> anyhow::Result<bool> {
        let modified = self.write_file(rel, value)?;
        let path = self.path(rel);
        ensure_mtime(&path, mtime)
            .with_context(|| format!("setting the mtime of {}", path.display()))?;
        Ok(modified)
    }

    /// Starts writing item `rel` whose `updated_at` is `updated`.
    pub fn begin_item(
        &self,
        rel: &Path,
        updated: i64,
        old_format: Option<OldFormat>,
    ) -> PendingItem {
        let path = self.path(rel);
        let was_current = mtime_secs(&path) == Some(updated);
        let old_format = match old_format {
            Some(check) if self.scrub && was_current => {
                std::fs::read(&path).map(|b| check(&b)).unwrap_or(false)
            }
            _ => false,
        };
        PendingItem {
            update: UpdateFile::new(&path),
            rel: rel.to_path_buf(),
            updated,
            was_current,
            old_format,
        }
    }

    /// Commits an item: replaces the file if its bytes changed, sets the mtime to `updated_at`,
    /// and counts a scrub mismatch when the bytes changed although the mtime already matched.
    pub fn commit_item(&mut self, item: PendingItem) -> anyhow::Result<bool> {
        let path = self.path(&item.rel);
        let modified = item
            .update
            .commit()
            .with_context(|| format!("writing {}", path.display()))?;
        if modified {
            self.note_written(&path);
            if self.scrub && item.was_current {
                if item.old_format {
                    self.summary.format_upgrades += 1;
                    tracing::info!("scrub: {} rewritten in the current format", path.display());
                } else {
                    self.summary.scrub_mismatches += 1;
                    tracing::warn!(
                        "scrub mismatch: {} differed from GitHub although its updated_at had not \
                         changed; repaired",
                        path.display()
                    );
                }
            }
        }
        ensure_mtime(&path, item.updated)
            .with_context(|| format!("setting the mtime of {}", path.display()))?;
        Ok(modified)
    }

    /// Writes item `rel` (JSON) with mtime `updated`. Outside a scrub, an item whose file is
    /// current (mtime == `updated`) is left alone without being compared.
    pub fn write_item(
        &mut self,
        rel: &Path,
        value: &Value,
        updated: i64,
        old_format: Option<OldFormat>,
    ) -> anyhow::Result<bool> {
        if !self.scrub && self.is_current(rel, updated) {
            return Ok(false);
        }
        let mut item = self.begin_item(rel, updated, old_format);
        let path = self.path(rel);
        item.update
            .write_all(format::to_json(value).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        self.commit_item(item)
    }

    /// Garbage-collects the subtree `sub` against `valid` (paths relative to `sub`). Only call
    /// this after a complete listing whose every item was processed.
    pub fn collect(&mut self, sub: &str, valid: &HashSet<PathBuf>) -> anyhow::Result<()> {
        let root = self.dir.join(sub);
        let mut removed = Vec::new();
        gc::collect(&root, valid, &mut |rel, _| removed.push(root.join(rel)))
            .with_context(|| format!("garbage-collecting {}", root.display()))?;
        for path in removed {
            self.summary.files_removed += 1;
            println!("- {}", path.display());
        }
        Ok(())
    }

    /// Removes stray temporary files directly inside the unit directory and inside `subs`.
    pub fn sweep_temp_files(&mut self, subs: &[&str]) -> anyhow::Result<()> {
        for sub in std::iter::once("").chain(subs.iter().copied()) {
            let dir = self.dir.join(sub);
            for name in gc::sweep_temp_files(&dir)
                .with_context(|| format!("removing temporary files in {}", dir.display()))?
            {
                self.summary.files_removed += 1;
                println!("- {}", dir.join(name).display());
            }
        }
        Ok(())
    }

    /// Records a warning for the run summary and logs it.
    pub fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.summary.warnings.push(message);
    }
}
