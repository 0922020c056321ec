//! The state of an rbd unit: `user.rbd.*` xattrs on the backup file (github-rgw-rbd.md §3.2,
//! compatible with the original), plus one new xattr that records a snapshot's name *before*
//! it is created, so a crash never leaks it.
//!
//! | xattr | meaning |
//! |---|---|
//! | `user.rbd.snapshot` | the RBD snapshot the file equals; absent = the file is incomplete |
//! | `user.rbd.pending-snapshot` | a newer snapshot whose diff is staged, complete and synced, in `<file>.pending` |
//! | `user.rbd.snapid` | snapshot units: the decimal id of the snapshot fetched |
//! | `user.rbd.creating-snapshot` | (new) a snapshot that may exist on the image and is not yet recorded above; the next run removes it unless it is the pending one |
//! | `user.rbd.retired-snapshot` | (new) the base before the last rebase, still on the image; the next run removes it while it exports (its `snap rm` is off the critical path) |
//!
//! Every change is fsynced before the next step, so the order of the steps is also the order
//! after a power loss. A missing file reads as "no attribute" (first runs rely on it); any
//! other read error is an error (a filesystem without user xattrs must not look like a first
//! run).

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The snapshot the file equals.
pub const SNAPSHOT: &str = "user.rbd.snapshot";
/// The snapshot whose diff is staged in `<file>.pending`.
pub const PENDING: &str = "user.rbd.pending-snapshot";
/// The fetched snapshot's id (snapshot units).
pub const SNAPID: &str = "user.rbd.snapid";
/// A snapshot about to be created (new).
pub const CREATING: &str = "user.rbd.creating-snapshot";
/// The previous base, removed by the next run (new).
pub const RETIRED: &str = "user.rbd.retired-snapshot";
/// Every xattr that records a snapshot of the image, in the order `rbd drop` removes them
/// (the base last, so a failed drop still leaves a complete file).
pub const RECORDED: [&str; 4] = [PENDING, CREATING, RETIRED, SNAPSHOT];
/// Prefix of the snapshots Deltaic creates (compatibility: the original's).
pub const SNAPSHOT_PREFIX: &str = "backup-";
/// Environment variable naming a step at which the unit kills itself (crash tests).
pub const CRASH_ENV: &str = "DELTAIC_RBD_CRASH_AT";

/// The xattrs of one backup file.
#[derive(Debug, Clone)]
pub struct Xattrs {
    path: PathBuf,
}

impl Xattrs {
    /// The xattrs of `path` (which need not exist yet).
    pub fn new(path: &Path) -> Xattrs {
        Xattrs {
            path: path.to_owned(),
        }
    }

    /// The value of `name`, or `None` when it or the file is absent.
    pub fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        match xattr::get(&self.path, name) {
            Ok(value) => Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "reading xattr {name} of {} (the backup filesystem needs user_xattr)",
                    self.path.display()
                )
            }),
        }
    }

    /// Sets `name` to `value` (if it differs) and makes it durable.
    pub fn set(&self, name: &str, value: &str) -> anyhow::Result<()> {
        if self.get(name)?.as_deref() == Some(value) {
            return Ok(());
        }
        xattr::set(&self.path, name, value.as_bytes())
            .with_context(|| format!("setting xattr {name} on {}", self.path.display()))?;
        self.sync()
    }

    /// Removes `name` (absent is fine) and makes that durable.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        if self.get(name)?.is_none() {
            return Ok(());
        }
        xattr::remove(&self.path, name)
            .with_context(|| format!("removing xattr {name} from {}", self.path.display()))?;
        self.sync()
    }

    fn sync(&self) -> anyhow::Result<()> {
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

/// A fresh snapshot name: `backup-` and a random (v4) UUID.
pub fn new_snapshot_name() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{SNAPSHOT_PREFIX}{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Fault injection for the crash tests: when [`CRASH_ENV`] names `step`, the process SIGKILLs
/// itself here, as a power loss would stop it (no destructor, no cleanup).
pub fn crash_point(step: &str) {
    if crash_armed(step) {
        eprintln!("deltaic: {CRASH_ENV}={step}: killing myself");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// For the crash tests of two concurrent steps: when [`CRASH_ENV`] names `step`, a crash point
/// on another thread, this thread waits there to be killed with it, so the kill lands in the
/// state the step names (the other step not done yet) whatever the timing.
pub fn hold_for_crash(step: &str) {
    if crash_armed(step) {
        std::thread::sleep(std::time::Duration::from_secs(60));
        panic!("{CRASH_ENV}={step}: the crash point was never reached");
    }
}

fn crash_armed(step: &str) -> bool {
    std::env::var_os(CRASH_ENV).is_some_and(|v| v == step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_round_trip_and_a_missing_file_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Xattrs::new(&dir.path().join("none"));
        assert_eq!(missing.get(SNAPSHOT).unwrap(), None);
        let path = dir.path().join("img");
        std::fs::write(&path, b"").unwrap();
        let x = Xattrs::new(&path);
        x.set(SNAPSHOT, "backup-1").unwrap();
        assert_eq!(x.get(SNAPSHOT).unwrap().as_deref(), Some("backup-1"));
        assert_eq!(
            xattr::get(&path, "user.rbd.snapshot").unwrap().unwrap(),
            b"backup-1"
        );
        x.remove(SNAPSHOT).unwrap();
        x.remove(SNAPSHOT).unwrap();
        assert_eq!(x.get(SNAPSHOT).unwrap(), None);
    }

    #[test]
    fn snapshot_names_are_backup_uuids() {
        let a = new_snapshot_name();
        assert_eq!(a.len(), "backup-".len() + 36, "{a}");
        assert!(
            a.starts_with("backup-") && a.as_bytes()[7 + 14] == b'4',
            "{a}"
        );
        assert_ne!(a, new_snapshot_name());
    }
}
