//! Fake sudo and LVM tools on a private state (tests/fixtures/fake-lvm/, core-rsync-coda.md §13):
//! the `lvm` backend runs its real argv against them, and their `mount` makes a real read-only
//! tmpfs (root only) so that mount checks and EROFS are real.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A set of fake tools with its own state; unmounts whatever it mounted when dropped.
pub struct FakeLvm {
    dir: tempfile::TempDir,
}

const TOOLS: &[&str] = &[
    "lib.sh", "sudo", "lvs", "lvcreate", "lvremove", "lvchange", "mount", "umount",
];

impl FakeLvm {
    /// Fake tools knowing volume group `vg` with the thin origin `vg/lv`, whose filesystem is
    /// the directory `origin`, in the pool `pool` (stats: 50% data and 10% metadata used).
    pub fn new(vg: &str, lv: &str, origin: &Path) -> FakeLvm {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-lvm");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        for tool in TOOLS {
            let target = bin.join(tool);
            fs::copy(fixtures.join(tool), &target).unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        fs::write(state.join("vgs"), format!("{vg}\n")).unwrap();
        fs::write(
            state.join("lvs.db"),
            format!("{vg} {lv} - y\n{vg} pool - n\n"),
        )
        .unwrap();
        fs::write(
            state.join("origins"),
            format!("{vg}/{lv} {}\n", origin.display()),
        )
        .unwrap();
        fs::write(state.join("pool_lv"), "pool\n").unwrap();
        let fake = FakeLvm { dir };
        fake.set_pool_stats("  1073741824 50.00 4194304 10.00");
        fake
    }

    /// The fake `sudo` (for `Tools::sudo` or `DELTAIC_SUDO`).
    pub fn sudo(&self) -> PathBuf {
        self.dir.path().join("bin/sudo")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Every command run through the fake sudo so far, as `sudo ARGS...`.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.state().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Adds an LV `vg/name` with `tags` (comma-separated, or `-`), e.g. a foreign one.
    pub fn add_lv(&self, vg: &str, name: &str, tags: &str) {
        let db = self.state().join("lvs.db");
        let mut text = fs::read_to_string(&db).unwrap();
        text.push_str(&format!("{vg} {name} {tags} n\n"));
        fs::write(&db, text).unwrap();
        fs::create_dir_all(self.state().join("content").join(vg).join(name)).unwrap();
    }

    /// Makes `tool` fail with status 5 from now on.
    pub fn fail(&self, tool: &str) {
        fs::write(self.state().join(format!("fail-{tool}")), "").unwrap();
    }

    /// Undoes [`FakeLvm::fail`].
    pub fn heal(&self, tool: &str) {
        let _ = fs::remove_file(self.state().join(format!("fail-{tool}")));
    }

    /// Sets what the pool-stats query prints.
    pub fn set_pool_stats(&self, line: &str) {
        fs::write(self.state().join("pool_stats"), format!("{line}\n")).unwrap();
    }
}

impl Drop for FakeLvm {
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir(self.state().join("mounted")) else {
            return;
        };
        for entry in entries.flatten() {
            if let Ok(mountpoint) = fs::read_to_string(entry.path()) {
                let _ = std::process::Command::new("umount")
                    .args(["-l", mountpoint.trim()])
                    .status();
            }
        }
    }
}
