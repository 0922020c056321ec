//! crontab and sudoers text for an installation (core-rsync-coda.md §7). Pure functions: the
//! CLI gathers the program path, user and config path and prints what these return.

use crate::config::SnapshotBackendKind;
use std::path::{Path, PathBuf};

/// What the templates are filled with.
#[derive(Debug, Clone)]
pub struct Installation {
    /// Absolute path of the deltaic binary.
    pub program: PathBuf,
    /// `-c <path>` is added to every job when the config is not at the default path.
    pub config: Option<PathBuf>,
    /// The user that runs deltaic.
    pub user: String,
    /// Where cron mails output.
    pub email: String,
    /// The configured snapshot backend (decides what sudo must allow).
    pub backend: SnapshotBackendKind,
    /// Where btrfs snapshots live (the only place sudo may delete subvolumes).
    pub snapshot_dir: PathBuf,
}

impl Installation {
    fn command(&self) -> String {
        let mut cmd = shell_word(&self.program);
        if let Some(config) = &self.config {
            cmd.push_str(" -c ");
            cmd.push_str(&shell_word(config));
        }
        cmd
    }
}

/// Quotes a path for a crontab line when it has characters the shell would interpret.
fn shell_word(path: &Path) -> String {
    let s = path.to_string_lossy();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The crontab (§7): prune at 23:00, df check at 23:55, the run at midnight (mail says "OK"
/// on success and carries the failure blocks otherwise), and commented archive jobs.
pub fn crontab(inst: &Installation) -> String {
    let prog = inst.command();
    format!(
        "MAILTO = {email}

0 23 * * * {prog} prune
55 23 * * * {prog} df -c
0 0 * * * {prog} run >/dev/null && echo \"OK\"

# To run offsite archives, enable these jobs and configure their schedule
#0 0 1 1,4,7,10 * {prog} archive run
#0 4 * * * {prog} archive prune
#0 3 30 6,12 * {prog} archive resync
",
        email = inst.email
    )
}

/// The sudoers snippet: exactly the commands the configured backend runs through sudo.
/// `resolve` maps a tool name to the path sudo will run (see [`resolve_tool`]).
///
/// lvm: the original's six tools. btrfs: only `btrfs subvolume delete` of an entry of the
/// snapshot directory (creating a snapshot needs no privilege), as a sudo regular expression
/// (sudo 1.9.10 or later), because `btrfs` with any arguments is as good as root.
pub fn sudoers(inst: &Installation, resolve: impl Fn(&str) -> String) -> String {
    let user = &inst.user;
    let (what, rule) = match inst.backend {
        SnapshotBackendKind::Dir => {
            return "# The dir snapshot backend runs nothing through sudo: no sudoers entry is needed.\n"
                .to_string();
        }
        SnapshotBackendKind::Lvm => {
            let tools = ["lvs", "lvcreate", "lvremove", "lvchange", "mount", "umount"];
            let paths: Vec<String> = tools.iter().map(|t| resolve(t)).collect();
            (
                "# Allow Deltaic to query, create, delete, mount, and unmount snapshot volumes"
                    .to_string(),
                paths.join(", "),
            )
        }
        SnapshotBackendKind::Btrfs => (
            "# Allow Deltaic to delete its btrfs snapshots (and nothing else; needs sudo >= 1.9.10).\n\
             # Alternatively mount the filesystem with user_subvol_rm_allowed and skip this entry."
                .to_string(),
            format!(
                "{} ^subvolume delete {}/(\\.tmp-(removing-)?)?[0-9]{{8}}-[0-9]+$",
                resolve("btrfs"),
                sudoers_regex_escape(&inst.snapshot_dir.to_string_lossy())
            ),
        ),
    };
    format!(
        "{what}\n{user} ALL=NOPASSWD: {rule}\n# Allow running sudo from cron\nDefaults:{user} !requiretty\n"
    )
}

/// Escapes `text` for a literal match inside a sudoers regular expression: regex
/// metacharacters get a backslash, and so do the characters sudoers itself treats specially.
fn sudoers_regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if ".^$*+?()[]{}|\\,:=#\"' ".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The path sudo runs for `tool`: the first hit in Debian's default `secure_path`, with symlinks
/// resolved away only in the directory (merged-/usr systems keep `/usr/sbin/lvs`). Falls back
/// to `/sbin/<tool>` as the original printed.
pub fn resolve_tool(tool: &str) -> String {
    const SECURE_PATH: &[&str] = &[
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    SECURE_PATH
        .iter()
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("/sbin/{tool}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(backend: SnapshotBackendKind, config: Option<&str>) -> Installation {
        Installation {
            program: "/usr/local/bin/deltaic".into(),
            config: config.map(PathBuf::from),
            user: "backup".into(),
            email: "ops@example.org".into(),
            backend,
            snapshot_dir: "/srv/backup.snapshots".into(),
        }
    }

    #[test]
    fn crontab_matches_the_original_template() {
        let text = crontab(&inst(SnapshotBackendKind::Lvm, None));
        assert_eq!(
            text,
            "MAILTO = ops@example.org\n\n\
             0 23 * * * /usr/local/bin/deltaic prune\n\
             55 23 * * * /usr/local/bin/deltaic df -c\n\
             0 0 * * * /usr/local/bin/deltaic run >/dev/null && echo \"OK\"\n\n\
             # To run offsite archives, enable these jobs and configure their schedule\n\
             #0 0 1 1,4,7,10 * /usr/local/bin/deltaic archive run\n\
             #0 4 * * * /usr/local/bin/deltaic archive prune\n\
             #0 3 30 6,12 * /usr/local/bin/deltaic archive resync\n"
        );
    }

    #[test]
    fn crontab_passes_a_non_default_config_quoted() {
        let text = crontab(&inst(
            SnapshotBackendKind::Lvm,
            Some("/etc/deltaic dir/x.conf"),
        ));
        assert!(
            text.contains("0 23 * * * /usr/local/bin/deltaic -c '/etc/deltaic dir/x.conf' prune")
        );
    }

    #[test]
    fn sudoers_lists_only_what_the_backend_needs() {
        let resolve = |t: &str| format!("/usr/sbin/{t}");
        let lvm = sudoers(&inst(SnapshotBackendKind::Lvm, None), resolve);
        assert_eq!(
            lvm,
            "# Allow Deltaic to query, create, delete, mount, and unmount snapshot volumes\n\
             backup ALL=NOPASSWD: /usr/sbin/lvs, /usr/sbin/lvcreate, /usr/sbin/lvremove, \
             /usr/sbin/lvchange, /usr/sbin/mount, /usr/sbin/umount\n\
             # Allow running sudo from cron\nDefaults:backup !requiretty\n"
        );
        let btrfs = sudoers(&inst(SnapshotBackendKind::Btrfs, None), resolve);
        assert!(
            btrfs.contains(
                "backup ALL=NOPASSWD: /usr/sbin/btrfs ^subvolume delete \
                 /srv/backup\\.snapshots/(\\.tmp-(removing-)?)?[0-9]{8}-[0-9]+$\n"
            ),
            "{btrfs}"
        );
        assert!(!btrfs.contains("lvs"));
        let dir = sudoers(&inst(SnapshotBackendKind::Dir, None), resolve);
        assert!(!dir.contains("NOPASSWD"));
    }
}
