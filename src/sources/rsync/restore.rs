//! `deltaic rsync restore [--coda] [-u USER] SOURCE HOST DESTDIR [RSYNC_ARGS...]`
//! (core-rsync-coda.md §9.3).
//!
//! The local sending rsync runs with `--fake-super`, so it reads the owners, modes, ACLs and
//! xattrs stored in `user.rsync.*` xattrs and sends the real metadata; `-M--super` makes the
//! remote receiver apply them (chown, mknod, set-uid) and report what it cannot do.
//!
//! ```text
//! <rsync> -aHi --acls --xattrs --fake-super -M--super --numeric-ids --rsh=<ssh> SOURCE DEST [ARGS...]
//! <rsync> -rlptoHi --fake-super -M--super --numeric-ids --exclude=/..CodaACLs.yaml --rsh=<ssh>
//!         SOURCE DEST [ARGS...]                                                  (--coda)
//! ```
//!
//! With `--coda`, `--exclude=/..CodaACLs.yaml` follows the flags: the Coda ACLs that newer
//! codadump2tar stores as a file at the volume root stay in the backup, for reference, and are
//! never copied into the Coda tree as an ordinary file (BUG-C14).
//!
//! `SOURCE` loses its trailing slashes and gets exactly one if it is a directory ("its
//! contents"); `DEST` is `USER@HOST:DESTDIR/`. Changes from the original: `--rsh` carries the
//! same ssh options as the backup (the original used rsync's default, interactive ssh); options
//! after DESTDIR are passed to rsync even without `--` (BUG-21); the ACL/xattr fallback removes
//! only flags that are present (BUG-22). For a host configured with `local: true`, DEST is the
//! local DESTDIR and there is no `--rsh` (for a local copy, `--fake-super` with `-M--super` is
//! exactly "fake-super on the sending side only").

use super::ssh::Ssh;
use super::transfer;
use crate::config::Config;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

/// What `deltaic rsync restore` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest<'a> {
    /// Restoring data that came from Coda (no ACLs, xattrs, groups or devices).
    pub coda: bool,
    /// Remote user.
    pub user: &'a str,
    /// Local path in the backup or a mounted snapshot.
    pub source: &'a Path,
    /// Host to restore to.
    pub host: &'a str,
    /// Directory on the host.
    pub destdir: &'a str,
    /// Extra rsync arguments, appended as given.
    pub rsync_args: &'a [OsString],
}

/// Runs the restore and returns the exit code (an error when rsync fails).
pub fn run(config: &Config, request: &RestoreRequest<'_>) -> anyhow::Result<ExitCode> {
    let local = config
        .rsync
        .get(request.host)
        .is_some_and(|info| info.value.local);
    let ssh = if local {
        None
    } else {
        Some(Ssh::from_settings(&config.settings)?)
    };
    let argv = restore_argv(&config.settings.rsync_local_binary, request, ssh.as_ref());
    let transfer = transfer::run_with_fallback(&argv, request.host)?;
    transfer.check(&format!("restore to {}", request.host))?;
    Ok(ExitCode::SUCCESS)
}

/// The rsync command line (program first); see the module doc.
pub fn restore_argv(rsync: &str, request: &RestoreRequest<'_>, ssh: Option<&Ssh>) -> Vec<OsString> {
    let flags: &[&str] = if request.coda {
        &[
            "-rlptoHi",
            "--fake-super",
            "-M--super",
            "--numeric-ids",
            "--exclude=/..CodaACLs.yaml",
        ]
    } else {
        &[
            "-aHi",
            "--acls",
            "--xattrs",
            "--fake-super",
            "-M--super",
            "--numeric-ids",
        ]
    };
    let mut argv: Vec<OsString> = std::iter::once(rsync)
        .chain(flags.iter().copied())
        .map(OsString::from)
        .collect();
    if let Some(ssh) = ssh {
        argv.push(format!("--rsh={}", ssh.rsh()).into());
    }
    argv.push(source_arg(request.source));
    let destdir = format!("{}/", request.destdir.trim_end_matches('/'));
    argv.push(match ssh {
        Some(_) => format!("{}@{}:{destdir}", request.user, request.host).into(),
        None => destdir.into(),
    });
    argv.extend(request.rsync_args.iter().cloned());
    argv
}

/// SOURCE without trailing slashes, plus one if it is a directory (copy its contents).
fn source_arg(source: &Path) -> OsString {
    let bytes = source.as_os_str().as_bytes();
    let end = bytes.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let mut arg = OsStr::from_bytes(&bytes[..end]).to_owned();
    if source.is_dir() {
        arg.push("/");
    }
    arg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn strings(argv: Vec<OsString>) -> Vec<String> {
        argv.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    fn settings() -> crate::config::Settings {
        let text = "settings:\n  root: /srv/backup\n  snapshot-backend: dir\n";
        Config::from_yaml(text, Path::new("/c")).unwrap().settings
    }

    #[test]
    fn normal_and_coda_argv() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("etc");
        std::fs::create_dir(&source).unwrap();
        let with_slashes = format!("{}//", source.display());
        let args = vec![OsString::from("--delete"), OsString::from("-n")];
        let ssh = Ssh::new("ssh".into(), &settings()).unwrap();
        let mut request = RestoreRequest {
            coda: false,
            user: "root",
            source: Path::new(&with_slashes),
            host: "octopus.example.org",
            destdir: "/tmp/etc///",
            rsync_args: &args,
        };
        let src = format!("{}/", source.display());
        let rsh = format!("--rsh={}", ssh.rsh());
        let dest = "root@octopus.example.org:/tmp/etc/";
        assert_eq!(
            strings(restore_argv("rsync", &request, Some(&ssh))),
            [
                "rsync",
                "-aHi",
                "--acls",
                "--xattrs",
                "--fake-super",
                "-M--super",
                "--numeric-ids",
                &rsh,
                &src,
                dest,
                "--delete",
                "-n",
            ]
        );
        request.coda = true;
        request.user = "bob";
        request.rsync_args = &[];
        assert_eq!(
            strings(restore_argv("/usr/bin/rsync", &request, Some(&ssh))),
            [
                "/usr/bin/rsync",
                "-rlptoHi",
                "--fake-super",
                "-M--super",
                "--numeric-ids",
                "--exclude=/..CodaACLs.yaml",
                &rsh,
                &src,
                "bob@octopus.example.org:/tmp/etc/",
            ]
        );
    }

    #[test]
    fn files_get_no_slash_and_the_root_stays_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd");
        std::fs::write(&file, "x").unwrap();
        let with_slash = format!("{}/", file.display());
        assert_eq!(source_arg(Path::new(&with_slash)), file.as_os_str());
        assert_eq!(source_arg(Path::new("/")), "/");
        let request = RestoreRequest {
            coda: false,
            user: "root",
            source: &file,
            host: "h",
            destdir: "/",
            rsync_args: &[],
        };
        let argv = strings(restore_argv("rsync", &request, None));
        assert_eq!(&argv[argv.len() - 2..], [file.to_str().unwrap(), "/"]);
        assert!(!argv.iter().any(|a| a.starts_with("--rsh")));
    }
}
