//! `deltaic prune --simulate` end to end: the rules reach the output, the config's gc-*
//! settings are used, input errors name the line, and nothing on disk is touched.

use assert_cmd::Command;
use std::fs;
use std::path::{Path, PathBuf};

/// A temp dir with a `snapshot-backend: dir` config (plus `extra` settings lines) and a ROOT
/// holding old logs and a run record, so tests can check that simulation touches nothing.
struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    root: PathBuf,
}

impl Env {
    fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backup");
        let logs = root.join("Logs/rsync/host");
        fs::create_dir_all(&logs).unwrap();
        for day in 1..=9 {
            fs::write(logs.join(format!("2024010{day}.out")), "log\n").unwrap();
        }
        fs::create_dir_all(root.join(".deltaic/runs")).unwrap();
        fs::write(root.join(".deltaic/runs/20240108-1.json"), "{}").unwrap();
        let config = dir.path().join("deltaic.conf");
        fs::write(
            &config,
            format!("settings:\n  root: {}\n  snapshot-backend: dir\n  gc-log-distinct-days: 2\n{extra}", root.display()),
        )
        .unwrap();
        Env {
            _dir: dir,
            config,
            root,
        }
    }

    fn prune(&self, args: &[&str], stdin: &str) -> assert_cmd::assert::Assert {
        Command::cargo_bin("deltaic")
            .unwrap()
            .env("DELTAIC_ALLOW_ROOT", "1")
            .env_remove("DELTAIC_LOG")
            .arg("-c")
            .arg(&self.config)
            .arg("prune")
            .args(args)
            .write_stdin(stdin)
            .assert()
    }
}

fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    out.sort();
    out
}

fn stdout(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stdout.clone()).unwrap()
}

const WEEK: &str =
    "20240108-1\n20240109-1\n20240110-1\n20240111-1\n20240112-1\n20240113-1\n20240114-1\n";

#[test]
fn simulate_prints_one_line_per_snapshot_with_its_rule() {
    // core-rsync-coda.md §6.1: runs stopped on 2024-01-14; the original keeps only 20240108-1,
    // the safety rule (D3) keeps the newest complete snapshot too.
    let env = Env::new("");
    let before = listing(&env.root);
    let assert = env
        .prune(&["--simulate", "--as-of", "2024-04-17"], WEEK)
        .success();
    assert_eq!(
        stdout(&assert),
        "20240108-1 keep oldest: the oldest day is always kept\n\
         20240109-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
         20240110-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
         20240111-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
         20240112-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
         20240113-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
         20240114-1 keep safety: the newest complete snapshot\n"
    );
    assert_eq!(
        listing(&env.root),
        before,
        "--simulate touched ROOT (logs or run records)"
    );
}

#[test]
fn simulate_honours_partial_marks_and_prints_json() {
    // §6.3: the week's first snapshot is partial, so its first complete one stands for it.
    let env = Env::new("");
    let input = "20240226-1\n20240304-1 partial\n20240305-1 complete\n\n20240306-1\n20240318-1\n";
    let assert = env
        .prune(&["--simulate", "--as-of", "2024-06-15", "--json"], input)
        .success();
    let value: serde_json::Value = serde_json::from_str(&stdout(&assert)).unwrap();
    let rows: Vec<(String, String, String, bool)> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_string(),
                o["action"].as_str().unwrap().to_string(),
                o["rule"].as_str().unwrap().to_string(),
                o["complete"].as_bool().unwrap(),
            )
        })
        .collect();
    let row = |n: &str, a: &str, r: &str, c: bool| (n.to_string(), a.to_string(), r.to_string(), c);
    assert_eq!(
        rows,
        [
            row(
                "20240226-1",
                "keep",
                "oldest: the oldest day is always kept",
                true
            ),
            row(
                "20240304-1",
                "remove",
                "ISO week 2024-W10 is kept as 20240305-1",
                false
            ),
            row(
                "20240305-1",
                "keep",
                "weekly: first complete of ISO week 2024-W10",
                true
            ),
            row(
                "20240306-1",
                "remove",
                "ISO week 2024-W10 is kept as 20240305-1",
                true
            ),
            row(
                "20240318-1",
                "keep",
                "weekly: first of ISO week 2024-W12",
                true
            ),
        ]
    );
}

#[test]
fn simulate_uses_the_configured_gc_settings() {
    // With a 100-day duplicate window (and a daily window as long), nothing of that week goes.
    let env = Env::new("  gc-duplicate-days: 100\n  gc-daily-weeks: 15\n");
    let assert = env
        .prune(&["--simulate", "--as-of", "2024-04-17"], WEEK)
        .success();
    let out = stdout(&assert);
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(!out.contains(" remove "), "{out}");
    assert!(
        out.contains("20240110-1 keep recent: every snapshot of the last 100 days\n"),
        "{out}"
    );
}

#[test]
fn simulate_rejects_a_bad_line_by_number_and_prints_nothing() {
    let env = Env::new("");
    let assert = env
        .prune(&["--simulate"], "20240108-1\n\n20240109-1 maybe\n")
        .failure()
        .code(1);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        err.contains("error: stdin line 3: `maybe` after 20240109-1"),
        "{err}"
    );
    assert!(stdout(&assert).is_empty());

    let assert = env
        .prune(&["--simulate"], "20240108-1\n2024-01-09\n")
        .failure()
        .code(1);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        err.contains("stdin line 2: `2024-01-09` is not a snapshot name of the form YYYYMMDD-N"),
        "{err}"
    );
}

#[test]
fn as_of_is_checked_and_needs_simulate() {
    let env = Env::new("");
    let assert = env
        .prune(&["--simulate", "--as-of", "17/04/2024"], WEEK)
        .failure()
        .code(1);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        err.contains("--as-of `17/04/2024` is not a date of the form YYYY-MM-DD"),
        "{err}"
    );
    // A usage error (clap): exit 2.
    env.prune(&["--as-of", "2024-04-17"], "").failure().code(2);
}

#[test]
fn simulate_without_as_of_plans_for_today() {
    // Yesterday's snapshots are inside every window, whatever today is.
    let env = Env::new("");
    let yesterday = jiff::ZonedDateTime::now().date().yesterday().unwrap();
    let day = yesterday.strftime("%Y%m%d").to_string();
    let input = format!("{day}-1 partial\n{day}-2\n{day}-3 partial\n");
    let assert = env.prune(&["--simulate"], &input).success();
    let out = stdout(&assert);
    assert_eq!(
        out,
        format!(
            "{day}-1 keep oldest: the oldest day is always kept\n\
             {day}-2 keep recent: every snapshot of the last 14 days\n\
             {day}-3 keep recent: every snapshot of the last 14 days\n"
        )
    );
}
