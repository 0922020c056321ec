//! Skip-or-fail for tests that need something from the machine (a loop device, root, a tool):
//! a loud skip locally, a failure in CI (`DELTAIC_TEST_REQUIRE_ALL=1`), as restic's
//! `SkipDisallowed` and cargo's `requires_<cmd>`.

/// Returns `available`; when false, prints `SKIPPED <test>: <name> not available`, or panics
/// under `DELTAIC_TEST_REQUIRE_ALL=1`.
pub fn service(name: &str, available: bool) -> bool {
    if available {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<test>");
    if std::env::var_os("DELTAIC_TEST_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{test}: {name} not available, and DELTAIC_TEST_REQUIRE_ALL=1 requires it");
    }
    eprintln!("SKIPPED {test}: {name} not available");
    false
}

/// Whether `program` is found in PATH.
pub fn program(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
                && std::fs::metadata(&candidate)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// Whether the tests run as root (loop devices, mounts).
pub fn root() -> bool {
    rustix::process::geteuid().is_root()
}
