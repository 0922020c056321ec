//! `volutil` and `codadump2tar` on the Coda server, over ssh (core-rsync-coda.md §10.2).
//!
//! Every command is `ssh <options> root@HOST <command>`, with the ssh options of the rsync
//! source ([`Ssh`]: host keys checked, `accept-new` or `yes`, never `no`; timeouts), the
//! program from `$DELTAIC_SSH` or `ssh`. The volutil commands are the original's words
//! (`<volutil> info <volume>`), the volume name shell-quoted when it needs it; the command is
//! printed as `> <command>` first. Their stderr always reaches the log (the original dropped it
//! unless `-v`); their stdout only with `-v`.
//!
//! The dump is one remote pipeline, run by `sh -c` whatever the login shell, whose status is
//! that of whichever side failed (BUG-C8): POSIX `sh` has no `pipefail` (dash), so the status of
//! `volutil dump` is passed out on a spare descriptor and checked after `codadump2tar` ends. Its
//! stderr goes to the log. [`Dump`] owns the ssh child and always kills and reaps it when
//! dropped unfinished (BUG-C13).

use super::tar_stream::Damaged;
use crate::sources::rsync::ssh::Ssh;
use crate::sources::rsync::transfer::ssh_problem;
use crate::util::process;
use anyhow::{Context, bail};
use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Stdio};
use std::thread::JoinHandle;

/// The remote user (the original's, fixed).
const USER: &str = "root";

/// The Coda server and its tools.
#[derive(Debug, Clone)]
pub struct Remote {
    ssh: Ssh,
    host: String,
    volutil: String,
    codadump2tar: String,
    verbose: bool,
}

/// The ids `volutil info` reports for a volume replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The replica's volume id (hex).
    pub id: String,
    /// The id of its read-only backup clone (hex).
    pub backup_id: String,
}

/// What to do with a remote command's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdout {
    /// Capture it (and echo it with `-v`).
    Capture,
    /// Drop it unless `-v`.
    Quiet,
    /// Let it through.
    Show,
}

impl Remote {
    /// The server `host` with the tools from the settings.
    ///
    /// Errors: a tool path contains a quote, backslash or newline (it is placed in a quoted
    /// shell script).
    pub fn new(
        ssh: Ssh,
        host: &str,
        volutil: &str,
        codadump2tar: &str,
        verbose: bool,
    ) -> anyhow::Result<Remote> {
        for (key, value) in [
            ("coda-volutil-path", volutil),
            ("coda-codadump2tar-path", codadump2tar),
        ] {
            if value.trim().is_empty() || value.contains(['\'', '"', '\\', '\n', '\0']) {
                bail!(
                    "settings.{key} `{value}` cannot be used: it must be non-empty and contain \
                     no quotes, backslashes or newlines"
                );
            }
        }
        if host.starts_with('-') || host.contains(char::is_whitespace) || host.is_empty() {
            bail!("`{host}` is not a host name");
        }
        Ok(Remote {
            ssh,
            host: host.to_string(),
            volutil: volutil.to_string(),
            codadump2tar: codadump2tar.to_string(),
            verbose,
        })
    }

    /// `volutil info <volume>`: the replica's volume id and backup id.
    pub fn info(&self, volume: &str) -> anyhow::Result<VolumeInfo> {
        let out = self
            .volutil(&["info", &shell_quote(volume)], Stdout::Capture)
            .with_context(|| format!("couldn't get volume info for {volume} on {}", self.host))?;
        parse_info(&String::from_utf8_lossy(&out))
            .with_context(|| format!("volume info for {volume} on {}", self.host))
    }

    /// `volutil lock <id>`: stops writes to the volume.
    pub fn lock(&self, id: &str) -> anyhow::Result<()> {
        self.simple("lock", id, Stdout::Quiet)
    }

    /// `volutil unlock <id>`.
    pub fn unlock(&self, id: &str) -> anyhow::Result<()> {
        self.simple("unlock", id, Stdout::Quiet)
    }

    /// `volutil backup <id>`: re-clones the backup volume (and unlocks the volume).
    pub fn backup(&self, id: &str) -> anyhow::Result<()> {
        self.simple("backup", id, Stdout::Quiet)
    }

    /// `volutil ancient <backup id>`: this backup is the base of the next incremental.
    pub fn ancient(&self, backup_id: &str) -> anyhow::Result<()> {
        self.simple("ancient", backup_id, Stdout::Show)
    }

    fn simple(&self, subcommand: &str, id: &str, stdout: Stdout) -> anyhow::Result<()> {
        self.volutil(&[subcommand, id], stdout)
            .with_context(|| format!("volutil {subcommand} {id} on {} failed", self.host))?;
        Ok(())
    }

    /// Runs `<volutil> <words>` on the server; returns its stdout when captured.
    fn volutil(&self, words: &[&str], stdout: Stdout) -> anyhow::Result<Vec<u8>> {
        let remote = std::iter::once(self.volutil.as_str())
            .chain(words.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        println!("> {remote}");
        let mut cmd = self.ssh.remote_command(USER, &self.host, &remote);
        let shown = stdout == Stdout::Show || self.verbose;
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        cmd.stdout(match stdout {
            Stdout::Capture => Stdio::piped(),
            _ if shown => Stdio::inherit(),
            _ => Stdio::null(),
        });
        let out = cmd
            .output()
            .with_context(|| format!("could not start `{}`", process::display(&cmd)))?;
        let _ = io::stderr().write_all(&out.stderr);
        if stdout == Stdout::Capture && self.verbose {
            let _ = io::stdout().write_all(&out.stdout);
        }
        if !out.status.success() {
            bail!("{}", failure_text(&out.status, &out.stderr));
        }
        Ok(out.stdout)
    }

    /// The two sides of the dump pipeline: `<volutil> dump [-i -1] <backup id>` and
    /// `<codadump2tar> -rn .`.
    fn dump_sides(&self, backup_id: &str, incremental: bool) -> (String, String) {
        let level = if incremental { " -i -1" } else { "" };
        (
            format!("{} dump{level} {backup_id}", self.volutil),
            format!("{} -rn .", self.codadump2tar),
        )
    }

    /// The remote dump command: `volutil dump [-i -1] <backup id> | codadump2tar -rn .` in a
    /// POSIX sh script that fails when either side fails (see the module doc). One line, in
    /// single quotes, so that any login shell hands it to `sh` unchanged.
    pub fn dump_command(&self, backup_id: &str, incremental: bool) -> String {
        let (dump, convert) = self.dump_sides(backup_id, incremental);
        // fd 3 carries volutil's exit status out of the pipeline (`s` stays empty if it never
        // ends); fd 4 is the script's stdout, where the tar goes while `$( )` captures fd 3.
        let pipeline = format!(
            "s=$( {{ {{ {dump} 3>&- 4>&-; echo $? >&3; }} | {convert} 3>&- >&4 4>&-; }} 3>&1 )"
        );
        let script = [
            "exec 4>&1",
            &pipeline,
            "c=$?",
            "exec 4>&-",
            "if [ \"$s\" != 0 ]; then \
             echo \"deltaic: volutil dump exited with status ${s:-unknown}\" >&2; exit 1; fi",
            "if [ $c != 0 ]; then echo \"deltaic: codadump2tar exited with status $c\" >&2; fi",
            "exit $c",
        ]
        .join("; ");
        format!("sh -c '{script}'")
    }

    /// Starts the dump of `backup_id`; its stdout is the tar stream.
    pub fn dump(&self, backup_id: &str, incremental: bool) -> anyhow::Result<Dump> {
        let (dump, convert) = self.dump_sides(backup_id, incremental);
        println!("> {dump} | {convert}");
        let remote = self.dump_command(backup_id, incremental);
        let mut cmd = self.ssh.remote_command(USER, &self.host, &remote);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", process::display(&cmd)))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let watcher = std::thread::spawn(move || forward_stderr(stderr));
        Ok(Dump {
            child: Some(child),
            stdout: Some(stdout),
            watcher: Some(watcher),
        })
    }
}

/// A running remote dump. Read the tar from [`Dump::stream`], then [`Dump::finish`]; dropping it
/// unfinished kills and reaps ssh.
pub struct Dump {
    child: Option<Child>,
    stdout: Option<ChildStdout>,
    watcher: Option<JoinHandle<Vec<u8>>>,
}

impl Dump {
    /// The tar stream.
    pub fn stream(&mut self) -> &mut ChildStdout {
        self.stdout.as_mut().expect("not finished")
    }

    /// Waits for the pipeline; its failure (whichever side failed) is [`Damaged`], so the dump
    /// is retried.
    pub fn finish(mut self) -> Result<(), Damaged> {
        drop(self.stdout.take());
        let mut child = self.child.take().expect("not finished");
        let status = child.wait();
        let stderr = self
            .watcher
            .take()
            .and_then(|w| w.join().ok())
            .unwrap_or_default();
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(Damaged(format!(
                "the remote dump pipeline failed: {}",
                failure_text(&status, &stderr)
            ))),
            Err(e) => Err(Damaged(format!("waiting for ssh: {e}"))),
        }
    }
}

impl Drop for Dump {
    /// Kills and reaps ssh. The stderr thread is left to finish on its own: a process that
    /// ssh started locally (a ProxyCommand) may hold the pipe a while longer, and the next
    /// attempt must not wait for it.
    fn drop(&mut self) {
        drop(self.stdout.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(self.watcher.take());
    }
}

/// Copies the dump's stderr to ours line by line (it goes to the unit's `.err` log); returns
/// the last few KiB for the error message.
fn forward_stderr(stderr: impl io::Read) -> Vec<u8> {
    const KEEP: usize = 4096;
    let mut tail = Vec::new();
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let _ = io::stderr().lock().write_all(&line);
                tail.extend_from_slice(&line);
                if tail.len() > KEEP * 2 {
                    tail.drain(..tail.len() - KEEP);
                }
            }
        }
    }
    tail
}

/// "ssh exited with status 255: <advice>" and the like, from an exit status and stderr.
fn failure_text(status: &std::process::ExitStatus, stderr: &[u8]) -> String {
    let advice = stderr.split(|&b| b == b'\n').find_map(ssh_problem);
    let last = String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string());
    let how = match status.code() {
        Some(255) => "ssh exited with status 255".to_string(),
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_string(),
    };
    match (advice, last) {
        (Some(advice), _) => format!("{how}: {advice}"),
        (None, Some(last)) => format!("{how} ({last})"),
        (None, None) => how,
    }
}

/// Finds the volume id (`^id = <hex>`) and backup id (`, backupId = <hex>`) in `volutil info`
/// output.
pub fn parse_info(text: &str) -> anyhow::Result<VolumeInfo> {
    let hex = |s: &str| -> Option<String> {
        let end = s
            .find(|c: char| !matches!(c, '0'..='9' | 'a'..='f'))
            .unwrap_or(s.len());
        (end > 0).then(|| s[..end].to_string())
    };
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id = ").and_then(hex))
        .context("couldn't find the volume ID (`id = …`) in the output of volutil info")?;
    let backup_id =
        text.split(", backupId = ").nth(1).and_then(hex).context(
            "couldn't find the backup ID (`backupId = …`) in the output of volutil info",
        )?;
    Ok(VolumeInfo { id, backup_id })
}

/// `word` as one word for a POSIX (or csh) shell: as it is when it is made of harmless
/// characters, single-quoted otherwise.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:./,@%+=-".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;
    use std::process::Command;

    const INFO: &str = "Volume header for volume 7f000001 (a:foo.0)\n\
        stamp.magic = 1, stamp.version = 1\n\
        id = 7f000001, parentId = 7f000001, cloneId = 00000000, backupId = 7f000004, \
        restoredFromId = 00000000\npartition = (/vicepa)\n";

    #[test]
    fn info_ids_are_parsed_and_their_absence_is_an_error() {
        let info = parse_info(INFO).unwrap();
        assert_eq!(
            (info.id.as_str(), info.backup_id.as_str()),
            ("7f000001", "7f000004")
        );
        let err = parse_info("partition = (/vicepa)\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("volume ID"), "{err}");
        let err = parse_info("id = 7f000001, parentId = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("backup ID"), "{err}");
        // `id` must start a line (the original's multiline `^id = `).
        assert!(parse_info("xid = 1, backupId = 2\n").is_err());
    }

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("a:foo"), "a:foo");
        assert_eq!(shell_quote("/"), "/");
        assert_eq!(shell_quote("a b;rm"), "'a b;rm'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    fn remote(volutil: &str, c2t: &str) -> anyhow::Result<Remote> {
        let text = "settings:\n  root: /b\n  snapshot-backend: dir\n";
        let settings = Config::from_yaml(text, Path::new("/c")).unwrap().settings;
        let ssh = Ssh::new("ssh".into(), &settings).unwrap();
        Remote::new(ssh, "coda1.example.org", volutil, c2t, false)
    }

    /// Runs the dump script locally with `sh` (dash on Debian, which has no pipefail) and fake
    /// tools; returns (exit code, stdout, stderr).
    fn run_script(volutil_body: &str, c2t_body: &str) -> (i32, String, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tool = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path.to_str().unwrap().to_string()
        };
        let r = remote(&tool("volutil", volutil_body), &tool("c2t", c2t_body)).unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(r.dump_command("7f000004", true))
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn the_dump_pipeline_fails_whichever_side_fails() {
        let pass = "echo \"dump $*\"";
        let convert = "read line; echo \"tar of: $line\"";
        let (code, out, _) = run_script(pass, convert);
        assert_eq!(
            (code, out.as_str()),
            (0, "tar of: dump dump -i -1 7f000004\n")
        );

        let (code, out, err) = run_script("echo partial; exit 7", convert);
        assert_eq!(code, 1, "{out} {err}");
        assert!(err.contains("volutil dump exited with status 7"), "{err}");

        let (code, _, err) = run_script(pass, "cat >/dev/null; exit 3");
        assert_eq!(code, 3);
        assert!(err.contains("codadump2tar exited with status 3"), "{err}");
    }

    #[test]
    fn tool_paths_that_would_break_the_script_are_refused() {
        assert!(remote("/usr/sbin/volutil", "codadump2tar").is_ok());
        assert!(remote("sudo /usr/sbin/volutil", "codadump2tar").is_ok());
        let err = remote("vol'util", "codadump2tar").unwrap_err().to_string();
        assert!(err.contains("coda-volutil-path"), "{err}");
        assert!(remote("volutil", "").is_err());
    }
}
