//! Running the real `deltaic` binary against a config file, and reading back what a run leaves
//! in the backup root: unit logs (core-rsync-coda.md §4.4), the run manifest and run records
//! (§5.9), today's snapshot names.
//!
//! Every command gets `-c CONFIG`, `DELTAIC_ALLOW_ROOT=1` (the tests run as root) and no
//! `DELTAIC_LOG`, plus the environment the test adds (e.g. `DELTAIC_SSH`).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary, run with one config file and a fixed extra environment.
pub struct Deltaic {
    config: PathBuf,
    env: Vec<(OsString, OsString)>,
}

/// The captured result of one command.
pub struct Ran {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(out: Output) -> Ran {
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The raw output of one command, with accessors that assert how it ended.
pub struct Run {
    /// What the command left.
    pub out: Output,
}

impl Run {
    /// Standard output, lossily decoded.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// Standard error, lossily decoded.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Asserts exit 0 (showing both streams otherwise).
    pub fn success(self) -> Run {
        assert!(
            self.out.status.success(),
            "deltaic failed:\n{}\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts exit 1, deltaic's failure status (showing both streams otherwise).
    pub fn failure(self) -> Run {
        assert_eq!(
            self.out.status.code(),
            Some(1),
            "expected failure:\n{}\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

impl Deltaic {
    /// Commands using the config file `config`.
    pub fn new(config: &Path) -> Deltaic {
        Deltaic {
            config: config.to_owned(),
            env: Vec::new(),
        }
    }

    /// Adds `name=value` to every command's environment.
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Deltaic {
        self.env
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// `deltaic -c CONFIG ARGS`, not started.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deltaic"));
        cmd.arg("-c")
            .arg(&self.config)
            .args(args)
            .env("DELTAIC_ALLOW_ROOT", "1")
            .env_remove("DELTAIC_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `deltaic ARGS` to the end.
    pub fn run<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).output().unwrap().into()
    }

    /// Runs `deltaic ARGS` and asserts its exit code, showing both outputs otherwise.
    pub fn expect<I, S>(&self, args: I, code: i32) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let ran = self.run(&args);
        assert_eq!(
            ran.code,
            Some(code),
            "deltaic {args:?}\nstdout:\n{}\nstderr:\n{}",
            ran.stdout,
            ran.stderr
        );
        ran
    }

    /// Starts `deltaic ARGS` in the background with stdout and stderr piped, as the leader of
    /// a new process group (so that [`super::process::crash`] can take down whatever it runs
    /// itself, e.g. a snapshot tool, without signalling the test).
    pub fn spawn<I, S>(&self, args: I) -> Child
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::os::unix::process::CommandExt;
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap()
    }
}

/// Waits up to `limit` for `child` to exit, then returns its output (kills it and panics when
/// it does not finish in time).
pub fn finish(mut child: Child, limit: Duration) -> Ran {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "deltaic did not finish within {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap().into()
}

/// Today's snapshot name with `revision` (`YYYYMMDD-N`, local date).
pub fn today(revision: u32) -> String {
    let date = jiff::ZonedDateTime::now().date();
    deltaic::snapshot::SnapshotName { date, revision }.to_string()
}

/// True for `YYYY-MM-DD HH:MM:SS <word_and_rest>`.
pub fn is_timestamped(line: &str, word_and_rest: &str) -> bool {
    let (stamp, rest) = line.split_at_checked(19).unwrap_or(("", ""));
    stamp.len() == 19
        && jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", stamp).is_ok()
        && rest == format!(" {word_and_rest}")
}

/// The `.out` and `.err` logs of `unit` under `ROOT/Logs`: asserts there is exactly one pair,
/// named after a day (`YYYYMMDD`), and returns (out, err).
pub fn unit_logs(root: &Path, unit: &str) -> (String, String) {
    let dir = root.join("Logs").join(unit);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let day = names[0].strip_suffix(".err").unwrap();
    assert!(
        day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()),
        "{names:?}"
    );
    assert_eq!(names[1], format!("{day}.out"));
    (
        fs::read_to_string(dir.join(&names[1])).unwrap(),
        fs::read_to_string(dir.join(&names[0])).unwrap(),
    )
}

/// The latest run manifest, `ROOT/.deltaic/manifest.json`.
pub fn manifest(root: &Path) -> serde_json::Value {
    read_json(&root.join(".deltaic/manifest.json"))
}

/// The run record of snapshot `name`, `ROOT/.deltaic/runs/<name>.json`.
pub fn run_record(root: &Path, name: &str) -> serde_json::Value {
    read_json(&root.join(".deltaic/runs").join(format!("{name}.json")))
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
