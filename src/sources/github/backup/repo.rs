//! The repository listings without `since`: milestones, commit comments and labels. Each is
//! listed completely on every run (one 304 per page when nothing changed); the listing cache
//! keeps each item's converted record, so a 304 page is as good as a fresh one and garbage
//! collection can follow every successful listing.

use super::{RepoBackup, format};
use crate::sources::github::api::Api;
use crate::util::safe_path;
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The cached form of an item: its key and its converted record.
fn keyed(key: &str, item: &Value, convert: fn(&Value) -> Value) -> Value {
    json!({"key": item.get(key).cloned().unwrap_or(Value::Null), "record": convert(item)})
}

impl<A: Api> RepoBackup<'_, A> {
    /// `milestones/<n>.json` for milestones of every state (`state=all`: bug 2), mtime =
    /// `updated_at`; files of milestones no longer listed are removed.
    pub(super) async fn milestones(&mut self) -> anyhow::Result<()> {
        let mut cache = self.unit.cache.load("milestones");
        let path = format!("{}/milestones", self.base);
        let items = self
            .unit
            .list(&path, &[("state", "all")], &mut cache.pages, &|m| {
                keyed("number", m, format::milestone)
            })
            .await?;
        let mut valid = HashSet::new();
        for item in &items {
            self.unit.store.summary.items += 1;
            let number = item.summary["key"]
                .as_u64()
                .with_context(|| format!("{path}: a milestone without a number"))?;
            let name = format!("{number}.json");
            let record = &item.summary["record"];
            let updated = format::epoch(&record["updated_at"])
                .with_context(|| format!("milestone {number}: updated_at"))?;
            self.unit.store.write_item(
                &Path::new("milestones").join(&name),
                record,
                updated,
                None,
            )?;
            valid.insert(PathBuf::from(name));
        }
        self.unit.store.collect("milestones", &valid)?;
        self.unit.cache.save("milestones", &cache)
    }

    /// `comments/<sha>.json`: the commit comments of each commit, in API order, mtime = their
    /// newest `updated_at`; files of commits without comments any more are removed. The files
    /// are compared on every run (from the cached records, no requests), as in the original:
    /// deleting an older comment does not change the newest `updated_at`.
    pub(super) async fn commit_comments(&mut self) -> anyhow::Result<()> {
        let mut cache = self.unit.cache.load("comments");
        let path = format!("{}/comments", self.base);
        let items = self
            .unit
            .list(&path, &[], &mut cache.pages, &|c| {
                keyed("id", c, format::commit_comment)
            })
            .await?;
        // (sha, records, newest updated_at), in order of first appearance.
        let mut commits: Vec<(String, Vec<Value>, i64)> = Vec::new();
        for item in &items {
            self.unit.store.summary.items += 1;
            let record = &item.summary["record"];
            let sha = record["commit_id"]
                .as_str()
                .with_context(|| format!("{path}: a comment without commit_id"))?;
            let updated = format::epoch(&record["updated_at"])
                .with_context(|| format!("comment on {sha}: updated_at"))?;
            match commits.iter_mut().find(|(s, _, _)| s == sha) {
                Some((_, records, newest)) => {
                    records.push(record.clone());
                    *newest = (*newest).max(updated);
                }
                None => commits.push((sha.to_string(), vec![record.clone()], updated)),
            }
        }
        let mut valid = HashSet::new();
        for (sha, records, newest) in commits {
            if let Err(e) = safe_path::check_component(&sha) {
                self.unit
                    .store
                    .warn(format!("{path}: commit comments skipped: {e}"));
                continue;
            }
            let name = format!("{sha}.json");
            self.unit.store.write_dated(
                &Path::new("comments").join(&name),
                &Value::Array(records),
                newest,
            )?;
            valid.insert(PathBuf::from(name));
        }
        self.unit.store.collect("comments", &valid)?;
        self.unit.cache.save("comments", &cache)
    }

    /// `labels.json` (new): the repository's labels with colour and description.
    pub(super) async fn labels(&mut self) -> anyhow::Result<()> {
        let mut cache = self.unit.cache.load("labels");
        let path = format!("{}/labels", self.base);
        let items = self
            .unit
            .list(&path, &[], &mut cache.pages, &format::label)
            .await?;
        self.unit.store.summary.items += items.len() as u64;
        let labels = Value::Array(items.into_iter().map(|i| i.summary).collect());
        self.unit
            .store
            .write_file(Path::new("labels.json"), &labels)?;
        self.unit.cache.save("labels", &cache)
    }
}
