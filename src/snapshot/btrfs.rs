//! Read-only btrfs subvolume snapshots (§5.9). Not implemented yet.

use super::{SnapshotBackend, SnapshotError, SnapshotName, UsageRow};
use crate::config::Config;
use std::path::PathBuf;

/// The `btrfs` backend.
pub struct Btrfs;

impl Btrfs {
    /// Opens the backend for `config`.
    pub fn new(_config: &Config) -> anyhow::Result<Btrfs> {
        anyhow::bail!("the btrfs snapshot backend is not implemented yet")
    }
}

impl SnapshotBackend for Btrfs {
    fn list(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
        unimplemented!()
    }
    fn create(&self, _: &SnapshotName) -> Result<(), SnapshotError> {
        unimplemented!()
    }
    fn remove(&self, _: &SnapshotName) -> Result<(), SnapshotError> {
        unimplemented!()
    }
    fn mount(&self, _: &SnapshotName) -> Result<PathBuf, SnapshotError> {
        unimplemented!()
    }
    fn unmount(&self, _: &SnapshotName) -> Result<(), SnapshotError> {
        unimplemented!()
    }
    fn mounted(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
        unimplemented!()
    }
    fn usage(&self) -> Result<Vec<UsageRow>, SnapshotError> {
        unimplemented!()
    }
}
