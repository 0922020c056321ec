//! The github source end to end (issue 3, github-rgw-rbd.md §1): the real `deltaic` binary
//! (`deltaic run`, `github backup|ls|auth|restore`, `snapshot`) against the in-repo fake GitHub
//! (harness/fake_github: REST API with `Link` pagination, ETags, rate limits and faults, git
//! over smart HTTP with token auth, a separate asset host, the OAuth device flow).
//!
//! Listing strategy the tests rely on (src/sources/github/backup/mod.rs): the first run of a
//! repository, every scrub, and any run more than 7 days after the last complete listing list
//! the issues completely (`sort=created&direction=asc`) and may then delete files of issues that
//! are gone; the other runs list only issues updated since the last high-water mark and never
//! delete. Milestones, commit comments, releases, labels and hooks are listed completely on
//! every run. Every page request carries that page's stored ETag.

use crate::harness::deltaic::{Deltaic, Ran};
use crate::harness::fake_github::git_repos::{git, refs};
use crate::harness::fake_github::{
    FakeGithub, FaultKind, LoggedRequest, RequestKind, require_git, ts,
};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// The bytes of the release asset of `acme/widgets` v1.0.
const ASSET: &[u8] = b"\x1f\x8b\x08\x00 a fake tarball \xff\xfe";

/// A backup root, a snapshot directory and a config pointing at a fake GitHub.
struct Env {
    fake: FakeGithub,
    dir: TempDir,
    root: PathBuf,
}

impl Env {
    /// An environment backing up organisation `acme` of `fake`, with `extra` settings lines.
    fn new(fake: FakeGithub, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backup");
        fs::create_dir(&root).unwrap();
        let env = Env { fake, dir, root };
        env.configure(extra);
        env
    }

    /// (Re)writes the config: scrubs never chosen at random, plus `extra` settings lines
    /// (each `  key: value\n`).
    fn configure(&self, extra: &str) {
        let text = format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n  snapshot-dir: {}\n  \
             github-api-url: {}\n  github-token: {}\n  github-scrub-probability: 0\n{extra}\
             github:\n  acme:\n",
            self.root.display(),
            self.snapshots().display(),
            self.fake.api_url(),
            self.fake.token(),
        );
        fs::write(self.config_path(), text).unwrap();
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("deltaic.conf")
    }

    fn snapshots(&self) -> PathBuf {
        self.dir.path().join("snapshots")
    }

    fn deltaic(&self) -> Deltaic {
        Deltaic::new(&self.config_path())
    }

    /// `ROOT/github/acme/<rel>`.
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join("github/acme").join(rel)
    }

    /// `deltaic run` (with its snapshot), expecting exit `code`.
    fn run(&self, code: i32) -> Ran {
        self.deltaic().expect(["run"], code)
    }

    /// `deltaic github backup ARGS`, expecting exit `code`.
    fn backup(&self, args: &[&str], code: i32) -> Ran {
        let mut all = vec!["github", "backup"];
        all.extend_from_slice(args);
        self.deltaic().expect(all, code)
    }
}

/// The state of every metadata file under `ROOT/github` (git mirrors left out: git rewrites its
/// own bookkeeping on each fetch): path → (mtime in ns, inode).
fn metadata_files(root: &Path) -> BTreeMap<PathBuf, (i128, u64)> {
    fn walk(dir: &Path, depth: usize, out: &mut BTreeMap<PathBuf, (i128, u64)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                // ROOT/github/<org>/<repo>/{repo,wiki} are the mirrors.
                let name = entry.file_name();
                if depth == 3 && (name == "repo" || name == "wiki") {
                    continue;
                }
                walk(&path, depth + 1, out);
            } else {
                let mtime =
                    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
                out.insert(path, (mtime, meta.ino()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root.join("github"), 1, &mut out);
    out
}

/// A file's mtime in epoch seconds.
fn mtime(path: &Path) -> i64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mtime()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// API requests that cost quota: neither a 304 answer to a conditional request nor the free
/// `GET /rate_limit`.
fn costly(requests: &[LoggedRequest]) -> Vec<&LoggedRequest> {
    requests
        .iter()
        .filter(|r| r.kind == RequestKind::Api && r.path != "/rate_limit")
        .filter(|r| !(r.conditional && r.status == 304))
        .collect()
}

/// What [`populate`] made that the tests check against.
struct Fixture {
    /// Tip of `main` of `acme/widgets`.
    main: String,
}

/// The organisation `acme`:
/// - `widgets`: a wiki; branches `main` and `feature`, a tag and a pull-request ref; issues
///   #1..#5 and pull request #6 (three pages of two); #1 is fixed for a golden file (closed,
///   a label, an assignee, a comment, two events, in closed milestone 1); milestone 2 open;
///   two commit comments on `main`; release v1.0 with one asset; a label.
/// - `Gadgets`: one commit, no wiki (`has_wiki` false).
/// - team `Core Devs` (push) with alice and bob, on `widgets`.
fn populate(fake: &FakeGithub) -> Fixture {
    fake.with(|s| {
        s.max_per_page = Some(2);
        let org = s.add_org("acme");
        org.add_repo("widgets").description = Some("Widgets for everyone".into());
        org.add_repo("Gadgets").has_wiki = false;
        let team = org.add_team("Core Devs");
        team.permission = "push".into();
        team.members = vec!["bob".into(), "alice".into()];
        team.repos = vec![("widgets".into(), "push".into())];
    });
    fake.create_git_repo("acme", "widgets");
    fake.create_wiki("acme", "widgets");
    fake.push_files("acme", "widgets", "main", &[("README", "hello\n")], "first");
    let feature = fake.push_files("acme", "widgets", "feature", &[("f.txt", "f\n")], "feature");
    let main = fake.push_files(
        "acme",
        "widgets",
        "main",
        &[("README", "hello 2\n")],
        "second",
    );
    fake.set_ref("acme", "widgets", "refs/tags/v1.0", &main);
    fake.set_ref("acme", "widgets", "refs/pull/6/head", &feature);
    fake.create_git_repo("acme", "Gadgets");
    fake.push_files("acme", "Gadgets", "main", &[("g.txt", "g\n")], "gadget");

    fake.with(|s| {
        let repo = s.repo_mut("acme", "widgets");
        repo.add_label("bug", "d73a4a");
        let m1 = repo.add_milestone("v0.9", Some("alice"));
        m1.description = Some("First cut".into());
        m1.due_on = Some(ts("2024-02-01T00:00:00Z"));
        m1.close();
        m1.created_at = ts("2024-01-01T00:00:00Z");
        m1.updated_at = ts("2024-01-06T00:00:00Z");
        m1.closed_at = Some(m1.updated_at);
        repo.add_milestone("v1.0", Some("bob"));

        let issue = repo.add_issue("Café ☃ crash", Some("alice"));
        issue.body = Some("Steps:\n1. run".into());
        issue.labels = vec!["bug".into()];
        issue.assignees = vec!["bob".into()];
        issue.milestone = Some(1);
        issue.comment(Some("bob"), "Confirmed é").created_at = ts("2024-01-03T00:00:00Z");
        issue.comments[0].updated_at = ts("2024-01-03T00:00:00Z");
        issue.event("labeled", Some("alice"), None);
        issue.close(Some("bob"));
        issue.created_at = ts("2024-01-02T03:04:05Z");
        issue.events[0].created_at = ts("2024-01-04T00:00:00Z");
        issue.events[1].created_at = ts("2024-01-05T06:07:08Z");
        issue.updated_at = ts("2024-01-05T06:07:08Z");
        issue.closed_at = Some(issue.updated_at);
        for n in 2..=5 {
            let issue = repo.add_issue(&format!("Issue {n}"), Some("carol"));
            if n == 3 {
                issue.comment(Some("dave"), "me too");
            }
        }
        let pull = repo.add_pull("Add feature", Some("dave"));
        pull.review(Some("alice"), "APPROVED", "Looks good");

        let c1 = repo.add_commit_comment(&main, Some("alice"), "Nice commit");
        c1.created_at = ts("2024-03-01T00:00:00Z");
        c1.updated_at = ts("2024-03-01T00:00:00Z");
        let c2 = repo.add_commit_comment(&main, None, "A ghost's remark");
        c2.path = Some("README".into());
        c2.line = Some(1);
        c2.position = Some(1);
        c2.created_at = ts("2024-03-02T00:00:00Z");
        c2.updated_at = ts("2024-03-03T00:00:00Z");

        let release = repo.add_release(Some("v1.0"), "Version 1.0");
        release
            .add_asset("widgets-1.0.tar.gz", "application/gzip", ASSET)
            .updated_at = ts("2024-04-01T12:00:00Z");
        release.created_at = ts("2024-04-01T10:00:00Z");
        release.published_at = Some(ts("2024-04-01T11:00:00Z"));
    });
    Fixture { main }
}

/// A fake GitHub with [`populate`]d data and a backup of it made by a successful `deltaic
/// run`; `None` (skipped) without git.
fn backed_up(extra: &str) -> Option<(Env, Fixture)> {
    if !require_git() {
        return None;
    }
    let fake = FakeGithub::start();
    let fixture = populate(&fake);
    let env = Env::new(fake, extra);
    env.run(0);
    Some((env, fixture))
}

#[test]
fn github_first_run_writes_the_layout_json_mtimes_assets_and_mirrors() {
    let Some((env, fixture)) = backed_up("") else {
        return;
    };

    // Golden files: Python's json.dumps(..., sort_keys=True) + "\n" (ensure_ascii).
    assert_eq!(
        read(&env.path("widgets/issues/1.json")),
        concat!(
            r#"{"assignee": "bob", "assignees": ["bob"], "body": "Steps:\n1. run", "#,
            r#""closed_at": "2024-01-05T06:07:08+00:00", "closed_by": "bob", "#,
            r#""comments": [{"body": "Confirmed \u00e9", "created_at": "2024-01-03T00:00:00+00:00", "#,
            r#""updated_at": "2024-01-03T00:00:00+00:00", "user": "bob"}], "#,
            r#""created_at": "2024-01-02T03:04:05+00:00", "#,
            r#""events": [{"actor": "alice", "commit_id": null, "#,
            r#""created_at": "2024-01-04T00:00:00+00:00", "event": "labeled"}, "#,
            r#"{"actor": "bob", "commit_id": null, "created_at": "2024-01-05T06:07:08+00:00", "#,
            r#""event": "closed"}], "labels": ["bug"], "milestone": 1, "number": 1, "#,
            r#""state": "closed", "title": "Caf\u00e9 \u2603 crash", "#,
            r#""updated_at": "2024-01-05T06:07:08+00:00", "user": "alice"}"#,
            "\n"
        )
    );
    assert_eq!(
        read(&env.path("widgets/milestones/1.json")),
        concat!(
            r#"{"created_at": "2024-01-01T00:00:00+00:00", "creator": "alice", "#,
            r#""description": "First cut", "due_on": "2024-02-01T00:00:00+00:00", "#,
            r#""state": "closed", "title": "v0.9", "updated_at": "2024-01-06T00:00:00+00:00"}"#,
            "\n"
        )
    );
    assert_eq!(
        read(&env.path(&format!("widgets/comments/{}.json", fixture.main))),
        format!(
            concat!(
                r#"[{{"body": "Nice commit", "commit_id": "{sha}", "#,
                r#""created_at": "2024-03-01T00:00:00+00:00", "line": null, "path": null, "#,
                r#""position": null, "updated_at": "2024-03-01T00:00:00+00:00", "user": "alice"}}, "#,
                r#"{{"body": "A ghost's remark", "commit_id": "{sha}", "#,
                r#""created_at": "2024-03-02T00:00:00+00:00", "line": 1, "path": "README", "#,
                r#""position": 1, "updated_at": "2024-03-03T00:00:00+00:00", "user": null}}]"#,
                "\n"
            ),
            sha = fixture.main
        )
    );
    assert_eq!(
        read(&env.path("widgets/releases/v1.0/info.json")),
        concat!(
            r#"{"created_at": "2024-04-01T10:00:00+00:00", "description": "Notes for Version 1.0", "#,
            r#""draft": false, "name": "Version 1.0", "published_at": "2024-04-01T11:00:00+00:00", "#,
            r#""tag_name": "v1.0"}"#,
            "\n"
        )
    );
    assert_eq!(
        read(&env.path("widgets/info.json")),
        concat!(
            r#"{"description": "Widgets for everyone", "has_issues": true, "has_wiki": true, "#,
            r#""homepage": null, "private": false}"#,
            "\n"
        )
    );
    assert_eq!(
        read(&env.path("@organization/teams.json")),
        concat!(
            r#"{"Core Devs": {"members": ["alice", "bob"], "permission": "push", "#,
            r#""repos": ["widgets"]}}"#,
            "\n"
        )
    );

    // Every issue (and the pull request), every milestone: mtime = updated_at.
    let (issues, milestones) = env.fake.with(|s| {
        let repo = s.repo_mut("acme", "widgets");
        let issues: Vec<(u64, i64)> = repo
            .issues
            .values()
            .map(|i| (i.number, i.updated_at.as_second()))
            .collect();
        let milestones: Vec<(u64, i64)> = repo
            .milestones
            .values()
            .map(|m| (m.number, m.updated_at.as_second()))
            .collect();
        (issues, milestones)
    });
    assert_eq!(issues.len(), 6);
    for (number, updated) in issues {
        let file = env.path(&format!("widgets/issues/{number}.json"));
        assert_eq!(mtime(&file), updated, "{}", file.display());
    }
    for (number, updated) in milestones {
        let file = env.path(&format!("widgets/milestones/{number}.json"));
        assert_eq!(mtime(&file), updated, "{}", file.display());
    }
    let comment = read(&env.path("widgets/issues/3.json"));
    assert!(comment.contains(r#""body": "me too""#), "{comment}");
    let reviews = read(&env.path("widgets/pulls/6/reviews.json"));
    assert!(reviews.contains(r#""state": "APPROVED""#), "{reviews}");
    assert_eq!(
        mtime(&env.path(&format!("widgets/comments/{}.json", fixture.main))),
        ts("2024-03-03T00:00:00Z").as_second()
    );

    // The asset: its bytes, mtime = updated_at, the content-type xattr.
    let asset = env.path("widgets/releases/v1.0/assets/widgets-1.0.tar.gz");
    assert_eq!(fs::read(&asset).unwrap(), ASSET);
    assert_eq!(mtime(&asset), ts("2024-04-01T12:00:00Z").as_second());
    assert_eq!(
        xattr::get(&asset, "user.github.content-type").unwrap(),
        Some(b"application/gzip".to_vec())
    );

    // The asset was fetched through the API (with the token) and its redirect to the download
    // host followed without it.
    let downloads = env.fake.downloads();
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    assert!(!downloads[0].authorization, "{downloads:?}");
    assert_eq!(downloads[0].status, 200);
    let api: Vec<(bool, u16)> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/repos/acme/widgets/releases/assets/"))
        .map(|r| (r.authorization, r.status))
        .collect();
    assert_eq!(api, [(true, 302)]);

    // Bare mirrors with every ref of their origins (pull-request refs included).
    for (repo, mirror) in [("widgets", "widgets/repo"), ("Gadgets", "Gadgets/repo")] {
        let mirror = env.path(mirror);
        assert_eq!(git(&mirror, &["rev-parse", "--is-bare-repository"]), "true");
        assert_eq!(
            refs(&mirror),
            refs(&env.fake.repo_path("acme", repo)),
            "{repo}"
        );
    }
    let widgets = refs(&env.path("widgets/repo"));
    assert!(widgets.contains_key("refs/pull/6/head"), "{widgets:?}");
    assert_eq!(widgets["refs/heads/main"], fixture.main);
    assert_eq!(
        refs(&env.path("widgets/wiki")),
        refs(&env.fake.wiki_path("acme", "widgets"))
    );
    assert!(!env.path("Gadgets/wiki").exists());
    // The token never lands in a mirror's config.
    for mirror in ["widgets/repo", "widgets/wiki", "Gadgets/repo"] {
        let config = read(&env.path(mirror).join("config"));
        assert!(!config.contains(&env.fake.token()), "{mirror}: {config}");
    }
}

#[test]
fn github_unchanged_second_run_costs_no_quota_and_rewrites_nothing() {
    let Some((env, _)) = backed_up("") else {
        return;
    };
    let before = metadata_files(&env.root);
    assert!(before.len() > 15, "{before:#?}");
    env.fake.clear_requests();

    env.run(0);

    let requests = env.fake.requests();
    let api = requests
        .iter()
        .filter(|r| r.kind == RequestKind::Api)
        .count();
    assert!(
        api > 10,
        "the second run asked GitHub almost nothing: {requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.kind == RequestKind::Git),
        "the mirrors were not updated: {requests:#?}"
    );
    let costly = costly(&requests);
    assert!(costly.is_empty(), "requests that cost quota: {costly:#?}");
    assert!(
        env.fake.downloads().is_empty(),
        "{:?}",
        env.fake.downloads()
    );
    assert_eq!(metadata_files(&env.root), before);
}

/// The files whose state (mtime or inode) differs between two [`metadata_files`] maps, or that
/// exist in only one of them.
fn changed(
    before: &BTreeMap<PathBuf, (i128, u64)>,
    after: &BTreeMap<PathBuf, (i128, u64)>,
) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = before
        .iter()
        .filter(|(path, state)| after.get(*path) != Some(state))
        .map(|(path, _)| path.clone())
        .collect();
    paths.extend(after.keys().filter(|p| !before.contains_key(*p)).cloned());
    paths.sort();
    paths
}

/// Edits the title of issue `number` of `acme/widgets`; returns its new `updated_at`.
fn edit_issue(fake: &FakeGithub, number: u64, title: &str) -> i64 {
    fake.with(|s| {
        let issue = s.repo_mut("acme", "widgets").issue_mut(number);
        issue.title = title.to_string();
        issue.touch().updated_at.as_second()
    })
}

#[test]
fn github_an_edit_beyond_page_one_rewrites_only_that_issue() {
    let Some((env, _)) = backed_up("") else {
        return;
    };
    // Three pages of two in either order (created asc: 1 2 | 3 4 | 5 6): #3 and #4 are on
    // page 2.
    let before = metadata_files(&env.root);
    let updated = edit_issue(&env.fake, 3, "Issue 3, edited");
    env.run(0);
    let after = metadata_files(&env.root);
    let three = env.path("widgets/issues/3.json");
    assert_eq!(changed(&before, &after), std::slice::from_ref(&three));
    assert_eq!(mtime(&three), updated);
    assert!(read(&three).contains(r#""title": "Issue 3, edited""#));
    // The run after a change is free again when nothing else changed.
    env.fake.clear_requests();
    env.run(0);
    let requests = env.fake.requests();
    let costly = costly(&requests);
    assert!(costly.is_empty(), "requests that cost quota: {costly:#?}");
    assert_eq!(
        changed(&after, &metadata_files(&env.root)),
        Vec::<PathBuf>::new()
    );

    // A week later the issues are listed completely again, each page with its ETag: page 1
    // is unchanged (304) and must not hide the edit on page 2.
    let cache = env
        .root
        .join(".deltaic/cache/github/acme/widgets/issues.json");
    let mut state: serde_json::Value = serde_json::from_str(&read(&cache)).unwrap();
    let last = state["last_complete"].as_i64().expect("last_complete");
    state["last_complete"] = (last - 8 * 86_400).into();
    fs::write(&cache, state.to_string()).unwrap();
    let before = after;
    let updated = edit_issue(&env.fake, 4, "Issue 4, edited");
    env.fake.clear_requests();
    env.run(0);
    let after = metadata_files(&env.root);
    let four = env.path("widgets/issues/4.json");
    assert_eq!(changed(&before, &after), std::slice::from_ref(&four));
    assert_eq!(mtime(&four), updated);
    assert!(read(&four).contains(r#""title": "Issue 4, edited""#));
    let listing: Vec<(bool, u16)> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/repos/acme/widgets/issues" && r.uri.contains("sort=created"))
        .map(|r| (r.conditional, r.status))
        .collect();
    assert_eq!(listing, [(true, 304), (true, 200), (true, 304)]);
}

#[test]
fn github_a_deleted_issue_goes_with_the_next_complete_listing() {
    let Some((env, _)) = backed_up("") else {
        return;
    };
    let two = env.path("widgets/issues/2.json");
    assert!(two.exists());
    env.fake
        .with(|s| s.repo_mut("acme", "widgets").delete_issue(2));
    let before = metadata_files(&env.root);

    // An ordinary run lists only the issues updated since the last one: a deletion is not
    // visible there, and nothing is removed.
    env.run(0);
    assert_eq!(
        changed(&before, &metadata_files(&env.root)),
        Vec::<PathBuf>::new()
    );

    // A scrub lists everything; the missing issue is confirmed gone (410) before its file is.
    env.fake.clear_requests();
    let ran = env.backup(&["--scrub", "acme", "widgets"], 0);
    assert_eq!(
        changed(&before, &metadata_files(&env.root)),
        std::slice::from_ref(&two)
    );
    assert!(!two.exists());
    assert!(
        ran.stdout.contains(&format!("- {}", two.display())),
        "{}",
        ran.stdout
    );
    assert!(
        env.fake
            .requests()
            .iter()
            .any(|r| r.path == "/repos/acme/widgets/issues/2" && r.status == 410),
        "{:#?}",
        env.fake.requests()
    );
}

#[test]
fn github_a_failed_listing_fails_the_unit_and_deletes_nothing() {
    let Some((env, _)) = backed_up("  github-retry-max: 1\n") else {
        return;
    };
    // Gone on GitHub: a complete listing would remove their files.
    env.fake.with(|s| {
        let repo = s.repo_mut("acme", "widgets");
        repo.delete_issue(5);
        repo.milestones.remove(&2);
    });
    let files = metadata_files(&env.root);
    let issue = env.path("widgets/issues/5.json");
    let milestone = env.path("widgets/milestones/2.json");

    // 404 on page 2 of the complete issue listing, and on the milestone listing.
    env.fake.with(|s| {
        s.inject(
            "/repos/acme/widgets/issues?page=2",
            1,
            FaultKind::Status(404),
        );
        s.inject("/repos/acme/widgets/milestones", 1, FaultKind::Status(404));
    });
    let ran = env.backup(&["--scrub", "acme", "widgets"], 1);
    assert!(ran.stderr.contains("HTTP 404"), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("2 failures: listing /repos/acme/widgets/issues"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("; listing /repos/acme/widgets/milestones"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        changed(&files, &metadata_files(&env.root)),
        Vec::<PathBuf>::new()
    );

    // 500 (every attempt) on the last page of each.
    env.fake.with(|s| {
        s.inject(
            "/repos/acme/widgets/issues?page=3",
            10,
            FaultKind::Status(500),
        );
        s.inject("/repos/acme/widgets/milestones", 10, FaultKind::Status(500));
        s.faults.retain(|f| f.remaining > 0);
    });
    let ran = env.backup(&["--scrub", "acme", "widgets"], 1);
    assert!(ran.stderr.contains("HTTP 500"), "{}", ran.stderr);
    assert_eq!(
        changed(&files, &metadata_files(&env.root)),
        Vec::<PathBuf>::new()
    );

    // Once GitHub answers again, the deletions are real.
    env.fake.with(|s| s.faults.clear());
    env.backup(&["--scrub", "acme", "widgets"], 0);
    assert_eq!(
        changed(&files, &metadata_files(&env.root)),
        [issue, milestone]
    );
}

#[test]
fn github_empty_repository_and_missing_wiki_succeed() {
    if !require_git() {
        return;
    }
    let fake = FakeGithub::start();
    fake.with(|s| {
        let org = s.add_org("acme");
        org.add_repo("empty");
        org.add_repo("plain");
    });
    // Both have has_wiki (GitHub's default) but no wiki was ever created.
    fake.create_git_repo("acme", "empty");
    fake.create_git_repo("acme", "plain");
    fake.push_files("acme", "plain", "main", &[("p.txt", "p\n")], "plain");
    let env = Env::new(fake, "");
    for _ in 0..2 {
        env.run(0);
        for repo in ["empty", "plain"] {
            let mirror = env.path(&format!("{repo}/repo"));
            assert_eq!(git(&mirror, &["rev-parse", "--is-bare-repository"]), "true");
            assert_eq!(refs(&mirror), refs(&env.fake.repo_path("acme", repo)));
            assert!(!env.path(&format!("{repo}/wiki")).exists());
            assert!(env.path(&format!("{repo}/info.json")).is_file());
        }
        assert!(refs(&env.path("empty/repo")).is_empty());
    }
    let ran = env.backup(&["--scrub", "acme", "empty"], 0);
    assert!(ran.stdout.contains("fsck"), "{}", ran.stdout);
}

/// The current time in epoch seconds.
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[test]
fn github_exhausted_quota_waits_for_the_reset_and_completes() {
    if !require_git() {
        return;
    }
    let fake = FakeGithub::start();
    populate(&fake);
    // The hour's quota is used up; the window resets in 2 s.
    let reset = fake.with(|s| {
        s.rate.used = s.rate.limit;
        s.rate.reset_at = now() + 2;
        s.rate.reset_at
    });
    let env = Env::new(fake, "");
    env.backup(&["acme", "widgets"], 0);
    assert!(now() >= reset, "finished before the quota came back");
    let api: Vec<u16> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.kind == RequestKind::Api)
        .map(|r| r.status)
        .collect();
    assert_eq!(api.first(), Some(&403), "{api:?}");
    assert_eq!(api.iter().filter(|s| **s == 403).count(), 1, "{api:?}");
    for n in 1..=6 {
        assert!(
            env.path(&format!("widgets/issues/{n}.json")).is_file(),
            "#{n}"
        );
    }
    assert!(
        env.path("widgets/releases/v1.0/assets/widgets-1.0.tar.gz")
            .is_file()
    );
}

#[test]
fn github_quota_stop_without_waiting_resumes_on_the_next_run() {
    if !require_git() {
        return;
    }
    let fake = FakeGithub::start();
    populate(&fake);
    // Twelve requests left in a window that ends in 2 s, and the units may not wait.
    let reset = fake.with(|s| {
        s.rate.limit = 12;
        s.rate.reset_at = now() + 2;
        s.rate.reset_at
    });
    let env = Env::new(fake, "  github-max-wait: 0\n  github-quota-reserve: 0\n");
    let ran = env.backup(&["acme", "widgets"], 1);
    for part in [
        "acme/widgets: stopped to stay within the GitHub quota; the next run resumes",
        "GitHub rate limit: ",
        "would exceed github-max-wait (0s)",
    ] {
        assert!(ran.stderr.contains(part), "{part}: {}", ran.stderr);
    }
    let issues = fs::read_dir(env.path("widgets/issues")).map_or(0, |d| d.count());
    assert!(
        issues < 6,
        "the quota cannot have covered all issues: {issues}"
    );

    // The next hour: GitHub's usual quota again.
    while now() <= reset {
        std::thread::sleep(Duration::from_millis(100));
    }
    env.fake
        .with(|s| s.rate.set(5000, Duration::from_secs(3600)));
    env.run(0);
    for n in 1..=6 {
        assert!(
            env.path(&format!("widgets/issues/{n}.json")).is_file(),
            "#{n}"
        );
    }
    assert!(
        env.path("widgets/releases/v1.0/assets/widgets-1.0.tar.gz")
            .is_file()
    );
}

#[test]
fn github_force_push_the_mirror_follows_and_the_old_commit_stays_in_the_snapshot() {
    let Some((env, fixture)) = backed_up("") else {
        return;
    };
    let snapshots: Vec<PathBuf> = fs::read_dir(env.snapshots())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    // Rewrite main; drop the tag that also pointed at its old tip.
    let origin = env.fake.repo_path("acme", "widgets");
    git(&origin, &["update-ref", "-d", "refs/tags/v1.0"]);
    let (old, new) = env.fake.force_push(
        "acme",
        "widgets",
        "main",
        &[("README", "rewritten\n")],
        "rewrite",
    );
    assert_eq!(old, fixture.main);

    env.run(0);
    let mirror = env.path("widgets/repo");
    let live = refs(&mirror);
    assert_eq!(live["refs/heads/main"], new);
    assert!(!live.contains_key("refs/tags/v1.0"), "{live:?}");
    assert_eq!(live, refs(&origin));
    assert_eq!(git(&mirror, &["for-each-ref", "--contains", &old]), "");

    let kept = snapshots[0].join("github/acme/widgets/repo");
    assert_eq!(refs(&kept)["refs/heads/main"], old);
    assert_eq!(refs(&kept)["refs/tags/v1.0"], old);
    assert_eq!(git(&kept, &["cat-file", "-t", &old]), "commit");
    assert_eq!(git(&kept, &["show", &format!("{old}:README")]), "hello 2");
}

#[test]
fn github_restore_pushes_every_ref_to_a_fresh_bare_remote() {
    let Some((env, _)) = backed_up("") else {
        return;
    };
    for (mirror, name) in [
        ("widgets/repo", "restored.git"),
        ("widgets/wiki", "wiki.git"),
    ] {
        let mirror = env.path(mirror);
        let remote = env.dir.path().join(name);
        fs::create_dir(&remote).unwrap();
        git(&remote, &["init", "-q", "--bare", "."]);
        let url = format!("file://{}", remote.display());
        let ran = env.deltaic().expect(
            ["github", "restore", mirror.to_str().unwrap(), url.as_str()],
            0,
        );
        assert!(ran.stdout.contains("restored"), "{}", ran.stdout);
        let ours = refs(&mirror);
        let theirs = refs(&remote);
        assert!(!ours.is_empty());
        for (refname, id) in &ours {
            assert_eq!(theirs.get(refname), Some(id), "{name}: {refname}");
        }
        assert_eq!(theirs.len(), ours.len(), "{name}: {theirs:?}");
    }
    // Pull-request refs are restored too (a file:// remote accepts them; GitHub would not).
    let restored = refs(&env.dir.path().join("restored.git"));
    assert!(restored.contains_key("refs/pull/6/head"), "{restored:?}");
    assert_eq!(restored, refs(&env.fake.repo_path("acme", "widgets")));
}

#[test]
fn github_ls_prints_the_repositories_sorted_case_insensitively() {
    let fake = FakeGithub::start();
    fake.with(|s| {
        s.max_per_page = Some(2);
        let org = s.add_org("acme");
        for name in ["widgets", "Zebra", "apples", "Gadgets", "_tools"] {
            org.add_repo(name);
        }
    });
    let env = Env::new(fake, "");
    let ran = env.deltaic().expect(["github", "ls", "acme"], 0);
    assert_eq!(ran.stdout, "_tools\napples\nGadgets\nwidgets\nZebra\n");
}

/// A config in `dir` for `github auth` against `fake` (no token configured), plus `extra`
/// settings lines.
fn auth_config(dir: &Path, fake: &FakeGithub, extra: &str) -> PathBuf {
    let root = dir.join("backup");
    fs::create_dir_all(&root).unwrap();
    let path = dir.join("deltaic.conf");
    let text = format!(
        "settings:\n  root: {}\n  snapshot-backend: dir\n  github-api-url: {}\n{extra}",
        root.display(),
        fake.api_url()
    );
    fs::write(&path, text).unwrap();
    path
}

/// `deltaic -c CONFIG github auth --token-stdin` with `token` on stdin.
fn auth_with_stdin(config: &Path, token: &str) -> Ran {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Deltaic::new(config)
        .command(["github", "auth", "--token-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    child.wait_with_output().unwrap().into()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn github_auth_stores_a_good_pasted_token_privately_and_refuses_bad_ones() {
    let fake = FakeGithub::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret/github-token");
    fs::create_dir(dir.path().join("secret")).unwrap();
    let config = auth_config(
        dir.path(),
        &fake,
        &format!("  github-token-file: {}\n", file.display()),
    );
    let token = fake.token();

    let ran = auth_with_stdin(&config, "ghp_wrongWRONGwrongWRONGwrong0000");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("GitHub rejected the token (401 Bad credentials)"),
        "{}",
        ran.stderr
    );
    assert!(!file.exists());

    // A classic token without read:org is refused, naming what is missing.
    fake.with(|s| s.scopes = Some("repo".into()));
    let ran = auth_with_stdin(&config, &token);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("lacks the scope(s) read:org"),
        "{}",
        ran.stderr
    );
    assert!(!file.exists());

    fake.with(|s| s.scopes = Some("read:org, repo".into()));
    let ran = auth_with_stdin(&config, &token);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("Token for user fake-admin stored"),
        "{}",
        ran.stderr
    );
    assert_eq!(read(&file), format!("{token}\n"));
    assert_eq!(mode(&file), 0o600);
    assert!(!ran.stdout.contains(&token) && !ran.stderr.contains(&token));

    // The stored token now serves the API (the config names only the file).
    let ran = Deltaic::new(&config).run(["github", "auth"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("The stored token is valid"),
        "{}",
        ran.stderr
    );
}

#[test]
fn github_auth_device_flow_against_the_fake() {
    let fake = FakeGithub::start();
    let client_id = fake.with(|s| {
        s.device.interval = 1;
        s.device.client_id.clone()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = auth_config(
        dir.path(),
        &fake,
        &format!("  github-oauth-client-id: {client_id}\n"),
    );
    let ran = Deltaic::new(&config).expect(["github", "auth"], 0);
    // The login endpoints live on the web host: api_url = <web>/api/v3.
    assert!(
        ran.stderr.contains(&format!(
            "Open {}/login/device and enter the code FAKE-0001",
            fake.web_url()
        )),
        "{}",
        ran.stderr
    );
    let file = dir.path().join("github-token");
    assert_eq!(read(&file), format!("{}\n", fake.token()));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(
        ran.stdout,
        format!("settings:\n  github-token-file: {}\n", file.display())
    );
    let (polls, scope) =
        fake.with(|s| (s.device.grants[0].polls, s.device.grants[0].scope.clone()));
    assert_eq!(polls, 2, "one authorization_pending, then the token");
    assert_eq!(scope, "repo read:org");
    assert!(!ran.stderr.contains(&fake.token()));
}
