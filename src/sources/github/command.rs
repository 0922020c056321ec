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
    use super::{api, git::Git, unit};
    match cmd {
        GithubCommand::Backup { scrub, org, repo } => {
            let client = api::Client::from_config(config)?;
            let runtime = api::runtime()?;
            let result = match &repo {
                Some(repo) => {
                    let git = Git::from_config(config)?;
                    unit::backup_repository(&client, &runtime, config, &git, &org, repo, scrub)
                }
                None => unit::backup_organisation(&client, &runtime, config, &org, scrub),
            };
            print_requests(&client.stats());
            result?;
        }
        GithubCommand::Ls { org } => {
            let client = api::Client::from_config(config)?;
            let runtime = api::runtime()?;
            for repo in super::org_repositories(&client, &runtime, config.root(), &org)? {
                println!("{repo}");
            }
        }
        GithubCommand::Auth { token_stdin } => super::auth::run(config, token_stdin)?,
        GithubCommand::Restore {
            mirror,
            remote,
            force,
        } => super::restore::restore_with(
            Git::from_config(config)?,
            config,
            &mirror,
            &remote,
            force,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The original's closing line (`<n> requests left in quota`, taken from the answers' headers
/// instead of an extra request), plus what this unit cost.
fn print_requests(stats: &super::api::RequestStats) {
    println!(
        "{} API requests ({} answered 304 Not Modified, free of quota; {} unconditional)",
        stats.requests, stats.not_modified, stats.unconditional
    );
    if let Some(remaining) = stats.quota_remaining {
        println!("{remaining} requests left in quota");
    }
}
