//! The metadata half of the github units (github-rgw-rbd.md §1.6–§1.8, D4–D6), written against
//! [`Api`] so that tests run it on an in-memory GitHub. Git mirrors are the `git` module's job:
//! the command runs [`RepoBackup::info`], then the mirrors, then [`RepoBackup::metadata`].
//!
//! Layout under `ROOT/github/<org>/<repo>/` (the original's, plus the files marked new):
//! `info.json`; `issues/<n>.json` (mtime = `updated_at`); `milestones/<n>.json` (every state;
//! the original lost closed ones); `comments/<sha>.json` (mtime = the newest `updated_at`);
//! `releases/<tag>/info.json` and `releases/<tag>/assets/<name>` (mtime = `updated_at`, xattr
//! `user.github.content-type`); new: `labels.json`, `hooks.json`, and for pull requests
//! `pulls/<n>/reviews.json` and `pulls/<n>/review-comments.json` (mtime = the PR's
//! `updated_at`; GitHub bumps it for reviews and review comments). Under
//! `ROOT/github/<org>/@organization/`: `teams.json` and, new, `hooks.json`.
//!
//! Change detection (D5). Every listing sends each page's stored ETag (a 304 costs no quota and
//! the page comes from the listing cache, see `cache`). Milestones, commit comments, releases,
//! labels and hooks are listed completely on every run. Issues are listed with
//! `since=<high-water mark − 1 h>` (`sort=updated&direction=desc`, so an item edited during the
//! listing moves ahead of the cursor and is caught by the next run rather than skipped), which
//! is one 304 when nothing changed (whenever the next run's `since` value differs from the
//! cached one, after a complete listing or an edit, the run ends by listing that next listing
//! once to store its ETags); a complete listing (`sort=created&direction=asc`, whose pages
//! stay stable under edits) runs on the first run, on every scrub, and when the last one is
//! older than 7 days. An issue whose file mtime equals its `updated_at` is not fetched again.
//!
//! Deletion (garbage collection) follows only a complete listing whose every item was
//! processed, never an error. Before deleting an issue file, the issue itself is requested: if
//! it still exists in this repository (the listing missed it because pages shifted), it stays.
//!
//! Errors: a failed step (issues, milestones, …) does not stop the others; the unit fails at the
//! end with every error. A quota stop ([`ApiError::Budget`]) ends the unit at once.

mod cache;
mod format;
mod issues;
mod org;
mod releases;
mod repo;
mod store;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use org::backup_org;

use crate::run::manifest::UnitReport;
use crate::sources::check_component;
use crate::sources::github::api::{Api, ApiError, Freshness, ListedItem, PageCache};
use anyhow::Context;
use cache::CacheDir;
use serde_json::Value;
use std::path::Path;
use store::Store;

/// How a unit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Re-fetch everything without ETags and compare every file (D6).
    pub scrub: bool,
    /// The current time (epoch seconds); injected so that tests can move the clock.
    pub now: i64,
}

impl Options {
    /// Options for a run now.
    pub fn now(scrub: bool) -> Options {
        Options {
            scrub,
            now: jiff::Timestamp::now().as_second(),
        }
    }
}

/// What a unit did, for the run report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files created or rewritten.
    pub files_written: u64,
    /// Files and directories garbage-collected (including stray temporary files).
    pub files_removed: u64,
    /// Items seen in listings (issues, milestones, comments, releases, assets, teams, …).
    pub items: u64,
    /// Bytes of release assets downloaded.
    pub bytes_downloaded: u64,
    /// Files a scrub found different although their `updated_at` had not changed (D6).
    pub scrub_mismatches: u64,
    /// Files a scrub rewrote only because the original wrote them in its older format.
    pub format_upgrades: u64,
    /// Warnings for the run summary (unsafe names, …).
    pub warnings: Vec<String>,
}

impl Summary {
    /// The figures as a [`UnitReport`].
    pub fn unit_report(&self, scrubbed: bool) -> UnitReport {
        UnitReport {
            bytes_transferred: Some(self.bytes_downloaded),
            files_transferred: Some(self.files_written),
            scrubbed,
            scrub_mismatches: scrubbed.then_some(self.scrub_mismatches),
            warnings: self.warnings.clone(),
        }
    }
}

/// Whether an error is a quota stop, which ends the unit at once.
fn is_budget(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<ApiError>(),
        Some(ApiError::Budget { .. })
    )
}

/// Errors of independent steps or items: collected, so one failure does not stop the rest,
/// except a quota stop.
#[derive(Default)]
struct Failures(Vec<anyhow::Error>);

impl Failures {
    /// Records a failure; returns it at once when it is a quota stop.
    fn record(&mut self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        match result {
            Err(e) if is_budget(&e) => Err(e),
            Err(e) => {
                self.0.push(e);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Fails when anything failed: the one error as it is, or several as one message listing
    /// each in turn (not as a chain, which would read as if one caused the next).
    fn finish(mut self) -> anyhow::Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            n => {
                let all: Vec<String> = self.0.iter().map(|e| format!("{e:#}")).collect();
                Err(anyhow::anyhow!("{n} failures: {}", all.join("; ")))
            }
        }
    }
}

/// What the repository and organisation units share: the API, the unit directory, its listing
/// caches and the options.
struct Unit<'a, A> {
    api: &'a A,
    store: Store,
    cache: CacheDir,
    opts: Options,
}

impl<'a, A: Api> Unit<'a, A> {
    /// The unit `ROOT/github/<org>/<name>`; both names must be single path components.
    fn new(api: &'a A, root: &Path, org: &str, name: &str, opts: Options) -> anyhow::Result<Self> {
        for part in [org, name] {
            check_component(part).map_err(|m| anyhow::anyhow!("GitHub name: {m}"))?;
        }
        Ok(Unit {
            api,
            store: Store::new(root.join("github").join(org).join(name), opts.scrub),
            cache: CacheDir::new(root, org, name),
            opts,
        })
    }

    /// ETags unless scrubbing.
    fn freshness(&self) -> Freshness {
        if self.opts.scrub {
            Freshness::Full
        } else {
            Freshness::Conditional
        }
    }

    /// A listing through `pages` (this unit's freshness), with the path in any error.
    async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
        pages: &mut PageCache,
        summarize: &dyn Fn(&Value) -> Value,
    ) -> anyhow::Result<Vec<ListedItem>> {
        self.list_with(path, query, self.freshness(), pages, summarize)
            .await
    }

    async fn list_with(
        &self,
        path: &str,
        query: &[(&str, &str)],
        freshness: Freshness,
        pages: &mut PageCache,
        summarize: &dyn Fn(&Value) -> Value,
    ) -> anyhow::Result<Vec<ListedItem>> {
        let items = self
            .api
            .list(path, query, freshness, pages, summarize)
            .await
            .with_context(|| format!("listing {path}"))?;
        Ok(items)
    }

    /// Every item of an uncached listing, as `convert` makes it (issue comments, events,
    /// reviews: fetched only for items that changed).
    async fn list_converted(
        &self,
        path: &str,
        convert: fn(&Value) -> Value,
    ) -> anyhow::Result<Vec<Value>> {
        let items = self
            .list_with(
                path,
                &[],
                Freshness::Full,
                &mut PageCache::default(),
                &convert,
            )
            .await?;
        Ok(items.into_iter().map(|i| i.summary).collect())
    }

    /// `hooks.json` from the listing at `path` (new). Listing hooks needs admin rights: a 404
    /// or 403 is noted in the cache and skipped with an info line (retried after 7 days or on
    /// a scrub), and an existing `hooks.json` is kept.
    async fn hooks(&mut self, path: &str) -> anyhow::Result<()> {
        const RETRY_DENIED: i64 = 7 * 86_400;
        let mut cache = self.cache.load("hooks");
        if !self.opts.scrub
            && let Some(at) = cache.denied_at
            && self.opts.now - at < RETRY_DENIED
        {
            tracing::info!("{path}: skipped, the token had no admin access when last tried");
            return Ok(());
        }
        let result = self
            .api
            .list(path, &[], self.freshness(), &mut cache.pages, &format::hook)
            .await;
        match result {
            Err(ApiError::NotFound { status, .. } | ApiError::Http { status, .. })
                if status == 404 || status == 403 =>
            {
                tracing::info!(
                    "{path}: HTTP {status}, the token has no admin access; hooks not backed up"
                );
                cache = cache::ListingCache {
                    denied_at: Some(self.opts.now),
                    ..Default::default()
                };
            }
            Err(e) => return Err(e).with_context(|| format!("listing {path}")),
            Ok(items) => {
                self.store.summary.items += items.len() as u64;
                let hooks = Value::Array(items.into_iter().map(|i| i.summary).collect());
                self.store.write_file(Path::new("hooks.json"), &hooks)?;
                cache.denied_at = None;
            }
        }
        self.cache.save("hooks", &cache)
    }
}

/// The metadata of one repository unit (`ROOT/github/<org>/<repo>`).
pub struct RepoBackup<'a, A> {
    unit: Unit<'a, A>,
    org: String,
    repo: String,
    /// `/repos/<org>/<repo>`.
    base: String,
}

impl<'a, A: Api> RepoBackup<'a, A> {
    /// Prepares the unit; `org` and `repo` must be safe single path components.
    pub fn new(
        api: &'a A,
        root: &Path,
        org: &str,
        repo: &str,
        opts: Options,
    ) -> anyhow::Result<Self> {
        Ok(RepoBackup {
            unit: Unit::new(api, root, org, repo, opts)?,
            org: org.to_string(),
            repo: repo.to_string(),
            base: format!("/repos/{org}/{repo}"),
        })
    }

    /// The unit directory.
    pub fn dir(&self) -> &Path {
        self.unit.store.dir()
    }

    /// What the unit did so far.
    pub fn summary(&self) -> &Summary {
        &self.unit.store.summary
    }

    /// Step 1 and 2 of §1.7: `GET /repos/<org>/<repo>`, then `info.json`. Returns the
    /// repository object (for the mirrors' `clone_url` and for [`metadata`](Self::metadata)).
    pub async fn info(&mut self) -> anyhow::Result<Value> {
        // Conditional: an unchanged repository costs a free 304 (D5).
        let mut cache = self.unit.cache.load("info");
        let freshness = self.unit.freshness();
        let repo = self
            .unit
            .api
            .get_cached(&self.base, freshness, &mut cache.pages)
            .await
            .with_context(|| format!("fetching repository {}/{}", self.org, self.repo))?;
        self.unit
            .store
            .write_file(Path::new("info.json"), &format::repo_info(&repo))?;
        self.unit.cache.save("info", &cache)?;
        Ok(repo)
    }

    /// Steps 5–7 of §1.7 plus the new files: issues (with pull-request reviews) and milestones
    /// when the repository has issues, then commit comments, releases, labels and hooks. Stray
    /// temporary files at the top of the unit are removed first.
    pub async fn metadata(&mut self, repo: &Value) -> anyhow::Result<()> {
        self.unit.store.sweep_temp_files(&[
            "issues",
            "milestones",
            "comments",
            "releases",
            "pulls",
        ])?;
        let mut failures = Failures::default();
        if repo.get("has_issues").and_then(Value::as_bool) == Some(false) {
            tracing::info!("issues are disabled: issues/, milestones/ and pulls/ left as they are");
        } else {
            failures.record(self.issues().await)?;
            failures.record(self.milestones().await)?;
        }
        failures.record(self.commit_comments().await)?;
        failures.record(self.releases().await)?;
        failures.record(self.labels().await)?;
        let hooks = format!("{}/hooks", self.base);
        failures.record(self.unit.hooks(&hooks).await)?;
        failures
            .finish()
            .with_context(|| format!("backing up the metadata of {}/{}", self.org, self.repo))
    }

    /// Ends the unit, returning what it did.
    pub fn into_summary(self) -> Summary {
        self.unit.store.summary
    }
}

/// A repository's metadata without its git mirrors: [`RepoBackup::info`], then
/// [`RepoBackup::metadata`].
pub async fn backup_repo_metadata<A: Api>(
    api: &A,
    root: &Path,
    org: &str,
    repo: &str,
    opts: Options,
) -> anyhow::Result<Summary> {
    let mut unit = RepoBackup::new(api, root, org, repo, opts)?;
    let info = unit.info().await?;
    unit.metadata(&info).await?;
    Ok(unit.into_summary())
}
