//! Shared helpers of the integration tests: the skip-or-fail rule for missing services
//! ([`require`]), a private sshd ([`sshd`]), loop-mounted btrfs ([`btrfs`]), fake LVM tools
//! ([`fake_lvm`]), the shared test Ceph ([`ceph`]), running the binary and reading what it leaves ([`deltaic`]), source trees
//! and comparisons ([`tree`]), and crash simulation ([`process`]).

pub mod btrfs;
pub mod ceph;
pub mod coda;
pub mod deltaic;
pub mod fake_github;
pub mod fake_lvm;
pub mod process;
pub mod require;
pub mod sshd;
pub mod tree;
