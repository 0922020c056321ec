//! The content of the fake's git repositories, made with real git: bare repositories under the
//! git root, filled by committing in a scratch clone and pushing, as a developer would.
//!
//! Every helper takes the organisation and repository as they exist in the fake's state (the
//! repository must have been added there first) and panics with git's stderr on failure. Git
//! runs with no system or global configuration, so a developer's settings cannot leak in.

use super::{FakeGithub, lock};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs git in `dir` with an isolated configuration and a fixed identity; returns the trimmed
/// stdout, or `None` when git fails.
pub fn try_git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = git_command(dir, args).output().expect("run git");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Like [`try_git`], but panics with git's stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir, args).output().expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A git command in `dir`, isolated from the machine's configuration.
fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Fake Developer")
        .env("GIT_AUTHOR_EMAIL", "dev@fake-github.test")
        .env("GIT_COMMITTER_NAME", "Fake Developer")
        .env("GIT_COMMITTER_EMAIL", "dev@fake-github.test");
    command
}

/// Every ref of the repository at `git_dir` with the object it points to (for comparing a
/// mirror with its origin, ref by ref).
pub fn refs(git_dir: &Path) -> BTreeMap<String, String> {
    git(
        git_dir,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
    .lines()
    .filter_map(|line| line.split_once(' '))
    .map(|(name, id)| (name.to_string(), id.to_string()))
    .collect()
}

/// How a commit relates to the branch it is pushed to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum History {
    /// On top of the branch (a normal push).
    Append,
    /// Replacing the branch's last commit (a force push).
    Rewrite,
}

impl FakeGithub {
    /// The organisation login and repository name as the state spells them; panics when the
    /// repository was not added to the state.
    fn names(&self, org: &str, repo: &str) -> (String, String, String) {
        let state = lock(self.state());
        let org = state
            .org(org)
            .unwrap_or_else(|| panic!("fake GitHub: add organisation {org:?} before its git data"));
        let r = org
            .repo(repo)
            .unwrap_or_else(|| panic!("fake GitHub: add repository {repo:?} before its git data"));
        (org.login.clone(), r.name.clone(), r.default_branch.clone())
    }

    /// The bare repository behind `org/repo`'s `clone_url`.
    pub fn repo_path(&self, org: &str, repo: &str) -> PathBuf {
        let (org, repo, _) = self.names(org, repo);
        self.git_root().join(org).join(format!("{repo}.git"))
    }

    /// The bare repository of `org/repo`'s wiki.
    pub fn wiki_path(&self, org: &str, repo: &str) -> PathBuf {
        let (org, repo, _) = self.names(org, repo);
        self.git_root().join(org).join(format!("{repo}.wiki.git"))
    }

    /// The repository's `clone_url` (on the fake's git endpoint).
    pub fn clone_url(&self, org: &str, repo: &str) -> String {
        let (org, repo, _) = self.names(org, repo);
        format!("{}/{org}/{repo}.git", self.web_url())
    }

    /// Creates `org/repo`'s git repository, empty, with HEAD on its default branch.
    pub fn create_git_repo(&self, org: &str, repo: &str) -> PathBuf {
        let (_, _, branch) = self.names(org, repo);
        let path = self.repo_path(org, repo);
        init_bare(&path, &branch);
        path
    }

    /// Creates `org/repo`'s wiki repository with a `Home.md` page on `master` (GitHub's wiki
    /// branch).
    pub fn create_wiki(&self, org: &str, repo: &str) -> PathBuf {
        let path = self.wiki_path(org, repo);
        init_bare(&path, "master");
        self.commit(
            &path,
            "master",
            &[("Home.md", "# Home\n")],
            "Initial Home page",
            History::Append,
        );
        path
    }

    /// Commits `files` (path, content) on `branch` of `org/repo` and pushes it; returns the new
    /// commit id. Creates the branch (from the default branch, or as the first commit of an
    /// empty repository) when needed; updates the repository's `pushed_at`.
    pub fn push_files(
        &self,
        org: &str,
        repo: &str,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        let path = self.repo_path(org, repo);
        let (_, new) = self.commit(&path, branch, files, message, History::Append);
        self.with(|s| s.repo_mut(org, repo).pushed_at = Some(super::tick()));
        new
    }

    /// Replaces the last commit of `branch` with one holding `files` and force-pushes it;
    /// returns `(old tip, new tip)`. The old tip is no longer reachable from any ref.
    pub fn force_push(
        &self,
        org: &str,
        repo: &str,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> (String, String) {
        let path = self.repo_path(org, repo);
        let (old, new) = self.commit(&path, branch, files, message, History::Rewrite);
        self.with(|s| s.repo_mut(org, repo).pushed_at = Some(super::tick()));
        (old.expect("force_push needs an existing branch"), new)
    }

    /// Deletes `branch` of `org/repo`.
    pub fn delete_branch(&self, org: &str, repo: &str, branch: &str) {
        let path = self.repo_path(org, repo);
        git(
            &path,
            &["update-ref", "-d", &format!("refs/heads/{branch}")],
        );
    }

    /// Points `refname` (e.g. `refs/pull/1/head`, `refs/tags/v1`) of `org/repo` at `id`, as
    /// GitHub does for its hidden pull-request refs.
    pub fn set_ref(&self, org: &str, repo: &str, refname: &str, id: &str) {
        let path = self.repo_path(org, repo);
        git(&path, &["update-ref", refname, id]);
    }

    /// Commits in a scratch clone of the bare repository `bare` and pushes; returns the old
    /// tip of `branch` (if any) and the new one.
    fn commit(
        &self,
        bare: &Path,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
        history: History,
    ) -> (Option<String>, String) {
        let scratch = self.scratch_dir();
        let bare_text = bare.to_str().expect("UTF-8 path");
        git(scratch.path(), &["clone", "-q", bare_text, "work"]);
        let work = scratch.path().join("work");
        let remote_branch = format!("refs/remotes/origin/{branch}");
        let old = try_git(&work, &["rev-parse", "-q", "--verify", &remote_branch]);
        if old.is_some() {
            git(&work, &["checkout", "-q", "-B", branch, &remote_branch]);
        } else if try_git(
            &work,
            &["rev-parse", "-q", "--verify", "refs/remotes/origin/HEAD"],
        )
        .is_some()
        {
            git(
                &work,
                &["checkout", "-q", "-b", branch, "refs/remotes/origin/HEAD"],
            );
        } else {
            // An empty repository: the first commit of `branch`.
            git(
                &work,
                &["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")],
            );
        }
        if history == History::Rewrite && old.is_some() {
            if try_git(&work, &["rev-parse", "-q", "--verify", "HEAD~1"]).is_some() {
                git(&work, &["reset", "-q", "--hard", "HEAD~1"]);
            } else {
                git(&work, &["rm", "-rfq", "."]);
                git(
                    &work,
                    &["update-ref", "-d", &format!("refs/heads/{branch}")],
                );
            }
        }
        for (name, content) in files {
            let file = work.join(name);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).expect("create directories in the scratch clone");
            }
            std::fs::write(&file, content).expect("write a file in the scratch clone");
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", message]);
        let mut push = vec!["push", "-q"];
        if history == History::Rewrite {
            push.push("--force");
        }
        let target = format!("HEAD:refs/heads/{branch}");
        push.extend(["origin", &target]);
        git(&work, &push);
        (old, git(&work, &["rev-parse", "HEAD"]))
    }
}

/// `git init --bare` with HEAD on `branch`.
fn init_bare(path: &Path, branch: &str) {
    std::fs::create_dir_all(path).expect("create the bare repository directory");
    git(
        path,
        &[
            "init",
            "-q",
            "--bare",
            &format!("--initial-branch={branch}"),
            ".",
        ],
    );
}
