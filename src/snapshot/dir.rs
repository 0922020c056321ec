//! Reflinked or copied directory snapshots (§5.9). Not implemented yet.

use super::{SnapshotBackend, SnapshotError, SnapshotName, UsageRow};
use crate::config::Config;
use std::path::PathBuf;

/// The `dir` backend.
pub struct DirBackend;

impl DirBackend {
    /// Opens the backend for `config`.
    pub fn new(_config: &Config) -> anyhow::Result<DirBackend> {
        anyhow::bail!("the dir snapshot backend is not implemented yet")
    }
}

impl SnapshotBackend for DirBackend {
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
