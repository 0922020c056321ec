//! [`Client`]: the HTTP implementation of [`Api`] (github-rgw-rbd.md §1.4, §1.11, D5).
//!
//! Every API request goes through one loop ([`Client::send`]) that
//! 1. asks the shared [`Budget`] for admission (waiting for a quota reset or a secondary-limit
//!    pause when that is within `github-max-wait`, else stopping with [`ApiError::Budget`]);
//! 2. sends it with the GitHub headers and the token (`Authorization: Bearer`, marked
//!    sensitive; the token appears nowhere else: not in `Debug`, errors or logs);
//! 3. feeds the answer's `X-RateLimit-*` headers back to the budget and the statistics;
//! 4. on a rate limit (403/429, see [`ratelimit`](super::ratelimit)) waits as GitHub asks when
//!    that is within `github-max-wait`, else stops with [`ApiError::Budget`];
//! 5. retries 5xx answers and transport errors up to [`Timing::retries`] times with exponential
//!    backoff and jitter;
//! 6. maps 404 and 410 to [`ApiError::NotFound`] and other errors to [`ApiError::Http`].
//!
//! API redirects on the API host (a renamed repository answers 301) are followed with the
//! token; an asset download's redirect to another host is followed without it.

use super::budget::{self, Budget, Ticket, now_epoch};
use super::pagination::{self, PER_PAGE};
use super::ratelimit::{self, Quota};
use super::{Api, ApiError, CachedPage, Freshness, ListedItem, PageCache};
use crate::config::Secret;
use anyhow::Context;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LOCATION, USER_AGENT,
};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Media type of JSON API answers.
const JSON: &str = "application/vnd.github+json";
/// Media type of release asset downloads.
const OCTET_STREAM: &str = "application/octet-stream";
/// The REST API version this client is written against.
const API_VERSION: &str = "2022-11-28";
/// Redirects followed for one request.
const MAX_REDIRECTS: u32 = 5;
/// Rate-limit waits for one request before it gives up (a server that keeps limiting).
const MAX_LIMIT_WAITS: u32 = 8;
/// At most this much of an error answer's body is read (for its message).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Delays and timeouts of a [`Client`]. Tests shrink them.
#[derive(Debug, Clone)]
pub struct Timing {
    /// First retry delay after a 5xx or transport error; doubled per retry, with ±50 % jitter.
    pub retry_base: Duration,
    /// Retries after a 5xx or transport error (4: five attempts in all).
    pub retries: u32,
    /// Factor applied to every rate-limit wait actually slept (1.0; tests use e.g. 0.05). The
    /// comparison with `github-max-wait` always uses the server's unscaled wait.
    pub time_scale: f64,
    /// TCP + TLS connection timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading an answer.
    pub read_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            retry_base: Duration::from_secs(1),
            retries: 4,
            time_scale: 1.0,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
        }
    }
}

/// Everything a [`Client`] is built from ([`Client::from_config`] fills it from the settings).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// API base URL (`github-api-url`); a trailing slash is fine.
    pub api_url: String,
    /// The token (`github-token`).
    pub token: Secret,
    /// The shared quota file (`ROOT/.deltaic/github-quota.json`); `None`: this process only.
    pub budget_file: Option<PathBuf>,
    /// Longest rate-limit wait before stopping (`github-max-wait`; zero: never wait).
    pub max_wait: Duration,
    /// Requests of the quota left for other users of the token (`github-quota-reserve`).
    pub quota_reserve: u64,
    /// Delays and timeouts.
    pub timing: Timing,
}

/// Request counts of one client, for the end-of-unit summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// API requests sent, retries included (asset downloads from another host not included).
    pub requests: u64,
    /// Answers 304 Not Modified (free of quota).
    pub not_modified: u64,
    /// Requests sent without `If-None-Match` (each costs quota).
    pub unconditional: u64,
    /// Retries after 5xx answers and transport errors.
    pub retries: u64,
    /// Rate-limit waits (server-requested and for the shared budget).
    pub rate_limit_waits: u64,
    /// Requests left in the quota as of the latest answer.
    pub quota_remaining: Option<u64>,
    /// When the quota resets (epoch seconds), as of the latest answer.
    pub quota_reset: Option<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    not_modified: AtomicU64,
    unconditional: AtomicU64,
    retries: AtomicU64,
    rate_limit_waits: AtomicU64,
}

/// A GitHub REST API client (see the module documentation).
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// `Bearer <token>`, marked sensitive.
    auth: HeaderValue,
    /// The bare token, only to scrub it from messages quoted from answers.
    token: Secret,
    budget: Budget,
    max_wait: Duration,
    timing: Timing,
    counters: Counters,
    quota: Mutex<Option<Quota>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_url", &self.base.as_str())
            .field("token", &self.token)
            .field("budget_file", &self.budget.file())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// One successful answer.
struct Answer {
    url: Url,
    status: StatusCode,
    headers: HeaderMap,
    /// The body, unless the caller asked to stream it.
    body: Vec<u8>,
    /// The response, when the caller streams the body.
    response: Option<reqwest::Response>,
}

/// Whether [`Client::send`] reads the body or leaves it to the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// JSON: read the body; follow redirects on the API host.
    Buffered,
    /// A download: return the response (2xx or 3xx) unread.
    Stream,
}

impl Client {
    /// A client for the configured API URL and token, sharing the quota through
    /// `ROOT/.deltaic/github-quota.json` when the backup root exists.
    ///
    /// Errors: no `github-token`, or an unusable `github-api-url`.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Client> {
        let settings = &config.settings;
        let token = settings.github_token()?.context(
            "settings: neither github-token nor github-token-file is set; run \
             `deltaic github auth` to get a token",
        )?;
        Client::new(ClientOptions {
            api_url: settings.github_api_url.clone(),
            token,
            budget_file: budget_file(config.root()),
            max_wait: Duration::from_secs(settings.github_max_wait.0),
            quota_reserve: settings.github_quota_reserve,
            timing: Timing {
                retries: settings.github_retry_max,
                ..Timing::default()
            },
        })
    }

    /// A client from explicit options.
    ///
    /// Errors: the API URL is not an http(s) URL without credentials, or the token cannot be
    /// sent in a header.
    pub fn new(options: ClientOptions) -> anyhow::Result<Client> {
        let base = Url::parse(options.api_url.trim())
            .with_context(|| format!("settings: github-api-url {:?}", options.api_url))?;
        if !matches!(base.scheme(), "http" | "https")
            || base.host_str().is_none()
            || !base.username().is_empty()
            || base.password().is_some()
            || base.query().is_some()
        {
            anyhow::bail!(
                "settings: github-api-url {:?} must be an http(s) URL without credentials or \
                 query, e.g. https://api.github.com or https://HOST/api/v3",
                options.api_url
            );
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", options.token.expose()))
            .map_err(|_| {
                anyhow::anyhow!(
                    "settings: github-token contains characters that cannot be sent in an HTTP \
                     header; paste it again or run `deltaic github auth`"
                )
            })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("deltaic/", env!("CARGO_PKG_VERSION"))),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.timing.connect_timeout)
            .read_timeout(options.timing.read_timeout)
            .build()
            .context("setting up the HTTP client")?;
        Ok(Client {
            http,
            base,
            auth,
            token: options.token,
            budget: Budget::new(options.budget_file, options.quota_reserve),
            max_wait: options.max_wait,
            timing: options.timing,
            counters: Counters::default(),
            quota: Mutex::new(None),
        })
    }

    /// Request counts so far and the latest known quota.
    pub fn stats(&self) -> RequestStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let quota = self.quota.lock().unwrap_or_else(|e| e.into_inner()).clone();
        RequestStats {
            requests: get(&self.counters.requests),
            not_modified: get(&self.counters.not_modified),
            unconditional: get(&self.counters.unconditional),
            retries: get(&self.counters.retries),
            rate_limit_waits: get(&self.counters.rate_limit_waits),
            quota_remaining: quota.as_ref().map(|q| q.remaining),
            quota_reset: quota.as_ref().map(|q| q.reset),
        }
    }

    /// The names of the organisation's repositories (`GET /orgs/{org}/repos?type=all`, every
    /// page), sorted by lower-cased name.
    ///
    /// Errors: the organisation does not exist or the token cannot see it (404), or any
    /// other failure of the listing.
    pub async fn list_org_repos(
        &self,
        org: &str,
        cache: &mut PageCache,
    ) -> anyhow::Result<Vec<String>> {
        if org.is_empty()
            || !org
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            anyhow::bail!("{org:?} is not a GitHub organisation name");
        }
        let path = format!("/orgs/{org}/repos");
        let name = |item: &Value| item.get("name").cloned().unwrap_or(Value::Null);
        let items = match self
            .list(
                &path,
                &[("type", "all")],
                Freshness::Conditional,
                cache,
                &name,
            )
            .await
        {
            Ok(items) => items,
            Err(ApiError::NotFound { url, .. }) => anyhow::bail!(
                "GitHub organisation {org}: organisation not found or token lacks read:org \
                 ({url})"
            ),
            Err(err) => return Err(err.into()),
        };
        let mut names = items
            .iter()
            .map(|item| {
                item.summary
                    .as_str()
                    .map(str::to_string)
                    .with_context(|| format!("{path}: a repository without a name"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        names.sort_by(|a, b| a.to_lowercase().cmp(&b.to_lowercase()).then(a.cmp(b)));
        Ok(names)
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ApiError> {
        pagination::api_url(&self.base, path, query).map_err(|message| ApiError::Transport {
            url: path.to_string(),
            message,
        })
    }

    /// Removes the token from text quoted from an answer or a library error.
    fn scrub(&self, text: impl Into<String>) -> String {
        let text = text.into();
        let token = self.token.expose();
        if token.is_empty() {
            text
        } else {
            text.replace(token, "<redacted>")
        }
    }

    /// Sleeps `wait` scaled by [`Timing::time_scale`].
    async fn sleep_scaled(&self, wait: Duration) {
        self.counters
            .rate_limit_waits
            .fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait.mul_f64(self.timing.time_scale.max(0.0))).await;
    }

    /// Sleeps before retry number `retry` (0-based): `retry_base × 2^retry × [0.5, 1.5)`.
    async fn backoff(&self, retry: u32) {
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        let jitter: f64 = rand::random_range(0.5..1.5);
        let delay = self.timing.retry_base * (1u32 << retry.min(16));
        tokio::time::sleep(delay.mul_f64(jitter)).await;
    }

    /// The message of [`ApiError::Budget`] when a wait would exceed `github-max-wait`.
    fn over_budget(&self, reason: &str, wait: Duration) -> ApiError {
        ApiError::Budget {
            message: format!(
                "{reason}; waiting {}s would exceed github-max-wait ({}s). Stopping here: the \
                 next run resumes where this one stopped",
                wait.as_secs_f64().ceil(),
                self.max_wait.as_secs()
            ),
        }
    }

    /// Admission by the shared budget, waiting when that is within `github-max-wait`.
    async fn admit(&self, costly: bool, mut force: bool) -> Result<Ticket<'_>, ApiError> {
        loop {
            let now = now_epoch();
            match self.budget.admit(now, costly, force) {
                Ok(ticket) => return Ok(ticket),
                Err(hold) => {
                    let wait = Duration::from_secs_f64((hold.until - now).max(0.0) + 1.0);
                    if wait > self.max_wait {
                        let reason = format!(
                            "{} until {}",
                            hold.reason,
                            ratelimit::format_epoch(hold.until.ceil() as u64)
                        );
                        return Err(self.over_budget(&reason, wait));
                    }
                    tracing::info!("GitHub quota: {}; waiting {}s", hold.reason, wait.as_secs());
                    self.sleep_scaled(wait).await;
                    force = true;
                }
            }
        }
    }

    /// Sends one API `GET` (see the module documentation for the whole loop). Returns 2xx and
    /// 304 answers, and in [`Mode::Stream`] also redirects; in [`Mode::Buffered`] redirects on
    /// the API host are followed.
    async fn send(
        &self,
        url: &Url,
        etag: Option<&str>,
        accept: &'static str,
        mode: Mode,
    ) -> Result<Answer, ApiError> {
        let mut url = url.clone();
        let mut failures = 0u32;
        let mut limits = 0u32;
        let mut redirects = 0u32;
        let mut force = false;
        loop {
            let ticket = self.admit(etag.is_none(), force).await?;
            force = false;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = self
                .http
                .get(url.clone())
                .header(ACCEPT, accept)
                .header("x-github-api-version", API_VERSION)
                .header(AUTHORIZATION, self.auth.clone());
            match etag {
                Some(etag) => request = request.header(IF_NONE_MATCH, etag),
                None => {
                    self.counters.unconditional.fetch_add(1, Ordering::Relaxed);
                }
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    drop(ticket);
                    let message = self.describe(err);
                    if failures < self.timing.retries {
                        tracing::debug!("{url}: {message}; retrying");
                        self.backoff(failures).await;
                        failures += 1;
                        continue;
                    }
                    return Err(ApiError::Transport {
                        url: url.to_string(),
                        message: format!("{message} (after {} attempts)", failures + 1),
                    });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let quota = Quota::from_headers(&headers);
            ticket.finish(quota.as_ref(), now_epoch());
            if let Some(quota) = quota.filter(Quota::is_core) {
                *self.quota.lock().unwrap_or_else(|e| e.into_inner()) = Some(quota);
            }
            if status == StatusCode::NOT_MODIFIED {
                self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
            }

            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                if mode == Mode::Stream {
                    return Ok(Answer {
                        url,
                        status,
                        headers,
                        body: Vec::new(),
                        response: Some(response),
                    });
                }
                let target = redirect_target(&url, &headers)?;
                if !pagination::same_origin(&self.base, &target) {
                    return Err(ApiError::Transport {
                        url: url.to_string(),
                        message: format!(
                            "HTTP {status}: refusing to follow a redirect to {target} with the \
                             token (outside the API host {})",
                            pagination::origin(&self.base)
                        ),
                    });
                }
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(ApiError::Transport {
                        url: url.to_string(),
                        message: format!("more than {MAX_REDIRECTS} redirects"),
                    });
                }
                url = target;
                continue;
            }

            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                if mode == Mode::Stream {
                    return Ok(Answer {
                        url,
                        status,
                        headers,
                        body: Vec::new(),
                        response: Some(response),
                    });
                }
                match response.bytes().await {
                    Ok(body) => {
                        return Ok(Answer {
                            url,
                            status,
                            headers,
                            body: body.to_vec(),
                            response: None,
                        });
                    }
                    Err(err) => {
                        let message = self.describe(err);
                        if failures < self.timing.retries {
                            self.backoff(failures).await;
                            failures += 1;
                            continue;
                        }
                        return Err(ApiError::Transport {
                            url: url.to_string(),
                            message: format!(
                                "reading the answer: {message} (after {} attempts)",
                                failures + 1
                            ),
                        });
                    }
                }
            }

            // An error answer.
            let body = read_limited(response, ERROR_BODY_LIMIT).await;
            let message = self.scrub(github_message(&body));
            let now = now_epoch();
            if let Some(limited) = ratelimit::classify(status, &headers, &message, now, limits) {
                limits += 1;
                if limited.secondary {
                    self.budget.pause(now + limited.wait.as_secs_f64());
                }
                if limited.wait > self.max_wait {
                    return Err(self.over_budget(&limited.reason, limited.wait));
                }
                if limits > MAX_LIMIT_WAITS {
                    return Err(ApiError::Budget {
                        message: format!(
                            "{}: still rate limited after {MAX_LIMIT_WAITS} waits. Stopping \
                             here: the next run resumes where this one stopped",
                            limited.reason
                        ),
                    });
                }
                tracing::info!(
                    "{url}: {}; waiting {}s as GitHub asks",
                    limited.reason,
                    limited.wait.as_secs()
                );
                self.sleep_scaled(limited.wait).await;
                force = true;
                continue;
            }
            if status.is_server_error() && failures < self.timing.retries {
                tracing::debug!("{url}: HTTP {status}; retrying");
                self.backoff(failures).await;
                failures += 1;
                continue;
            }
            return Err(match status {
                StatusCode::NOT_FOUND | StatusCode::GONE => ApiError::NotFound {
                    url: url.to_string(),
                    status: status.as_u16(),
                },
                StatusCode::UNAUTHORIZED => ApiError::Http {
                    url: url.to_string(),
                    status: status.as_u16(),
                    message: format!(
                        "{message} (the token was rejected: run `deltaic github auth` for a \
                         new one)"
                    ),
                },
                _ => ApiError::Http {
                    url: url.to_string(),
                    status: status.as_u16(),
                    message: if failures > 0 {
                        format!("{message} (after {} attempts)", failures + 1)
                    } else {
                        message
                    },
                },
            });
        }
    }

    /// A library error as text: its causes joined, without the URL (the caller names it) and
    /// without the token.
    fn describe(&self, err: reqwest::Error) -> String {
        let err = err.without_url();
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.scrub(text)
    }

    /// `GET` of an asset host after a redirect: no token, no budget; 5xx and transport errors
    /// are retried; further redirects are followed.
    async fn fetch_foreign(&self, first: Url) -> Result<reqwest::Response, ApiError> {
        let mut url = first;
        let mut failures = 0u32;
        let mut redirects = 0u32;
        loop {
            let result = self
                .http
                .get(url.clone())
                .header(ACCEPT, OCTET_STREAM)
                .send()
                .await;
            let retryable = match result {
                Ok(response) if response.status().is_redirection() => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(ApiError::Transport {
                            url: url.to_string(),
                            message: format!("more than {MAX_REDIRECTS} redirects"),
                        });
                    }
                    url = redirect_target(&url, response.headers())?;
                    continue;
                }
                Ok(response) if response.status().is_server_error() => {
                    let status = response.status();
                    let message = self.scrub(github_message(
                        &read_limited(response, ERROR_BODY_LIMIT).await,
                    ));
                    ApiError::Http {
                        url: url.to_string(),
                        status: status.as_u16(),
                        message,
                    }
                }
                Ok(response) => return Ok(response),
                Err(err) => ApiError::Transport {
                    url: url.to_string(),
                    message: self.describe(err),
                },
            };
            if failures >= self.timing.retries {
                return Err(retryable);
            }
            self.backoff(failures).await;
            failures += 1;
        }
    }
}

impl Api for Client {
    async fn get(&self, path: &str) -> Result<Value, ApiError> {
        let url = self.url(path, &[])?;
        let answer = self.send(&url, None, JSON, Mode::Buffered).await?;
        expect_ok(&answer)?;
        parse_json(&answer)
    }

    async fn get_cached(
        &self,
        path: &str,
        freshness: Freshness,
        cache: &mut PageCache,
    ) -> Result<Value, ApiError> {
        let url = self.url(path, &[])?;
        let cached = match freshness {
            Freshness::Conditional => cache
                .pages
                .first()
                .filter(|p| p.url == url.as_str() && !p.etag.is_empty() && p.items.len() == 1),
            Freshness::Full => None,
        };
        let answer = self
            .send(&url, cached.map(|p| p.etag.as_str()), JSON, Mode::Buffered)
            .await?;
        if answer.status == StatusCode::NOT_MODIFIED
            && let Some(cached) = cached
        {
            return Ok(cached.items[0].clone());
        }
        expect_ok(&answer)?;
        let body = parse_json(&answer)?;
        let etag = answer
            .headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        cache.pages = vec![CachedPage {
            etag,
            url: url.to_string(),
            next: None,
            items: vec![body.clone()],
        }];
        Ok(body)
    }

    async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
        freshness: Freshness,
        cache: &mut PageCache,
        summarize: &dyn Fn(&Value) -> Value,
    ) -> Result<Vec<ListedItem>, ApiError> {
        let mut query = query.to_vec();
        query.push(("per_page", PER_PAGE));
        let mut url = self.url(path, &query)?;
        let mut pages: Vec<CachedPage> = Vec::new();
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        loop {
            if !seen.insert(url.to_string()) {
                return Err(ApiError::Transport {
                    url: url.to_string(),
                    message: "the Link pagination loops back to a page already listed".into(),
                });
            }
            let cached = match freshness {
                Freshness::Conditional => cache
                    .pages
                    .iter()
                    .find(|page| page.url == url.as_str() && !page.etag.is_empty()),
                Freshness::Full => None,
            };
            let answer = self
                .send(&url, cached.map(|p| p.etag.as_str()), JSON, Mode::Buffered)
                .await?;
            let page = if answer.status == StatusCode::NOT_MODIFIED {
                let Some(cached) = cached else {
                    return Err(ApiError::Transport {
                        url: url.to_string(),
                        message: "304 Not Modified to a request without If-None-Match".into(),
                    });
                };
                items.extend(cached.items.iter().map(|summary| ListedItem {
                    summary: summary.clone(),
                    full: None,
                }));
                // A 304 that repeats the Link header is fresher than the cache.
                let next = pagination::next_link(&answer.headers).or_else(|| cached.next.clone());
                CachedPage {
                    next,
                    ..cached.clone()
                }
            } else {
                expect_ok(&answer)?;
                let Value::Array(list) = parse_json(&answer)? else {
                    return Err(ApiError::Transport {
                        url: url.to_string(),
                        message: "expected a JSON array (a listing page)".into(),
                    });
                };
                let summaries: Vec<Value> = list.iter().map(summarize).collect();
                items.extend(list.into_iter().zip(summaries.iter().cloned()).map(
                    |(full, summary)| ListedItem {
                        summary,
                        full: Some(full),
                    },
                ));
                CachedPage {
                    etag: answer
                        .headers
                        .get(ETAG)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    url: url.to_string(),
                    next: pagination::next_link(&answer.headers),
                    items: summaries,
                }
            };
            let next = page.next.clone();
            pages.push(page);
            match next {
                None => break,
                Some(next) => {
                    url = Url::parse(&next)
                        .ok()
                        .filter(|next| pagination::same_origin(&self.base, next))
                        .ok_or_else(|| ApiError::Transport {
                            url: url.to_string(),
                            message: format!(
                                "refusing the next-page link {next:?}: not a URL on the API \
                                 host {}",
                                pagination::origin(&self.base)
                            ),
                        })?;
                }
            }
        }
        cache.pages = pages;
        Ok(items)
    }

    async fn download(
        &self,
        url: &str,
        out: &mut (dyn std::io::Write + Send),
        expected_size: Option<u64>,
    ) -> Result<u64, ApiError> {
        let api_url = self.url(url, &[])?;
        let answer = self
            .send(&api_url, None, OCTET_STREAM, Mode::Stream)
            .await?;
        let mut response = answer.response.expect("Mode::Stream returns the response");
        if answer.status.is_redirection() && answer.status != StatusCode::NOT_MODIFIED {
            let target = redirect_target(&answer.url, &answer.headers)?;
            response = self.fetch_foreign(target).await?;
        }
        let final_url = response.url().clone();
        let status = response.status();
        if status != StatusCode::OK {
            let message = self.scrub(github_message(
                &read_limited(response, ERROR_BODY_LIMIT).await,
            ));
            return Err(match status {
                StatusCode::NOT_FOUND | StatusCode::GONE => ApiError::NotFound {
                    url: final_url.to_string(),
                    status: status.as_u16(),
                },
                _ => ApiError::Http {
                    url: final_url.to_string(),
                    status: status.as_u16(),
                    message: format!("expected 200 for a download: {message}"),
                },
            });
        }
        let mut written = 0u64;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(err) => {
                    return Err(ApiError::Transport {
                        url: url.to_string(),
                        message: format!(
                            "download interrupted after {written} bytes: {}",
                            self.describe(err)
                        ),
                    });
                }
            };
            written += chunk.len() as u64;
            if let Some(expected) = expected_size.filter(|&e| written > e) {
                return Err(ApiError::Transport {
                    url: url.to_string(),
                    message: format!(
                        "download is larger than the {expected} bytes GitHub announced"
                    ),
                });
            }
            out.write_all(&chunk).map_err(|err| ApiError::Transport {
                url: url.to_string(),
                message: format!("writing the download: {err}"),
            })?;
        }
        if let Some(expected) = expected_size.filter(|&e| written != e) {
            return Err(ApiError::Transport {
                url: url.to_string(),
                message: format!(
                    "short download: {written} of the {expected} bytes GitHub announced"
                ),
            });
        }
        Ok(written)
    }
}

/// `ROOT/.deltaic/github-quota.json` when the backup root exists (`.deltaic` is created); else
/// `None` (the budget is then this process's own).
fn budget_file(root: &Path) -> Option<PathBuf> {
    if !root.is_dir() {
        return None;
    }
    let dir = root.join(".deltaic");
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => {
            tracing::warn!(
                "cannot create {}: {err}; this unit keeps its own GitHub quota count only",
                dir.display()
            );
            return None;
        }
    }
    Some(dir.join(budget::FILE_NAME))
}

/// The `Location` of a redirect, resolved against the request URL.
fn redirect_target(url: &Url, headers: &HeaderMap) -> Result<Url, ApiError> {
    headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| url.join(location).ok())
        .filter(|target| matches!(target.scheme(), "http" | "https"))
        .ok_or_else(|| ApiError::Transport {
            url: url.to_string(),
            message: "a redirect without a usable Location header".into(),
        })
}

/// Fails unless the answer is 200 (a 204 or 206 is not what a GET of JSON should give).
fn expect_ok(answer: &Answer) -> Result<(), ApiError> {
    if answer.status == StatusCode::OK {
        return Ok(());
    }
    Err(ApiError::Http {
        url: answer.url.to_string(),
        status: answer.status.as_u16(),
        message: "unexpected status for a GET".into(),
    })
}

fn parse_json(answer: &Answer) -> Result<Value, ApiError> {
    serde_json::from_slice(&answer.body).map_err(|err| ApiError::Transport {
        url: answer.url.to_string(),
        message: format!("unparsable JSON answer: {err}"),
    })
}

/// GitHub's `message` from an error body, else the start of the body.
fn github_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(message) = value.get("message").and_then(Value::as_str)
    {
        return message.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty answer)".into(),
        None => text.to_string(),
    }
}

/// Up to `limit` bytes of an answer's body (errors end the read early: it is only a message).
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
