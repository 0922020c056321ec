//! The HTTP side: the two listeners' routers and what every REST answer goes through.
//!
//! The **web listener** serves, like a GitHub Enterprise host, the REST API under
//! [`API_PREFIX`] (`/api/v3`), the device-flow login endpoints under `/login/`, and git smart
//! HTTP for every other path. The **asset listener** stands for GitHub's separate download host:
//! `GET /download/{id}?<signature>` serves an asset's bytes.
//!
//! Every REST request goes through [`api`], in GitHub's order:
//! 1. aliases in `Link` URLs (`/repositories/{id}/...`, `/organizations/{id}/...`) are resolved
//!    to the canonical path;
//! 2. authentication: `Authorization: Bearer|token <t>`, or Basic with the token as user or
//!    password; otherwise 401 (`Requires authentication` / `Bad credentials`);
//! 3. an unsupported `X-GitHub-Api-Version` answers 400;
//! 4. injected faults ([`super::control::Fault`]);
//! 5. the primary rate limit: when exhausted, 403 (or 429) with `X-RateLimit-Remaining: 0`;
//! 6. the endpoint ([`super::endpoints`]); a listing is cut into pages by `per_page`
//!    (default 30, max 100, further capped by `State::max_per_page`) and `page`, with a `Link`
//!    header (`prev`, `next`, `last`, `first`, absolute URLs) when there is more than one page;
//! 7. a weak ETag `W/"<hash of the body>"`; a matching `If-None-Match` answers 304 with no
//!    body and no `Link`, and does not count against the rate limit (nor does
//!    `GET /rate_limit`); everything else costs one request;
//! 8. `X-RateLimit-Limit/-Remaining/-Used/-Reset/-Resource` on every answer, `X-OAuth-Scopes`
//!    for a classic token.
//!
//! Every request on either listener is appended to `State::requests`.

use super::control::{AssetDownload, FaultKind, LoggedRequest, RequestKind};
use super::endpoints::{self, Query, Reply};
use super::render::Urls;
use super::state::State;
use super::{Shared, lock};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the REST API lives on the web listener (GitHub Enterprise's layout).
pub const API_PREFIX: &str = "/api/v3";
/// API versions the fake accepts in `X-GitHub-Api-Version`.
const API_VERSIONS: [&str; 2] = ["2022-11-28", "2026-03-10"];
/// GitHub's default page size.
const DEFAULT_PER_PAGE: usize = 30;
/// GitHub's largest page size.
const MAX_PER_PAGE: usize = 100;
/// Where GitHub's error bodies point.
const DOCS_URL: &str = "https://docs.github.com/rest";

/// The web listener's router (API, login, git).
pub fn web_router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(move |req: Request| web(shared.clone(), req))
}

/// The asset listener's router.
pub fn asset_router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(move |req: Request| asset_host(shared.clone(), req))
}

/// Parses `a=1&b=x%20y` into pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://query.invalid/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// The query string of a fake asset download URL (a stand-in for a pre-signed URL).
pub fn asset_signature(asset_id: u64) -> String {
    format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={}",
        &hash_hex(format!("asset-{asset_id}").as_bytes())[..32]
    )
}

/// 64 hex digits derived from `data` (SipHash in four lanes; deterministic).
fn hash_hex(data: &[u8]) -> String {
    use std::hash::{DefaultHasher, Hasher};
    (0u8..4)
        .map(|lane| {
            let mut h = DefaultHasher::new();
            h.write_u8(lane);
            h.write(data);
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// A unique `X-GitHub-Request-Id`.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("FAKE:{:08X}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Dispatches a web-listener request and logs it.
async fn web(shared: Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("bad body: {e}")),
    };
    let (kind, canonical, response) = if path == API_PREFIX
        || path.starts_with(&format!("{API_PREFIX}/"))
    {
        let rel = path[API_PREFIX.len()..].to_string();
        let (canonical, response) =
            api(&shared, &parts.method, &parts.headers, &rel, &raw_query).await;
        (RequestKind::Api, canonical, response)
    } else if path.starts_with("/login/") {
        let response = super::device::handle(&shared, &parts.method, &parts.headers, &path, &body);
        (RequestKind::Login, path.clone(), response)
    } else if let Some(target) = super::git_http::parse_path(&path) {
        let canonical = target.canonical_path();
        let response = super::git_http::handle(&shared, &parts, target, &raw_query, body).await;
        (RequestKind::Git, canonical, response)
    } else {
        (
            RequestKind::Other,
            path.clone(),
            plain(StatusCode::NOT_FOUND, "Not Found"),
        )
    };
    log(
        &shared,
        kind,
        &parts.method,
        &parts.uri,
        &parts.headers,
        canonical,
        &response,
    );
    response
}

/// Appends a request to the log.
fn log(
    shared: &Shared,
    kind: RequestKind,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    path: String,
    response: &Response,
) {
    let entry = LoggedRequest {
        kind,
        method: method.to_string(),
        uri: uri
            .path_and_query()
            .map_or_else(|| uri.to_string(), |pq| pq.to_string()),
        path,
        conditional: headers.contains_key(header::IF_NONE_MATCH),
        authorization: headers.contains_key(header::AUTHORIZATION),
        status: response.status().as_u16(),
    };
    lock(&shared.state).requests.push(entry);
}

/// A text/plain response.
pub fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Resolves the `Link` aliases to canonical paths: `/repositories/{id}/x` →
/// `/repos/{o}/{r}/x`, `/organizations/{id}/team/{tid}/x` → `/orgs/{org}/teams/{slug}/x`,
/// `/organizations/{id}/x` → `/orgs/{org}/x`. Unknown ids stay as they are (and 404).
fn canonical_path(state: &State, path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let tail = |n: usize| -> String { segments[n..].iter().map(|s| format!("/{s}")).collect() };
    match segments.as_slice() {
        ["repositories", id, ..] => {
            if let Some((org, repo)) = id.parse().ok().and_then(|id| state.repo_by_id(id)) {
                return format!("/repos/{}/{}{}", org.login, repo.name, tail(2));
            }
        }
        ["organizations", id, rest @ ..] => {
            if let Some(org) = state.orgs.values().find(|o| id.parse() == Ok(o.id)) {
                if let ["team", team_id, ..] = rest {
                    if let Some(team) = org.teams.iter().find(|t| team_id.parse() == Ok(t.id)) {
                        return format!("/orgs/{}/teams/{}{}", org.login, team.slug, tail(4));
                    }
                } else {
                    return format!("/orgs/{}{}", org.login, tail(2));
                }
            }
        }
        _ => {}
    }
    path.to_string()
}

/// The inverse of [`canonical_path`] for sub-resources: the path GitHub puts in `Link` headers.
fn link_path(state: &State, canonical: &str) -> String {
    let segments: Vec<&str> = canonical.trim_start_matches('/').split('/').collect();
    let tail = |n: usize| -> String { segments[n..].iter().map(|s| format!("/{s}")).collect() };
    match segments.as_slice() {
        ["repos", org, repo, _, ..] => {
            if let Some(repo) = state.org(org).and_then(|o| o.repo(repo)) {
                return format!("/repositories/{}{}", repo.id, tail(3));
            }
        }
        ["orgs", org, "teams", slug, _, ..] => {
            if let Some((org, team)) = state
                .org(org)
                .and_then(|o| Some((o, o.teams.iter().find(|t| t.slug == *slug)?)))
            {
                return format!("/organizations/{}/team/{}{}", org.id, team.id, tail(4));
            }
        }
        ["orgs", org, _, ..] => {
            if let Some(org) = state.org(org) {
                return format!("/organizations/{}{}", org.id, tail(2));
            }
        }
        _ => {}
    }
    canonical.to_string()
}

/// The credential in `Authorization`, if it is the token: `Some(true)` valid, `Some(false)`
/// wrong, `None` absent.
pub fn token_matches(headers: &HeaderMap, token: &str) -> Option<bool> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().unwrap_or("");
    let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
    let credential = credential.trim();
    Some(match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => credential == token,
        "basic" => super::git_http::basic_credentials(credential)
            .is_some_and(|(user, password)| user == token || password == token),
        _ => false,
    })
}

/// A GitHub-style JSON error body.
fn error_body(status: u16, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "message": message,
        "documentation_url": DOCS_URL,
        "status": status.to_string(),
    }))
    .expect("JSON")
}

/// An API answer under construction.
struct Answer {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(HeaderName, String)>,
    /// Whether it costs one request of the quota.
    charged: bool,
}

impl Answer {
    /// A JSON error answer.
    fn error(status: u16, message: &str, charged: bool) -> Answer {
        Answer {
            status,
            body: error_body(status, message),
            headers: Vec::new(),
            charged,
        }
    }
}

/// Answers one REST request (`rel` is the path under [`API_PREFIX`]); returns the canonical
/// path for the log.
async fn api(
    shared: &Shared,
    method: &Method,
    headers: &HeaderMap,
    rel: &str,
    raw_query: &str,
) -> (String, Response) {
    let query = parse_query(raw_query);
    let header_str = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (canonical, delay) = {
        let mut state = lock(&shared.state);
        state.rate.roll();
        let canonical = canonical_path(&state, if rel.is_empty() { "/" } else { rel });
        // Faults apply to authenticated requests only (401 comes first).
        let authenticated = token_matches(headers, &state.token) == Some(true);
        let fault = authenticated
            .then(|| take_fault(&mut state, &canonical, &query))
            .flatten();
        (canonical, fault)
    };
    // A delay fault holds the answer back, then proceeds normally.
    let fault = match delay {
        Some(FaultKind::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        other => other,
    };
    let mut state = lock(&shared.state);
    let mut answer = answer(
        &mut state,
        &shared.urls,
        method,
        headers,
        &canonical,
        &query,
        fault,
    );
    // ETag and conditional requests, for successful answers.
    if answer.status == 200 {
        let etag = format!("W/\"{}\"", hash_hex(&answer.body));
        if etag_matches(header_str("if-none-match"), &etag) {
            answer.status = 304;
            answer.body.clear();
            answer.charged = false;
            answer.headers.retain(|(name, _)| name != header::LINK);
        }
        answer.headers.push((header::ETAG, etag));
    }
    if answer.charged {
        state.rate.used += 1;
    }
    let response = finish(&state, answer);
    (canonical, response)
}

/// Consumes the first fault matching `path`, returning what it answers.
fn take_fault(state: &mut State, path: &str, query: &[(String, String)]) -> Option<FaultKind> {
    let fault = state.faults.iter_mut().find(|f| f.matches(path, query))?;
    fault.remaining -= 1;
    Some(fault.kind.clone())
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, lists and `*` allowed).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    !if_none_match.is_empty()
        && if_none_match
            .split(',')
            .any(|candidate| candidate.trim() == "*" || bare(candidate) == bare(etag))
}

/// Steps 2-6 of the pipeline (see the module doc).
fn answer(
    state: &mut State,
    urls: &Urls,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    query: &[(String, String)],
    fault: Option<FaultKind>,
) -> Answer {
    match token_matches(headers, &state.token) {
        None => return Answer::error(401, "Requires authentication", false),
        Some(false) => return Answer::error(401, "Bad credentials", false),
        Some(true) => {}
    }
    if let Some(version) = headers.get("x-github-api-version") {
        let version = version.to_str().unwrap_or("");
        if !API_VERSIONS.contains(&version) {
            return Answer::error(
                400,
                &format!("Unsupported 'X-GitHub-Api-Version' header: {version}"),
                false,
            );
        }
    }
    match fault {
        Some(FaultKind::Status(status)) => {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            return Answer::error(status, reason, false);
        }
        Some(FaultKind::SecondaryLimit { retry_after }) => {
            let mut a = Answer::error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you \
                 try again. If you reach out to GitHub Support for help, please include the \
                 request ID FAKE.",
                false,
            );
            a.headers
                .push((header::RETRY_AFTER, retry_after.to_string()));
            return a;
        }
        Some(FaultKind::TooManyRequests { retry_after }) => {
            let mut a = Answer::error(429, "Too Many Requests", false);
            a.headers
                .push((header::RETRY_AFTER, retry_after.to_string()));
            return a;
        }
        Some(FaultKind::Delay(_)) | None => {}
    }
    let free = path == "/rate_limit";
    if !free && state.rate.remaining() == 0 {
        return Answer::error(
            state.rate.exhausted_status,
            "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, \
             please include the request ID FAKE and timestamp.",
            false,
        );
    }
    if method != Method::GET {
        return Answer::error(404, "Not Found", !free);
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let reply = endpoints::get(state, urls, path, &Query(query), accept);
    let mut a = match reply {
        Reply::Object(value) => Answer {
            status: 200,
            body: serde_json::to_vec(&value).expect("JSON"),
            headers: Vec::new(),
            charged: true,
        },
        Reply::List(items) => paginate(state, urls, path, query, items),
        Reply::Redirect(location) => Answer {
            status: 302,
            body: Vec::new(),
            headers: vec![(header::LOCATION, location)],
            charged: true,
        },
        Reply::Error(status, message) => Answer::error(status, &message, true),
    };
    a.charged &= !free;
    a
}

/// Cuts `items` into the requested page and adds the `Link` header.
fn paginate(
    state: &State,
    urls: &Urls,
    path: &str,
    query: &[(String, String)],
    items: Vec<serde_json::Value>,
) -> Answer {
    let number = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
    };
    let per_page = number("per_page")
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(MAX_PER_PAGE)
        .min(state.max_per_page.unwrap_or(MAX_PER_PAGE))
        .max(1);
    let page = number("page").unwrap_or(1);
    let last = items.len().div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    let end = (start + per_page).min(items.len());
    let body = serde_json::to_vec(&items[start..end]).expect("JSON");
    let mut headers = Vec::new();
    if last > 1 || page > 1 {
        let base = format!("{}{}", urls.api, link_path(state, path));
        let url = |n: usize| {
            let mut pairs: Vec<String> = query
                .iter()
                .filter(|(k, _)| k != "page")
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            pairs.push(format!("page={n}"));
            format!("<{base}?{}>", pairs.join("&"))
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", url(page - 1)));
        }
        if page < last {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
            links.push(format!("{}; rel=\"last\"", url(last)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", url(1)));
        }
        headers.push((header::LINK, links.join(", ")));
    }
    Answer {
        status: 200,
        body,
        headers,
        charged: true,
    }
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    let mut url = reqwest::Url::parse("http://query.invalid/").expect("URL");
    url.query_pairs_mut().append_pair("x", text);
    url.query().unwrap_or("x=")[2..].to_string()
}

/// Builds the HTTP response with GitHub's standard and rate-limit headers.
fn finish(state: &State, answer: Answer) -> Response {
    let mut response = Response::new(Body::from(Bytes::from(answer.body)));
    *response.status_mut() = StatusCode::from_u16(answer.status).expect("valid status");
    let rate = &state.rate;
    let mut headers: Vec<(HeaderName, String)> = vec![
        (
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".into(),
        ),
        (
            header::CACHE_CONTROL,
            "private, max-age=60, s-maxage=60".into(),
        ),
        (
            header::VARY,
            "Accept, Authorization, Cookie, X-GitHub-OTP".into(),
        ),
        (
            HeaderName::from_static("x-github-media-type"),
            "github.v3; format=json".into(),
        ),
        (
            HeaderName::from_static("x-github-api-version-selected"),
            API_VERSIONS[0].into(),
        ),
        (HeaderName::from_static("x-github-request-id"), request_id()),
        (
            HeaderName::from_static("x-ratelimit-limit"),
            rate.limit.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            rate.remaining().to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-used"),
            rate.used.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            rate.reset_at.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-resource"),
            "core".into(),
        ),
    ];
    if let Some(scopes) = &state.scopes {
        headers.push((HeaderName::from_static("x-oauth-scopes"), scopes.clone()));
        headers.push((
            HeaderName::from_static("x-accepted-oauth-scopes"),
            String::new(),
        ));
    }
    headers.extend(answer.headers);
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The download host: `GET /download/{id}?<signature>` serves the asset's bytes, and refuses
/// (400, as S3 does) a request that also carries an `Authorization` header.
async fn asset_host(shared: Arc<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let authorization = req.headers().contains_key(header::AUTHORIZATION);
    let asset_id = path
        .strip_prefix("/download/")
        .and_then(|id| id.parse::<u64>().ok());
    let response = {
        let mut state = lock(&shared.state);
        let fault = take_fault(&mut state, &path, &query);
        let expected = asset_id.map(asset_signature).map(|s| parse_query(&s));
        let asset = asset_id.and_then(|id| state.asset(id)).cloned();
        match (fault, asset) {
            (Some(FaultKind::Status(status)), _) => plain(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected fault",
            ),
            (_, None) => plain(
                StatusCode::NOT_FOUND,
                "<Error><Code>NoSuchKey</Code></Error>",
            ),
            (_, Some(_)) if authorization => plain(
                StatusCode::BAD_REQUEST,
                "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; \
                 only the X-Amz-Algorithm query parameter, Signature query string parameter or \
                 the Authorization header should be specified</Message></Error>",
            ),
            (_, Some(_)) if expected.is_some_and(|e| !e.iter().all(|p| query.contains(p))) => {
                plain(
                    StatusCode::FORBIDDEN,
                    "<Error><Code>AccessDenied</Code></Error>",
                )
            }
            (_, Some(asset)) => {
                let mut response = Response::new(Body::from(asset.bytes.clone()));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                if let Ok(v) =
                    HeaderValue::from_str(&format!("attachment; filename={}", asset.name))
                {
                    headers.insert(header::CONTENT_DISPOSITION, v);
                }
                response
            }
        }
    };
    {
        let mut state = lock(&shared.state);
        if let Some(asset_id) = asset_id {
            state.downloads.push(AssetDownload {
                asset_id,
                authorization,
                status: response.status().as_u16(),
            });
        }
    }
    log(
        &shared,
        RequestKind::Asset,
        req.method(),
        req.uri(),
        req.headers(),
        path,
        &response,
    );
    response
}
