//! The real unit runner: each unit is a child process of this same program (D2,
//! core-rsync-coda.md §4.4), the very command an operator would type:
//!
//! `<current_exe> -c <absolute config> [--allow-root] <unit.backup_args…>`
//!
//! * the config path is always passed (BUG-6), and `--allow-root` when this process runs as root
//!   (it only gets here as root when it was allowed to);
//! * stdin is /dev/null; stdout and stderr are appended to the unit's logs ([`super::unit_log`]);
//! * the environment is an allowlist ([`ENV_ALLOWLIST`]; BUG-8 fixed), plus
//!   `DELTAIC_UNIT_REPORT`, where the child writes its [`UnitReport`], and `DELTAIC_RUN_PID`
//!   ([`lock::RUN_PID_ENV`]), this run's pid: the child then knows it runs under this run's lock
//!   ([`lock::unit_locks`]) and must not outlive it ([`super::unit_guard`]);
//! * the child leads its own process group, so a timeout or an interrupted run stops the whole
//!   unit, ssh and rsync included: SIGTERM to the group, SIGKILL after a grace period; and
//!   whatever the unit leaves running after it exits is terminated too ([`run_in_group`]).
//!   The groups of the running units are registered, so that a run exiting at once (a second
//!   signal, [`super::signals`]) signals them first ([`RUNNING_UNITS`]);
//! * the child is spawned by the worker thread that waits for it, so the parent-death signal
//!   the child arms ([`super::unit_guard`]) fires exactly when the run dies, not when some other
//!   thread ends.

use super::excerpt;
use super::manifest::{UNIT_REPORT_ENV, UnitReport, UnitStatus, state_dir};
use super::scheduler::{UnitOutcome, UnitRunner};
use super::unit_log::{ChildEnd, Killed, UnitLog, footer, header};
use crate::config::Config;
use crate::sources::Unit;
use crate::util::{lock, process};
use anyhow::Context;
use jiff::ZonedDateTime;
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Environment variables a unit child inherits; a trailing `*` matches a prefix. Everything else
/// is dropped, so the parent's secrets and quirks do not leak into the units, while PATH (for
/// rsync, ssh, sudo), HOME (for ~/.ssh), the locale, TZ, the ssh agent and a private CA
/// (SSL_CERT_FILE/DIR, e.g. for GitHub Enterprise) and the Ceph tools' CEPH_CONF/CEPH_ARGS (D2)
/// work as in a shell.
pub const ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_*",
    "TZ",
    "SSH_AUTH_SOCK",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CEPH_*",
    "USER",
    "LOGNAME",
    "DELTAIC_LOG",
    "DELTAIC_SSH",
    "DELTAIC_SUDO",
    "DELTAIC_ALLOW_ROOT",
];

/// How long a unit gets to exit after SIGTERM before its group gets SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// How often the supervisor checks the child, the clock and the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Whether `name` is in [`ENV_ALLOWLIST`].
pub fn env_allowed(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    ENV_ALLOWLIST
        .iter()
        .any(|allowed| match allowed.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *allowed,
        })
}

/// The allowed part of `vars` (normally `std::env::vars_os()`).
pub fn allowed_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(name, _)| env_allowed(name))
        .collect()
}

/// The fixed start of every unit's command line: this program and its global options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCommand {
    /// The deltaic executable.
    pub exe: PathBuf,
    /// The absolute config path, always passed as `-c` (BUG-6).
    pub config: PathBuf,
    /// Whether to pass `--allow-root`.
    pub allow_root: bool,
}

impl ChildCommand {
    /// The command for children of this process: `current_exe()`, the config it loaded, and
    /// `--allow-root` when running as root.
    pub fn for_this_process(config: &Config) -> anyhow::Result<ChildCommand> {
        let exe =
            std::env::current_exe().context("finding the deltaic executable to run units with")?;
        let config_path = std::path::absolute(&config.path).with_context(|| {
            format!("making the config path {} absolute", config.path.display())
        })?;
        Ok(ChildCommand {
            exe,
            config: config_path,
            allow_root: rustix::process::geteuid().is_root(),
        })
    }

    /// The full argv of `unit`'s child.
    pub fn argv(&self, unit: &Unit) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            self.exe.clone().into(),
            "-c".into(),
            self.config.clone().into(),
        ];
        if self.allow_root {
            argv.push("--allow-root".into());
        }
        argv.extend(unit.backup_args.iter().map(OsString::from));
        argv
    }

    /// The argv of `unit` as written in logs and mail: words joined by spaces, no quoting (§4.4).
    pub fn display(&self, unit: &Unit) -> String {
        self.argv(unit)
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// When a supervised child is stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Stop it after this long (`unit-timeout`); `None`: no limit.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// How a supervised child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervised {
    /// Its exit status or signal.
    pub end: ChildEnd,
    /// Why deltaic stopped it, if it did.
    pub killed: Option<Killed>,
}

/// A set of process groups (their leaders' pids) that can be signalled together.
///
/// [`run_in_group`] registers each unit's group in [`RUNNING_UNITS`] from spawn until just
/// before its leader is reaped: while the leader is unreaped its pid, the group id, cannot be
/// reused, so signalling a registered group never hits a stranger.
#[derive(Debug, Default)]
pub struct UnitGroups(Mutex<BTreeSet<i32>>);

/// The process groups of the units running now in this process.
pub static RUNNING_UNITS: UnitGroups = UnitGroups::new();

impl UnitGroups {
    /// An empty set.
    pub const fn new() -> UnitGroups {
        UnitGroups(Mutex::new(BTreeSet::new()))
    }

    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the group led by `leader` until the returned guard is dropped.
    pub fn register(&self, leader: Pid) -> Registered<'_> {
        self.set().insert(leader.as_raw_nonzero().get());
        Registered {
            groups: self,
            leader,
        }
    }

    /// Whether the group led by `leader` is registered.
    pub fn contains(&self, leader: Pid) -> bool {
        self.set().contains(&leader.as_raw_nonzero().get())
    }

    /// Sends `signal` to every registered group; returns how many there were.
    pub fn signal_all(&self, signal: Signal) -> usize {
        let set = self.set();
        for &pgid in set.iter() {
            if let Some(pid) = Pid::from_raw(pgid) {
                signal_group(pid, signal);
            }
        }
        set.len()
    }
}

/// A group's registration in a [`UnitGroups`], removed when dropped.
#[derive(Debug)]
pub struct Registered<'a> {
    groups: &'a UnitGroups,
    leader: Pid,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.groups
            .set()
            .remove(&self.leader.as_raw_nonzero().get());
    }
}

/// Runs `cmd` as the leader of a new process group and waits for it, stopping the group with
/// SIGTERM (then SIGKILL after `limits.grace`) when `limits.timeout` passes or `stop` is set.
/// Once the leader has exited, what is left of its group gets SIGTERM (SIGKILL after a kill),
/// so nothing a unit started outlives it.
///
/// Errors: the command cannot be started, or waiting for it fails.
pub fn run_in_group(
    cmd: &mut Command,
    limits: &Limits,
    stop: &AtomicBool,
) -> io::Result<Supervised> {
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    let pid = Pid::from_child(&child);
    let registered = RUNNING_UNITS.register(pid);
    let started = Instant::now();
    let mut killing: Option<(Killed, Instant, bool)> = None;
    while !leader_exited(pid)? {
        match &mut killing {
            None => {
                let reason = if stop.load(Ordering::SeqCst) {
                    Some(Killed::Interrupted)
                } else {
                    limits
                        .timeout
                        .filter(|t| started.elapsed() >= *t)
                        .map(Killed::TimedOut)
                };
                if let Some(reason) = reason {
                    signal_group(pid, Signal::TERM);
                    killing = Some((reason, Instant::now(), false));
                }
            }
            Some((_, since, sent_kill)) => {
                if !*sent_kill && since.elapsed() >= limits.grace {
                    signal_group(pid, Signal::KILL);
                    *sent_kill = true;
                }
            }
        }
        std::thread::sleep(POLL);
    }
    // The leader is a zombie until `wait` reaps it, so its pid (the group id) cannot have been
    // reused: signalling the group reaches only the unit's own leftovers.
    signal_group(
        pid,
        if killing.is_some() {
            Signal::KILL
        } else {
            Signal::TERM
        },
    );
    drop(registered); // before the leader is reaped and its pid may be reused
    let status = child.wait()?;
    let end = match (status.code(), status.signal()) {
        (Some(code), _) => ChildEnd::Exited(code),
        (None, Some(sig)) => ChildEnd::Signaled(sig),
        (None, None) => ChildEnd::NotStarted(format!("unexpected wait status {status}")),
    };
    Ok(Supervised {
        end,
        killed: killing.map(|(reason, ..)| reason),
    })
}

/// Whether the process `pid` has exited, without reaping it.
fn leader_exited(pid: Pid) -> io::Result<bool> {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match rustix::process::waitid(WaitId::Pid(pid), options) {
            Ok(status) => return Ok(status.is_some()),
            Err(Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// Sends `signal` to the process group `pgid`; a group that is already gone is fine.
fn signal_group(pgid: Pid, signal: Signal) {
    match rustix::process::kill_process_group(pgid, signal) {
        Ok(()) | Err(Errno::SRCH) => {}
        Err(err) => tracing::warn!(
            "cannot signal process group {}: {err}",
            pgid.as_raw_nonzero()
        ),
    }
}

/// Runs units as child processes of `deltaic` (see the module doc).
pub struct ChildRunner<'a> {
    command: ChildCommand,
    root: PathBuf,
    env: Vec<(OsString, OsString)>,
    limits: Limits,
    stop: &'a AtomicBool,
    reports: PathBuf,
}

impl<'a> ChildRunner<'a> {
    /// A runner for `config`'s units. `parent_env` is the environment to filter for the children
    /// (normally `std::env::vars_os()`); `stop` interrupts running units when set.
    ///
    /// Errors: the directory for unit reports (`ROOT/.deltaic/unit-reports`) cannot be made.
    pub fn new(
        config: &Config,
        command: ChildCommand,
        parent_env: impl IntoIterator<Item = (OsString, OsString)>,
        stop: &'a AtomicBool,
    ) -> anyhow::Result<ChildRunner<'a>> {
        let root = config.root().to_owned();
        let reports = state_dir(&root).join("unit-reports");
        // Reports left by a run that crashed are stale.
        let _ = fs::remove_dir_all(&reports);
        fs::create_dir_all(&reports).with_context(|| format!("creating {}", reports.display()))?;
        Ok(ChildRunner {
            command,
            root,
            env: allowed_env(parent_env),
            limits: Limits {
                timeout: config.settings.unit_timeout.limit(),
                grace: KILL_GRACE,
            },
            stop,
            reports,
        })
    }

    /// Overrides the timeout and grace period (tests).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn report_path(&self, unit: &Unit) -> PathBuf {
        self.reports.join(report_file_name(unit))
    }
}

/// The unit's report file name: its root with `%` and `/` percent-encoded (`%25`, `%2F`), so
/// that distinct units never share a file (`github/a%b/c` and `github/a/b%c` differ).
fn report_file_name(unit: &Unit) -> String {
    let encoded = unit.root.as_str().replace('%', "%25").replace('/', "%2F");
    format!("{encoded}.json")
}

impl Drop for ChildRunner<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.reports);
    }
}

impl UnitRunner for ChildRunner<'_> {
    fn run(&self, unit: &Unit, started: &ZonedDateTime) -> anyhow::Result<UnitOutcome> {
        let argv = self.command.argv(unit);
        let command = self.command.display(unit);
        let report_path = self.report_path(unit);
        remove_if_present(&report_path)?;
        let mut log = UnitLog::open(&self.root, &unit.root, started.date())?;
        let (out, err) = log
            .child_stdio()
            .with_context(|| format!("duplicating {}", log.out_path.display()))?;
        log.write_both(&header(started, &command))?;
        tracing::debug!("running {command}");

        let mut cmd = process::command(&argv[0], &argv[1..]);
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(UNIT_REPORT_ENV, &report_path)
            .env(lock::RUN_PID_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let (end, killed) = match run_in_group(&mut cmd, &self.limits, self.stop) {
            Ok(done) => (done.end, done.killed),
            Err(err) => (ChildEnd::NotStarted(err.to_string()), None),
        };
        drop(cmd); // closes the parent's copies of the log descriptors
        log.write_both(&footer(&end, killed.as_ref(), &ZonedDateTime::now()))?;

        let status = match (&end, &killed) {
            (_, Some(Killed::TimedOut(_))) => UnitStatus::TimedOut,
            (ChildEnd::Exited(0), None) => UnitStatus::Ok,
            _ => UnitStatus::Failed,
        };
        let excerpt = if status == UnitStatus::Ok {
            String::new()
        } else {
            excerpt::from_log(&log.err_path).unwrap_or_else(|err| {
                format!(
                    "{}(cannot read {}: {err})",
                    excerpt::INDENT,
                    log.err_path.display()
                )
            })
        };
        Ok(UnitOutcome {
            status,
            exit_code: match end {
                ChildEnd::Exited(code) => Some(code),
                _ => None,
            },
            report: take_report(&report_path),
            command,
            excerpt,
        })
    }
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing stale unit report {}", path.display())),
    }
}

/// Reads and removes the report a child wrote; a missing report is an empty one, and an
/// unreadable one becomes a warning in the report.
fn take_report(path: &Path) -> UnitReport {
    let read = fs::read(path);
    let _ = fs::remove_file(path);
    let parsed = match read {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return UnitReport::default(),
        Err(e) => Err(e.to_string()),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
    };
    parsed.unwrap_or_else(|err| UnitReport {
        warnings: vec![format!(
            "the unit's report {} is unreadable: {err}",
            path.display()
        )],
        ..UnitReport::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::plan::tests::config;
    use crate::run::scheduler::tests::unit;
    use std::os::unix::fs::PermissionsExt;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn the_allowlist_keeps_the_sane_environment_only() {
        let kept = allowed_env(os(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/home/backup"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C"),
            ("LC_TIME", "en_GB"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("DELTAIC_LOG", "debug"),
            ("FOO", "secret"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("PATHX", "no"),
            ("XDG_CONFIG_HOME", "/elsewhere"),
        ]));
        let names: Vec<&str> = kept.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "LANG",
                "LC_ALL",
                "LC_TIME",
                "SSH_AUTH_SOCK",
                "DELTAIC_LOG"
            ]
        );
    }

    #[test]
    fn child_argv_always_passes_the_config_and_allow_root_when_asked() {
        let mut cmd = ChildCommand {
            exe: "/usr/bin/deltaic".into(),
            config: "/etc/d.conf".into(),
            allow_root: false,
        };
        let u = unit("rsync/h");
        assert_eq!(
            cmd.display(&u),
            "/usr/bin/deltaic -c /etc/d.conf backup rsync/h"
        );
        cmd.allow_root = true;
        assert_eq!(
            cmd.display(&u),
            "/usr/bin/deltaic -c /etc/d.conf --allow-root backup rsync/h"
        );
    }

    /// Writes an executable shell script standing in for deltaic.
    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-deltaic");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn runner<'a>(root: &Path, exe: PathBuf, stop: &'a AtomicBool) -> ChildRunner<'a> {
        let command = ChildCommand {
            exe,
            config: "/etc/d.conf".into(),
            allow_root: false,
        };
        let env = os(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/backup"),
            ("FOO", "must-not-leak"),
        ]);
        ChildRunner::new(&config(root), command, env, stop).unwrap()
    }

    #[test]
    fn a_child_gets_its_logs_argv_allowlisted_env_and_report_file() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(
            dir.path(),
            r#"echo "args: $*"; env | sort; echo "to stderr" >&2
               printf '{"bytes_transferred": 42, "scrubbed": true}' > "$DELTAIC_UNIT_REPORT"
               if read line; then echo "stdin was not empty"; fi"#,
        );
        let stop = AtomicBool::new(false);
        let runner = runner(dir.path(), exe.clone(), &stop);
        let started = ZonedDateTime::now();
        let outcome = runner.run(&unit("rsync/h"), &started).unwrap();

        assert_eq!(outcome.status, UnitStatus::Ok);
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.report.bytes_transferred, Some(42));
        assert!(outcome.report.scrubbed);
        assert_eq!(outcome.excerpt, "");
        assert_eq!(
            outcome.command,
            format!("{} -c /etc/d.conf backup rsync/h", exe.display())
        );

        let base =
            crate::run::unit_log::log_base(dir.path(), &unit("rsync/h").root, started.date());
        let out = fs::read_to_string(base.with_extension("out")).unwrap();
        let err = fs::read_to_string(base.with_extension("err")).unwrap();
        assert!(out.starts_with("# Starting task at "), "{out}");
        assert!(out.contains(&format!("\n# {}\n", outcome.command)), "{out}");
        assert!(
            out.contains("args: -c /etc/d.conf backup rsync/h\n"),
            "{out}"
        );
        assert!(
            out.contains("\nPATH=/usr/bin:/bin\n") && out.contains("\nHOME=/home/backup\n"),
            "{out}"
        );
        assert!(out.contains("DELTAIC_UNIT_REPORT="), "{out}");
        // The run's pid, so the unit knows it runs under the run's lock and dies with it.
        assert!(
            out.contains(&format!("\nDELTAIC_RUN_PID={}\n", std::process::id())),
            "{out}"
        );
        assert!(
            !out.contains("FOO") && !out.contains("stdin was not empty"),
            "{out}"
        );
        assert!(
            out.contains("# Task exited with status 0\n# Ending task at "),
            "{out}"
        );
        assert!(out.ends_with("\n\n"), "{out:?}");
        assert!(
            err.contains("to stderr\n# Task exited with status 0\n"),
            "{err}"
        );
        // The report file is consumed.
        assert_eq!(fs::read_dir(&runner.reports).unwrap().count(), 0);
    }

    #[test]
    fn a_failing_child_gets_an_excerpt_ending_with_its_footer() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(dir.path(), "echo 'rsync: connection refused' >&2; exit 23");
        let stop = AtomicBool::new(false);
        let outcome = runner(dir.path(), exe, &stop)
            .run(&unit("rsync/h"), &ZonedDateTime::now())
            .unwrap();
        assert_eq!(outcome.status, UnitStatus::Failed);
        assert_eq!(outcome.exit_code, Some(23));
        assert!(
            outcome.excerpt.starts_with("   # Starting task at "),
            "{}",
            outcome.excerpt
        );
        assert!(outcome.excerpt.contains("   rsync: connection refused\n   # Task exited with status 23\n   # Ending task at "), "{}", outcome.excerpt);
    }

    #[test]
    fn a_missing_executable_fails_the_unit_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let outcome = runner(dir.path(), dir.path().join("nonexistent"), &stop)
            .run(&unit("rsync/h"), &ZonedDateTime::now())
            .unwrap();
        assert_eq!(outcome.status, UnitStatus::Failed);
        assert_eq!(outcome.exit_code, None);
        assert!(
            outcome
                .excerpt
                .contains("# Task could not be started: No such file"),
            "{}",
            outcome.excerpt
        );
    }

    #[test]
    fn a_garbled_report_becomes_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(dir.path(), r#"echo 'not json' > "$DELTAIC_UNIT_REPORT""#);
        let stop = AtomicBool::new(false);
        let outcome = runner(dir.path(), exe, &stop)
            .run(&unit("rsync/h"), &ZonedDateTime::now())
            .unwrap();
        assert_eq!(outcome.status, UnitStatus::Ok);
        assert_eq!(outcome.report.warnings.len(), 1);
        assert!(outcome.report.warnings[0].contains("unreadable"));
    }

    /// Reads `/proc/<pid>/stat`'s state letter; `None` once the process is gone.
    fn process_state(pid: i32) -> Option<char> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(") ").next()?.chars().next()
    }

    fn wait_gone(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(process_state(pid), None | Some('Z')) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `sh -c 'sleep 100 & sleep 100'`, recording the background sleep's pid in `pidfile`.
    fn sleepers(pidfile: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "sleep 100 & echo $! > {}; sleep 100",
                pidfile.display()
            ))
            .stdin(Stdio::null());
        cmd
    }

    fn read_pid(pidfile: &Path) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = fs::read_to_string(pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "the shell never wrote its pid file"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg.pid");
        let limits = Limits {
            timeout: Some(Duration::from_secs(1)),
            grace: Duration::from_secs(5),
        };
        let stop = AtomicBool::new(false);
        let clock = Instant::now();
        let done = run_in_group(&mut sleepers(&pidfile), &limits, &stop).unwrap();
        assert!(
            clock.elapsed() < Duration::from_secs(5),
            "took {:?}",
            clock.elapsed()
        );
        assert_eq!(done.killed, Some(Killed::TimedOut(Duration::from_secs(1))));
        assert_eq!(done.end, ChildEnd::Signaled(15));
        let grandchild = read_pid(&pidfile);
        assert!(
            wait_gone(grandchild),
            "background sleep {grandchild} survived the timeout"
        );
    }

    #[test]
    fn sigkill_follows_when_sigterm_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "trap '' TERM; touch {}; while :; do sleep 0.1; done",
            ready.display()
        ));
        let limits = Limits {
            timeout: Some(Duration::from_secs(2)),
            grace: Duration::from_millis(500),
        };
        let stop = AtomicBool::new(false);
        let done = run_in_group(&mut cmd, &limits, &stop).unwrap();
        assert!(ready.exists());
        assert_eq!(done.end, ChildEnd::Signaled(9));
        assert_eq!(done.killed, Some(Killed::TimedOut(Duration::from_secs(2))));
    }

    #[test]
    fn a_stop_request_terminates_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg.pid");
        let limits = Limits {
            timeout: None,
            grace: Duration::from_secs(5),
        };
        let stop = AtomicBool::new(false);
        let done = std::thread::scope(|scope| {
            let handle = scope.spawn(|| run_in_group(&mut sleepers(&pidfile), &limits, &stop));
            read_pid(&pidfile);
            stop.store(true, Ordering::SeqCst);
            handle.join().unwrap().unwrap()
        });
        assert_eq!(done.killed, Some(Killed::Interrupted));
        assert!(wait_gone(read_pid(&pidfile)));
    }

    #[test]
    fn report_file_names_are_distinct_for_distinct_units() {
        let names = [
            "github/a%b/c",
            "github/a/b%c",
            "github/a%2Fb/c",
            "github/a/b/c",
        ];
        let files: std::collections::BTreeSet<String> =
            names.iter().map(|n| report_file_name(&unit(n))).collect();
        assert_eq!(files.len(), names.len(), "{files:?}");
        assert_eq!(report_file_name(&unit("rsync/h")), "rsync%2Fh.json");
        assert!(files.iter().all(|f| !f.contains('/')), "{files:?}");
    }

    #[test]
    fn a_unit_group_is_registered_exactly_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("leader.pid");
        let release = dir.path().join("release");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "echo $$ > {}; while [ ! -e {} ]; do sleep 0.05; done",
            pidfile.display(),
            release.display()
        ));
        let limits = Limits {
            timeout: None,
            grace: Duration::from_secs(5),
        };
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| run_in_group(&mut cmd, &limits, &stop));
            let leader = Pid::from_raw(read_pid(&pidfile)).unwrap();
            assert!(RUNNING_UNITS.contains(leader));
            fs::write(&release, "").unwrap();
            let done = handle.join().unwrap().unwrap();
            assert_eq!(done.end, ChildEnd::Exited(0));
            assert!(!RUNNING_UNITS.contains(leader));
        });
    }

    #[test]
    fn leftovers_of_a_unit_that_exited_are_terminated() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg.pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "sleep 100 & echo $! > {}; exit 3",
            pidfile.display()
        ));
        let limits = Limits {
            timeout: None,
            grace: Duration::from_secs(5),
        };
        let done = run_in_group(&mut cmd, &limits, &AtomicBool::new(false)).unwrap();
        assert_eq!(
            done,
            Supervised {
                end: ChildEnd::Exited(3),
                killed: None
            }
        );
        assert!(wait_gone(read_pid(&pidfile)));
    }

    #[test]
    fn a_timed_out_unit_is_recorded_and_logged_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(dir.path(), "echo working; sleep 100");
        let stop = AtomicBool::new(false);
        let limits = Limits {
            timeout: Some(Duration::from_secs(1)),
            grace: Duration::from_secs(5),
        };
        let outcome = runner(dir.path(), exe, &stop)
            .with_limits(limits)
            .run(&unit("rsync/h"), &ZonedDateTime::now())
            .unwrap();
        assert_eq!(outcome.status, UnitStatus::TimedOut);
        assert_eq!(outcome.exit_code, None);
        assert!(
            outcome
                .excerpt
                .contains("   # Task timed out after 1 s\n   # Task died on signal 15\n"),
            "{}",
            outcome.excerpt
        );
    }
}
