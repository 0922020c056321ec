//! Making a backup file equal to a snapshot from a full export (github-rgw-rbd.md §3.7, §3.11):
//! the first fetch, a re-fetch, a snapshot unit, and the scrub are the same operation.
//!
//! The whole image is compared, unallocated ranges included (the original skipped them): data
//! is compared and only differing blocks are rewritten; every range the export reports as zero
//! or does not mention is made to read as zeros. Memory stays constant. What differed is
//! counted ([`Stats::ranges_changed`]); for a scrub those are mismatches, repaired, and
//! reported as warnings and in the unit report without failing the unit (D6). A bad stream or
//! a failing `rbd` is an error.

use super::apply::{self, CHUNK, ImageFile, Mode, Stats};
use super::diff::DiffReader;
use super::tool::Rbd;
use anyhow::{Context, bail};
use std::io::BufReader;
use std::path::Path;

/// Streams a full export of `pool/image@snap` into `path` (created when missing), leaving it
/// equal to the snapshot; returns what changed. The file is synced before this returns.
pub fn sync_full(
    rbd: &Rbd,
    pool: &str,
    image: &str,
    snap: &str,
    path: &Path,
) -> anyhow::Result<Stats> {
    let mut export = rbd.export_diff(pool, image, snap, None)?;
    let line = export.command_line().to_string();
    let stats = {
        let mut reader = DiffReader::new(BufReader::with_capacity(CHUNK, &mut export))
            .with_context(|| format!("reading the output of `{line}`"))?;
        let mut file = ImageFile::open(path, true)?;
        let stats = apply::apply(&mut reader, &mut file, Mode::Full)
            .with_context(|| format!("applying the output of `{line}` to {}", path.display()))?;
        file.sync()?;
        if let Some(dir) = path.parent() {
            crate::util::atomic_file::sync_dir(dir)
                .with_context(|| format!("syncing {}", dir.display()))?;
        }
        stats
    };
    export.finish()?;
    if stats.to_snap.as_deref() != Some(snap) {
        bail!(
            "`{line}` produced a stream for snapshot {:?}, not {snap}",
            stats.to_snap
        );
    }
    Ok(stats)
}

/// Scrubs `path` against `pool/image@snap`: [`sync_full`], with every difference logged as a
/// warning. Returns the number of mismatches (differing ranges, plus one for a wrong size).
pub fn scrub(rbd: &Rbd, pool: &str, image: &str, snap: &str, path: &Path) -> anyhow::Result<u64> {
    let stats = sync_full(rbd, pool, image, snap, path)
        .with_context(|| format!("scrubbing {} against {pool}/{image}@{snap}", path.display()))?;
    let mismatches = stats.ranges_changed + u64::from(stats.resized);
    if mismatches > 0 {
        tracing::warn!(
            "scrub of {} against {pool}/{image}@{snap}: repaired {mismatches} mismatch(es) \
             ({} bytes rewritten, {} bytes zeroed{})",
            path.display(),
            stats.bytes_written,
            stats.bytes_zeroed,
            if stats.resized {
                ", size corrected"
            } else {
                ""
            }
        );
    } else {
        println!("scrub of {}: no mismatches", path.display());
    }
    Ok(mismatches)
}
