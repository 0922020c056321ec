//! The external programs the snapshot backends run (`sudo` + LVM tools, `btrfs`, `cp`) and the
//! seam they run through.
//!
//! Program names come from the environment so that tests and unusual installations can point
//! them elsewhere (core-rsync-coda.md §13, seam 2): `DELTAIC_SUDO` (default `sudo`),
//! `DELTAIC_BTRFS` (default `btrfs`) and `DELTAIC_CP` (default `cp`); a bare name is looked up in
//! PATH, so fakes placed first in PATH work too. Every command goes through a [`Runner`], which
//! tests replace with a recorder to assert the exact argv (seam 1).

use crate::util::process::{self, ProcessError};
use std::ffi::{OsStr, OsString};
use std::process::{Command, Output};
use std::sync::Arc;

/// Runs external programs; tests substitute a recorder that returns canned output.
pub trait Runner: Send + Sync {
    /// Runs `cmd` to completion (stdin from /dev/null) and returns its output whatever its exit
    /// status; only a failure to start it is an error.
    fn run(&self, cmd: &mut Command) -> Result<Output, ProcessError>;
}

/// The real [`Runner`]: spawns the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, cmd: &mut Command) -> Result<Output, ProcessError> {
        process::output_any_status(cmd)
    }
}

/// The programs a backend runs, and the runner that runs them.
#[derive(Clone)]
pub struct Tools {
    /// `sudo`, which runs the LVM tools, `mount` and `umount` (and `btrfs subvolume delete` for a
    /// user other than root).
    pub sudo: OsString,
    /// `btrfs` from btrfs-progs.
    pub btrfs: OsString,
    /// GNU `cp`, which makes `dir` snapshots.
    pub cp: OsString,
    /// How commands are run.
    pub runner: Arc<dyn Runner>,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("sudo", &self.sudo)
            .field("btrfs", &self.btrfs)
            .field("cp", &self.cp)
            .finish_non_exhaustive()
    }
}

impl Default for Tools {
    fn default() -> Tools {
        Tools {
            sudo: "sudo".into(),
            btrfs: "btrfs".into(),
            cp: "cp".into(),
            runner: Arc::new(SystemRunner),
        }
    }
}

impl Tools {
    /// The default programs, overridden by `DELTAIC_SUDO`, `DELTAIC_BTRFS` and `DELTAIC_CP`.
    pub fn from_env() -> Tools {
        let var = |name: &str, default: &str| -> OsString {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.into())
        };
        Tools {
            sudo: var("DELTAIC_SUDO", "sudo"),
            btrfs: var("DELTAIC_BTRFS", "btrfs"),
            cp: var("DELTAIC_CP", "cp"),
            runner: Arc::new(SystemRunner),
        }
    }

    /// A command running `sudo ARGS...`.
    pub fn sudo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        process::command(&self.sudo, args)
    }

    /// A command running `program ARGS...`, through sudo unless we already are root (for the
    /// operations the kernel refuses to an unprivileged backup user, §5.9).
    pub fn privileged<I, S>(&self, program: &OsStr, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        if rustix::process::geteuid().is_root() {
            process::command(program, args)
        } else {
            let mut cmd = Command::new(&self.sudo);
            cmd.arg(program).args(args);
            cmd
        }
    }

    /// Runs `cmd` and returns its output whatever its status (see [`Runner::run`]).
    pub fn run_any_status(&self, cmd: &mut Command) -> Result<Output, ProcessError> {
        tracing::debug!("running {}", process::display(cmd));
        self.runner.run(cmd)
    }

    /// Runs `cmd`; fails with its stderr tail unless it exits 0.
    pub fn run(&self, cmd: &mut Command) -> Result<Output, ProcessError> {
        let out = self.run_any_status(cmd)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(process::failure(cmd, &out))
        }
    }
}

/// A recording [`Runner`] for unit tests: logs each command line (and `LC_ALL` when set) and
/// answers from a closure.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::sync::Mutex;

    type Respond = dyn Fn(&str) -> (i32, String) + Send + Sync;

    /// Records command lines; `respond(line)` gives (exit code, stdout).
    pub struct FakeRunner {
        pub calls: Mutex<Vec<String>>,
        respond: Box<Respond>,
    }

    impl FakeRunner {
        pub fn new(
            respond: impl Fn(&str) -> (i32, String) + Send + Sync + 'static,
        ) -> Arc<FakeRunner> {
            Arc::new(FakeRunner {
                calls: Mutex::new(Vec::new()),
                respond: Box::new(respond),
            })
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Runner for FakeRunner {
        fn run(&self, cmd: &mut Command) -> Result<Output, ProcessError> {
            let mut line = process::display(cmd);
            for (key, value) in cmd.get_envs() {
                if let Some(value) = value {
                    line = format!(
                        "{}={} {line}",
                        key.to_string_lossy(),
                        value.to_string_lossy()
                    );
                }
            }
            let (code, stdout) = (self.respond)(&line);
            self.calls.lock().unwrap().push(line);
            Ok(Output {
                status: ExitStatus::from_raw(code << 8),
                stdout: stdout.into_bytes(),
                stderr: if code == 0 {
                    Vec::new()
                } else {
                    b"fake failure".to_vec()
                },
            })
        }
    }

    /// Tools whose programs are the bare names and whose runner is `runner`.
    pub fn tools(runner: Arc<FakeRunner>) -> Tools {
        Tools {
            runner,
            ..Tools::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_commands_carry_their_command_line() {
        let runner = fake::FakeRunner::new(|_| (5, String::new()));
        let tools = fake::tools(runner.clone());
        let err = tools.run(&mut tools.sudo(["lvs", "vg/x"])).unwrap_err();
        assert_eq!(err.code, Some(5));
        assert!(err.to_string().contains("sudo lvs vg/x"), "{err}");
        assert_eq!(runner.calls(), ["sudo lvs vg/x"]);
    }

    #[test]
    fn privileged_commands_skip_sudo_for_root_only() {
        let tools = Tools::default();
        let cmd = tools.privileged(OsStr::new("btrfs"), ["subvolume", "delete", "/x"]);
        let line = process::display(&cmd);
        if rustix::process::geteuid().is_root() {
            assert_eq!(line, "btrfs subvolume delete /x");
        } else {
            assert_eq!(line, "sudo btrfs subvolume delete /x");
        }
    }
}
