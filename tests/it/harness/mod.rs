//! Shared helpers of the integration tests: the skip-or-fail rule for missing services
//! ([`require`]), a private sshd ([`sshd`]), loop-mounted btrfs ([`btrfs`]) and fake LVM tools
//! ([`fake_lvm`]).

pub mod btrfs;
pub mod fake_lvm;
pub mod require;
pub mod sshd;
