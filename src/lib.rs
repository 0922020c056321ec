//! Deltaic: a backup server that pulls data from several kinds of sources (rsync hosts, Coda
//! volumes, and later GitHub organisations and Ceph RGW/RBD) into one backup filesystem, then
//! snapshots that filesystem so that every run becomes a point in history.
//!
//! The architecture, top down (docs/ARCHITECTURE.md has the one-page map):
//! [`cli`] parses argv and prints → [`run`] drives a nightly run: plans [`sources`] units, runs
//! each as a child process, writes the run manifest → [`snapshot`] freezes the root →
//! [`prune`] thins old snapshots and logs. [`config`] is loaded once and passed down; [`util`]
//! holds domain-free helpers.

pub mod cli;
pub mod config;
pub mod logging;
pub mod mkconf;
pub mod prune;
pub mod run;
pub mod snapshot;
pub mod sources;
pub mod util;
