//! `deltaic mkconf`: crontab and sudoers templates (see [`crate::mkconf`]).

use crate::config::Config;
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
pub fn execute(_config: &Config, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`deltaic mkconf` is not implemented yet")
}
