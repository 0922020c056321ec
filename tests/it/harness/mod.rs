//! Shared helpers of the integration tests: required services, loop-mounted btrfs, fake tools.

pub mod btrfs;
pub mod fake_lvm;
pub mod require;
