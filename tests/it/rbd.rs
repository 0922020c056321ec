//! The rbd source against the real single-node Ceph (D12): the `deltaic` binary backs up images
//! that python3-rbd changes exactly (writes, whole-object discards, resizes), and every backup
//! is compared byte for byte with `rbd export` of the snapshot it records. Also: snapshot units,
//! the scrub (D6) through `deltaic run`, SIGKILL at every step of the two-phase update, a
//! truncated export through an `rbd` wrapper, restore, drop, and a base snapshot removed behind
//! Deltaic's back.

use crate::harness::ceph::{Ceph, unique_name};
use crate::harness::deltaic::{Deltaic, Ran};
use crate::harness::require;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};

const POOL: &str = "rbd";
const MIB: u64 = 1 << 20;
/// 64 KiB objects (order 16): whole-object discards are 64 KiB, librbd's discard granularity.
const ORDER: u64 = 16;
const OBJECT: u64 = 1 << ORDER;

/// python3-rbd driver: `CONF POOL IMAGE OPS_JSON`, where each op is `["create", size, order]`,
/// `["write", offset, len, seed]`, `["zeros", offset, len]`, `["discard", offset, len]` or
/// `["resize", size]`.
const DRIVER: &str = r#"
import json, random, sys, rados, rbd
conf, pool, image, ops = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
cluster = rados.Rados(conffile=conf); cluster.connect(timeout=20)
io = cluster.open_ioctx(pool)
features = (rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
            | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
for op in ops:
    if op[0] == "create":
        rbd.RBD().create(io, image, op[1], order=op[2], old_format=False, features=features)
        continue
    with rbd.Image(io, image) as img:
        if op[0] == "write":
            img.write(random.Random(op[3]).randbytes(op[2]), op[1])
        elif op[0] == "zeros":
            img.write(bytes(op[2]), op[1])
        elif op[0] == "discard":
            img.discard(op[1], op[2])
        elif op[0] == "resize":
            img.resize(op[1])
io.close(); cluster.shutdown()
"#;

/// An `rbd` wrapper (for `rbd-path`) that passes everything to the real one, except: with
/// FAULT_BYTES, an export-diff cut after that many bytes (exit 0); with FAULT_EXIT, an
/// export-diff whose rbd exits with that status; with FAULT_CREATE, a `snap create` that
/// creates the snapshot and then fails.
const FAULT_WRAPPER: &str = r#"#!/bin/sh
case "$*" in
*export-diff*)
  if [ -n "$FAULT_BYTES" ]; then rbd "$@" | head -c "$FAULT_BYTES"; exit 0; fi
  if [ -n "$FAULT_EXIT" ]; then rbd "$@"; exit "$FAULT_EXIT"; fi;;
*"snap create"*)
  if [ -n "$FAULT_CREATE" ]; then rbd "$@"; exit 5; fi;;
*"snap rm"*)
  case "$*" in *"${FAULT_RM:-no fault}"*)
    echo "rbd: simulated snap rm failure" >&2; exit 6;;
  esac;;
esac
exec rbd "$@"
"#;

/// One test's world: a backup root, a config, and the images it created (removed on drop).
struct RbdEnv {
    ceph: Ceph,
    dir: tempfile::TempDir,
    root: PathBuf,
    images: Vec<String>,
}

impl RbdEnv {
    /// `None` (after a loud skip) without Ceph or python3-rbd.
    fn new() -> Option<RbdEnv> {
        let ceph = Ceph::get()?;
        let python = std::process::Command::new("/usr/bin/python3")
            .args(["-c", "import rados, rbd"])
            .status()
            .is_ok_and(|s| s.success());
        if !require::service("python3-rbd for /usr/bin/python3", python) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backup");
        fs::create_dir(&root).unwrap();
        Some(RbdEnv {
            ceph,
            dir,
            root,
            images: Vec::new(),
        })
    }

    /// Writes the config: `images` and `snapshots` as (friendly, rbd name), plus settings.
    fn config(&self, images: &[(&str, &str)], snapshots: &[(&str, &str)], extra: &str) -> PathBuf {
        let map = |pairs: &[(&str, &str)]| {
            let inner: Vec<String> = pairs.iter().map(|(f, n)| format!("{f}: {n}")).collect();
            format!("{{{}}}", inner.join(", "))
        };
        let path = self.dir.path().join("deltaic.conf");
        let scrub = if extra.contains("rbd-scrub-probability") {
            ""
        } else {
            "  rbd-scrub-probability: 0\n"
        };
        let text = format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n  snapshot-dir: {}\n\
             {scrub}{extra}rbd:\n  {POOL}:\n    images: {}\n    snapshots: {}\n",
            self.root.display(),
            self.dir.path().join("snapshots").display(),
            map(images),
            map(snapshots)
        );
        fs::write(&path, text).unwrap();
        path
    }

    fn deltaic(&self) -> Deltaic {
        Deltaic::new(&self.dir.path().join("deltaic.conf")).env("CEPH_CONF", &self.ceph.conf)
    }

    /// A new image of `size` bytes with 64 KiB objects, removed when the test ends.
    fn create_image(&mut self, prefix: &str, size: u64) -> String {
        let image = unique_name(prefix);
        self.images.push(image.clone());
        self.drive(&image, &[json!(["create", size, ORDER])]);
        image
    }

    fn drive(&self, image: &str, ops: &[Value]) {
        let out = std::process::Command::new("/usr/bin/python3")
            .args(["-c", DRIVER])
            .arg(&self.ceph.conf)
            .args([POOL, image, &Value::Array(ops.to_vec()).to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python3-rbd {ops:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn file(&self, kind: &str, friendly: &str) -> PathBuf {
        self.root.join("rbd").join(POOL).join(kind).join(friendly)
    }

    /// `rbd export` of `image@snap` (or the image's head).
    fn export(&self, image: &str, snap: Option<&str>) -> Vec<u8> {
        let spec = match snap {
            Some(s) => format!("{POOL}/{image}@{s}"),
            None => format!("{POOL}/{image}"),
        };
        self.ceph
            .run("rbd", &["export", "--no-progress", &spec, "-"])
    }

    fn snapshots(&self, image: &str) -> Vec<String> {
        let list = self
            .ceph
            .json("rbd", &["snap", "ls", &format!("{POOL}/{image}")]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// The image's `backup-*` snapshots (Deltaic's).
    fn backup_snapshots(&self, image: &str) -> Vec<String> {
        let mut snaps = self.snapshots(image);
        snaps.retain(|s| s.starts_with("backup-"));
        snaps
    }

    /// `rbd snap rm POOL/IMAGE@SNAP`, behind Deltaic's back.
    fn remove_snapshot(&self, image: &str, snap: &str) {
        let spec = format!("{POOL}/{image}@{snap}");
        self.ceph
            .run("rbd", &["snap", "rm", "--no-progress", &spec]);
    }

    /// `deltaic rbd backup POOL vm`, SIGKILLed by itself at crash point `step`.
    fn crash_at(&self, step: &str) {
        let ran = self
            .deltaic()
            .env("DELTAIC_RBD_CRASH_AT", step)
            .run(["rbd", "backup", POOL, "vm"]);
        assert_eq!(ran.code, None, "{step}: killed\n{}", ran.stderr);
    }

    /// Asserts that the image unit `friendly` is a complete backup of `image` as it is now:
    /// byte-equal to the export of its recorded snapshot and of the head, no staged diff, and
    /// exactly the recorded `backup-*` snapshots on the image: the base, and the one before it
    /// when it is retired (removed by the next run).
    fn assert_backup_current(&self, friendly: &str, image: &str) {
        let path = self.file("images", friendly);
        let snap = xattr(&path, "user.rbd.snapshot").expect("user.rbd.snapshot is set");
        assert_eq!(xattr(&path, "user.rbd.pending-snapshot"), None);
        assert_eq!(xattr(&path, "user.rbd.creating-snapshot"), None);
        let retired = xattr(&path, "user.rbd.retired-snapshot");
        assert_ne!(retired.as_ref(), Some(&snap), "the base is not retired");
        let mut recorded: Vec<String> = retired.into_iter().chain([snap.clone()]).collect();
        recorded.sort();
        let mut backups = self.backup_snapshots(image);
        backups.sort();
        assert_eq!(backups, recorded, "exactly the recorded snapshots");
        assert!(!pending(&path).exists(), "no staged diff left");
        let file = fs::read(&path).unwrap();
        let want = self.export(image, Some(&snap));
        assert_eq!(file.len(), want.len(), "size");
        assert!(
            file == want,
            "backup of {image} differs from rbd export @{snap}"
        );
        assert!(
            file == self.export(image, None),
            "the head changed meanwhile"
        );
    }
}

impl Drop for RbdEnv {
    fn drop(&mut self) {
        for image in &self.images {
            delete_image(&self.ceph, &format!("{POOL}/{image}"), Ceph::output);
        }
    }
}

/// `rbd snap purge` and `rbd rm` of the image `spec` (POOL/IMAGE) through `run`
/// ([`Ceph::run`] to insist, [`Ceph::output`] to try).
fn delete_image<T>(ceph: &Ceph, spec: &str, run: impl Fn(&Ceph, &str, &[&str]) -> T) {
    run(ceph, "rbd", &["snap", "purge", "--no-progress", spec]);
    run(ceph, "rbd", &["rm", "--no-progress", spec]);
}

fn xattr(path: &Path, name: &str) -> Option<String> {
    xattr::get(path, name)
        .ok()
        .flatten()
        .map(|v| String::from_utf8(v).unwrap())
}

fn pending(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(".pending");
    path.with_file_name(name)
}

/// `deltaic rbd backup ARGS`, which must succeed and report no snapshot of its own as a stray
/// (only the test's `backup-foreign`, made behind its back, may be one).
fn backup(env: &RbdEnv, args: &[&str]) -> Ran {
    let mut all = vec!["rbd", "backup"];
    all.extend_from_slice(args);
    let ran = env.deltaic().expect(&all, 0);
    for stray in ran.stderr.lines().filter(|l| l.contains("does not record")) {
        assert!(
            stray.contains("does not record: backup-foreign ("),
            "a recorded snapshot reported as a stray: {stray}"
        );
    }
    ran
}

/// Random writes (some of zeros), whole-object discards, and sometimes a resize.
fn random_round(rng: &mut rand::rngs::StdRng, size: &mut u64) -> Vec<Value> {
    let mut ops = Vec::new();
    for _ in 0..rng.random_range(1..8) {
        let len = rng.random_range(1..3 * OBJECT);
        let offset = rng.random_range(0..*size - len);
        if rng.random_range(0..5) == 0 {
            ops.push(json!(["zeros", offset, len]));
        } else {
            ops.push(json!(["write", offset, len, rng.random::<u32>()]));
        }
    }
    for _ in 0..rng.random_range(0..3) {
        let objects = *size / OBJECT;
        let first = rng.random_range(0..objects);
        let count = rng.random_range(1..=4.min(objects - first));
        ops.push(json!(["discard", first * OBJECT, count * OBJECT]));
    }
    if rng.random_range(0..3) == 0 {
        *size = rng.random_range(4..24) * MIB / 2;
        ops.push(json!(["resize", *size]));
    }
    ops
}

#[test]
fn rounds_of_random_changes_are_each_backed_up_byte_for_byte() {
    let Some(mut env) = RbdEnv::new() else { return };
    let mut size = 8 * MIB;
    let image = env.create_image("rounds", size);
    env.config(&[("vm", &image)], &[], "");
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let path = env.file("images", "vm");
    for round in 0..6 {
        let ops = random_round(&mut rng, &mut size);
        env.drive(&image, &ops);
        let ran = backup(&env, &["rbd", "vm"]);
        assert!(
            ran.stdout
                .contains(if round == 0 { "whole" } else { "applied" }),
            "round {round}: {}",
            ran.stdout
        );
        env.assert_backup_current("vm", &image);
    }
    // A run without changes leaves the file alone (no write, same mtime).
    let before = fs::metadata(&path).unwrap().modified().unwrap();
    backup(&env, &["rbd", "vm"]);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);
    env.assert_backup_current("vm", &image);
    // A whole-object discard becomes a hole in the backup.
    env.drive(
        &image,
        &[
            json!(["write", 0, 4 * OBJECT, 7]),
            json!(["resize", 8 * MIB]),
        ],
    );
    backup(&env, &["rbd", "vm"]);
    let first_data = |p: &Path| {
        let file = fs::File::open(p).unwrap();
        match rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(0)) {
            Ok(at) => at,
            Err(rustix::io::Errno::NXIO) => u64::MAX,
            Err(e) => panic!("SEEK_DATA: {e}"),
        }
    };
    assert_eq!(first_data(&path), 0, "written data at the start");
    env.drive(&image, &[json!(["discard", 0, 4 * OBJECT])]);
    backup(&env, &["rbd", "vm"]);
    env.assert_backup_current("vm", &image);
    assert!(
        first_data(&path) >= 4 * OBJECT,
        "discarded objects are a hole"
    );
}

#[test]
fn scrub_through_deltaic_run_repairs_counts_and_reports_without_failing() {
    let Some(mut env) = RbdEnv::new() else { return };
    let image = env.create_image("scrub", 16 * MIB);
    env.drive(
        &image,
        &[
            json!(["write", 0, MIB, 1]),
            json!(["write", 8 * MIB, MIB, 2]),
        ],
    );
    // Planning from config: one image unit and one snapshot unit, scrubbed every time.
    env.ceph
        .run("rbd", &["snap", "create", &format!("{POOL}/{image}@gold")]);
    env.config(
        &[("vm", &image)],
        &[("gold", "gold")],
        "  rbd-scrub-probability: 1\n",
    );
    let run = env.deltaic().expect(["run"], 0);
    let manifest = crate::harness::deltaic::manifest(&env.root);
    let units: Vec<&str> = manifest["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap())
        .collect();
    assert_eq!(
        units,
        ["rbd/rbd/images/vm", "rbd/rbd/snapshots/gold"],
        "{}",
        run.stdout
    );
    env.assert_backup_current("vm", &image);

    // Damage: junk in a hole of the image (4..5 MiB is unallocated), a flipped byte in data,
    // and the snapshot file cut short.
    let path = env.file("images", "vm");
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"junk in a hole", 4 * MIB + 5).unwrap();
    let mut byte = [0u8];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut byte, 100).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[!byte[0]], 100).unwrap();
    drop(f);
    let gold = env.file("snapshots", "gold");
    fs::OpenOptions::new()
        .write(true)
        .open(&gold)
        .unwrap()
        .set_len(MIB)
        .unwrap();

    let run = env.deltaic().expect(["run"], 0);
    let manifest = crate::harness::deltaic::manifest(&env.root);
    let vm = &manifest["units"][0];
    assert_eq!(
        (vm["status"].as_str(), vm["scrubbed"].as_bool()),
        (Some("ok"), Some(true))
    );
    assert_eq!(vm["scrub_mismatches"], 2, "{manifest:#}\n{}", run.stdout);
    let gold_unit = &manifest["units"][1];
    assert_eq!(
        gold_unit["scrub_mismatches"], 2,
        "size and lost data: {manifest:#}"
    );
    env.assert_backup_current("vm", &image);
    assert!(fs::read(&gold).unwrap() == env.export(&image, Some("gold")));
    assert!(manifest["complete"].as_bool().unwrap());
}

#[test]
fn sigkill_at_every_step_then_a_rerun_converges_without_leaking_snapshots() {
    let Some(mut env) = RbdEnv::new() else { return };
    let image = env.create_image("crash", 8 * MIB);
    env.config(&[("vm", &image)], &[], "");
    let path = env.file("images", "vm");
    // The first (full) fetch, killed before and after it.
    for step in ["after-intent", "after-snap-create", "after-full-fetch"] {
        env.drive(&image, &[json!(["write", 0, 3 * OBJECT, step.len()])]);
        env.crash_at(step);
        assert_eq!(
            xattr(&path, "user.rbd.snapshot"),
            None,
            "{step}: incomplete file"
        );
        let refused = env
            .deltaic()
            .run(["rbd", "restore", path.to_str().unwrap(), POOL, "never"]);
        assert_eq!(
            refused.code,
            Some(1),
            "{step}: restore refuses an incomplete backup"
        );
        backup(&env, &["rbd", "vm"]);
        env.assert_backup_current("vm", &image);
        fs::remove_file(&path).unwrap();
        let base = env.snapshots(&image).pop().unwrap();
        env.remove_snapshot(&image, &base);
    }
    // Two incremental runs: from now on a retired snapshot waits for each run.
    backup(&env, &["rbd", "vm"]);
    backup(&env, &["rbd", "vm"]);
    let steps = [
        "after-intent",
        "after-snap-create",
        // The retired snapshot's removal overlaps the export and apply: each side is killed
        // before the other is done.
        "after-retired-rm",
        "after-stage",
        "after-pending",
        "after-apply",
        "after-retire",
        "after-rebase",
    ];
    for (i, step) in steps.iter().enumerate() {
        env.drive(
            &image,
            &[json!(["write", (i as u64) * OBJECT + 5, 2 * OBJECT, i])],
        );
        let base = xattr(&path, "user.rbd.snapshot").unwrap();
        let retired = xattr(&path, "user.rbd.retired-snapshot").expect("a retired snapshot");
        env.crash_at(step);
        let retired_kept = env.snapshots(&image).contains(&retired);
        match *step {
            "after-retired-rm" => {
                assert!(!retired_kept, "{step}: the retired snapshot is gone");
                assert!(
                    fs::read(&path).unwrap() != env.export(&image, None),
                    "{step}: the diff is not applied yet"
                );
            }
            "after-snap-create" | "after-stage" | "after-pending" | "after-apply" => {
                assert!(retired_kept, "{step}: the retired snapshot is still there")
            }
            "after-retire" => {
                assert_eq!(
                    xattr(&path, "user.rbd.retired-snapshot"),
                    Some(base.clone())
                );
                assert_eq!(xattr(&path, "user.rbd.snapshot"), Some(base.clone()));
            }
            _ => {}
        }
        if *step == "after-pending" {
            let refused =
                env.deltaic()
                    .run(["rbd", "restore", path.to_str().unwrap(), POOL, "never"]);
            assert!(
                refused.stderr.contains("partially-applied"),
                "{}",
                refused.stderr
            );
        }
        let ran = backup(&env, &["rbd", "vm"]);
        if *step != "after-intent" {
            assert!(
                ran.stdout.contains("earlier run") || ran.stdout.contains("interrupted run"),
                "{step}: the rerun finishes or undoes the crashed one\n{}",
                ran.stdout
            );
        }
        env.assert_backup_current("vm", &image);
        // A second run after recovery is an ordinary incremental one.
        backup(&env, &["rbd", "vm"]);
        env.assert_backup_current("vm", &image);
    }
    // The base lost while the file is settled: the snapshot created alongside `snap ls` is
    // fetched whole. Killed at each step of that path, the rerun converges.
    for (i, step) in ["after-snap-create", "after-base-lost", "after-full-fetch"]
        .iter()
        .enumerate()
    {
        let base = xattr(&path, "user.rbd.snapshot").unwrap();
        env.remove_snapshot(&image, &base);
        env.drive(
            &image,
            &[json!(["write", (i as u64) * OBJECT, OBJECT, 50 + i])],
        );
        env.crash_at(step);
        if *step != "after-snap-create" {
            assert_eq!(
                xattr(&path, "user.rbd.snapshot"),
                None,
                "{step}: incomplete"
            );
        }
        backup(&env, &["rbd", "vm"]);
        env.assert_backup_current("vm", &image);
    }
}

#[test]
fn a_truncated_or_failing_export_fails_cleanly_and_leaves_the_last_backup_intact() {
    let Some(mut env) = RbdEnv::new() else { return };
    let image = env.create_image("fault", 8 * MIB);
    let wrapper = env.dir.path().join("rbd-wrapper");
    fs::write(&wrapper, FAULT_WRAPPER).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    env.config(
        &[("vm", &image)],
        &[],
        &format!("  rbd-path: {}\n", wrapper.display()),
    );
    env.drive(&image, &[json!(["write", 0, MIB, 1])]);
    backup(&env, &["rbd", "vm"]);
    let path = env.file("images", "vm");
    let before = fs::read(&path).unwrap();
    env.drive(&image, &[json!(["write", 2 * MIB, MIB, 2])]);
    // Cut inside the first write record's data; a stream that is whole but rbd fails; a
    // snapshot created although `snap create` failed.
    for (var, value) in [
        ("FAULT_BYTES", "5000"),
        ("FAULT_EXIT", "3"),
        ("FAULT_CREATE", "1"),
    ] {
        let ran = env
            .deltaic()
            .env(var, value)
            .run(["rbd", "backup", POOL, "vm"]);
        assert_eq!(ran.code, Some(1), "{var}: {}", ran.stderr);
        let expected = if var == "FAULT_BYTES" {
            "truncated"
        } else {
            "failed"
        };
        assert!(ran.stderr.contains(expected), "{var}: {}", ran.stderr);
        // "failed" is in every failed unit's message; the rbd command's status is not.
        let status = match var {
            "FAULT_EXIT" => "exited with status 3",
            "FAULT_CREATE" => "exited with status 5",
            _ => "truncated",
        };
        assert!(ran.stderr.contains(status), "{var}: {}", ran.stderr);
        assert!(fs::read(&path).unwrap() == before, "{var}: file untouched");
        assert!(!pending(&path).exists());
        assert_eq!(xattr(&path, "user.rbd.pending-snapshot"), None);
        let backups = env.backup_snapshots(&image);
        assert_eq!(backups.len(), 1, "{var}: the new snapshot was removed");
    }
    backup(&env, &["rbd", "vm"]);
    env.assert_backup_current("vm", &image);

    // The retired snapshot cannot be removed: a warning, and the base it would replace goes
    // at once, so snapshots never pile up; the next run removes the retired one.
    backup(&env, &["rbd", "vm"]);
    let retired = xattr(&path, "user.rbd.retired-snapshot").expect("a retired snapshot");
    let base = xattr(&path, "user.rbd.snapshot").unwrap();
    env.drive(&image, &[json!(["write", 3 * MIB, MIB, 3])]);
    let ran = env
        .deltaic()
        .env("FAULT_RM", &retired)
        .expect(["rbd", "backup", POOL, "vm"], 0);
    let warned = format!("removing the previous base snapshot {retired}");
    assert!(
        ran.stderr.contains(&warned)
            && ran.stderr.contains("simulated snap rm failure")
            && ran.stderr.contains("the next run tries again"),
        "{}",
        ran.stderr
    );
    env.assert_backup_current("vm", &image);
    assert_eq!(
        xattr(&path, "user.rbd.retired-snapshot"),
        Some(retired.clone())
    );
    assert!(
        !env.snapshots(&image).contains(&base),
        "the base went at once"
    );
    // Neither can be removed: the unit fails with its diff staged, and the next run
    // finishes it and removes both.
    env.drive(&image, &[json!(["write", 0, MIB, 4])]);
    let ran = env
        .deltaic()
        .env("FAULT_RM", "backup-")
        .run(["rbd", "backup", POOL, "vm"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains(&warned), "{}", ran.stderr);
    assert!(xattr(&path, "user.rbd.pending-snapshot").is_some());
    assert_eq!(env.backup_snapshots(&image).len(), 3);
    let ran = backup(&env, &["rbd", "vm"]);
    assert!(ran.stdout.contains("earlier run"), "{}", ran.stdout);
    env.assert_backup_current("vm", &image);
    assert!(!env.snapshots(&image).contains(&retired));
    assert_eq!(env.backup_snapshots(&image).len(), 2);
}

#[test]
fn snapshot_units_fetch_once_and_again_when_the_snapshot_is_recreated() {
    let Some(mut env) = RbdEnv::new() else { return };
    let image = env.create_image("snapunit", 4 * MIB);
    env.drive(&image, &[json!(["write", 0, MIB, 1])]);
    let gold = format!("{POOL}/{image}@gold");
    env.ceph.run("rbd", &["snap", "create", &gold]);
    env.config(&[], &[("g", "gold"), ("g2", &format!("{image}@gold"))], "");
    backup(&env, &["-s", "rbd", "g"]);
    let path = env.file("snapshots", "g");
    assert!(fs::read(&path).unwrap() == env.export(&image, Some("gold")));
    let id = env
        .ceph
        .json("rbd", &["snap", "ls", &format!("{POOL}/{image}")])[0]["id"]
        .to_string();
    assert_eq!(xattr(&path, "user.rbd.snapid"), Some(id));
    assert_eq!(xattr(&path, "user.rbd.snapshot").as_deref(), Some("gold"));
    let before = fs::metadata(&path).unwrap().modified().unwrap();
    let ran = backup(&env, &["-s", "rbd", "g"]);
    assert!(ran.stdout.contains("already backed up"), "{}", ran.stdout);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);

    env.ceph.run("rbd", &["snap", "rm", "--no-progress", &gold]);
    env.drive(
        &image,
        &[
            json!(["write", MIB / 2, MIB, 2]),
            json!(["resize", 3 * MIB]),
        ],
    );
    env.ceph.run("rbd", &["snap", "create", &gold]);
    let ran = backup(&env, &["-s", "rbd", "g"]);
    assert!(ran.stdout.contains("fetched"), "{}", ran.stdout);
    assert!(fs::read(&path).unwrap() == env.export(&image, Some("gold")));
    backup(&env, &["-s", "rbd", "g2"]);
    assert!(fs::read(env.file("snapshots", "g2")).unwrap() == env.export(&image, Some("gold")));
    assert_eq!(
        env.snapshots(&image),
        ["gold"],
        "snapshot units create no snapshots"
    );
}

#[test]
fn restore_round_trips_and_drop_removes_exactly_deltaics_snapshots() {
    let Some(mut env) = RbdEnv::new() else { return };
    let image = env.create_image("restore", 8 * MIB);
    env.drive(
        &image,
        &[
            json!(["write", MIB, 3 * MIB, 9]),
            json!(["write", 7 * MIB, 1000, 3]),
        ],
    );
    env.ceph
        .run("rbd", &["snap", "create", &format!("{POOL}/{image}@keep")]);
    env.config(&[("vm", &image)], &[], "");
    backup(&env, &["rbd", "vm"]);
    backup(&env, &["rbd", "vm"]);
    let path = env.file("images", "vm");

    let target = unique_name("restored");
    env.images.push(target.clone());
    env.deltaic()
        .expect(["rbd", "restore", path.to_str().unwrap(), POOL, &target], 0);
    assert!(
        env.export(&target, None) == fs::read(&path).unwrap(),
        "restored image equals the backup"
    );
    let features = |image: &str| {
        env.ceph.json("rbd", &["info", &format!("{POOL}/{image}")])["features"].clone()
    };
    assert_ne!(
        features(&target),
        json!(["layering"]),
        "the cluster's defaults"
    );
    // Only the features asked for (krbd clients support few).
    let krbd = unique_name("restored-krbd");
    env.images.push(krbd.clone());
    let path_arg = path.to_str().unwrap();
    let args = [
        "rbd",
        "restore",
        "--image-feature",
        "layering",
        path_arg,
        POOL,
        &krbd,
    ];
    env.deltaic().expect(args, 0);
    assert_eq!(features(&krbd), json!(["layering"]));
    assert!(env.export(&krbd, None) == fs::read(&path).unwrap());

    // Leave a staged diff and an unrecorded snapshot beside the base and the retired one,
    // then drop everything of Deltaic's.
    env.drive(&image, &[json!(["write", 0, 1000, 4])]);
    env.crash_at("after-pending");
    assert_eq!(env.backup_snapshots(&image).len(), 3);
    let dropped = env.deltaic().expect(["rbd", "drop", POOL, "vm"], 0);
    assert!(
        dropped.stdout.contains("the image can be deleted"),
        "drop says what is next: {}",
        dropped.stdout
    );
    assert_eq!(
        env.snapshots(&image),
        ["keep"],
        "only the user's snapshot is left"
    );
    for name in [
        "snapshot",
        "pending-snapshot",
        "creating-snapshot",
        "retired-snapshot",
    ] {
        assert_eq!(xattr(&path, &format!("user.rbd.{name}")), None, "{name}");
    }
    assert!(
        !pending(&path).exists() && path.exists(),
        "the file stays, the staged diff goes"
    );
    // The next backup fetches the image whole again.
    backup(&env, &["rbd", "vm"]);
    env.assert_backup_current("vm", &image);
    env.deltaic()
        .expect(["rbd", "drop", POOL, "never-backed-up"], 0);
}

#[test]
fn a_lost_base_snapshot_or_a_new_image_in_the_config_means_a_full_fetch() {
    let Some(mut env) = RbdEnv::new() else { return };
    let first = env.create_image("base", 4 * MIB);
    env.drive(&first, &[json!(["write", 0, MIB, 1])]);
    env.config(&[("vm", &first)], &[], "");
    backup(&env, &["rbd", "vm"]);
    let path = env.file("images", "vm");
    let base = xattr(&path, "user.rbd.snapshot").unwrap();
    env.remove_snapshot(&first, &base);
    env.drive(&first, &[json!(["write", MIB, MIB, 2])]);
    let ran = backup(&env, &["rbd", "vm"]);
    assert!(
        ran.stderr.contains("fetching the whole image again"),
        "{}",
        ran.stderr
    );
    env.assert_backup_current("vm", &first);
    // An incremental run: its base is retired, still on the first image.
    env.drive(&first, &[json!(["write", 0, 4096, 4])]);
    backup(&env, &["rbd", "vm"]);
    let retired = xattr(&path, "user.rbd.retired-snapshot").expect("a retired snapshot");
    assert!(env.snapshots(&first).contains(&retired));

    // The config now names another image: the first one's snapshots (the base, and the
    // retired one, removed beside the full fetch) go, the file follows.
    let second = env.create_image("base2", 2 * MIB);
    env.drive(&second, &[json!(["write", 4096, 5000, 3])]);
    env.config(&[("vm", &second)], &[], "");
    backup(&env, &["rbd", "vm"]);
    env.assert_backup_current("vm", &second);
    assert_eq!(xattr(&path, "user.rbd.retired-snapshot"), None);
    assert!(
        env.snapshots(&first).is_empty(),
        "{:?}",
        env.snapshots(&first)
    );
    let ls = env.deltaic().expect(["rbd", "ls"], 0);
    assert!(
        ls.stdout
            .contains(&format!("rbd/rbd/images/vm\t{second}\tbackup-")),
        "{}",
        ls.stdout
    );
    let ls = env.deltaic().expect(["rbd", "ls", "--json"], 0);
    let units: Value = serde_json::from_str(&ls.stdout).unwrap();
    let vm = &units.as_array().unwrap()[0];
    assert_eq!(vm["unit"], "rbd/rbd/images/vm");
    assert_eq!(vm["rbd"], json!(second));
    assert_eq!(vm["state"], "complete");
    assert_eq!(vm["snapshot"], json!(xattr(&path, "user.rbd.snapshot")));
    assert_eq!(vm["pending_snapshot"], Value::Null);
    let file = fs::metadata(&path).unwrap();
    assert_eq!(vm["size"], json!(file.len()));
    assert!(
        vm["allocated"].as_u64().unwrap() < file.len(),
        "sparse: {vm}"
    );

    // A backup-* snapshot the file does not record is reported, and left alone.
    let foreign = format!("{POOL}/{second}@backup-foreign");
    env.ceph.run("rbd", &["snap", "create", &foreign]);
    let ran = backup(&env, &["rbd", "vm"]);
    assert!(
        ran.stderr.contains("does not record: backup-foreign"),
        "{}",
        ran.stderr
    );
    assert!(
        env.snapshots(&second)
            .contains(&"backup-foreign".to_string())
    );
    env.remove_snapshot(&second, "backup-foreign");

    // An image deleted (after purging its snapshots) before `drop`: drop still clears the file.
    delete_image(&env.ceph, &format!("{POOL}/{second}"), Ceph::run);
    env.deltaic().expect(["rbd", "drop", POOL, "vm"], 0);
    assert_eq!(xattr(&path, "user.rbd.snapshot"), None);
}

#[test]
fn images_of_two_pools_back_up_into_their_own_directories() {
    let Some(mut env) = RbdEnv::new() else { return };
    let pool = unique_name("pool");
    env.ceph
        .run("ceph", &["osd", "pool", "create", &pool, "8", "8"]);
    let _remove_pool = RemovePool(env.ceph.clone(), pool.clone());
    env.ceph.run("rbd", &["pool", "init", &pool]);
    let image = env.create_image("twopools", 2 * MIB);
    env.drive(&image, &[json!(["write", 0, 70000, 5])]);
    let other = format!("{pool}/{image}");
    env.ceph.run("rbd", &["create", "--size", "1M", &other]);
    env.ceph
        .run("rbd", &["snap", "create", &format!("{other}@s")]);
    let config = env.dir.path().join("deltaic.conf");
    let text = format!(
        "settings:\n  root: {}\n  snapshot-backend: dir\n  rbd-scrub-probability: 0\n\
         rbd:\n  {POOL}:\n    images: {{vm: {image}}}\n  {pool}:\n    images: {{vm: {image}}}\n    \
         snapshots: {{s: s}}\n",
        env.root.display()
    );
    fs::write(&config, text).unwrap();
    let plan = env.deltaic().expect(["config", "check"], 0);
    for unit in [
        "rbd/rbd/images/vm",
        &format!("rbd/{pool}/images/vm"),
        &format!("rbd/{pool}/snapshots/s"),
    ] {
        assert!(plan.stdout.contains(unit), "{unit}: {}", plan.stdout);
    }
    backup(&env, &["rbd", "vm"]);
    backup(&env, &[&pool, "vm"]);
    backup(&env, &["-s", &pool, "s"]);
    env.assert_backup_current("vm", &image);
    let theirs = env.root.join("rbd").join(&pool).join("images/vm");
    assert_eq!(fs::metadata(&theirs).unwrap().len(), MIB);
    assert!(fs::read(&theirs).unwrap().iter().all(|&b| b == 0));
    env.deltaic().expect(["rbd", "drop", &pool, "vm"], 0);
    delete_image(&env.ceph, &other, Ceph::run);
}

/// Deletes a test pool when dropped.
struct RemovePool(Ceph, String);

impl Drop for RemovePool {
    fn drop(&mut self) {
        let p = &self.1;
        let _ = self.0.output(
            "ceph",
            &[
                "osd",
                "pool",
                "delete",
                p,
                p,
                "--yes-i-really-really-mean-it",
            ],
        );
    }
}

#[test]
fn an_unusable_staged_diff_is_given_up_for_a_full_fetch() {
    let Some(mut env) = RbdEnv::new() else { return };
    let image = env.create_image("staged", 4 * MIB);
    env.config(&[("vm", &image)], &[], "");
    let path = env.file("images", "vm");
    let old = [json!(["write", 0, OBJECT, 1])];
    env.drive(&image, &old);
    backup(&env, &["rbd", "vm"]);

    // Applied, then its snapshot removed behind Deltaic's back, then the block changed back:
    // the file holds a diff nothing records any more, so the image is fetched whole again.
    env.drive(&image, &[json!(["write", 0, OBJECT, 2])]);
    env.crash_at("after-apply");
    let staged = xattr(&path, "user.rbd.pending-snapshot").unwrap();
    env.remove_snapshot(&image, &staged);
    env.drive(&image, &old);
    let ran = backup(&env, &["rbd", "vm"]);
    assert!(
        ran.stderr.contains("dropping the staged diff"),
        "{}",
        ran.stderr
    );
    env.assert_backup_current("vm", &image);

    // A staged diff damaged on disk is checked before the file is touched.
    env.drive(&image, &[json!(["write", OBJECT, OBJECT, 3])]);
    env.crash_at("after-pending");
    let staged = pending(&path);
    let len = fs::metadata(&staged).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let ran = backup(&env, &["rbd", "vm"]);
    assert!(ran.stderr.contains("truncated"), "{}", ran.stderr);
    env.assert_backup_current("vm", &image);

    // Killed once the base is retired but before the rebase, then the staged snapshot lost:
    // the base is given up as the retired snapshot too, so no xattr names a removed snapshot.
    env.drive(&image, &[json!(["write", 0, OBJECT, 5])]);
    env.crash_at("after-retire");
    let base = xattr(&path, "user.rbd.snapshot").unwrap();
    assert_eq!(
        xattr(&path, "user.rbd.retired-snapshot"),
        Some(base.clone())
    );
    let staged = xattr(&path, "user.rbd.pending-snapshot").unwrap();
    env.remove_snapshot(&image, &staged);
    let ran = backup(&env, &["rbd", "vm"]);
    assert!(
        ran.stderr.contains("dropping the staged diff"),
        "{}",
        ran.stderr
    );
    assert!(!env.snapshots(&image).contains(&base));
    assert_eq!(xattr(&path, "user.rbd.retired-snapshot"), None);
    env.assert_backup_current("vm", &image);
}
