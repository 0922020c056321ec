//! `deltaic run` end to end, with the real binary and real child processes.
//!
//! The rsync hosts are unresolvable (`*.invalid`, RFC 6761) and `DELTAIC_SSH=false`, so every
//! unit fails fast whatever the rsync source does: these tests are about the driver (lines,
//! logs, manifest, lock, selection), not about rsync.

use crate::harness::deltaic::{finish, is_timestamped, today, unit_logs};
use crate::harness::require;
use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::json;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temp directory with ROOT and a config with two rsync hosts.
struct RunEnv {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl RunEnv {
    fn new() -> RunEnv {
        let env = RunEnv::without_config();
        fs::write(env.config_path(), env.config_text("")).unwrap();
        env
    }

    fn without_config() -> RunEnv {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backup");
        fs::create_dir(&root).unwrap();
        RunEnv { dir, root }
    }

    /// The config: two rsync hosts, two workers, no scrubs, plus `extra` settings lines.
    fn config_text(&self, extra: &str) -> String {
        format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n  snapshot-dir: {}\n  rsync-workers: 2\n  \
             rsync-scrub-probability: 0\n{extra}rsync:\n  host1.invalid:\n    mounts: [/etc]\n  \
             host2.invalid:\n    mounts: [/etc]\n",
            self.root.display(),
            self.dir.path().join("snapshots").display()
        )
    }

    /// `deltaic -c deltaic.conf ARGS`, run from the temp directory (a relative config path, so
    /// the children's absolute `-c` is tested too).
    fn deltaic(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.deltaic_with("deltaic.conf", args)
    }

    /// `deltaic -c CONFIG ARGS` with another config file of the temp directory.
    fn deltaic_with(&self, config: &str, args: &[&str]) -> assert_cmd::assert::Assert {
        cargo_bin_cmd!("deltaic")
            .current_dir(self.dir.path())
            .env("DELTAIC_ALLOW_ROOT", "1")
            .env("DELTAIC_SSH", "false")
            .env_remove("DELTAIC_LOG")
            .env_remove("DELTAIC_RUN_PID")
            .args(["-c", config])
            .args(args)
            .assert()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("deltaic.conf")
    }

    /// The argv the driver shows for `host`'s unit.
    fn child_command(&self, host: &str) -> String {
        let exe = assert_cmd::cargo::cargo_bin!("deltaic");
        let allow_root = if rustix::process::geteuid().is_root() {
            " --allow-root"
        } else {
            ""
        };
        format!(
            "{} -c {}{allow_root} rsync backup {host}",
            exe.display(),
            self.config_path().display()
        )
    }

    fn manifest(&self) -> serde_json::Value {
        let text = fs::read_to_string(self.root.join(".deltaic/manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

fn output(assert: &assert_cmd::assert::Assert) -> (String, String) {
    let out = assert.get_output();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn failing_units_are_all_attempted_logged_mailed_and_recorded_as_partial() {
    let env = RunEnv::new();
    let assert = env.deltaic(&["run", "--no-snapshot"]).code(1);
    let (stdout, stderr) = output(&assert);

    // stdout: Starting and Ending for both units (§4.4 steps 3 and 9).
    for unit in ["rsync/host1", "rsync/host2"] {
        assert!(
            stdout
                .lines()
                .any(|l| is_timestamped(l, &format!("Starting {unit}"))),
            "{stdout}"
        );
        assert!(
            stdout
                .lines()
                .any(|l| is_timestamped(l, &format!("Ending   {unit}"))),
            "{stdout}"
        );
    }
    assert_eq!(stdout.lines().count(), 4, "{stdout}");

    // stderr: a Failed block per unit: the time, the argv, the indented excerpt (§4.4 step 8).
    for host in ["host1", "host2"] {
        let lines: Vec<&str> = stderr.lines().collect();
        let at = lines
            .iter()
            .position(|l| is_timestamped(l, &format!("Failed:  rsync/{host}")))
            .unwrap_or_else(|| panic!("no Failed block for {host}: {stderr}"));
        assert_eq!(
            lines[at + 1],
            format!("   {}", env.child_command(&format!("{host}.invalid")))
        );
        let excerpt: Vec<&str> = lines[at + 2..]
            .iter()
            .take_while(|l| l.starts_with("   "))
            .copied()
            .collect();
        assert!(
            excerpt
                .iter()
                .any(|l| l.starts_with("   # Task exited with status ")),
            "{stderr}"
        );
        assert!(
            excerpt.last().unwrap().starts_with("   # Ending task at "),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("deltaic run: 2 of 2 units failed (rsync/host1, rsync/host2)"),
        "{stderr}"
    );

    // Logs with the original's header and footer (§4.4 steps 5 and 7).
    for host in ["host1", "host2"] {
        let (out, err) = unit_logs(&env.root, &format!("rsync/{host}"));
        for log in [&out, &err] {
            let lines: Vec<&str> = log.lines().collect();
            let start = lines[0]
                .strip_prefix("# Starting task at ")
                .unwrap_or_else(|| panic!("{log}"));
            assert!(
                is_timestamped(&format!("{start} Starting x"), "Starting x"),
                "{log}"
            );
            assert_eq!(
                lines[1],
                format!("# {}", env.child_command(&format!("{host}.invalid")))
            );
            assert!(log.contains("# Task exited with status "), "{log}");
            assert!(log.ends_with("\n\n"), "{log:?}");
        }
    }

    // The manifest: partial, both units failed, no snapshot.
    let manifest = env.manifest();
    assert_eq!(manifest["complete"], false);
    assert!(manifest.get("snapshot").is_none(), "{manifest}");
    let units = manifest["units"].as_array().unwrap();
    let names: Vec<&str> = units.iter().map(|u| u["unit"].as_str().unwrap()).collect();
    assert_eq!(names, ["rsync/host1", "rsync/host2"]);
    for unit in units {
        assert_eq!(unit["status"], "failed");
        assert!(unit["exit_code"].as_i64().unwrap() != 0, "{unit}");
    }
    assert!(manifest["started"].as_str().unwrap() <= manifest["finished"].as_str().unwrap());
    // The report directory is cleaned up.
    assert!(!env.root.join(".deltaic/unit-reports").exists());
}

#[test]
fn json_prints_the_manifest_on_stdout() {
    let env = RunEnv::new();
    let assert = env.deltaic(&["run", "-S", "--json"]).code(1);
    let (stdout, _) = output(&assert);
    let printed: serde_json::Value =
        serde_json::from_str(&stdout).expect("stdout is only the JSON manifest");
    assert_eq!(printed, env.manifest());
}

#[test]
fn dry_run_prints_each_unit_with_its_command_and_touches_nothing() {
    let env = RunEnv::new();
    let assert = env.deltaic(&["run", "--dry-run"]).success();
    let (stdout, _) = output(&assert);
    assert_eq!(
        stdout,
        format!(
            "rsync/host1: {}\nrsync/host2: {}\n",
            env.child_command("host1.invalid"),
            env.child_command("host2.invalid")
        )
    );
    assert_eq!(
        fs::read_dir(&env.root).unwrap().count(),
        0,
        "dry run wrote into ROOT"
    );
}

#[test]
fn only_runs_the_named_units() {
    let env = RunEnv::new();
    let assert = env.deltaic(&["run", "-S", "--only", "rsync/host2"]).code(1);
    let (stdout, _) = output(&assert);
    assert!(
        stdout.contains("Starting rsync/host2") && !stdout.contains("host1"),
        "{stdout}"
    );
    assert!(!env.root.join("Logs/rsync/host1").exists());
    let units = env.manifest()["units"].as_array().unwrap().clone();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0]["unit"], "rsync/host2");
}

#[test]
fn only_with_an_unknown_unit_lists_the_valid_ones_and_runs_nothing() {
    let env = RunEnv::new();
    let assert = env.deltaic(&["run", "-S", "--only", "rsync/nope"]).code(1);
    let (stdout, stderr) = output(&assert);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("unknown unit `rsync/nope`"), "{stderr}");
    assert!(
        stderr.contains("valid units: rsync/host1, rsync/host2"),
        "{stderr}"
    );
    assert!(!env.root.join("Logs").exists());
}

#[test]
fn a_second_run_is_refused_while_the_lock_is_held() {
    let env = RunEnv::new();
    fs::create_dir(env.root.join(".lock")).unwrap();
    let held = fs::File::create(env.root.join(".lock/backup")).unwrap();
    held.try_lock().unwrap();
    let assert = env.deltaic(&["run", "-S"]).code(1);
    let (stdout, stderr) = output(&assert);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("another deltaic backup is already running"),
        "{stderr}"
    );
    assert!(
        !env.root.join("Logs").exists(),
        "units ran despite the lock"
    );
    drop(held);
}

#[test]
fn a_missing_root_is_an_error_not_created() {
    let env = RunEnv::new();
    fs::remove_dir(&env.root).unwrap();
    let assert = env.deltaic(&["run", "-S"]).code(1);
    let (_, stderr) = output(&assert);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!env.root.exists());
}

/// Starts `deltaic run -S` with its config in a FIFO: the parent gets the config (written once
/// here), while every unit child then blocks opening the FIFO, which nobody writes again. That
/// is a unit that hangs, in the real binary, whatever the rsync source does.
fn start_hanging_run(env: &RunEnv, extra_settings: &str) -> Child {
    let fifo = env.config_path();
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let child = Command::new(assert_cmd::cargo::cargo_bin!("deltaic"))
        .current_dir(env.dir.path())
        .env("DELTAIC_ALLOW_ROOT", "1")
        .env("DELTAIC_SSH", "false")
        .env_remove("DELTAIC_LOG")
        .args(["-c", "deltaic.conf", "run", "-S"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer
        .write_all(env.config_text(extra_settings).as_bytes())
        .unwrap();
    drop(writer);
    child
}

/// Processes whose command line mentions `needle` (our temp dir): leftovers of a run.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let state = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = state
                .rsplit(") ")
                .next()
                .is_some_and(|s| s.starts_with('Z'));
            if cmdline.contains(needle) && !zombie {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Waits (up to 10 s) until both unit children run: they are the processes whose command line
/// names the config in our temp dir (the parent's names it relatively).
fn wait_for_both_units(env: &RunEnv) {
    let needle = env.dir.path().display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_mentioning(&needle).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the units never started: {:?}",
            processes_mentioning(&needle)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hung_units_are_killed_at_the_unit_timeout() {
    let env = RunEnv::without_config();
    let clock = Instant::now();
    let out = finish(
        start_hanging_run(&env, "  unit-timeout: 1\n"),
        Duration::from_secs(20),
    );
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(
        clock.elapsed() < Duration::from_secs(10),
        "took {:?}",
        clock.elapsed()
    );
    assert!(
        stderr.contains("2 of 2 units failed (rsync/host1, rsync/host2), 2 of them timed out"),
        "{stderr}"
    );
    assert!(
        stderr.contains("   # Task timed out after 1 s\n   # Task died on signal 15\n"),
        "{stderr}"
    );
    let units = env.manifest()["units"].as_array().unwrap().clone();
    assert!(
        units.iter().all(|u| u["status"] == "timed-out"),
        "{units:?}"
    );
    let (out_log, _) = unit_logs(&env.root, "rsync/host1");
    assert!(
        out_log.contains("# Task timed out after 1 s\n# Task died on signal 15\n"),
        "{out_log}"
    );
    assert_eq!(
        processes_mentioning(&env.dir.path().display().to_string()),
        Vec::<String>::new()
    );
}

#[test]
fn sigterm_to_the_run_stops_its_units_and_records_a_partial_run() {
    let env = RunEnv::without_config();
    let run = start_hanging_run(&env, "");
    wait_for_both_units(&env);
    let needle = env.dir.path().display().to_string();
    assert_eq!(
        processes_mentioning(&needle).len(),
        2,
        "{:?}",
        processes_mentioning(&needle)
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&run),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = finish(run, Duration::from_secs(20));
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error: deltaic run was interrupted; no snapshot taken"),
        "{stderr}"
    );
    let manifest = env.manifest();
    assert_eq!(manifest["complete"], false);
    assert!(
        manifest["units"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["status"] == "failed")
    );
    let (_, err_log) = unit_logs(&env.root, "rsync/host2");
    assert!(
        err_log.contains("# Task stopped: deltaic run was interrupted\n# Task died on signal 15\n"),
        "{err_log}"
    );
    assert_eq!(processes_mentioning(&needle), Vec::<String>::new());
}

#[test]
fn a_run_refuses_manual_backups_and_snapshots_while_it_holds_the_lock() {
    let env = RunEnv::without_config();
    let run = start_hanging_run(&env, "");
    wait_for_both_units(&env);
    // The run's config is a FIFO read once; the manual commands read the same from a file.
    fs::write(env.dir.path().join("manual.conf"), env.config_text("")).unwrap();
    let manual = env.deltaic_with("manual.conf", &["rsync", "backup", "host1.invalid"]);
    let (_, stderr) = output(&manual.code(1));
    assert!(
        stderr.contains("a deltaic run or snapshot is in progress; try again when it ends"),
        "{stderr}"
    );
    let snapshot = env.deltaic_with("manual.conf", &["snapshot"]);
    let (stdout, stderr) = output(&snapshot.code(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("another deltaic backup is already running"),
        "{stderr}"
    );
    assert!(!env.dir.path().join("snapshots").exists());

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&run),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = finish(run, Duration::from_secs(20));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(
        processes_mentioning(&env.dir.path().display().to_string()),
        Vec::<String>::new()
    );
}

#[test]
fn a_manual_backup_keeps_snapshots_and_runs_out_until_it_ends() {
    use std::os::unix::process::CommandExt;
    let env = RunEnv::without_config();
    let marker = env.dir.path().join("pre-started");
    let src = env.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    // The `pre` hook runs with the unit's locks held: it marks that, then hangs.
    fs::write(
        env.config_path(),
        format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n  snapshot-dir: {}\nrsync:\n  \
             self.example.test:\n    alias: me\n    local: true\n    mounts: [{}]\n    \
             pre: 'touch {}; exec sleep 60'\n",
            env.root.display(),
            env.dir.path().join("snapshots").display(),
            src.display(),
            marker.display()
        ),
    )
    .unwrap();
    let mut manual = Command::new(assert_cmd::cargo::cargo_bin!("deltaic"))
        .current_dir(env.dir.path())
        .env("DELTAIC_ALLOW_ROOT", "1")
        .env_remove("DELTAIC_LOG")
        .env_remove("DELTAIC_RUN_PID")
        .args(["-c", "deltaic.conf", "rsync", "backup", "self.example.test"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the pre hook never ran");
        std::thread::sleep(Duration::from_millis(20));
    }

    for args in [&["snapshot"][..], &["run"][..]] {
        let (stdout, stderr) = output(&env.deltaic(args).code(1));
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(
            stderr.contains("deltaic units started by hand (e.g. `deltaic rsync backup HOST`)")
                && stderr.contains("try again when they end"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!env.dir.path().join("snapshots").exists());
    assert!(!env.root.join("Logs").exists(), "the run started units");
    assert!(
        manual.try_wait().unwrap().is_none(),
        "the manual backup must still run, or the refusals prove nothing"
    );

    let group = rustix::process::Pid::from_child(&manual);
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    manual.wait().unwrap();
    let (stdout, _) = output(&env.deltaic(&["snapshot"]).success());
    assert_eq!(stdout, format!("{}\n", today(1)));
}

#[test]
fn a_unit_child_takes_only_its_own_lock_under_its_run_and_never_starts_without_it() {
    let env = RunEnv::new();
    // This test process stands in for the run: it holds the backup lock exclusively.
    let run_lock = deltaic::util::lock::acquire(&env.root, "backup").unwrap();
    let as_child = |run_pid: &str| {
        cargo_bin_cmd!("deltaic")
            .current_dir(env.dir.path())
            .env("DELTAIC_ALLOW_ROOT", "1")
            .env("DELTAIC_SSH", "false")
            .env("DELTAIC_RUN_PID", run_pid)
            .env_remove("DELTAIC_LOG")
            .args(["-c", "deltaic.conf", "rsync", "backup", "host1.invalid"])
            .assert()
    };
    // Its parent is the run named: it goes past the lock (and fails later, on ssh).
    let (_, stderr) = output(&as_child(&std::process::id().to_string()).code(1));
    assert!(!stderr.contains("in progress"), "{stderr}");
    assert!(
        stderr.contains("rsync backup of host1.invalid failed"),
        "{stderr}"
    );
    // By hand, it is refused while the "run" holds the lock.
    let (_, stderr) = output(&env.deltaic(&["rsync", "backup", "host1.invalid"]).code(1));
    assert!(
        stderr.contains("a deltaic run or snapshot is in progress; try again when it ends"),
        "{stderr}"
    );
    drop(run_lock);

    // Named run is not its parent: the run died before the unit could arm its guard.
    fs::remove_dir_all(env.root.join(".lock")).unwrap();
    let (_, stderr) = output(&as_child("1").code(1));
    assert!(
        stderr.contains(
            "the deltaic run (pid 1) that started this unit has already exited, so the unit \
             does not start"
        ),
        "{stderr}"
    );
    assert!(!env.root.join(".lock").exists(), "the unit touched ROOT");
    let (_, stderr) = output(&as_child("not-a-pid").code(1));
    assert!(
        stderr.contains("DELTAIC_RUN_PID=`not-a-pid` is not a process id"),
        "{stderr}"
    );
}

#[test]
fn complete_means_every_configured_unit_last_succeeded_also_for_only_runs_and_snapshots() {
    if !require::service("rsync", require::program_exists("rsync")) {
        return;
    }
    let env = RunEnv::without_config();
    let (a, b) = (env.dir.path().join("a"), env.dir.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::write(a.join("file"), "a\n").unwrap();
    let write_config = |extra: &str| {
        let host = |name: &str, path: &std::path::Path| {
            format!(
                "  {name}.example.test:\n    alias: {name}\n    local: true\n    mounts: [{}]\n",
                path.display()
            )
        };
        fs::write(
            env.config_path(),
            format!(
                "settings:\n  root: {}\n  snapshot-backend: dir\n  snapshot-dir: {}\n  \
                 rsync-scrub-probability: 0\nrsync:\n{}{}{extra}",
                env.root.display(),
                env.dir.path().join("snapshots").display(),
                host("a", &a),
                host("b", &b),
            ),
        )
        .unwrap();
    };
    write_config("");
    let ls = || output(&env.deltaic(&["ls"]).success()).0;
    let only = |m: &serde_json::Value| {
        (
            m["complete"].clone(),
            m["only"].clone(),
            m["units_not_ok"].clone(),
        )
    };

    // b's path is missing: a full run fails on it, partial.
    env.deltaic(&["run"]).code(1);
    assert_eq!(ls(), format!("{} partial\n", today(1)));

    // Only a, which succeeds: exit 0, but b may hold torn files, so the snapshot is partial.
    let (_, stderr) = output(&env.deltaic(&["run", "--only", "rsync/a"]).success());
    assert!(
        stderr.contains("1 unit did not succeed in its last run or never ran (rsync/b)")
            && stderr.contains("recorded as partial"),
        "{stderr}"
    );
    assert_eq!(
        only(&env.manifest()),
        (json!(false), json!(["rsync/a"]), json!(["rsync/b"]))
    );
    assert_eq!(
        ls(),
        format!("{} partial\n{} partial\n", today(1), today(2))
    );

    // b fixed, only b: now every unit last succeeded.
    fs::create_dir(&b).unwrap();
    env.deltaic(&["run", "--only", "rsync/b"]).success();
    assert_eq!(
        only(&env.manifest()),
        (json!(true), json!(["rsync/b"]), serde_json::Value::Null)
    );
    let status: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(env.root.join(".deltaic/unit-status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["rsync/a"]["status"], "ok", "{status}");
    assert_eq!(status["rsync/b"]["status"], "ok", "{status}");
    assert!(status["rsync/b"]["time"].is_string(), "{status}");

    // A manual snapshot is judged the same way, and says so.
    let (stdout, stderr) = output(&env.deltaic(&["snapshot"]).success());
    assert_eq!(stdout, format!("{}\n", today(4)));
    assert!(
        stderr.contains(&format!("snapshot {} recorded as complete", today(4))),
        "{stderr}"
    );
    // A unit configured since, never run: partial.
    let c = env.dir.path().join("c");
    write_config(&format!(
        "  c.example.test:\n    alias: c\n    local: true\n    mounts: [{}]\n",
        c.display()
    ));
    let (stdout, stderr) = output(&env.deltaic(&["snapshot"]).success());
    assert_eq!(stdout, format!("{}\n", today(5)));
    assert!(
        stderr.contains(&format!(
            "snapshot {} recorded as partial: 1 unit did not succeed in its last run or never ran (rsync/c)",
            today(5)
        )),
        "{stderr}"
    );
    assert_eq!(
        ls(),
        format!(
            "{} partial\n{} partial\n{} complete\n{} complete\n{} partial\n",
            today(1),
            today(2),
            today(3),
            today(4),
            today(5)
        )
    );

    // Units run by hand leave their outcome too: c succeeds by hand, so the tree is complete;
    // then b fails by hand (it may have left torn files), so the next snapshot is partial.
    fs::create_dir(&c).unwrap();
    env.deltaic(&["rsync", "backup", "c.example.test"])
        .success();
    let (_, stderr) = output(&env.deltaic(&["snapshot"]).success());
    assert!(
        stderr.contains(&format!("snapshot {} recorded as complete", today(6))),
        "{stderr}"
    );
    fs::remove_dir(&b).unwrap();
    env.deltaic(&["rsync", "backup", "b.example.test"]).code(1);
    let (_, stderr) = output(&env.deltaic(&["snapshot"]).success());
    assert!(
        stderr.contains(&format!(
            "snapshot {} recorded as partial: 1 unit did not succeed in its last run or never ran (rsync/b)",
            today(7)
        )),
        "{stderr}"
    );
}

#[test]
fn config_check_reports_a_source_it_cannot_plan_without_failing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deltaic.conf");
    std::fs::write(
        &config,
        format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n  github-token: t\n  \
             github-api-url: http://127.0.0.1:9/api/v3\n  github-retry-max: 0\n\
             rsync:\n  h.example.org:\n    mounts: [/etc]\ngithub:\n  acme:\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deltaic"))
        .arg("-c")
        .arg(&config)
        .args(["config", "check"])
        .env("DELTAIC_ALLOW_ROOT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("OK, 1 unit(s)") && stdout.contains("  rsync/h"),
        "{stdout}"
    );
    assert!(
        stderr.contains("warning: github: listing the repositories of GitHub organisation acme"),
        "{stderr}"
    );
}
