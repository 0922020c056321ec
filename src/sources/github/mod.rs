//! The `github` source: organisations backed up so that they could be rebuilt from the backup
//! (github-rgw-rbd.md §1, D4, D5): repositories and wikis as bare git mirrors, and the
//! conversation around them (issues, comments, events, milestones, commit comments, releases
//! with their assets, teams) as JSON in the original's layout and byte format.
//!
//! Layout (§1.6): `ROOT/github/<org>/@organization/teams.json` and
//! `ROOT/github/<org>/<repo>/{info.json, repo/, wiki/, issues/, milestones/, comments/,
//! releases/}`. Listing caches (ETags per page) live outside the units, under
//! `ROOT/.deltaic/cache/github/`: losing them costs only quota.
//!
//! Modules: [`api`] (the REST client: pagination, conditional requests, rate limits, the
//! shared quota budget), [`backup`] (the metadata files and their change detection, over
//! [`api::Api`]), [`pyjson`] (Python-compatible JSON), [`git`] (mirrors and the askpass
//! credential path), `command` (the CLI group).

pub mod api;
pub mod askpass;
pub mod auth;
pub mod backup;
pub mod command;
mod config;
pub mod git;
pub mod pyjson;
pub mod restore;
pub mod unit;

pub(crate) use config::validate;
pub use config::{GithubOrg, GithubOrgs};

use crate::config::Config;
use crate::sources::{Source, Unit, UnitRoot};
use anyhow::Context;
use std::num::NonZeroUsize;

/// The organisation's repository names, sorted by lower-cased name, listed with per-page
/// ETags cached in `ROOT/.deltaic/cache/github/<org>/repos.json` (so an unchanged listing costs
/// no quota).
pub fn org_repositories(
    client: &api::Client,
    runtime: &tokio::runtime::Runtime,
    root: &std::path::Path,
    org: &str,
) -> anyhow::Result<Vec<String>> {
    let path = crate::run::manifest::state_dir(root)
        .join("cache/github")
        .join(org)
        .join("repos.json");
    let mut cache: api::PageCache = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let repos = runtime
        .block_on(client.list_org_repos(org, &mut cache))
        .with_context(|| format!("listing the repositories of GitHub organisation {org}"))?;
    if root.is_dir() {
        let json = serde_json::to_vec(&cache)?;
        if let Err(err) = crate::util::atomic_file::write(&path, &json) {
            tracing::warn!("cannot save {}: {err}", path.display());
        }
    }
    Ok(repos)
}

/// The github source (planning side).
pub struct Github;

/// Unit root component of an organisation's own metadata (teams).
pub const ORG_UNIT: &str = "@organization";

impl Source for Github {
    fn label(&self) -> &'static str {
        "github"
    }

    fn workers(&self, config: &Config) -> NonZeroUsize {
        config.settings.github_workers
    }

    /// Per organisation, in config order: `github/<org>/@organization` (with
    /// `organization-metadata`, the default), then one unit per repository, sorted by
    /// lower-cased name (§1.2). Listing the repositories needs the API; a failure fails the
    /// source's planning, and the driver goes on with the other sources (BUG-5).
    fn plan_units(&self, config: &Config, rng: &mut dyn rand::Rng) -> anyhow::Result<Vec<Unit>> {
        if config.github.is_empty() {
            return Ok(Vec::new());
        }
        let client = api::Client::from_config(config)?;
        let runtime = api::runtime()?;
        let mut units = Vec::new();
        for (org, options) in config.github.iter() {
            let repos = org_repositories(&client, &runtime, config.root(), org)?;
            let scrub = |rng: &mut dyn rand::Rng, args: &mut Vec<String>| {
                if config.settings.github_scrub_probability.roll(rng) {
                    args.push("--scrub".into());
                }
            };
            if options.organization_metadata {
                let mut backup_args = vec!["github".into(), "backup".into(), org.clone()];
                scrub(rng, &mut backup_args);
                units.push(Unit {
                    root: UnitRoot::from_components(&["github", org, ORG_UNIT])?,
                    backup_args,
                });
            }
            for repo in repos {
                let root = UnitRoot::from_components(&["github", org, &repo])
                    .map_err(|e| anyhow::anyhow!("repository name from GitHub: {e}"))?;
                let mut backup_args =
                    vec!["github".into(), "backup".into(), org.clone(), repo.clone()];
                scrub(rng, &mut backup_args);
                units.push(Unit { root, backup_args });
            }
        }
        Ok(units)
    }
}
