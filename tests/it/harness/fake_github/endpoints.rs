//! The REST endpoints: what each `GET` returns for the fake's data, with GitHub's documented
//! parameters (`state`, `sort`, `direction`, `since`, `type`, `labels`) and defaults. The
//! result is a [`Reply`]; pagination, ETags, rate limits and headers are added by
//! [`super::routes`], the same for every endpoint.
//!
//! Paths arrive canonical (`/repos/{o}/{r}/...`, `/orgs/{org}/teams/{slug}/...`): the
//! `/repositories/{id}` and `/organizations/{id}` aliases GitHub uses in `Link` headers are
//! resolved before.

use super::render::{self, Urls};
use super::state::{Issue, IssueState, MilestoneState, Org, Repo, State};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::cmp::Ordering;

/// What an endpoint answers, before pagination and headers.
#[derive(Debug)]
pub enum Reply {
    /// A single object (200).
    Object(Value),
    /// A listing (200), paginated by the caller.
    List(Vec<Value>),
    /// A 302 to another URL.
    Redirect(String),
    /// An error with GitHub's `{"message": ...}` body.
    Error(u16, String),
}

/// Query parameters, in order.
pub struct Query<'a>(pub &'a [(String, String)]);

impl Query<'_> {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A 404 in GitHub's words.
fn not_found() -> Reply {
    Reply::Error(404, "Not Found".to_string())
}

/// A 422 for a bad parameter.
fn invalid(what: &str, value: &str) -> Reply {
    Reply::Error(
        422,
        format!("Validation Failed: {what} {value:?} is not valid"),
    )
}

/// Answers `GET path` (canonical, without the API prefix).
pub fn get(state: &State, urls: &Urls, path: &str, query: &Query, accept: &str) -> Reply {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["rate_limit"] => Reply::Object(rate_limit(state)),
        ["user"] => Reply::Object(render::user(urls, Some(&state.viewer))),
        ["orgs", org, rest @ ..] => match state.org(org) {
            Some(org) => org_endpoint(urls, org, rest, query),
            None => not_found(),
        },
        ["repos", org, repo, rest @ ..] => {
            match state.org(org).and_then(|o| Some((o, o.repo(repo)?))) {
                Some((org, repo)) => repo_endpoint(urls, org, repo, rest, query, accept),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

/// The body of `GET /rate_limit`.
fn rate_limit(state: &State) -> Value {
    let core = json!({
        "limit": state.rate.limit,
        "used": state.rate.used,
        "remaining": state.rate.remaining(),
        "reset": state.rate.reset_at,
    });
    let reset = state.rate.reset_at;
    let other = |limit: u64| json!({"limit": limit, "used": 0, "remaining": limit, "reset": reset});
    json!({
        "resources": {
            "core": core,
            "search": other(30),
            "graphql": other(5000),
            "integration_manifest": other(5000),
            "code_search": other(10),
        },
        "rate": core,
    })
}

/// `/orgs/{org}/...`.
fn org_endpoint(urls: &Urls, org: &Org, rest: &[&str], query: &Query) -> Reply {
    match rest {
        [] => Reply::Object(render::org(urls, org)),
        ["repos"] => org_repos(urls, org, query),
        ["teams"] => Reply::List(
            org.teams
                .iter()
                .map(|t| render::team(urls, org, t))
                .collect(),
        ),
        ["teams", slug, rest @ ..] => {
            let Some(team) = org.teams.iter().find(|t| t.slug == *slug) else {
                return not_found();
            };
            match rest {
                [] => Reply::Object(render::team(urls, org, team)),
                ["members"] => {
                    let mut members = team.members.clone();
                    members.sort_by_key(|m| m.to_lowercase());
                    Reply::List(
                        members
                            .iter()
                            .map(|m| render::user(urls, Some(m)))
                            .collect(),
                    )
                }
                ["repos"] => Reply::List(
                    team.repos
                        .iter()
                        .filter_map(|(name, role)| {
                            Some(render::team_repo(urls, org, org.repo(name)?, role))
                        })
                        .collect(),
                ),
                _ => not_found(),
            }
        }
        ["hooks"] => {
            let base = format!("{}/orgs/{}/hooks", urls.api, org.login);
            Reply::List(
                org.hooks
                    .iter()
                    .map(|h| render::hook(&base, "Organization", h))
                    .collect(),
            )
        }
        _ => not_found(),
    }
}

/// `GET /orgs/{org}/repos` with `type`, `sort` and `direction`.
fn org_repos(urls: &Urls, org: &Org, query: &Query) -> Reply {
    let kind = query.get("type").unwrap_or("all");
    let keep = |r: &&Repo| match kind {
        "all" | "sources" | "member" => true,
        "public" => !r.private,
        "private" => r.private,
        "forks" => false,
        _ => true,
    };
    if !["all", "public", "private", "forks", "sources", "member"].contains(&kind) {
        return invalid("type", kind);
    }
    let sort = query.get("sort").unwrap_or("created");
    let key = |r: &Repo| -> (String, u64) {
        match sort {
            "full_name" => (r.name.to_lowercase(), r.id),
            "updated" => (render::time(r.updated_at), r.id),
            "pushed" => (r.pushed_at.map(render::time).unwrap_or_default(), r.id),
            _ => (render::time(r.created_at), r.id),
        }
    };
    let default_dir = if sort == "full_name" { "asc" } else { "desc" };
    let ascending = query.get("direction").unwrap_or(default_dir) == "asc";
    let mut repos: Vec<&Repo> = org.repos.values().filter(keep).collect();
    repos.sort_by(|a, b| ordered(key(a).cmp(&key(b)), ascending));
    Reply::List(repos.iter().map(|r| render::repo(urls, org, r)).collect())
}

/// `ord` for ascending order, reversed for descending.
fn ordered(ord: Ordering, ascending: bool) -> Ordering {
    if ascending { ord } else { ord.reverse() }
}

/// The `since` parameter: `Ok(None)` when absent, an error reply when malformed.
fn since(query: &Query) -> Result<Option<Timestamp>, Reply> {
    match query.get("since") {
        None => Ok(None),
        Some(text) => text
            .parse::<Timestamp>()
            .map(Some)
            .map_err(|_| invalid("since", text)),
    }
}

/// `/repos/{o}/{r}/...`.
fn repo_endpoint(
    urls: &Urls,
    org: &Org,
    repo: &Repo,
    rest: &[&str],
    query: &Query,
    accept: &str,
) -> Reply {
    let api = render::repo_api(urls, org, repo);
    match rest {
        [] => Reply::Object(render::repo(urls, org, repo)),
        ["issues"] => issues(urls, org, repo, query),
        ["issues", "comments"] => {
            let all = repo.issues.values().flat_map(|i| {
                i.comments
                    .iter()
                    .map(|c| (c.id, c.created_at, c.updated_at, i.number, c))
            });
            sorted_comments(all, query, true, |(n, c)| {
                render::issue_comment(urls, org, repo, n, c)
            })
        }
        ["issues", number, rest @ ..] => {
            let issue = match find_issue(repo, number) {
                Ok(issue) => issue,
                Err(reply) => return reply,
            };
            match rest {
                [] => Reply::Object(render::issue(urls, org, repo, issue, true)),
                ["comments"] => {
                    let all = issue
                        .comments
                        .iter()
                        .map(|c| (c.id, c.created_at, c.updated_at, issue.number, c));
                    // One issue's comments come in creation order (no `sort`), `since`
                    // filters by updated_at.
                    sorted_comments(all, query, false, |(n, c)| {
                        render::issue_comment(urls, org, repo, n, c)
                    })
                }
                ["events"] => Reply::List(
                    issue
                        .events
                        .iter()
                        .map(|e| render::issue_event(urls, org, repo, e))
                        .collect(),
                ),
                _ => not_found(),
            }
        }
        ["pulls", "comments"] => {
            let all = repo.issues.values().flat_map(|i| {
                i.review_comments
                    .iter()
                    .map(|c| (c.id, c.created_at, c.updated_at, i.number, c))
            });
            sorted_comments(all, query, true, |(n, c)| {
                render::review_comment(urls, org, repo, n, c)
            })
        }
        ["pulls", number, what] => {
            let pull = match find_issue(repo, number) {
                Ok(issue) if issue.pull_request.is_some() => issue,
                Ok(_) => return not_found(),
                Err(reply) => return reply,
            };
            match *what {
                "reviews" => Reply::List(
                    pull.reviews
                        .iter()
                        .map(|r| render::review(urls, org, repo, pull.number, r))
                        .collect(),
                ),
                "comments" => {
                    let all = pull
                        .review_comments
                        .iter()
                        .map(|c| (c.id, c.created_at, c.updated_at, pull.number, c));
                    sorted_comments(all, query, true, |(n, c)| {
                        render::review_comment(urls, org, repo, n, c)
                    })
                }
                _ => not_found(),
            }
        }
        ["milestones"] => milestones(urls, org, repo, query),
        ["comments"] => Reply::List(
            repo.commit_comments
                .iter()
                .map(|c| render::commit_comment(urls, org, repo, c))
                .collect(),
        ),
        ["releases"] => {
            let mut releases: Vec<_> = repo.releases.iter().collect();
            releases.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
            Reply::List(
                releases
                    .iter()
                    .map(|r| render::release(urls, org, repo, r))
                    .collect(),
            )
        }
        ["releases", "assets", id] => {
            let Some((release, asset)) = id.parse::<u64>().ok().and_then(|id| {
                repo.releases
                    .iter()
                    .find_map(|r| Some((r, r.assets.iter().find(|a| a.id == id)?)))
            }) else {
                return not_found();
            };
            if accept.contains("application/octet-stream") {
                Reply::Redirect(format!(
                    "{}/download/{}?{}",
                    urls.assets,
                    asset.id,
                    super::routes::asset_signature(asset.id)
                ))
            } else {
                let tag = release.tag_name.as_deref();
                Reply::Object(render::asset(urls, org, repo, tag, asset))
            }
        }
        ["labels"] => Reply::List(
            repo.labels
                .iter()
                .map(|l| render::label(urls, org, repo, l))
                .collect(),
        ),
        ["hooks"] => Reply::List(
            repo.hooks
                .iter()
                .map(|h| render::hook(&format!("{api}/hooks"), "Repository", h))
                .collect(),
        ),
        _ => not_found(),
    }
}

/// Issue `number`: 404 when it never existed, 410 when deleted or issues are disabled.
fn find_issue<'r>(repo: &'r Repo, number: &str) -> Result<&'r Issue, Reply> {
    let Ok(number) = number.parse::<u64>() else {
        return Err(not_found());
    };
    if let Some(issue) = repo.issues.get(&number) {
        if !repo.has_issues && issue.pull_request.is_none() {
            return Err(issues_disabled());
        }
        return Ok(issue);
    }
    if repo.deleted_issues.contains(&number) {
        return Err(Reply::Error(410, "This issue was deleted".to_string()));
    }
    Err(not_found())
}

/// GitHub's answer for issue endpoints of a repository with issues disabled.
fn issues_disabled() -> Reply {
    Reply::Error(410, "Issues are disabled for this repo".to_string())
}

/// `GET /repos/{o}/{r}/issues`: `state` (open by default), `labels`, `sort` (created),
/// `direction` (desc), `since` (updated at or after).
fn issues(urls: &Urls, org: &Org, repo: &Repo, query: &Query) -> Reply {
    if !repo.has_issues {
        return issues_disabled();
    }
    let state = query.get("state").unwrap_or("open");
    let wanted = match state {
        "open" => Some(IssueState::Open),
        "closed" => Some(IssueState::Closed),
        "all" => None,
        other => return invalid("state", other),
    };
    let since = match since(query) {
        Ok(since) => since,
        Err(reply) => return reply,
    };
    let labels: Vec<&str> = query
        .get("labels")
        .map(|l| l.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let sort = query.get("sort").unwrap_or("created");
    if !["created", "updated", "comments"].contains(&sort) {
        return invalid("sort", sort);
    }
    let ascending = query.get("direction").unwrap_or("desc") == "asc";
    let mut list: Vec<&Issue> = repo
        .issues
        .values()
        .filter(|i| wanted.is_none_or(|w| i.state == w))
        .filter(|i| since.is_none_or(|s| i.updated_at >= s))
        .filter(|i| labels.iter().all(|l| i.labels.iter().any(|il| il == l)))
        .collect();
    list.sort_by(|a, b| {
        let ord = match sort {
            "updated" => a.updated_at.cmp(&b.updated_at),
            "comments" => a.comments.len().cmp(&b.comments.len()),
            _ => a.created_at.cmp(&b.created_at),
        };
        ordered(ord.then(a.number.cmp(&b.number)), ascending)
    });
    Reply::List(
        list.iter()
            .map(|i| render::issue(urls, org, repo, i, false))
            .collect(),
    )
}

/// `GET /repos/{o}/{r}/milestones`: `state` (**open** by default; `all`, `closed`), `sort`
/// (`due_on` or `completeness`), `direction` (asc).
fn milestones(urls: &Urls, org: &Org, repo: &Repo, query: &Query) -> Reply {
    let state = query.get("state").unwrap_or("open");
    let wanted = match state {
        "open" => Some(MilestoneState::Open),
        "closed" => Some(MilestoneState::Closed),
        "all" => None,
        other => return invalid("state", other),
    };
    let ascending = query.get("direction").unwrap_or("asc") == "asc";
    let completeness = query.get("sort") == Some("completeness");
    let mut list: Vec<_> = repo
        .milestones
        .values()
        .filter(|m| wanted.is_none_or(|w| m.state == w))
        .collect();
    let closed_count = |number: u64| {
        repo.issues
            .values()
            .filter(|i| i.milestone == Some(number) && i.state == IssueState::Closed)
            .count()
    };
    list.sort_by(|a, b| {
        let ord = if completeness {
            closed_count(a.number).cmp(&closed_count(b.number))
        } else {
            // Milestones without a due date come last.
            match (a.due_on, b.due_on) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        };
        ordered(ord.then(a.number.cmp(&b.number)), ascending)
    });
    Reply::List(
        list.iter()
            .map(|m| render::milestone(urls, org, repo, m))
            .collect(),
    )
}

/// A comment listing: `(id, created_at, updated_at, issue number, comment)` items filtered by
/// `since`; when `sortable`, also `sort` (`created` or `updated`) and `direction` (asc).
fn sorted_comments<C>(
    items: impl Iterator<Item = (u64, Timestamp, Timestamp, u64, C)>,
    query: &Query,
    sortable: bool,
    render: impl Fn((u64, C)) -> Value,
) -> Reply {
    let since = match since(query) {
        Ok(since) => since,
        Err(reply) => return reply,
    };
    let mut items: Vec<_> = items
        .filter(|(_, _, updated, _, _)| since.is_none_or(|s| *updated >= s))
        .collect();
    let ascending = !sortable || query.get("direction").unwrap_or("asc") == "asc";
    let by_updated = sortable && query.get("sort") == Some("updated");
    items.sort_by(|a, b| {
        let ord = if by_updated {
            a.2.cmp(&b.2)
        } else {
            a.1.cmp(&b.1)
        };
        ordered(ord.then(a.0.cmp(&b.0)), ascending)
    });
    Reply::List(
        items
            .into_iter()
            .map(|(_, _, _, n, c)| render((n, c)))
            .collect(),
    )
}
