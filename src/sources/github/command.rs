//! `deltaic github backup`, `ls`, `auth` and `restore`.

use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// The `deltaic github` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GithubCommand {
    /// Back up one repository, or with no REPO the organisation's teams
    #[command(after_help = "\
Examples:
  deltaic github backup cmusatyalab deltaic          one repository
  deltaic github backup cmusatyalab                  the organisation's teams
  deltaic github backup --scrub cmusatyalab deltaic  re-check everything, git fsck")]
    Backup {
        /// Re-fetch every item and asset ignoring caches, and run `git fsck`
        #[arg(short = 'c', long)]
        scrub: bool,
        /// Organisation login
        org: String,
        /// Repository name
        repo: Option<String>,
    },
    /// List an organisation's repositories
    #[command(after_help = "Examples:\n  deltaic github ls cmusatyalab")]
    Ls {
        /// Organisation login
        org: String,
    },
    /// Get a token: OAuth device flow, or a pasted personal access token
    #[command(after_help = "\
Examples:
  deltaic github auth                        device flow (needs github-oauth-client-id)
  deltaic github auth --token-stdin < token   validate and store a pasted token")]
    Auth {
        /// Read a personal access token from stdin instead of running the device flow
        #[arg(long)]
        token_stdin: bool,
    },
    /// Push a backed-up repository or wiki mirror (every ref) to a new remote
    #[command(after_help = "\
Examples:
  deltaic github restore /backup/github/org/repo/repo https://github.com/neworg/repo.git")]
    Restore {
        /// The mirror: ROOT/github/ORG/REPO/repo or .../wiki (or inside a mounted snapshot)
        mirror: PathBuf,
        /// The new, empty remote repository
        remote: String,
        /// Overwrite refs the remote already has (e.g. a wiki GitHub created with one page)
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `deltaic github` subcommand.
pub fn execute(config: &Config, cmd: GithubCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GithubCommand::Auth { token_stdin } => super::auth::run(config, token_stdin)?,
        GithubCommand::Restore {
            mirror,
            remote,
            force,
        } => super::restore::restore_with(
            super::git::Git::from_config(config)?,
            config,
            &mirror,
            &remote,
            force,
        )?,
        GithubCommand::Backup { .. } | GithubCommand::Ls { .. } => {
            anyhow::bail!("github backup is not implemented yet")
        }
    }
    Ok(ExitCode::SUCCESS)
}
