//! Thin LVM snapshots through sudo (core-rsync-coda.md §5.2–§5.8), with exactly the original's
//! commands, so that snapshots made by the original carry over (D1):
//!
//! * list: `sudo lvs --noheadings -o vg_name,lv_name @backup-snapshot`
//! * create: `sudo lvcreate -s VG/LV -p r -n NAME --addtag backup-snapshot`
//! * remove: `sudo lvremove --force VG/NAME` (unmounting first)
//! * mount: `sudo lvchange -a y -K VG/NAME`, `sudo mount -o ro /dev/VG/NAME ROOT/Snapshots/NAME`
//! * unmount: `sudo umount ROOT/Snapshots/NAME`, `sudo lvchange -a n VG/NAME` (status ignored)
//! * df: `sudo lvs --noheadings -o pool_lv VG/LV`, then `sudo lvs --noheadings --nosuffix
//!   --units b -o lv_size,data_percent,lv_metadata_size,metadata_percent VG/POOL`
//!
//! Fixed bugs: foreign tagged names are skipped with a warning (BUG-10); names order by (date,
//! revision) (BUG-11); the next free name comes from one `sudo lvs --noheadings -o lv_name VG`
//! listing whose failure is an error, not "free" (BUG-12); `umount -a` unmounts what is mounted
//! (BUG-13); df copes with an inactive pool (empty percentages). Every `lvs` runs with
//! `LC_ALL=C` so that numbers parse whatever the locale.

use super::fs_usage::filesystem_rows;
use super::tools::Tools;
use super::{SnapshotBackend, SnapshotError, SnapshotName, UsageRow};
use crate::config::Config;
use anyhow::{Context, anyhow};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tag that marks Deltaic's snapshot LVs (a compatibility contract, §11).
pub const TAG: &str = "backup-snapshot";

/// The `lvm` backend: snapshots of the thin LV `backup-lv`, mounted under `ROOT/Snapshots`.
#[derive(Debug)]
pub struct Lvm {
    root: PathBuf,
    vg: String,
    lv: String,
    tools: Tools,
}

impl Lvm {
    /// Opens the backend for `config` (which must name `backup-lv`).
    pub fn new(config: &Config) -> anyhow::Result<Lvm> {
        let (vg, lv) = config.settings.backup_lv().ok_or_else(|| {
            anyhow!(
                "the lvm snapshot backend needs `backup-lv: VG/LV` in {}",
                config.path.display()
            )
        })?;
        Ok(Lvm::with_tools(config.root(), vg, lv, Tools::from_env()))
    }

    /// Opens the backend for the backup root `root` on the thin LV `vg/lv`, running `tools`.
    pub fn with_tools(root: &Path, vg: &str, lv: &str, tools: Tools) -> Lvm {
        Lvm {
            root: root.to_owned(),
            vg: vg.to_string(),
            lv: lv.to_string(),
            tools,
        }
    }

    /// `sudo lvs ARGS...` with `LC_ALL=C`.
    fn lvs(&self, args: &[&str]) -> Command {
        let mut cmd = self
            .tools
            .sudo(std::iter::once("lvs").chain(args.iter().copied()));
        cmd.env("LC_ALL", "C");
        cmd
    }

    fn lv_path(&self, name: &SnapshotName) -> String {
        format!("{}/{name}", self.vg)
    }

    fn mountpoint(&self, name: &SnapshotName) -> PathBuf {
        self.root.join("Snapshots").join(name.to_string())
    }

    fn root_dev(&self) -> anyhow::Result<u64> {
        Ok(fs::metadata(&self.root)
            .with_context(|| format!("stat backup root {}", self.root.display()))?
            .dev())
    }

    /// Whether `path` is a mount point below ROOT (on another device than ROOT).
    fn is_mounted_at(&self, path: &Path) -> anyhow::Result<bool> {
        match fs::symlink_metadata(path) {
            Ok(meta) => Ok(meta.is_dir() && meta.dev() != self.root_dev()?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
        }
    }

    /// Every LV name of the volume group (BUG-12: a failure is an error, never "free").
    fn lv_names(&self) -> anyhow::Result<Vec<String>> {
        let out = self
            .tools
            .run(&mut self.lvs(&["--noheadings", "-o", "lv_name", &self.vg]))
            .with_context(|| format!("listing the logical volumes of volume group {}", self.vg))?;
        Ok(parse_words(&out.stdout).map(|w| w.to_string()).collect())
    }

    fn exists(&self, name: &SnapshotName) -> Result<bool, SnapshotError> {
        Ok(self.list()?.contains(name))
    }

    fn require(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        if self.exists(name)? {
            Ok(())
        } else {
            Err(SnapshotError::NotFound(*name))
        }
    }

    /// The thin pool behind the backup LV.
    fn pool(&self) -> anyhow::Result<String> {
        let origin = format!("{}/{}", self.vg, self.lv);
        let out = self
            .tools
            .run(&mut self.lvs(&["--noheadings", "-o", "pool_lv", &origin]))
            .with_context(|| format!("couldn't retrieve the pool LV of {origin}"))?;
        let pool = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if pool.is_empty() {
            anyhow::bail!(
                "couldn't retrieve the pool LV of {origin}: it is not a thin volume; \
                 deltaic's lvm backend needs a thin LV (or use snapshot-backend: btrfs or dir)"
            );
        }
        Ok(pool)
    }

    fn pool_rows(&self) -> anyhow::Result<Vec<UsageRow>> {
        let pool = format!("{}/{}", self.vg, self.pool()?);
        let out = self
            .tools
            .run(&mut self.lvs(&[
                "--noheadings",
                "--nosuffix",
                "--units",
                "b",
                "-o",
                "lv_size,data_percent,lv_metadata_size,metadata_percent",
                &pool,
            ]))
            .with_context(|| format!("couldn't examine pool LV {pool}"))?;
        let stats = PoolStats::parse(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("parsing the lvs figures of pool LV {pool}"))?;
        Ok(stats.rows().to_vec())
    }
}

/// The whitespace-separated words of lvs output.
fn parse_words(stdout: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(stdout).unwrap_or("").split_whitespace()
}

/// Parses `lvs --noheadings -o vg_name,lv_name` output into (vg, lv) pairs.
fn parse_vg_lv(stdout: &str) -> anyhow::Result<Vec<(String, String)>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [vg, lv] => Ok((vg.to_string(), lv.to_string())),
                _ => Err(anyhow!(
                    "unexpected lvs output line {line:?} (wanted `VG LV`)"
                )),
            },
        )
        .collect()
}

/// The thin pool's figures: sizes in bytes and percentages used. The percentages are empty in
/// lvs output (so `None` here) when the pool is not active (test-infra.md §2).
#[derive(Debug, Clone, Copy, PartialEq)]
struct PoolStats {
    data_size: u64,
    data_percent: Option<f64>,
    meta_size: u64,
    meta_percent: Option<f64>,
}

impl PoolStats {
    /// Parses the one line of `lv_size,data_percent,lv_metadata_size,metadata_percent`: four
    /// numbers, or only the two sizes when the percentages are empty.
    fn parse(stdout: &str) -> anyhow::Result<PoolStats> {
        let number = |w: &str| -> anyhow::Result<f64> {
            w.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| anyhow!("`{w}` is not a number"))
        };
        let words: Vec<&str> = stdout.split_whitespace().collect();
        Ok(match words[..] {
            [size, pct, msize, mpct] => PoolStats {
                data_size: number(size)? as u64,
                data_percent: Some(number(pct)?),
                meta_size: number(msize)? as u64,
                meta_percent: Some(number(mpct)?),
            },
            [size, msize] => PoolStats {
                data_size: number(size)? as u64,
                data_percent: None,
                meta_size: number(msize)? as u64,
                meta_percent: None,
            },
            _ => anyhow::bail!("expected 4 (or 2) numbers, got {:?}", stdout.trim()),
        })
    }

    /// `Free LVM data space` and `Free LVM metadata space`.
    fn rows(&self) -> [UsageRow; 2] {
        let row = |label: &str, size: u64, used: Option<f64>| {
            let free_pct = used.map(|p| (100.0 - p).clamp(0.0, 100.0));
            UsageRow {
                label: label.to_string(),
                free: free_pct.map(|p| (size as f64 * p / 100.0) as u64),
                bytes: true,
                free_percent: free_pct,
            }
        };
        [
            row("Free LVM data space", self.data_size, self.data_percent),
            row("Free LVM metadata space", self.meta_size, self.meta_percent),
        ]
    }
}

impl SnapshotBackend for Lvm {
    fn list(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
        let out = self
            .tools
            .run(&mut self.lvs(&["--noheadings", "-o", "vg_name,lv_name", &format!("@{TAG}")]))
            .context("couldn't list snapshot LVs")?;
        let mut names = Vec::new();
        for (vg, lv) in parse_vg_lv(&String::from_utf8_lossy(&out.stdout))? {
            if vg != self.vg {
                tracing::warn!(
                    "skipping snapshot LV {vg}/{lv}: it is not in volume group {} of backup-lv",
                    self.vg
                );
                continue;
            }
            match lv.parse::<SnapshotName>() {
                Ok(name) => names.push(name),
                Err(err) => tracing::warn!("skipping LV {vg}/{lv} tagged {TAG}: {err}"),
            }
        }
        names.sort();
        Ok(names)
    }

    fn next_name(&self, date: jiff::civil::Date) -> Result<SnapshotName, SnapshotError> {
        let names: Vec<SnapshotName> = self
            .lv_names()?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        Ok(SnapshotName::next_free(date, &names))
    }

    fn create(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        // lvcreate refuses an existing name by itself; only a failure costs a listing, to tell
        // `AlreadyExists` (any LV of the VG, tagged or not) from other errors.
        let origin = format!("{}/{}", self.vg, self.lv);
        let name_arg = name.to_string();
        let mut cmd = self.tools.sudo([
            "lvcreate", "-s", &origin, "-p", "r", "-n", &name_arg, "--addtag", TAG,
        ]);
        match self.tools.run(&mut cmd) {
            Ok(_) => Ok(()),
            Err(err) => {
                if self.lv_names().is_ok_and(|names| names.contains(&name_arg)) {
                    return Err(SnapshotError::AlreadyExists(*name));
                }
                Err(anyhow::Error::new(err)
                    .context(format!("creating snapshot LV {}", self.lv_path(name)))
                    .into())
            }
        }
    }

    fn remove(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        self.require(name)?;
        if self.is_mounted_at(&self.mountpoint(name))? {
            self.unmount(name)?;
        }
        let lv = self.lv_path(name);
        self.tools
            .run(&mut self.tools.sudo(["lvremove", "--force", &lv]))
            .with_context(|| format!("removing snapshot LV {lv}"))?;
        Ok(())
    }

    fn mount(&self, name: &SnapshotName) -> Result<PathBuf, SnapshotError> {
        let mountpoint = self.mountpoint(name);
        if self.is_mounted_at(&mountpoint)? {
            return Ok(mountpoint);
        }
        self.require(name)?;
        fs::create_dir_all(&mountpoint)
            .with_context(|| format!("creating mount point {}", mountpoint.display()))?;
        let lv = self.lv_path(name);
        let device = format!("/dev/{lv}");
        let result = self
            .tools
            .run(&mut self.tools.sudo(["lvchange", "-a", "y", "-K", &lv]))
            .with_context(|| format!("activating snapshot LV {lv}"))
            .and_then(|_| {
                let mut cmd = self.tools.sudo(["mount", "-o", "ro"]);
                cmd.arg(&device).arg(&mountpoint);
                self.tools
                    .run(&mut cmd)
                    .with_context(|| format!("mounting {device} on {}", mountpoint.display()))
            });
        if let Err(err) = result {
            let _ = fs::remove_dir(&mountpoint); // §5.6 step 4
            return Err(err.into());
        }
        Ok(mountpoint)
    }

    fn unmount(&self, name: &SnapshotName) -> Result<(), SnapshotError> {
        let mountpoint = self.mountpoint(name);
        if !self.is_mounted_at(&mountpoint)? {
            self.require(name)?;
            let _ = fs::remove_dir(&mountpoint); // a stale, empty mount point
            return Ok(());
        }
        let mut cmd = self.tools.sudo(["umount"]);
        cmd.arg(&mountpoint);
        self.tools
            .run(&mut cmd)
            .with_context(|| format!("unmounting {}", mountpoint.display()))?;
        // §5.7: the status is ignored; this fails when the LV is mounted elsewhere too.
        let lv = self.lv_path(name);
        match self
            .tools
            .run(&mut self.tools.sudo(["lvchange", "-a", "n", &lv]))
        {
            Ok(_) => {}
            Err(err) => tracing::info!("leaving snapshot LV {lv} active: {err}"),
        }
        match fs::remove_dir(&mountpoint) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("removing mount point {}", mountpoint.display()))
                .into()),
        }
    }

    fn mounted(&self) -> Result<Vec<SnapshotName>, SnapshotError> {
        let dir = self.root.join("Snapshots");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("listing {}", dir.display()))
                    .into());
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            if let Ok(name) = entry.file_name().to_string_lossy().parse::<SnapshotName>()
                && self.is_mounted_at(&entry.path())?
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn usage(&self) -> Result<Vec<UsageRow>, SnapshotError> {
        let mut rows = filesystem_rows(&self.root)?;
        rows.extend(self.pool_rows()?);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tools::fake::{FakeRunner, tools};
    use std::sync::Arc;

    const LIST: &str = "LC_ALL=C sudo lvs --noheadings -o vg_name,lv_name @backup-snapshot";
    const NAMES: &str = "LC_ALL=C sudo lvs --noheadings -o lv_name vg0";
    const POOL: &str = "LC_ALL=C sudo lvs --noheadings -o pool_lv vg0/backup";
    const STATS: &str = "LC_ALL=C sudo lvs --noheadings --nosuffix --units b \
                         -o lv_size,data_percent,lv_metadata_size,metadata_percent vg0/pool";

    fn name(s: &str) -> SnapshotName {
        s.parse().unwrap()
    }

    /// A backend on a temp ROOT whose commands are answered by `respond`.
    fn backend(
        respond: impl Fn(&str) -> (i32, String) + Send + Sync + 'static,
    ) -> (Lvm, Arc<FakeRunner>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new(respond);
        (
            Lvm::with_tools(dir.path(), "vg0", "backup", tools(runner.clone())),
            runner,
            dir,
        )
    }

    fn ok(stdout: &str) -> (i32, String) {
        (0, stdout.to_string())
    }

    #[test]
    fn list_runs_the_original_argv_and_sorts_by_date_and_revision() {
        let (lvm, runner, _dir) =
            backend(|_| ok("  vg0 20240101-9\n  vg0 20240101-10\n  vg0 20231231-1\n\n"));
        let names = lvm.list().unwrap();
        assert_eq!(
            names,
            [name("20231231-1"), name("20240101-9"), name("20240101-10")]
        );
        assert_eq!(runner.calls(), [LIST]);
    }

    #[test]
    fn bug_10_foreign_names_and_other_vgs_are_skipped() {
        let (lvm, _, _dir) =
            backend(|_| ok("  vg0 junk\n  vg0 20240101-1\n  vg0 20240101\n  othervg 20240102-1\n"));
        assert_eq!(lvm.list().unwrap(), [name("20240101-1")]);
    }

    #[test]
    fn a_failing_lvs_is_an_error_naming_what_failed() {
        let (lvm, _, _dir) = backend(|_| (5, String::new()));
        let err = format!("{:#}", lvm.list().unwrap_err());
        assert!(
            err.contains("couldn't list snapshot LVs") && err.contains("status 5"),
            "{err}"
        );
    }

    #[test]
    fn create_runs_lvcreate_and_a_failure_on_an_existing_name_is_already_exists() {
        const CREATE: &str =
            "sudo lvcreate -s vg0/backup -p r -n 20240101-1 --addtag backup-snapshot";
        let (lvm, runner, _dir) = backend(|line| match line {
            NAMES => ok("  backup\n  pool\n  20240101-1\n"),
            CREATE => (5, String::new()), // lvcreate refuses the existing name
            _ => ok(""),
        });
        lvm.create(&name("20240101-2")).unwrap();
        assert_eq!(
            runner.calls(),
            ["sudo lvcreate -s vg0/backup -p r -n 20240101-2 --addtag backup-snapshot"]
        );
        assert!(matches!(
            lvm.create(&name("20240101-1")),
            Err(SnapshotError::AlreadyExists(_))
        ));
        assert_eq!(runner.calls()[1..], [CREATE, NAMES]);
    }

    #[test]
    fn a_failed_lvcreate_of_a_new_name_is_an_error_with_its_argv() {
        let (lvm, _, _dir) = backend(|line| match line {
            NAMES => ok("  backup\n  pool\n"),
            _ => (3, String::new()),
        });
        let err = lvm.create(&name("20240101-1")).unwrap_err();
        assert!(matches!(err, SnapshotError::Other(_)), "{err:#}");
        let text = format!("{err:#}");
        assert!(
            text.contains("creating snapshot LV vg0/20240101-1") && text.contains("status 3"),
            "{text}"
        );
    }

    #[test]
    fn bug_12_next_name_counts_untagged_lvs_and_a_failed_listing_is_not_free() {
        let (lvm, runner, _dir) = backend(|line| match line {
            NAMES => ok("  backup\n  pool\n  20240101-1\n  20240101-2\n  20240102-5\n"),
            _ => (99, String::new()),
        });
        let day = name("20240101-1").date;
        assert_eq!(lvm.next_name(day).unwrap(), name("20240101-3"));
        assert_eq!(runner.calls(), [NAMES]);

        let (broken, _, _dir) = backend(|_| (1, String::new())); // e.g. sudo misconfigured
        assert!(broken.next_name(day).is_err());
        assert!(broken.create(&name("20240101-1")).is_err());
    }

    #[test]
    fn remove_runs_lvremove_and_refuses_unknown_names() {
        let (lvm, runner, _dir) = backend(|line| match line {
            LIST => ok("  vg0 20240101-1\n"),
            _ => ok(""),
        });
        lvm.remove(&name("20240101-1")).unwrap();
        assert_eq!(
            runner.calls(),
            [LIST, "sudo lvremove --force vg0/20240101-1"]
        );
        assert!(matches!(
            lvm.remove(&name("20240101-2")),
            Err(SnapshotError::NotFound(_))
        ));
    }

    #[test]
    fn mount_activates_then_mounts_read_only() {
        let (lvm, runner, dir) = backend(|line| match line {
            LIST => ok("  vg0 20240101-1\n"),
            _ => ok(""),
        });
        let path = lvm.mount(&name("20240101-1")).unwrap();
        let mp = dir.path().join("Snapshots/20240101-1");
        assert_eq!(path, mp);
        assert_eq!(
            runner.calls(),
            [
                LIST.to_string(),
                "sudo lvchange -a y -K vg0/20240101-1".to_string(),
                format!("sudo mount -o ro /dev/vg0/20240101-1 {}", mp.display()),
            ]
        );
        assert!(
            mp.is_dir(),
            "the mount point stays after a successful mount"
        );
    }

    #[test]
    fn a_failed_mount_removes_the_mount_point() {
        let (lvm, _, dir) = backend(|line| match line {
            LIST => ok("  vg0 20240101-1\n"),
            l if l.starts_with("sudo mount") => (32, String::new()),
            _ => ok(""),
        });
        let err = format!("{:#}", lvm.mount(&name("20240101-1")).unwrap_err());
        assert!(err.contains("mounting /dev/vg0/20240101-1"), "{err}");
        assert!(!dir.path().join("Snapshots/20240101-1").exists());
        assert!(matches!(
            lvm.mount(&name("20240102-1")),
            Err(SnapshotError::NotFound(_))
        ));
    }

    #[test]
    fn unmounting_what_is_not_mounted_runs_nothing_but_the_existence_check() {
        let (lvm, runner, dir) = backend(|line| match line {
            LIST => ok("  vg0 20240101-1\n"),
            _ => (1, String::new()),
        });
        fs::create_dir_all(dir.path().join("Snapshots/20240101-1")).unwrap();
        lvm.unmount(&name("20240101-1")).unwrap();
        assert_eq!(runner.calls(), [LIST]);
        assert!(
            !dir.path().join("Snapshots/20240101-1").exists(),
            "stale mount point removed"
        );
        assert!(matches!(
            lvm.unmount(&name("20240109-1")),
            Err(SnapshotError::NotFound(_))
        ));
        // Plain directories on ROOT's own device are not mounted snapshots (BUG-13's list).
        fs::create_dir_all(dir.path().join("Snapshots/20240102-1")).unwrap();
        assert!(lvm.mounted().unwrap().is_empty());
    }

    #[test]
    fn usage_adds_the_pool_rows_to_the_filesystem_rows() {
        let (lvm, runner, _dir) = backend(|line| match line {
            POOL => ok("  pool\n"),
            STATS => ok("  1073741824 25.00 4194304 50.00\n"),
            _ => (1, String::new()),
        });
        let rows = lvm.usage().unwrap();
        assert_eq!(runner.calls(), [POOL, STATS]);
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Free filesystem space",
                "Free inodes",
                "Free LVM data space",
                "Free LVM metadata space"
            ]
        );
        assert_eq!(rows[2].free, Some(805306368));
        assert_eq!(rows[2].free_percent, Some(75.0));
        assert_eq!(rows[3].free, Some(2097152));
        assert_eq!(rows[3].free_percent, Some(50.0));
    }

    #[test]
    fn a_non_thin_backup_lv_is_a_clear_error() {
        let (lvm, _, _dir) = backend(|line| match line {
            POOL => ok("  \n"),
            _ => (1, String::new()),
        });
        let err = format!("{:#}", lvm.usage().unwrap_err());
        assert!(err.contains("not a thin volume"), "{err}");
    }

    #[test]
    fn pool_stats_parse_active_and_inactive_pools() {
        // An inactive pool (real lvm2 2.03.16 output, test-infra.md §2): percentages empty.
        let inactive = PoolStats::parse("  629145600        4194304       \n").unwrap();
        assert_eq!(inactive.data_size, 629145600);
        assert_eq!(inactive.data_percent, None);
        let rows = inactive.rows();
        assert_eq!((rows[0].free, rows[0].free_percent), (None, None));
        let active = PoolStats::parse("  629145600 100.00 4194304 0.00").unwrap();
        assert_eq!(active.rows()[0].free, Some(0));
        assert_eq!(active.rows()[0].free_percent, Some(0.0));
        assert_eq!(active.rows()[1].free_percent, Some(100.0));
        for bad in ["", "1 2 3", "12,5 1 2 3", "x 1"] {
            assert!(PoolStats::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
