//! Running rsync: the output filter, the exit status, and the ACL/xattr fallback
//! (core-rsync-coda.md §9.4, §9.5; BUG-22, BUG-23, BUG-24 fixed).
//!
//! rsync's stdout goes through [`filter`] to our stdout (the unit's `.out` log).
//! Its stderr is copied to our stderr (the `.err` log) as it arrives, and watched for the
//! messages a remote rsync prints when it lacks ACL or xattr support. A dry run
//! ([`Output::Quiet`]) prints only its command line: its itemized lines are for the caller
//! (see [`run_observed`]), and its error output is kept, not logged twice.
//!
//! The fallback re-runs rsync without `--acls --xattrs` only when the remote really lacks them:
//! status 2 (protocol incompatibility), or status 12 with such a message. The original also fell
//! back on any status 12, which is what a dropped connection gives, and then silently rewrote
//! changed files without their xattrs. A fallback is logged as a warning and reported.

use super::filter::{self, Itemized, OutputSummary};
use crate::util::process;
use anyhow::Context;
use std::ffi::OsString;
use std::io::{self, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

/// Flags the fallback removes (they need protocol 30 and support on both sides).
const FALLBACK_FLAGS: [&str; 2] = ["--acls", "--xattrs"];

/// What rsync prints (on the remote side, relayed by ssh) when a side lacks ACL or xattr
/// support: rsync's options.c and compat.c, and popt's message from rsync versions too old to
/// know `-A`/`-X`. Matched case-insensitively.
const UNSUPPORTED_PATTERNS: [&str; 5] = [
    "acls are not supported",
    "extended attributes are not supported",
    "--acls requires protocol",
    "--xattrs requires protocol",
    "unknown option",
];

/// What happens to rsync's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// stdout filtered to ours, stderr copied to ours (the unit's logs).
    Logged,
    /// Only the command line is printed; stdout is observed, stderr is kept in
    /// [`Transfer::last_error_line`] (a dry run, whose findings the real run logs anyway).
    Quiet,
}

/// How one rsync process ended, with what its output said.
#[derive(Debug)]
pub struct Attempt {
    /// Its exit status.
    pub status: ExitStatus,
    /// Figures read from its stdout.
    pub summary: OutputSummary,
    /// Whether its stderr said a side lacks ACL or xattr support.
    pub acl_xattr_unsupported: bool,
    /// What its stderr said went wrong with ssh, if anything ([`ssh_problem`]).
    pub ssh_problem: Option<&'static str>,
    /// The last non-empty line of its stderr.
    pub last_error_line: Option<String>,
}

/// A finished transfer: the last attempt's status, and the figures of all attempts.
#[derive(Debug)]
pub struct Transfer {
    /// The exit status of the last attempt.
    pub status: ExitStatus,
    /// Figures of all attempts together.
    pub summary: OutputSummary,
    /// Warnings for the run summary (the fallback).
    pub warnings: Vec<String>,
    /// What the last attempt's stderr said went wrong with ssh, if anything.
    pub ssh_problem: Option<&'static str>,
    /// The last non-empty line of the last attempt's stderr.
    pub last_error_line: Option<String>,
}

impl Transfer {
    /// Whether rsync succeeded: status 0, or 24 (source files vanished during the transfer,
    /// normal on a live system).
    pub fn succeeded(&self) -> bool {
        matches!(self.status.code(), Some(0 | 24))
    }

    /// Takes in a `later` pass over the same tree: its status and messages replace these, its
    /// figures are added.
    pub fn then(&mut self, later: Transfer) {
        self.status = later.status;
        self.summary.absorb(later.summary);
        self.warnings.extend(later.warnings);
        self.ssh_problem = later.ssh_problem;
        self.last_error_line = later.last_error_line;
    }

    /// `Ok` on success, else an error naming `what` (e.g. "backup of host.example.org") and the
    /// meaning of rsync's status.
    pub fn check(&self, what: &str) -> anyhow::Result<()> {
        if self.succeeded() {
            return Ok(());
        }
        let hint = self
            .ssh_problem
            .map(|p| format!("; {p}"))
            .unwrap_or_default();
        anyhow::bail!(
            "rsync {what} failed: {}{hint}",
            describe_status(self.status)
        )
    }
}

/// Runs `argv` (program first) with the output filter, and once more without `--acls
/// --xattrs` if the remote lacks them. Errors only when rsync cannot be started or its output
/// cannot be read; a failing rsync is reported in [`Transfer::status`].
pub fn run_with_fallback(argv: &[OsString], host: &str) -> anyhow::Result<Transfer> {
    run_observed(argv, host, Output::Logged, &mut |_| {})
}

/// [`run_with_fallback`], handling the output as `output` says and calling `on_item` with every
/// itemized line of every attempt (before the output filter, so xattr-only lines too).
pub fn run_observed(
    argv: &[OsString],
    host: &str,
    output: Output,
    on_item: &mut dyn FnMut(&Itemized<'_>),
) -> anyhow::Result<Transfer> {
    let first = run_attempt(argv, output, on_item)?;
    let mut warnings = Vec::new();
    let has_fallback_flags = argv.iter().any(|a| FALLBACK_FLAGS.iter().any(|f| a == *f));
    if !(has_fallback_flags && should_fall_back(first.status.code(), first.acl_xattr_unsupported)) {
        return Ok(Transfer {
            status: first.status,
            summary: first.summary,
            warnings,
            ssh_problem: first.ssh_problem,
            last_error_line: first.last_error_line,
        });
    }
    let warning = format!(
        "rsync for {host} failed ({}), because one side lacks ACL or xattr support; \
         retrying WITHOUT --acls --xattrs: ACLs and extended attributes of changed files \
         are not backed up. Install an rsync ≥ 3.0 with ACL and xattr support on {host}",
        describe_status(first.status)
    );
    if output == Output::Logged {
        tracing::warn!("{warning}");
    }
    warnings.push(warning);
    let reduced = without_fallback_flags(argv);
    let second = run_attempt(&reduced, output, on_item)?;
    let mut summary = first.summary;
    summary.absorb(second.summary);
    Ok(Transfer {
        status: second.status,
        summary,
        warnings,
        ssh_problem: second.ssh_problem,
        last_error_line: second.last_error_line,
    })
}

/// The fallback decision (BUG-24): only status 2, or status 12 when stderr said that ACLs or
/// xattrs are unsupported. A network failure (255, 12 without that text, 10, 30, 35) never
/// falls back: it would silently drop metadata of changed files.
pub fn should_fall_back(code: Option<i32>, acl_xattr_unsupported: bool) -> bool {
    match code {
        Some(2) => true,
        Some(12) => acl_xattr_unsupported,
        _ => false,
    }
}

/// `argv` without the fallback flags; other arguments are kept in order (BUG-22: a `--coda`
/// restore has none, and nothing is removed).
pub fn without_fallback_flags(argv: &[OsString]) -> Vec<OsString> {
    argv.iter()
        .filter(|a| !FALLBACK_FLAGS.iter().any(|f| *a == *f))
        .cloned()
        .collect()
}

/// Whether a line of rsync's stderr says that a side lacks ACL or xattr support.
pub fn says_acl_xattr_unsupported(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line).to_ascii_lowercase();
    UNSUPPORTED_PATTERNS.iter().any(|p| line.contains(p))
}

/// What a line of ssh's stderr says went wrong, as advice for the error message. ssh reports
/// these before rsync starts; rsync then exits with 255 or, as often, 12.
pub fn ssh_problem(line: &[u8]) -> Option<&'static str> {
    const PROBLEMS: [(&str, &str); 4] = [
        (
            "Host key verification failed",
            "ssh refused the host key: the host is not in known_hosts (with \
             ssh-strict-host-keys: yes) or its key CHANGED; verify the key before updating \
             known_hosts",
        ),
        (
            "Permission denied (publickey",
            "ssh authentication failed: the host does not accept the backup user's key",
        ),
        (
            "ssh: Could not resolve hostname",
            "the host name does not resolve",
        ),
        (
            "ssh: connect to host",
            "ssh could not connect: the host is down or unreachable",
        ),
    ];
    let line = String::from_utf8_lossy(line);
    PROBLEMS
        .iter()
        .find(|(text, _)| line.contains(text))
        .map(|(_, advice)| *advice)
}

/// Prints the command line, runs it once with the output filter, and reports how it ended.
pub fn run_once(argv: &[OsString]) -> anyhow::Result<Attempt> {
    run_attempt(argv, Output::Logged, &mut |_| {})
}

/// Prints the command line, runs it once with `output`, calling `on_item` with each itemized
/// line, and reports how it ended.
fn run_attempt(
    argv: &[OsString],
    output: Output,
    on_item: &mut dyn FnMut(&Itemized<'_>),
) -> anyhow::Result<Attempt> {
    let (program, args) = argv.split_first().context("empty rsync command line")?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let line = process::display(&cmd);
    println!("{line}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", program.to_string_lossy()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (summary, findings) = std::thread::scope(|scope| {
        let watcher = scope.spawn(move || forward_stderr(stderr, output));
        let summary = filter_stdout(stdout, output, on_item);
        let findings = watcher
            .join()
            .unwrap_or_else(|_| Ok(StderrFindings::default()));
        (summary, findings)
    });
    let findings = findings.context("reading rsync's error output")?;
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    Ok(Attempt {
        status,
        summary: summary.context("reading rsync's output")?,
        acl_xattr_unsupported: findings.acl_xattr_unsupported,
        ssh_problem: findings.ssh_problem,
        last_error_line: findings.last_line,
    })
}

/// Reads rsync's stdout to the end: counts, hands itemized lines to `on_item`, filters, and
/// prints to our stdout unless `output` is quiet. A closed stdout (e.g. `| head`) does not stop
/// the reading, or rsync would block on a full pipe.
fn filter_stdout(
    stdout: impl io::Read,
    output: Output,
    on_item: &mut dyn FnMut(&Itemized<'_>),
) -> io::Result<OutputSummary> {
    let mut summary = OutputSummary::default();
    let out = io::stdout();
    let mut out = out.lock();
    let mut out_ok = output == Output::Logged;
    filter::for_each_line(BufReader::new(stdout), |line| {
        summary.observe(line);
        if let Some(item) = Itemized::parse(line) {
            on_item(&item);
        }
        if let Some(kept) = filter::keep_line(line)
            && out_ok
        {
            out_ok = out
                .write_all(kept)
                .and_then(|()| out.write_all(b"\n"))
                .is_ok();
        }
    })?;
    let _ = out.flush();
    Ok(summary)
}

/// What rsync's stderr said.
#[derive(Debug, Default)]
struct StderrFindings {
    acl_xattr_unsupported: bool,
    ssh_problem: Option<&'static str>,
    last_line: Option<String>,
}

/// Copies rsync's stderr to ours line by line (unless `output` is quiet), noting what it says.
fn forward_stderr(stderr: impl io::Read, output: Output) -> io::Result<StderrFindings> {
    let mut findings = StderrFindings::default();
    let err = io::stderr();
    filter::for_each_line(BufReader::new(stderr), |line| {
        findings.acl_xattr_unsupported |= says_acl_xattr_unsupported(line);
        findings.ssh_problem = findings.ssh_problem.or_else(|| ssh_problem(line));
        if !line.trim_ascii().is_empty() {
            findings.last_line = Some(String::from_utf8_lossy(line.trim_ascii()).into_owned());
        }
        if output == Output::Logged {
            let mut err = err.lock();
            let _ = err.write_all(line).and_then(|()| err.write_all(b"\n"));
        }
    })?;
    Ok(findings)
}

/// "status N (meaning)" or "killed by signal N", for messages.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("rsync exited with status {code} ({})", exit_meaning(code)),
        (None, Some(signal)) => format!("rsync was killed by signal {signal}"),
        _ => "rsync ended abnormally".to_string(),
    }
}

/// What rsync's exit status means (core-rsync-coda.md §9.5, rsync(1) "EXIT VALUES").
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "syntax or usage error",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files or directories",
        4 => "requested action not supported",
        5 => "error starting the client-server protocol",
        6 => "daemon unable to append to log file",
        10 => "error in socket I/O",
        11 => "error in file I/O",
        12 => "error in the rsync protocol data stream; often a dropped connection",
        13 => "errors with program diagnostics",
        14 => "error in IPC code",
        20 => "received SIGUSR1 or SIGINT",
        21 => "some error returned by waitpid()",
        22 => "error allocating core memory buffers",
        23 => "partial transfer due to error; see the error log for the files",
        24 => "some source files vanished before they could be transferred",
        25 => "the --max-delete limit stopped deletions",
        30 => "timeout in data send/receive; the host or network stalled",
        35 => "timeout waiting for daemon connection",
        255 => "ssh failed: the host is unreachable, or refused the key or the host key",
        _ => "unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn fallback_decision_table() {
        // (status, stderr said unsupported, fall back)
        let table = [
            (Some(0), false, false),
            (Some(24), false, false),
            (Some(2), false, true),
            (Some(2), true, true),
            (Some(12), true, true),
            (Some(12), false, false),
            (Some(255), false, false),
            (Some(255), true, false),
            (Some(10), false, false),
            (Some(30), false, false),
            (Some(35), false, false),
            (Some(23), true, false),
            (Some(1), true, false),
            (None, true, false),
        ];
        for (code, unsupported, expected) in table {
            assert_eq!(
                should_fall_back(code, unsupported),
                expected,
                "{code:?} {unsupported}"
            );
        }
    }

    #[test]
    fn unsupported_messages_are_recognised() {
        for line in [
            &b"rsync: ACLs are not supported on this server"[..],
            b"rsync: extended attributes are not supported on this client",
            b"--acls requires protocol 30 or higher (negotiated 29).",
            b"--xattrs requires protocol 30 or higher (negotiated 29).",
            b"rsync: on remote machine: -logDtprRAXxe.iLsfxC: unknown option",
        ] {
            assert!(
                says_acl_xattr_unsupported(line),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]"[..],
            b"ssh: connect to host x port 22: Connection refused",
            b"rsync error: error in rsync protocol data stream (code 12) at io.c(232)",
            b"Host key verification failed.",
        ] {
            assert!(
                !says_acl_xattr_unsupported(line),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn ssh_problems_become_advice() {
        let advice = |line: &str| ssh_problem(line.as_bytes());
        assert!(
            advice("Host key verification failed.")
                .unwrap()
                .contains("CHANGED")
        );
        assert!(
            advice("root@h: Permission denied (publickey).")
                .unwrap()
                .contains("key")
        );
        assert!(advice("ssh: connect to host h port 22: Connection refused").is_some());
        assert!(advice("ssh: Could not resolve hostname h: Name or service not known").is_some());
        // A file the remote rsync may not read is not an ssh problem.
        assert_eq!(
            advice("rsync: opendir \"/root\" failed: Permission denied (13)"),
            None
        );
        let failed = Transfer {
            status: ExitStatus::from_raw(12 << 8),
            summary: OutputSummary::default(),
            warnings: vec![],
            ssh_problem: advice("Host key verification failed."),
            last_error_line: None,
        };
        let err = failed.check("backup of h").unwrap_err().to_string();
        assert!(
            err.contains("status 12") && err.contains("ssh refused the host key"),
            "{err}"
        );
    }

    #[test]
    fn the_fallback_removes_only_flags_that_are_present() {
        let full = os(&[
            "rsync",
            "-aHi",
            "--acls",
            "--xattrs",
            "--fake-super",
            "src/",
            "h:/d/",
        ]);
        assert_eq!(
            without_fallback_flags(&full),
            os(&["rsync", "-aHi", "--fake-super", "src/", "h:/d/"])
        );
        // BUG-22: the --coda argv has neither flag; nothing is removed and nothing fails.
        let coda = os(&[
            "rsync",
            "-rlptoHi",
            "--fake-super",
            "-M--super",
            "src/",
            "h:/d/",
        ]);
        assert_eq!(without_fallback_flags(&coda), coda);
        // A path that merely contains the text is not a flag.
        let path = os(&["rsync", "--acls", "/srv/--xattrs"]);
        assert_eq!(
            without_fallback_flags(&path),
            os(&["rsync", "/srv/--xattrs"])
        );
    }

    #[test]
    fn statuses_are_described_with_their_meaning() {
        let status = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(
            describe_status(status(23)),
            "rsync exited with status 23 (partial transfer due to error; see the error log for the files)"
        );
        assert!(describe_status(status(255)).contains("ssh failed"));
        assert!(describe_status(ExitStatus::from_raw(9)).contains("signal 9"));
        let ok = |code| Transfer {
            ssh_problem: None,
            last_error_line: None,
            status: status(code),
            summary: OutputSummary::default(),
            warnings: vec![],
        };
        assert!(ok(0).check("x").is_ok());
        assert!(ok(24).check("x").is_ok());
        let err = ok(12)
            .check("backup of h.example.org")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("h.example.org") && err.contains("status 12"),
            "{err}"
        );
    }

    #[test]
    fn a_real_run_is_filtered_counted_and_its_status_kept() {
        let script = "printf '.f........x dropped\\n>f+++++++++ kept\\nTotal transferred file size: 1,234 bytes\\n'; \
                      echo 'ACLs are not supported on this server' >&2; exit 12";
        let attempt = run_once(&os(&["sh", "-c", script])).unwrap();
        assert_eq!(attempt.status.code(), Some(12));
        assert!(attempt.acl_xattr_unsupported);
        assert_eq!(attempt.summary.files_transferred, 1);
        assert_eq!(attempt.summary.bytes_transferred, Some(1234));
    }

    #[test]
    fn a_fallback_reruns_without_the_flags_and_warns() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("argv.log");
        // A stand-in rsync: records its argv; refuses --acls like a remote without ACL support.
        let script = format!(
            "echo \"$*\" >> {log}; case \"$*\" in *--acls*) echo 'rsync: ACLs are not supported on this server' >&2; exit 12;; esac; exit 0",
            log = log.display()
        );
        let argv = os(&[
            "sh", "-c", &script, "rsync", "-a", "--acls", "--xattrs", "src", "dest",
        ]);
        let transfer = run_with_fallback(&argv, "h.example.org").unwrap();
        assert!(transfer.succeeded());
        assert_eq!(transfer.warnings.len(), 1);
        assert!(transfer.warnings[0].contains("WITHOUT --acls --xattrs"));
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls, "-a --acls --xattrs src dest\n-a src dest\n");
    }

    #[test]
    fn a_dropped_connection_does_not_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("argv.log");
        let script = format!(
            "echo \"$*\" >> {}; echo 'rsync: connection unexpectedly closed' >&2; exit 12",
            log.display()
        );
        let argv = os(&[
            "sh", "-c", &script, "rsync", "--acls", "--xattrs", "src", "dest",
        ]);
        let transfer = run_with_fallback(&argv, "h").unwrap();
        assert_eq!(transfer.status.code(), Some(12));
        assert!(transfer.warnings.is_empty());
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    }

    #[test]
    fn a_missing_rsync_is_an_error_naming_it() {
        let err = run_once(&os(&["/nonexistent/rsync", "-a"])).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/rsync"), "{err:#}");
    }

    #[test]
    fn a_quiet_run_hands_items_on_and_keeps_its_last_error_line() {
        let script = "printf '>f.st...... a\\n.f........x b\\nnot itemized\\n'; \
                      echo 'first problem' >&2; echo 'last problem' >&2; echo >&2; exit 23";
        let mut seen = Vec::new();
        let transfer = run_observed(
            &os(&["sh", "-c", script]),
            "h",
            Output::Quiet,
            &mut |item| seen.push(String::from_utf8_lossy(item.path).into_owned()),
        )
        .unwrap();
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(transfer.status.code(), Some(23));
        assert_eq!(transfer.last_error_line.as_deref(), Some("last problem"));
        assert_eq!(transfer.summary.files_transferred, 1);
    }
}
