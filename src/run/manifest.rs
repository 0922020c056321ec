//! The run manifest (D3, core-rsync-coda.md §5.9): what a `deltaic run` did, written into the
//! backup root just before the snapshot so every snapshot carries its own record.
//!
//! Two copies are written, both atomically:
//! * `ROOT/.deltaic/manifest.json`: the latest record (of a run, or of `deltaic snapshot`);
//!   inside a snapshot, that snapshot's record.
//! * `ROOT/.deltaic/runs/<snapshot>.json`: one per snapshot, so `ls` and `prune` learn whether a
//!   snapshot is complete without mounting it. A snapshot without a record (one made by the
//!   original) counts as complete. `deltaic snapshot` writes a record too, with no units.
//!
//! `complete` is about the whole tree, not only the units this run ran: every unit of the full
//! plan must have succeeded the last time it ran ([`super::unit_status`]), so a run with
//! `--only`, or a manual snapshot, is partial while some other unit's last run failed.
//!
//! A unit child reports its figures (bytes, scrub mismatches) through a [`UnitReport`] file
//! whose path the driver passes in `DELTAIC_UNIT_REPORT`.

use crate::snapshot::SnapshotName;
use crate::sources::UnitRoot;
use crate::util::atomic_file;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Environment variable naming the file where a unit child writes its [`UnitReport`].
pub const UNIT_REPORT_ENV: &str = "DELTAIC_UNIT_REPORT";

/// The format version [`RunManifest::version`] is written with.
pub const MANIFEST_VERSION: u32 = 1;

/// How a unit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitStatus {
    /// The child exited 0.
    Ok,
    /// The child exited non-zero, died on a signal, or could not be started.
    Failed,
    /// The child ran past `unit-timeout` and was killed.
    TimedOut,
}

/// Figures a unit child reports about its own work (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitReport {
    /// Bytes of file data received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_transferred: Option<u64>,
    /// Files created or updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_transferred: Option<u64>,
    /// Whether this run was a scrub.
    #[serde(default)]
    pub scrubbed: bool,
    /// Mismatches a scrub found and repaired (D6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub_mismatches: Option<u64>,
    /// Warnings worth reporting in the run summary (e.g. an ACL/xattr fallback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl UnitReport {
    /// Writes the report where `DELTAIC_UNIT_REPORT` says, if it is set (children of `run`).
    pub fn write_if_requested(&self) -> anyhow::Result<()> {
        if let Some(path) = std::env::var_os(UNIT_REPORT_ENV) {
            let json = serde_json::to_vec_pretty(self)?;
            atomic_file::write(Path::new(&path), &json)
                .with_context(|| format!("writing unit report {}", Path::new(&path).display()))?;
        }
        Ok(())
    }
}

/// One unit's line in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitRecord {
    /// The unit (`rsync/octopus`).
    pub unit: UnitRoot,
    /// How it ended.
    pub status: UnitStatus,
    /// Exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// What the child reported.
    #[serde(default, flatten)]
    pub report: UnitReport,
}

/// The record of one `deltaic run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Format version of this file.
    pub version: u32,
    /// The deltaic version that wrote it.
    pub deltaic_version: String,
    /// When the run started (RFC 3339).
    pub started: String,
    /// When the units finished (RFC 3339).
    pub finished: String,
    /// The snapshot this run is recorded in, if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotName>,
    /// True when every source could be planned and every unit of the full plan (all configured
    /// units, not only those this run ran) succeeded the last time it ran.
    pub complete: bool,
    /// Sources whose units could not be planned, with the error (BUG-5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planning_errors: Vec<String>,
    /// One record per unit this run ran.
    pub units: Vec<UnitRecord>,
    /// What `complete` was judged on, beyond this run's units.
    #[serde(default, flatten)]
    pub coverage: Coverage,
}

/// What a record's `complete` covers, beyond the units it lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// The units a `deltaic run --only` was narrowed to (absent for a full run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<UnitRoot>>,
    /// Units of the full plan whose last run did not succeed, or which never ran: their data in
    /// the tree may be torn or missing, which is why the record is not complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units_not_ok: Vec<UnitRoot>,
    /// Planning errors of the sources a `--only` run left out: their units are unknown, so the
    /// tree is not known to be complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out_planning_errors: Vec<String>,
    /// Written by `deltaic snapshot`: no unit ran, `complete` is judged from the units' last
    /// runs only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual_snapshot: bool,
}

/// Directory holding deltaic's own records inside the backup root.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(".deltaic")
}

/// Where the record of snapshot `name` lives.
pub fn record_path(root: &Path, name: &SnapshotName) -> PathBuf {
    state_dir(root).join("runs").join(format!("{name}.json"))
}

impl RunManifest {
    /// Writes the manifest as the latest run and as the record of its snapshot (if any).
    pub fn write(&self, root: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        let latest = state_dir(root).join("manifest.json");
        atomic_file::write(&latest, &json)
            .with_context(|| format!("writing run manifest {}", latest.display()))?;
        if let Some(name) = &self.snapshot {
            let path = record_path(root, name);
            atomic_file::write(&path, &json)
                .with_context(|| format!("writing run record {}", path.display()))?;
        }
        Ok(())
    }

    /// Reads the record of snapshot `name`; `Ok(None)` when there is none.
    pub fn read(root: &Path, name: &SnapshotName) -> anyhow::Result<Option<RunManifest>> {
        let path = record_path(root, name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("parsing run record {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading run record {}", path.display())),
        }
    }
}

/// Whether snapshot `name` is complete: its record says so, or it has no record (D3).
/// An unreadable record counts as partial, so prune never prefers it over a known-good one.
pub fn is_complete(root: &Path, name: &SnapshotName) -> bool {
    match RunManifest::read(root, name) {
        Ok(Some(m)) => m.complete,
        Ok(None) => true,
        Err(err) => {
            tracing::warn!("{err:#}; counting snapshot {name} as partial");
            false
        }
    }
}
