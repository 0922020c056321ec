//! Shared helpers of the integration tests: services the tests need ([`sshd`]) and the
//! skip-or-fail rule for missing ones ([`require`]).

pub mod require;
pub mod sshd;
