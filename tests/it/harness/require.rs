//! Skip-or-fail for tests that need something from the machine (sshd, rsync, root, a btrfs loop
//! device, ...): a loud skip locally, a failure in CI, as restic's `SkipDisallowed` and cargo's
//! `requires_<cmd>`.
//!
//! A missing service skips the test with a loud `SKIPPED` line on stderr, unless
//! `DELTAIC_TEST_REQUIRE_ALL=1` is set (CI sets it), in which case the test panics: a CI run
//! must never pass by skipping.

/// Environment variable that turns skips into failures.
pub const REQUIRE_ALL_ENV: &str = "DELTAIC_TEST_REQUIRE_ALL";

/// Returns `available`; when it is false, prints `SKIPPED <test>: <name> not available`, or
/// panics under `DELTAIC_TEST_REQUIRE_ALL=1`.
pub fn service(name: &str, available: bool) -> bool {
    if available {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("<test>")
        .to_string();
    if std::env::var(REQUIRE_ALL_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: {name} not available, and {REQUIRE_ALL_ENV}=1 forbids skipping");
    }
    eprintln!("SKIPPED {test}: {name} not available");
    false
}

/// Whether `program` is found on PATH (or is an executable path).
pub fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

/// Whether the tests run as root (loop devices, mounts).
pub fn root() -> bool {
    rustix::process::geteuid().is_root()
}
