//! `deltaic mkconf`: crontab and sudoers templates (see [`crate::mkconf`]).

use crate::config::Config;
use anyhow::Context;
use std::process::ExitCode;

/// Which file to print.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Template {
    /// The backup user's crontab: nightly run, prune and df check
    Crontab,
    /// A sudoers snippet allowing exactly the snapshot commands the configured backend needs
    Sudoers,
}

/// Options of `deltaic mkconf`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  deltaic mkconf --email ops@example.org crontab | crontab -
  deltaic mkconf sudoers | sudo tee /etc/sudoers.d/deltaic")]
pub struct Args {
    /// Where cron mails the output (MAILTO)
    #[arg(long, default_value = "root")]
    pub email: String,
    /// The template
    pub template: Template,
}

/// Runs `deltaic mkconf`.
pub fn execute(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    use crate::mkconf::{Installation, crontab, resolve_tool, sudoers};
    let program = std::env::current_exe().context("finding the deltaic binary")?;
    let is_default = std::fs::canonicalize(crate::config::default_path())
        .is_ok_and(|default| std::fs::canonicalize(&config.path).is_ok_and(|c| c == default));
    let user = current_user_name();
    let inst = Installation {
        program,
        config: (!is_default).then(|| config.path.clone()),
        user,
        email: args.email,
        backend: config.settings.snapshot_backend,
        snapshot_dir: config.settings.snapshot_dir(),
    };
    let text = match args.template {
        Template::Crontab => crontab(&inst),
        Template::Sudoers => sudoers(&inst, resolve_tool),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The login name of the current user: `$USER`, `$LOGNAME`, the passwd entry of the uid, or
/// `#UID` (which sudoers and crontab tools accept) when there is none.
fn current_user_name() -> String {
    let uid = rustix::process::getuid().as_raw();
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/passwd")
                .ok()
                .and_then(|passwd| {
                    passwd.lines().find_map(|line| {
                        let fields: Vec<&str> = line.split(':').collect();
                        (fields.len() > 2 && fields[2] == uid.to_string())
                            .then(|| fields[0].to_string())
                    })
                })
        })
        .unwrap_or_else(|| format!("#{uid}"))
}
