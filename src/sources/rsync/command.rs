//! `deltaic rsync backup` and `deltaic rsync restore`.

use crate::config::Config;
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// The `deltaic rsync` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RsyncCommand {
    /// Back up one host from the `rsync:` section
    #[command(after_help = "\
Examples:
  deltaic rsync backup host.example.org
  deltaic rsync backup --scrub host.example.org   (compare file contents by checksum)")]
    Backup {
        /// Compare every file by checksum, re-transferring files whose content differs
        #[arg(short = 'c', long)]
        scrub: bool,
        /// The host, as named under `rsync:` in the config
        host: String,
    },
    /// Copy files from the backup (or a mounted snapshot) back to a host
    ///
    /// deltaic's options go before SOURCE. Everything after DESTDIR is passed to rsync, even
    /// options that share a name with deltaic's (`-u` there is rsync's --update); a `--` before
    /// them is optional.
    #[command(after_help = "\
Examples:
  deltaic rsync restore /backup/rsync/octopus/etc octopus.example.org /tmp/etc
  deltaic rsync restore /backup/rsync/octopus/home octopus.example.org /home --delete --dry-run
  deltaic rsync restore -u bob --coda /backup/coda/srv/a:foo/x srv.example.org /tmp/x")]
    Restore {
        /// The data came from a Coda volume (no ACLs, xattrs, groups or devices)
        #[arg(long)]
        coda: bool,
        /// Remote user
        #[arg(short, long, default_value = "root")]
        user: String,
        /// SOURCE (a path inside the backup or a mounted snapshot), HOST, DESTDIR (a directory
        /// on the host), then extra rsync options passed through (e.g. --delete --dry-run)
        #[arg(
            value_names = ["SOURCE", "HOST", "DESTDIR", "RSYNC_ARGS"],
            num_args = 3..,
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        args: Vec<OsString>,
    },
}

/// Runs a `deltaic rsync` subcommand.
pub fn execute(config: &Config, cmd: RsyncCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RsyncCommand::Backup { scrub, host } => super::backup::run(config, &host, scrub),
        RsyncCommand::Restore { coda, user, args } => {
            let (source, host, destdir, rsync_args) = split_restore_args(args)?;
            let request = super::restore::RestoreRequest {
                coda,
                user: &user,
                source: Path::new(&source),
                host: &host,
                destdir: &destdir,
                rsync_args: &rsync_args,
            };
            super::restore::run(config, &request)
        }
    }
}

/// Splits `SOURCE HOST DESTDIR [--] [RSYNC_ARGS...]` (clap guarantees at least three words).
/// A `--` right after DESTDIR only separates and is dropped (BUG-21: it was required before).
fn split_restore_args(
    args: Vec<OsString>,
) -> anyhow::Result<(OsString, String, String, Vec<OsString>)> {
    let mut args = args.into_iter();
    let mut next = |name: &str| {
        args.next().ok_or_else(|| {
            anyhow::anyhow!("restore needs SOURCE, HOST and DESTDIR; {name} is missing")
        })
    };
    let source = next("SOURCE")?;
    let text = |value: OsString, name: &str| {
        value
            .into_string()
            .map_err(|v| anyhow::anyhow!("{name} `{}` is not valid UTF-8", v.to_string_lossy()))
    };
    let host = text(next("HOST")?, "HOST")?;
    let destdir = text(next("DESTDIR")?, "DESTDIR")?;
    for (name, value) in [("HOST", &host), ("DESTDIR", &destdir)] {
        if value.starts_with('-') {
            anyhow::bail!(
                "{name} `{value}` looks like an option: deltaic's options go before SOURCE \
                 (rsync's after DESTDIR)"
            );
        }
    }
    let mut rest: Vec<OsString> = args.collect();
    if rest.first().is_some_and(|a| a == "--") {
        rest.remove(0);
    }
    Ok((source, host, destdir, rest))
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// (coda, user, SOURCE, HOST, DESTDIR, rsync args) as `execute` sees them.
    fn restore_args(argv: &[&str]) -> (bool, String, String, String, String, Vec<String>) {
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.command {
            Command::Rsync(super::RsyncCommand::Restore { coda, user, args }) => {
                let (source, host, destdir, rest) = super::split_restore_args(args).unwrap();
                let rest = rest.into_iter().map(|a| a.into_string().unwrap()).collect();
                (
                    coda,
                    user,
                    source.into_string().unwrap(),
                    host,
                    destdir,
                    rest,
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bug_21_trailing_options_reach_rsync_with_or_without_double_dash() {
        let base = [
            "deltaic",
            "rsync",
            "restore",
            "/b/etc",
            "h.example.org",
            "/etc",
        ];
        let with = |extra: &[&str]| {
            let argv: Vec<&str> = base.iter().chain(extra).copied().collect();
            restore_args(&argv)
        };
        let (_, _, source, host, destdir, args) = with(&["--delete", "-n"]);
        assert_eq!(
            (source.as_str(), host.as_str(), destdir.as_str()),
            ("/b/etc", "h.example.org", "/etc")
        );
        assert_eq!(args, ["--delete", "-n"]);
        assert_eq!(with(&["--", "--delete"]).5, ["--delete"]);
        assert_eq!(with(&["--delete", "--", "x"]).5, ["--delete", "--", "x"]);
        // After SOURCE, even deltaic's own option names belong to rsync.
        let (coda, user, .., args) = with(&["-u", "--coda", "-h"]);
        assert_eq!((coda, user.as_str()), (false, "root"));
        assert_eq!(args, ["-u", "--coda", "-h"]);
        assert!(with(&[]).5.is_empty());
    }

    #[test]
    fn restore_options_go_before_the_source() {
        let (coda, user, .., args) = restore_args(&[
            "deltaic", "rsync", "restore", "--coda", "-u", "bob", "/b", "h", "/d",
        ]);
        assert_eq!((coda, user.as_str(), args.len()), (true, "bob", 0));
        let short = Cli::try_parse_from(["deltaic", "rsync", "restore", "/b", "h"]);
        assert!(short.is_err(), "DESTDIR is required");
        let late = ["deltaic", "rsync", "restore", "/b", "-u", "bob", "h", "/d"];
        let Command::Rsync(super::RsyncCommand::Restore { args, .. }) =
            Cli::try_parse_from(late).unwrap().command
        else {
            panic!()
        };
        let err = super::split_restore_args(args).unwrap_err().to_string();
        assert!(err.contains("HOST `-u` looks like an option"), "{err}");
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let help = Cli::command()
            .find_subcommand_mut("rsync")
            .unwrap()
            .find_subcommand_mut("restore")
            .unwrap()
            .render_help()
            .to_string();
        assert!(help.contains("<SOURCE> <HOST> <DESTDIR>"), "{help}");
    }

    #[test]
    fn scrub_is_accepted_after_the_host_as_the_driver_passes_it() {
        let cli = Cli::try_parse_from(["deltaic", "rsync", "backup", "h.example.org", "--scrub"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Rsync(super::RsyncCommand::Backup { scrub: true, .. })
        ));
    }
}
