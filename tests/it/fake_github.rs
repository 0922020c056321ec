//! Self-tests of the fake GitHub (harness/fake_github): that it behaves as GitHub documents,
//! talking to it over real HTTP with reqwest and real git.

use crate::harness::fake_github::git_http::base64_encode;
use crate::harness::fake_github::git_repos::{git, refs, try_git};
use crate::harness::fake_github::{
    DevicePoll, FakeGithub, FaultKind, RequestKind, TOKEN, require_git, ts,
};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A client that does not follow redirects (so the asset redirect can be inspected).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// One answer, read completely.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value ("" when absent).
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
            .unwrap_or("")
    }

    /// The URL of `rel` in the `Link` header.
    fn link(&self, rel: &str) -> Option<String> {
        self.header("link").split(", ").find_map(|part| {
            let (url, r) = part.split_once("; ")?;
            (r == format!("rel=\"{rel}\"")).then(|| url.trim_matches(['<', '>']).to_string())
        })
    }

    /// An integer header.
    fn number(&self, name: &str) -> i64 {
        self.header(name)
            .parse()
            .unwrap_or_else(|_| panic!("header {name} is not a number: {:?}", self.header(name)))
    }
}

/// `GET url` with the token and extra headers.
async fn get(url: &str, extra: &[(&str, &str)]) -> Answer {
    let mut headers = vec![("authorization", format!("Bearer {TOKEN}"))];
    headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    raw_get(url, &headers).await
}

/// `GET url` with exactly these headers.
async fn raw_get(url: &str, headers: &[(&str, String)]) -> Answer {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, HeaderValue::from_str(value).expect("header value"));
    }
    let response = request.send().await.expect("request to the fake");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body").to_vec(),
    }
}

/// The numbers of the issues in a listing page.
fn numbers(page: &Value) -> Vec<u64> {
    page.as_array()
        .expect("a JSON array")
        .iter()
        .map(|i| i["number"].as_u64().expect("number"))
        .collect()
}

/// A fake with organisation `acme`, repository `widgets` and `n` issues #1..#n.
fn fake_with_issues(n: usize) -> FakeGithub {
    let fake = FakeGithub::start();
    fake.with(|s| {
        let repo = s.add_org("acme").add_repo("widgets");
        for i in 1..=n {
            repo.add_issue(&format!("Issue {i}"), Some("alice"));
        }
    });
    fake
}

#[tokio::test]
async fn pagination_follows_link_headers_and_per_page() {
    let fake = fake_with_issues(5);
    let repo_id = fake.with(|s| s.repo_mut("acme", "widgets").id);
    let first = format!(
        "{}/repos/acme/widgets/issues?state=all&per_page=2",
        fake.api_url()
    );
    let page1 = get(&first, &[]).await;
    assert_eq!(page1.status, 200);
    // Newest first, two per page; Link URLs are absolute and use GitHub's /repositories/{id}.
    assert_eq!(numbers(&page1.json()), [5, 4]);
    let next = page1.link("next").expect("a next link");
    assert_eq!(
        next,
        format!(
            "{}/repositories/{repo_id}/issues?state=all&per_page=2&page=2",
            fake.api_url()
        )
    );
    assert!(page1.link("last").unwrap().ends_with("&page=3"));
    assert_eq!(page1.link("prev"), None);
    assert_eq!(page1.link("first"), None);

    let page2 = get(&next, &[]).await;
    assert_eq!(numbers(&page2.json()), [3, 2]);
    assert!(page2.link("prev").unwrap().ends_with("&page=1"));
    assert!(page2.link("first").unwrap().ends_with("&page=1"));
    // GitHub's order: prev, next, last, first.
    let rels: Vec<&str> = page2
        .header("link")
        .split(", ")
        .map(|p| p.split_once("; ").unwrap().1)
        .collect();
    assert_eq!(
        rels,
        [
            "rel=\"prev\"",
            "rel=\"next\"",
            "rel=\"last\"",
            "rel=\"first\""
        ]
    );

    let page3 = get(&page2.link("next").unwrap(), &[]).await;
    assert_eq!(numbers(&page3.json()), [1]);
    assert_eq!(page3.link("next"), None);
    assert_eq!(page3.link("last"), None);

    // Defaults: 30 per page, at most 100, no Link when one page holds everything.
    let fake = fake_with_issues(105);
    let base = format!("{}/repos/acme/widgets/issues", fake.api_url());
    let default = get(&base, &[]).await;
    assert_eq!(numbers(&default.json()).len(), 30);
    assert!(default.link("last").unwrap().ends_with("page=4"));
    let capped = get(&format!("{base}?per_page=500"), &[]).await;
    assert_eq!(numbers(&capped.json()).len(), 100);
    let single = get(
        &format!("{}/repos/acme/widgets/labels", fake.api_url()),
        &[],
    )
    .await;
    assert_eq!(single.header("link"), "");
    // The test override forces small pages whatever the client asks.
    fake.with(|s| s.max_per_page = Some(2));
    let forced = get(&format!("{base}?per_page=100"), &[]).await;
    assert_eq!(numbers(&forced.json()), [105, 104]);
    assert!(forced.link("last").unwrap().ends_with("page=53"));
}

#[tokio::test]
async fn etags_answer_304_per_page_without_costing_quota() {
    let fake = fake_with_issues(4);
    let page1_url = format!("{}/repos/acme/widgets/issues?per_page=2", fake.api_url());
    let page1 = get(&page1_url, &[]).await;
    let page2_url = page1.link("next").unwrap();
    let page2 = get(&page2_url, &[]).await;
    let (etag1, etag2) = (
        page1.header("etag").to_string(),
        page2.header("etag").to_string(),
    );
    assert!(etag1.starts_with("W/\"") && etag1.ends_with('"'), "{etag1}");
    assert_ne!(etag1, etag2, "each page has its own ETag");
    let remaining = page2.number("x-ratelimit-remaining");

    for (url, etag) in [(&page1_url, &etag1), (&page2_url, &etag2)] {
        let again = get(url, &[("if-none-match", etag)]).await;
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), etag.as_str());
        assert_eq!(again.header("link"), "", "a 304 carries no Link");
        assert_eq!(
            again.number("x-ratelimit-remaining"),
            remaining,
            "304s are free"
        );
    }
    // The strong form matches too (weak comparison).
    let strong = etag1.trim_start_matches("W/");
    assert_eq!(
        get(&page1_url, &[("if-none-match", strong)]).await.status,
        304
    );

    // An edit to the oldest issue changes page 2 only.
    fake.with(|s| {
        s.repo_mut("acme", "widgets").issue_mut(1).touch().title = "Edited".into();
    });
    assert_eq!(
        get(&page1_url, &[("if-none-match", &etag1)]).await.status,
        304
    );
    let changed = get(&page2_url, &[("if-none-match", &etag2)]).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), etag2);
    assert_eq!(changed.number("x-ratelimit-remaining"), remaining - 1);
    assert_eq!(changed.json()[1]["title"], "Edited");

    let api = |r: &crate::harness::fake_github::LoggedRequest| r.kind == RequestKind::Api;
    assert_eq!(fake.count(|r| api(r) && r.status == 304), 4);
    assert_eq!(fake.count(|r| api(r) && r.status != 304), 3);
    assert_eq!(fake.count(|r| r.conditional && r.status == 200), 1);
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path == "/repos/acme/widgets/issues"
                && r.uri.starts_with("/api/v3/repositories/"))
    );
    fake.clear_requests();
    assert_eq!(
        get(&page1_url, &[("if-none-match", &etag1)]).await.status,
        304
    );
    assert_eq!(
        fake.count(|r| r.status != 304),
        0,
        "a no-change pass: only 304s"
    );
}

#[tokio::test]
async fn rate_limit_exhaustion_then_reset() {
    let fake = fake_with_issues(1);
    fake.with(|s| s.rate.set(3, Duration::from_secs(2)));
    let url = format!("{}/repos/acme/widgets", fake.api_url());
    for expected in [2, 1, 0] {
        let a = get(&url, &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.number("x-ratelimit-remaining"), expected);
        assert_eq!(a.number("x-ratelimit-limit"), 3);
        assert_eq!(a.number("x-ratelimit-used"), 3 - expected);
        assert_eq!(a.header("x-ratelimit-resource"), "core");
    }
    let refused = get(&url, &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.number("x-ratelimit-remaining"), 0);
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("rate limit exceeded")
    );
    let reset = refused.number("x-ratelimit-reset");
    let now = jiff::Timestamp::now().as_second();
    assert!(
        reset > now - 1 && reset <= now + 2,
        "reset {reset}, now {now}"
    );

    // GET /rate_limit still answers and costs nothing.
    let limits = get(&format!("{}/rate_limit", fake.api_url()), &[]).await;
    assert_eq!(limits.status, 200);
    assert_eq!(limits.json()["resources"]["core"]["remaining"], 0);
    assert_eq!(limits.json()["rate"]["reset"], reset);

    // After the reset time the window starts afresh.
    let wait = (reset - jiff::Timestamp::now().as_second()).max(0) as u64 + 1;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let after = get(&url, &[]).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.number("x-ratelimit-remaining"), 2);
    assert!(after.number("x-ratelimit-reset") > reset);

    // GitHub may also answer 429.
    fake.with(|s| {
        s.rate.used = s.rate.limit;
        s.rate.exhausted_status = 429;
    });
    assert_eq!(get(&url, &[]).await.status, 429);
}

#[tokio::test]
async fn injected_faults_secondary_limits_and_errors() {
    let fake = fake_with_issues(3);
    fake.with(|s| {
        s.max_per_page = Some(1);
        s.inject(
            "/repos/acme/widgets/issues",
            1,
            FaultKind::SecondaryLimit { retry_after: 7 },
        );
        s.inject(
            "/repos/acme/widgets/issues?page=3",
            2,
            FaultKind::Status(500),
        );
        s.inject(
            "/repos/acme/widgets/milestones",
            1,
            FaultKind::TooManyRequests { retry_after: 3 },
        );
        s.inject("/repos/acme/widgets/labels", 1, FaultKind::Status(404));
    });
    let url = format!("{}/repos/acme/widgets/issues", fake.api_url());
    let limited = get(&url, &[]).await;
    assert_eq!(limited.status, 403);
    assert_eq!(limited.header("retry-after"), "7");
    assert!(
        limited.json()["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
    assert!(
        limited.number("x-ratelimit-remaining") > 0,
        "not a primary limit"
    );
    let ok = get(&url, &[]).await;
    assert_eq!(ok.status, 200, "the fault applies once");

    // The page-3 fault matches its page through the /repositories alias, twice.
    let page2 = get(&ok.link("next").unwrap(), &[]).await;
    assert_eq!(page2.status, 200);
    let page3_url = page2.link("next").unwrap();
    assert_eq!(get(&page3_url, &[]).await.status, 500);
    assert_eq!(get(&page3_url, &[]).await.status, 500);
    assert_eq!(get(&page3_url, &[]).await.status, 200);

    let too_many = get(
        &format!("{}/repos/acme/widgets/milestones", fake.api_url()),
        &[],
    )
    .await;
    assert_eq!(too_many.status, 429);
    assert_eq!(too_many.header("retry-after"), "3");
    let missing = get(
        &format!("{}/repos/acme/widgets/labels", fake.api_url()),
        &[],
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "Not Found");

    // A delay holds the answer back.
    fake.with(|s| {
        s.inject(
            "/repos/acme/widgets",
            1,
            FaultKind::Delay(Duration::from_millis(300)),
        )
    });
    let started = std::time::Instant::now();
    assert_eq!(
        get(&format!("{}/repos/acme/widgets", fake.api_url()), &[])
            .await
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn asset_download_redirects_to_another_host_without_credentials() {
    let fake = FakeGithub::start();
    let asset_id = fake.with(|s| {
        let repo = s.add_org("acme").add_repo("widgets");
        let release = repo.add_release(Some("v1.0"), "One");
        release
            .add_asset("tool.tar.gz", "application/gzip", b"asset bytes")
            .id
    });
    let releases = get(
        &format!("{}/repos/acme/widgets/releases", fake.api_url()),
        &[],
    )
    .await;
    let asset_url = releases.json()[0]["assets"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        asset_url,
        format!(
            "{}/repos/acme/widgets/releases/assets/{asset_id}",
            fake.api_url()
        )
    );

    // Without Accept: application/octet-stream, the asset's JSON.
    let meta = get(&asset_url, &[]).await;
    assert_eq!(meta.status, 200);
    assert_eq!(meta.json()["size"], 11);
    assert_eq!(meta.json()["content_type"], "application/gzip");

    let redirect = get(&asset_url, &[("accept", "application/octet-stream")]).await;
    assert_eq!(redirect.status, 302);
    let location = redirect.header("location").to_string();
    assert!(
        location.starts_with(&format!("{}/download/{asset_id}?", fake.asset_url())),
        "{location}"
    );
    assert_ne!(fake.asset_url(), fake.web_url());

    let bytes = raw_get(&location, &[]).await;
    assert_eq!(bytes.status, 200);
    assert_eq!(bytes.body, b"asset bytes");
    // A client that forwards the token is refused, as S3 refuses a second auth mechanism.
    let leaked = get(&location, &[]).await;
    assert_eq!(leaked.status, 400);
    let downloads = fake.downloads();
    assert_eq!(downloads.len(), 2);
    assert!(!downloads[0].authorization && downloads[0].status == 200);
    assert_eq!(downloads[0].asset_id, asset_id);
    assert!(downloads[1].authorization && downloads[1].status == 400);
    // A tampered signature is refused.
    let tampered = location.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(raw_get(&tampered, &[]).await.status, 403);
    assert_eq!(fake.count(|r| r.kind == RequestKind::Asset), 3);
}

#[tokio::test]
async fn credentials_are_checked() {
    let fake = fake_with_issues(1);
    let url = format!("{}/repos/acme/widgets", fake.api_url());
    let wrong = raw_get(&url, &[("authorization", "Bearer ghp_wrong".to_string())]).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["message"], "Bad credentials");
    let none = raw_get(&url, &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["message"], "Requires authentication");
    for accepted in [
        format!("token {TOKEN}"),
        format!("Bearer {TOKEN}"),
        format!(
            "Basic {}",
            base64_encode(format!("{TOKEN}:x-oauth-basic").as_bytes())
        ),
        format!(
            "Basic {}",
            base64_encode(format!("x-access-token:{TOKEN}").as_bytes())
        ),
    ] {
        assert_eq!(
            raw_get(&url, &[("authorization", accepted.clone())])
                .await
                .status,
            200,
            "{accepted}"
        );
    }
    // 401s do not cost quota.
    assert_eq!(fake.with(|s| s.rate.used), 4);
    // The token can be changed between runs.
    assert_eq!(fake.token(), TOKEN);
    fake.with(|s| s.token = "ghp_rotated".into());
    assert_eq!(get(&url, &[]).await.status, 401);
    let rotated = raw_get(&url, &[("authorization", "token ghp_rotated".to_string())]).await;
    assert_eq!(rotated.status, 200);
    fake.with(|s| s.token = TOKEN.into());
    // An unknown API version is refused; the documented one is accepted.
    assert_eq!(
        get(&url, &[("x-github-api-version", "2022-11-28")])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&url, &[("x-github-api-version", "1999-01-01")])
            .await
            .status,
        400
    );

    let user = get(&format!("{}/user", fake.api_url()), &[]).await;
    assert_eq!(user.json()["login"], "fake-admin");
    assert_eq!(user.header("x-oauth-scopes"), "read:org, repo");
    fake.with(|s| s.scopes = None);
    let fine_grained = get(&format!("{}/user", fake.api_url()), &[]).await;
    assert!(fine_grained.headers.get("x-oauth-scopes").is_none());
}

#[tokio::test]
async fn since_filters_by_updated_at() {
    let fake = FakeGithub::start();
    fake.with(|s| {
        let repo = s.add_org("acme").add_repo("widgets");
        for (i, day) in [(1, "01"), (2, "02"), (3, "03")] {
            let issue = repo.add_issue(&format!("Issue {i}"), None);
            issue.updated_at = ts(&format!("2024-01-{day}T00:00:00Z"));
            let c = issue.comment(Some("bob"), "old");
            c.updated_at = ts("2024-01-01T00:00:00Z");
            let c = issue.comment(Some("bob"), "new");
            c.updated_at = ts("2024-02-01T00:00:00Z");
        }
        // `comment` bumped updated_at: set the issues' times again.
        for (n, day) in [(1, "01"), (2, "02"), (3, "03")] {
            repo.issue_mut(n).updated_at = ts(&format!("2024-01-{day}T00:00:00Z"));
        }
    });
    let url = format!(
        "{}/repos/acme/widgets/issues?state=all&sort=updated&direction=asc",
        fake.api_url()
    );
    let all = get(&url, &[]).await.json();
    assert_eq!(numbers(&all), [1, 2, 3]);
    assert_eq!(
        all[0]["updated_at"], "2024-01-01T00:00:00Z",
        "GitHub's timestamp format"
    );
    assert_eq!(all[0]["user"], Value::Null, "a ghost user is null");
    let since = get(&format!("{url}&since=2024-01-02T00:00:00Z"), &[])
        .await
        .json();
    assert_eq!(numbers(&since), [2, 3], "since keeps updated_at >= since");
    let bad = get(&format!("{url}&since=yesterday"), &[]).await;
    assert_eq!(bad.status, 422);

    let comments = format!("{}/repos/acme/widgets/issues/2/comments", fake.api_url());
    let all = get(&comments, &[]).await.json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let recent = get(&format!("{comments}?since=2024-01-15T00:00:00Z"), &[])
        .await
        .json();
    assert_eq!(recent.as_array().unwrap().len(), 1);
    assert_eq!(recent[0]["body"], "new");
    let repo_wide = format!(
        "{}/repos/acme/widgets/issues/comments?since=2024-01-15T00:00:00Z",
        fake.api_url()
    );
    assert_eq!(
        get(&repo_wide, &[]).await.json().as_array().unwrap().len(),
        3
    );
}

#[tokio::test]
async fn milestones_default_to_open_only() {
    let fake = FakeGithub::start();
    fake.with(|s| {
        let repo = s.add_org("acme").add_repo("widgets");
        repo.add_milestone("v1", Some("alice")).due_on = Some(ts("2024-03-01T00:00:00Z"));
        repo.add_milestone("v0", None).close();
        repo.add_milestone("v2", Some("alice"));
        repo.add_issue("in v1", None).milestone = Some(1);
    });
    let url = format!("{}/repos/acme/widgets/milestones", fake.api_url());
    let titles = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        titles(get(&url, &[]).await.json()),
        ["v1", "v2"],
        "default state=open, due date first"
    );
    assert_eq!(
        titles(get(&format!("{url}?state=all"), &[]).await.json()),
        ["v1", "v0", "v2"]
    );
    let closed = get(&format!("{url}?state=closed"), &[]).await.json();
    assert_eq!(titles(closed.clone()), ["v0"]);
    assert_eq!(closed[0]["creator"], Value::Null);
    assert!(closed[0]["closed_at"].is_string());
    let open = get(&url, &[]).await.json();
    assert_eq!(open[0]["open_issues"], 1);
}

#[tokio::test]
async fn issues_pulls_teams_and_hooks_have_githubs_shape() {
    let fake = FakeGithub::start();
    fake.with(|s| {
        let org = s.add_org("acme");
        let repo = org.add_repo("widgets");
        repo.add_label("bug", "d73a4a");
        let issue = repo.add_issue("Broken", Some("alice"));
        issue.labels.push("bug".into());
        issue.assignees = vec!["bob".into(), "carol".into()];
        issue.close(None);
        let pull = repo.add_pull("Fix", Some("bob"));
        pull.review(Some("alice"), "APPROVED", "LGTM");
        pull.review_comment(Some("alice"), "src/lib.rs", "nit");
        repo.add_hook("https://hooks.example/x", Some("s3cret"));
        repo.add_issue("Gone", None);
        repo.delete_issue(3);
        org.add_hook("https://hooks.example/org", Some("hidden"));
        let team = org.add_team("Core Devs");
        team.members = vec!["bob".into(), "alice".into()];
        team.repos = vec![("widgets".into(), "push".into())];
        org.add_repo("no-issues").has_issues = false;
        let repo = org.repo_mut("widgets");
        repo.add_commit_comment("c0ffee", Some("alice"), "first");
        repo.add_commit_comment("c0ffee", None, "second").path = Some("README.md".into());
        repo.issue_mut(1).reopen(Some("alice")).close(Some("bob"));
    });
    let api = fake.api_url();
    let issues = get(&format!("{api}/repos/acme/widgets/issues?state=all"), &[])
        .await
        .json();
    assert_eq!(numbers(&issues), [2, 1]);
    assert!(issues[0]["pull_request"]["url"].is_string());
    assert!(issues[1].get("pull_request").is_none());
    assert_eq!(issues[1]["labels"][0]["name"], "bug");
    assert_eq!(issues[1]["assignee"]["login"], "bob");
    assert_eq!(issues[1]["assignees"][1]["login"], "carol");
    assert_eq!(issues[1]["state"], "closed");
    assert!(
        issues[1].get("closed_by").is_none(),
        "listings carry no closed_by"
    );
    let single = get(&format!("{api}/repos/acme/widgets/issues/1"), &[])
        .await
        .json();
    assert!(single.get("closed_by").is_some());
    let events = get(&format!("{api}/repos/acme/widgets/issues/1/events"), &[])
        .await
        .json();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["closed", "reopened", "closed"]);
    assert_eq!(events[0]["actor"], Value::Null);
    assert_eq!(
        single["closed_by"]["login"], "bob",
        "closed_by: the last closer"
    );
    let comments = get(&format!("{api}/repos/acme/widgets/comments"), &[])
        .await
        .json();
    assert_eq!(comments[0]["body"], "first", "commit comments oldest first");
    assert_eq!(comments[1]["user"], Value::Null);
    assert_eq!(comments[1]["path"], "README.md");
    assert_eq!(comments[1]["commit_id"], "c0ffee");

    assert_eq!(
        get(&format!("{api}/repos/acme/widgets/issues/3"), &[])
            .await
            .status,
        410
    );
    assert_eq!(
        get(&format!("{api}/repos/acme/widgets/issues/9"), &[])
            .await
            .status,
        404
    );
    assert_eq!(
        get(&format!("{api}/repos/acme/no-issues/issues"), &[])
            .await
            .status,
        410
    );
    assert_eq!(
        get(&format!("{api}/repos/acme/nope"), &[]).await.status,
        404
    );
    assert_eq!(get(&format!("{api}/orgs/nobody"), &[]).await.status, 404);

    let reviews = get(&format!("{api}/repos/acme/widgets/pulls/2/reviews"), &[])
        .await
        .json();
    assert_eq!(reviews[0]["state"], "APPROVED");
    let review_comments = get(&format!("{api}/repos/acme/widgets/pulls/2/comments"), &[])
        .await
        .json();
    assert_eq!(review_comments[0]["path"], "src/lib.rs");
    assert_eq!(
        review_comments[0]["pull_request_review_id"],
        reviews[0]["id"]
    );
    assert_eq!(
        get(&format!("{api}/repos/acme/widgets/pulls/1/reviews"), &[])
            .await
            .status,
        404
    );

    let hooks = get(&format!("{api}/repos/acme/widgets/hooks"), &[])
        .await
        .json();
    assert_eq!(hooks[0]["config"]["secret"], "********");
    assert_eq!(hooks[0]["config"]["url"], "https://hooks.example/x");
    let org_hooks = get(&format!("{api}/orgs/acme/hooks"), &[]).await.json();
    assert_eq!(org_hooks[0]["config"]["secret"], "********");
    assert!(
        !String::from_utf8_lossy(&get(&format!("{api}/orgs/acme/hooks"), &[]).await.body)
            .contains("hidden")
    );

    // Teams: the members and repos links of the team object work (legacy-free team URL).
    let teams = get(&format!("{api}/orgs/acme/teams"), &[]).await.json();
    assert_eq!(teams[0]["slug"], "core-devs");
    let members_url = teams[0]["members_url"]
        .as_str()
        .unwrap()
        .replace("{/member}", "");
    let members = get(&members_url, &[]).await.json();
    let logins: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["login"].as_str().unwrap())
        .collect();
    assert_eq!(logins, ["alice", "bob"]);
    let repos = get(teams[0]["repositories_url"].as_str().unwrap(), &[])
        .await
        .json();
    assert_eq!(repos[0]["name"], "widgets");
    assert_eq!(repos[0]["permissions"]["push"], true);
    assert_eq!(repos[0]["permissions"]["admin"], false);
    let by_slug = get(&format!("{api}/orgs/acme/teams/core-devs/members"), &[])
        .await
        .json();
    assert_eq!(by_slug, members);

    let org_repos = get(&format!("{api}/orgs/acme/repos?sort=full_name"), &[])
        .await
        .json();
    let names: Vec<&str> = org_repos
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["no-issues", "widgets"]);
    assert_eq!(
        org_repos[1]["clone_url"],
        format!("{}/acme/widgets.git", fake.web_url())
    );
    assert_eq!(
        get(&format!("{api}/orgs/acme"), &[]).await.json()["login"],
        "acme"
    );
}

/// Posts a form to the device-flow endpoint, asking for JSON.
async fn device_post(fake: &FakeGithub, path: &str, form: &[(&str, &str)], json: bool) -> String {
    let mut request = client()
        .post(format!("{}{path}", fake.web_url()))
        .form(form);
    if json {
        request = request.header("accept", "application/json");
    }
    request.send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn device_flow_follows_its_script() {
    let fake = FakeGithub::start();
    let client_id = fake.with(|s| {
        s.device.interval = 0;
        s.device.slow_down_increment = 0;
        s.device.script = [DevicePoll::Pending, DevicePoll::SlowDown, DevicePoll::Grant].into();
        s.device.client_id.clone()
    });
    let code: Value = serde_json::from_str(
        &device_post(
            &fake,
            "/login/device/code",
            &[("client_id", &client_id), ("scope", "repo read:org")],
            true,
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        code["verification_uri"],
        format!("{}/login/device", fake.web_url())
    );
    assert_eq!(code["interval"], 0);
    assert_eq!(
        code["user_code"],
        fake.with(|s| s.device.grants[0].user_code.clone())
    );
    let device_code = code["device_code"].as_str().unwrap().to_string();
    let form = [
        ("client_id", client_id.as_str()),
        ("device_code", device_code.as_str()),
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
    ];
    let poll = || device_post(&fake, "/login/oauth/access_token", &form, true);
    let error = |text: String| serde_json::from_str::<Value>(&text).unwrap()["error"].clone();
    assert_eq!(error(poll().await), "authorization_pending");
    assert_eq!(error(poll().await), "slow_down");
    let granted: Value = serde_json::from_str(&poll().await).unwrap();
    assert_eq!(granted["access_token"], TOKEN);
    assert_eq!(granted["scope"], "repo,read:org");
    assert_eq!(
        error(poll().await),
        "incorrect_device_code",
        "a code is used once"
    );

    // Without Accept: application/json the answer is form-encoded.
    let form_answer = device_post(
        &fake,
        "/login/device/code",
        &[("client_id", &client_id)],
        false,
    )
    .await;
    assert!(
        form_answer.contains("device_code=") && form_answer.contains("&interval=0"),
        "{form_answer}"
    );
    let wrong = device_post(&fake, "/login/device/code", &[("client_id", "nope")], true).await;
    assert_eq!(error(wrong), "incorrect_client_credentials");

    // Denied and expired codes stay dead; polling too fast answers slow_down.
    fake.with(|s| {
        s.device.script = [DevicePoll::Denied].into();
        s.device.interval = 60;
        s.device.slow_down_increment = 5;
    });
    let code: Value = serde_json::from_str(
        &device_post(
            &fake,
            "/login/device/code",
            &[("client_id", &client_id)],
            true,
        )
        .await,
    )
    .unwrap();
    let device_code = code["device_code"].as_str().unwrap().to_string();
    let form = [
        ("client_id", client_id.as_str()),
        ("device_code", device_code.as_str()),
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
    ];
    let poll = || device_post(&fake, "/login/oauth/access_token", &form, true);
    assert_eq!(error(poll().await), "access_denied");
    let fast: Value = serde_json::from_str(&poll().await).unwrap();
    assert_eq!(fast["error"], "access_denied", "a denied code stays denied");
    fake.with(|s| s.device.script = [DevicePoll::Pending, DevicePoll::Expired].into());
    let code: Value = serde_json::from_str(
        &device_post(
            &fake,
            "/login/device/code",
            &[("client_id", &client_id)],
            true,
        )
        .await,
    )
    .unwrap();
    let device_code = code["device_code"].as_str().unwrap().to_string();
    let form = [
        ("client_id", client_id.as_str()),
        ("device_code", device_code.as_str()),
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
    ];
    let poll = || device_post(&fake, "/login/oauth/access_token", &form, true);
    assert_eq!(error(poll().await), "authorization_pending");
    let fast: Value = serde_json::from_str(&poll().await).unwrap();
    assert_eq!(
        fast["error"], "slow_down",
        "polled faster than the 60 s interval"
    );
    assert_eq!(fast["interval"], 65);
    fake.with(|s| s.device.grants.last_mut().unwrap().last_poll = None);
    assert_eq!(error(poll().await), "expired_token");
    // 4 device codes asked for, 9 polls, 1 refused client id.
    assert_eq!(fake.count(|r| r.kind == RequestKind::Login), 14);
    assert_eq!(
        fake.with(|s| s.rate.used),
        0,
        "the login host does not touch the API quota"
    );
}

/// Runs git with the fake's isolated settings plus `args`, returning (success, stderr).
fn run_git(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .output()
        .expect("run git");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `-c http.extraHeader=Authorization: Basic ...` for the token.
fn auth_header(token: &str) -> String {
    let basic = base64_encode(format!("x-access-token:{token}").as_bytes());
    format!("http.extraHeader=Authorization: Basic {basic}")
}

#[test]
fn git_mirror_over_http_needs_the_token() {
    if !require_git() {
        return;
    }
    let fake = FakeGithub::start();
    fake.with(|s| {
        let org = s.add_org("acme");
        org.add_repo("widgets").private = true;
        org.add_repo("empty");
        org.add_repo("nowiki");
    });
    fake.create_git_repo("acme", "widgets");
    let first = fake.push_files(
        "acme",
        "widgets",
        "main",
        &[("README.md", "hello\n")],
        "first",
    );
    let second = fake.push_files(
        "acme",
        "widgets",
        "main",
        &[("src/lib.rs", "// code\n")],
        "second",
    );
    fake.push_files(
        "acme",
        "widgets",
        "feature",
        &[("f.txt", "f\n")],
        "feature work",
    );
    fake.set_ref("acme", "widgets", "refs/pull/1/head", &first);
    fake.create_wiki("acme", "widgets");
    fake.create_git_repo("acme", "empty");
    fake.create_git_repo("acme", "nowiki");
    let origin = fake.repo_path("acme", "widgets");
    assert_eq!(git(&origin, &["rev-parse", "main~1"]), first);

    let work = tempfile::tempdir().unwrap();
    let url = fake.clone_url("acme", "widgets");
    let header = auth_header(TOKEN);

    // Refused without credentials, and with a wrong token.
    let (ok, stderr) = run_git(work.path(), &["clone", "--mirror", &url, "anon"]);
    assert!(!ok, "an anonymous clone must fail");
    assert!(
        stderr.contains("could not read Username") || stderr.contains("Authentication failed"),
        "{stderr}"
    );
    let (ok, _) = run_git(
        work.path(),
        &[
            "-c",
            &auth_header("ghp_wrong"),
            "clone",
            "--mirror",
            &url,
            "bad",
        ],
    );
    assert!(!ok, "a clone with a wrong token must fail");
    assert_eq!(
        fake.count(|r| r.kind == RequestKind::Git && r.status == 401 && r.authorization),
        1,
        "the wrong token was sent and refused"
    );

    // A mirror with the token has every ref of the origin, including GitHub's pull refs.
    let (ok, stderr) = run_git(
        work.path(),
        &["-c", &header, "clone", "--mirror", &url, "mirror.git"],
    );
    assert!(ok, "{stderr}");
    let mirror = work.path().join("mirror.git");
    assert_eq!(refs(&mirror), refs(&origin));
    assert_eq!(refs(&mirror)["refs/heads/main"], second);
    assert!(refs(&mirror).contains_key("refs/pull/1/head"));

    // Force-pushing and deleting branches: the mirror follows after an update with --prune.
    let (old, new) = fake.force_push(
        "acme",
        "widgets",
        "main",
        &[("README.md", "rewritten\n")],
        "rewrite",
    );
    assert_eq!(old, second);
    fake.delete_branch("acme", "widgets", "feature");
    let (ok, stderr) = run_git(&mirror, &["-c", &header, "remote", "update", "--prune"]);
    assert!(ok, "{stderr}");
    let after: BTreeMap<String, String> = refs(&mirror);
    assert_eq!(after, refs(&origin));
    assert_eq!(after["refs/heads/main"], new);
    assert!(!after.contains_key("refs/heads/feature"));
    assert_eq!(
        git(&origin, &["rev-parse", "main~1"]),
        first,
        "the rewrite replaced only the tip"
    );

    // The wiki is served at <repo>.wiki.git; a missing wiki is "not found"; empty repos clone.
    let wiki_url = url.replace(".git", ".wiki.git");
    let (ok, stderr) = run_git(
        work.path(),
        &["-c", &header, "clone", "--mirror", &wiki_url, "wiki.git"],
    );
    assert!(ok, "{stderr}");
    assert!(
        try_git(
            &work.path().join("wiki.git"),
            &["cat-file", "-e", "master:Home.md"]
        )
        .is_some()
    );
    let nowiki = fake
        .clone_url("acme", "nowiki")
        .replace(".git", ".wiki.git");
    let (ok, stderr) = run_git(
        work.path(),
        &["-c", &header, "clone", "--mirror", &nowiki, "nowiki.git"],
    );
    assert!(!ok && stderr.contains("not found"), "{stderr}");
    let (ok, stderr) = run_git(
        work.path(),
        &[
            "-c",
            &header,
            "clone",
            "--mirror",
            &fake.clone_url("acme", "empty"),
            "empty.git",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(refs(&work.path().join("empty.git")).is_empty());

    // git requests are logged apart from the API, and cost no API quota.
    assert!(fake.count(|r| r.kind == RequestKind::Git && r.status == 401) >= 2);
    assert!(
        fake.count(|r| r.kind == RequestKind::Git
            && r.path == "/acme/widgets.git/git-upload-pack"
            && r.status == 200)
            >= 2
    );
    assert_eq!(fake.with(|s| s.rate.used), 0);

    // A fault on the git endpoint makes the fetch fail once.
    fake.with(|s| s.inject("/acme/widgets.git/info/refs", 1, FaultKind::Status(500)));
    let (ok, _) = run_git(&mirror, &["-c", &header, "remote", "update", "--prune"]);
    assert!(!ok, "the injected 500 must fail the fetch");
    let (ok, stderr) = run_git(&mirror, &["-c", &header, "remote", "update", "--prune"]);
    assert!(ok, "{stderr}");
}

#[test]
fn git_credentials_through_askpass() {
    if !require_git() {
        return;
    }
    let fake = FakeGithub::start();
    fake.with(|s| {
        s.add_org("acme").add_repo("widgets");
    });
    fake.create_git_repo("acme", "widgets");
    let tip = fake.push_files("acme", "widgets", "main", &[("a", "b")], "one");
    let work = tempfile::tempdir().unwrap();
    let askpass = work.path().join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\n\
         case \"$1\" in Username*) echo x-access-token ;; *) echo \"$FAKE_TOKEN\" ;; esac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new("git")
        .args([
            "clone",
            "--mirror",
            &fake.clone_url("acme", "widgets"),
            "m.git",
        ])
        .current_dir(work.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", &askpass)
        .env("FAKE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(refs(&work.path().join("m.git"))["refs/heads/main"], tip);
    // The public repository is still refused anonymously while git_require_auth is on.
    assert!(fake.count(|r| r.kind == RequestKind::Git && r.status == 401) >= 1);
}
