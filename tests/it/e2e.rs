//! End to end, as an admin runs it: the real `deltaic` binary backs up hosts through a real
//! sshd on 127.0.0.1 into a btrfs subvolume on a loop device (`snapshot-backend: btrfs`), and
//! the tests check what the admin relies on: the data with its metadata (`--fake-super` xattrs,
//! core-rsync-coda.md §9.6), the read-only snapshot and whether its run was complete (§5.9), the
//! unit logs (§4.4), the run manifest; a failing host; a crash in the middle of a transfer and
//! one while the snapshot is being taken; the run lock between two real processes; prune on real
//! snapshots (§6); and the README's quickstart script.

use crate::harness::btrfs::BtrfsLoop;
use crate::harness::deltaic::{
    Deltaic, finish, is_timestamped, manifest, run_record, today, unit_logs,
};
use crate::harness::sshd::{HOSTS, Sshd};
use crate::harness::{process, require, tree};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOST1: &str = HOSTS[0];
const HOST2: &str = HOSTS[1];
const MIB: usize = 1 << 20;

/// One test's installation: ROOT is the subvolume `root` of a fresh btrfs, snapshots go to
/// `snapshots` beside it; source trees and the config live in a temp directory; a private sshd
/// serves `host1.example.test` and `host2.example.test` (or no sshd, for local hosts only).
struct World {
    dir: tempfile::TempDir,
    fs: BtrfsLoop,
    sshd: Option<Sshd>,
}

impl World {
    /// An installation backing up over sshd; `None` after a loud skip.
    fn start() -> Option<World> {
        let sshd = Sshd::start()?;
        World::on(Some(sshd))
    }

    /// An installation for `local: true` hosts only (no ssh); `None` after a loud skip.
    fn local() -> Option<World> {
        if !require::service("rsync", require::program_exists("rsync")) {
            return None;
        }
        World::on(None)
    }

    fn on(sshd: Option<Sshd>) -> Option<World> {
        let fs = BtrfsLoop::start()?;
        fs.subvolume("root");
        let dir = tempfile::Builder::new()
            .prefix("deltaic-e2e")
            .tempdir()
            .unwrap();
        Some(World { dir, fs, sshd })
    }

    fn root(&self) -> PathBuf {
        self.fs.path().join("root")
    }

    fn snapshot(&self, name: &str) -> PathBuf {
        self.fs.path().join("snapshots").join(name)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new, empty source directory `name` (the "remote" tree of a host).
    fn source(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        fs::create_dir(&path).unwrap();
        path
    }

    /// Writes the config: btrfs snapshots, two rsync workers, no scrubs, `*.tmp` excluded,
    /// then `settings` lines (indented by two) and the `rsync:` body `hosts`.
    fn config(&self, settings: &str, hosts: &str) {
        let text = format!(
            "settings:\n  root: {root}\n  snapshot-backend: btrfs\n  snapshot-dir: {snaps}\n  \
             rsync-workers: 2\n  rsync-scrub-probability: 0\n  rsync-exclude: ['*.tmp']\n\
             {settings}rsync:\n{hosts}",
            root = self.root().display(),
            snaps = self.fs.path().join("snapshots").display(),
        );
        fs::write(self.path("deltaic.conf"), text).unwrap();
    }

    /// The binary on this installation's config, with ssh through the private sshd.
    fn deltaic(&self) -> Deltaic {
        let deltaic = Deltaic::new(&self.path("deltaic.conf"));
        match &self.sshd {
            Some(sshd) => deltaic.env("DELTAIC_SSH", sshd.ssh_program()),
            // Local hosts never use ssh: make any attempt fail.
            None => deltaic.env("DELTAIC_SSH", "false"),
        }
    }

    /// `deltaic ls`.
    fn ls(&self) -> String {
        self.deltaic().expect(["ls"], 0).stdout
    }
}

/// One host of the `rsync:` section backing up `mount`, plus `extra` lines (indented by four).
fn host(name: &str, mount: &Path, extra: &str) -> String {
    format!("  {name}:\n    mounts: [{}]\n{extra}", mount.display())
}

/// Where `path` of the host with `alias` lands under `top` (ROOT or a snapshot): `-R` keeps
/// the full path.
fn backup_of(top: &Path, alias: &str, path: &Path) -> PathBuf {
    top.join("rsync")
        .join(alias)
        .join(path.strip_prefix("/").unwrap())
}

/// Files a backup must not keep: atomic-write temporaries (`.backup-tmp*`) anywhere in `top`,
/// and rsync's temporaries (`.NAME.XXXXXX`) or any other dot file under `top/rsync` (the source
/// trees of these tests have none).
fn strays(top: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, under_rsync: bool, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".backup-tmp") || (under_rsync && name.starts_with('.')) {
                out.push(path.clone());
            }
            if entry.file_type().unwrap().is_dir() {
                walk(&path, under_rsync || name == "rsync", out);
            }
        }
    }
    let mut out = Vec::new();
    walk(top, false, &mut out);
    out
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `count` files `bigN` of `len` incompressible bytes (seeds `seed`, `seed + 1`, ...).
fn big_files(dir: &Path, count: u64, len: usize, seed: u64) {
    for i in 0..count {
        fs::write(
            dir.join(format!("big{}", i + 1)),
            tree::noise(len, seed + i),
        )
        .unwrap();
    }
}

/// The `Starting`/`Ending` lines of `units` on stdout, and nothing else.
fn assert_starting_and_ending(stdout: &str, units: &[&str]) {
    for unit in units {
        for word in ["Starting", "Ending  "] {
            assert!(
                stdout
                    .lines()
                    .any(|l| is_timestamped(l, &format!("{word} {unit}"))),
                "no `{word} {unit}` line:\n{stdout}"
            );
        }
    }
    assert_eq!(stdout.lines().count(), 2 * units.len(), "{stdout}");
}

/// Asserts a unit log's frame: `# Starting task at TIME`, `# <child argv>` ending with
/// `rsync backup HOST`, and the footer `# Task exited with status STATUS`, `# Ending task at
/// TIME` and a blank line.
fn assert_log_frame(log: &str, host: &str, status: i32) {
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 5, "{log}");
    let start = lines[0]
        .strip_prefix("# Starting task at ")
        .unwrap_or_else(|| panic!("no header:\n{log}"));
    assert!(is_timestamped(&format!("{start} x"), "x"), "{log}");
    assert!(
        lines[1].starts_with("# ")
            && lines[1].ends_with(&format!(" --allow-root rsync backup {host}")),
        "{log}"
    );
    let n = lines.len();
    assert_eq!(lines[n - 3], format!("# Task exited with status {status}"));
    let end = lines[n - 2]
        .strip_prefix("# Ending task at ")
        .unwrap_or_else(|| panic!("no footer:\n{log}"));
    assert!(is_timestamped(&format!("{end} x"), "x"), "{log}");
    assert!(log.ends_with("\n\n"), "{log:?}");
}

fn erofs() -> Option<i32> {
    Some(rustix::io::Errno::ROFS.raw_os_error())
}

#[test]
fn run_backs_up_two_hosts_with_metadata_logs_manifest_and_a_read_only_snapshot() {
    let Some(w) = World::start() else { return };
    let (one, two) = (w.source("one"), w.source("two"));
    tree::populate_metadata_tree(&one);
    tree::populate_metadata_tree(&two);
    fs::write(two.join("only-on-two"), "two\n").unwrap();
    let skip_one = format!("    exclude: ['{}/skipme']\n", one.display());
    w.config(
        "",
        &(host(HOST1, &one, &skip_one) + &host(HOST2, &two, "    alias: octopus\n")),
    );
    let ran = w.deltaic().expect(["run"], 0);
    assert_starting_and_ending(&ran.stdout, &["rsync/host1", "rsync/octopus"]);
    assert_eq!(ran.stderr, "", "a clean run says nothing on stderr");

    // Both trees, with their metadata, each in its own unit directory.
    let root = w.root();
    tree::assert_fake_super_copy(&backup_of(&root, "host1", &one));
    tree::assert_fake_super_copy(&backup_of(&root, "octopus", &two));
    assert!(!backup_of(&root, "host1", &one.join("skipme")).exists());
    assert_eq!(
        fs::read_to_string(backup_of(&root, "octopus", &two.join("skipme/secret"))).unwrap(),
        "excluded for this host"
    );
    assert_eq!(
        fs::read_to_string(backup_of(&root, "octopus", &two.join("only-on-two"))).unwrap(),
        "two\n"
    );
    assert!(!backup_of(&root, "host1", &one.join("only-on-two")).exists());
    assert!(
        !root.join("rsync/host2").exists(),
        "the alias names the directory"
    );

    // One snapshot, complete, in `ls` and `ls --json`.
    let snap = today(1);
    assert_eq!(w.ls(), format!("{snap} complete\n"));
    let listed: serde_json::Value =
        serde_json::from_str(&w.deltaic().expect(["ls", "--json"], 0).stdout).unwrap();
    assert_eq!(listed, json!([{"name": snap, "complete": true}]));

    // The snapshot is where `mount` says, holds the same data and metadata, and is read-only.
    let frozen = w.snapshot(&snap);
    assert_eq!(
        w.deltaic().expect(["mount", &snap], 0).stdout,
        format!("{}\n", frozen.display())
    );
    tree::assert_fake_super_copy(&backup_of(&frozen, "host1", &one));
    tree::assert_fake_super_copy(&backup_of(&frozen, "octopus", &two));
    let plain = backup_of(&frozen, "host1", &one.join("plain.txt"));
    let err = fs::write(frozen.join("new-file"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), erofs(), "{err}");
    let err = fs::OpenOptions::new()
        .append(true)
        .open(&plain)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), erofs(), "{err}");
    let err = xattr::set(&plain, "user.rsync.%stat", b"100644 0,0 0:0").unwrap_err();
    assert_eq!(err.raw_os_error(), erofs(), "{err}");
    let err = fs::remove_file(&plain).unwrap_err();
    assert_eq!(err.raw_os_error(), erofs(), "{err}");

    // The unit logs: header, the rsync command and its itemized changes, footer.
    for (unit, host) in [("rsync/host1", HOST1), ("rsync/octopus", HOST2)] {
        let (out, err) = unit_logs(&root, unit);
        assert_log_frame(&out, host, 0);
        assert_log_frame(&err, host, 0);
        assert!(out.lines().any(|l| l.starts_with("rsync -aHRxi ")), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with(">f+++++++++ ") && l.ends_with("/plain.txt")),
            "{out}"
        );
        assert_eq!(err.lines().count(), 5, "nothing but the frame:\n{err}");
    }

    // The manifest: complete, naming the snapshot, both units ok with their figures; the same
    // as the snapshot's run record, and as the manifest inside the snapshot.
    let m = manifest(&root);
    assert_eq!(m["complete"], true, "{m}");
    assert_eq!(m["snapshot"], snap.as_str(), "{m}");
    assert!(m["started"].as_str().unwrap() <= m["finished"].as_str().unwrap());
    let units = m["units"].as_array().unwrap();
    assert_eq!(units.len(), 2, "{m}");
    // host1: plain.txt, setuid, owned, hard1 (hard2 is a link), cache/keep; octopus also
    // skipme/secret and only-on-two. Symlinks are not data transfers.
    let expected = [
        ("rsync/host1", 5, 6 + 10 + 14 + 7 + 4),
        ("rsync/octopus", 7, 6 + 10 + 14 + 7 + 4 + 22 + 4),
    ];
    for (unit, (name, files, bytes)) in units.iter().zip(expected) {
        assert_eq!(unit["unit"], name, "{m}");
        assert_eq!(unit["status"], "ok", "{unit}");
        assert_eq!(unit["exit_code"], 0, "{unit}");
        assert_eq!(unit["files_transferred"], files, "{unit}");
        assert_eq!(unit["bytes_transferred"], bytes, "{unit}");
        assert_eq!(unit["scrubbed"], false, "{unit}");
    }
    assert_eq!(run_record(&root, &snap), m);
    assert_eq!(manifest(&frozen), m, "the snapshot carries its own record");
    assert!(!root.join(".deltaic/unit-reports").exists());
    assert_eq!(strays(&root), Vec::<PathBuf>::new());
}

#[test]
fn a_failing_host_fails_the_run_but_the_other_is_backed_up_and_the_snapshot_is_partial() {
    let Some(w) = World::start() else { return };
    let good = w.source("good");
    tree::populate_metadata_tree(&good);
    let missing = w.path("not-on-the-host");
    w.config(
        "",
        &(host(HOST1, &good, "") + &host(HOST2, &missing, "    alias: octopus\n")),
    );
    let ran = w.deltaic().expect(["run"], 1);
    assert_starting_and_ending(&ran.stdout, &["rsync/host1", "rsync/octopus"]);

    // stderr: one Failed block, for the failing unit, with its command and log excerpt.
    let lines: Vec<&str> = ran.stderr.lines().collect();
    let failed: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("Failed:"))
        .collect();
    assert_eq!(failed.len(), 1, "{}", ran.stderr);
    let at = failed[0];
    assert!(
        is_timestamped(lines[at], "Failed:  rsync/octopus"),
        "{}",
        ran.stderr
    );
    assert!(
        lines[at + 1].starts_with("   /")
            && lines[at + 1].ends_with(&format!(" rsync backup {HOST2}")),
        "{}",
        ran.stderr
    );
    let excerpt: Vec<&str> = lines[at + 2..]
        .iter()
        .take_while(|l| l.starts_with("   "))
        .copied()
        .collect();
    assert!(
        excerpt
            .iter()
            .any(|l| l.contains(&missing.display().to_string())),
        "the excerpt names the missing path:\n{}",
        ran.stderr
    );
    // The unit (`deltaic rsync backup`) says why it failed, and exits 1.
    assert!(
        excerpt.iter().any(|l| l.ends_with(&format!(
            "error: rsync backup of {HOST2} failed: rsync exited with status 23 (partial \
             transfer due to error; see the error log for the files)"
        ))),
        "{}",
        ran.stderr
    );
    assert!(
        excerpt.contains(&"   # Task exited with status 1"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("deltaic run: 1 of 2 units failed (rsync/octopus)"),
        "{}",
        ran.stderr
    );

    // The good host is backed up; the snapshot is taken anyway and marked partial.
    let root = w.root();
    tree::assert_fake_super_copy(&backup_of(&root, "host1", &good));
    let snap = today(1);
    assert_eq!(w.ls(), format!("{snap} partial\n"));
    tree::assert_fake_super_copy(&backup_of(&w.snapshot(&snap), "host1", &good));
    let (_, err) = unit_logs(&root, "rsync/octopus");
    assert_log_frame(&err, HOST2, 1);

    // The manifest: partial, one unit ok, one failed.
    let m = manifest(&root);
    assert_eq!(m["complete"], false, "{m}");
    assert_eq!(m["snapshot"], snap.as_str(), "{m}");
    let units: Vec<(&str, &str, i64)> = m["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["unit"].as_str().unwrap(),
                u["status"].as_str().unwrap(),
                u["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        units,
        [("rsync/host1", "ok", 0), ("rsync/octopus", "failed", 1)]
    );
    assert_eq!(run_record(&root, &snap), m);
    assert_eq!(manifest(&w.snapshot(&snap)), m);
}

#[test]
fn a_run_killed_mid_transfer_like_a_power_loss_keeps_the_last_snapshot_and_the_rerun_converges() {
    let Some(w) = World::start() else { return };
    // The first run backs up the old content and snapshots it.
    let src = w.source("data");
    big_files(&src, 3, 6 * MIB, 1);
    fs::write(src.join("small"), "old\n").unwrap();
    let hosts = host(HOST1, &src, "");
    w.config("", &hosts);
    w.deltaic().expect(["run"], 0);
    let first = today(1);
    assert_eq!(w.ls(), format!("{first} complete\n"));
    // Keep the old content aside to compare against; the host gets new content (other sizes,
    // so rsync's quick check cannot miss it), loses a file and gains one.
    let old = w.path("old");
    fs::rename(&src, &old).unwrap();
    let src = w.source("data");
    big_files(&src, 3, 7 * MIB, 11);
    fs::write(src.join("fresh"), "new\n").unwrap();

    // A slow run (2000 KiB/s for 21 MiB: about 10 s), crashed once data is arriving.
    w.config("  rsync-bwlimit: 2000\n", &hosts);
    let mut run = w.deltaic().spawn(["run"]);
    let root = w.root();
    let dest = backup_of(&root, "host1", &src);
    // rsync --inplace rewrites `bigN` where it lies: new data is arriving once the first
    // 512 KiB of a backed-up file are the host's new ones.
    let head = |path: &Path| -> Vec<u8> {
        use std::io::Read;
        let mut buf = Vec::new();
        fs::File::open(path)
            .and_then(|f| f.take(512 * 1024).read_to_end(&mut buf))
            .map(|_| buf)
            .unwrap_or_default()
    };
    let arriving = || {
        (1..=3).any(|i| head(&dest.join(format!("big{i}"))) == head(&src.join(format!("big{i}"))))
    };
    wait_until("data to arrive in ROOT", Duration::from_secs(20), arriving);
    assert_eq!(process::crash(&mut run), 1, "one unit was running");

    // The crash came mid-transfer: some file of the live root is neither the old nor the new
    // one. No new snapshot was taken, and the last one is intact.
    let torn = (1..=3).any(|i| {
        let name = format!("big{i}");
        let backed = fs::read(dest.join(&name)).unwrap_or_default();
        backed != fs::read(old.join(&name)).unwrap() && backed != fs::read(src.join(&name)).unwrap()
    });
    assert!(torn, "the crash should come mid-transfer");
    assert_eq!(w.ls(), format!("{first} complete\n"));
    let before = w.snapshot(&first);
    tree::assert_same_contents(&backup_of(&before, "host1", &src), &old);
    assert_eq!(strays(&before), Vec::<PathBuf>::new());

    // A clean rerun is not refused by a stale lock, and converges.
    w.config("", &hosts);
    let ran = w.deltaic().expect(["run"], 0);
    assert!(!ran.stderr.contains("already running"), "{}", ran.stderr);
    tree::assert_same_contents(&dest, &src);
    assert_eq!(strays(&root), Vec::<PathBuf>::new());
    assert!(!root.join(".deltaic/unit-reports").exists());
    let second = today(2);
    assert_eq!(w.ls(), format!("{first} complete\n{second} complete\n"));
    tree::assert_same_contents(&backup_of(&w.snapshot(&second), "host1", &src), &src);
    tree::assert_same_contents(&backup_of(&before, "host1", &src), &old);
    let m = manifest(&root);
    assert_eq!(
        (&m["complete"], &m["snapshot"]),
        (&json!(true), &json!(second))
    );

    // The log shows three runs, the crashed one without a footer.
    let (out, _) = unit_logs(&root, "rsync/host1");
    assert_eq!(out.matches("# Starting task at ").count(), 3, "{out}");
    assert_eq!(
        out.matches("# Task exited with status 0").count(),
        2,
        "{out}"
    );
    assert_log_frame(&out, HOST1, 0);
}

#[test]
fn a_run_killed_alone_takes_its_units_down_at_once_and_an_immediate_rerun_converges() {
    let Some(w) = World::start() else { return };
    let src = w.source("data");
    big_files(&src, 3, 8 * MIB, 1);
    let hosts = host(HOST1, &src, "");
    // 24 MiB at 2000 KiB/s: about 12 s, far longer than the units may outlive the run.
    w.config("  rsync-bwlimit: 2000\n", &hosts);
    let mut run = w.deltaic().spawn(["run"]);
    let dest = backup_of(&w.root(), "host1", &src);
    let receiving =
        || (1..=3).any(|i| fs::metadata(dest.join(format!("big{i}"))).is_ok_and(|m| m.len() > 0));
    wait_until("data to arrive in ROOT", Duration::from_secs(20), receiving);
    let units = process::child_groups(run.id());
    assert_eq!(units.len(), 1, "one unit is running");
    assert!(
        process::live_members(units[0]).len() >= 2,
        "the unit's group holds the unit and its rsync"
    );

    // Only the run dies (as by the OOM killer), not the unit's group: the unit must stop by
    // itself, rsync and ssh with it, within a few seconds.
    process::kill_alone(&mut run);
    process::wait_groups_gone(&units, Duration::from_secs(6));
    let config = w.path("deltaic.conf").display().to_string();
    let mentioning: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&config) && c.contains("rsync backup"))
        .collect();
    assert_eq!(mentioning, Vec::<String>::new(), "unit processes are left");

    // An immediate rerun is refused by no lock, and converges.
    w.config("", &hosts);
    let ran = w.deltaic().expect(["run"], 0);
    assert_starting_and_ending(&ran.stdout, &["rsync/host1"]);
    tree::assert_same_contents(&dest, &src);
    assert_eq!(w.ls(), format!("{} complete\n", today(1)));
    assert_eq!(strays(&w.root()), Vec::<PathBuf>::new());
    // The killed run's unit says in its log why it stopped.
    let (_, err) = unit_logs(&w.root(), "rsync/host1");
    assert!(
        err.contains("terminating this unit and its processes"),
        "{err}"
    );
}

#[test]
fn a_run_crashed_while_snapshotting_leaves_no_snapshot_and_no_record_that_misleads_later() {
    let Some(w) = World::start() else { return };
    let good = w.source("good");
    fs::write(good.join("file"), "data\n").unwrap();
    let missing = w.path("not-on-the-host");
    w.config(
        "",
        &(host(HOST1, &good, "") + &host(HOST2, &missing, "    alias: octopus\n")),
    );
    // A btrfs that makes the snapshot, then hangs before deltaic can publish it.
    let marker = w.path("snapshotting");
    let slow_btrfs = w.path("slow-btrfs");
    fs::write(
        &slow_btrfs,
        format!(
            "#!/bin/sh\nbtrfs \"$@\" || exit\n[ \"$1 $2\" = 'subvolume snapshot' ] || exit 0\n\
             touch '{}'\nexec sleep 60\n",
            marker.display()
        ),
    )
    .unwrap();
    tree::chmod(&slow_btrfs, 0o755);
    let mut run = w.deltaic().env("DELTAIC_BTRFS", &slow_btrfs).spawn(["run"]);
    wait_until("the snapshot", Duration::from_secs(20), || marker.exists());
    assert_eq!(process::crash(&mut run), 0, "the units were done");

    // The half-made snapshot is not listed, though the crashed (partial) run recorded it.
    let snap = today(1);
    let snapdir = w.fs.path().join("snapshots");
    assert!(snapdir.join(format!(".tmp-{snap}")).exists());
    assert_eq!(w.ls(), "");
    assert_eq!(run_record(&w.root(), &snap)["complete"], false);

    // A manual snapshot takes that free name, with its own record instead of the crashed run's:
    // partial, because host2 failed its last run (its data may be torn), and the leftover is
    // gone.
    let manual = w.deltaic().expect(["snapshot"], 0);
    assert_eq!(manual.stdout, format!("{snap}\n"));
    assert!(
        manual.stderr.contains(&format!(
            "snapshot {snap} recorded as partial: 1 unit did not succeed in its last run or \
             never ran (rsync/octopus)"
        )),
        "{}",
        manual.stderr
    );
    let record = run_record(&w.root(), &snap);
    assert_eq!(
        (
            &record["manual_snapshot"],
            &record["units"],
            &record["units_not_ok"]
        ),
        (&json!(true), &json!([]), &json!(["rsync/octopus"])),
        "{record}"
    );
    assert_eq!(w.ls(), format!("{snap} partial\n"));
    let entries: Vec<String> = fs::read_dir(&snapdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, [snap.as_str()]);

    // The next run snapshots normally, recorded as partial (host2 still fails).
    w.deltaic().expect(["run"], 1);
    assert_eq!(w.ls(), format!("{snap} partial\n{} partial\n", today(2)));
}

#[test]
fn a_second_run_is_refused_while_the_first_holds_the_lock_and_the_first_completes() {
    let Some(w) = World::start() else { return };
    let src = w.source("data");
    big_files(&src, 3, 2 * MIB, 1);
    // 6 MiB at 2000 KiB/s: about 3 s.
    w.config("  rsync-bwlimit: 2000\n", &host(HOST1, &src, ""));
    let mut first = w.deltaic().spawn(["run"]);
    // Once rsync writes into ROOT, the run holds the run lock and its unit the host's lock.
    let dest = backup_of(&w.root(), "host1", &src);
    let receiving = || {
        fs::read_dir(&dest).is_ok_and(|mut entries| {
            entries.any(|e| {
                let e = e.unwrap();
                e.file_name().to_string_lossy().starts_with("big")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
    };
    wait_until(
        "the first run's transfer",
        Duration::from_secs(20),
        receiving,
    );

    let second = w.deltaic().expect(["run"], 1);
    assert!(
        second
            .stderr
            .contains("another deltaic backup is already running"),
        "{}",
        second.stderr
    );
    assert_eq!(second.stdout, "", "the second run started no unit");
    // A manual backup (of any host) is refused while the run holds the backup lock, and so is
    // a manual snapshot.
    let manual = w.deltaic().expect(["rsync", "backup", HOST1], 1);
    assert!(
        manual
            .stderr
            .contains("a deltaic run or snapshot is in progress; try again when it ends"),
        "{}",
        manual.stderr
    );
    let snapshot = w.deltaic().expect(["snapshot"], 1);
    assert!(
        snapshot
            .stderr
            .contains("another deltaic backup is already running"),
        "{}",
        snapshot.stderr
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run must still be running, or the refusals prove nothing"
    );

    let done = finish(first, Duration::from_secs(30));
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    assert_starting_and_ending(&done.stdout, &["rsync/host1"]);
    tree::assert_same_contents(&dest, &src);
    assert_eq!(w.ls(), format!("{} complete\n", today(1)));
    let (out, _) = unit_logs(&w.root(), "rsync/host1");
    assert_eq!(out.matches("# Starting task at ").count(), 1, "{out}");
}

#[test]
fn prune_keeps_todays_btrfs_snapshots_simulates_later_and_removes_for_real() {
    let Some(w) = World::local() else { return };
    fs::write(w.root().join("file"), "content\n").unwrap();
    let missing = w.path("missing");
    // No unit configured yet: manual snapshots are complete.
    w.config("", "");
    let (s1, s2, s3) = (today(1), today(2), today(3));
    assert_eq!(
        w.deltaic().expect(["snapshot"], 0).stdout,
        format!("{s1}\n")
    );
    assert_eq!(
        w.deltaic().expect(["snapshot"], 0).stdout,
        format!("{s2}\n")
    );
    // A run whose only host fails still snapshots: the third one, partial.
    w.config(
        "",
        &host("self.example.test", &missing, "    local: true\n"),
    );
    w.deltaic().expect(["run"], 1);
    let listing = format!("{s1} complete\n{s2} complete\n{s3} partial\n");
    assert_eq!(w.ls(), listing);

    // Today's snapshots are all inside the duplicate window (14 days): all kept.
    let plan = w.deltaic().expect(["prune", "-n"], 0).stdout;
    let decisions: Vec<(&str, &str)> = plan
        .lines()
        .map(|l| {
            let mut words = l.splitn(3, ' ');
            (words.next().unwrap(), words.next().unwrap())
        })
        .collect();
    assert_eq!(
        decisions,
        [
            (s1.as_str(), "keep"),
            (s2.as_str(), "keep"),
            (s3.as_str(), "keep")
        ],
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "{s3} keep recent: every snapshot of the last 14 days"
        )),
        "{plan}"
    );
    w.deltaic().expect(["prune"], 0);
    assert_eq!(w.ls(), listing);
    for name in [&s1, &s2, &s3] {
        assert!(w.snapshot(name).is_dir(), "{name} was removed");
    }

    // `ls | prune --simulate --as-of` 60 days on: outside the duplicate window, one snapshot
    // stands for the day, the last complete one; nothing is touched.
    let later = jiff::ZonedDateTime::now()
        .date()
        .checked_add(jiff::Span::new().days(60))
        .unwrap();
    let mut simulate = w
        .deltaic()
        .command(["prune", "--simulate", "--as-of", &later.to_string()]);
    let simulated = pipe(&mut simulate, &listing);
    let day = jiff::ZonedDateTime::now().date();
    assert_eq!(
        simulated,
        format!(
            "{s1} remove day {day} is kept as {s2}\n\
             {s2} keep oldest: the oldest day is always kept\n\
             {s3} remove day {day} is kept as {s2}\n"
        )
    );
    assert_eq!(w.ls(), listing);

    // With no duplicate window, today's extra snapshots go now, for real: btrfs subvolumes
    // deleted, run records with them.
    w.config(
        "  gc-duplicate-days: 0\n",
        &host("self.example.test", &missing, "    local: true\n"),
    );
    let removed = w.deltaic().expect(["prune", "-v"], 0).stdout;
    assert_eq!(
        removed,
        format!("removed snapshot {s1}\nremoved snapshot {s3}\n")
    );
    assert_eq!(w.ls(), format!("{s2} complete\n"));
    let left: Vec<String> = fs::read_dir(w.fs.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [s2.as_str()]);
    assert_eq!(
        fs::read_to_string(w.snapshot(&s2).join("file")).unwrap(),
        "content\n"
    );
    assert!(!w.root().join(format!(".deltaic/runs/{s3}.json")).exists());
    assert_eq!(
        w.deltaic()
            .expect(["prune", "-n"], 0)
            .stdout
            .lines()
            .count(),
        1
    );
}

/// Runs `cmd` with `input` on stdin; asserts it exits 0 and returns its stdout.
fn pipe(cmd: &mut Command, input: &str) -> String {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_readme_quickstart_backs_up_a_directory_into_complete_snapshots() {
    let possible = require::program_exists("rsync") && require::program_exists("bash");
    if !require::service("rsync and bash for quickstart.sh", possible) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let work = dir.path().join("work");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "alpha\n").unwrap();
    fs::write(src.join("sub/b.txt"), "beta\n").unwrap();
    // DELTAIC_BIN must spare the build: a cargo first in PATH that fails proves it.
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(
        bin.join("cargo"),
        "#!/bin/sh\necho 'cargo must not run' >&2\nexit 97\n",
    )
    .unwrap();
    tree::chmod(&bin.join("cargo"), 0o755);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));

    let quickstart = || {
        let out = Command::new("./quickstart.sh")
            .arg(&src)
            .arg(&work)
            .current_dir(repo)
            .env("DELTAIC_BIN", env!("CARGO_BIN_EXE_deltaic"))
            .env("PATH", &path)
            .env_remove("DELTAIC_ALLOW_ROOT")
            .env_remove("DELTAIC_LOG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "quickstart.sh:\n{stdout}\n{stderr}");
        assert!(!stdout.contains("Building"), "{stdout}");
        stdout
    };
    let stdout = quickstart();
    let (s1, s2) = (today(1), today(2));
    assert!(stdout.contains(&format!("\n{s1} complete\n")), "{stdout}");
    let copy = |snap: &str| {
        work.join("snapshots")
            .join(snap)
            .join("rsync/quickstart")
            .join(src.strip_prefix("/").unwrap())
    };
    assert_eq!(
        fs::read_to_string(copy(&s1).join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        fs::read_to_string(copy(&s1).join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    // Its last lines list the latest snapshot's files.
    assert!(stdout.lines().any(|l| l == "a.txt"), "{stdout}");

    // Run again, as the README says: a second complete snapshot.
    let stdout = quickstart();
    assert!(
        stdout.contains(&format!("\n{s1} complete\n{s2} complete\n")),
        "{stdout}"
    );
    assert_eq!(
        fs::read_to_string(copy(&s2).join("sub/b.txt")).unwrap(),
        "beta\n"
    );
}
