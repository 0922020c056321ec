//! Thin LVM snapshots through sudo (core-rsync-coda.md §5.2–§5.8). Not implemented yet.

use super::{SnapshotBackend, SnapshotError, SnapshotName, UsageRow};
use crate::config::Config;
use std::path::PathBuf;

/// The `lvm` backend.
pub struct Lvm;

impl Lvm {
    /// Opens the backend for `config`.
    pub fn new(_config: &Config) -> anyhow::Result<Lvm> {
        anyhow::bail!("the lvm snapshot backend is not implemented yet")
    }
}

impl SnapshotBackend for Lvm {
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
