//! The fake GitHub (harness/fake_github) as a standalone server for
//! `bench/github-vs-python-github-backup`: not a test, an `#[ignore]`d entry point the benchmark
//! starts.
//!
//! ```text
//! DELTAIC_FAKE_GITHUB_BENCH=<dir> [DELTAIC_FAKE_GITHUB_REPOS=50] [DELTAIC_FAKE_GITHUB_ISSUES=200] \
//!   cargo test --release --test it serve_fake_github_for_the_benchmark -- --ignored --nocapture
//! ```
//!
//! It builds one organisation, [`ORG`], of `REPOS` public repositories, each with a small git
//! history, a wiki, two labels, two milestones (one closed), one release and `ISSUES` issues:
//! every third issue has a comment and every ninth a second one, every fourth is closed (a
//! `closed` event), every fifth is labelled (a `labeled` event), every tenth is in a milestone.
//! The data is deterministic: names, contents and every timestamp derive from the indices
//! (timestamps are in 2025, none in the future). Ids come from the fake's counter, in build
//! order. The rate limit is raised to 10 million requests an hour so that neither client
//! waits for a quota reset (a run of the peer takes about 20,000 requests).
//!
//! Protocol, all files in `<dir>`:
//! - `fake.env` (written last, atomically, when the server is ready): shell assignments
//!   `FAKE_WEB_URL`, `FAKE_API_URL`, `FAKE_PORT`, `FAKE_TOKEN`, `FAKE_ORG`, `FAKE_REPOS`,
//!   `FAKE_ISSUES`, `FAKE_COMMENTS`.
//! - create `dump`: the server writes the counts of the requests logged since the previous
//!   dump to `requests.json` (atomically), clears its log, then deletes `dump`.
//! - create `stop`: the server stops and exits.
//!
//! `requests.json`: `{"api": {"total", "not_modified", "non_304"}, "git", "other",
//! "endpoints": [{"endpoint", "total", "non_304"}, ...]}`, endpoints most requested first,
//! with owner, repository and numbers replaced by placeholders and the query reduced to its
//! parameter names (`GET /repos/{o}/{r}/issues?direction,since,sort,state`).
//!
//! Without `DELTAIC_FAKE_GITHUB_BENCH` it builds a tiny organisation, checks the counts once
//! and returns (so that `--ignored` runs of the whole suite stay quick and meaningful).

use crate::harness::fake_github::{FakeGithub, LoggedRequest, RequestKind, State, require_git};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The organisation's login.
pub const ORG: &str = "bench-org";

/// The directory variable that turns the entry point into a long-running server.
const DIR_ENV: &str = "DELTAIC_FAKE_GITHUB_BENCH";

/// A count from the environment, or its default.
fn count_env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?}: expected a whole number")),
        Err(_) => default,
    }
}

/// Serves the benchmark's organisation until `<dir>/stop` appears (module doc).
#[test]
#[ignore = "a server for bench/github-vs-python-github-backup, not a test"]
fn serve_fake_github_for_the_benchmark() {
    if !require_git() {
        return;
    }
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        // Not run by the benchmark: build a small organisation and check the bookkeeping.
        let fake = FakeGithub::start();
        let built = build_org(&fake, 2, 5);
        assert_eq!(
            built.comments, 2,
            "issue 3 of each of the 2 repositories has a comment"
        );
        fake.with(|s| {
            let repo = s.org(ORG).expect("org").repo("repo-001").expect("repo");
            assert_eq!(repo.issues.len(), 5);
            assert!(
                repo.issues
                    .values()
                    .all(|i| i.updated_at < Timestamp::now())
            );
        });
        return;
    };
    let dir = Path::new(&dir);
    let repos = count_env("DELTAIC_FAKE_GITHUB_REPOS", 50);
    let issues = count_env("DELTAIC_FAKE_GITHUB_ISSUES", 200);
    let fake = FakeGithub::start();
    eprintln!("fake GitHub: building {ORG}: {repos} repositories x {issues} issues ...");
    let built = build_org(&fake, repos, issues);
    fake.clear_requests();
    let port = fake
        .web_url()
        .rsplit(':')
        .next()
        .expect("a port in the web URL")
        .to_string();
    let env = format!(
        "FAKE_WEB_URL={}\nFAKE_API_URL={}\nFAKE_PORT={port}\nFAKE_TOKEN={}\nFAKE_ORG={ORG}\n\
         FAKE_REPOS={repos}\nFAKE_ISSUES={issues}\nFAKE_COMMENTS={}\n",
        fake.web_url(),
        fake.api_url(),
        fake.token(),
        built.comments,
    );
    write_atomically(&dir.join("fake.env"), env.as_bytes());
    eprintln!("fake GitHub: serving at {}", fake.web_url());
    loop {
        if dir.join("stop").exists() {
            break;
        }
        let dump = dir.join("dump");
        if dump.exists() {
            let requests = fake.requests();
            fake.clear_requests();
            let counts = serde_json::to_vec_pretty(&counts(&requests)).expect("JSON");
            write_atomically(&dir.join("requests.json"), &counts);
            std::fs::remove_file(&dump).expect("remove the dump request");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("fake GitHub: stopped");
}

/// What [`build_org`] made.
struct Built {
    /// Issue comments in all.
    comments: u64,
}

/// Builds [`ORG`] (module doc): git data first, then the conversation, then every timestamp is
/// set from the indices.
fn build_org(fake: &FakeGithub, repos: u64, issues: u64) -> Built {
    let names: Vec<String> = (1..=repos).map(|r| format!("repo-{r:03}")).collect();
    fake.with(|s| {
        s.rate.set(10_000_000, Duration::from_secs(3600));
        let org = s.add_org(ORG);
        org.description = Some("The benchmark's organisation".to_string());
        for name in &names {
            org.add_repo(name).description = Some(format!("Benchmark repository {name}"));
        }
    });
    for name in &names {
        fake.create_git_repo(ORG, name);
        let readme = format!("# {name}\n\nA repository of the benchmark.\n");
        let code = (0..200)
            .map(|line| format!("int f{line}(int x) {{ return x * {line}; }}\n"))
            .collect::<String>();
        fake.push_files(
            ORG,
            name,
            "main",
            &[("README.md", &readme), ("src/lib.c", &code)],
            "Initial import",
        );
        fake.create_wiki(ORG, name);
    }
    let mut comments = 0;
    fake.with(|s| {
        for (index, name) in names.iter().enumerate() {
            comments += fill_repo(s, index as i64, name, issues);
        }
    });
    Built { comments }
}

/// The conversation of repository number `index`, with deterministic timestamps; returns the
/// number of comments made.
fn fill_repo(s: &mut State, index: i64, name: &str, issues: u64) -> u64 {
    let at = |t: Timestamp, minutes: i64| t + SignedDuration::from_mins(minutes);
    let created = at(
        "2025-01-01T00:00:00Z".parse().expect("timestamp"),
        index * 24 * 60,
    );
    let repo = s.repo_mut(ORG, name);
    repo.created_at = created;
    repo.updated_at = created;
    repo.pushed_at = Some(at(created, 1));
    repo.add_label("bug", "d73a4a");
    repo.add_label("enhancement", "a2eeef");
    for (number, title) in [(1, "v1.0"), (2, "v0.9")] {
        let milestone = repo.add_milestone(title, Some("maintainer"));
        if number == 2 {
            milestone.close();
        }
        milestone.created_at = at(created, 2);
        milestone.updated_at = at(created, 3);
        milestone.closed_at = milestone.closed_at.map(|_| at(created, 3));
    }
    let release = repo.add_release(Some("v1.0"), "Version 1.0");
    release.created_at = at(created, 4);
    release.published_at = Some(at(created, 4));
    let mut comments = 0;
    for i in 1..=issues {
        let opened = at(created, 10 + i as i64 * 5);
        let user = format!("user-{}", i % 17);
        let issue = repo.add_issue(&format!("Issue {i} of {name}"), Some(&user));
        issue.created_at = opened;
        let mut last = opened;
        let mut step = |issue: &mut crate::harness::fake_github::state::Issue| {
            last = at(last, 1);
            issue.updated_at = last;
            last
        };
        if i % 5 == 0 {
            issue.labels.push("bug".to_string());
            issue.event("labeled", Some("maintainer"), None);
            let t = step(issue);
            issue.events.last_mut().expect("event").created_at = t;
        }
        if i % 10 == 0 {
            issue.milestone = Some(1);
        }
        for k in 0..u64::from(i % 3 == 0) + u64::from(i % 9 == 0) {
            issue.comment(Some("user-1"), &format!("Comment {k} on issue {i}."));
            let t = step(issue);
            let comment = issue.comments.last_mut().expect("comment");
            comment.created_at = t;
            comment.updated_at = t;
            comments += 1;
        }
        if i % 4 == 0 {
            issue.close(Some("maintainer"));
            let t = step(issue);
            issue.events.last_mut().expect("event").created_at = t;
            issue.closed_at = Some(t);
        }
        issue.updated_at = last;
    }
    comments
}

/// The request counts of `requests.json` (module doc).
fn counts(requests: &[LoggedRequest]) -> Value {
    let api: Vec<&LoggedRequest> = requests
        .iter()
        .filter(|r| r.kind == RequestKind::Api)
        .collect();
    let not_modified = api.iter().filter(|r| r.status == 304).count();
    let mut endpoints: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in requests {
        let entry = endpoints.entry(endpoint(r)).or_default();
        entry.0 += 1;
        entry.1 += u64::from(r.status != 304);
    }
    let mut endpoints: Vec<(String, (u64, u64))> = endpoints.into_iter().collect();
    endpoints.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    json!({
        "api": {
            "total": api.len(),
            "not_modified": not_modified,
            "non_304": api.len() - not_modified,
        },
        "git": requests.iter().filter(|r| r.kind == RequestKind::Git).count(),
        "other": requests
            .iter()
            .filter(|r| !matches!(r.kind, RequestKind::Api | RequestKind::Git))
            .count(),
        "endpoints": endpoints
            .into_iter()
            .map(|(endpoint, (total, non_304))| {
                json!({"endpoint": endpoint, "total": total, "non_304": non_304})
            })
            .collect::<Vec<_>>(),
    })
}

/// A request's endpoint without its particulars: `GET /repos/{o}/{r}/issues/{n}/events`, with
/// the query's parameter names (not `page` or `per_page`) after `?`; git requests as
/// `git GET /{o}/{r}.git/info/refs` (`{r}.wiki.git` for wikis).
fn endpoint(r: &LoggedRequest) -> String {
    let mut segments: Vec<String> = r
        .path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    match r.kind {
        RequestKind::Api => {
            if segments.first().is_some_and(|s| s == "repos") && segments.len() >= 3 {
                segments[1] = "{o}".to_string();
                segments[2] = "{r}".to_string();
            } else if segments.first().is_some_and(|s| s == "orgs") && segments.len() >= 2 {
                segments[1] = "{org}".to_string();
            }
        }
        RequestKind::Git if segments.len() >= 2 => {
            segments[0] = "{o}".to_string();
            segments[1] = if segments[1].ends_with(".wiki.git") {
                "{r}.wiki.git".to_string()
            } else {
                "{r}.git".to_string()
            };
        }
        _ => {}
    }
    for s in &mut segments {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            *s = "{n}".to_string();
        }
    }
    let mut params: Vec<String> = r
        .uri
        .split_once('?')
        .map(|(_, q)| crate::harness::fake_github::routes::parse_query(q))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k != "page" && k != "per_page")
        .collect();
    params.sort();
    params.dedup();
    let kind = if r.kind == RequestKind::Git {
        "git "
    } else {
        ""
    };
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join(","))
    };
    format!("{kind}{} /{}{query}", r.method, segments.join("/"))
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so a reader polling for
/// the file never sees it half written.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}
