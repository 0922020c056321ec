//! Tests of [`Client`] against small axum servers on 127.0.0.1 that answer the way GitHub
//! documents: `Link` pagination, per-page ETags and 304, `X-RateLimit-*`, secondary limits,
//! and asset downloads redirected to a second host.

use super::*;
use axum::body::Body;
use axum::extract::Request;
use axum::http::Response;
use serde_json::json;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

const TOKEN: &str = "ghp_test_SECRET_token_0123456789";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// Path and query.
    target: String,
    if_none_match: Option<String>,
    authorization: Option<String>,
    accept: Option<String>,
    api_version: Option<String>,
    user_agent: Option<String>,
}

impl Seen {
    fn of(req: &Request) -> Seen {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        Seen {
            target: req
                .uri()
                .path_and_query()
                .map_or_else(String::new, |p| p.to_string()),
            if_none_match: header("if-none-match"),
            authorization: header("authorization"),
            accept: header("accept"),
            api_version: header("x-github-api-version"),
            user_agent: header("user-agent"),
        }
    }

    fn page(&self) -> usize {
        self.target
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("page="))
            .map_or(1, |n| n.parse().unwrap())
    }
}

type Reply = Arc<dyn Fn(&Seen) -> Response<Body> + Send + Sync>;

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Starts a server whose answers come from `make(base_url)`.
async fn serve(make: impl FnOnce(&str) -> Reply) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let reply = make(&base);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let reply = reply.clone();
        let log = log.clone();
        async move {
            let s = Seen::of(&req);
            log.lock().unwrap().push(s.clone());
            reply(&s)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { base, seen }
}

fn respond(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(body.into()).unwrap()
}

fn epoch() -> u64 {
    now_epoch() as u64
}

fn quota_headers(remaining: u64, reset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit", "5000".into()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-used", (5000 - remaining).to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-resource", "core".into()),
    ]
}

fn ok_json(body: Value) -> Response<Body> {
    let mut headers = quota_headers(4000, epoch() + 3000);
    headers.push(("content-type", "application/json".into()));
    respond(200, &headers, body.to_string())
}

fn options(base: &str) -> ClientOptions {
    ClientOptions {
        api_url: format!("{base}/"),
        token: Secret::new(TOKEN),
        budget_file: None,
        max_wait: Duration::from_secs(60),
        quota_reserve: 0,
        timing: Timing {
            retry_base: Duration::from_millis(1),
            retries: 4,
            time_scale: 0.05,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
        },
    }
}

fn client(base: &str) -> Client {
    Client::new(options(base)).unwrap()
}

/// A fake issue listing: `per_page` items a page (GitHub would honour `per_page=100`; a small
/// page size exercises pagination), a weak ETag per page body, `Link` next URLs carrying a
/// cursor the client cannot guess, and an optional failing page.
struct FakeList {
    base: String,
    items: Vec<Value>,
    per_page: usize,
    fail: Option<(usize, u16)>,
}

const ISSUES: &str = "/repos/o/r/issues";

impl FakeList {
    fn new(base: &str, count: u64) -> Arc<Mutex<FakeList>> {
        let items = (1..=count)
            .map(|n| json!({"number": n, "title": format!("issue {n}"), "updated_at": "2024-01-01T00:00:00Z"}))
            .collect();
        Arc::new(Mutex::new(FakeList {
            base: base.to_string(),
            items,
            per_page: 2,
            fail: None,
        }))
    }

    fn reply(&self, seen: &Seen) -> Response<Body> {
        let page = seen.page();
        let quota = quota_headers(4000, epoch() + 3000);
        if let Some((failing, status)) = self.fail
            && failing == page
        {
            return respond(status, &quota, json!({"message": "boom"}).to_string());
        }
        let start = (page - 1) * self.per_page;
        let end = (start + self.per_page).min(self.items.len());
        let body = serde_json::to_string(&self.items[start..end]).unwrap();
        let mut hasher = std::hash::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = format!("W/\"{:016x}\"", hasher.finish());
        let mut headers = quota;
        headers.push(("etag", etag.clone()));
        if seen.if_none_match.as_deref() == Some(etag.as_str()) {
            return respond(304, &headers, Body::empty());
        }
        if end < self.items.len() {
            headers.push((
                "link",
                format!(
                    "<{}{ISSUES}?state=all&per_page=100&page={}&cursor=c{}>; rel=\"next\", \
                     <{}{ISSUES}?state=all&per_page=100&page=99>; rel=\"last\"",
                    self.base,
                    page + 1,
                    page * 7,
                    self.base
                ),
            ));
        }
        respond(200, &headers, body)
    }
}

async fn fake_list(count: u64) -> (Server, Arc<Mutex<FakeList>>) {
    let mut list = None;
    let server = serve(|base| {
        let fake = FakeList::new(base, count);
        list = Some(fake.clone());
        Arc::new(move |seen: &Seen| fake.lock().unwrap().reply(seen))
    })
    .await;
    (server, list.unwrap())
}

fn summarize(item: &Value) -> Value {
    json!({"number": item["number"], "title": item["title"]})
}

async fn list_issues(
    client: &Client,
    freshness: Freshness,
    cache: &mut PageCache,
) -> Result<Vec<ListedItem>, ApiError> {
    client
        .list(ISSUES, &[("state", "all")], freshness, cache, &summarize)
        .await
}

fn numbers(items: &[ListedItem]) -> Vec<u64> {
    items
        .iter()
        .map(|i| i.summary["number"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn link_pagination_over_three_pages() {
    let (server, _) = fake_list(5).await;
    let client = client(&server.base);
    let mut cache = PageCache::default();
    let items = list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    assert_eq!(numbers(&items), vec![1, 2, 3, 4, 5]);
    assert!(
        items
            .iter()
            .all(|i| i.full.as_ref().unwrap()["title"].is_string())
    );
    let seen = server.seen();
    let targets: Vec<_> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        vec![
            "/repos/o/r/issues?state=all&per_page=100",
            "/repos/o/r/issues?state=all&per_page=100&page=2&cursor=c7",
            "/repos/o/r/issues?state=all&per_page=100&page=3&cursor=c14",
        ]
    );
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(s.accept.as_deref(), Some("application/vnd.github+json"));
        assert_eq!(s.api_version.as_deref(), Some("2022-11-28"));
        assert!(s.user_agent.as_deref().unwrap().starts_with("deltaic/"));
        assert_eq!(s.if_none_match, None, "a first listing has no ETags");
    }
    assert_eq!(cache.pages.len(), 3);
    assert_eq!(cache.pages[0].url, format!("{}{}", server.base, targets[0]));
    assert_eq!(
        cache.pages[0].next.as_deref(),
        Some(&*format!("{}{}", server.base, targets[1]))
    );
    assert_eq!(cache.pages[2].next, None);
    assert!(cache.pages.iter().all(|p| p.etag.starts_with("W/\"")));
    let stats = client.stats();
    assert_eq!(
        (stats.requests, stats.unconditional, stats.not_modified),
        (3, 3, 0)
    );
    assert_eq!(stats.quota_remaining, Some(4000));
}

#[tokio::test]
async fn unchanged_listing_is_three_304s_from_the_cache() {
    let (server, _) = fake_list(5).await;
    let client = client(&server.base);
    let mut cache = PageCache::default();
    let first = list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    let before = cache.clone();
    let second = list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    assert_eq!(numbers(&second), numbers(&first));
    assert!(second.iter().all(|i| i.full.is_none()));
    assert_eq!(
        second.iter().map(|i| &i.summary).collect::<Vec<_>>(),
        first.iter().map(|i| &i.summary).collect::<Vec<_>>()
    );
    assert_eq!(cache, before);
    let seen = server.seen();
    for (page, s) in seen[3..].iter().enumerate() {
        assert_eq!(
            s.if_none_match.as_deref(),
            Some(before.pages[page].etag.as_str())
        );
    }
    let stats = client.stats();
    assert_eq!(
        (stats.requests, stats.not_modified, stats.unconditional),
        (6, 3, 3)
    );
    // A scrub sends no ETags and gets every page in full.
    let full = list_issues(&client, Freshness::Full, &mut cache)
        .await
        .unwrap();
    assert!(full.iter().all(|i| i.full.is_some()));
    assert!(server.seen()[6..].iter().all(|s| s.if_none_match.is_none()));
}

#[tokio::test]
async fn a_change_on_page_two_only_is_fetched_fresh() {
    let (server, list) = fake_list(5).await;
    let client = client(&server.base);
    let mut cache = PageCache::default();
    list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    let old_etag = cache.pages[1].etag.clone();
    list.lock().unwrap().items[2]["title"] = json!("edited");
    let items = list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    assert_eq!(numbers(&items), vec![1, 2, 3, 4, 5]);
    let fresh: Vec<bool> = items.iter().map(|i| i.full.is_some()).collect();
    assert_eq!(fresh, vec![false, false, true, true, false]);
    assert_eq!(items[2].full.as_ref().unwrap()["title"], "edited");
    assert_eq!(items[2].summary["title"], "edited");
    assert_ne!(cache.pages[1].etag, old_etag);
    assert_eq!(cache.pages[1].items[0]["title"], "edited");
    assert_eq!(client.stats().not_modified, 2);
}

#[tokio::test]
async fn cached_pages_are_matched_by_url_not_position() {
    let (server, _) = fake_list(5).await;
    let client = client(&server.base);
    let mut cache = PageCache::default();
    list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    cache.pages.reverse();
    let items = list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    assert_eq!(numbers(&items), vec![1, 2, 3, 4, 5]);
    assert!(items.iter().all(|i| i.full.is_none()));
    assert_eq!(
        cache.pages[0].url,
        format!("{}{ISSUES}?state=all&per_page=100", server.base)
    );
}

#[tokio::test]
async fn a_500_on_page_three_fails_and_leaves_the_cache_alone() {
    let (server, list) = fake_list(5).await;
    let client = client(&server.base);
    let mut cache = PageCache::default();
    list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    let before = cache.clone();
    {
        let mut list = list.lock().unwrap();
        list.items[0]["title"] = json!("changed on page one");
        list.fail = Some((3, 500));
    }
    let err = list_issues(&client, Freshness::Conditional, &mut cache)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Http { status: 500, message, .. } if message.contains("boom") && message.contains("5 attempts")),
        "{err}"
    );
    assert_eq!(cache, before, "a failed listing must not touch the cache");
    let page3 = server.seen().iter().filter(|s| s.page() == 3).count();
    assert_eq!(page3, 1 + 5, "one in the first listing, then 1 + 4 retries");
    assert_eq!(client.stats().retries, 4);
}

#[tokio::test]
async fn not_found_and_gone_are_not_found() {
    let server = serve(|_| {
        Arc::new(|seen: &Seen| {
            let status = if seen.target.starts_with("/gone") {
                410
            } else {
                404
            };
            respond(status, &[], json!({"message": "Not Found"}).to_string())
        })
    })
    .await;
    let client = client(&server.base);
    let err = client.get("/repos/o/missing").await.unwrap_err();
    assert!(
        matches!(&err, ApiError::NotFound { status: 404, url } if url.ends_with("/repos/o/missing")),
        "{err}"
    );
    let mut cache = PageCache {
        pages: vec![CachedPage::default()],
    };
    let err = client
        .list(
            "/gone/issues",
            &[],
            Freshness::Conditional,
            &mut cache,
            &summarize,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::NotFound { status: 410, .. }),
        "{err}"
    );
    assert_eq!(
        cache.pages.len(),
        1,
        "a 410 listing is an error, never an empty list"
    );
    assert_eq!(server.seen().len(), 2, "404 is not retried");
}

#[tokio::test]
async fn get_follows_api_redirects_on_the_api_host_only() {
    let server = serve(|base| {
        let base = base.to_string();
        Arc::new(move |seen: &Seen| match seen.target.as_str() {
            "/repos/o/old" => respond(301, &[("location", format!("{base}/repositories/42"))], ""),
            "/repos/o/away" => respond(
                302,
                &[("location", "http://elsewhere.invalid/x".into())],
                "",
            ),
            _ => ok_json(json!({"id": 42})),
        })
    })
    .await;
    let client = client(&server.base);
    assert_eq!(client.get("/repos/o/old").await.unwrap()["id"], 42);
    let seen = server.seen();
    assert_eq!(seen[1].target, "/repositories/42");
    assert!(seen[1].authorization.is_some());
    let err = client.get("/repos/o/away").await.unwrap_err();
    assert!(err.to_string().contains("refusing to follow"), "{err}");
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let server = serve(|_| {
        Arc::new(|_: &Seen| {
            let mut headers = quota_headers(10, epoch() + 100);
            headers.push((
                "link",
                "<http://127.0.0.2:1/steal?page=2>; rel=\"next\"".into(),
            ));
            respond(200, &headers, "[1]")
        })
    })
    .await;
    let client = client(&server.base);
    let mut cache = PageCache::default();
    let err = client
        .list("/x", &[], Freshness::Full, &mut cache, &summarize)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("refusing the next-page link"),
        "{err}"
    );
    assert!(cache.pages.is_empty());
}

/// A server answering `first` to the first request and 200 afterwards.
async fn limited_once(first: impl Fn() -> Response<Body> + Send + Sync + 'static) -> Server {
    let count = Arc::new(Mutex::new(0));
    serve(move |_| {
        Arc::new(move |_: &Seen| {
            let mut n = count.lock().unwrap();
            *n += 1;
            if *n == 1 {
                first()
            } else {
                ok_json(json!({"ok": true}))
            }
        })
    })
    .await
}

#[tokio::test]
async fn exhausted_primary_quota_waits_for_the_reset() {
    let server = limited_once(|| {
        respond(
            403,
            &quota_headers(0, epoch() + 1),
            json!({"message": "API rate limit exceeded for user ID 1."}).to_string(),
        )
    })
    .await;
    let client = client(&server.base);
    let started = Instant::now();
    assert_eq!(client.get("/repos/o/r").await.unwrap()["ok"], true);
    let stats = client.stats();
    assert_eq!((stats.requests, stats.rate_limit_waits), (2, 1));
    // Between 1 and 2 s of real waiting, scaled by 0.05.
    assert!(
        started.elapsed() >= Duration::from_millis(45),
        "{:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn too_many_requests_with_retry_after_waits_and_succeeds() {
    let server = limited_once(|| {
        let mut headers = quota_headers(4000, epoch() + 3000);
        headers.push(("retry-after", "1".into()));
        respond(429, &headers, json!({"message": "slow down"}).to_string())
    })
    .await;
    let client = client(&server.base);
    let started = Instant::now();
    assert_eq!(client.get("/repos/o/r").await.unwrap()["ok"], true);
    assert!(started.elapsed() >= Duration::from_millis(45));
    assert_eq!(client.stats().rate_limit_waits, 1);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_reset_beyond_max_wait_is_a_budget_error() {
    let server = limited_once(|| {
        respond(
            403,
            &quota_headers(0, epoch() + 3600),
            json!({"message": "API rate limit exceeded"}).to_string(),
        )
    })
    .await;
    let client = client(&server.base);
    let err = client.get("/repos/o/r").await.unwrap_err();
    let ApiError::Budget { message } = &err else {
        panic!("{err}");
    };
    assert!(
        message.contains("primary rate limit exhausted"),
        "{message}"
    );
    assert!(message.contains("github-max-wait (60s)"), "{message}");
    assert!(message.contains("next run resumes"), "{message}");
    assert_eq!(server.seen().len(), 1, "no retry after a budget stop");
    // The exhausted quota is remembered: the next costly request stops before sending.
    let err = client.get("/repos/o/r").await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Budget { message } if message.contains("down to 0 requests")),
        "{err}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_permission_403_is_an_http_error_not_a_wait() {
    let server = serve(|_| {
        Arc::new(|_: &Seen| {
            respond(
                403,
                &quota_headers(4000, epoch() + 3000),
                json!({"message": "Resource not accessible by personal access token"}).to_string(),
            )
        })
    })
    .await;
    let client = client(&server.base);
    let err = client.get("/orgs/o/hooks").await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Http { status: 403, message, .. } if message.contains("not accessible")),
        "{err}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn download_follows_the_redirect_without_credentials() {
    let asset_host = serve(|_| {
        Arc::new(|seen: &Seen| {
            if let Some(auth) = &seen.authorization {
                return respond(
                    500,
                    &[],
                    format!("credentials leaked to the asset host: {auth}"),
                );
            }
            assert_eq!(seen.target, "/blob/1?sig=abc");
            respond(200, &[], "hello asset")
        })
    })
    .await;
    let location = format!("{}/blob/1?sig=abc", asset_host.base);
    let api = serve(move |_| {
        Arc::new(move |seen: &Seen| {
            assert!(seen.authorization.is_some());
            assert_eq!(seen.accept.as_deref(), Some("application/octet-stream"));
            let mut headers = quota_headers(4000, epoch() + 3000);
            headers.push(("location", location.clone()));
            respond(302, &headers, "")
        })
    })
    .await;
    let client = client(&api.base);
    let url = format!("{}/repos/o/r/releases/assets/1", api.base);
    let mut out = Vec::new();
    let n = client.download(&url, &mut out, Some(11)).await.unwrap();
    assert_eq!((n, out.as_slice()), (11, &b"hello asset"[..]));
    let seen = asset_host.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization, None);
    assert_eq!(
        client.stats().requests,
        1,
        "the asset host is not an API request"
    );

    // A short body fails (and an over-long one too).
    let mut out = Vec::new();
    let err = client.download(&url, &mut out, Some(20)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("short download: 11 of the 20 bytes"),
        "{err}"
    );
    let err = client
        .download(&url, &mut Vec::new(), Some(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than the 5 bytes"), "{err}");
    // The asset URL must be on the API host.
    let err = client
        .download(
            &format!("{}/blob/1", asset_host.base),
            &mut Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outside the API host"), "{err}");
}

#[tokio::test]
async fn download_of_a_missing_asset_fails() {
    let asset_host = serve(|_| Arc::new(|_: &Seen| respond(404, &[], "no such blob"))).await;
    let location = format!("{}/blob/gone", asset_host.base);
    let api = serve(move |_| {
        Arc::new(move |seen: &Seen| {
            if seen.target.ends_with("/2") {
                respond(302, &[("location", location.clone())], "")
            } else {
                respond(404, &[], json!({"message": "Not Found"}).to_string())
            }
        })
    })
    .await;
    let client = client(&api.base);
    for id in [1, 2] {
        let url = format!("/repos/o/r/releases/assets/{id}");
        let mut out = Vec::new();
        let err = client.download(&url, &mut out, Some(3)).await.unwrap_err();
        assert!(
            matches!(err, ApiError::NotFound { status: 404, .. }),
            "{err}"
        );
        assert!(out.is_empty());
    }
}

#[tokio::test]
async fn the_token_never_appears_in_errors_or_debug_output() {
    let server = serve(|_| {
        Arc::new(|seen: &Seen| {
            // A hostile or careless server echoing the credentials back.
            let echo = seen.authorization.clone().unwrap_or_default();
            let status = match seen.target.as_str() {
                "/401" => 401,
                "/500" => 500,
                "/404" => 404,
                _ => 403,
            };
            let mut headers = quota_headers(0, epoch() + 7200);
            headers.push(("x-echo", echo.clone()));
            respond(
                status,
                &headers,
                json!({"message": format!("bad {echo}")}).to_string(),
            )
        })
    })
    .await;
    let client = client(&server.base);
    let mut texts = vec![format!("{client:?}")];
    for path in ["/401", "/500", "/404", "/403"] {
        let err = client.get(path).await.unwrap_err();
        texts.push(format!("{err} {err:?}"));
    }
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let err = self::client(&closed).get("/x").await.unwrap_err();
    assert!(matches!(err, ApiError::Transport { .. }), "{err}");
    texts.push(format!("{err} {err:?}"));
    let err = Client::new(ClientOptions {
        token: Secret::new(format!("{TOKEN}\n")),
        ..options(&server.base)
    })
    .unwrap_err();
    texts.push(format!("{err:#} {err:?}"));
    assert!(
        texts[1].contains("run `deltaic github auth`"),
        "{}",
        texts[1]
    );
    for text in &texts {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(!text.contains("SECRET"), "token leaked: {text}");
    }
}

#[tokio::test]
async fn transport_errors_are_retried_then_reported() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let client = client(&closed);
    let err = client.get("/repos/o/r").await.unwrap_err();
    assert!(err.to_string().contains("after 5 attempts"), "{err}");
    assert_eq!(client.stats().retries, 4);
}

#[tokio::test]
async fn two_clients_share_the_budget_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("github-quota.json");
    let reset = epoch() + 3600;
    let (server, _) = {
        let mut list = None;
        let server = serve(|base| {
            let fake = FakeList::new(base, 1);
            list = Some(fake.clone());
            Arc::new(move |seen: &Seen| {
                let mut answer = fake.lock().unwrap().reply(seen);
                for (name, value) in quota_headers(5, reset) {
                    answer.headers_mut().insert(name, value.parse().unwrap());
                }
                answer
            })
        })
        .await;
        (server, list.unwrap())
    };
    let with_budget = || {
        Client::new(ClientOptions {
            budget_file: Some(file.clone()),
            quota_reserve: 5,
            ..options(&server.base)
        })
        .unwrap()
    };
    let (a, b) = (with_budget(), with_budget());
    let mut cache = PageCache::default();
    // A's answer says 5 left: the reserve of 5 is reached.
    list_issues(&a, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    let state: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        (state["remaining"].as_u64(), state["reset"].as_u64()),
        (Some(5), Some(reset))
    );
    // B (another unit) learns it from the file: a conditional listing still goes (304s are
    // free); a costly request would eat into the reserve and the reset is beyond max wait.
    let items = list_issues(&b, Freshness::Conditional, &mut cache)
        .await
        .unwrap();
    assert_eq!(numbers(&items), vec![1]);
    assert_eq!(b.stats().not_modified, 1);
    let err = b.get("/repos/o/r").await.unwrap_err();
    let ApiError::Budget { message } = &err else {
        panic!("{err}");
    };
    assert!(message.contains("down to 5 requests"), "{message}");
    assert!(message.contains("next run resumes"), "{message}");
    assert_eq!(server.seen().len(), 2, "B's costly request was never sent");
    assert_eq!(b.stats().requests, 1);
}

#[tokio::test]
async fn org_repos_are_sorted_case_insensitively_and_404_names_the_org() {
    let server = serve(|base| {
        let base = base.to_string();
        Arc::new(move |seen: &Seen| match seen.target.as_str() {
            "/orgs/acme/repos?type=all&per_page=100" => {
                let mut headers = quota_headers(10, epoch() + 100);
                headers.push((
                    "link",
                    format!("<{base}/organizations/1/repos?page=2>; rel=\"next\""),
                ));
                respond(
                    200,
                    &headers,
                    json!([{"name": "zeta"}, {"name": "Alpha"}]).to_string(),
                )
            }
            "/organizations/1/repos?page=2" => {
                ok_json(json!([{"name": "beta"}, {"name": "alpha"}]))
            }
            _ => respond(404, &[], json!({"message": "Not Found"}).to_string()),
        })
    })
    .await;
    let client = client(&server.base);
    assert_eq!(
        client.list_org_repos("acme").await.unwrap(),
        vec!["Alpha", "alpha", "beta", "zeta"]
    );
    let err = client.list_org_repos("nobody").await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("GitHub organisation nobody"), "{text}");
    assert!(
        text.contains("organisation not found or token lacks read:org"),
        "{text}"
    );
    assert!(client.list_org_repos("../etc").await.is_err());
}

#[test]
fn from_config_reads_the_settings_and_requires_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display();
    let yaml = |extra: &str| {
        format!(
            "settings:\n  root: {root}\n  backup-lv: vg/lv\n  github-api-url: http://127.0.0.1:9/api/v3/\n{extra}"
        )
    };
    let load =
        |text: String| crate::config::Config::from_yaml(&text, Path::new("/t.conf")).unwrap();
    let err = Client::from_config(&load(yaml(""))).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither github-token nor github-token-file is set"),
        "{err}"
    );
    let client = Client::from_config(&load(yaml("  github-token: tok-xyz\n"))).unwrap();
    let debug = format!("{client:?}");
    assert!(debug.contains("http://127.0.0.1:9/api/v3/"), "{debug}");
    assert!(debug.contains("github-quota.json"), "{debug}");
    assert!(!debug.contains("tok-xyz"), "{debug}");
    assert!(dir.path().join(".deltaic").is_dir());
    let bad = Client::new(ClientOptions {
        api_url: "ftp://x".into(),
        ..options("http://127.0.0.1:9")
    })
    .unwrap_err();
    assert!(bad.to_string().contains("github-api-url"), "{bad}");
}
