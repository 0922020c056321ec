//! One github unit from start to end: what `deltaic github backup ORG [REPO]` runs.
//!
//! A repository unit (§1.7): `info.json` (which also gives the clone URL), the repository's bare
//! mirror, its wiki when `has_wiki`, then the metadata. A failing step does not stop the
//! others (a git outage must not cost tonight's issues, nor the reverse); the unit fails at the
//! end, naming every failed step. A quota stop ([`ApiError::Budget`]) ends the unit at once:
//! the next run resumes. The organisation unit writes `teams.json` and the org hooks.
//!
//! Either way the unit report (files, bytes, scrub mismatches: D6) is written for the run
//! manifest, also after a failure.

use super::api::{Api, ApiError};
use super::backup::{self, Options, RepoBackup, Summary};
use super::git::{self, Git};
use crate::config::{Config, Secret};
use crate::run::unit_session;
use crate::sources::{UnitRoot, check_component};
use anyhow::{Context, anyhow};
use serde_json::Value;

/// Backs up `org`'s repository `repo` (mirrors and metadata) through `api`.
pub fn backup_repository<A: Api>(
    api: &A,
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    git: &Git,
    org: &str,
    repo: &str,
    scrub: bool,
) -> anyhow::Result<Summary> {
    check_names(org, Some(repo))?;
    let root = config.root();
    let _locks = unit_session::start(config, &unit_root(&[org, repo])?)?;
    let token: Option<Secret> = config.settings.github_token()?;
    let mut unit = RepoBackup::new(api, root, org, repo, Options::now(scrub))?;
    let info = runtime.block_on(unit.info())?;
    let dir = unit.dir().to_path_buf();
    let mut failures: Vec<anyhow::Error> = Vec::new();

    match info.get("clone_url").and_then(Value::as_str) {
        Some(clone_url) => {
            if let Err(err) =
                git::update_mirror(git, clone_url, &dir.join("repo"), token.as_ref(), scrub)
            {
                failures.push(err.context("updating the repository mirror"));
            }
            if info.get("has_wiki").and_then(Value::as_bool) == Some(true)
                && let Err(err) =
                    git::update_wiki(git, clone_url, &dir.join("wiki"), token.as_ref(), scrub)
            {
                failures.push(err.context("updating the wiki mirror"));
            }
        }
        None => failures.push(anyhow!("GitHub gave no clone_url for {org}/{repo}")),
    }

    let metadata = runtime.block_on(unit.metadata(&info));
    let summary = unit.into_summary();
    report(&summary, scrub);
    if let Err(err) = metadata {
        failures.push(err);
    }
    finish(failures, &format!("{org}/{repo}")).map(|()| summary)
}

/// Backs up the organisation unit (`@organization`: teams and org hooks).
pub fn backup_organisation<A: Api>(
    api: &A,
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    org: &str,
    scrub: bool,
) -> anyhow::Result<Summary> {
    check_names(org, None)?;
    let root = config.root();
    let _locks = unit_session::start(config, &unit_root(&[org, super::ORG_UNIT])?)?;
    let result = runtime.block_on(backup::backup_org(api, root, org, Options::now(scrub)));
    if let Ok(summary) = &result {
        report(summary, scrub);
    }
    result
}

/// The unit root `github/<parts...>`.
fn unit_root(parts: &[&str]) -> anyhow::Result<UnitRoot> {
    let mut all = vec!["github"];
    all.extend_from_slice(parts);
    Ok(UnitRoot::from_components(&all)?)
}

/// Rejects names that are not single safe path components (they come from the command line).
fn check_names(org: &str, repo: Option<&str>) -> anyhow::Result<()> {
    check_component(org).map_err(|e| anyhow!("organisation: {e}"))?;
    if let Some(repo) = repo {
        check_component(repo).map_err(|e| anyhow!("repository: {e}"))?;
    }
    Ok(())
}

/// Writes the unit report for `deltaic run` (a failure to write it is only logged: the unit's
/// own outcome is what matters).
fn report(summary: &Summary, scrub: bool) {
    if summary.scrub_mismatches > 0 {
        tracing::warn!(
            "scrub found and repaired {} file(s) that differed from GitHub although their \
             updated_at had not changed",
            summary.scrub_mismatches
        );
    }
    if let Err(err) = summary.unit_report(scrub).write_if_requested() {
        tracing::error!("{err:#}");
    }
}

/// One error naming every failed step, or `Ok`. A quota stop is reported as such.
fn finish(failures: Vec<anyhow::Error>, what: &str) -> anyhow::Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    if let Some(budget) = failures.iter().find(|e| {
        e.chain()
            .any(|c| matches!(c.downcast_ref::<ApiError>(), Some(ApiError::Budget { .. })))
    }) {
        return Err(anyhow!("{budget:#}")).context(format!(
            "{what}: stopped to stay within the GitHub quota; the next run resumes"
        ));
    }
    let text: Vec<String> = failures.iter().map(|e| format!("{e:#}")).collect();
    Err(anyhow!("{}", text.join("; "))).with_context(|| format!("backup of {what} failed"))
}
