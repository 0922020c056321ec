//! The fake's GitHub data: organisations, their repositories and everything hanging off them
//! (issues and pull requests with comments, events, reviews and review comments; milestones;
//! commit comments; releases and assets; labels; teams; hooks).
//!
//! Every field is public so a test can edit the data between runs through
//! `fake.state().lock()`; the builder methods (`add_*`, [`Issue::touch`], ...) fill ids, numbers
//! and timestamps the way GitHub would. Ids come from one process-wide counter and timestamps
//! from one process-wide clock ([`tick`]) that never goes backwards and advances at least one
//! second per call, so an edit always changes `updated_at` as seen at second precision.
//!
//! Users are plain logins; `None` stands for a deleted ("ghost") account and is rendered as
//! JSON `null`.

use super::control::{AssetDownload, DeviceFlow, Fault, FaultKind, LoggedRequest, RateLimit};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Everything the fake serves and records; edit it through `fake.state().lock()`.
#[derive(Debug)]
pub struct State {
    /// The one valid token (API: `Authorization: Bearer|token <t>` or Basic with the token as
    /// user or password; git: Basic with the token as password or user).
    pub token: String,
    /// `X-OAuth-Scopes` sent to the holder of the token (`None`: a fine-grained token, no
    /// header).
    pub scopes: Option<String>,
    /// Login of the token's owner (`GET /user`).
    pub viewer: String,
    /// Organisations by login.
    pub orgs: BTreeMap<String, Org>,
    /// Caps every page size below GitHub's 100 (tests force small pages, e.g. 2).
    pub max_per_page: Option<usize>,
    /// The primary rate limit.
    pub rate: RateLimit,
    /// Injected faults, checked in order.
    pub faults: Vec<Fault>,
    /// The device-flow setup and script.
    pub device: DeviceFlow,
    /// Git requests need credentials even for public repositories (default true: proves the
    /// client's credential path; github.com serves public repositories anonymously).
    pub git_require_auth: bool,
    /// Every request seen, in order.
    pub requests: Vec<LoggedRequest>,
    /// Every download from the asset host, in order.
    pub downloads: Vec<AssetDownload>,
}

impl State {
    /// An empty GitHub with `token` as its only valid token (classic scopes `repo, read:org`).
    pub fn new(token: &str) -> State {
        State {
            token: token.to_string(),
            scopes: Some("read:org, repo".to_string()),
            viewer: "fake-admin".to_string(),
            orgs: BTreeMap::new(),
            max_per_page: None,
            rate: RateLimit::github_default(),
            faults: Vec::new(),
            device: DeviceFlow::default(),
            git_require_auth: true,
            requests: Vec::new(),
            downloads: Vec::new(),
        }
    }

    /// Adds (or replaces) an empty organisation.
    pub fn add_org(&mut self, login: &str) -> &mut Org {
        self.orgs.insert(login.to_string(), Org::new(login));
        self.orgs.get_mut(login).expect("just inserted")
    }

    /// The organisation `login` (case-insensitive).
    pub fn org(&self, login: &str) -> Option<&Org> {
        self.orgs
            .values()
            .find(|o| o.login.eq_ignore_ascii_case(login))
    }

    /// The organisation `login`, mutable (case-insensitive); panics when missing.
    pub fn org_mut(&mut self, login: &str) -> &mut Org {
        self.orgs
            .values_mut()
            .find(|o| o.login.eq_ignore_ascii_case(login))
            .unwrap_or_else(|| panic!("fake GitHub: no organisation {login:?}"))
    }

    /// The repository `org/name`, mutable; panics when missing.
    pub fn repo_mut(&mut self, org: &str, name: &str) -> &mut Repo {
        self.org_mut(org).repo_mut(name)
    }

    /// Makes the next `times` requests matching `path` answer `kind` (see [`Fault`]).
    pub fn inject(&mut self, path: &str, times: u32, kind: FaultKind) {
        self.faults.push(Fault {
            path: path.to_string(),
            remaining: times,
            kind,
        });
    }

    /// The organisation and repository with numeric id `id`.
    pub fn repo_by_id(&self, id: u64) -> Option<(&Org, &Repo)> {
        self.orgs
            .values()
            .flat_map(|o| o.repos.values().map(move |r| (o, r)))
            .find(|(_, r)| r.id == id)
    }

    /// The asset with id `id`, wherever it is.
    pub fn asset(&self, id: u64) -> Option<&Asset> {
        self.orgs
            .values()
            .flat_map(|o| o.repos.values())
            .find_map(|r| r.asset(id))
    }
}

/// A new id, unique in this process (GitHub ids are global too).
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The fake clock: the current time truncated to seconds, but always at least one second after
/// the previous call, so consecutive edits get distinct `updated_at` values.
pub fn tick() -> Timestamp {
    static LAST: Mutex<i64> = Mutex::new(0);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let now = Timestamp::now().as_second().max(*last + 1);
    *last = now;
    Timestamp::from_second(now).expect("a representable time")
}

/// Parses a GitHub timestamp such as `2024-01-02T03:04:05Z` (panics on a malformed literal:
/// fixtures are written by tests).
pub fn ts(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {text:?}: {e}"))
}

/// A GitHub organisation.
#[derive(Debug, Clone)]
pub struct Org {
    /// Login, e.g. `acme`.
    pub login: String,
    /// Numeric id (used in `/organizations/{id}/...` pagination links).
    pub id: u64,
    /// Display name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Repositories by name.
    pub repos: BTreeMap<String, Repo>,
    /// Teams, in creation order.
    pub teams: Vec<Team>,
    /// Organisation webhooks.
    pub hooks: Vec<Hook>,
}

impl Org {
    /// An empty organisation.
    pub fn new(login: &str) -> Org {
        Org {
            login: login.to_string(),
            id: next_id(),
            name: Some(login.to_string()),
            description: None,
            created_at: tick(),
            repos: BTreeMap::new(),
            teams: Vec::new(),
            hooks: Vec::new(),
        }
    }

    /// Adds (or replaces) a public repository with issues and wiki enabled, default branch
    /// `main`. Its git data is created separately ([`super::FakeGithub::create_git_repo`]).
    pub fn add_repo(&mut self, name: &str) -> &mut Repo {
        self.repos.insert(name.to_string(), Repo::new(name));
        self.repos.get_mut(name).expect("just inserted")
    }

    /// The repository `name` (case-insensitive, as GitHub resolves names).
    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos
            .values()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// The repository `name`, mutable (case-insensitive); panics when missing.
    pub fn repo_mut(&mut self, name: &str) -> &mut Repo {
        self.repos
            .values_mut()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("fake GitHub: no repository {name:?}"))
    }

    /// Adds a team with `pull` permission and no members or repositories.
    pub fn add_team(&mut self, name: &str) -> &mut Team {
        self.teams.push(Team {
            id: next_id(),
            name: name.to_string(),
            slug: slugify(name),
            description: None,
            privacy: "closed".to_string(),
            permission: "pull".to_string(),
            members: Vec::new(),
            repos: Vec::new(),
        });
        self.teams.last_mut().expect("just pushed")
    }

    /// Adds an organisation webhook for `url` with the given secret.
    pub fn add_hook(&mut self, url: &str, secret: Option<&str>) -> &mut Hook {
        self.hooks.push(Hook::new(url, secret));
        self.hooks.last_mut().expect("just pushed")
    }
}

/// A team's slug as GitHub derives it from the name.
fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_string()
}

/// A repository with its metadata and conversation.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Name, e.g. `widgets`.
    pub name: String,
    /// Numeric id (used in `/repositories/{id}/...` pagination links).
    pub id: u64,
    /// Private repository.
    pub private: bool,
    /// Description.
    pub description: Option<String>,
    /// Homepage URL.
    pub homepage: Option<String>,
    /// Issues enabled (otherwise issue listings answer 410).
    pub has_issues: bool,
    /// Wiki enabled (true even when no wiki page was ever created, as on GitHub).
    pub has_wiki: bool,
    /// Default branch name.
    pub default_branch: String,
    /// Archived (read-only).
    pub archived: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last metadata change.
    pub updated_at: Timestamp,
    /// Last push.
    pub pushed_at: Option<Timestamp>,
    /// Issues and pull requests by number.
    pub issues: BTreeMap<u64, Issue>,
    /// Numbers of deleted issues (GitHub answers 410 for them).
    pub deleted_issues: Vec<u64>,
    /// Milestones by number.
    pub milestones: BTreeMap<u64, Milestone>,
    /// Commit comments, in creation order.
    pub commit_comments: Vec<CommitComment>,
    /// Releases, in creation order.
    pub releases: Vec<Release>,
    /// The repository's labels.
    pub labels: Vec<Label>,
    /// Repository webhooks.
    pub hooks: Vec<Hook>,
    /// The next issue/pull request number.
    pub next_number: u64,
    /// The next milestone number.
    pub next_milestone: u64,
}

impl Repo {
    /// A public repository with issues and wiki enabled.
    pub fn new(name: &str) -> Repo {
        let now = tick();
        Repo {
            name: name.to_string(),
            id: next_id(),
            private: false,
            description: None,
            homepage: None,
            has_issues: true,
            has_wiki: true,
            default_branch: "main".to_string(),
            archived: false,
            created_at: now,
            updated_at: now,
            pushed_at: None,
            issues: BTreeMap::new(),
            deleted_issues: Vec::new(),
            milestones: BTreeMap::new(),
            commit_comments: Vec::new(),
            releases: Vec::new(),
            labels: Vec::new(),
            hooks: Vec::new(),
            next_number: 1,
            next_milestone: 1,
        }
    }

    /// Opens an issue by `user`; returns it for further edits.
    pub fn add_issue(&mut self, title: &str, user: Option<&str>) -> &mut Issue {
        let number = self.next_number;
        self.next_number += 1;
        let now = tick();
        let issue = Issue {
            number,
            id: next_id(),
            title: title.to_string(),
            body: Some(format!("Body of {title}")),
            state: IssueState::Open,
            user: user.map(str::to_string),
            labels: Vec::new(),
            assignees: Vec::new(),
            milestone: None,
            comments: Vec::new(),
            events: Vec::new(),
            created_at: now,
            updated_at: now,
            closed_at: None,
            pull_request: None,
            reviews: Vec::new(),
            review_comments: Vec::new(),
        };
        self.issues.insert(number, issue);
        self.issues.get_mut(&number).expect("just inserted")
    }

    /// Opens a pull request (an issue with the pull-request marker).
    pub fn add_pull(&mut self, title: &str, user: Option<&str>) -> &mut Issue {
        let issue = self.add_issue(title, user);
        issue.pull_request = Some(PullRequest { merged_at: None });
        issue
    }

    /// The issue or pull request `number`; panics when missing.
    pub fn issue_mut(&mut self, number: u64) -> &mut Issue {
        self.issues
            .get_mut(&number)
            .unwrap_or_else(|| panic!("fake GitHub: no issue #{number} in {}", self.name))
    }

    /// Deletes issue `number` (GitHub then answers 410 for it and drops it from listings).
    pub fn delete_issue(&mut self, number: u64) {
        assert!(
            self.issues.remove(&number).is_some(),
            "fake GitHub: no issue #{number} to delete"
        );
        self.deleted_issues.push(number);
    }

    /// Adds an open milestone.
    pub fn add_milestone(&mut self, title: &str, creator: Option<&str>) -> &mut Milestone {
        let number = self.next_milestone;
        self.next_milestone += 1;
        let now = tick();
        self.milestones.insert(
            number,
            Milestone {
                number,
                id: next_id(),
                title: title.to_string(),
                description: None,
                creator: creator.map(str::to_string),
                state: MilestoneState::Open,
                created_at: now,
                updated_at: now,
                due_on: None,
                closed_at: None,
            },
        );
        self.milestones.get_mut(&number).expect("just inserted")
    }

    /// Adds a commit comment on `commit_id`.
    pub fn add_commit_comment(
        &mut self,
        commit_id: &str,
        user: Option<&str>,
        body: &str,
    ) -> &mut CommitComment {
        let now = tick();
        self.commit_comments.push(CommitComment {
            id: next_id(),
            commit_id: commit_id.to_string(),
            path: None,
            position: None,
            line: None,
            user: user.map(str::to_string),
            body: body.to_string(),
            created_at: now,
            updated_at: now,
        });
        self.commit_comments.last_mut().expect("just pushed")
    }

    /// Adds a published release for `tag` (or a draft without a tag when `tag` is `None`).
    pub fn add_release(&mut self, tag: Option<&str>, name: &str) -> &mut Release {
        let now = tick();
        self.releases.push(Release {
            id: next_id(),
            tag_name: tag.map(str::to_string),
            target_commitish: self.default_branch.clone(),
            name: Some(name.to_string()),
            body: Some(format!("Notes for {name}")),
            draft: tag.is_none(),
            prerelease: false,
            created_at: now,
            published_at: tag.map(|_| now),
            author: Some("release-bot".to_string()),
            assets: Vec::new(),
        });
        self.releases.last_mut().expect("just pushed")
    }

    /// Adds a label.
    pub fn add_label(&mut self, name: &str, color: &str) -> &mut Label {
        self.labels.push(Label {
            id: next_id(),
            name: name.to_string(),
            color: color.to_string(),
            description: None,
            default: false,
        });
        self.labels.last_mut().expect("just pushed")
    }

    /// Adds a repository webhook for `url` with the given secret.
    pub fn add_hook(&mut self, url: &str, secret: Option<&str>) -> &mut Hook {
        self.hooks.push(Hook::new(url, secret));
        self.hooks.last_mut().expect("just pushed")
    }

    /// The asset `id` of any release of this repository.
    pub fn asset(&self, id: u64) -> Option<&Asset> {
        self.releases
            .iter()
            .flat_map(|r| &r.assets)
            .find(|a| a.id == id)
    }
}

/// Open or closed, for issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueState {
    /// Open.
    Open,
    /// Closed.
    Closed,
}

impl IssueState {
    /// GitHub's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueState::Open => "open",
            IssueState::Closed => "closed",
        }
    }
}

/// An issue or (with `pull_request`) a pull request.
#[derive(Debug, Clone)]
pub struct Issue {
    /// Number within the repository.
    pub number: u64,
    /// Global id.
    pub id: u64,
    /// Title.
    pub title: String,
    /// Markdown body.
    pub body: Option<String>,
    /// Open or closed.
    pub state: IssueState,
    /// Author (`None`: ghost).
    pub user: Option<String>,
    /// Label names (rendered from the repository's labels).
    pub labels: Vec<String>,
    /// Assignee logins; the first is the deprecated single `assignee`.
    pub assignees: Vec<String>,
    /// Milestone number.
    pub milestone: Option<u64>,
    /// Comments, in creation order.
    pub comments: Vec<IssueComment>,
    /// Events, in order.
    pub events: Vec<IssueEvent>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change (comments, events and edits all bump it).
    pub updated_at: Timestamp,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
    /// The pull-request marker.
    pub pull_request: Option<PullRequest>,
    /// Pull-request reviews.
    pub reviews: Vec<Review>,
    /// Pull-request review comments.
    pub review_comments: Vec<ReviewComment>,
}

impl Issue {
    /// Marks the issue as edited now (`updated_at` = [`tick`]).
    pub fn touch(&mut self) -> &mut Issue {
        self.updated_at = tick();
        self
    }

    /// Adds a comment by `user` and bumps `updated_at`.
    pub fn comment(&mut self, user: Option<&str>, body: &str) -> &mut IssueComment {
        let now = tick();
        self.updated_at = now;
        self.comments.push(IssueComment {
            id: next_id(),
            user: user.map(str::to_string),
            body: body.to_string(),
            created_at: now,
            updated_at: now,
        });
        self.comments.last_mut().expect("just pushed")
    }

    /// Records an event (`labeled`, `referenced`, ...) by `actor` and bumps `updated_at`.
    pub fn event(&mut self, event: &str, actor: Option<&str>, commit_id: Option<&str>) {
        let now = tick();
        self.updated_at = now;
        self.events.push(IssueEvent {
            id: next_id(),
            actor: actor.map(str::to_string),
            event: event.to_string(),
            commit_id: commit_id.map(str::to_string),
            created_at: now,
        });
    }

    /// Closes the issue as `actor` (state, `closed_at`, a `closed` event).
    pub fn close(&mut self, actor: Option<&str>) -> &mut Issue {
        self.event("closed", actor, None);
        self.state = IssueState::Closed;
        self.closed_at = Some(self.updated_at);
        self
    }

    /// Reopens the issue as `actor`.
    pub fn reopen(&mut self, actor: Option<&str>) -> &mut Issue {
        self.event("reopened", actor, None);
        self.state = IssueState::Open;
        self.closed_at = None;
        self
    }

    /// Adds a pull-request review (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, ...).
    pub fn review(&mut self, user: Option<&str>, state: &str, body: &str) -> &mut Review {
        let now = tick();
        self.updated_at = now;
        self.reviews.push(Review {
            id: next_id(),
            user: user.map(str::to_string),
            body: body.to_string(),
            state: state.to_string(),
            commit_id: "0000000000000000000000000000000000000000".to_string(),
            submitted_at: Some(now),
        });
        self.reviews.last_mut().expect("just pushed")
    }

    /// Adds a pull-request review comment on `path`.
    pub fn review_comment(
        &mut self,
        user: Option<&str>,
        path: &str,
        body: &str,
    ) -> &mut ReviewComment {
        let now = tick();
        self.updated_at = now;
        let review_id = self.reviews.last().map(|r| r.id);
        self.review_comments.push(ReviewComment {
            id: next_id(),
            review_id,
            user: user.map(str::to_string),
            path: path.to_string(),
            line: Some(1),
            diff_hunk: "@@ -1 +1 @@".to_string(),
            body: body.to_string(),
            commit_id: "0000000000000000000000000000000000000000".to_string(),
            in_reply_to_id: None,
            created_at: now,
            updated_at: now,
        });
        self.review_comments.last_mut().expect("just pushed")
    }
}

/// The pull-request part of an issue.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// When it was merged.
    pub merged_at: Option<Timestamp>,
}

/// A comment on an issue or pull request.
#[derive(Debug, Clone)]
pub struct IssueComment {
    /// Global id.
    pub id: u64,
    /// Author (`None`: ghost).
    pub user: Option<String>,
    /// Markdown body.
    pub body: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last edit.
    pub updated_at: Timestamp,
}

/// An issue event.
#[derive(Debug, Clone)]
pub struct IssueEvent {
    /// Global id.
    pub id: u64,
    /// Who did it (`None`: ghost).
    pub actor: Option<String>,
    /// `closed`, `reopened`, `labeled`, `referenced`, ...
    pub event: String,
    /// The commit, for `referenced`/`closed` by commit.
    pub commit_id: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

/// A pull-request review.
#[derive(Debug, Clone)]
pub struct Review {
    /// Global id.
    pub id: u64,
    /// Reviewer (`None`: ghost).
    pub user: Option<String>,
    /// Review text.
    pub body: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED` or `PENDING`.
    pub state: String,
    /// The reviewed commit.
    pub commit_id: String,
    /// When it was submitted (`None` while pending).
    pub submitted_at: Option<Timestamp>,
}

/// A pull-request review comment.
#[derive(Debug, Clone)]
pub struct ReviewComment {
    /// Global id.
    pub id: u64,
    /// The review it belongs to.
    pub review_id: Option<u64>,
    /// Author (`None`: ghost).
    pub user: Option<String>,
    /// File path.
    pub path: String,
    /// Line in the diff.
    pub line: Option<u64>,
    /// The diff hunk shown with it.
    pub diff_hunk: String,
    /// Markdown body.
    pub body: String,
    /// The commit it was made on.
    pub commit_id: String,
    /// The comment it replies to.
    pub in_reply_to_id: Option<u64>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last edit.
    pub updated_at: Timestamp,
}

/// Open or closed, for milestones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MilestoneState {
    /// Open.
    Open,
    /// Closed.
    Closed,
}

impl MilestoneState {
    /// GitHub's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MilestoneState::Open => "open",
            MilestoneState::Closed => "closed",
        }
    }
}

/// A milestone.
#[derive(Debug, Clone)]
pub struct Milestone {
    /// Number within the repository.
    pub number: u64,
    /// Global id.
    pub id: u64,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Creator (`None`: ghost).
    pub creator: Option<String>,
    /// Open or closed.
    pub state: MilestoneState,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Due date.
    pub due_on: Option<Timestamp>,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
}

impl Milestone {
    /// Closes the milestone now.
    pub fn close(&mut self) -> &mut Milestone {
        let now = tick();
        self.state = MilestoneState::Closed;
        self.closed_at = Some(now);
        self.updated_at = now;
        self
    }
}

/// A comment on a commit.
#[derive(Debug, Clone)]
pub struct CommitComment {
    /// Global id.
    pub id: u64,
    /// The commit SHA.
    pub commit_id: String,
    /// File path, for a line comment.
    pub path: Option<String>,
    /// Position in the diff.
    pub position: Option<u64>,
    /// Line in the file.
    pub line: Option<u64>,
    /// Author (`None`: ghost).
    pub user: Option<String>,
    /// Markdown body.
    pub body: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last edit.
    pub updated_at: Timestamp,
}

/// A release.
#[derive(Debug, Clone)]
pub struct Release {
    /// Global id.
    pub id: u64,
    /// The tag (`None` for a draft without one).
    pub tag_name: Option<String>,
    /// Branch or commit the tag is created from.
    pub target_commitish: String,
    /// Title.
    pub name: Option<String>,
    /// Release notes.
    pub body: Option<String>,
    /// Draft (visible only with push access).
    pub draft: bool,
    /// Pre-release.
    pub prerelease: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Publication time (`None` for drafts).
    pub published_at: Option<Timestamp>,
    /// Author (`None`: ghost).
    pub author: Option<String>,
    /// Uploaded assets.
    pub assets: Vec<Asset>,
}

impl Release {
    /// Uploads an asset with the given bytes (its `size` is the byte count; a test may change
    /// `size` afterwards to make the API lie).
    pub fn add_asset(&mut self, name: &str, content_type: &str, bytes: &[u8]) -> &mut Asset {
        let now = tick();
        self.assets.push(Asset {
            id: next_id(),
            name: name.to_string(),
            label: None,
            content_type: content_type.to_string(),
            size: bytes.len() as u64,
            download_count: 0,
            created_at: now,
            updated_at: now,
            uploader: Some("release-bot".to_string()),
            bytes: bytes.to_vec(),
        });
        self.assets.last_mut().expect("just pushed")
    }
}

/// A release asset.
#[derive(Debug, Clone)]
pub struct Asset {
    /// Global id.
    pub id: u64,
    /// File name.
    pub name: String,
    /// Display label.
    pub label: Option<String>,
    /// MIME type given at upload.
    pub content_type: String,
    /// The size the API reports.
    pub size: u64,
    /// Download count.
    pub download_count: u64,
    /// Upload time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Uploader (`None`: ghost).
    pub uploader: Option<String>,
    /// The content served by the download host.
    pub bytes: Vec<u8>,
}

/// A repository label.
#[derive(Debug, Clone)]
pub struct Label {
    /// Global id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Colour, six hex digits without `#`.
    pub color: String,
    /// Description.
    pub description: Option<String>,
    /// One of GitHub's default labels.
    pub default: bool,
}

/// A team of an organisation.
#[derive(Debug, Clone)]
pub struct Team {
    /// Global id.
    pub id: u64,
    /// Name (what teams.json is keyed by).
    pub name: String,
    /// URL slug.
    pub slug: String,
    /// Description.
    pub description: Option<String>,
    /// `closed` or `secret`.
    pub privacy: String,
    /// The legacy team-wide permission (`pull`, `push`, `admin`).
    pub permission: String,
    /// Member logins.
    pub members: Vec<String>,
    /// Repositories with the team's role on each (`pull`, `triage`, `push`, `maintain`,
    /// `admin`).
    pub repos: Vec<(String, String)>,
}

/// A webhook (organisation or repository).
#[derive(Debug, Clone)]
pub struct Hook {
    /// Global id.
    pub id: u64,
    /// Active.
    pub active: bool,
    /// Subscribed events.
    pub events: Vec<String>,
    /// `url`, `content_type`, `insecure_ssl` and `secret` (stored in clear, rendered as
    /// `********` like GitHub).
    pub config: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl Hook {
    /// A JSON webhook for `push` events.
    fn new(url: &str, secret: Option<&str>) -> Hook {
        let now = tick();
        let mut config = BTreeMap::from([
            ("url".to_string(), url.to_string()),
            ("content_type".to_string(), "json".to_string()),
            ("insecure_ssl".to_string(), "0".to_string()),
        ]);
        if let Some(secret) = secret {
            config.insert("secret".to_string(), secret.to_string());
        }
        Hook {
            id: next_id(),
            active: true,
            events: vec!["push".to_string()],
            config,
            created_at: now,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_strictly_increases() {
        let a = tick();
        let b = tick();
        assert!(b > a, "{a} then {b}");
    }

    #[test]
    fn team_slugs_follow_github() {
        assert_eq!(slugify("Core Devs"), "core-devs");
        assert_eq!(slugify("Ops & Infra!"), "ops-infra");
    }
}
