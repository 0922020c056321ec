//! A fresh btrfs filesystem on a loop device, mounted in a temp directory (test-infra.md §2).
//!
//! Needs root, `mkfs.btrfs` and `btrfs`. One at a time per test binary (a global mutex), so the
//! tests use at most one loop device however many threads run; the filesystem is unmounted (and
//! its loop device released, `mount -o loop` sets autoclear) when the value is dropped.

use super::require;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A mounted, empty btrfs filesystem.
pub struct BtrfsLoop {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl BtrfsLoop {
    /// Makes and mounts a 256 MiB btrfs; `None` after a loud skip when that is impossible here.
    pub fn start() -> Option<BtrfsLoop> {
        let possible = require::root()
            && require::program_exists("mkfs.btrfs")
            && require::program_exists("btrfs")
            && Path::new("/dev/loop-control").exists();
        if !require::service("btrfs on a loop device (root, btrfs-progs)", possible) {
            return None;
        }
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("btrfs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let made = run("mkfs.btrfs", &["-q".as_ref(), image.as_os_str()]).and_then(|()| {
            run(
                "mount",
                &[
                    "-o".as_ref(),
                    "loop".as_ref(),
                    image.as_os_str(),
                    mnt.as_os_str(),
                ],
            )
        });
        if let Err(err) = made {
            require::service(&format!("btrfs on a loop device ({err})"), false);
            return None;
        }
        Some(BtrfsLoop {
            mnt,
            _dir: dir,
            _turn: turn,
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// Creates the subvolume `rel` below the mount point and returns its path.
    pub fn subvolume(&self, rel: &str) -> PathBuf {
        let path = self.mnt.join(rel);
        run(
            "btrfs",
            &["subvolume".as_ref(), "create".as_ref(), path.as_os_str()],
        )
        .unwrap();
        path
    }
}

impl Drop for BtrfsLoop {
    fn drop(&mut self) {
        if run("umount", &[self.mnt.as_os_str()]).is_err() {
            let _ = run("umount", &["-l".as_ref(), self.mnt.as_os_str()]);
        }
    }
}
