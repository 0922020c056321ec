//! The snapshot layer: read-only, point-in-time copies of the backup root, taken after each
//! `deltaic run` (D3, core-rsync-coda.md §5 and §5.9). One trait, three backends:
//! [`lvm`] (thin LVM snapshots through sudo, the original's), [`btrfs`] (read-only subvolume
//! snapshots) and [`dir`] (reflinked or copied trees). All name snapshots `YYYYMMDD-N`.
//!
//! Whether a snapshot's run was complete is not the backend's business: the run driver writes
//! a run record into the root before `create` (see [`crate::run::manifest`]).

pub mod btrfs;
pub mod dir;
mod fs_usage;
pub mod lvm;
mod name;
mod snapdir;
pub mod tools;

pub use name::{BadSnapshotName, SnapshotName};

use crate::config::{Config, SnapshotBackendKind};
use std::path::PathBuf;

/// Why a snapshot operation failed; callers branch on `NotFound` and `AlreadyExists`.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot has this name.
    #[error("snapshot {0} does not exist")]
    NotFound(SnapshotName),
    /// A snapshot of this name exists already.
    #[error("snapshot {0} already exists")]
    AlreadyExists(SnapshotName),
    /// Anything else, with context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One line of `deltaic df`: a resource and how much of it is free.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageRow {
    /// What is measured, e.g. `Free filesystem space`.
    pub label: String,
    /// Free amount: bytes when `bytes` is true, otherwise a count (inodes); `None` when unknown
    /// (an inactive LVM pool, or a filesystem without an inode count such as btrfs).
    pub free: Option<u64>,
    /// Whether `free` is in bytes (printed humanized) or a count.
    pub bytes: bool,
    /// Percentage free, or `None` when the total is unknown or zero (BUG-14).
    pub free_percent: Option<f64>,
}

/// Read-only, point-in-time copies of ROOT.
///
/// Contracts: names are `YYYYMMDD-N`; `list` is sorted by (date, revision) and skips foreign
/// names with a warning; `create` never overwrites; `remove` unmounts first; `mount` is
/// idempotent; unmounting something not mounted is harmless.
pub trait SnapshotBackend {
    /// Snapshots this backend owns, oldest first.
    fn list(&self) -> Result<Vec<SnapshotName>, SnapshotError>;
    /// Freezes ROOT as `name`. A failed create leaves nothing listed.
    fn create(&self, name: &SnapshotName) -> Result<(), SnapshotError>;
    /// Deletes the snapshot `name` (unmounting it first); `NotFound` when there is none.
    fn remove(&self, name: &SnapshotName) -> Result<(), SnapshotError>;
    /// Makes `name` readable and returns where it can be read. Idempotent; `NotFound` when
    /// there is no such snapshot.
    fn mount(&self, name: &SnapshotName) -> Result<PathBuf, SnapshotError>;
    /// Undoes [`SnapshotBackend::mount`]; harmless when `name` is not mounted, `NotFound` when
    /// there is no such snapshot.
    fn unmount(&self, name: &SnapshotName) -> Result<(), SnapshotError>;
    /// The snapshots currently mounted by [`SnapshotBackend::mount`] (for `umount -a`).
    fn mounted(&self) -> Result<Vec<SnapshotName>, SnapshotError>;
    /// Free space figures for `deltaic df`.
    fn usage(&self) -> Result<Vec<UsageRow>, SnapshotError>;
    /// The name a snapshot taken on `date` should get: one past the highest revision of that
    /// date among every name that `create` would collide with (for LVM, every LV of the volume
    /// group, not just the tagged ones: BUG-12 fixed). Use it with [`SnapshotBackend::create`].
    fn next_name(&self, date: jiff::civil::Date) -> Result<SnapshotName, SnapshotError> {
        Ok(SnapshotName::next_free(date, &self.list()?))
    }
}

/// Opens the backend chosen by `snapshot-backend`.
pub fn open(config: &Config) -> anyhow::Result<Box<dyn SnapshotBackend>> {
    Ok(match config.settings.snapshot_backend {
        SnapshotBackendKind::Lvm => Box::new(lvm::Lvm::new(config)?),
        SnapshotBackendKind::Btrfs => Box::new(btrfs::Btrfs::new(config)?),
        SnapshotBackendKind::Dir => Box::new(dir::DirBackend::new(config)?),
    })
}
