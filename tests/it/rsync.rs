//! `deltaic rsync backup` and `restore` end to end, through a real sshd on 127.0.0.1 (D12):
//! metadata kept as `--fake-super` xattrs, excludes, unchanged reruns, scrub repairs (D6),
//! pre/post hooks (BUG-19) without their text in the log, host-key policy, the ACL/xattr
//! fallback (BUG-24), restore round trips (BUG-21, BUG-22), local hosts and the per-host lock,
//! the in-progress marker (a scrub after an interrupted run), and `--inplace` next to hard
//! links on ext4 (copies) and btrfs (clones).

use crate::harness::deltaic::Run;
use crate::harness::sshd::Sshd;
use crate::harness::tree::{
    assert_fake_super_copy, chmod, mode, populate_metadata_tree, stat_xattr,
};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

const HOST1: &str = "host1.example.test";
const HOST2: &str = "host2.example.test";

/// One test's world: a private sshd, a "remote" source tree, a backup root and a config.
struct Env {
    sshd: Sshd,
    dir: TempDir,
}

impl Env {
    fn new() -> Option<Env> {
        let sshd = Sshd::start()?;
        let dir = tempfile::Builder::new()
            .prefix("deltaic-rsync")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        Some(Env { sshd, dir })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn src(&self) -> PathBuf {
        self.path("src")
    }
    fn root(&self) -> PathBuf {
        self.path("root")
    }
    fn report_path(&self) -> PathBuf {
        self.path("report.json")
    }
    /// Where `path` on the host lands in the backup of `alias` (`-R` keeps full paths).
    fn backed_up(&self, alias: &str, path: &Path) -> PathBuf {
        self.root()
            .join("rsync")
            .join(alias)
            .join(path.strip_prefix("/").unwrap())
    }

    /// Writes the config: `settings` lines (indented by two) and `hosts` (the `rsync:` body).
    fn config(&self, settings: &str, hosts: &str) {
        let text = format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n  rsync-exclude: ['*.tmp']\n\
             {settings}rsync:\n{hosts}",
            self.root().display()
        );
        fs::write(self.path("deltaic.conf"), text).unwrap();
    }

    /// The usual host: host1 backing up the source tree, excluding `skipme`.
    fn default_config(&self) {
        self.config(
            "",
            &format!(
                "  {HOST1}:\n    mounts: [{src}/]\n    exclude: ['{src}/skipme']\n",
                src = self.src().display()
            ),
        );
    }

    fn deltaic<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let _ = fs::remove_file(self.report_path());
        let out = Command::new(env!("CARGO_BIN_EXE_deltaic"))
            .arg("-c")
            .arg(self.path("deltaic.conf"))
            .args(args)
            .env("DELTAIC_ALLOW_ROOT", "1")
            .env("DELTAIC_SSH", self.sshd.ssh_program())
            .env("DELTAIC_UNIT_REPORT", self.report_path())
            .env_remove("DELTAIC_LOG")
            .output()
            .unwrap();
        Run { out }
    }

    fn report(&self) -> serde_json::Value {
        let text = fs::read_to_string(self.report_path()).expect("unit report written");
        serde_json::from_str(&text).unwrap()
    }

    /// A source tree with every kind of metadata the backup must keep.
    fn populate(&self) {
        populate_metadata_tree(&self.src());
    }
}

#[test]
fn backup_over_sshd_keeps_metadata_as_fake_super_xattrs() {
    let Some(env) = Env::new() else { return };
    env.populate();
    env.default_config();
    let run = env.deltaic(["rsync", "backup", HOST1]).success();

    // The exact command line, with the ssh options unchanged (only the program is the wrapper).
    let expected_start = format!(
        "rsync -aHRxi --acls --xattrs --fake-super --delete --delete-excluded --numeric-ids \
         --stats --inplace --timeout=600 --rsh={} -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
         -o ConnectTimeout=30 -o ServerAliveInterval=30 -o ServerAliveCountMax=4 \
         --exclude=*.tmp --exclude={src}/skipme root@{HOST1}:{src} {}",
        env.sshd.ssh_program().display(),
        env.root().join("rsync/host1").display(),
        src = env.src().display(),
    );
    assert!(
        run.stdout().starts_with(&expected_start),
        "{}",
        run.stdout()
    );

    assert_fake_super_copy(&env.backed_up("host1", &env.src()));
    let b = |rel: &str| env.backed_up("host1", &env.src().join(rel));
    assert!(!b("skipme").exists(), "per-host exclude");

    let report = env.report();
    // plain.txt, setuid, owned, hard1 (hard2 is linked to it), cache/keep; the symlink is not
    // a data transfer.
    assert_eq!(report["files_transferred"], 5, "{report}\n{}", run.stdout());
    // "hello\n" + "#!/bin/sh\n" + "owned by 1234\n" + "linked\n" + "kept"
    assert_eq!(report["bytes_transferred"], 6 + 10 + 14 + 7 + 4, "{report}");
    assert_eq!(report["scrubbed"], false);
    assert!(report.get("scrub_mismatches").is_none(), "{report}");
    assert!(
        !run.stdout().contains(".f........x"),
        "xattr-only lines are filtered"
    );

    // An unchanged second run transfers nothing.
    let run = env.deltaic(["rsync", "backup", HOST1]).success();
    let report = env.report();
    assert_eq!(report["files_transferred"], 0, "{report}\n{}", run.stdout());
    assert_eq!(report["bytes_transferred"], 0, "{report}");
    assert!(
        !run.stdout().lines().any(|l| l.starts_with(">f")),
        "{}",
        run.stdout()
    );

    // A file excluded later is removed from the backup (--delete-excluded); a deleted one too.
    env.config(
        "",
        &format!(
            "  {HOST1}:\n    mounts: [{src}]\n    exclude: ['{src}/skipme', '{src}/cache/keep']\n",
            src = env.src().display()
        ),
    );
    fs::remove_file(env.src().join("hard2")).unwrap();
    env.deltaic(["rsync", "backup", HOST1]).success();
    assert!(!b("cache/keep").exists());
    assert!(!b("hard2").exists());
    assert!(b("hard1").exists());
}

#[test]
fn scrub_repairs_a_silently_corrupted_file_and_counts_it() {
    let Some(env) = Env::new() else { return };
    env.populate();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();

    // Corrupt the backup copy, keeping its size and mtime: a normal run cannot notice.
    let copy = env.backed_up("host1", &env.src().join("plain.txt"));
    let mtime = fs::metadata(&copy).unwrap().modified().unwrap();
    fs::write(&copy, "jello\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    env.deltaic(["rsync", "backup", HOST1]).success();
    assert_eq!(
        fs::read_to_string(&copy).unwrap(),
        "jello\n",
        "quick check misses it"
    );

    let run = env.deltaic(["rsync", "backup", "--scrub", HOST1]).success();
    assert_eq!(fs::read_to_string(&copy).unwrap(), "hello\n", "repaired");
    assert!(run.stdout().contains(" --checksum\n"), "{}", run.stdout());
    let report = env.report();
    assert_eq!(report["scrubbed"], true, "{report}");
    assert_eq!(report["scrub_mismatches"], 1, "{report}");
    assert!(
        run.stderr().contains("plain.txt differed from the backup"),
        "{}",
        run.stderr()
    );
    // The repair kept the xattrs.
    assert_eq!(
        xattr::get(&copy, "user.foo").unwrap().as_deref(),
        Some(&b"bar"[..])
    );

    // A clean scrub finds nothing.
    env.deltaic(["rsync", "backup", "-c", HOST1]).success();
    assert_eq!(env.report()["scrub_mismatches"], 0);
}

#[test]
fn pre_and_post_run_on_the_host_around_the_backup() {
    let Some(env) = Env::new() else { return };
    env.populate();
    let post_marker = env.path("post-ran");
    let dest_file = env.backed_up("octopus", &env.src().join("pre-ran"));
    env.config(
        "",
        &format!(
            "  {HOST2}:\n    mounts: [{src}]\n    alias: octopus\n    \
             pre: 'echo made by pre > {src}/pre-ran'\n    \
             post: 'test -e {dest} && touch {post}'\n",
            src = env.src().display(),
            dest = dest_file.display(),
            post = post_marker.display(),
        ),
    );
    let run = env.deltaic(["rsync", "backup", HOST2]).success();
    // pre ran before rsync (its file is in the backup), post after it (it saw that file).
    assert_eq!(fs::read_to_string(&dest_file).unwrap(), "made by pre\n");
    assert!(post_marker.exists(), "{}\n{}", run.stdout(), run.stderr());
    // The log shows which hook ran, not its text (it may hold a password).
    for hook in ["pre", "post"] {
        assert!(
            run.stdout().contains(&format!(
                " -o ServerAliveCountMax=4 root@{HOST2} <{hook} command>\n"
            )),
            "{}",
            run.stdout()
        );
    }
    assert!(
        !run.stdout().contains("echo made by pre"),
        "{}",
        run.stdout()
    );
    assert!(
        !run.stderr().contains("echo made by pre"),
        "{}",
        run.stderr()
    );
    // At debug level the text is logged.
    let run = env.deltaic(["-vv", "rsync", "backup", HOST2]).success();
    assert!(
        run.stderr().contains("echo made by pre"),
        "{}",
        run.stderr()
    );
    assert!(
        !run.stdout().contains("echo made by pre"),
        "{}",
        run.stdout()
    );
}

#[test]
fn a_failing_pre_aborts_and_post_runs_only_with_post_always() {
    let Some(env) = Env::new() else { return };
    env.populate();
    let marker = env.path("post-ran");
    let host = |post_always: bool, mount: &Path, pre: &str| {
        format!(
            "  {HOST1}:\n    mounts: [{mount}]\n    pre: '{pre}'\n    post: 'touch {m}'\n    \
             post-always: {post_always}\n",
            mount = mount.display(),
            m = marker.display(),
        )
    };
    env.config("", &host(false, &env.src(), "echo pre failing; exit 3"));
    let run = env.deltaic(["rsync", "backup", HOST1]).failure();
    assert!(
        run.stderr()
            .contains(&format!("`pre` command of {HOST1} failed")),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("status 3"), "{}", run.stderr());
    assert!(
        !env.root().join("rsync/host1").exists(),
        "rsync must not have run"
    );
    assert!(
        !marker.exists(),
        "post must not run after a failure by default"
    );

    env.config("", &host(true, &env.src(), "exit 3"));
    env.deltaic(["rsync", "backup", HOST1]).failure();
    assert!(marker.exists(), "post-always runs post after a failed pre");

    // A failing rsync (a missing mount: status 23) also runs post with post-always only.
    fs::remove_file(&marker).unwrap();
    let missing = env.path("does-not-exist");
    env.config("", &host(false, &missing, "true"));
    let run = env.deltaic(["rsync", "backup", HOST1]).failure();
    assert!(
        run.stderr()
            .contains(&format!("rsync backup of {HOST1} failed")),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("status 23"), "{}", run.stderr());
    assert!(!marker.exists());
    env.config("", &host(true, &missing, "true"));
    env.deltaic(["rsync", "backup", HOST1]).failure();
    assert!(
        marker.exists(),
        "post-always runs post after a failed rsync"
    );
    assert!(
        env.report_path().exists(),
        "the unit report is written after a failure too"
    );
}

#[test]
fn host_keys_are_learned_with_accept_new_and_required_with_yes() {
    let Some(env) = Env::new() else { return };
    env.populate();
    let known = env.path("known_hosts");
    fs::write(&known, "").unwrap();
    let hosts = format!("  {HOST1}:\n    mounts: [{}]\n", env.src().display());
    env.config(
        &format!(
            "  ssh-strict-host-keys: yes\n  ssh-known-hosts: {}\n",
            known.display()
        ),
        &hosts,
    );
    let run = env.deltaic(["rsync", "backup", HOST1]).failure();
    assert!(
        run.stderr().contains("Host key verification failed"),
        "{}",
        run.stderr()
    );
    // rsync reports a failed ssh as 255 or, depending on timing, as 12; the advice is the same.
    let refused = format!("rsync backup of {HOST1} failed");
    assert!(run.stderr().contains(&refused), "{}", run.stderr());
    assert!(
        run.stderr().contains("ssh refused the host key"),
        "{}",
        run.stderr()
    );

    // `yes` accepts a key that is already known.
    fs::write(&known, env.sshd.known_hosts_line()).unwrap();
    env.deltaic(["rsync", "backup", HOST1]).success();

    // accept-new learns the key of a new host into the configured file.
    fs::write(&known, "").unwrap();
    env.config(&format!("  ssh-known-hosts: {}\n", known.display()), &hosts);
    env.deltaic(["rsync", "backup", HOST1]).success();
    let learned = fs::read_to_string(&known).unwrap();
    assert!(
        learned.contains(&format!("[127.0.0.1]:{}", env.sshd.port())),
        "{learned}"
    );

    // A changed key is refused even with accept-new.
    let other_key = env.path("otherkey");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .unwrap();
    assert!(status.success());
    let pubkey = fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let blob = pubkey.split_whitespace().nth(1).unwrap();
    fs::write(
        &known,
        format!("[127.0.0.1]:{} ssh-ed25519 {blob}\n", env.sshd.port()),
    )
    .unwrap();
    env.config(&format!("  ssh-known-hosts: {}\n", known.display()), &hosts);
    let run = env.deltaic(["rsync", "backup", HOST1]).failure();
    assert!(
        run.stderr().contains("ssh refused the host key"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr()
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        run.stderr()
    );
}

#[test]
fn restore_round_trips_owners_modes_and_links() {
    let Some(env) = Env::new() else { return };
    env.populate();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();

    let source = env.backed_up("host1", &env.src());
    let target = env.path("restored");
    let run = env.deltaic([
        OsStr::new("rsync"),
        OsStr::new("restore"),
        source.as_os_str(),
        OsStr::new(HOST1),
        target.as_os_str(),
    ]);
    let run = run.success();
    let line = run.stdout().lines().next().unwrap().to_string();
    assert!(
        line.starts_with("rsync -aHi --acls --xattrs --fake-super -M--super --numeric-ids --rsh="),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(
            "{}/ root@{HOST1}:{}/",
            source.display(),
            target.display()
        )),
        "{line}"
    );

    let r = |rel: &str| target.join(rel);
    assert_eq!(fs::read_to_string(r("plain.txt")).unwrap(), "hello\n");
    assert_eq!(
        xattr::get(r("plain.txt"), "user.foo").unwrap().as_deref(),
        Some(&b"bar"[..])
    );
    let owned = fs::metadata(r("owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1234, 5678, 0o664)
    );
    assert_eq!(mode(&r("setuid")), 0o4755);
    assert_eq!(mode(&r("sticky")), 0o1777);
    assert_eq!(fs::read_link(r("link")).unwrap(), Path::new("plain.txt"));
    let (h1, h2) = (
        fs::metadata(r("hard1")).unwrap(),
        fs::metadata(r("hard2")).unwrap(),
    );
    assert_eq!(h1.ino(), h2.ino());
    for name in ["owned", "setuid", "sticky", "plain.txt"] {
        assert_eq!(
            stat_xattr(&r(name)),
            None,
            "{name}: no fake-super xattr on the host"
        );
    }
}

#[test]
fn coda_restore_uses_its_own_flags_and_keeps_owners() {
    let Some(env) = Env::new() else { return };
    env.populate();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();
    let source = env.backed_up("host1", &env.src());
    let target = env.path("coda-restored");
    let run = env
        .deltaic([
            OsStr::new("rsync"),
            OsStr::new("restore"),
            OsStr::new("--coda"),
            OsStr::new("-u"),
            OsStr::new("root"),
            source.as_os_str(),
            OsStr::new(HOST1),
            target.as_os_str(),
        ])
        .success();
    let line = run.stdout().lines().next().unwrap().to_string();
    assert!(
        line.starts_with(
            "rsync -rlptoHi --fake-super -M--super --numeric-ids --exclude=/..CodaACLs.yaml \
             --rsh="
        ),
        "{line}"
    );
    assert!(
        !line.contains("--acls") && !line.contains("--xattrs"),
        "{line}"
    );
    let owned = fs::metadata(target.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.mode() & 0o7777), (1234, 0o664));
    assert_eq!(mode(&target.join("setuid")), 0o4755);
}

#[test]
fn restore_forwards_trailing_rsync_options_with_or_without_double_dash() {
    let Some(env) = Env::new() else { return };
    env.populate();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();
    let source = env.backed_up("host1", &env.src());
    for (i, with_dashes) in [false, true].into_iter().enumerate() {
        let target = env.path(&format!("restored-{i}"));
        fs::create_dir(&target).unwrap();
        fs::write(target.join("stray"), "not in the backup").unwrap();
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("rsync"),
            OsStr::new("restore"),
            source.as_os_str(),
            OsStr::new(HOST1),
            target.as_os_str(),
        ];
        if with_dashes {
            args.push(OsStr::new("--"));
        }
        args.extend([OsStr::new("--delete"), OsStr::new("--exclude=cache")]);
        let run = env.deltaic(args).success();
        let line = run.stdout().lines().next().unwrap().to_string();
        assert!(line.ends_with(" --delete --exclude=cache"), "{line}");
        assert!(
            !target.join("stray").exists(),
            "--delete reached rsync ({with_dashes})"
        );
        assert!(
            !target.join("cache").exists(),
            "--exclude reached rsync ({with_dashes})"
        );
        assert!(target.join("plain.txt").exists());
    }
}

/// A stand-in `rsync-local-binary` that logs its argv and fails with `code` and `message`
/// whenever `--acls` is present, else runs the real rsync.
fn fake_rsync(env: &Env, code: i32, message: &str) -> (PathBuf, PathBuf) {
    let script = env.path("fake-rsync");
    let log = env.path("fake-rsync.log");
    let text = format!(
        "#!/bin/sh\necho \"$*\" >> '{log}'\nfor a in \"$@\"; do\n  if [ \"$a\" = --acls ]; then \
         echo '{message}' >&2; exit {code}; fi\ndone\nexec rsync \"$@\"\n",
        log = log.display()
    );
    fs::write(&script, text).unwrap();
    chmod(&script, 0o755);
    (script, log)
}

#[test]
fn the_acl_xattr_fallback_happens_only_when_the_remote_lacks_support() {
    let Some(env) = Env::new() else { return };
    env.populate();
    let hosts = format!("  {HOST1}:\n    mounts: [{}]\n", env.src().display());

    let (script, log) = fake_rsync(&env, 12, "rsync: ACLs are not supported on this server");
    env.config(
        &format!("  rsync-local-binary: {}\n", script.display()),
        &hosts,
    );
    let run = env.deltaic(["rsync", "backup", HOST1]).success();
    let calls: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].contains("--acls --xattrs --fake-super"),
        "{calls:?}"
    );
    assert!(
        !calls[1].contains("--acls") && !calls[1].contains("--xattrs"),
        "{calls:?}"
    );
    assert!(calls[1].contains("--fake-super"), "{calls:?}");
    assert!(
        run.stderr().contains("WITHOUT --acls --xattrs"),
        "{}",
        run.stderr()
    );
    let warnings = env.report()["warnings"].clone();
    assert!(warnings[0].as_str().unwrap().contains(HOST1), "{warnings}");
    assert!(
        env.backed_up("host1", &env.src().join("plain.txt"))
            .exists()
    );

    // A dropped connection is also status 12, but must not silently drop the metadata.
    fs::remove_file(&log).unwrap();
    let (script, log) = fake_rsync(
        &env,
        12,
        "rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]",
    );
    env.config(
        &format!("  rsync-local-binary: {}\n", script.display()),
        &hosts,
    );
    let run = env.deltaic(["rsync", "backup", HOST1]).failure();
    // The backup holds hard links, so a (failing) dry run comes first; one transfer follows.
    let transfers = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("--dry-run "))
        .count();
    assert_eq!(transfers, 1);
    assert!(run.stderr().contains("status 12"), "{}", run.stderr());
    assert!(!run.stderr().contains("WITHOUT"), "{}", run.stderr());
    let report = env.report();
    assert!(!report.to_string().contains("WITHOUT"), "{report}");
}

#[test]
fn a_local_host_is_copied_without_ssh_and_never_into_itself() {
    let Some(env) = Env::new() else { return };
    env.populate();
    // The backup root lies inside the backed-up tree: it must not be copied into itself, even
    // with rsync's wildcard characters in its name.
    let root_inside = env.src().join("back[up]*?");
    let marker = env.path("local-pre");
    let text = format!(
        "settings:\n  root: {root}\n  snapshot-backend: dir\nrsync:\n  self.example.test:\n    \
         mounts: [{src}]\n    local: true\n    pre: 'touch {m}'\n",
        root = root_inside.display(),
        src = env.src().display(),
        m = marker.display(),
    );
    fs::write(env.path("deltaic.conf"), text).unwrap();
    // No sshd is involved: an ssh program that fails proves it is not called.
    let out = Command::new(env!("CARGO_BIN_EXE_deltaic"))
        .arg("-c")
        .arg(env.path("deltaic.conf"))
        .args(["rsync", "backup", "self.example.test"])
        .env("DELTAIC_ALLOW_ROOT", "1")
        .env("DELTAIC_SSH", "/bin/false")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists(), "pre ran locally");
    assert!(!stdout.contains("--rsh"), "{stdout}");
    let b = |rel: &str| {
        root_inside
            .join("rsync/self")
            .join(env.src().join(rel).strip_prefix("/").unwrap())
    };
    assert_eq!(fs::read_to_string(b("plain.txt")).unwrap(), "hello\n");
    assert_eq!(
        stat_xattr(&b("owned")).as_deref(),
        Some("100664 0,0 1234:5678")
    );
    assert!(
        !b("back[up]*?").exists(),
        "the backup root was copied into itself"
    );
    assert!(stdout.contains(r"back\[up]\*\?/ "), "{stdout}");
}

#[test]
fn a_manual_backup_refuses_to_run_while_the_host_is_locked() {
    let Some(env) = Env::new() else { return };
    env.populate();
    env.default_config();
    let lock = deltaic::util::lock::acquire(&env.root(), "rsync-host1").unwrap();
    let run = env.deltaic(["rsync", "backup", HOST1]).failure();
    assert!(run.stderr().contains("already running"), "{}", run.stderr());
    assert!(run.stderr().contains("rsync-host1"), "{}", run.stderr());
    drop(lock);
    env.deltaic(["rsync", "backup", HOST1]).success();
}

#[test]
fn an_unknown_host_is_a_clear_error() {
    let Some(env) = Env::new() else { return };
    env.default_config();
    let run = env
        .deltaic(["rsync", "backup", "nothere.example.test"])
        .failure();
    let err = run.stderr();
    assert!(
        err.contains("host `nothere.example.test` is not configured under `rsync:`"),
        "{err}"
    );
    assert!(err.contains(&format!("configured hosts: {HOST1}")), "{err}");
}

/// Whether files in `dir` can be cloned (FICLONE): btrfs yes, ext4 and tmpfs no.
fn can_clone(dir: &Path) -> bool {
    let probe = tempfile::tempdir_in(dir).unwrap();
    fs::write(probe.path().join("s"), "x").unwrap();
    let source = fs::File::open(probe.path().join("s")).unwrap();
    let target = fs::File::create(probe.path().join("t")).unwrap();
    rustix::fs::ioctl_ficlone(&target, &source).is_ok()
}

/// Inode numbers and link counts of the files below `dir`, by path.
fn inodes(dir: &Path) -> std::collections::BTreeMap<PathBuf, (u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path(), (meta.ino(), meta.nlink()));
            }
        }
    }
    out
}

#[test]
fn breaking_a_hard_link_on_the_host_keeps_both_names_right_with_inplace_on_ext4() {
    // The temp dir is ext4 here (no clones): the one name that changes is copied to its own
    // inode, and rsync still runs with --inplace. Without that copy, rsync --inplace would write
    // the new data through the backup's hard link, and both names would end up wrong.
    let Some(env) = Env::new() else { return };
    let src = env.src();
    fs::write(src.join("a"), "original\n").unwrap();
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();
    fs::remove_file(src.join("b")).unwrap();
    fs::write(src.join("b"), "replaced, longer\n").unwrap();
    let run = env.deltaic(["-v", "rsync", "backup", HOST1]).success();
    let b = |rel: &str| env.backed_up("host1", &src.join(rel));
    assert_eq!(fs::read_to_string(b("a")).unwrap(), "original\n");
    assert_eq!(fs::read_to_string(b("b")).unwrap(), "replaced, longer\n");
    assert_eq!(fs::metadata(b("a")).unwrap().nlink(), 1);

    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("rsync --dry-run -aHRxi "), "{out}");
    let real = lines
        .iter()
        .find(|l| l.starts_with("rsync -aHRxi "))
        .unwrap();
    assert!(real.contains(" --inplace "), "{out}");
    let how = if can_clone(env.dir.path()) {
        "cloned"
    } else {
        "copied"
    };
    assert!(
        run.stderr().contains(&format!(
            "gave 1 hard-linked file(s) their own inode ({how})"
        )),
        "{}",
        run.stderr()
    );
    assert!(env.report().get("warnings").is_none(), "{}", env.report());
}

#[test]
fn an_unchanged_tree_with_hard_links_is_neither_split_nor_relinked() {
    let Some(env) = Env::new() else { return };
    let src = env.src();
    fs::create_dir(src.join("dir")).unwrap();
    fs::write(src.join("dir/a"), "two names\n").unwrap();
    fs::hard_link(src.join("dir/a"), src.join("b")).unwrap();
    fs::write(src.join("dir/c"), "three names\n").unwrap();
    fs::hard_link(src.join("dir/c"), src.join("dir/c2")).unwrap();
    fs::hard_link(src.join("dir/c"), src.join("c3")).unwrap();
    fs::write(src.join("plain"), "one name\n").unwrap();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();
    let dest = env.backed_up("host1", &src);
    let before = inodes(&dest);
    assert_eq!(before[&dest.join("dir/c2")].1, 3, "{before:?}");
    let dir_mtime = || fs::metadata(dest.join("dir")).unwrap().modified().unwrap();
    let dir_before = dir_mtime();

    let run = env.deltaic(["-v", "rsync", "backup", HOST1]).success();
    assert!(run.stdout().contains("--dry-run"), "{}", run.stdout());
    // Nothing split (same inodes and link counts), so nothing to link again, and no directory
    // time disturbed by a scratch file.
    assert_eq!(inodes(&dest), before);
    assert_eq!(dir_mtime(), dir_before);
    // (The test's own temp dir, an implied directory of -R, changes between runs.)
    let inside = src.strip_prefix("/").unwrap().to_str().unwrap().to_string();
    let out = run.stdout();
    let itemized: Vec<&str> = out
        .lines()
        .filter(|l| l.len() > 12 && (l.starts_with('h') || l.starts_with(".d")))
        .filter(|l| l[12..].starts_with(&inside))
        .collect();
    assert!(itemized.is_empty(), "{}", run.stdout());
    assert!(!run.stderr().contains("own inode"), "{}", run.stderr());
    assert_eq!(env.report()["files_transferred"], 0);
}

#[test]
fn a_scrub_that_cannot_clone_hard_links_says_it_runs_without_inplace() {
    let Some(env) = Env::new() else { return };
    let src = env.src();
    fs::write(src.join("a"), "linked\n").unwrap();
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();
    let run = env.deltaic(["rsync", "backup", "--scrub", HOST1]).success();
    let report = env.report();
    if can_clone(env.dir.path()) {
        assert!(run.stdout().contains(" --inplace "), "{}", run.stdout());
        assert!(report.get("warnings").is_none(), "{report}");
        return;
    }
    // A dry run would read every file twice, and copying every linked file costs its size:
    // this one scrub runs without --inplace, and says so where the admin looks.
    assert!(!run.stdout().contains("--inplace"), "{}", run.stdout());
    assert!(!run.stdout().contains("--dry-run"), "{}", run.stdout());
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains(HOST1) && warnings.contains("this scrub runs without --inplace"),
        "{report}"
    );
    assert!(run.stderr().contains("WARN"), "{}", run.stderr());
    assert!(
        run.stderr().contains("without --inplace"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_link_broken_on_the_host_after_the_dry_run_is_repaired_before_the_snapshot() {
    let Some(env) = Env::new() else { return };
    let src = env.src();
    fs::write(src.join("a"), "original\n").unwrap();
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();
    // A stand-in rsync that breaks the link on the host (b gets new content) after the dry run
    // and before the transfer: the dry run saw nothing to split.
    let script = env.path("racing-rsync");
    let flag = env.path("raced");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in --dry-run) ;; *) if [ ! -e '{flag}' ]; then touch '{flag}'; \
             rm '{src}/b'; printf 'new b\\n' > '{src}/b'; touch -d @1000000000 '{src}/b'; fi;; \
             esac\nexec rsync \"$@\"\n",
            flag = flag.display(),
            src = src.display()
        ),
    )
    .unwrap();
    chmod(&script, 0o755);
    env.config(
        &format!("  rsync-local-binary: {}\n", script.display()),
        &format!("  {HOST1}:\n    mounts: [{}]\n", src.display()),
    );
    let run = env.deltaic(["-v", "rsync", "backup", HOST1]).success();
    assert!(flag.exists(), "the race happened");
    let b = |rel: &str| env.backed_up("host1", &src.join(rel));
    assert_eq!(fs::read_to_string(b("a")).unwrap(), "original\n");
    assert_eq!(fs::read_to_string(b("b")).unwrap(), "new b\n");
    assert_eq!(fs::metadata(b("a")).unwrap().nlink(), 1);
    let mtime = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
    assert_eq!(mtime(&b("a")), mtime(&src.join("a")));
    assert_eq!(mtime(&b("b")), mtime(&src.join("b")));
    assert!(
        run.stderr()
            .contains("between the dry run and the transfer"),
        "{}",
        run.stderr()
    );
    let passes = run
        .stdout()
        .lines()
        .filter(|l| l.contains("racing-rsync -aHRxi"))
        .count();
    assert_eq!(
        passes,
        2,
        "the transfer and one repair pass:\n{}",
        run.stdout()
    );
}

#[test]
fn an_interrupted_backup_makes_the_next_one_a_scrub_and_a_clean_one_clears_the_marker() {
    let Some(env) = Env::new() else { return };
    env.populate();
    let marker = env.root().join(".deltaic/in-progress/rsync-host1");
    // A stand-in rsync that notes whether the marker exists while it runs.
    let script = env.path("noting-rsync");
    let seen = env.path("marker-seen");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{m}' ]; then echo yes >> '{s}'; else echo no >> '{s}'; fi\n\
             exec rsync \"$@\"\n",
            m = marker.display(),
            s = seen.display()
        ),
    )
    .unwrap();
    chmod(&script, 0o755);
    env.config(
        &format!("  rsync-local-binary: {}\n", script.display()),
        &format!("  {HOST1}:\n    mounts: [{}]\n", env.src().display()),
    );
    let run = env.deltaic(["rsync", "backup", HOST1]).success();
    assert!(!run.stdout().contains("--checksum"), "{}", run.stdout());
    assert_eq!(env.report()["scrubbed"], false);
    assert!(!marker.exists(), "a clean run clears the marker");
    assert_eq!(
        fs::read_to_string(&seen).unwrap(),
        "yes\n",
        "set while rsync runs"
    );

    // A run that died (power loss, SIGKILL) leaves its marker behind.
    fs::write(&marker, "rsync backup of host1 by process 1\n").unwrap();
    let run = env.deltaic(["rsync", "backup", HOST1]).success();
    let argv = run
        .stdout()
        .lines()
        .find(|l| l.contains("-aHRxi"))
        .unwrap()
        .to_string();
    assert!(argv.ends_with(" --checksum"), "{argv}");
    let report = env.report();
    assert_eq!(report["scrubbed"], true, "{report}");
    assert_eq!(report["scrub_mismatches"], 0, "{report}");
    let warning =
        format!("the previous backup of {HOST1} was interrupted; comparing every file by checksum");
    assert!(
        report["warnings"].to_string().contains(&warning),
        "{report}"
    );
    assert!(run.stderr().contains(&warning), "{}", run.stderr());
    assert!(!marker.exists(), "the scrub finished cleanly");

    let run = env.deltaic(["rsync", "backup", HOST1]).success();
    assert!(!run.stdout().contains("--checksum"), "{}", run.stdout());
    assert_eq!(env.report()["scrubbed"], false);
    assert_eq!(
        fs::read_dir(marker.parent().unwrap()).unwrap().count(),
        0,
        "no marker and no scratch files left"
    );
}

#[test]
fn bug_20_without_inplace_an_interrupted_transfer_keeps_the_live_good_copy() {
    let Some(env) = Env::new() else { return };
    let big = env.src().join("big");
    let data = |seed: u8| -> Vec<u8> {
        (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
            .collect()
    };
    fs::write(&big, data(1)).unwrap();
    env.default_config();
    env.deltaic(["rsync", "backup", HOST1]).success();
    let copy = env.backed_up("host1", &big);
    assert!(fs::read(&copy).unwrap() == data(1));

    // New content (same size: an mtime in the same second would hide it, so set one), then a
    // slow transfer (500 KiB/s: 8 s) killed after a moment.
    fs::write(&big, data(2)).unwrap();
    let past = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_modified(past)
        .unwrap();
    let hosts = format!("  {HOST1}:\n    mounts: [{}]\n", env.src().display());
    // Without --inplace the live copy itself survives; with it, the previous snapshot does
    // (tests/it/e2e.rs).
    env.config("  rsync-bwlimit: 500\n  rsync-inplace: false\n", &hosts);
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(env!("CARGO_BIN_EXE_deltaic"))
            .arg("-c")
            .arg(env.path("deltaic.conf"))
            .args(["rsync", "backup", HOST1])
            .env("DELTAIC_ALLOW_ROOT", "1")
            .env("DELTAIC_SSH", env.sshd.ssh_program())
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    // Interrupt it mid-file: once rsync's temporary file for `big` exists.
    let dir = copy.parent().unwrap().to_path_buf();
    let receiving = || {
        fs::read_dir(&dir).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".big.")
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !receiving() {
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let group = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process_group(group, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the transfer should have been interrupted"
    );
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("--bwlimit=500 "), "{out}");

    assert!(
        fs::read(&copy).unwrap() == data(1),
        "the good copy was replaced by a partial one"
    );
    // A killed rsync may leave its temporary file (`.big.XXXXXX`) beside the good copy; the
    // next run deletes it (--delete), since the host has no such file.
    let others = || -> Vec<String> {
        fs::read_dir(copy.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "big")
            .collect()
    };
    assert!(
        others().iter().all(|n| n.starts_with(".big.")),
        "{:?}",
        others()
    );

    env.config("", &hosts);
    env.deltaic(["rsync", "backup", HOST1]).success();
    assert!(fs::read(&copy).unwrap() == data(2));
    assert_eq!(others(), Vec::<String>::new());
}

/// Exclusive bytes of `file` on btrfs (`btrfs filesystem du --raw`): what is not shared with
/// any other file or snapshot.
fn btrfs_exclusive_bytes(file: &Path) -> u64 {
    let mnt = file.parent().unwrap();
    let sync = Command::new("btrfs")
        .args(["filesystem", "sync"])
        .arg(mnt)
        .status()
        .unwrap();
    assert!(sync.success());
    let out = Command::new("btrfs")
        .args(["filesystem", "du", "--raw"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).expect("a line per file");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn inplace_shares_unchanged_blocks_and_never_writes_through_a_hard_link() {
    use crate::harness::btrfs::BtrfsLoop;
    let Some(env) = Env::new() else { return };
    let Some(fs_) = BtrfsLoop::start() else {
        return;
    };
    let src = env.src();
    // Non-repeating data (xorshift), so rsync's delta finds each block only at its own offset.
    let block = |seed: u64, mib: usize| -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..mib << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    fs::write(src.join("a"), block(1, 1)).unwrap();
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    fs::write(src.join("big"), block(2, 8)).unwrap();
    // A pair that stays linked, and one with a name of 240 bytes (a temporary name that
    // embeds it would be too long).
    fs::write(src.join("c"), "stays linked\n").unwrap();
    fs::hard_link(src.join("c"), src.join("c2")).unwrap();
    let long = "l".repeat(240);
    fs::write(src.join("short"), "long pair\n").unwrap();
    fs::hard_link(src.join("short"), src.join(&long)).unwrap();
    let root = fs_.path().join("root");
    let text = format!(
        "settings:\n  root: {}\n  snapshot-backend: dir\n  snapshot-dir: {}\nrsync:\n  {HOST1}:\n    \
         mounts: [{}]\n",
        root.display(),
        fs_.path().join("snaps").display(),
        src.display()
    );
    fs::write(env.path("deltaic.conf"), text).unwrap();
    env.deltaic(["rsync", "backup", HOST1]).success();
    let backed = |rel: &str| {
        root.join("rsync/host1")
            .join(src.join(rel).strip_prefix("/").unwrap())
    };
    assert_eq!(fs::metadata(backed("a")).unwrap().nlink(), 2);

    // Keep the first backup's copy of `big` as a reflink (what a snapshot does), then change
    // 1 MiB of it in place on the host, and break the a/b link there with new content in b.
    let kept = fs_.path().join("big.kept");
    let cp = Command::new("cp")
        .args(["--reflink=always"])
        .arg(backed("big"))
        .arg(&kept)
        .status()
        .unwrap();
    assert!(cp.success());
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(src.join("big"))
            .unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(&block(9, 1)).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30))
            .unwrap();
    }
    fs::remove_file(src.join("b")).unwrap();
    fs::write(src.join("b"), block(3, 1)).unwrap();
    // Same size as before: give it another mtime, or rsync's quick check (same second) skips it.
    fs::File::options()
        .write(true)
        .open(src.join("b"))
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 29))
        .unwrap();

    fs::remove_file(src.join(&long)).unwrap();
    fs::write(src.join(&long), "long name, new content\n").unwrap();

    let run = env.deltaic(["-v", "rsync", "backup", HOST1]).success();
    let real = run
        .stdout()
        .lines()
        .find(|l| l.starts_with("rsync -aHRxi"))
        .unwrap()
        .to_string();
    assert!(real.contains(" --inplace "), "{}", run.stdout());
    assert!(
        run.stderr()
            .contains("gave 2 hard-linked file(s) their own inode (cloned)"),
        "{}",
        run.stderr()
    );
    assert!(env.report().get("warnings").is_none(), "{}", env.report());
    assert_eq!(fs::read_to_string(backed("short")).unwrap(), "long pair\n");
    assert_eq!(
        fs::read_to_string(backed(&long)).unwrap(),
        "long name, new content\n"
    );
    assert_eq!(fs::metadata(backed("c")).unwrap().nlink(), 2);
    assert!(
        fs::read(backed("a")).unwrap() == block(1, 1),
        "a was written through b's link"
    );
    assert!(fs::read(backed("b")).unwrap() == block(3, 1));
    assert!(fs::read(backed("big")).unwrap() == fs::read(src.join("big")).unwrap());
    assert!(
        fs::read(&kept).unwrap() == block(2, 8),
        "the kept copy changed"
    );
    let exclusive = btrfs_exclusive_bytes(&backed("big"));
    assert!(
        exclusive <= 2 << 20,
        "an 8 MiB file with 1 MiB changed costs {exclusive} exclusive bytes: blocks not shared"
    );

    // An unchanged run splits nothing, so rsync links nothing again.
    let dest = root.join("rsync/host1");
    let before = inodes(&dest);
    let run = env.deltaic(["-v", "rsync", "backup", HOST1]).success();
    assert_eq!(inodes(&dest), before);
    assert!(
        !run.stdout().lines().any(|l| l.starts_with("hf")),
        "{}",
        run.stdout()
    );
    assert!(!run.stderr().contains("own inode"), "{}", run.stderr());
}
