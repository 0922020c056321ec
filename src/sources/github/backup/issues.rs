//! Issues (with their comments and events) and, for pull requests, their reviews and review
//! comments (module doc of `backup` for the listing strategy).
//!
//! Per listed issue: if its file's mtime equals its `updated_at` (and no scrub), nothing is
//! fetched; otherwise the issue (from a fresh page, or `GET` when its page was a 304), its
//! comments (when it has any), its events and, for a pull request, its reviews and review
//! comments are fetched, the `pulls/<n>/` files written, and the issue file written last with
//! its mtime: the issue file's mtime is the marker that everything of that version is stored.

use super::{Failures, RepoBackup, format};
use crate::sources::github::api::{Api, ApiError, ListedItem, PageCache};
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A complete listing runs at least this often (seconds), to collect deleted issues.
const COMPLETE_EVERY: i64 = 7 * 86_400;
/// `since` starts this long before the newest `updated_at` seen, for items GitHub shows late.
const SINCE_MARGIN: i64 = 3_600;

/// What the listing cache keeps of an issue.
fn summarize(issue: &Value) -> Value {
    json!({
        "number": issue.get("number").cloned().unwrap_or(Value::Null),
        "updated_at": format::timestamp(issue.get("updated_at").unwrap_or(&Value::Null)),
        "pull_request": issue.get("pull_request").is_some_and(|p| !p.is_null()),
    })
}

/// The query of the incremental listing: every issue updated at or after `since`, most
/// recently updated first.
fn since_query(since: &str) -> [(&'static str, &str); 4] {
    [
        ("state", "all"),
        ("sort", "updated"),
        ("direction", "desc"),
        ("since", since),
    ]
}

fn issue_file(number: u64) -> PathBuf {
    PathBuf::from(format!("{number}.json"))
}

/// The `pulls/` files of pull request `number`, relative to `pulls/`.
fn pull_files(number: u64) -> [PathBuf; 2] {
    [
        PathBuf::from(format!("{number}/reviews.json")),
        PathBuf::from(format!("{number}/review-comments.json")),
    ]
}

impl<A: Api> RepoBackup<'_, A> {
    /// The issues step: list (complete or `since`), bring every listed issue up to date, and
    /// after a complete listing remove the files of issues that are gone.
    pub(super) async fn issues(&mut self) -> anyhow::Result<()> {
        let opts = self.unit.opts;
        let mut cache = self.unit.cache.load("issues");
        let complete = opts.scrub
            || cache.high_water.is_none()
            || cache
                .last_complete
                .is_none_or(|t| opts.now - t >= COMPLETE_EVERY);
        let path = format!("{}/issues", self.base);
        let items = if complete {
            let query = [("state", "all"), ("sort", "created"), ("direction", "asc")];
            self.unit
                .list(&path, &query, &mut cache.pages, &summarize)
                .await?
        } else {
            let since = format::since_param(cache.high_water.unwrap_or_default() - SINCE_MARGIN)?;
            let pages = cache.since_pages.get_or_insert_default();
            let items = self
                .unit
                .list(&path, &since_query(&since), pages, &summarize)
                .await?;
            cache.since = Some(since);
            items
        };

        let mut valid = HashSet::new();
        let mut valid_pulls = HashSet::new();
        let mut high_water = cache.high_water;
        let mut failures = Failures::default();
        for item in &items {
            self.unit.store.summary.items += 1;
            let number = item.summary["number"]
                .as_u64()
                .with_context(|| format!("{path}: an issue without a number"))?;
            valid.insert(issue_file(number));
            if item.summary["pull_request"] == json!(true) {
                valid_pulls.extend(pull_files(number));
            }
            let result = self.issue(item, number).await;
            if let Ok(updated) = &result {
                high_water = high_water.max(Some(*updated));
            }
            failures.record(
                result
                    .map(|_| ())
                    .with_context(|| format!("issue #{number}")),
            )?;
        }
        failures.finish()?;

        if complete {
            self.collect_issues(valid, valid_pulls).await?;
            cache.last_complete = Some(opts.now);
        }
        cache.high_water = high_water;
        self.unit.cache.save("issues", &cache)?;
        self.prime_since(&path, &mut cache).await
    }

    /// Lists the next run's `since` listing now when its `since` value differs from the one
    /// cached (after a complete listing, or when the high-water mark moved), so that the next
    /// run, if nothing changed meanwhile, gets 304 answers only (D5: an unchanged run costs no
    /// quota). The items are not processed here: the next run takes them from the cache and
    /// compares their `updated_at` with the files as usual, so an issue edited between this
    /// run's listing and this one is caught then. A failure only costs the next run quota.
    async fn prime_since(
        &mut self,
        path: &str,
        cache: &mut super::cache::ListingCache,
    ) -> anyhow::Result<()> {
        let Some(high_water) = cache.high_water else {
            return Ok(());
        };
        let since = format::since_param(high_water - SINCE_MARGIN)?;
        if cache.since.as_deref() == Some(since.as_str()) {
            return Ok(());
        }
        let mut pages = PageCache::default();
        let listed = self
            .unit
            .list(path, &since_query(&since), &mut pages, &summarize)
            .await;
        match listed {
            Ok(_) => {
                cache.since_pages = Some(pages);
                cache.since = Some(since);
                self.unit.cache.save("issues", cache)
            }
            Err(e) if super::is_budget(&e) => Err(e),
            Err(e) => {
                tracing::warn!("{e:#}; the next run lists the issues without ETags");
                Ok(())
            }
        }
    }

    /// Brings issue `number` up to date; returns its `updated_at`.
    async fn issue(&mut self, item: &ListedItem, number: u64) -> anyhow::Result<i64> {
        let listed_updated = format::epoch(&item.summary["updated_at"])?;
        let is_pr = item.summary["pull_request"] == json!(true);
        let rel = Path::new("issues").join(issue_file(number));
        if !self.unit.opts.scrub && self.unit.store.is_current(&rel, listed_updated) {
            let [reviews, comments] = pull_files(number);
            let pulls = Path::new("pulls");
            if is_pr
                && !(self.unit.store.path(&pulls.join(reviews)).exists()
                    && self.unit.store.path(&pulls.join(comments)).exists())
            {
                // Backed up before reviews were: fetch them once.
                self.pull_reviews(number, listed_updated).await?;
            }
            return Ok(listed_updated);
        }
        let full = match &item.full {
            Some(full) => full.clone(),
            None => {
                self.unit
                    .api
                    .get(&format!("{}/issues/{number}", self.base))
                    .await?
            }
        };
        let updated = format::epoch(&format::timestamp(&full["updated_at"]))?;
        let issue_path = format!("{}/issues/{number}", self.base);
        let comments = if full["comments"].as_u64() == Some(0) {
            Vec::new()
        } else {
            self.unit
                .list_converted(&format!("{issue_path}/comments"), format::issue_comment)
                .await?
        };
        let events = self
            .unit
            .list_converted(&format!("{issue_path}/events"), format::issue_event)
            .await?;
        if is_pr || full.get("pull_request").is_some_and(|p| !p.is_null()) {
            self.pull_reviews(number, updated).await?;
        }
        let record = format::issue(&full, comments, events);
        self.unit.store.write_item(
            &rel,
            &record,
            updated,
            Some(format::is_original_issue_format),
        )?;
        Ok(updated)
    }

    /// `pulls/<n>/reviews.json` and `pulls/<n>/review-comments.json`, mtime = `updated`.
    async fn pull_reviews(&mut self, number: u64, updated: i64) -> anyhow::Result<()> {
        let pull = format!("{}/pulls/{number}", self.base);
        let reviews = self
            .unit
            .list_converted(&format!("{pull}/reviews"), format::review)
            .await?;
        let comments = self
            .unit
            .list_converted(&format!("{pull}/comments"), format::review_comment)
            .await?;
        let [reviews_file, comments_file] = pull_files(number);
        let pulls = Path::new("pulls");
        self.unit.store.write_item(
            &pulls.join(reviews_file),
            &Value::Array(reviews),
            updated,
            None,
        )?;
        self.unit.store.write_item(
            &pulls.join(comments_file),
            &Value::Array(comments),
            updated,
            None,
        )?;
        Ok(())
    }

    /// Garbage collection of `issues/` and `pulls/` after a complete listing. An issue file
    /// about to be removed is first checked with `GET`: only "not found" (deleted) or an answer
    /// from another repository (transferred) lets it go.
    async fn collect_issues(
        &mut self,
        mut valid: HashSet<PathBuf>,
        mut valid_pulls: HashSet<PathBuf>,
    ) -> anyhow::Result<()> {
        let dir = self.unit.store.path(Path::new("issues"));
        let mut gone = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries {
                let name = PathBuf::from(entry?.file_name());
                let number = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(number) = number
                    && !valid.contains(&name)
                {
                    gone.push(number);
                }
            }
        }
        for number in gone {
            let path = format!("{}/issues/{number}", self.base);
            match self.unit.api.get(&path).await {
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("checking issue #{number} before removing its file")
                    });
                }
                Ok(issue) if self.is_here(&issue, number) => {
                    self.unit.store.warn(format!(
                        "issue #{number} was missing from a complete listing of {} but still \
                         exists; its file is kept",
                        self.base
                    ));
                    valid.insert(issue_file(number));
                    valid_pulls.extend(pull_files(number));
                }
                Ok(_) => {} // transferred to another repository
            }
        }
        self.unit.store.collect("issues", &valid)?;
        self.unit.store.collect("pulls", &valid_pulls)
    }

    /// Whether `issue` (from `GET .../issues/<number>`) is issue `number` of this repository
    /// (a transferred issue answers with its new repository after the redirect).
    fn is_here(&self, issue: &Value, number: u64) -> bool {
        let here = issue["number"].as_u64() == Some(number);
        match issue.get("repository_url").and_then(Value::as_str) {
            Some(url) => here && url.to_lowercase().ends_with(&self.base.to_lowercase()),
            None => here,
        }
    }
}
