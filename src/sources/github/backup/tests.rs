//! Backup scenarios on the in-memory GitHub ([`FakeApi`]): layout and bytes, change
//! detection and its request counts, garbage collection and its guards, assets, hostile names,
//! scrub, teams.

use super::fake::{FakeApi, FakeGithub, Request};
use super::*;
use crate::util::file_time::{mtime_secs, set_mtime};
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

const ORG: &str = "acme";
const REPO: &str = "widget";
const BASE: &str = "/repos/acme/widget";
const ASSET_URL: &str = "https://api.example/repos/acme/widget/releases/assets/70";

fn ts(day: u32, hour: u32) -> String {
    format!("2020-01-{day:02}T{hour:02}:00:00Z")
}

fn secs(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_second()
}

/// "Now" of the first run: after every sample timestamp.
fn now() -> i64 {
    secs("2020-02-01T00:00:00Z")
}

const DAY: i64 = 86_400;

fn user(login: &str) -> Value {
    json!({"login": login, "id": 7, "type": "User", "site_admin": false})
}

fn issue(number: u64, created_day: u32, updated_day: u32) -> Value {
    json!({
        "number": number, "id": 1000 + number, "title": format!("Issue {number}"),
        "body": format!("Body {number}"), "state": "open", "user": user("carol"),
        "assignee": null, "assignees": [], "labels": [], "milestone": null, "comments": 0,
        "closed_at": null, "created_at": ts(created_day, 0), "updated_at": ts(updated_day, 0),
        "repository_url": "https://api.example/repos/acme/widget",
    })
}

/// Adds an issue with its comments and events listings.
fn add_issue(gh: &mut FakeGithub, issue: Value, comments: Vec<Value>, events: Vec<Value>) {
    let n = issue["number"].as_u64().unwrap();
    gh.listings
        .insert(format!("{BASE}/issues/{n}/comments"), comments);
    gh.listings
        .insert(format!("{BASE}/issues/{n}/events"), events);
    gh.listings
        .entry(format!("{BASE}/issues"))
        .or_default()
        .push(issue);
}

/// The sample repository: five issues (#1 closed, by a ghost, non-ASCII; #2 a pull request)
/// on three pages of two, an open and a closed milestone, commit comments on two commits, a
/// release with an asset and an untagged draft, a label and a hook.
fn sample() -> FakeGithub {
    let mut gh = FakeGithub {
        page_size: 2,
        ..Default::default()
    };
    gh.objects.insert(
        BASE.into(),
        json!({"name": REPO, "description": "Widgets \u{2013} all of them", "has_issues": true,
               "has_wiki": false, "homepage": null, "private": false,
               "clone_url": "https://example/acme/widget.git"}),
    );
    let mut first = issue(1, 1, 2);
    first["user"] = Value::Null;
    first["title"] = json!("Caf\u{e9} \u{2615} \u{1f600}");
    first["body"] = json!("na\u{ef}ve\nline");
    first["state"] = json!("closed");
    first["closed_at"] = json!(ts(2, 9));
    first["updated_at"] = json!(ts(2, 10));
    first["created_at"] = json!(ts(1, 10));
    first["comments"] = json!(1);
    first["labels"] = json!([{"name": "bug", "color": "f00"}]);
    first["milestone"] = json!({"number": 2, "title": "Old"});
    first["assignee"] = user("alice");
    first["assignees"] = json!([user("alice"), user("bob")]);
    add_issue(
        &mut gh,
        first,
        vec![json!({"id": 1, "body": "Merci \u{e9}", "user": null,
                    "created_at": ts(1, 12), "updated_at": ts(1, 12)})],
        vec![
            json!({"id": 1, "actor": null, "event": "labeled", "commit_id": null,
                   "created_at": ts(1, 11)}),
            json!({"id": 2, "actor": user("alice"), "event": "closed", "commit_id": "abc123",
                   "created_at": ts(2, 9)}),
        ],
    );
    let mut pr = issue(2, 3, 4);
    pr["pull_request"] = json!({"url": "https://api.example/repos/acme/widget/pulls/2"});
    add_issue(&mut gh, pr, vec![], vec![]);
    gh.listings.insert(
        format!("{BASE}/pulls/2/reviews"),
        vec![
            json!({"id": 31, "user": user("bob"), "body": "LGTM", "state": "APPROVED",
                    "commit_id": "def456", "submitted_at": ts(4, 0)}),
        ],
    );
    gh.listings.insert(
        format!("{BASE}/pulls/2/comments"),
        vec![
            json!({"id": 41, "pull_request_review_id": 31, "user": user("bob"),
                    "body": "nit", "path": "src/lib.rs", "diff_hunk": "@@ -1 +1 @@",
                    "commit_id": "def456", "original_commit_id": "def456", "line": 3,
                    "original_line": 3, "side": "RIGHT", "start_line": null,
                    "start_side": null, "created_at": ts(4, 0), "updated_at": ts(4, 0)}),
        ],
    );
    for (n, day) in [(3, 5), (4, 7), (5, 9)] {
        add_issue(&mut gh, issue(n, day, day + 1), vec![], vec![]);
    }
    gh.listings.insert(
        format!("{BASE}/milestones"),
        vec![
            json!({"number": 1, "title": "Next", "description": null, "state": "open",
                   "creator": user("alice"), "due_on": ts(30, 8), "created_at": ts(1, 0),
                   "updated_at": ts(3, 0)}),
            json!({"number": 2, "title": "Old", "description": "Done", "state": "closed",
                   "creator": null, "due_on": null, "created_at": ts(1, 0),
                   "updated_at": ts(2, 0)}),
        ],
    );
    let comment = |id: u64, sha: &str, day: u32| {
        json!({"id": id, "commit_id": sha, "body": format!("c{id}"), "path": null,
               "position": null, "line": null, "user": user("carol"),
               "created_at": ts(day, 0), "updated_at": ts(day, 0)})
    };
    gh.listings.insert(
        format!("{BASE}/comments"),
        vec![
            comment(1, "aaa1", 2),
            comment(2, "bbb2", 3),
            comment(3, "aaa1", 4),
        ],
    );
    gh.listings.insert(
        format!("{BASE}/releases"),
        vec![
            json!({"id": 8, "tag_name": "v1.0", "name": "One", "body": "First", "draft": false,
                   "prerelease": false, "created_at": ts(5, 0), "published_at": ts(5, 1),
                   "assets": [{"id": 70, "name": "widget.tar.gz", "url": ASSET_URL,
                               "size": 5, "content_type": "application/gzip",
                               "updated_at": ts(5, 2), "label": ""}]}),
            json!({"id": 9, "tag_name": null, "name": "Draft", "body": null, "draft": true,
                   "created_at": ts(6, 0), "published_at": null, "assets": []}),
        ],
    );
    gh.assets.insert(ASSET_URL.into(), b"hello".to_vec());
    gh.listings.insert(
        format!("{BASE}/labels"),
        vec![
            json!({"id": 5, "name": "bug", "color": "f00", "description": "Broken",
                    "default": true, "url": "https://api.example/x"}),
        ],
    );
    gh.listings.insert(
        format!("{BASE}/hooks"),
        vec![
            json!({"id": 12, "type": "Repository", "name": "web", "active": true,
                    "events": ["push"], "config": {"url": "https://ci.example/hook",
                    "content_type": "json", "secret": "********", "insecure_ssl": "0"},
                    "created_at": ts(1, 0), "updated_at": ts(1, 0),
                    "last_response": {"code": 200, "status": "active"}}),
        ],
    );
    gh
}

fn run(api: &FakeApi, root: &Path, scrub: bool, now: i64) -> anyhow::Result<Summary> {
    crate::sources::github::api::runtime()
        .unwrap()
        .block_on(backup_repo_metadata(
            api,
            root,
            ORG,
            REPO,
            Options { scrub, now },
        ))
}

fn unit_dir(root: &Path) -> PathBuf {
    root.join("github").join(ORG).join(REPO)
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(unit_dir(root).join(rel)).unwrap()
}

fn mtime(root: &Path, rel: &str) -> i64 {
    mtime_secs(&unit_dir(root).join(rel)).unwrap()
}

/// Every file under `dir`: relative path → (inode, mtime in ns, bytes).
fn tree(dir: &Path) -> BTreeMap<String, (u64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let time = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
                out.insert(rel, (meta.ino(), time, std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// Pages requested per listing path, with their statuses.
fn pages(log: &[Request]) -> BTreeMap<String, Vec<u16>> {
    let mut out: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for r in log {
        if let Request::Page { path, status, .. } = r {
            out.entry(path.clone()).or_default().push(*status);
        }
    }
    out
}

/// The paths of the listing calls, in order.
fn lists(log: &[Request]) -> Vec<String> {
    log.iter()
        .filter_map(|r| match r {
            Request::List(path) => Some(path.clone()),
            _ => None,
        })
        .collect()
}

const LISTINGS: [&str; 6] = [
    "issues",
    "milestones",
    "comments",
    "releases",
    "labels",
    "hooks",
];

#[test]
fn first_backup_writes_the_original_layout_and_bytes() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    let summary = run(&api, root.path(), false, now()).unwrap();

    let files: Vec<String> = tree(&unit_dir(root.path())).into_keys().collect();
    assert_eq!(
        files,
        [
            "comments/aaa1.json",
            "comments/bbb2.json",
            "hooks.json",
            "info.json",
            "issues/1.json",
            "issues/2.json",
            "issues/3.json",
            "issues/4.json",
            "issues/5.json",
            "labels.json",
            "milestones/1.json",
            "milestones/2.json",
            "pulls/2/review-comments.json",
            "pulls/2/reviews.json",
            "releases/untagged-9/info.json",
            "releases/v1.0/assets/widget.tar.gz",
            "releases/v1.0/info.json",
        ]
    );
    assert_eq!(summary.files_written, files.len() as u64);
    assert_eq!(summary.bytes_downloaded, 5);
    assert_eq!(summary.scrub_mismatches, 0);

    // Expected bytes checked against python3 json.dumps(obj, sort_keys=True) + "\n".
    assert_eq!(
        read(root.path(), "info.json"),
        "{\"description\": \"Widgets \\u2013 all of them\", \"has_issues\": true, \
         \"has_wiki\": false, \"homepage\": null, \"private\": false}\n"
    );
    assert_eq!(
        read(root.path(), "issues/1.json"),
        "{\"assignee\": \"alice\", \"assignees\": [\"alice\", \"bob\"], \
         \"body\": \"na\\u00efve\\nline\", \"closed_at\": \"2020-01-02T09:00:00+00:00\", \
         \"closed_by\": \"alice\", \"comments\": [{\"body\": \"Merci \\u00e9\", \
         \"created_at\": \"2020-01-01T12:00:00+00:00\", \"updated_at\": \
         \"2020-01-01T12:00:00+00:00\", \"user\": null}], \"created_at\": \
         \"2020-01-01T10:00:00+00:00\", \"events\": [{\"actor\": null, \"commit_id\": null, \
         \"created_at\": \"2020-01-01T11:00:00+00:00\", \"event\": \"labeled\"}, \
         {\"actor\": \"alice\", \"commit_id\": \"abc123\", \"created_at\": \
         \"2020-01-02T09:00:00+00:00\", \"event\": \"closed\"}], \"labels\": [\"bug\"], \
         \"milestone\": 2, \"number\": 1, \"state\": \"closed\", \"title\": \
         \"Caf\\u00e9 \\u2615 \\ud83d\\ude00\", \"updated_at\": \"2020-01-02T10:00:00+00:00\", \
         \"user\": null}\n"
    );
    assert_eq!(
        read(root.path(), "milestones/2.json"),
        "{\"created_at\": \"2020-01-01T00:00:00+00:00\", \"creator\": null, \
         \"description\": \"Done\", \"due_on\": null, \"state\": \"closed\", \"title\": \"Old\", \
         \"updated_at\": \"2020-01-02T00:00:00+00:00\"}\n"
    );
    assert_eq!(
        read(root.path(), "comments/aaa1.json"),
        "[{\"body\": \"c1\", \"commit_id\": \"aaa1\", \"created_at\": \
         \"2020-01-02T00:00:00+00:00\", \"line\": null, \"path\": null, \"position\": null, \
         \"updated_at\": \"2020-01-02T00:00:00+00:00\", \"user\": \"carol\"}, {\"body\": \"c3\", \
         \"commit_id\": \"aaa1\", \"created_at\": \"2020-01-04T00:00:00+00:00\", \"line\": null, \
         \"path\": null, \"position\": null, \"updated_at\": \"2020-01-04T00:00:00+00:00\", \
         \"user\": \"carol\"}]\n"
    );
    assert_eq!(
        read(root.path(), "releases/v1.0/info.json"),
        "{\"created_at\": \"2020-01-05T00:00:00+00:00\", \"description\": \"First\", \
         \"draft\": false, \"name\": \"One\", \"published_at\": \"2020-01-05T01:00:00+00:00\", \
         \"tag_name\": \"v1.0\"}\n"
    );
    assert_eq!(
        read(root.path(), "labels.json"),
        "[{\"color\": \"f00\", \"description\": \"Broken\", \"name\": \"bug\"}]\n"
    );
    assert_eq!(
        read(root.path(), "hooks.json"),
        "[{\"active\": true, \"config\": {\"content_type\": \"json\", \"insecure_ssl\": \"0\", \
         \"secret\": \"********\", \"url\": \"https://ci.example/hook\"}, \"created_at\": \
         \"2020-01-01T00:00:00+00:00\", \"events\": [\"push\"], \"id\": 12, \"name\": \"web\", \
         \"type\": \"Repository\", \"updated_at\": \"2020-01-01T00:00:00+00:00\"}]\n"
    );
    assert_eq!(
        read(root.path(), "pulls/2/reviews.json"),
        "[{\"body\": \"LGTM\", \"commit_id\": \"def456\", \"id\": 31, \"state\": \"APPROVED\", \
         \"submitted_at\": \"2020-01-04T00:00:00+00:00\", \"user\": \"bob\"}]\n"
    );
    assert!(read(root.path(), "pulls/2/review-comments.json").contains("\"in_reply_to_id\": null"));
    assert_eq!(
        read(root.path(), "issues/2.json"),
        "{\"assignee\": null, \"assignees\": [], \"body\": \"Body 2\", \"closed_at\": null, \
         \"closed_by\": null, \"comments\": [], \"created_at\": \"2020-01-03T00:00:00+00:00\", \
         \"events\": [], \"labels\": [], \"milestone\": null, \"number\": 2, \"state\": \"open\", \
         \"title\": \"Issue 2\", \"updated_at\": \"2020-01-04T00:00:00+00:00\", \
         \"user\": \"carol\"}\n"
    );

    // mtimes are the items' updated_at.
    assert_eq!(mtime(root.path(), "issues/1.json"), secs(&ts(2, 10)));
    assert_eq!(mtime(root.path(), "milestones/1.json"), secs(&ts(3, 0)));
    assert_eq!(mtime(root.path(), "comments/aaa1.json"), secs(&ts(4, 0)));
    assert_eq!(mtime(root.path(), "pulls/2/reviews.json"), secs(&ts(4, 0)));

    // The listing caches live outside the unit.
    let cache = root.path().join(".deltaic/cache/github/acme/widget");
    for listing in LISTINGS {
        assert!(cache.join(format!("{listing}.json")).is_file(), "{listing}");
    }
}

#[test]
fn closed_milestones_are_kept() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    run(&api, root.path(), false, now()).unwrap();
    assert!(read(root.path(), "milestones/2.json").contains("\"state\": \"closed\""));
    // A later run (304 pages from the cache) keeps it too.
    run(&api, root.path(), false, now() + 3600).unwrap();
    assert!(unit_dir(root.path()).join("milestones/2.json").exists());
}

#[test]
fn a_deleted_older_commit_comment_leaves_its_file() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    run(&api, root.path(), false, now()).unwrap();
    // c1 (older) goes; c3, the newest on that commit, stays: the newest updated_at is the same.
    api.edit(|gh| {
        gh.listings
            .get_mut(&format!("{BASE}/comments"))
            .unwrap()
            .retain(|c| c["id"] != 1);
    });
    let summary = run(&api, root.path(), false, now() + 3600).unwrap();
    assert_eq!(summary.files_written, 1);
    let aaa = read(root.path(), "comments/aaa1.json");
    assert!(!aaa.contains("\"c1\"") && aaa.contains("\"c3\""), "{aaa}");
    assert_eq!(mtime(root.path(), "comments/aaa1.json"), secs(&ts(4, 0)));
}

#[test]
fn an_unchanged_repository_costs_one_request_per_listing_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    run(&api, root.path(), false, now()).unwrap();
    let before = tree(root.path());
    api.take_log();

    for later in [3600, 7200] {
        let summary = run(&api, root.path(), false, now() + later).unwrap();
        assert_eq!(summary.files_written, 0);
        assert_eq!(summary.files_removed, 0);
        let log = api.take_log();
        // One GET (the repository), one listing call per listing, nothing per issue, no
        // downloads.
        assert_eq!(
            log.iter().filter(|r| matches!(r, Request::Get(_))).count(),
            1
        );
        assert!(!log.iter().any(|r| matches!(r, Request::Download(_))));
        let expected: Vec<String> = LISTINGS.iter().map(|l| format!("{BASE}/{l}")).collect();
        assert_eq!(lists(&log), expected);
        let pages = pages(&log);
        // The incremental issue listing is one page, primed by the first run: every page of
        // every listing is a 304, from the second run on.
        assert_eq!(pages[&format!("{BASE}/issues")].len(), 1);
        for (listing, statuses) in &pages {
            assert!(
                statuses.iter().all(|s| *s == 304),
                "{listing}: {statuses:?}"
            );
        }
    }
    // The cache files changed, the backed-up files did not.
    let after = tree(root.path());
    let unit = |t: &BTreeMap<String, (u64, i64, Vec<u8>)>| {
        t.iter()
            .filter(|(k, _)| k.starts_with("github/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(unit(&before), unit(&after));
}

#[test]
fn an_edit_beyond_page_one_is_rewritten_with_its_new_mtime() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    run(&api, root.path(), false, now()).unwrap();
    let before = tree(&unit_dir(root.path()));
    let edit = |n: usize, title: &str, day: u32| {
        api.edit(|gh| {
            let issue = &mut gh.listings.get_mut(&format!("{BASE}/issues")).unwrap()[n - 1];
            issue["title"] = json!(title);
            issue["updated_at"] = json!(ts(day, 0));
        })
    };

    // Issue #3 is on page 2 of the complete listing; the incremental listing finds it.
    edit(3, "Edited three", 20);
    api.take_log();
    let summary = run(&api, root.path(), false, now() + 3600).unwrap();
    assert_eq!(summary.files_written, 1);
    assert!(read(root.path(), "issues/3.json").contains("Edited three"));
    assert_eq!(mtime(root.path(), "issues/3.json"), secs(&ts(20, 0)));
    let requested = pages(&api.take_log());
    assert!(requested.contains_key(&format!("{BASE}/issues/3/events")));
    assert!(
        !requested
            .keys()
            .any(|p| p.contains("/issues/1/") || p.contains("/issues/4/"))
    );
    let after = tree(&unit_dir(root.path()));
    for (file, old) in &before {
        if file != "issues/3.json" {
            assert_eq!(&after[file], old, "{file} untouched");
        }
    }

    // Eight days later the complete listing runs: page 1 and 3 are 304, page 2 holds #4.
    edit(4, "Edited four", 21);
    let summary = run(&api, root.path(), false, now() + 8 * DAY).unwrap();
    assert_eq!(summary.files_written, 1);
    assert!(read(root.path(), "issues/4.json").contains("Edited four"));
    assert_eq!(mtime(root.path(), "issues/4.json"), secs(&ts(21, 0)));
    // Complete listing in created order: [1, 2], [3, 4], [5]; #3 changed since the last
    // complete listing, so page 2 is fresh anyway. Then, as the high-water mark moved, the
    // next run's `since` listing is primed (one page), so that the next run costs nothing.
    assert_eq!(
        pages(&api.take_log())[&format!("{BASE}/issues")],
        [304, 200, 304, 200]
    );
}

#[test]
fn a_deleted_issue_is_removed_only_after_a_complete_listing() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    run(&api, root.path(), false, now()).unwrap();
    api.edit(|gh| {
        let issues = gh.listings.get_mut(&format!("{BASE}/issues")).unwrap();
        // #4 and the pull request #2 are deleted; #3 vanishes from the listing only (as if
        // the pages shifted under a concurrent deletion) but still exists.
        let three = issues.iter().find(|i| i["number"] == 3).unwrap().clone();
        issues.retain(|i| ![2, 3, 4].contains(&i["number"].as_u64().unwrap()));
        gh.objects.insert(format!("{BASE}/issues/3"), three);
    });
    let dir = unit_dir(root.path());

    // An incremental listing never deletes.
    run(&api, root.path(), false, now() + 3600).unwrap();
    assert!(dir.join("issues/4.json").exists());
    assert!(dir.join("pulls/2/reviews.json").exists());

    api.take_log();
    let summary = run(&api, root.path(), false, now() + 8 * DAY).unwrap();
    assert!(!dir.join("issues/4.json").exists());
    assert!(!dir.join("issues/2.json").exists());
    assert!(!dir.join("pulls/2").exists());
    assert!(
        dir.join("issues/3.json").exists(),
        "still exists on GitHub: kept"
    );
    assert!(dir.join("issues/1.json").exists());
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    let log = api.take_log();
    for n in [2, 3, 4] {
        assert!(
            log.contains(&Request::Get(format!("{BASE}/issues/{n}"))),
            "#{n} checked"
        );
    }
}

#[test]
fn a_failed_listing_deletes_nothing() {
    for status in [404, 500] {
        let root = tempfile::tempdir().unwrap();
        let api = FakeApi::new(sample());
        run(&api, root.path(), false, now()).unwrap();
        let before = tree(&unit_dir(root.path()));
        api.edit(|gh| {
            gh.listings
                .get_mut(&format!("{BASE}/issues"))
                .unwrap()
                .retain(|i| i["number"] != 1);
            gh.listings
                .get_mut(&format!("{BASE}/milestones"))
                .unwrap()
                .retain(|m| m["number"] != 1);
            // The second page of issues and the first of milestones fail.
            gh.fail_list.insert(format!("{BASE}/issues"), (1, status));
            gh.fail_list
                .insert(format!("{BASE}/milestones"), (0, status));
        });
        // A scrub lists completely, so it would collect if it were allowed to.
        let err = run(&api, root.path(), true, now() + 3600).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("listing {BASE}/issues")),
            "{message}"
        );
        assert!(
            message.contains(&format!("listing {BASE}/milestones")),
            "{message}"
        );
        assert_eq!(
            tree(&unit_dir(root.path())),
            before,
            "HTTP {status}: nothing touched"
        );

        // Once the listings work again, the deletions are collected.
        api.edit(|gh| gh.fail_list.clear());
        run(&api, root.path(), true, now() + 7200).unwrap();
        let dir = unit_dir(root.path());
        assert!(!dir.join("issues/1.json").exists());
        assert!(!dir.join("milestones/1.json").exists());
    }
}

#[test]
fn a_quota_stop_ends_the_unit_at_once() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    api.edit(|gh| {
        gh.fail_list
            .insert(format!("{BASE}/issues/3/events"), (0, 0));
    });
    let err = run(&api, root.path(), false, now()).unwrap_err();
    assert!(format!("{err:#}").contains("budget"), "{err:#}");
    let listed = lists(&api.take_log());
    // Issues 1 and 2 were done, then nothing more was asked.
    assert_eq!(listed.last().unwrap(), &format!("{BASE}/issues/3/events"));
    assert!(
        !listed
            .iter()
            .any(|l| l.ends_with("/milestones") || l.contains("/issues/4/"))
    );
    assert!(unit_dir(root.path()).join("issues/2.json").exists());
    assert!(
        !root
            .path()
            .join(".deltaic/cache/github/acme/widget/issues.json")
            .exists()
    );
}

#[test]
fn an_asset_is_downloaded_with_its_mtime_and_content_type() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    run(&api, root.path(), false, now()).unwrap();
    let rel = "releases/v1.0/assets/widget.tar.gz";
    let path = unit_dir(root.path()).join(rel);
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    assert_eq!(mtime(root.path(), rel), secs(&ts(5, 2)));
    assert_eq!(
        xattr::get(&path, releases::CONTENT_TYPE_XATTR)
            .unwrap()
            .unwrap(),
        b"application/gzip"
    );

    // A new upload (new updated_at and size) is fetched; the xattr survives the new inode.
    api.edit(|gh| {
        gh.assets.insert(ASSET_URL.into(), b"hello, world".to_vec());
        let release = &mut gh.listings.get_mut(&format!("{BASE}/releases")).unwrap()[0];
        release["assets"][0]["size"] = json!(12);
        release["assets"][0]["updated_at"] = json!(ts(25, 0));
    });
    api.take_log();
    let summary = run(&api, root.path(), false, now() + 3600).unwrap();
    assert_eq!(summary.bytes_downloaded, 12);
    assert_eq!(std::fs::read(&path).unwrap(), b"hello, world");
    assert_eq!(mtime(root.path(), rel), secs(&ts(25, 0)));
    assert_eq!(
        xattr::get(&path, releases::CONTENT_TYPE_XATTR)
            .unwrap()
            .unwrap(),
        b"application/gzip"
    );
    assert_eq!(
        api.take_log()
            .iter()
            .filter(|r| matches!(r, Request::Download(_)))
            .count(),
        1
    );
}

#[test]
fn a_failed_asset_download_fails_the_unit_and_leaves_no_partial_file() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    api.edit(|gh| {
        gh.fail_download.insert(ASSET_URL.into());
    });
    let err = run(&api, root.path(), false, now()).unwrap_err();
    assert!(format!("{err:#}").contains("widget.tar.gz"), "{err:#}");
    let files = tree(root.path());
    assert!(!files.keys().any(|f| f.contains("widget.tar.gz")));
    assert!(!files.keys().any(|f| f.contains(".backup-tmp")));
    // The other steps still ran.
    assert!(unit_dir(root.path()).join("issues/5.json").exists());
    assert!(unit_dir(root.path()).join("labels.json").exists());

    // An existing asset survives a failed re-download untouched.
    api.edit(|gh| gh.fail_download.clear());
    run(&api, root.path(), false, now()).unwrap();
    let path = unit_dir(root.path()).join("releases/v1.0/assets/widget.tar.gz");
    let old = std::fs::metadata(&path).unwrap().ino();
    api.edit(|gh| {
        gh.fail_download.insert(ASSET_URL.into());
        gh.assets.insert(ASSET_URL.into(), b"HELLO".to_vec());
    });
    assert!(run(&api, root.path(), true, now()).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), old);
    assert!(!tree(root.path()).keys().any(|f| f.contains(".backup-tmp")));
}

#[test]
fn hostile_tag_and_asset_names_cannot_escape() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("backup");
    std::fs::create_dir(&work).unwrap();
    let abs = format!("/deltaic-test-abs-{}", std::process::id());
    let api = FakeApi::new(sample());
    api.edit(|gh| {
        let release = |id: u64, tag: &str, asset: &str| {
            json!({"id": id, "tag_name": tag, "name": null, "body": null, "draft": false,
                   "created_at": ts(5, 0), "published_at": null,
                   "assets": [{"id": id * 10, "name": asset, "url": ASSET_URL, "size": 5,
                               "content_type": null, "updated_at": ts(5, 0)}]})
        };
        gh.listings.insert(
            format!("{BASE}/releases"),
            vec![
                release(1, "../x", "ok.bin"),
                release(2, &abs, "ok.bin"),
                release(3, "a/../../b", "ok.bin"),
                release(4, "nested/v2", "../evil"),
                release(5, "v5", ".."),
            ],
        );
    });
    let summary = run(&api, &work, false, now()).unwrap();
    let releases: Vec<String> = tree(&unit_dir(&work).join("releases"))
        .into_keys()
        .collect();
    assert_eq!(
        releases,
        [
            "nested/v2/assets/unsafe-name-40",
            "nested/v2/info.json",
            "unsafe-tag-1/assets/ok.bin",
            "unsafe-tag-1/info.json",
            "unsafe-tag-2/assets/ok.bin",
            "unsafe-tag-2/info.json",
            "unsafe-tag-3/assets/ok.bin",
            "unsafe-tag-3/info.json",
            "v5/assets/unsafe-name-50",
            "v5/info.json",
        ]
    );
    assert_eq!(summary.warnings.len(), 5, "{:?}", summary.warnings);
    // Nothing outside the backup root.
    let outside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["backup"]);
    assert!(!Path::new(&abs).exists());
    assert!(read(&work, "releases/unsafe-tag-1/info.json").contains("\"tag_name\": \"../x\""));
}

#[test]
fn scrub_counts_and_repairs_a_corrupted_issue_file() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    run(&api, root.path(), false, now()).unwrap();
    let dir = unit_dir(root.path());
    let good = read(root.path(), "issues/3.json");
    let updated = mtime(root.path(), "issues/3.json");
    // Silent corruption: different bytes, same mtime.
    std::fs::write(
        dir.join("issues/3.json"),
        good.replace("Issue 3", "Issue 8"),
    )
    .unwrap();
    set_mtime(&dir.join("issues/3.json"), updated).unwrap();
    // #4 as the original wrote it (no `assignees`): an upgrade, not a mismatch.
    let original = read(root.path(), "issues/4.json").replace("\"assignees\": [], ", "");
    std::fs::write(dir.join("issues/4.json"), &original).unwrap();
    set_mtime(
        &dir.join("issues/4.json"),
        mtime(root.path(), "issues/5.json") - 2 * DAY,
    )
    .unwrap();

    // A normal run trusts the mtime and does not notice.
    let summary = run(&api, root.path(), false, now() + 3600).unwrap();
    assert_eq!(summary.scrub_mismatches, 0);
    assert!(read(root.path(), "issues/3.json").contains("Issue 8"));

    api.take_log();
    let summary = run(&api, root.path(), true, now() + 7200).unwrap();
    assert_eq!(summary.scrub_mismatches, 1);
    assert_eq!(summary.format_upgrades, 1);
    assert_eq!(read(root.path(), "issues/3.json"), good);
    assert_eq!(mtime(root.path(), "issues/3.json"), updated);
    assert!(read(root.path(), "issues/4.json").contains("\"assignees\": []"));
    let report = summary.unit_report(true);
    assert_eq!(report.scrub_mismatches, Some(1));
    // A scrub sends no ETags: every page was fetched in full.
    let log = api.take_log();
    assert!(pages(&log).values().flatten().all(|s| *s == 200));
}

#[test]
fn disabled_issues_leave_issue_files_alone_and_denied_hooks_are_skipped() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(sample());
    run(&api, root.path(), false, now()).unwrap();
    let before = tree(&unit_dir(root.path()));
    api.edit(|gh| {
        gh.objects.get_mut(BASE).unwrap()["has_issues"] = json!(false);
        gh.listings.remove(&format!("{BASE}/issues"));
        gh.listings.remove(&format!("{BASE}/milestones"));
        gh.fail_list.insert(format!("{BASE}/hooks"), (0, 403));
    });
    api.take_log();
    run(&api, root.path(), false, now() + 3600).unwrap();
    let after = tree(&unit_dir(root.path()));
    for (file, old) in &before {
        if file != "info.json" {
            assert_eq!(&after[file], old, "{file}");
        }
    }
    let pages = pages(&api.take_log());
    assert!(!pages.contains_key(&format!("{BASE}/issues")));
    assert!(!pages.contains_key(&format!("{BASE}/milestones")));
    assert_eq!(pages[&format!("{BASE}/hooks")], [403]);
    // The refusal is remembered: no hooks request for a week.
    run(&api, root.path(), false, now() + 7200).unwrap();
    assert!(!pages_of(&api.take_log()).contains(&format!("{BASE}/hooks")));
}

fn pages_of(log: &[Request]) -> Vec<String> {
    pages(log).into_keys().collect()
}

fn org_sample() -> FakeGithub {
    let mut gh = FakeGithub {
        page_size: 2,
        ..Default::default()
    };
    gh.listings.insert(
        "/orgs/acme/teams".into(),
        vec![
            json!({"id": 1, "name": "Core Team", "slug": "core-team", "permission": "pull",
                   "url": "https://api.example/organizations/1/team/1"}),
            json!({"id": 2, "name": "Op\u{e9}rations", "slug": "ops"}),
        ],
    );
    gh.listings.insert(
        "/orgs/acme/teams/core-team/members".into(),
        vec![user("alice"), user("bob"), user("carol")],
    );
    gh.listings.insert(
        "/orgs/acme/teams/core-team/repos".into(),
        vec![json!({"name": "widget", "full_name": "acme/widget"})],
    );
    gh.listings
        .insert("/orgs/acme/teams/ops/members".into(), vec![]);
    gh.listings.insert(
        "/orgs/acme/teams/ops/repos".into(),
        vec![json!({"name": "infra"}), json!({"name": "widget"})],
    );
    gh
}

fn run_org(api: &FakeApi, root: &Path) -> anyhow::Result<Summary> {
    crate::sources::github::api::runtime()
        .unwrap()
        .block_on(backup_org(api, root, ORG, Options::now(false)))
}

#[test]
fn teams_json_shape_and_org_hooks_without_admin() {
    let root = tempfile::tempdir().unwrap();
    let api = FakeApi::new(org_sample());
    run_org(&api, root.path()).unwrap();
    let dir = root.path().join("github/acme/@organization");
    assert_eq!(
        std::fs::read_to_string(dir.join("teams.json")).unwrap(),
        "{\"Core Team\": {\"members\": [\"alice\", \"bob\", \"carol\"], \"permission\": \"pull\", \
         \"repos\": [\"widget\"]}, \"Op\\u00e9rations\": {\"members\": [], \"permission\": null, \
         \"repos\": [\"infra\", \"widget\"]}}\n"
    );
    // /orgs/acme/hooks answered 404: skipped, not a failure, no file.
    assert!(!dir.join("hooks.json").exists());
    api.take_log();

    // Unchanged: every listing is one 304 and the hooks are not asked again.
    let summary = run_org(&api, root.path()).unwrap();
    assert_eq!(summary.files_written, 0);
    let log = api.take_log();
    assert_eq!(lists(&log).len(), 5, "{log:?}");
    assert!(pages(&log).values().flatten().all(|s| *s == 304), "{log:?}");

    // With admin rights the hooks are stored.
    api.edit(|gh| {
        gh.listings.insert(
            "/orgs/acme/hooks".into(),
            vec![
                json!({"id": 3, "name": "web", "active": false, "events": ["*"],
                        "config": {"url": "https://x.example"}, "type": "Organization",
                        "created_at": ts(1, 0), "updated_at": ts(2, 0)}),
            ],
        );
    });
    crate::sources::github::api::runtime()
        .unwrap()
        .block_on(backup_org(
            &api,
            root.path(),
            ORG,
            Options {
                scrub: false,
                now: jiff::Timestamp::now().as_second() + 8 * DAY,
            },
        ))
        .unwrap();
    assert!(
        std::fs::read_to_string(dir.join("hooks.json"))
            .unwrap()
            .contains("\"Organization\"")
    );
}
