//! Listing caches (D5): per listing, the pages of its last successful listing (ETag, URL, item
//! summaries, `next` link) plus the bookkeeping of the change detection (when the last complete
//! listing ran, the high-water mark of `updated_at`, when admin-only listings were refused).
//!
//! One JSON file per listing at `ROOT/.deltaic/cache/github/<org>/<unit>/<listing>.json`,
//! outside the backed-up tree. It is written atomically, and only after the listing and the
//! work it drove succeeded. Losing or corrupting it costs quota, never data: a missing or
//! unreadable cache means "no ETags, no `since`", i.e. a complete listing.

use crate::sources::github::api::PageCache;
use crate::util::atomic_file;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Format version of the cache files; a file of another version is ignored.
const VERSION: u32 = 1;

/// The persisted state of one listing.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ListingCache {
    /// Format version ([`VERSION`]).
    #[serde(default)]
    pub version: u32,
    /// Pages of the complete listing.
    #[serde(default)]
    pub pages: PageCache,
    /// Pages of the incremental (`since`) listing, for listings that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_pages: Option<PageCache>,
    /// The `since` value `since_pages` were listed with (the next run's, once primed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Local time (epoch seconds) of the last complete listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_complete: Option<i64>,
    /// Largest `updated_at` (GitHub's clock, epoch seconds) seen in any listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water: Option<i64>,
    /// Local time the listing was last refused for lack of admin rights (hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_at: Option<i64>,
    /// Caches of dependent listings (a team's members and repositories), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, PageCache>,
}

/// The cache directory of one unit.
pub(super) struct CacheDir(PathBuf);

impl CacheDir {
    /// `ROOT/.deltaic/cache/github/<org>/<unit>`.
    pub fn new(root: &Path, org: &str, unit: &str) -> CacheDir {
        CacheDir(
            crate::run::manifest::state_dir(root)
                .join("cache/github")
                .join(org)
                .join(unit),
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.json"))
    }

    /// The cache of listing `name`; empty when missing, unreadable or of another version.
    pub fn load(&self, name: &str) -> ListingCache {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ListingCache::default(),
            Err(e) => {
                tracing::warn!("ignoring listing cache {}: {e}", path.display());
                return ListingCache::default();
            }
        };
        match serde_json::from_slice::<ListingCache>(&bytes) {
            Ok(cache) if cache.version == VERSION => cache,
            Ok(cache) => {
                tracing::info!(
                    "ignoring listing cache {} of version {}",
                    path.display(),
                    cache.version
                );
                ListingCache::default()
            }
            Err(e) => {
                tracing::warn!(
                    "ignoring corrupt listing cache {} ({e}); this run lists in full",
                    path.display()
                );
                ListingCache::default()
            }
        }
    }

    /// Atomically replaces the cache of listing `name`.
    pub fn save(&self, name: &str, cache: &ListingCache) -> anyhow::Result<()> {
        let path = self.path(name);
        let mut cache = cache.clone();
        cache.version = VERSION;
        let json = serde_json::to_vec(&cache)?;
        atomic_file::write(&path, &json)
            .with_context(|| format!("writing listing cache {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_files_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::new(dir.path(), "org", "repo");
        assert_eq!(cache.load("issues"), ListingCache::default());
        let state = ListingCache {
            last_complete: Some(5),
            high_water: Some(7),
            ..Default::default()
        };
        cache.save("issues", &state).unwrap();
        let loaded = cache.load("issues");
        assert_eq!(
            (loaded.last_complete, loaded.high_water, loaded.version),
            (Some(5), Some(7), VERSION)
        );
        let file = dir
            .path()
            .join(".deltaic/cache/github/org/repo/issues.json");
        std::fs::write(&file, b"{not json").unwrap();
        assert_eq!(cache.load("issues"), ListingCache::default());
    }
}
