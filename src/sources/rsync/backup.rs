//! `deltaic rsync backup [--scrub] HOST` (core-rsync-coda.md §9.2).
//!
//! Steps: find the host in the config; check the backup filesystem; take the per-host lock
//! `ROOT/.lock/rsync-<alias>` (a manual run next to the nightly one must not race it); turn
//! this run into a scrub if the previous one was interrupted ([`in_progress`]); run `pre`; set
//! the in-progress marker; prepare the destination for `--inplace` ([`inplace`]); pull every
//! mount into `ROOT/rsync/<alias>/` with rsync; `syncfs` and clear the marker; run `post` after
//! a success, or always with `post-always` (BUG-19); write the unit report (files, bytes, D6
//! scrub mismatches, warnings such as a lost `--inplace`).
//!
//! The `pre`/`post` command text may hold a password (`mysqldump -pSECRET`): the `.out` log
//! shows `ssh … root@host <pre command>`, the text itself only at debug level.
//!
//! The argv is the original's, in the original's order, with these changes:
//! * `--partial` is dropped (BUG-20): an interrupted transfer must never replace a good copy
//!   with a truncated one.
//! * `--inplace` after `--stats` (setting `rsync-inplace`, default true; per host `inplace`):
//!   rsync rewrites only the changed blocks of a changed file, so the unchanged ones stay shared
//!   with older snapshots and a snapshot costs about what changed, not whole files. Hard links
//!   of the backup that the transfer will change are given their own inodes first (see
//!   [`inplace`]), because rsync would otherwise write through them. A file interrupted
//!   mid-update keeps a wrong mtime, so the next run sends it again; its old content stays in
//!   the previous snapshot, and the run is recorded partial. After a crash, the in-progress
//!   marker makes the next run a scrub.
//! * `--timeout=<rsync-timeout>` when non-zero and `--bwlimit=<rsync-bwlimit>` when set, after
//!   `--stats`;
//! * `--rsh` carries the ssh options of [`Ssh`] (never `StrictHostKeyChecking=no`);
//! * `local: true` hosts: no `--rsh`, the mounts are local paths, `-M--fake-super` replaces
//!   `--fake-super` (rsync would otherwise also read `user.rsync.*` xattrs on the source side of
//!   a local copy), the backup root and snapshot directory are excluded (no backup of the
//!   backup: as configured and canonical, with rsync's wildcard characters escaped), and
//!   `pre`/`post` run with `sh -c`.

use super::config::RsyncHost;
use super::in_progress::InProgress;
use super::inplace::{self, Guard};
use super::ssh::Ssh;
use super::transfer::{self, Output, Transfer};
use crate::config::{Config, Settings};
use crate::run::manifest::UnitReport;
use crate::run::unit_session;
use crate::sources::UnitRoot;
use crate::util::process;
use anyhow::{Context, bail};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Scrub mismatches logged one by one; beyond this, only the count.
const MAX_LOGGED_MISMATCHES: usize = 100;

/// Runs `deltaic rsync backup [--scrub] HOST`.
pub fn run(config: &Config, host: &str, scrub: bool) -> anyhow::Result<ExitCode> {
    let info = find_host(config, host)?;
    let alias = info.alias(host);
    let unit = UnitRoot::from_components(&["rsync", alias])?;
    let _locks = unit_session::start(config, &unit)?;
    let ssh = if info.local {
        None
    } else {
        Some(Ssh::from_settings(&config.settings)?)
    };
    let marker = InProgress::new(config.root(), alias);
    let mut warnings = Vec::new();
    let interrupted = previous_run_was_interrupted(&marker, host, &mut warnings);
    let backup = Backup {
        settings: &config.settings,
        host,
        info,
        dest: config.root().join("rsync").join(alias),
        ssh: ssh.as_ref(),
        scrub: scrub || interrupted,
        marker,
    };
    let hooks = Hooks {
        ssh: ssh.as_ref(),
        user: info.user(),
        host,
    };

    if let Some(pre) = &info.pre
        && let Err(err) = hooks.run("pre", pre)
    {
        if info.post_always {
            hooks.run_post_after_failure(info);
        }
        return Err(err.context(format!("backup of {host} aborted before rsync ran")));
    }
    let result = backup.transfer_and_report(warnings);
    match (&result, &info.post) {
        (Ok(()), Some(post)) => hooks.run("post", post)?,
        (Err(_), Some(_)) if info.post_always => hooks.run_post_after_failure(info),
        _ => {}
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// Looks `host` up under `rsync:`; the error lists the configured hosts.
fn find_host<'a>(config: &'a Config, host: &str) -> anyhow::Result<&'a RsyncHost> {
    if let Some(info) = config.rsync.get(host) {
        return Ok(&info.value);
    }
    let hosts: Vec<&str> = config.rsync.keys().map(String::as_str).collect();
    let by_alias = config
        .rsync
        .iter()
        .find(|(name, info)| info.value.alias(name) == host);
    let hint = match by_alias {
        Some((name, _)) => format!("; `{host}` is the alias of `{name}`: use the host name"),
        None => match crate::config::closest_key(host, &hosts) {
            Some(guess) => format!("; did you mean `{guess}`?"),
            None => String::new(),
        },
    };
    let listed = if hosts.is_empty() {
        "none".to_string()
    } else {
        hosts.join(", ")
    };
    bail!(
        "host `{host}` is not configured under `rsync:` in {} (configured hosts: {listed}){hint}",
        config.path.display()
    )
}

/// Whether the in-progress marker says the previous backup was cut off; if so (or if that
/// cannot be told), this run is a scrub, and says so in `warnings` and the log.
fn previous_run_was_interrupted(
    marker: &InProgress,
    host: &str,
    warnings: &mut Vec<String>,
) -> bool {
    let warning = match marker.is_present() {
        Ok(false) => return false,
        Ok(true) => format!(
            "the previous backup of {host} was interrupted; comparing every file by checksum"
        ),
        Err(e) => format!(
            "cannot tell whether the previous backup of {host} finished ({}: {e}); comparing \
             every file by checksum",
            marker.path().display()
        ),
    };
    tracing::warn!("{warning}");
    warnings.push(warning);
    true
}

/// One backup of one host, once `pre` has run.
struct Backup<'a> {
    settings: &'a Settings,
    host: &'a str,
    info: &'a RsyncHost,
    dest: PathBuf,
    ssh: Option<&'a Ssh>,
    scrub: bool,
    marker: InProgress,
}

impl Backup<'_> {
    /// The rsync command line for this backup.
    fn argv(&self, inplace: bool) -> Vec<OsString> {
        backup_argv(
            self.settings,
            self.host,
            self.info,
            &self.dest,
            self.ssh,
            self.scrub,
            inplace,
        )
    }

    /// Sets the in-progress marker, prepares `--inplace`, runs rsync, clears the marker, logs
    /// scrub mismatches, and writes the unit report (with `warnings` and the run's own); `Err`
    /// when rsync failed (the report is written either way).
    fn transfer_and_report(&self, mut warnings: Vec<String>) -> anyhow::Result<()> {
        let (host, dest) = (self.host, self.dest.as_path());
        self.marker.set(host).with_context(|| {
            format!(
                "writing the in-progress marker {}; check that the backup root is writable",
                self.marker.path().display()
            )
        })?;
        std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        let (inplace, mut guard) = if self.info.inplace.unwrap_or(self.settings.rsync_inplace) {
            let request = inplace::Request {
                host,
                dest,
                scratch: self.marker.dir(),
                scratch_stem: self.marker.name(),
                scrub: self.scrub,
            };
            let prepared = inplace::prepare(&request, || inplace::dry_run_argv(&self.argv(true)));
            warnings.extend(prepared.warnings);
            (prepared.inplace, Some(prepared.guard))
        } else {
            (false, None)
        };
        let argv = self.argv(inplace);
        let transfer = transfer::run_observed(&argv, host, Output::Logged, &mut |item| {
            if let Some(guard) = guard.as_mut() {
                guard.watch(item);
            }
        });
        let transfer = match (transfer, guard.as_mut()) {
            (Ok(transfer), Some(guard)) if inplace && guard.hits() > 0 => {
                self.repair_writes_through_links(guard, &argv, transfer, &mut warnings)
            }
            (transfer, _) => transfer,
        };
        self.clear_marker(transfer.as_ref().ok(), &mut warnings);
        let transfer = transfer?;
        log_scrub_mismatches(host, &transfer);
        if transfer.status.code() == Some(24) {
            tracing::info!(
                "{host}: some files vanished on the host during the transfer (rsync status 24)"
            );
        }
        warnings.extend(transfer.warnings.iter().cloned());
        let summary = &transfer.summary;
        let report = UnitReport {
            bytes_transferred: summary.bytes_transferred,
            files_transferred: Some(summary.files_transferred),
            scrubbed: self.scrub,
            scrub_mismatches: self.scrub.then_some(summary.scrub_mismatches.len() as u64),
            warnings,
        };
        let outcome = transfer.check(&format!("backup of {host}"));
        if let Err(err) = report.write_if_requested() {
            if outcome.is_ok() {
                return Err(err);
            }
            tracing::error!("{err:#}");
        }
        outcome
    }

    /// The host changed hard-linked files between the dry run and the transfer, so rsync may
    /// have written through links of the backup: gives those inodes' names their own inodes
    /// and sends them again in a second pass (see [`inplace`]).
    fn repair_writes_through_links(
        &self,
        guard: &mut Guard,
        argv: &[OsString],
        mut transfer: Transfer,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<Transfer> {
        let host = self.host;
        let hits = guard.hits();
        let names = match guard.repair() {
            Ok(names) => names,
            Err(err) => {
                let warning = format!(
                    "{host}: {hits} hard-linked file(s) changed on the host during the backup \
                     and may hold another name's data; repairing them failed: {err}"
                );
                tracing::warn!("{warning}");
                warnings.push(warning);
                return Ok(transfer);
            }
        };
        tracing::info!(
            "{host}: {hits} hard-linked file(s) changed on the host between the dry run and the \
             transfer; sending the {names} name(s) of their inodes again"
        );
        if !transfer.succeeded() {
            let warning = format!(
                "{host}: {hits} hard-linked file(s) changed on the host during this failed \
                 backup; the next backup sends the {names} name(s) of their inodes again"
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
            return Ok(transfer);
        }
        transfer.then(transfer::run_observed(
            argv,
            host,
            Output::Logged,
            &mut |item| guard.watch(item),
        )?);
        if guard.hits() > 0 {
            let left = guard.hits();
            let _ = guard.repair();
            let warning = format!(
                "{host}: {left} hard-linked file(s) kept changing on the host during the backup; \
                 their copies in this snapshot may hold another name's data, and the next \
                 backup sends them again"
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
        Ok(transfer)
    }

    /// Clears the in-progress marker once rsync has exited by itself (with any status; an
    /// rsync that could not start changed nothing) and the destination is synced. An rsync
    /// killed by a signal leaves it, and so does a failed sync: the next run scrubs.
    fn clear_marker(&self, transfer: Option<&Transfer>, warnings: &mut Vec<String>) {
        if transfer.is_some_and(|t| t.status.code().is_none()) {
            let warning = format!(
                "rsync was killed by a signal; the next backup of {} compares every file by \
                 checksum",
                self.host
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
            return;
        }
        if let Err(e) = self.marker.clear_after_sync(&self.dest) {
            let warning = format!(
                "{}: flushing the backup to disk or clearing {} failed ({e}); the next backup \
                 compares every file by checksum",
                self.host,
                self.marker.path().display()
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
    }
}

/// The rsync command line (program first), in the original's order (see the module doc).
pub fn backup_argv(
    settings: &Settings,
    host: &str,
    info: &RsyncHost,
    dest: &Path,
    ssh: Option<&Ssh>,
    scrub: bool,
    inplace: bool,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![settings.rsync_local_binary.clone().into(), "-aHRxi".into()];
    let fake_super = if ssh.is_some() {
        "--fake-super"
    } else {
        "-M--fake-super"
    };
    for flag in [
        "--acls",
        "--xattrs",
        fake_super,
        "--delete",
        "--delete-excluded",
    ] {
        argv.push(flag.into());
    }
    argv.push("--numeric-ids".into());
    argv.push("--stats".into());
    if inplace {
        argv.push("--inplace".into());
    }
    if let Some(timeout) = settings.rsync_timeout.limit() {
        argv.push(format!("--timeout={}", timeout.as_secs()).into());
    }
    if let Some(limit) = &settings.rsync_bwlimit {
        argv.push(format!("--bwlimit={limit}").into());
    }
    if let Some(ssh) = ssh {
        argv.push(format!("--rsh={}", ssh.rsh()).into());
    }
    for pattern in settings.rsync_exclude.iter().chain(&info.exclude) {
        argv.push(format!("--exclude={pattern}").into());
    }
    if ssh.is_none() {
        for own in self_exclusions(settings) {
            let mut pattern = b"--exclude=".to_vec();
            pattern.extend(own);
            argv.push(OsString::from_vec(pattern));
        }
    }
    for mount in &info.mounts {
        let trimmed = mount.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        argv.push(match ssh {
            Some(_) => format!("{}@{host}:{path}", info.user()).into(),
            None => path.into(),
        });
    }
    argv.push(without_trailing_slash(dest));
    if scrub {
        argv.push("--checksum".into());
    }
    argv
}

/// `path` as an argument, without trailing `/` (a trailing slash means "the contents of").
fn without_trailing_slash(path: &Path) -> OsString {
    let bytes = path.as_os_str().as_bytes();
    let end = bytes
        .iter()
        .rposition(|&b| b != b'/')
        .map_or(1.min(bytes.len()), |i| i + 1);
    std::ffi::OsStr::from_bytes(&bytes[..end]).to_owned()
}

/// The exclude patterns that keep a local backup out of itself: the backup root and the
/// snapshot directory as configured and, when they exist, canonical (a symlinked root is seen by
/// rsync under its real path), each as a literal directory pattern (`<path>/`).
fn self_exclusions(settings: &Settings) -> Vec<Vec<u8>> {
    let mut patterns = Vec::new();
    for own in [settings.root.clone(), settings.snapshot_dir()] {
        let canonical = std::fs::canonicalize(&own).ok();
        for path in std::iter::once(own).chain(canonical) {
            let mut pattern = rsync_literal(without_trailing_slash(&path).as_bytes());
            if pattern != b"/" {
                pattern.push(b'/');
            }
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
    }
    patterns
}

/// `path` as an rsync filter pattern that matches only itself. rsync treats a pattern as a
/// wildcard pattern when it contains `*`, `?` or `[`, and only then reads `\` as an escape: so
/// such a path gets each of `*?[\` escaped, and any other path is left as it is.
fn rsync_literal(path: &[u8]) -> Vec<u8> {
    if !path.iter().any(|b| b"*?[".contains(b)) {
        return path.to_vec();
    }
    let mut out = Vec::with_capacity(path.len() + 8);
    for &b in path {
        if b"*?[\\".contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// D6: each scrub mismatch is a warning (the file was repaired; the unit does not fail).
fn log_scrub_mismatches(host: &str, transfer: &Transfer) {
    let mismatches = &transfer.summary.scrub_mismatches;
    for path in mismatches.iter().take(MAX_LOGGED_MISMATCHES) {
        tracing::warn!(
            "scrub of {host}: {} differed from the backup although size and time matched; \
             copied again",
            String::from_utf8_lossy(path)
        );
    }
    if mismatches.len() > MAX_LOGGED_MISMATCHES {
        tracing::warn!(
            "scrub of {host}: {} more mismatches (see the .out log, lines `>fc`)",
            mismatches.len() - MAX_LOGGED_MISMATCHES
        );
    }
    if !mismatches.is_empty() {
        tracing::warn!(
            "scrub of {host} found and repaired {} file(s) whose backup differed from the host; \
             check the backup disk if this repeats",
            mismatches.len()
        );
    }
}

/// Runs `pre` and `post`: over ssh, or with `sh -c` for local hosts.
struct Hooks<'a> {
    ssh: Option<&'a Ssh>,
    user: &'a str,
    host: &'a str,
}

impl Hooks<'_> {
    /// Prints the command line with the command text replaced by `<NAME command>` (the text may
    /// hold a password; it is logged at debug level only), and runs `command`; fails unless it
    /// exits 0. The error names the hook, not its text.
    fn run(&self, name: &str, command: &str) -> anyhow::Result<()> {
        let mut cmd = match self.ssh {
            Some(ssh) => ssh.remote_command(self.user, self.host, command),
            None => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(command);
                cmd
            }
        };
        println!("{}", hook_display(&cmd, name));
        tracing::debug!(
            "`{name}` command of {}: {}",
            self.host,
            process::display(&cmd)
        );
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("could not start the `{name}` command of {}", self.host))?;
        if !status.success() {
            let how = match status.code() {
                Some(255) if self.ssh.is_some() => {
                    "ssh exited with status 255: the host is unreachable or refused the key"
                        .to_string()
                }
                Some(code) => format!("it exited with status {code}"),
                None => "it was killed by a signal".to_string(),
            };
            bail!(
                "the `{name}` command of {} failed: {how}; see the error log",
                self.host
            );
        }
        Ok(())
    }

    /// `post-always`: runs `post` after a failure; its own failure is logged, since the error
    /// that matters is the backup's.
    fn run_post_after_failure(&self, info: &RsyncHost) {
        if let Some(post) = &info.post
            && let Err(err) = self.run("post", post)
        {
            tracing::error!("{err:#}");
        }
    }
}

/// The command line of a hook for the `.out` log: program and options, then `<NAME command>`
/// instead of the command text (always the last argument).
fn hook_display(cmd: &Command, name: &str) -> String {
    let mut words: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    words.pop();
    words.push(format!("<{name} command>"));
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra_settings: &str, host: &str) -> Config {
        let text = format!(
            "settings:\n  root: /srv/backup\n  snapshot-backend: dir\n{extra_settings}rsync:\n{host}"
        );
        Config::from_yaml(&text, Path::new("/etc/deltaic.conf")).unwrap()
    }

    fn argv(config: &Config, host: &str, scrub: bool) -> Vec<String> {
        argv_inplace(config, host, scrub, false)
    }

    fn argv_inplace(config: &Config, host: &str, scrub: bool, inplace: bool) -> Vec<String> {
        let info = &config.rsync[host].value;
        let ssh = (!info.local).then(|| Ssh::new("ssh".into(), &config.settings).unwrap());
        let dest = config.root().join("rsync").join(info.alias(host));
        backup_argv(
            &config.settings,
            host,
            info,
            &dest,
            ssh.as_ref(),
            scrub,
            inplace,
        )
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
    }

    const RSH: &str = "--rsh=ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
                       -o ConnectTimeout=30 -o ServerAliveInterval=30 -o ServerAliveCountMax=4";

    #[test]
    fn the_argv_keeps_the_original_order() {
        let c = config("", "  host1.example.org:\n    mounts: [/, /boot/]\n");
        assert_eq!(
            argv(&c, "host1.example.org", false),
            [
                "rsync",
                "-aHRxi",
                "--acls",
                "--xattrs",
                "--fake-super",
                "--delete",
                "--delete-excluded",
                "--numeric-ids",
                "--stats",
                "--timeout=600",
                RSH,
                "root@host1.example.org:/",
                "root@host1.example.org:/boot",
                "/srv/backup/rsync/host1",
            ]
        );
    }

    #[test]
    fn inplace_follows_stats() {
        let c = config("", "  host1.example.org:\n    mounts: [/]\n");
        let argv = argv_inplace(&c, "host1.example.org", false, true);
        let stats = argv.iter().position(|a| a == "--stats").unwrap();
        assert_eq!(argv[stats + 1], "--inplace");
        assert_eq!(argv.iter().filter(|a| *a == "--inplace").count(), 1);
    }

    #[test]
    fn scrub_excludes_bwlimit_user_and_alias() {
        let c = config(
            "  rsync-exclude: ['*.tmp', /proc/*]\n  rsync-bwlimit: 10M\n  rsync-timeout: 0\n  \
             rsync-local-binary: /opt/rsync/bin/rsync\n  ssh-strict-host-keys: yes\n  \
             ssh-known-hosts: /etc/deltaic/known_hosts\n",
            "  db.example.org:\n    mounts: [/var//, /srv]\n    alias: octopus\n    user: backup\n    \
             exclude: [/var/lib/mysql/*]\n",
        );
        assert_eq!(
            argv(&c, "db.example.org", true),
            [
                "/opt/rsync/bin/rsync",
                "-aHRxi",
                "--acls",
                "--xattrs",
                "--fake-super",
                "--delete",
                "--delete-excluded",
                "--numeric-ids",
                "--stats",
                "--bwlimit=10M",
                "--rsh=ssh -o BatchMode=yes -o StrictHostKeyChecking=yes \
                 -o UserKnownHostsFile=/etc/deltaic/known_hosts -o ConnectTimeout=30 \
                 -o ServerAliveInterval=30 -o ServerAliveCountMax=4",
                "--exclude=*.tmp",
                "--exclude=/proc/*",
                "--exclude=/var/lib/mysql/*",
                "backup@db.example.org:/var",
                "backup@db.example.org:/srv",
                "/srv/backup/rsync/octopus",
                "--checksum",
            ]
        );
    }

    #[test]
    fn local_hosts_copy_paths_without_ssh_and_skip_the_backup_itself() {
        let c = config(
            "  rsync-exclude: ['*.tmp']\n",
            "  self.example.org:\n    mounts: [/, /home/]\n    local: true\n    exclude: [/x]\n",
        );
        assert_eq!(
            argv(&c, "self.example.org", false),
            [
                "rsync",
                "-aHRxi",
                "--acls",
                "--xattrs",
                "-M--fake-super",
                "--delete",
                "--delete-excluded",
                "--numeric-ids",
                "--stats",
                "--timeout=600",
                "--exclude=*.tmp",
                "--exclude=/x",
                "--exclude=/srv/backup/",
                "--exclude=/srv/backup.snapshots/",
                "/",
                "/home",
                "/srv/backup/rsync/self",
            ]
        );
    }

    #[test]
    fn trailing_slashes_are_removed_from_the_destination() {
        assert_eq!(without_trailing_slash(Path::new("/srv/b/")), "/srv/b");
        assert_eq!(without_trailing_slash(Path::new("/srv/b")), "/srv/b");
        assert_eq!(without_trailing_slash(Path::new("/")), "/");
    }

    #[test]
    fn an_unknown_host_lists_the_configured_ones() {
        let c = config(
            "",
            "  host1.example.org:\n    mounts: [/]\n    alias: octopus\n  \
             host2.example.org:\n    mounts: [/]\n",
        );
        let err = find_host(&c, "host3.example.org").unwrap_err().to_string();
        assert!(
            err.contains("host1.example.org, host2.example.org"),
            "{err}"
        );
        assert!(err.contains("/etc/deltaic.conf"), "{err}");
        let err = find_host(&c, "octopus").unwrap_err().to_string();
        assert!(err.contains("alias of `host1.example.org`"), "{err}");
        let err = find_host(&c, "host1.example.com").unwrap_err().to_string();
        assert!(err.contains("did you mean `host1.example.org`"), "{err}");
        assert!(find_host(&c, "host2.example.org").is_ok());
    }

    #[test]
    fn an_unmounted_root_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let marker = dir.path().join("pre-ran");
        let text = format!(
            "settings:\n  root: {}\n  snapshot-backend: btrfs\nrsync:\n  h.example.org:\n    \
             mounts: [/]\n    local: true\n    pre: 'touch {}'\n",
            root.display(),
            marker.display()
        );
        let config = Config::from_yaml(&text, Path::new("/c")).unwrap();
        let err = run(&config, "h.example.org", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not mounted"), "{err}");
        assert!(!marker.exists());
        assert!(!root.join(".lock").exists(), "no lock taken either");
    }

    #[test]
    fn hooks_report_failures_without_their_text() {
        let hooks = Hooks {
            ssh: None,
            user: "root",
            host: "self",
        };
        hooks.run("pre", "true").unwrap();
        let err = hooks
            .run("pre", "exit 3 # secret-password")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`pre` command of self") && err.contains("status 3"),
            "{err}"
        );
        assert!(!err.contains("secret-password"), "{err}");
    }

    #[test]
    fn hook_command_lines_show_the_hook_name_not_its_text() {
        let c = config("", "  h.example.org:\n    mounts: [/]\n");
        let ssh = Ssh::new("ssh".into(), &c.settings).unwrap();
        let cmd = ssh.remote_command("root", "h.example.org", "mysqldump -pSECRET > /x");
        let shown = hook_display(&cmd, "pre");
        assert!(shown.starts_with("ssh -o BatchMode=yes "), "{shown}");
        assert!(
            shown.ends_with(" root@h.example.org <pre command>"),
            "{shown}"
        );
        assert!(!shown.contains("SECRET"), "{shown}");
        let mut local = Command::new("sh");
        local.arg("-c").arg("post -pSECRET");
        assert_eq!(hook_display(&local, "post"), "sh -c <post command>");
    }

    #[test]
    fn rsync_wildcards_in_own_paths_are_escaped_only_where_rsync_reads_escapes() {
        assert_eq!(rsync_literal(b"/srv/backup"), b"/srv/backup");
        // Without a wildcard rsync compares literally, backslash included.
        assert_eq!(rsync_literal(br"/srv/back\slash"), br"/srv/back\slash");
        assert_eq!(rsync_literal(b"/srv/b[1]*?"), br"/srv/b\[1]\*\?");
        assert_eq!(rsync_literal(br"/a\b*"), br"/a\\b\*");
    }

    #[test]
    fn the_backup_itself_is_excluded_as_configured_and_canonical() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real[1]");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let text = format!(
            "settings:\n  root: {}/\n  snapshot-backend: dir\nrsync:\n  h.example.org:\n    \
             mounts: [/]\n    local: true\n",
            link.display()
        );
        let c = Config::from_yaml(&text, Path::new("/c")).unwrap();
        let patterns: Vec<String> = self_exclusions(&c.settings)
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect();
        let canonical = std::fs::canonicalize(&real).unwrap();
        let escaped = canonical.to_str().unwrap().replace('[', r"\[");
        assert_eq!(
            patterns,
            [
                format!("{}/", link.display()),
                format!("{escaped}/"),
                format!("{}.snapshots/", link.display()),
            ]
        );
    }
}
