//! An in-memory GitHub for the backup tests. It implements [`Api`] the way GitHub documents
//! its listings: `state` (default `open` for issues and milestones), `since` (items updated at
//! or after), `sort` by `created`/`updated` with `direction`, fixed-size pages with a `next`
//! link, and one ETag per page (a hash of its URL and content). A conditional listing gets a
//! 304 for a page whose URL and ETag match the page cache, and then returns that page's cached
//! summaries with `full: None`, exactly the [`PageCache`] contract. Every request is logged.

use crate::sources::github::api::{Api, ApiError, CachedPage, Freshness, ListedItem, PageCache};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// The fake's data.
#[derive(Debug, Default, Clone)]
pub struct FakeGithub {
    /// Items per page.
    pub page_size: usize,
    /// `GET path` answers (items of listings are also found by number or id).
    pub objects: BTreeMap<String, Value>,
    /// Listing path → every item, in the order GitHub would give without `sort`.
    pub listings: BTreeMap<String, Vec<Value>>,
    /// Asset API url → its bytes.
    pub assets: BTreeMap<String, Vec<u8>>,
    /// Listing path → (0-based page, HTTP status) of a failing page request (status 0: the
    /// quota budget is exhausted).
    pub fail_list: BTreeMap<String, (usize, u16)>,
    /// Asset urls whose download breaks off half-way.
    pub fail_download: BTreeSet<String>,
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GET path`.
    Get(String),
    /// A listing call (its pages follow as [`Request::Page`]).
    List(String),
    /// One page of a listing, with the status it got (200, 304 or an error).
    Page {
        /// The listing path (without query).
        path: String,
        /// The page URL.
        url: String,
        /// The answer's status.
        status: u16,
    },
    /// An asset download.
    Download(String),
}

/// [`Api`] over a [`FakeGithub`].
pub struct FakeApi {
    /// The data; tests edit it between runs.
    pub gh: RefCell<FakeGithub>,
    log: RefCell<Vec<Request>>,
}

/// The error of an injected failure; status 0 stands for the quota budget running out.
fn error(url: &str, status: u16) -> ApiError {
    if status == 0 {
        ApiError::Budget {
            message: "budget exhausted (injected)".into(),
        }
    } else if status == 404 || status == 410 {
        ApiError::NotFound {
            url: url.to_string(),
            status,
        }
    } else {
        ApiError::Http {
            url: url.to_string(),
            status,
            message: "injected failure".into(),
        }
    }
}

fn epoch(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
        .unwrap_or(i64::MIN)
}

impl FakeApi {
    /// A fake serving `gh`.
    pub fn new(gh: FakeGithub) -> FakeApi {
        FakeApi {
            gh: RefCell::new(gh),
            log: RefCell::new(Vec::new()),
        }
    }

    /// The requests since the last call.
    pub fn take_log(&self) -> Vec<Request> {
        std::mem::take(&mut self.log.borrow_mut())
    }

    /// Changes the data.
    pub fn edit(&self, f: impl FnOnce(&mut FakeGithub)) {
        f(&mut self.gh.borrow_mut());
    }

    fn filtered(&self, path: &str, query: &[(&str, &str)]) -> Option<Vec<Value>> {
        let gh = self.gh.borrow();
        let mut items = gh.listings.get(path)?.clone();
        let get = |key: &str| query.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        if path.ends_with("/issues") || path.ends_with("/milestones") {
            match get("state").unwrap_or("open") {
                "all" => {}
                state => items.retain(|i| i["state"] == state),
            }
        }
        if let Some(since) = get("since") {
            let since = epoch(&Value::String(since.to_string()));
            items.retain(|i| epoch(&i["updated_at"]) >= since);
        }
        if let Some(sort) = get("sort") {
            let key = format!("{sort}_at");
            items.sort_by_key(|i| epoch(&i[&key]));
            if get("direction") != Some("asc") {
                items.reverse();
            }
        }
        Some(items)
    }
}

impl Api for FakeApi {
    async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.log.borrow_mut().push(Request::Get(path.to_string()));
        let gh = self.gh.borrow();
        if let Some(v) = gh.objects.get(path) {
            return Ok(v.clone());
        }
        let (parent, key) = path.rsplit_once('/').ok_or_else(|| error(path, 404))?;
        gh.listings
            .get(parent)
            .and_then(|items| {
                items.iter().find(|i| {
                    [&i["number"], &i["id"]]
                        .iter()
                        .any(|v| v.as_u64().map(|n| n.to_string()).as_deref() == Some(key))
                })
            })
            .cloned()
            .ok_or_else(|| error(path, 404))
    }

    async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
        freshness: Freshness,
        cache: &mut PageCache,
        summarize: &dyn Fn(&Value) -> Value,
    ) -> Result<Vec<ListedItem>, ApiError> {
        self.log.borrow_mut().push(Request::List(path.to_string()));
        let page_size = self.gh.borrow().page_size.max(1);
        let fail = self.gh.borrow().fail_list.get(path).copied();
        let mut base = format!("{path}?");
        for (k, v) in query {
            base.push_str(&format!("{k}={v}&"));
        }
        base.push_str(&format!("per_page={page_size}"));
        let Some(items) = self.filtered(path, query) else {
            let url = format!("{base}&page=1");
            self.log.borrow_mut().push(Request::Page {
                path: path.into(),
                url: url.clone(),
                status: 404,
            });
            return Err(error(&url, 404));
        };
        let chunks: Vec<&[Value]> = if items.is_empty() {
            vec![&[]]
        } else {
            items.chunks(page_size).collect()
        };
        let mut pages = Vec::new();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let url = format!("{base}&page={}", i + 1);
            let next = (i + 1 < chunks.len()).then(|| format!("{base}&page={}", i + 2));
            let log = |status| {
                self.log.borrow_mut().push(Request::Page {
                    path: path.into(),
                    url: url.clone(),
                    status,
                })
            };
            if let Some((page, status)) = fail
                && page == i
            {
                log(status);
                return Err(error(&url, status));
            }
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (&url, serde_json::to_string(chunk).unwrap()).hash(&mut hasher);
            let etag = format!("W/\"{:016x}\"", hasher.finish());
            let cached = cache
                .pages
                .get(i)
                .filter(|p| p.url == url && p.etag == etag);
            match (freshness, cached) {
                (Freshness::Conditional, Some(page)) => {
                    log(304);
                    out.extend(page.items.iter().map(|s| ListedItem {
                        summary: s.clone(),
                        full: None,
                    }));
                    pages.push(page.clone());
                }
                _ => {
                    log(200);
                    let summaries: Vec<Value> = chunk.iter().map(summarize).collect();
                    out.extend(chunk.iter().zip(&summaries).map(|(full, s)| ListedItem {
                        summary: s.clone(),
                        full: Some(full.clone()),
                    }));
                    pages.push(CachedPage {
                        etag,
                        url,
                        next,
                        items: summaries,
                    });
                }
            }
        }
        cache.pages = pages;
        Ok(out)
    }

    async fn download(
        &self,
        url: &str,
        out: &mut (dyn std::io::Write + Send),
        expected_size: Option<u64>,
    ) -> Result<u64, ApiError> {
        self.log
            .borrow_mut()
            .push(Request::Download(url.to_string()));
        let gh = self.gh.borrow();
        let bytes = gh.assets.get(url).ok_or_else(|| error(url, 404))?;
        let transport = |message: String| ApiError::Transport {
            url: url.to_string(),
            message,
        };
        if gh.fail_download.contains(url) {
            out.write_all(&bytes[..bytes.len() / 2])
                .map_err(|e| transport(e.to_string()))?;
            return Err(transport("connection reset".into()));
        }
        out.write_all(bytes).map_err(|e| transport(e.to_string()))?;
        if let Some(size) = expected_size
            && size != bytes.len() as u64
        {
            return Err(transport(format!("{} bytes, expected {size}", bytes.len())));
        }
        Ok(bytes.len() as u64)
    }
}
