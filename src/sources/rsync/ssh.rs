//! The ssh command line every source uses to reach a host: the one place that decides the ssh
//! options (core-rsync-coda.md §9.2 `--rsh`, §12 "misc": timeouts).
//!
//! The original ran `ssh -o BatchMode=yes -o StrictHostKeyChecking=no`, which accepts a changed
//! host key (a MITM risk) and has no timeouts, so one hung host hung the whole run. [`Ssh`]
//! builds instead:
//!
//! ```text
//! ssh -o BatchMode=yes -o StrictHostKeyChecking=<accept-new|yes> [-o UserKnownHostsFile=<file>]
//!     -o ConnectTimeout=<n> -o ServerAliveInterval=30 -o ServerAliveCountMax=4
//! ```
//!
//! It is used as rsync's `--rsh` value ([`Ssh::rsh`]) and for remote commands such as `pre` and
//! `post` ([`Ssh::remote_command`]). The program is `ssh`, or `$DELTAIC_SSH` (tests point it at
//! a wrapper that adds `-F <private config>`, since OpenSSH reads `~/.ssh/config` from the
//! password database, not from `$HOME`).

use crate::config::Settings;
use anyhow::{Context, bail};
use std::process::Command;

/// Environment variable naming the ssh program (default `ssh`).
pub const SSH_PROGRAM_ENV: &str = "DELTAIC_SSH";

/// Seconds between keep-alive probes on an idle connection.
const SERVER_ALIVE_INTERVAL: u32 = 30;
/// Unanswered keep-alive probes before ssh gives up (30 s × 4 = 2 minutes of silence).
const SERVER_ALIVE_COUNT_MAX: u32 = 4;

/// An ssh program with the options from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    program: String,
    options: Vec<String>,
}

impl Ssh {
    /// The ssh command for `settings`, with the program from `$DELTAIC_SSH` or `ssh`.
    ///
    /// Errors: the program or the known_hosts path contains whitespace or quotes (rsync splits
    /// `--rsh` at spaces, and ssh splits `UserKnownHostsFile` at whitespace).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Ssh> {
        let program = std::env::var(SSH_PROGRAM_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "ssh".to_string());
        Ssh::new(program, settings)
    }

    /// The ssh command for `settings` running `program`.
    pub fn new(program: String, settings: &Settings) -> anyhow::Result<Ssh> {
        check_word(&program, SSH_PROGRAM_ENV)?;
        let mut options = vec![
            "BatchMode=yes".to_string(),
            format!(
                "StrictHostKeyChecking={}",
                settings.ssh_strict_host_keys.ssh_value()
            ),
        ];
        if let Some(path) = &settings.ssh_known_hosts {
            let path = path.to_str().with_context(|| {
                format!(
                    "settings.ssh-known-hosts: `{}` is not valid UTF-8",
                    path.display()
                )
            })?;
            check_word(path, "settings.ssh-known-hosts")?;
            options.push(format!("UserKnownHostsFile={path}"));
        }
        if let Some(timeout) = settings.ssh_connect_timeout.limit() {
            options.push(format!("ConnectTimeout={}", timeout.as_secs()));
        }
        options.push(format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL}"));
        options.push(format!("ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}"));
        let options = options
            .into_iter()
            .flat_map(|o| ["-o".to_string(), o])
            .collect();
        Ok(Ssh { program, options })
    }

    /// The program and its options as separate words.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.options.iter().cloned())
            .collect()
    }

    /// The command as one string, for rsync's `--rsh=` (rsync splits it at spaces; no word
    /// contains a space, which [`Ssh::new`] checks).
    pub fn rsh(&self) -> String {
        self.argv().join(" ")
    }

    /// `ssh <options> <user>@<host> <command>`: runs `command` through the remote user's shell
    /// (ssh passes the string to it as is), as the original ran `pre` and `post`.
    pub fn remote_command(&self, user: &str, host: &str, command: &str) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.options)
            .arg(format!("{user}@{host}"))
            .arg(command);
        cmd
    }
}

/// Rejects values that cannot be one word of an `--rsh` string or of an ssh option value.
fn check_word(value: &str, name: &str) -> anyhow::Result<()> {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c)) {
        bail!(
            "{name} `{value}` cannot be used: it must be non-empty and contain no whitespace, \
             quotes or backslashes (rsync and ssh split such values); use a path without them"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn settings(extra: &str) -> Settings {
        let text = format!("settings:\n  root: /srv/backup\n  snapshot-backend: dir\n{extra}");
        Config::from_yaml(&text, Path::new("/etc/deltaic.conf"))
            .unwrap()
            .settings
    }

    #[test]
    fn default_options_learn_new_keys_and_time_out() {
        let ssh = Ssh::new("ssh".into(), &settings("")).unwrap();
        assert_eq!(
            ssh.rsh(),
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=30 \
             -o ServerAliveInterval=30 -o ServerAliveCountMax=4"
        );
    }

    #[test]
    fn strict_policy_known_hosts_and_timeout_are_honoured() {
        let s = settings(
            "  ssh-strict-host-keys: yes\n  ssh-known-hosts: /etc/deltaic/known_hosts\n  \
             ssh-connect-timeout: 5\n",
        );
        let ssh = Ssh::new("/usr/bin/ssh".into(), &s).unwrap();
        assert_eq!(
            ssh.argv(),
            [
                "/usr/bin/ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UserKnownHostsFile=/etc/deltaic/known_hosts",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "ServerAliveInterval=30",
                "-o",
                "ServerAliveCountMax=4",
            ]
        );
    }

    #[test]
    fn a_zero_connect_timeout_leaves_the_option_out() {
        let ssh = Ssh::new("ssh".into(), &settings("  ssh-connect-timeout: 0\n")).unwrap();
        assert!(!ssh.rsh().contains("ConnectTimeout"), "{}", ssh.rsh());
    }

    #[test]
    fn the_policy_is_never_no() {
        for policy in ["accept-new", "yes"] {
            let s = settings(&format!("  ssh-strict-host-keys: {policy}\n"));
            let rsh = Ssh::new("ssh".into(), &s).unwrap().rsh();
            assert!(
                rsh.contains(&format!("StrictHostKeyChecking={policy} ")),
                "{rsh}"
            );
        }
        let text = "settings:\n  root: /b\n  snapshot-backend: dir\n  ssh-strict-host-keys: no\n";
        assert!(Config::from_yaml(text, Path::new("/c")).is_err());
    }

    #[test]
    fn remote_commands_pass_the_command_as_one_argument() {
        let ssh = Ssh::new("ssh".into(), &settings("")).unwrap();
        let cmd = ssh.remote_command("backup", "db.example.org", "pg_dump x > /tmp/y; sync");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            &args[args.len() - 2..],
            ["backup@db.example.org", "pg_dump x > /tmp/y; sync"]
        );
        assert_eq!(&args[..2], ["-o", "BatchMode=yes"]);
    }

    #[test]
    fn words_with_spaces_or_quotes_are_refused() {
        assert!(Ssh::new("/opt/my ssh".into(), &settings("")).is_err());
        assert!(Ssh::new("".into(), &settings("")).is_err());
        let s = settings("  ssh-known-hosts: \"/etc/known hosts\"\n");
        let err = Ssh::new("ssh".into(), &s).unwrap_err().to_string();
        assert!(err.contains("ssh-known-hosts"), "{err}");
    }
}
