//! `deltaic github restore MIRROR REMOTE` (issue 3 item 6): pushes a backed-up repository or
//! wiki mirror (`ROOT/github/ORG/REPO/repo` or `…/wiki`, or the same inside a mounted snapshot)
//! to a new remote, every ref of it, then checks the remote ref by ref.
//!
//! Only git data comes back (see [`super::git`] for the list of what cannot): issues, pull
//! requests, comments, milestones, releases, labels and teams stay readable as JSON in the
//! backup, but cannot be recreated with their authors, numbers and timestamps.
//!
//! Safety: the remote must be empty, or hold only refs equal to the mirror's (a restore that
//! stopped half way and is run again). Nothing on the remote is overwritten or deleted, unless
//! [`restore_with`] is asked to `overwrite`: then the mirror's refs are force-pushed over the
//! remote's (refs the mirror lacks are still left alone). That is needed for a GitHub wiki,
//! which can only be pushed to after its first page was created on the web. The
//! configured `github-token` is offered only to the GitHub host of `github-api-url`; any other
//! remote gets the user's own git credentials (helpers, ssh keys, prompts).

use super::askpass;
use super::git::{self, Git};
use crate::config::{Config, Secret};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::Path;

/// Pushes the mirror at `mirror` to `remote` and verifies that the remote then holds every
/// ref of the mirror (`refs/pull/*` excepted when the remote refuses them, as GitHub does).
pub fn restore(config: &Config, mirror: &Path, remote: &str) -> anyhow::Result<()> {
    restore_with(Git::from_config(config)?, config, mirror, remote, false)
}

/// [`restore`] with a given [`Git`] (tests: another askpass helper than this executable), and
/// with `overwrite`, force-pushing over refs the remote already holds (a `--force` option).
pub fn restore_with(
    git: Git,
    config: &Config,
    mirror: &Path,
    remote: &str,
    overwrite: bool,
) -> anyhow::Result<()> {
    let mirror = mirror
        .canonicalize()
        .with_context(|| format!("the mirror {} cannot be opened", mirror.display()))?;
    let git = git.trusting(&mirror);
    check_bare(&git, &mirror)?;
    let configured = config.settings.github_token()?;
    let token = token_for(config, configured.as_ref(), remote);
    if token.is_none() {
        tracing::info!(
            "{remote} is not on the GitHub host of github-api-url: using your own git credentials"
        );
    }

    let ours: BTreeMap<String, String> = git::list_refs(&git, &mirror)?
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect();
    if ours.is_empty() {
        bail!(
            "{} holds no refs (an empty repository): there is nothing to restore",
            mirror.display()
        );
    }
    let theirs = git::remote_refs(&git, &mirror, remote, token)?;
    let foreign: Vec<&str> = theirs
        .iter()
        .filter(|(id, name)| ours.get(name) != Some(id))
        .map(|(_, name)| name.as_str())
        .collect();
    if !foreign.is_empty() && !overwrite {
        bail!(
            "{remote} already holds {} ref(s) that differ from the mirror's (first: {}); \
             restore only pushes into an empty repository (create it without README, licence \
             or .gitignore) and does not overwrite unless forced",
            foreign.len(),
            foreign[0]
        );
    }

    let pushed = git::push_mirror(&git, &mirror, remote, token, overwrite)?;

    let after: BTreeMap<String, String> = git::remote_refs(&git, &mirror, remote, token)?
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect();
    let missing: Vec<&str> = ours
        .iter()
        .filter(|(name, id)| {
            after.get(*name) != Some(*id)
                && (pushed.pull_refs_pushed || !name.starts_with("refs/pull/"))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "after the push, {remote} lacks {} ref(s) of the mirror or holds them with other \
             commits (first: {}); run the restore again, or compare with `git ls-remote`",
            missing.len(),
            missing[0]
        );
    }
    println!(
        "restored {} ref(s){}{} from {} to {remote}",
        pushed.refs,
        match (pushed.pull_refs, pushed.pull_refs_pushed) {
            (0, _) => String::new(),
            (n, true) => format!(" and {n} pull-request ref(s)"),
            (n, false) => format!(" ({n} pull-request ref(s) refused by the remote)"),
        },
        if pushed.lfs_pushed {
            " with their Git LFS objects"
        } else {
            ""
        },
        mirror.display()
    );
    println!(
        "not restored (not git data): issues, pull requests and reviews, comments, milestones, \
         releases and assets, labels, teams, hooks, the default branch and repository settings"
    );
    Ok(())
}

/// Fails unless `dir` is a bare repository.
fn check_bare(git: &Git, dir: &Path) -> anyhow::Result<()> {
    if !git::is_bare_repository(git, dir) {
        bail!(
            "{} is not a bare git mirror; give ROOT/github/ORG/REPO/repo or ROOT/github/ORG/REPO/wiki",
            dir.display()
        );
    }
    Ok(())
}

/// The configured token, if `remote` is on the GitHub web host that `github-api-url` belongs
/// to (`api.github.com` → `github.com`; GitHub Enterprise serves both on one host).
fn token_for<'t>(config: &Config, token: Option<&'t Secret>, remote: &str) -> Option<&'t Secret> {
    let token = token?;
    let api = askpass::origin_of(&config.settings.github_api_url)?;
    let web = api.replacen("://api.github.com", "://github.com", 1);
    (askpass::origin_of(remote)? == web).then_some(token)
}
