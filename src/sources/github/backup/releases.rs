//! Releases: `releases/<tag>/info.json` and the assets in `releases/<tag>/assets/<name>`.
//!
//! A tag containing `/` makes nested directories, as in the original. Tag and asset names come
//! from GitHub and are joined through [`safe_path`]: a name that could escape (`..`, absolute,
//! empty components, NUL) is stored as `unsafe-tag-<release id>` or `unsafe-name-<asset id>`
//! with a warning (the real name stays in `info.json`). A release without a tag (a draft) is
//! `untagged-<id>` as in the original.
//!
//! An asset is downloaded when its file's mtime or size differ from the asset's `updated_at`
//! and `size` (always on a scrub), streamed into a "write only if different" update: a failed
//! or short download leaves the old file (or none) and fails the step, so nothing is collected.

use super::{Failures, RepoBackup, format};
use crate::sources::github::api::Api;
use crate::util::safe_path;
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The xattr holding an asset's content type (a compatibility contract, §1.6).
pub const CONTENT_TYPE_XATTR: &str = "user.github.content-type";

/// What the listing cache keeps of a release: everything the files need.
fn summarize(release: &Value) -> Value {
    let assets = release
        .get("assets")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(format::asset).collect())
        .unwrap_or_default();
    json!({
        "id": release.get("id").cloned().unwrap_or(Value::Null),
        "info": format::release_info(release),
        "assets": Value::Array(assets),
    })
}

impl<A: Api> RepoBackup<'_, A> {
    /// The releases step.
    pub(super) async fn releases(&mut self) -> anyhow::Result<()> {
        let mut cache = self.unit.cache.load("releases");
        let path = format!("{}/releases", self.base);
        let items = self
            .unit
            .list(&path, &[], &mut cache.pages, &summarize)
            .await?;
        let mut valid = HashSet::new();
        let mut failures = Failures::default();
        for item in &items {
            self.unit.store.summary.items += 1;
            let release = &item.summary;
            let id = &release["id"];
            let dir = match &release["info"]["tag_name"] {
                Value::String(tag) => match safe_path::join(Path::new(""), tag) {
                    Ok(dir) => dir,
                    Err(e) => {
                        self.unit.store.warn(format!(
                            "{path}: release {id} stored as unsafe-tag-{id}: {e}"
                        ));
                        PathBuf::from(format!("unsafe-tag-{id}"))
                    }
                },
                _ => PathBuf::from(format!("untagged-{id}")),
            };
            let info = dir.join("info.json");
            self.unit
                .store
                .write_file(&Path::new("releases").join(&info), &release["info"])?;
            valid.insert(info);
            for asset in release["assets"].as_array().into_iter().flatten() {
                self.unit.store.summary.items += 1;
                let name = match asset["name"].as_str().map(safe_path::check_component) {
                    Some(Ok(())) => asset["name"].as_str().unwrap_or_default().to_string(),
                    Some(Err(e)) => {
                        let name = format!("unsafe-name-{}", asset["id"]);
                        self.unit.store.warn(format!(
                            "{path}: asset {} of release {id} stored as {name}: {e}",
                            asset["id"]
                        ));
                        name
                    }
                    None => format!("unsafe-name-{}", asset["id"]),
                };
                let rel = dir.join("assets").join(name);
                let result = self.asset(&Path::new("releases").join(&rel), asset).await;
                valid.insert(rel.clone());
                failures.record(result.with_context(|| {
                    format!(
                        "release asset {}",
                        Path::new("releases").join(&rel).display()
                    )
                }))?;
            }
        }
        failures.finish()?;
        self.unit.store.collect("releases", &valid)?;
        self.unit.cache.save("releases", &cache)
    }

    /// Downloads one asset unless its file is current; sets mtime and content type.
    async fn asset(&mut self, rel: &Path, asset: &Value) -> anyhow::Result<()> {
        let updated = format::epoch(&asset["updated_at"]).context("updated_at")?;
        let size = asset["size"].as_u64();
        let path = self.unit.store.path(rel);
        let current = self.unit.store.is_current(rel, updated)
            && std::fs::metadata(&path).ok().map(|m| m.len()) == size;
        if self.unit.opts.scrub || !current {
            let url = asset["url"].as_str().context("the asset has no API url")?;
            let mut item = self.unit.store.begin_item(rel, updated, None);
            let bytes = self
                .unit
                .api
                .download(url, &mut item.update, size)
                .await
                .with_context(|| format!("downloading {url}"))?;
            self.unit.store.summary.bytes_downloaded += bytes;
            self.unit.store.commit_item(item)?;
        }
        if let Some(content_type) = asset["content_type"].as_str() {
            let old = xattr::get(&path, CONTENT_TYPE_XATTR).ok().flatten();
            if old.as_deref() != Some(content_type.as_bytes()) {
                xattr::set(&path, CONTENT_TYPE_XATTR, content_type.as_bytes()).with_context(
                    || format!("setting {CONTENT_TYPE_XATTR} on {}", path.display()),
                )?;
            }
        }
        Ok(())
    }
}
