//! The GitHub REST client (github-rgw-rbd.md §1.4, §1.11, D5).
//!
//! [`Api`] is what the backup logic uses: single objects, complete listings and downloads.
//! [`Client`] implements it over HTTP: `Link` pagination, a conditional request per page
//! (`If-None-Match` with the page's stored ETag: a 304 answer costs no quota and the page is
//! taken from the [`PageCache`]), primary and secondary rate limits, retries with jitter, and a
//! quota budget shared by every unit running at once. Tests implement [`Api`] in memory.
//!
//! Contract of every listing: it is either complete (every page obtained) or an error. Callers
//! decide deletions only from complete listings; a 404, 410 or 5xx on any page is an error,
//! never an empty list (§1.10 item 7).

mod budget;
mod client;
mod pagination;
mod ratelimit;

pub use client::{Client, ClientOptions, RequestStats, Timing};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a request failed. Callers branch on `NotFound` (a missing wiki, a deleted repository)
/// and `Budget` (stop cleanly; the next run resumes).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404 (or 410: issues disabled, repository blocked).
    #[error("{url}: not found (HTTP {status})")]
    NotFound {
        /// The request URL (never with credentials).
        url: String,
        /// 404 or 410.
        status: u16,
    },
    /// The quota budget would be exceeded, or the reset is further away than `github-max-wait`.
    #[error("GitHub rate limit: {message}")]
    Budget {
        /// What happened and when the quota resets.
        message: String,
    },
    /// Any other HTTP error after retries.
    #[error("{url}: HTTP {status}: {message}")]
    Http {
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// GitHub's `message`, or the start of the body.
        message: String,
    },
    /// Network trouble after retries, or an unparsable answer.
    #[error("{url}: {message}")]
    Transport {
        /// The request URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// One item of a complete listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedItem {
    /// What the caller's summarize function kept of the item (stored in the page cache).
    pub summary: Value,
    /// The full item when its page was fetched (200); `None` when the page was unchanged (304)
    /// and came from the cache.
    pub full: Option<Value>,
}

/// One cached page of a listing: its ETag, the summaries of its items, and its `next` link.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachedPage {
    /// The page's ETag as GitHub sent it.
    pub etag: String,
    /// The URL this page was requested with.
    pub url: String,
    /// The `rel="next"` URL, if any.
    pub next: Option<String>,
    /// Item summaries, in page order.
    pub items: Vec<Value>,
}

/// The per-page cache of one listing (persisted by the caller between runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageCache {
    /// Pages in order, as of the last complete listing.
    pub pages: Vec<CachedPage>,
}

/// How a listing should use its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Send each page's stored ETag; take 304 pages from the cache.
    Conditional,
    /// Send no ETags (a scrub): every page is fetched in full.
    Full,
}

/// What the backup logic needs from GitHub.
#[allow(async_fn_in_trait)]
pub trait Api {
    /// `GET path` (relative to the API URL, e.g. `/repos/o/r`) as JSON.
    async fn get(&self, path: &str) -> Result<Value, ApiError>;

    /// `GET path` like [`Api::get`], conditionally: `cache` holds the object's last ETag and
    /// body (as a one-page [`PageCache`]); a 304 answer (free of quota) returns the cached body.
    /// The default implementation ignores the cache.
    async fn get_cached(
        &self,
        path: &str,
        freshness: Freshness,
        cache: &mut PageCache,
    ) -> Result<Value, ApiError> {
        let _ = (freshness, &cache);
        self.get(path).await
    }

    /// Every item of the listing at `path` with `query` (plus `per_page=100`), following `Link`
    /// pages. `summarize` reduces an item to what the cache keeps; `cache` is read for ETags and
    /// 304 pages and updated to this listing's pages.
    async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
        freshness: Freshness,
        cache: &mut PageCache,
        summarize: &dyn Fn(&Value) -> Value,
    ) -> Result<Vec<ListedItem>, ApiError>;

    /// Downloads a release asset from its API `url` (`Accept: application/octet-stream`,
    /// following the redirect without forwarding credentials to the other host) into `out`.
    /// Fails unless the status is 200 and, when given, exactly `expected_size` bytes arrived.
    async fn download(
        &self,
        url: &str,
        out: &mut (dyn std::io::Write + Send),
        expected_size: Option<u64>,
    ) -> Result<u64, ApiError>;
}

/// A single-threaded tokio runtime for one unit's requests.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
