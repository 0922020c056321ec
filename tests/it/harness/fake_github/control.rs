//! What a test controls about the fake besides GitHub's data: the primary rate limit, injected
//! faults, the device-flow script, and the logs of what clients did (every request, every asset
//! download with whether credentials leaked to the download host).

use std::collections::VecDeque;
use std::time::Duration;

/// The primary ("core") rate limit, as GitHub applies it to an authenticated user.
///
/// Every authenticated API request costs one unit except `GET /rate_limit` and answers 304.
/// When `remaining()` is 0 the API answers `exhausted_status` (403 by default, GitHub also uses
/// 429) with `X-RateLimit-Remaining: 0` until `reset_at`; the window then starts afresh with
/// the full `limit`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Requests per window (GitHub: 5000 per hour).
    pub limit: u64,
    /// Used in the current window.
    pub used: u64,
    /// Window length.
    pub window: Duration,
    /// When the current window ends (Unix seconds; `X-RateLimit-Reset`).
    pub reset_at: i64,
    /// Status of an over-quota answer: 403 (GitHub's usual) or 429.
    pub exhausted_status: u16,
}

impl RateLimit {
    /// GitHub's limit for a personal token: 5000 per hour.
    pub fn github_default() -> RateLimit {
        let window = Duration::from_secs(3600);
        RateLimit {
            limit: 5000,
            used: 0,
            window,
            reset_at: now_secs() + window.as_secs() as i64,
            exhausted_status: 403,
        }
    }

    /// Requests left in the current window.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Sets a quota of `limit` per `window`, starting a fresh window now.
    pub fn set(&mut self, limit: u64, window: Duration) {
        self.limit = limit;
        self.window = window;
        self.used = 0;
        self.reset_at = now_secs() + window.as_secs().max(1) as i64;
    }

    /// Starts a new window when the current one has ended (called before each request).
    pub(super) fn roll(&mut self) {
        let now = now_secs();
        if now >= self.reset_at {
            self.used = 0;
            self.reset_at = now + self.window.as_secs().max(1) as i64;
        }
    }
}

/// The current Unix time in seconds.
pub(super) fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// What an injected fault answers instead of the real response.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// A plain error status with a GitHub-style `{"message": ...}` body (500, 502, 404, 410...).
    Status(u16),
    /// GitHub's secondary rate limit: 403 with `Retry-After: <secs>`.
    SecondaryLimit {
        /// Seconds in `Retry-After`.
        retry_after: u64,
    },
    /// 429 Too Many Requests with `Retry-After: <secs>`.
    TooManyRequests {
        /// Seconds in `Retry-After`.
        retry_after: u64,
    },
    /// The real answer, but only after this delay (to trip client timeouts).
    Delay(Duration),
}

/// "The next `times` requests to `path` answer `kind`."
///
/// `path` is the API path without the API prefix (e.g. `/repos/acme/widgets/issues`), in its
/// canonical `/repos/{owner}/{repo}` or `/orgs/{org}` form, whichever alias the request used
/// (GitHub's `Link` URLs use `/repositories/{id}/...`). It may carry a query
/// (`/repos/acme/widgets/issues?page=3`): then every parameter in it must be present with that
/// value. Git requests match on their path (`/acme/widgets.git/info/refs`), downloads from the
/// asset host on `/download/{asset id}`; those two honour only [`FaultKind::Status`].
#[derive(Debug, Clone)]
pub struct Fault {
    /// Path (and optional query parameters) to match.
    pub path: String,
    /// How many more requests it applies to.
    pub remaining: u32,
    /// What to answer.
    pub kind: FaultKind,
}

impl Fault {
    /// Whether this fault applies to a request for `path` with `query` parameters.
    pub(super) fn matches(&self, path: &str, query: &[(String, String)]) -> bool {
        if self.remaining == 0 {
            return false;
        }
        let (want_path, want_query) = match self.path.split_once('?') {
            Some((p, q)) => (p, super::routes::parse_query(q)),
            None => (self.path.as_str(), Vec::new()),
        };
        want_path == path && want_query.iter().all(|pair| query.contains(pair))
    }
}

/// Which listener and which kind of endpoint a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// The REST API (under the API prefix).
    Api,
    /// The device-flow login endpoints on the web host.
    Login,
    /// Git smart HTTP on the web host.
    Git,
    /// The asset download host (the second listener).
    Asset,
    /// Anything else (answered 404).
    Other,
}

/// One request as the fake saw and answered it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// Which endpoint family.
    pub kind: RequestKind,
    /// HTTP method.
    pub method: String,
    /// The request target as sent (path and query).
    pub uri: String,
    /// The canonical path (API prefix removed, `/repositories/{id}` resolved to
    /// `/repos/{o}/{r}`), without the query.
    pub path: String,
    /// Whether it carried `If-None-Match`.
    pub conditional: bool,
    /// Whether it carried an `Authorization` header.
    pub authorization: bool,
    /// The status answered.
    pub status: u16,
}

/// What one poll of `/login/oauth/access_token` answers, in script order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePoll {
    /// `authorization_pending`: the user has not entered the code yet.
    Pending,
    /// `slow_down`: the poll interval grows by `slow_down_increment`.
    SlowDown,
    /// `expired_token`: the device code expired (it stays dead).
    Expired,
    /// `access_denied`: the user refused (the code stays dead).
    Denied,
    /// The token is issued (the code is then used up).
    Grant,
}

/// The OAuth device flow (`POST /login/device/code`, `POST /login/oauth/access_token`).
#[derive(Debug, Clone)]
pub struct DeviceFlow {
    /// The OAuth App's client id; other ids get `incorrect_client_credentials`.
    pub client_id: String,
    /// The poll interval handed out (GitHub: 5 s). Polls faster than the current interval of a
    /// code answer `slow_down`, as on GitHub.
    pub interval: u64,
    /// Seconds added to a code's interval on `slow_down` (GitHub: 5).
    pub slow_down_increment: u64,
    /// Lifetime of a device code in seconds (GitHub: 900).
    pub expires_in: u64,
    /// Answers to successive polls; when empty, polls are granted.
    pub script: VecDeque<DevicePoll>,
    /// The codes handed out so far.
    pub grants: Vec<DeviceGrant>,
}

impl Default for DeviceFlow {
    fn default() -> DeviceFlow {
        DeviceFlow {
            client_id: "Iv1.fakeclientid0001".to_string(),
            interval: 5,
            slow_down_increment: 5,
            expires_in: 900,
            script: VecDeque::from([DevicePoll::Pending]),
            grants: Vec::new(),
        }
    }
}

/// One device code handed out.
#[derive(Debug, Clone)]
pub struct DeviceGrant {
    /// The secret code the client polls with.
    pub device_code: String,
    /// The code shown to the user.
    pub user_code: String,
    /// The scopes requested.
    pub scope: String,
    /// The code's current minimum poll interval.
    pub interval: u64,
    /// When it was last polled.
    pub last_poll: Option<std::time::Instant>,
    /// Used up, expired or denied: further polls fail.
    pub finished: Option<&'static str>,
    /// Number of polls so far.
    pub polls: u32,
    /// When it was handed out.
    pub issued: std::time::Instant,
}

/// One download from the asset host.
#[derive(Debug, Clone)]
pub struct AssetDownload {
    /// The asset id.
    pub asset_id: u64,
    /// Whether an `Authorization` header arrived (it must not: GitHub's download host is
    /// another origin, and S3 then refuses the request).
    pub authorization: bool,
    /// The status answered.
    pub status: u16,
}
