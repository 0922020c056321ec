//! `deltaic coda backup` end to end, with fake `volutil` and `codadump2tar` scripts on the
//! "server" (test-infra.md §8) serving codadump2tar-shaped tars ([`CodaTar`]). The main flow,
//! the restore round trip, host keys and `deltaic run` go through the real sshd on 127.0.0.1;
//! the failure fixtures of core-rsync-coda.md §13 use the ssh stand-in, where sshd adds nothing.

use crate::harness::coda::{BACKUP_ID, CodaTar, FakeCoda, VOLUME_ID};
use crate::harness::deltaic::{Deltaic, Run};
use crate::harness::sshd::Sshd;
use crate::harness::tree::{mode, stat_xattr};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

const HOST1: &str = "host1.example.test";
const HOST2: &str = "host2.example.test";
const VOLUME: &str = "a:foo";
/// Base of the fixtures' mtimes.
const T: u64 = 1_500_000_000;
const ACLS: &str = "acls:\n- path: \"/\"\n  acl:\n  - name: System:AnyUser\n    rights: rl\n";

/// One test's world: fake tools, a backup root, a config, and an sshd or the ssh stand-in.
struct Env {
    dir: TempDir,
    fake: FakeCoda,
    sshd: Option<Sshd>,
    /// The binary with this world's config, ssh program and no retry pause.
    deltaic: Deltaic,
}

impl Env {
    /// Through the real sshd (`None` after a loud skip when it is missing).
    fn with_sshd() -> Option<Env> {
        let sshd = Sshd::start()?;
        Some(Env::build(Some(sshd)))
    }

    /// Through the ssh stand-in.
    fn with_fake_ssh() -> Env {
        Env::build(None)
    }

    fn build(sshd: Option<Sshd>) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("deltaic-coda")
            .tempdir()
            .unwrap();
        let fake = FakeCoda::new(&dir.path().join("server"));
        fs::create_dir(dir.path().join("root")).unwrap();
        let ssh = match &sshd {
            Some(sshd) => sshd.ssh_program(),
            None => fake.fake_ssh(),
        };
        let deltaic = Deltaic::new(&dir.path().join("deltaic.conf"))
            .env("DELTAIC_SSH", ssh)
            .env("DELTAIC_CODA_RETRY_DELAY_MS", "0");
        let env = Env {
            dir,
            fake,
            sshd,
            deltaic,
        };
        env.config(
            "",
            &format!("  - servers: [{HOST1}]\n    volumes: ['{VOLUME}']\n"),
        );
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn root(&self) -> PathBuf {
        self.path("root")
    }
    /// The backup of VOLUME on HOST1.
    fn vol(&self) -> PathBuf {
        self.root().join("coda/host1").join(VOLUME)
    }

    /// Writes the config: extra `settings` lines and the `coda:` body.
    fn config(&self, settings: &str, groups: &str) {
        let text = format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n  snapshot-dir: {}\n  \
             coda-volutil-path: {}\n  coda-codadump2tar-path: {}\n{settings}coda:\n{groups}",
            self.root().display(),
            self.path("snapshots").display(),
            self.fake.volutil().display(),
            self.fake.codadump2tar().display(),
        );
        fs::write(self.path("deltaic.conf"), text).unwrap();
    }

    /// `deltaic -c CONFIG ARGS`, not started.
    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.deltaic.command(args);
        cmd.env_remove("DELTAIC_RUN_PID")
            .env_remove("DELTAIC_UNIT_REPORT");
        cmd
    }

    fn deltaic<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run {
            out: self.command(args).output().unwrap(),
        }
    }

    /// `deltaic coda backup [extra] HOST1 VOLUME`.
    fn backup(&self, extra: &[&str]) -> Run {
        let mut args = vec!["coda", "backup"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[HOST1, VOLUME]);
        self.deltaic(&args)
    }

    /// A first full backup of [`volume_v1`], with its calls cleared.
    fn first_backup(&self) {
        self.fake.set_full(&volume_v1().finish());
        self.backup(&[]).success();
        self.fake.take_calls();
    }
}

/// A path under `dir` from raw bytes (non-UTF-8 names).
fn under(dir: &Path, rel: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(rel))
}

fn lmtime(path: &Path) -> i64 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mtime()
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

/// How many recorded calls start with `prefix`.
fn starting_with(calls: &[String], prefix: &str) -> usize {
    calls.iter().filter(|c| c.starts_with(prefix)).count()
}

fn incremental_ok(vol: &Path) -> Option<Vec<u8>> {
    xattr::get(vol, "user.coda.incremental-ok").unwrap()
}

/// The first dump: directories (one non-UTF-8), files with their modes and owners, a symlink to
/// a file, one to a directory, an unresolved one (empty target), a dangling one, a hard link
/// and the ACL file, in codadump2tar's order.
fn volume_v1() -> CodaTar {
    CodaTar::new()
        .dir(b".", 100, T + 1)
        .dir(b"./docs", 101, T + 2)
        .dir(b"./docs/sub", 101, T + 3)
        .dir(b"./caf\xe9", 102, T + 4)
        .dir(b"./old", 100, T + 5)
        .file(b"./docs/a.txt", 0o644, 101, T + 10, b"alpha\n")
        .file(b"./docs/setuid", 0o4755, 0, T + 11, b"#!/bin/sh\n")
        .file(b"./run.sh", 0o755, 100, T + 12, b"echo hi\n")
        .file(b"./caf\xe9/n\xffm", 0o600, 102, T + 13, b"latin-1 name\n")
        .file(b"./old/gone.txt", 0o644, 100, T + 14, b"soon deleted\n")
        .symlink(b"./link", b"docs/a.txt", 100, T + 20)
        .symlink(b"./dirlink", b"docs", 100, T + 21)
        .symlink(b"./unresolved", b"", 100, T + 22)
        .symlink(b"./dangling", b"nowhere", 100, T + 23)
        .hardlink(b"./docs/sub/hard", b"./docs/a.txt", 101, T + 10)
        .acls(ACLS, T + 100)
}

/// The next full dump: `old/`, `run.sh` and the symlink to a directory are gone.
fn volume_v2() -> CodaTar {
    CodaTar::new()
        .dir(b".", 100, T + 1)
        .dir(b"./docs", 101, T + 2)
        .dir(b"./docs/sub", 101, T + 3)
        .dir(b"./caf\xe9", 102, T + 4)
        .file(b"./docs/a.txt", 0o644, 101, T + 10, b"alpha\n")
        .file(b"./docs/setuid", 0o4755, 0, T + 11, b"#!/bin/sh\n")
        .file(b"./caf\xe9/n\xffm", 0o600, 102, T + 13, b"latin-1 name\n")
        .symlink(b"./link", b"docs/a.txt", 100, T + 20)
        .symlink(b"./unresolved", b"", 100, T + 22)
        .symlink(b"./dangling", b"nowhere", 100, T + 23)
        .hardlink(b"./docs/sub/hard", b"./docs/a.txt", 101, T + 10)
        .acls(ACLS, T + 200)
}

/// An incremental dump after `docs/a.txt` changed and `docs/new.txt` appeared: every
/// directory, the changed files, every hard-link record.
fn volume_incremental() -> CodaTar {
    CodaTar::new()
        .dir(b".", 100, T + 1)
        .dir(b"./docs", 101, T + 40)
        .dir(b"./docs/sub", 101, T + 3)
        .dir(b"./caf\xe9", 102, T + 4)
        .dir(b"./old", 100, T + 5)
        .file(
            b"./docs/a.txt",
            0o640,
            101,
            T + 30,
            b"alpha, second version\n",
        )
        .file(b"./docs/new.txt", 0o644, 103, T + 31, b"new\n")
        .hardlink(b"./docs/sub/hard", b"./docs/a.txt", 101, T + 30)
        .acls(ACLS, T + 300)
}

fn full_refresh_calls() -> Vec<String> {
    vec![
        format!("volutil info {VOLUME}"),
        format!("volutil lock {VOLUME_ID}"),
        format!("volutil backup {VOLUME_ID}"),
        format!("volutil info {VOLUME}"),
        format!("volutil dump {BACKUP_ID}"),
        format!("codadump2tar -rn . <- dump dump {BACKUP_ID}"),
        format!("volutil ancient {BACKUP_ID}"),
    ]
}

#[test]
fn a_first_full_backup_keeps_the_layout_owners_modes_mtimes_and_markers() {
    let Some(env) = Env::with_sshd() else { return };
    env.fake.set_full(&volume_v1().finish());
    let run = env.backup(&[]).success();
    assert_eq!(env.fake.take_calls(), full_refresh_calls());

    let vol = env.vol();
    let p = |rel: &[u8]| under(&vol, rel);
    assert_eq!(fs::read(p(b"docs/a.txt")).unwrap(), b"alpha\n");
    assert_eq!(fs::read(p(b"caf\xe9/n\xffm")).unwrap(), b"latin-1 name\n");
    assert_eq!(fs::read_to_string(p(b"..CodaACLs.yaml")).unwrap(), ACLS);
    for (rel, stat) in [
        (&b""[..], "40755 0,0 100:0"),
        (b"docs", "40755 0,0 101:0"),
        (b"caf\xe9", "40755 0,0 102:0"),
        (b"docs/a.txt", "100644 0,0 101:0"),
        (b"docs/setuid", "104755 0,0 0:0"),
        (b"run.sh", "100755 0,0 100:0"),
        (b"caf\xe9/n\xffm", "100600 0,0 102:0"),
        (b"..CodaACLs.yaml", "100400 0,0 0:0"),
    ] {
        assert_eq!(stat_xattr(&p(rel)).as_deref(), Some(stat), "{rel:?}");
    }
    assert_eq!(mode(&p(b"docs/setuid")), 0o644, "real modes stay 0644");
    assert_eq!(fs::read_link(p(b"link")).unwrap(), Path::new("docs/a.txt"));
    assert_eq!(fs::read_link(p(b"dirlink")).unwrap(), Path::new("docs"));
    assert!(
        fs::symlink_metadata(p(b"unresolved")).is_err(),
        "empty target: skipped"
    );
    assert_eq!(ino(&p(b"docs/sub/hard")), ino(&p(b"docs/a.txt")));
    for (rel, mtime) in [
        (&b""[..], T + 1),
        (b"docs", T + 2),
        (b"docs/sub", T + 3),
        (b"caf\xe9", T + 4),
        (b"docs/a.txt", T + 10),
        (b"caf\xe9/n\xffm", T + 13),
        (b"link", T + 20),
        (b"dangling", T + 23),
    ] {
        assert_eq!(lmtime(&p(rel)), mtime as i64, "{rel:?}");
    }
    assert_eq!(incremental_ok(&vol).as_deref(), Some(&b"true"[..]));
    let out = run.out.stdout.clone();
    let has_line = |line: Vec<u8>| out.windows(line.len()).any(|w| w == line.as_slice());
    let line = |tag: &str, rel: &[u8]| {
        let mut l = format!("{tag} ").into_bytes();
        l.extend_from_slice(p(rel).as_os_str().as_bytes());
        l.push(b'\n');
        l
    };
    assert!(has_line(line("d", b"docs")), "{}", run.stdout());
    assert!(has_line(line("f", b"caf\xe9/n\xffm")), "{}", run.stdout());
    assert!(has_line(line("s", b"link")), "{}", run.stdout());
    assert!(has_line(line("l", b"docs/sub/hard")), "{}", run.stdout());
    assert!(
        run.stdout()
            .contains(&format!("> {} info {VOLUME}", env.fake.volutil().display()))
    );

    // The same dump again rewrites nothing: same inodes, no `f` lines.
    let before = ino(&p(b"docs/a.txt"));
    let again = env.backup(&["-R"]).success();
    assert_eq!(ino(&p(b"docs/a.txt")), before);
    assert!(
        !again.stdout().lines().any(|l| l.starts_with("f ")),
        "{}",
        again.stdout()
    );
    assert_eq!(lmtime(&vol), (T + 1) as i64);
}

#[test]
fn an_incremental_adds_and_updates_but_deletes_nothing() {
    let Some(env) = Env::with_sshd() else { return };
    env.first_backup();
    env.fake.set_incremental(&volume_incremental().finish());
    let vol = env.vol();
    let run_sh = ino(&vol.join("run.sh"));
    env.backup(&["--incremental", "--skip-refresh"]).success();
    assert_eq!(
        env.fake.take_calls(),
        [
            format!("volutil info {VOLUME}"),
            format!("volutil dump -i -1 {BACKUP_ID}"),
            format!("codadump2tar -rn . <- dump dump -i -1 {BACKUP_ID}"),
            format!("volutil ancient {BACKUP_ID}"),
        ]
    );
    assert_eq!(
        fs::read_to_string(vol.join("docs/a.txt")).unwrap(),
        "alpha, second version\n"
    );
    assert_eq!(
        stat_xattr(&vol.join("docs/a.txt")).as_deref(),
        Some("100640 0,0 101:0")
    );
    assert_eq!(
        fs::read_to_string(vol.join("docs/new.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        ino(&vol.join("docs/sub/hard")),
        ino(&vol.join("docs/a.txt"))
    );
    assert_eq!(ino(&vol.join("run.sh")), run_sh, "untouched");
    assert!(
        vol.join("old/gone.txt").exists(),
        "incrementals never delete"
    );
    assert!(vol.join("dirlink").symlink_metadata().is_ok());
    assert_eq!(lmtime(&vol.join("docs")), (T + 40) as i64);
    assert_eq!(incremental_ok(&vol).as_deref(), Some(&b"true"[..]));

    // Without the marker, an incremental request becomes a full dump.
    xattr::remove(&vol, "user.coda.incremental-ok").unwrap();
    let run = env.backup(&["-i", "-R"]).success();
    assert!(
        run.stdout().contains("doing a full dump"),
        "{}",
        run.stdout()
    );
    let calls = env.fake.take_calls();
    assert_eq!(calls[1], format!("volutil dump {BACKUP_ID}"), "{calls:?}");
}

#[test]
fn a_failed_incremental_keeps_incrementals_and_a_killed_one_forces_a_full_dump() {
    let env = Env::with_fake_ssh();
    env.first_backup();
    let vol = env.vol();
    env.fake.set_incremental(&volume_incremental().unfinished());
    env.backup(&["-i", "-R"]).failure();
    assert_eq!(incremental_ok(&vol).as_deref(), Some(&b"true"[..]));
    env.fake.take_calls();

    // Killed while the dump is still running (after the whole stream arrived: the files are
    // written, the remote side has not ended yet): the marker is gone, the next dump is full.
    fs::remove_file(vol.join("docs/new.txt")).unwrap();
    env.fake.set_incremental(&volume_incremental().finish());
    env.fake.codadump2tar_sleep(30);
    let mut child = env
        .command(["coda", "backup", "-i", "-R", HOST1, VOLUME])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fs::read(vol.join("docs/new.txt")).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dump never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        incremental_ok(&vol),
        None,
        "a cut-off dump leaves no marker"
    );
    fs::remove_file(env.path("server/c2t-sleep")).unwrap();
    env.fake.take_calls();
    env.backup(&["-i", "-R"]).success();
    let calls = env.fake.take_calls();
    assert_eq!(calls[1], format!("volutil dump {BACKUP_ID}"), "{calls:?}");
}

#[test]
fn a_full_dump_removes_exactly_what_it_no_longer_contains() {
    let Some(env) = Env::with_sshd() else { return };
    env.first_backup();
    let vol = env.vol();
    fs::write(vol.join("docs/.backup-tmp4242-deadbeef"), b"crash leftover").unwrap();
    env.fake.set_full(&volume_v2().finish());
    let run = env.backup(&["-R"]).success();
    for gone in [
        "old/gone.txt",
        "old",
        "run.sh",
        "dirlink",
        "docs/.backup-tmp4242-deadbeef",
    ] {
        assert!(
            fs::symlink_metadata(vol.join(gone)).is_err(),
            "{gone} should be removed"
        );
        let line = format!("- {}", vol.join(gone).display());
        assert!(
            run.stdout().lines().any(|l| l == line),
            "{line}\n{}",
            run.stdout()
        );
    }
    assert!(
        vol.join("docs").is_dir(),
        "the symlink's target directory stays"
    );
    for kept in [
        "docs/a.txt",
        "docs/sub/hard",
        "docs/setuid",
        "..CodaACLs.yaml",
        "link",
    ] {
        assert!(fs::symlink_metadata(vol.join(kept)).is_ok(), "{kept}");
    }
    assert!(under(&vol, b"caf\xe9/n\xffm").exists());
    // Directory mtimes are right after the removals (BUG-C11).
    assert_eq!(lmtime(&vol), (T + 1) as i64);
    assert_eq!(lmtime(&vol.join("docs")), (T + 2) as i64);
    assert_eq!(incremental_ok(&vol).as_deref(), Some(&b"true"[..]));
}

/// Damaged streams: each is retried DUMP_ATTEMPTS (10) times, then the backup fails, nothing
/// is deleted, and the next backup is a full dump again.
#[test]
fn truncated_garbled_or_empty_dumps_are_retried_then_fail_without_deleting() {
    let env = Env::with_fake_ssh();
    env.first_backup();
    let vol = env.vol();
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let with_big = volume_v2().file(b"./docs/big", 0o644, 101, T + 50, &big);
    let complete = with_big.finish();
    let big_header = volume_v2().unfinished().len();
    let mut garbage = complete.clone();
    garbage[512..1024].fill(b'x');
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated mid-data",
            complete[..big_header + 512 + 1000].to_vec(),
        ),
        (
            "truncated mid-header",
            complete[..big_header + 100].to_vec(),
        ),
        ("garbage after the first header", garbage),
        ("empty stream", Vec::new()),
        ("no end-of-archive marker", with_big.unfinished()),
        (
            "one zero block only",
            complete[..complete.len() - 512].to_vec(),
        ),
    ];
    for (what, stream) in cases {
        env.fake.set_full(&stream);
        let run = env.backup(&["-R"]).failure();
        let calls = env.fake.take_calls();
        assert_eq!(
            starting_with(&calls, "volutil dump"),
            10,
            "{what}: {calls:?}"
        );
        assert!(
            !calls.iter().any(|c| c.contains("ancient")),
            "{what}: {calls:?}"
        );
        assert!(
            run.stderr().contains("failed 10 times"),
            "{what}: {}",
            run.stderr()
        );
        assert!(
            run.stderr().contains("damaged dump stream"),
            "{what}: {}",
            run.stderr()
        );
        assert!(vol.join("old/gone.txt").exists(), "{what}: nothing deleted");
        assert!(vol.join("run.sh").exists(), "{what}: nothing deleted");
        assert_eq!(incremental_ok(&vol), None, "{what}: the next dump is full");
        if let Ok(data) = fs::read(vol.join("docs/big")) {
            assert_eq!(data, big, "{what}: a file is written whole or not at all");
        }
    }
    // The next incremental request is a full dump, which succeeds and cleans up.
    env.fake.set_full(&complete);
    env.backup(&["-i", "-R"]).success();
    assert!(!vol.join("run.sh").exists());
    assert_eq!(fs::read(vol.join("docs/big")).unwrap(), big);
}

#[test]
fn a_damaged_dump_is_abandoned_at_once_even_while_the_server_side_still_runs() {
    let env = Env::with_fake_ssh();
    env.first_backup();
    let mut garbage = volume_v2().finish();
    garbage[512..1024].fill(b'x');
    env.fake.set_full(&garbage);
    env.fake.codadump2tar_sleep(30);
    let started = std::time::Instant::now();
    let run = env.backup(&["-R"]).failure();
    assert!(run.stderr().contains("failed 10 times"), "{}", run.stderr());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "waited for the hung pipeline: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_failing_volutil_dump_is_noticed_although_codadump2tar_succeeds() {
    let env = Env::with_fake_ssh();
    env.first_backup();
    env.fake.set_full(&volume_v2().finish());
    env.fake.fail("dump", 1);
    let run = env.backup(&["-R"]).failure();
    assert!(
        run.stderr().contains("volutil dump exited with status 1"),
        "{}",
        run.stderr()
    );
    let calls = env.fake.take_calls();
    assert_eq!(starting_with(&calls, "codadump2tar"), 10, "{calls:?}");
    assert!(
        env.vol().join("run.sh").exists(),
        "no GC after a failed dump"
    );

    // A failing codadump2tar is noticed too.
    env.fake.fail("dump", 0);
    env.fake.codadump2tar_exit(2);
    let run = env.backup(&["-R"]).failure();
    assert!(
        run.stderr().contains("codadump2tar exited with status 2"),
        "{}",
        run.stderr()
    );
    assert!(env.vol().join("run.sh").exists());
}

#[test]
fn unsafe_names_and_unexpected_types_are_refused_and_nothing_escapes() {
    let env = Env::with_fake_ssh();
    env.first_backup();
    let vol = env.vol();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, vol.join("evil")).unwrap();
    let absolute = format!("{}/escaped", outside.display());
    let base = || {
        CodaTar::new()
            .dir(b".", 100, T + 1)
            .dir(b"./docs", 101, T + 2)
    };
    let cases: Vec<(&str, CodaTar, &str)> = vec![
        (
            "absolute",
            base().file(absolute.as_bytes(), 0o644, 0, T, b"x"),
            "is an absolute path",
        ),
        (
            "dot-dot",
            base().file(b"./../escaped", 0o644, 0, T, b"x"),
            "has a `..` component",
        ),
        (
            "dot-dot inside",
            base().file(b"./docs/../../../escaped", 0o644, 0, T, b"x"),
            "has a `..` component",
        ),
        (
            "hard link to outside",
            base().hardlink(b"./docs/l", b"../../../../etc/passwd", 0, T),
            "has a `..` component",
        ),
        (
            "beneath a symlink",
            base().file(b"./evil/escaped", 0o644, 0, T, b"x"),
            "is a symlink in the backup",
        ),
        (
            "symlink then beneath it",
            base()
                .symlink(b"./docs/sub", outside.as_os_str().as_bytes(), 0, T)
                .file(b"./docs/sub/escaped", 0o644, 0, T, b"x"),
            "is a symlink in the backup",
        ),
        ("FIFO", base().raw(b'6', b"./fifo", b""), "FIFO"),
        (
            "AREGTYPE",
            base().raw(0, b"./areg", b"x"),
            "old-style regular file",
        ),
        (
            "pax header",
            base().raw(b'x', b"./pax", b"11 a=b\n"),
            "pax extended header",
        ),
    ];
    for (what, stream, message) in cases {
        env.fake.set_full(&stream.finish());
        let run = env.backup(&["-R"]).failure();
        assert!(run.stderr().contains(message), "{what}: {}", run.stderr());
        assert!(
            run.stderr().contains("no cleanup ran"),
            "{what}: {}",
            run.stderr()
        );
        let calls = env.fake.take_calls();
        assert_eq!(
            starting_with(&calls, "volutil dump"),
            1,
            "{what}: not retried: {calls:?}"
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{what}");
        assert!(!env.root().join("coda/host1/escaped").exists(), "{what}");
        assert!(!env.root().join("escaped").exists(), "{what}");
        assert!(vol.join("run.sh").exists(), "{what}: nothing deleted");
    }
}

#[test]
fn a_volume_named_slash_stays_inside_its_own_directory() {
    let env = Env::with_fake_ssh();
    env.config("", &format!("  - servers: [{HOST1}]\n    volumes: ['/']\n"));
    env.fake.set_full(&volume_v1().finish());
    env.deltaic(["coda", "backup", "-R", HOST1, "/"]).success();
    let vol = env.root().join("coda/host1/%2F");
    assert_eq!(fs::read(vol.join("docs/a.txt")).unwrap(), b"alpha\n");
    assert!(!env.root().join("docs").exists());
    assert!(!Path::new("/docs/a.txt").exists());
    let calls = env.fake.take_calls();
    assert_eq!(calls[0], "volutil info /", "{calls:?}");
    // The planner gives the unit the same directory.
    let run = env.deltaic(["run", "--dry-run"]).success();
    assert!(run.stdout().contains("coda/host1/%2F"), "{}", run.stdout());
}

#[test]
fn a_failing_volutil_backup_unlocks_the_volume() {
    let env = Env::with_fake_ssh();
    env.fake.fail("backup", 3);
    let run = env.backup(&[]).failure();
    assert_eq!(
        env.fake.take_calls(),
        [
            format!("volutil info {VOLUME}"),
            format!("volutil lock {VOLUME_ID}"),
            format!("volutil backup {VOLUME_ID}"),
            format!("volutil unlock {VOLUME_ID}"),
        ]
    );
    assert!(
        run.stderr()
            .contains("refreshing the backup clone of a:foo"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("failed on purpose"),
        "{}",
        run.stderr()
    );

    // A failing lock is not followed by backup or unlock.
    env.fake.fail("backup", 0);
    env.fake.fail("lock", 4);
    env.backup(&[]).failure();
    assert_eq!(
        env.fake.take_calls(),
        [
            format!("volutil info {VOLUME}"),
            format!("volutil lock {VOLUME_ID}")
        ]
    );
}

#[test]
fn host_keys_are_checked_as_for_rsync() {
    let Some(env) = Env::with_sshd() else { return };
    let known = env.path("known_hosts");
    fs::write(&known, "").unwrap();
    env.config(
        &format!(
            "  ssh-strict-host-keys: yes\n  ssh-known-hosts: {}\n",
            known.display()
        ),
        &format!("  - servers: [{HOST1}]\n    volumes: ['{VOLUME}']\n"),
    );
    env.fake.set_full(&volume_v1().finish());
    let run = env.backup(&[]).failure();
    assert!(
        run.stderr().contains("ssh refused the host key"),
        "{}",
        run.stderr()
    );
    assert!(env.fake.take_calls().is_empty());
    fs::write(&known, env.sshd.as_ref().unwrap().known_hosts_line()).unwrap();
    env.backup(&[]).success();
}

#[test]
fn restore_with_coda_flags_round_trips_owners_modes_and_links() {
    let Some(env) = Env::with_sshd() else { return };
    env.first_backup();
    let target = env.path("restored");
    let run = env
        .deltaic([
            OsStr::new("rsync"),
            OsStr::new("restore"),
            OsStr::new("--coda"),
            env.vol().as_os_str(),
            OsStr::new(HOST1),
            target.as_os_str(),
        ])
        .success();
    assert!(
        run.stdout().contains("--exclude=/..CodaACLs.yaml"),
        "{}",
        run.stdout()
    );
    let t = |rel: &[u8]| under(&target, rel);
    let owner_mode = |rel: &[u8]| {
        let m = fs::symlink_metadata(t(rel)).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(owner_mode(b"docs/a.txt"), (101, 0, 0o644));
    assert_eq!(owner_mode(b"docs/setuid"), (0, 0, 0o4755));
    assert_eq!(owner_mode(b"run.sh"), (100, 0, 0o755));
    assert_eq!(owner_mode(b"caf\xe9/n\xffm"), (102, 0, 0o600));
    assert_eq!(owner_mode(b"docs"), (101, 0, 0o755));
    assert_eq!(owner_mode(b"caf\xe9"), (102, 0, 0o755));
    assert_eq!(fs::read(t(b"caf\xe9/n\xffm")).unwrap(), b"latin-1 name\n");
    assert_eq!(fs::read_link(t(b"link")).unwrap(), Path::new("docs/a.txt"));
    assert_eq!(ino(&t(b"docs/sub/hard")), ino(&t(b"docs/a.txt")));
    assert_eq!(lmtime(&t(b"docs/a.txt")), (T + 10) as i64);
    assert!(
        !t(b"..CodaACLs.yaml").exists(),
        "the ACL file stays in the backup"
    );
    assert_eq!(stat_xattr(&t(b"docs/setuid")), None);
}

#[test]
fn deltaic_run_backs_up_every_replica_of_every_volume() {
    let Some(env) = Env::with_sshd() else { return };
    env.config(
        "  coda-full-probability: 1\n",
        &format!("  - servers: [{HOST1}, {HOST2}]\n    volumes: ['{VOLUME}']\n"),
    );
    env.fake.set_full(&volume_v1().finish());
    let run = env.deltaic(["run", "--no-snapshot"]).success();
    for short in ["host1", "host2"] {
        let vol = env.root().join("coda").join(short).join(VOLUME);
        assert_eq!(
            fs::read(vol.join("docs/a.txt")).unwrap(),
            b"alpha\n",
            "{short}"
        );
        assert_eq!(incremental_ok(&vol).as_deref(), Some(&b"true"[..]));
        // The logs hold raw non-UTF-8 names (BUG-C3): read them as bytes.
        let logs = env.root().join("Logs/coda").join(short).join(VOLUME);
        let out: Vec<_> = fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension() == Some(OsStr::new("out")))
            .collect();
        assert_eq!(out.len(), 1, "{out:?}");
        let text = fs::read(&out[0]).unwrap();
        let mut line = b"f ".to_vec();
        line.extend_from_slice(under(&vol, b"caf\xe9/n\xffm").as_os_str().as_bytes());
        assert!(
            text.windows(line.len()).any(|w| w == line),
            "{}",
            String::from_utf8_lossy(&text)
        );
    }
    let calls = env.fake.take_calls();
    let full_dumps = calls
        .iter()
        .filter(|c| *c == &format!("volutil dump {BACKUP_ID}"))
        .count();
    assert_eq!(full_dumps, 2, "{calls:?}\n{}", run.stderr());
}
