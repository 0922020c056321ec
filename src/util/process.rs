//! Running external tools. Every invocation is an argv vector (never a shell string); errors
//! carry the command line and the tail of its stderr.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::process::{Command, ExitStatus, Output, Stdio};

/// How many bytes of stderr an error message keeps.
pub const STDERR_TAIL: usize = 2000;

/// A tool that exited unsuccessfully or could not be started.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` {outcome}{}", stderr_suffix(stderr))]
pub struct ProcessError {
    /// The command line, for the message.
    pub command: String,
    /// "exited with status N", "was killed by signal N" or "could not be started: ...".
    pub outcome: String,
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// The last part of its stderr.
    pub stderr: String,
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

/// The command line of `cmd` for messages and logs, words joined by spaces (as the original).
pub fn display(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let _ = write!(out, " {}", arg.to_string_lossy());
    }
    out
}

/// Runs `cmd` with stdin from /dev/null, capturing stdout and stderr; fails unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<Output, ProcessError> {
    let out = output_any_status(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(failure(cmd, &out))
    }
}

/// Runs `cmd` capturing its output, whatever its exit status (only a failure to start errors).
pub fn output_any_status(cmd: &mut Command) -> Result<Output, ProcessError> {
    cmd.stdin(Stdio::null()).output().map_err(|e| ProcessError {
        command: display(cmd),
        outcome: format!("could not be started: {e}"),
        code: None,
        stderr: String::new(),
    })
}

/// Builds the error for a finished, unsuccessful `cmd`.
pub fn failure(cmd: &Command, out: &Output) -> ProcessError {
    failure_of(display(cmd), out.status, &out.stderr)
}

/// [`failure`] for a command known by its command line (as [`display`] shows it) and the
/// stderr it printed.
pub fn failure_of(command: String, status: ExitStatus, stderr: &[u8]) -> ProcessError {
    use std::os::unix::process::ExitStatusExt;
    let outcome = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".to_string(),
    };
    ProcessError::new(command, outcome, status.code(), stderr)
}

impl ProcessError {
    /// The error for `command` that ended with `outcome`, keeping the last [`STDERR_TAIL`]
    /// bytes of `stderr`.
    pub fn new(command: String, outcome: String, code: Option<i32>, stderr: &[u8]) -> Self {
        let stderr = String::from_utf8_lossy(stderr);
        let start = stderr.len().saturating_sub(STDERR_TAIL);
        let start = (start..stderr.len())
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(start);
        ProcessError {
            command,
            outcome,
            code,
            stderr: stderr[start..].to_string(),
        }
    }
}

/// A `Command` for `program` with `args`.
pub fn command<I, S>(program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_the_command_and_stderr() {
        let err = output(&mut command("sh", ["-c", "echo boom >&2; exit 3"])).unwrap_err();
        assert_eq!(err.code, Some(3));
        let text = err.to_string();
        assert!(
            text.contains("sh -c") && text.contains("status 3") && text.contains("boom"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        let err = output(&mut command("/nonexistent/tool", ["x"])).unwrap_err();
        assert!(err.to_string().contains("could not be started"));
    }
}
