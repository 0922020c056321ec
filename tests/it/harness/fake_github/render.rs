//! GitHub's JSON shapes for the fake's data (REST API version 2022-11-28): the fields GitHub
//! documents for each object, with URLs pointing back at the fake. Timestamps use GitHub's
//! `2024-01-02T03:04:05Z` form; a missing user is `null`.

use super::state::{
    Asset, CommitComment, Hook, Issue, IssueComment, IssueEvent, IssueState, Label, Milestone,
    MilestoneState, Org, Release, Repo, Review, ReviewComment, Team,
};
use jiff::Timestamp;
use serde_json::{Value, json};

/// The fake's base URLs.
#[derive(Debug, Clone)]
pub struct Urls {
    /// The REST API, e.g. `http://127.0.0.1:4000/api/v3` (GitHub Enterprise layout).
    pub api: String,
    /// The web host (git, login), e.g. `http://127.0.0.1:4000`.
    pub web: String,
    /// The asset download host, e.g. `http://127.0.0.1:4001`.
    pub assets: String,
}

/// A timestamp in GitHub's format.
pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An optional timestamp (`null` when absent).
fn opt_time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time(t)))
}

/// A stable numeric id for a login.
fn user_id(login: &str) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(login.as_bytes());
    1_000_000 + h.finish() % 9_000_000
}

/// A GraphQL node id in GitHub's shape.
fn node_id(prefix: &str, id: u64) -> String {
    format!("{prefix}_kwDO{id:08X}")
}

/// A "simple user" object, or `null` for a ghost.
pub fn user(urls: &Urls, login: Option<&str>) -> Value {
    let Some(login) = login else {
        return Value::Null;
    };
    let id = user_id(login);
    json!({
        "login": login,
        "id": id,
        "node_id": node_id("U", id),
        "avatar_url": format!("{}/avatars/u/{id}?v=4", urls.web),
        "gravatar_id": "",
        "url": format!("{}/users/{login}", urls.api),
        "html_url": format!("{}/{login}", urls.web),
        "type": "User",
        "site_admin": false,
    })
}

/// `GET /orgs/{org}`.
pub fn org(urls: &Urls, org: &Org) -> Value {
    let base = format!("{}/orgs/{}", urls.api, org.login);
    json!({
        "login": org.login,
        "id": org.id,
        "node_id": node_id("O", org.id),
        "url": base,
        "repos_url": format!("{base}/repos"),
        "events_url": format!("{base}/events"),
        "hooks_url": format!("{base}/hooks"),
        "issues_url": format!("{base}/issues"),
        "members_url": format!("{base}/members{{/member}}"),
        "public_members_url": format!("{base}/public_members{{/member}}"),
        "avatar_url": format!("{}/avatars/u/{}?v=4", urls.web, org.id),
        "description": org.description,
        "name": org.name,
        "company": null,
        "blog": "",
        "location": null,
        "email": null,
        "is_verified": false,
        "has_organization_projects": true,
        "has_repository_projects": true,
        "public_repos": org.repos.values().filter(|r| !r.private).count(),
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "html_url": format!("{}/{}", urls.web, org.login),
        "created_at": time(org.created_at),
        "updated_at": time(org.created_at),
        "type": "Organization",
        "total_private_repos": org.repos.values().filter(|r| r.private).count(),
        "owned_private_repos": org.repos.values().filter(|r| r.private).count(),
    })
}

/// The owner object of an organisation's repositories.
fn org_owner(urls: &Urls, org: &Org) -> Value {
    json!({
        "login": org.login,
        "id": org.id,
        "node_id": node_id("O", org.id),
        "avatar_url": format!("{}/avatars/u/{}?v=4", urls.web, org.id),
        "gravatar_id": "",
        "url": format!("{}/users/{}", urls.api, org.login),
        "html_url": format!("{}/{}", urls.web, org.login),
        "type": "Organization",
        "site_admin": false,
    })
}

/// The API base of a repository: `{api}/repos/{org}/{repo}`.
pub fn repo_api(urls: &Urls, org: &Org, repo: &Repo) -> String {
    format!("{}/repos/{}/{}", urls.api, org.login, repo.name)
}

/// The git URL of a repository on the fake's smart-HTTP endpoint.
pub fn clone_url(urls: &Urls, org: &Org, repo: &Repo) -> String {
    format!("{}/{}/{}.git", urls.web, org.login, repo.name)
}

/// The web page of a repository.
fn repo_html(urls: &Urls, org: &Org, repo: &Repo) -> String {
    format!("{}/{}/{}", urls.web, org.login, repo.name)
}

/// A full repository object (`GET /repos/{o}/{r}`, org listings).
pub fn repo(urls: &Urls, org: &Org, repo: &Repo) -> Value {
    let api = repo_api(urls, org, repo);
    let html = repo_html(urls, org, repo);
    let open_issues = repo
        .issues
        .values()
        .filter(|i| i.state == IssueState::Open)
        .count();
    let host = urls.web.trim_start_matches("http://");
    let mut v = json!({
        "id": repo.id,
        "node_id": node_id("R", repo.id),
        "name": repo.name,
        "full_name": format!("{}/{}", org.login, repo.name),
        "private": repo.private,
        "visibility": if repo.private { "private" } else { "public" },
        "owner": org_owner(urls, org),
        "html_url": html,
        "description": repo.description,
        "fork": false,
        "url": api,
        "clone_url": clone_url(urls, org, repo),
        "git_url": format!("git://{host}/{}/{}.git", org.login, repo.name),
        "ssh_url": format!("git@{host}:{}/{}.git", org.login, repo.name),
        "svn_url": html,
        "mirror_url": null,
        "homepage": repo.homepage,
    });
    merge(
        &mut v,
        json!({
            "language": null,
            "size": 0,
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "open_issues_count": open_issues,
            "open_issues": open_issues,
            "is_template": false,
            "topics": [],
            "has_issues": repo.has_issues,
            "has_projects": true,
            "has_wiki": repo.has_wiki,
            "has_pages": false,
            "has_downloads": true,
            "has_discussions": false,
            "archived": repo.archived,
            "disabled": false,
            "default_branch": repo.default_branch,
            "allow_forking": true,
            "web_commit_signoff_required": false,
            "pushed_at": opt_time(repo.pushed_at),
            "created_at": time(repo.created_at),
            "updated_at": time(repo.updated_at),
            "permissions": {
                "admin": true, "maintain": true, "push": true, "triage": true, "pull": true
            },
            "license": null,
        }),
    );
    // The hypermedia URL templates, `{api}/<suffix>`.
    for (key, suffix) in [
        ("archive_url", "{archive_format}{/ref}"),
        ("assignees_url", "assignees{/user}"),
        ("branches_url", "branches{/branch}"),
        ("comments_url", "comments{/number}"),
        ("commits_url", "commits{/sha}"),
        ("contributors_url", "contributors"),
        ("events_url", "events"),
        ("hooks_url", "hooks"),
        ("issue_comment_url", "issues/comments{/number}"),
        ("issue_events_url", "issues/events{/number}"),
        ("issues_url", "issues{/number}"),
        ("labels_url", "labels{/name}"),
        ("milestones_url", "milestones{/number}"),
        ("pulls_url", "pulls{/number}"),
        ("releases_url", "releases{/id}"),
        ("tags_url", "tags"),
        ("teams_url", "teams"),
    ] {
        v[key] = json!(format!("{api}/{suffix}"));
    }
    v
}

/// Adds the fields of the object `extra` to the object `v`.
fn merge(v: &mut Value, extra: Value) {
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
}

/// A label object.
pub fn label(urls: &Urls, org: &Org, repo: &Repo, label: &Label) -> Value {
    json!({
        "id": label.id,
        "node_id": node_id("LA", label.id),
        "url": format!("{}/labels/{}", repo_api(urls, org, repo), label.name),
        "name": label.name,
        "color": label.color,
        "default": label.default,
        "description": label.description,
    })
}

/// A milestone object with its issue counts.
pub fn milestone(urls: &Urls, org: &Org, repo: &Repo, m: &Milestone) -> Value {
    let api = repo_api(urls, org, repo);
    let count = |state| {
        repo.issues
            .values()
            .filter(|i| i.milestone == Some(m.number) && i.state == state)
            .count()
    };
    json!({
        "url": format!("{api}/milestones/{}", m.number),
        "html_url": format!("{}/milestone/{}", repo_html(urls, org, repo), m.number),
        "labels_url": format!("{api}/milestones/{}/labels", m.number),
        "id": m.id,
        "node_id": node_id("MI", m.id),
        "number": m.number,
        "title": m.title,
        "description": m.description,
        "creator": user(urls, m.creator.as_deref()),
        "open_issues": count(IssueState::Open),
        "closed_issues": count(IssueState::Closed),
        "state": m.state.as_str(),
        "created_at": time(m.created_at),
        "updated_at": time(m.updated_at),
        "due_on": opt_time(m.due_on),
        "closed_at": opt_time(m.closed_at.filter(|_| m.state == MilestoneState::Closed)),
    })
}

/// An issue object as listings return it; `single` adds `closed_by` (only
/// `GET /repos/{o}/{r}/issues/{n}` has it).
pub fn issue(urls: &Urls, org: &Org, repo: &Repo, issue: &Issue, single: bool) -> Value {
    let api = repo_api(urls, org, repo);
    let n = issue.number;
    let labels: Vec<Value> = issue
        .labels
        .iter()
        .map(|name| match repo.labels.iter().find(|l| &l.name == name) {
            Some(l) => label(urls, org, repo, l),
            None => json!({"id": 0, "node_id": "", "url": "", "name": name, "color": "ededed",
                           "default": false, "description": null}),
        })
        .collect();
    let milestone = issue
        .milestone
        .and_then(|m| repo.milestones.get(&m))
        .map_or(Value::Null, |m| milestone(urls, org, repo, m));
    let assignees: Vec<Value> = issue
        .assignees
        .iter()
        .map(|a| user(urls, Some(a)))
        .collect();
    let html_kind = if issue.pull_request.is_some() {
        "pull"
    } else {
        "issues"
    };
    let mut v = json!({
        "url": format!("{api}/issues/{n}"),
        "repository_url": api,
        "labels_url": format!("{api}/issues/{n}/labels{{/name}}"),
        "comments_url": format!("{api}/issues/{n}/comments"),
        "events_url": format!("{api}/issues/{n}/events"),
        "html_url": format!("{}/{html_kind}/{n}", repo_html(urls, org, repo)),
        "id": issue.id,
        "node_id": node_id("I", issue.id),
        "number": n,
        "title": issue.title,
        "user": user(urls, issue.user.as_deref()),
        "labels": labels,
        "state": issue.state.as_str(),
        "state_reason": (issue.state == IssueState::Closed).then_some("completed"),
        "locked": false,
        "assignee": assignees.first().cloned().unwrap_or(Value::Null),
        "assignees": assignees,
        "milestone": milestone,
        "comments": issue.comments.len(),
        "created_at": time(issue.created_at),
        "updated_at": time(issue.updated_at),
        "closed_at": opt_time(issue.closed_at),
        "author_association": "MEMBER",
        "active_lock_reason": null,
        "body": issue.body,
        "reactions": reactions(&format!("{api}/issues/{n}/reactions")),
        "timeline_url": format!("{api}/issues/{n}/timeline"),
        "performed_via_github_app": null,
    });
    if let Some(pr) = &issue.pull_request {
        v["pull_request"] = json!({
            "url": format!("{api}/pulls/{n}"),
            "html_url": format!("{}/pull/{n}", repo_html(urls, org, repo)),
            "diff_url": format!("{}/pull/{n}.diff", repo_html(urls, org, repo)),
            "patch_url": format!("{}/pull/{n}.patch", repo_html(urls, org, repo)),
            "merged_at": opt_time(pr.merged_at),
        });
        v["draft"] = json!(false);
    }
    if single {
        let closer = issue
            .events
            .iter()
            .rev()
            .find(|e| e.event == "closed")
            .and_then(|e| e.actor.as_deref());
        v["closed_by"] = match issue.state {
            IssueState::Closed => user(urls, closer),
            IssueState::Open => Value::Null,
        };
    }
    v
}

/// An empty reactions rollup.
fn reactions(url: &str) -> Value {
    json!({"url": url, "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
           "confused": 0, "heart": 0, "rocket": 0, "eyes": 0})
}

/// An issue comment.
pub fn issue_comment(urls: &Urls, org: &Org, repo: &Repo, n: u64, c: &IssueComment) -> Value {
    let api = repo_api(urls, org, repo);
    json!({
        "url": format!("{api}/issues/comments/{}", c.id),
        "html_url": format!("{}/issues/{n}#issuecomment-{}", repo_html(urls, org, repo), c.id),
        "issue_url": format!("{api}/issues/{n}"),
        "id": c.id,
        "node_id": node_id("IC", c.id),
        "user": user(urls, c.user.as_deref()),
        "created_at": time(c.created_at),
        "updated_at": time(c.updated_at),
        "author_association": "MEMBER",
        "body": c.body,
        "reactions": reactions(&format!("{api}/issues/comments/{}/reactions", c.id)),
        "performed_via_github_app": null,
    })
}

/// An issue event.
pub fn issue_event(urls: &Urls, org: &Org, repo: &Repo, e: &IssueEvent) -> Value {
    let api = repo_api(urls, org, repo);
    json!({
        "id": e.id,
        "node_id": node_id("E", e.id),
        "url": format!("{api}/issues/events/{}", e.id),
        "actor": user(urls, e.actor.as_deref()),
        "event": e.event,
        "commit_id": e.commit_id,
        "commit_url": e.commit_id.as_ref().map(|c| format!("{api}/commits/{c}")),
        "created_at": time(e.created_at),
        "performed_via_github_app": null,
    })
}

/// A pull-request review.
pub fn review(urls: &Urls, org: &Org, repo: &Repo, n: u64, r: &Review) -> Value {
    let api = repo_api(urls, org, repo);
    let html = format!("{}/pull/{n}", repo_html(urls, org, repo));
    let mut v = json!({
        "id": r.id,
        "node_id": node_id("PRR", r.id),
        "user": user(urls, r.user.as_deref()),
        "body": r.body,
        "state": r.state,
        "html_url": format!("{html}#pullrequestreview-{}", r.id),
        "pull_request_url": format!("{api}/pulls/{n}"),
        "author_association": "MEMBER",
        "commit_id": r.commit_id,
    });
    if let Some(at) = r.submitted_at {
        v["submitted_at"] = json!(time(at));
    }
    v
}

/// A pull-request review comment.
pub fn review_comment(urls: &Urls, org: &Org, repo: &Repo, n: u64, c: &ReviewComment) -> Value {
    let api = repo_api(urls, org, repo);
    let html = format!("{}/pull/{n}", repo_html(urls, org, repo));
    let mut v = json!({
        "url": format!("{api}/pulls/comments/{}", c.id),
        "pull_request_review_id": c.review_id,
        "id": c.id,
        "node_id": node_id("PRRC", c.id),
        "diff_hunk": c.diff_hunk,
        "path": c.path,
        "position": c.line,
        "original_position": c.line,
        "commit_id": c.commit_id,
        "original_commit_id": c.commit_id,
        "user": user(urls, c.user.as_deref()),
        "body": c.body,
        "created_at": time(c.created_at),
        "updated_at": time(c.updated_at),
        "html_url": format!("{html}#discussion_r{}", c.id),
        "pull_request_url": format!("{api}/pulls/{n}"),
        "author_association": "MEMBER",
        "line": c.line,
        "original_line": c.line,
        "side": "RIGHT",
        "start_line": null,
        "original_start_line": null,
        "start_side": null,
        "subject_type": "line",
        "reactions": reactions(&format!("{api}/pulls/comments/{}/reactions", c.id)),
    });
    if let Some(parent) = c.in_reply_to_id {
        v["in_reply_to_id"] = json!(parent);
    }
    v
}

/// A commit comment.
pub fn commit_comment(urls: &Urls, org: &Org, repo: &Repo, c: &CommitComment) -> Value {
    let api = repo_api(urls, org, repo);
    let html = repo_html(urls, org, repo);
    json!({
        "html_url": format!("{html}/commit/{}#commitcomment-{}", c.commit_id, c.id),
        "url": format!("{api}/comments/{}", c.id),
        "id": c.id,
        "node_id": node_id("CC", c.id),
        "body": c.body,
        "path": c.path,
        "position": c.position,
        "line": c.line,
        "commit_id": c.commit_id,
        "user": user(urls, c.user.as_deref()),
        "created_at": time(c.created_at),
        "updated_at": time(c.updated_at),
        "author_association": "MEMBER",
        "reactions": reactions(&format!("{api}/comments/{}/reactions", c.id)),
    })
}

/// A release asset; its `url` is the API endpoint that redirects downloads to the asset host.
pub fn asset(urls: &Urls, org: &Org, repo: &Repo, tag: Option<&str>, a: &Asset) -> Value {
    json!({
        "url": format!("{}/releases/assets/{}", repo_api(urls, org, repo), a.id),
        "browser_download_url": format!("{}/{}/{}/releases/download/{}/{}",
            urls.web, org.login, repo.name, tag.unwrap_or("untagged"), a.name),
        "id": a.id,
        "node_id": node_id("RA", a.id),
        "name": a.name,
        "label": a.label,
        "state": "uploaded",
        "content_type": a.content_type,
        "size": a.size,
        "download_count": a.download_count,
        "created_at": time(a.created_at),
        "updated_at": time(a.updated_at),
        "uploader": user(urls, a.uploader.as_deref()),
    })
}

/// A release with its assets.
pub fn release(urls: &Urls, org: &Org, repo: &Repo, r: &Release) -> Value {
    let api = repo_api(urls, org, repo);
    let tag = r.tag_name.as_deref();
    let html_tag = tag.map_or_else(|| format!("untagged-{}", r.id), str::to_string);
    json!({
        "url": format!("{api}/releases/{}", r.id),
        "html_url": format!("{}/releases/tag/{html_tag}", repo_html(urls, org, repo)),
        "assets_url": format!("{api}/releases/{}/assets", r.id),
        "upload_url": format!("{}/api/uploads/repos/{}/{}/releases/{}/assets{{?name,label}}",
            urls.web, org.login, repo.name, r.id),
        "tarball_url": tag.map(|t| format!("{api}/tarball/{t}")),
        "zipball_url": tag.map(|t| format!("{api}/zipball/{t}")),
        "id": r.id,
        "node_id": node_id("RE", r.id),
        "tag_name": tag,
        "target_commitish": r.target_commitish,
        "name": r.name,
        "body": r.body,
        "draft": r.draft,
        "prerelease": r.prerelease,
        "created_at": time(r.created_at),
        "published_at": opt_time(r.published_at),
        "author": user(urls, r.author.as_deref()),
        "assets": r.assets.iter().map(|a| asset(urls, org, repo, tag, a)).collect::<Vec<_>>(),
    })
}

/// The API URL of a team, in GitHub's legacy-free form.
fn team_url(urls: &Urls, org: &Org, team: &Team) -> String {
    format!("{}/organizations/{}/team/{}", urls.api, org.id, team.id)
}

/// A team (`GET /orgs/{org}/teams`).
pub fn team(urls: &Urls, org: &Org, team: &Team) -> Value {
    let url = team_url(urls, org, team);
    json!({
        "id": team.id,
        "node_id": node_id("T", team.id),
        "url": url,
        "html_url": format!("{}/orgs/{}/teams/{}", urls.web, org.login, team.slug),
        "name": team.name,
        "slug": team.slug,
        "description": team.description,
        "privacy": team.privacy,
        "notification_setting": "notifications_enabled",
        "permission": team.permission,
        "members_url": format!("{url}/members{{/member}}"),
        "repositories_url": format!("{url}/repos"),
        "parent": null,
    })
}

/// A repository as a team's repository listing returns it (with the team's role).
pub fn team_repo(urls: &Urls, org: &Org, r: &Repo, role: &str) -> Value {
    let mut v = repo(urls, org, r);
    let rank = ["pull", "triage", "push", "maintain", "admin"]
        .iter()
        .position(|p| *p == role)
        .unwrap_or(0);
    v["role_name"] = json!(role);
    v["permissions"] = json!({
        "pull": true,
        "triage": rank >= 1,
        "push": rank >= 2,
        "maintain": rank >= 3,
        "admin": rank >= 4,
    });
    v
}

/// A webhook; `base` is the hooks listing URL. The secret is redacted as GitHub does.
pub fn hook(base: &str, kind: &str, h: &Hook) -> Value {
    let config: serde_json::Map<String, Value> = h
        .config
        .iter()
        .map(|(k, v)| {
            let shown = if k == "secret" { "********" } else { v };
            (k.clone(), json!(shown))
        })
        .collect();
    let url = format!("{base}/{}", h.id);
    json!({
        "type": kind,
        "id": h.id,
        "name": "web",
        "active": h.active,
        "events": h.events,
        "config": config,
        "updated_at": time(h.updated_at),
        "created_at": time(h.created_at),
        "url": url,
        "test_url": format!("{url}/test"),
        "ping_url": format!("{url}/pings"),
        "deliveries_url": format!("{url}/deliveries"),
        "last_response": {"code": null, "status": "unused", "message": null},
    })
}
