//! Bare git mirrors of repositories and wikis, with the git CLI (`github-git-path`;
//! github-rgw-rbd.md §1.5, §1.11), their Git LFS objects, and pushing a mirror back out.
//!
//! **Mirrors.** A missing mirror is made with `git clone --mirror URL TEMP` into a temporary
//! sibling (`.backup-tmp…-repo`), renamed into place when complete: a crash or a failed clone
//! never leaves a half clone where the mirror should be. An existing mirror follows its
//! repository: `git remote set-url origin URL` when the URL changed (a transferred or renamed
//! repository), then `git remote update --prune` (every ref, `refs/pull/*` included; deleted
//! and force-pushed refs follow, older snapshots keep the old commits). With scrub,
//! `git fsck --no-dangling --no-progress` must pass. Each command line is printed on stdout
//! before it runs (as the original); git's own output follows on stdout/stderr.
//!
//! **Credentials.** The token goes through the askpass helper ([`super::askpass`]): git gets
//! `GIT_ASKPASS=<this executable>` and the token in its environment, bound to the origin of
//! the URL; never in argv, logs or the mirror's config. `-c credential.helper=` keeps the
//! user's own helpers out, `GIT_TERMINAL_PROMPT=0` makes a missing credential fail instead of
//! waiting for a keyboard. Objects and refs are fsynced (`core.fsync=committed`).
//!
//! **Failures.** "Not found" and authentication failures are permanent: no retry. Anything else
//! (network, HTTP 5xx) is retried, 5 attempts in all, with doubling pauses (1 s, 2 s, 4 s, 8 s).
//! For a wiki, "not found" means the wiki was never created (GitHub reports `has_wiki` true
//! anyway) or the token cannot read it: [`update_wiki`] returns [`MirrorOutcome::NoWiki`] with
//! a warning, on every run, and keeps an existing wiki mirror untouched.
//!
//! **Git LFS.** When `git lfs version` works, [`update_mirror`] runs
//! `git lfs fetch --all origin` after the update (same credentials), skipped while the refs are
//! unchanged since the last successful LFS fetch (`deltaic-lfs-fetched` in the mirror records
//! them) except under scrub. Without git-lfs the LFS objects are not backed up; this is logged.
//!
//! **Restore** ([`push_mirror`], used by `deltaic github restore`) pushes git data only: every
//! branch, tag and other ref, the `refs/pull/*` refs (which GitHub refuses, as it reserves
//! them: a warning, their commits stay in the backup), and the LFS objects. It cannot restore
//! what is not git data: issues, pull requests and their review threads, comments, milestones,
//! releases and their assets, labels, teams and hooks (the JSON files in the backup keep them
//! for reading, but GitHub has no API to recreate them with their original authors, numbers and
//! timestamps); nor the default branch or the repository settings, which are set by hand.

use super::askpass;
use crate::config::{Config, Secret};
use crate::util::atomic_file;
use crate::util::process::{self, ProcessError};
use anyhow::Context;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Attempts of a network operation before its failure is final.
pub const ATTEMPTS: u32 = 5;

/// File in a mirror recording the refs of the last successful `git lfs fetch --all`.
pub const LFS_STATE_FILE: &str = "deltaic-lfs-fetched";

/// What [`update_mirror`] or [`update_wiki`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// A new mirror was cloned.
    Cloned,
    /// The existing mirror was brought up to date.
    Updated,
    /// The wiki does not exist (or the token cannot see it); nothing was changed.
    NoWiki,
}

/// The git executable and how to run it.
#[derive(Debug)]
pub struct Git {
    program: OsString,
    askpass: PathBuf,
    backoff: Duration,
    safe_directory: Option<PathBuf>,
    lfs: OnceLock<bool>,
}

/// How git may get credentials for one command.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// The token through the askpass helper; no user helpers, no prompts.
    Token(&'a Secret),
    /// No credentials at all: no helpers, no prompts (public or local repositories).
    Anonymous,
    /// The user's own git setup (helpers, ssh keys, prompts): `restore` to a non-GitHub host.
    Ambient,
}

impl<'a> Auth<'a> {
    fn backup(token: Option<&'a Secret>) -> Auth<'a> {
        token.map_or(Auth::Anonymous, Auth::Token)
    }
}

/// Why a git command failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The repository does not exist (or is hidden from this token).
    NotFound,
    /// Credentials missing or refused, or a local problem retrying cannot fix.
    Permanent,
    /// Worth another attempt.
    Transient,
}

/// A failed git command and its classification.
#[derive(Debug)]
struct GitError {
    failure: Failure,
    error: ProcessError,
}

impl Git {
    /// `program` (the `github-git-path` setting), with this executable as the askpass helper.
    pub fn new(program: impl Into<OsString>) -> anyhow::Result<Git> {
        let askpass = std::env::current_exe()
            .context("finding the deltaic executable to serve as git's askpass helper")?;
        Ok(Git {
            program: program.into(),
            askpass,
            backoff: Duration::from_secs(1),
            safe_directory: None,
            lfs: OnceLock::new(),
        })
    }

    /// [`Git::new`] with `settings.github-git-path`.
    pub fn from_config(config: &Config) -> anyhow::Result<Git> {
        Git::new(&config.settings.github_git_path)
    }

    /// Uses `program` as the askpass helper instead of this executable (tests: the deltaic
    /// binary, when this process is a test harness).
    pub fn with_askpass(mut self, program: impl Into<PathBuf>) -> Git {
        self.askpass = program.into();
        self
    }

    /// Sets the first pause between attempts (doubling after each); 1 s by default.
    pub fn with_backoff(mut self, first_pause: Duration) -> Git {
        self.backoff = first_pause;
        self
    }

    /// Trusts `dir` although another user owns it (`-c safe.directory=DIR`): restoring from a
    /// snapshot or a backup owned by the backup user.
    pub fn trusting(mut self, dir: &Path) -> Git {
        self.safe_directory = Some(dir.to_path_buf());
        self
    }

    /// Whether `git lfs version` works (checked once).
    pub fn lfs_available(&self) -> bool {
        *self.lfs.get_or_init(|| {
            let mut cmd = Command::new(&self.program);
            cmd.args(["lfs", "version"]);
            process::output(&mut cmd).is_ok()
        })
    }

    /// A git command with a clean environment, credentials per `auth` for `url`, and, with
    /// `git_dir`, running in that repository (`GIT_DIR`, so git never looks further up).
    fn command(&self, git_dir: Option<&Path>, auth: Auth, url: Option<&str>) -> Command {
        let mut cmd = Command::new(&self.program);
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_NAMESPACE",
            askpass::MODE_ENV,
            askpass::TOKEN_ENV,
            askpass::ORIGIN_ENV,
        ] {
            cmd.env_remove(var);
        }
        if let Some(dir) = &self.safe_directory {
            cmd.arg("-c")
                .arg(format!("safe.directory={}", dir.display()));
        }
        match auth {
            Auth::Ambient => {}
            Auth::Anonymous | Auth::Token(_) => {
                cmd.args(["-c", "credential.helper="]);
                cmd.env("GIT_TERMINAL_PROMPT", "0");
                // Empty, not unset: git then skips core.askPass and SSH_ASKPASS too.
                cmd.env("GIT_ASKPASS", "");
                cmd.env_remove("SSH_ASKPASS");
            }
        }
        if let (Auth::Token(token), Some(origin)) = (auth, url.and_then(askpass::origin_of)) {
            cmd.env("GIT_ASKPASS", &self.askpass)
                .env(askpass::MODE_ENV, "1")
                .env(askpass::TOKEN_ENV, token.expose())
                .env(askpass::ORIGIN_ENV, origin);
        }
        cmd.args(["-c", "core.fsync=committed"]);
        if let Some(dir) = git_dir {
            cmd.env("GIT_DIR", dir).current_dir(dir);
        }
        cmd
    }

    /// Prints `cmd` (URL passwords masked) and runs it. On success git's stderr (where it
    /// reports) is passed on and its output returned; a failure carries the stderr and a
    /// classification.
    fn run(&self, cmd: &mut Command) -> Result<Output, GitError> {
        let line = redact(&process::display(cmd)).into_owned();
        println!("{line}");
        let result = process::output_any_status(cmd);
        let out = result.map_err(|mut error| {
            error.command = line.clone();
            GitError {
                failure: Failure::Permanent,
                error,
            }
        })?;
        if out.status.success() {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), &out.stderr);
            return Ok(out);
        }
        let mut error = process::failure(cmd, &out);
        error.command = line;
        Err(GitError {
            failure: classify(&error.stderr),
            error,
        })
    }

    /// Runs the command `make` builds until it succeeds, fails permanently, or [`ATTEMPTS`]
    /// are used up; `cleanup` runs after each failed attempt.
    fn run_retrying(
        &self,
        mut make: impl FnMut() -> Command,
        mut cleanup: impl FnMut(),
    ) -> Result<Output, GitError> {
        let mut pause = self.backoff;
        for attempt in 1..=ATTEMPTS {
            match self.run(&mut make()) {
                Ok(out) => return Ok(out),
                Err(err) => {
                    cleanup();
                    if err.failure != Failure::Transient || attempt == ATTEMPTS {
                        return Err(err);
                    }
                    tracing::warn!(
                        "{} (attempt {attempt} of {ATTEMPTS}); retrying in {:?}",
                        err.error,
                        pause
                    );
                    std::thread::sleep(pause);
                    pause *= 2;
                }
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// Brings the bare mirror `dir` of the repository at `url` up to date (cloning it if missing),
/// then fetches its LFS objects, then with `scrub` runs `git fsck`. Every failure is an error,
/// a missing repository included.
pub fn update_mirror(
    git: &Git,
    url: &str,
    dir: &Path,
    token: Option<&Secret>,
    scrub: bool,
) -> anyhow::Result<MirrorOutcome> {
    let auth = Auth::backup(token);
    let outcome = sync(git, url, dir, auth).map_err(|e| mirror_error(e, url, dir))?;
    lfs_fetch(git, url, dir, auth, scrub)?;
    if scrub {
        fsck(git, dir)?;
    }
    Ok(outcome)
}

/// [`update_mirror`] for the wiki of the repository whose `clone_url` is given (wiki URL from
/// [`wiki_url`]), without LFS. A wiki that does not exist gives [`MirrorOutcome::NoWiki`] and a
/// warning; an existing wiki mirror is then left as it is.
pub fn update_wiki(
    git: &Git,
    clone_url: &str,
    dir: &Path,
    token: Option<&Secret>,
    scrub: bool,
) -> anyhow::Result<MirrorOutcome> {
    let url = wiki_url(clone_url);
    match sync(git, &url, dir, Auth::backup(token)) {
        Ok(outcome) => {
            if scrub {
                fsck(git, dir)?;
            }
            Ok(outcome)
        }
        Err(err) if err.failure == Failure::NotFound => {
            let kept = if dir.exists() {
                format!("; the mirror {} is kept as it is", dir.display())
            } else {
                String::new()
            };
            tracing::warn!(
                "no wiki at {}: it was never created, or the token cannot read it{kept}",
                redact(&url)
            );
            Ok(MirrorOutcome::NoWiki)
        }
        Err(err) => Err(mirror_error(err, &url, dir)),
    }
}

/// The wiki's clone URL: `clone_url` without `.git`, plus `.wiki.git`.
pub fn wiki_url(clone_url: &str) -> String {
    let base = clone_url.strip_suffix(".git").unwrap_or(clone_url);
    format!("{base}.wiki.git")
}

/// What [`push_mirror`] pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// Refs pushed, `refs/pull/*` excluded.
    pub refs: usize,
    /// `refs/pull/*` refs in the mirror.
    pub pull_refs: usize,
    /// Whether the remote accepted the `refs/pull/*` refs (GitHub does not).
    pub pull_refs_pushed: bool,
    /// Whether LFS objects were pushed.
    pub lfs_pushed: bool,
}

/// Pushes the bare mirror `mirror_dir` to `remote`: its LFS objects (if any) first, then every
/// ref except `refs/pull/*`, then `refs/pull/*`, whose refusal is only a warning. Without
/// `force`, a ref the remote holds with other history is an error; with it, it is overwritten.
/// Refs the mirror lacks are never deleted. With `token`, credentials go through the askpass
/// helper for `remote`'s origin; without, git uses the user's own setup.
pub fn push_mirror(
    git: &Git,
    mirror_dir: &Path,
    remote: &str,
    token: Option<&Secret>,
    force: bool,
) -> anyhow::Result<PushOutcome> {
    let plus = if force { "+" } else { "" };
    let auth = token.map_or(Auth::Ambient, Auth::Token);
    let refs = list_refs(git, mirror_dir)?;
    let pull_refs = refs
        .iter()
        .filter(|(_, name)| name.starts_with("refs/pull/"))
        .count();
    let lfs_pushed = if has_lfs_objects(mirror_dir) {
        if !git.lfs_available() {
            anyhow::bail!(
                "{} holds Git LFS objects, but `git lfs` is not available: install git-lfs and \
                 run the restore again",
                mirror_dir.display()
            );
        }
        git.run_retrying(
            || {
                let mut cmd = git.command(Some(mirror_dir), auth, Some(remote));
                cmd.args(["lfs", "push", "--all", remote]);
                cmd
            },
            || {},
        )
        .map_err(|e| anyhow::Error::new(e.error))
        .with_context(|| format!("pushing the LFS objects of {}", mirror_dir.display()))?;
        true
    } else {
        false
    };
    git.run_retrying(
        || {
            let mut cmd = git.command(Some(mirror_dir), auth, Some(remote));
            cmd.args([
                "push",
                "--no-verify",
                remote,
                &format!("{plus}refs/*:refs/*"),
                "^refs/pull/*",
            ]);
            cmd
        },
        || {},
    )
    .map_err(|e| anyhow::Error::new(e.error))
    .with_context(|| format!("pushing {} to {}", mirror_dir.display(), redact(remote)))?;
    let pull_refs_pushed = pull_refs > 0 && {
        let mut cmd = git.command(Some(mirror_dir), auth, Some(remote));
        cmd.args([
            "push",
            "--no-verify",
            remote,
            &format!("{plus}refs/pull/*:refs/pull/*"),
        ]);
        match git.run(&mut cmd) {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(
                    "the remote refused the {pull_refs} pull-request ref(s) (GitHub reserves \
                     refs/pull/); their commits stay in the backup: {}",
                    err.error
                );
                false
            }
        }
    };
    Ok(PushOutcome {
        refs: refs.len() - pull_refs,
        pull_refs,
        pull_refs_pushed,
        lfs_pushed,
    })
}

/// Every ref of the repository `dir` with its object id, sorted by name.
pub fn list_refs(git: &Git, dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut cmd = git.command(Some(dir), Auth::Anonymous, None);
    cmd.args(["for-each-ref", "--format=%(objectname) %(refname)"]);
    let out = process::output(&mut cmd)
        .with_context(|| format!("listing the refs of {}", dir.display()))?;
    Ok(parse_ref_lines(&String::from_utf8_lossy(&out.stdout), ' '))
}

/// Whether `dir` is a bare git repository.
pub fn is_bare_repository(git: &Git, dir: &Path) -> bool {
    let mut cmd = git.command(Some(dir), Auth::Anonymous, None);
    cmd.args(["rev-parse", "--is-bare-repository"]);
    process::output(&mut cmd).is_ok_and(|out| out.stdout.starts_with(b"true"))
}

/// The refs `remote` advertises (`git ls-remote`), without `HEAD` and peeled tags (`^{}`).
pub fn remote_refs(
    git: &Git,
    dir: &Path,
    remote: &str,
    token: Option<&Secret>,
) -> anyhow::Result<Vec<(String, String)>> {
    let auth = token.map_or(Auth::Ambient, Auth::Token);
    let out = git
        .run_retrying(
            || {
                let mut cmd = git.command(Some(dir), auth, Some(remote));
                cmd.args(["ls-remote", remote]);
                cmd
            },
            || {},
        )
        .map_err(|e| anyhow::Error::new(e.error))
        .with_context(|| format!("listing the refs of {}", redact(remote)))?;
    let mut refs = parse_ref_lines(&String::from_utf8_lossy(&out.stdout), '\t');
    refs.retain(|(_, name)| name.starts_with("refs/") && !name.ends_with("^{}"));
    Ok(refs)
}

/// `(object id, ref name)` pairs from `for-each-ref`/`ls-remote` lines, sorted by name.
fn parse_ref_lines(text: &str, separator: char) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.split_once(separator))
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
    refs.sort_by(|a, b| a.1.cmp(&b.1));
    refs
}

/// Clones or updates; the mirror is complete when this returns Ok.
fn sync(git: &Git, url: &str, dir: &Path, auth: Auth) -> Result<MirrorOutcome, GitError> {
    if dir.exists() {
        fetch(git, url, dir, auth)?;
        Ok(MirrorOutcome::Updated)
    } else {
        clone(git, url, dir, auth)?;
        Ok(MirrorOutcome::Cloned)
    }
}

fn clone(git: &Git, url: &str, dir: &Path, auth: Auth) -> Result<(), GitError> {
    let local = |what: &str, e: std::io::Error| GitError {
        failure: Failure::Permanent,
        error: ProcessError {
            command: format!("{what} {}", dir.display()),
            outcome: format!("failed: {e}"),
            code: None,
            stderr: String::new(),
        },
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| local("creating the parent of", e))?;
    remove_stale_temps(dir);
    let temp = RefCell::new(PathBuf::new());
    git.run_retrying(
        || {
            let fresh = atomic_file::labelled_temp_path(dir);
            let mut cmd = git.command(None, auth, Some(url));
            cmd.args(["clone", "--mirror", url]).arg(&fresh);
            *temp.borrow_mut() = fresh;
            cmd
        },
        || {
            let _ = fs::remove_dir_all(&*temp.borrow());
        },
    )?;
    let temp = temp.into_inner();
    if let Err(e) = fs::rename(&temp, dir) {
        let _ = fs::remove_dir_all(&temp);
        return Err(local("moving the new clone into place at", e));
    }
    atomic_file::sync_dir(parent).map_err(|e| local("syncing the directory of", e))
}

/// Removes temporary clones of `dir` left by a crash (`.backup-tmp<pid>-<nonce>-<name>`).
fn remove_stale_temps(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let suffix = format!("-{}", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    }) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if entry_name.starts_with(atomic_file::TEMP_PREFIX) && entry_name.ends_with(&suffix) {
            tracing::info!("removing an unfinished clone left by an earlier run: {entry_name}");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn fetch(git: &Git, url: &str, dir: &Path, auth: Auth) -> Result<(), GitError> {
    let mut get = git.command(Some(dir), Auth::Anonymous, None);
    get.args(["config", "--get", "remote.origin.url"]);
    let current = process::output(&mut get).map_err(|mut error| {
        error.outcome = format!(
            "{}; {} exists but is not a mirror made by `git clone --mirror`: move it aside and \
             the next run clones the repository again",
            error.outcome,
            dir.display()
        );
        GitError {
            failure: Failure::Permanent,
            error,
        }
    })?;
    let current = String::from_utf8_lossy(&current.stdout).trim().to_string();
    if current != url {
        tracing::info!(
            "{}: the repository moved from {} to {}",
            dir.display(),
            redact(&current),
            redact(url)
        );
        let mut set = git.command(Some(dir), Auth::Anonymous, None);
        set.args(["remote", "set-url", "origin", url]);
        git.run(&mut set)?;
    }
    git.run_retrying(
        || {
            let mut cmd = git.command(Some(dir), auth, Some(url));
            cmd.args(["remote", "update", "--prune"]);
            cmd
        },
        || {},
    )?;
    Ok(())
}

fn fsck(git: &Git, dir: &Path) -> anyhow::Result<()> {
    let mut cmd = git.command(Some(dir), Auth::Anonymous, None);
    cmd.args(["fsck", "--no-dangling", "--no-progress"]);
    git.run(&mut cmd).map_err(|e| {
        anyhow::Error::new(e.error).context(format!(
            "scrub: `git fsck` found damage in the mirror {}; older snapshots hold earlier \
             copies. Move the mirror aside and the next run clones it again",
            dir.display()
        ))
    })?;
    Ok(())
}

/// Fetches the LFS objects of every ref, unless the refs are the same as at the last successful
/// LFS fetch (scrub always fetches). Without git-lfs, says that LFS objects are not kept.
fn lfs_fetch(git: &Git, url: &str, dir: &Path, auth: Auth, scrub: bool) -> anyhow::Result<()> {
    if !git.lfs_available() {
        static SAID: AtomicBool = AtomicBool::new(false);
        if uses_lfs_at_head(git, dir) {
            tracing::warn!(
                "{} uses Git LFS, but `git lfs` is not available: its LFS objects are not \
                 backed up. Install git-lfs",
                dir.display()
            );
        } else if !SAID.swap(true, Ordering::Relaxed) {
            tracing::info!("`git lfs` is not available: Git LFS objects are not backed up");
        }
        return Ok(());
    }
    let state_file = dir.join(LFS_STATE_FILE);
    let refs = list_refs(git, dir)?;
    let state = format!("refs {:016x}\n", fingerprint(&refs));
    if !scrub && fs::read_to_string(&state_file).is_ok_and(|s| s == state) {
        return Ok(());
    }
    git.run_retrying(
        || {
            let mut cmd = git.command(Some(dir), auth, Some(url));
            cmd.args(["lfs", "fetch", "--all", "origin"]);
            cmd
        },
        || {},
    )
    .map_err(|e| anyhow::Error::new(e.error))
    .with_context(|| format!("fetching the Git LFS objects of {}", dir.display()))?;
    atomic_file::write(&state_file, state.as_bytes())
        .with_context(|| format!("writing {}", state_file.display()))
}

/// Whether the `.gitattributes` at HEAD routes files through LFS (a cheap hint, for the log).
fn uses_lfs_at_head(git: &Git, dir: &Path) -> bool {
    let mut cmd = git.command(Some(dir), Auth::Anonymous, None);
    cmd.args(["cat-file", "-p", "HEAD:.gitattributes"]);
    process::output(&mut cmd)
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("filter=lfs"))
}

fn has_lfs_objects(dir: &Path) -> bool {
    fs::read_dir(dir.join("lfs").join("objects")).is_ok_and(|mut entries| entries.next().is_some())
}

/// FNV-1a (64 bit) of the refs: stable across builds, enough to notice that refs moved.
fn fingerprint(refs: &[(String, String)]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, name) in refs {
        for byte in id.bytes().chain([b' ']).chain(name.bytes()).chain([b'\n']) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Classifies a failure by git's stderr.
fn classify(stderr: &str) -> Failure {
    let s = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if any(&[
        "repository not found",
        "does not appear to be a git repository",
        "returned error: 404",
        "no such repository",
    ]) || (s.contains("repository '") && s.contains("' not found"))
    {
        Failure::NotFound
    } else if any(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "returned error: 401",
        "returned error: 403",
        "permission denied",
        "no space left on device",
        "dubious ownership",
    ]) {
        Failure::Permanent
    } else {
        Failure::Transient
    }
}

/// An error for a failed clone/update of `url` into `dir`, with what to do next.
fn mirror_error(err: GitError, url: &str, dir: &Path) -> anyhow::Error {
    let hint = match err.failure {
        Failure::NotFound => {
            "the repository was not found: it was deleted or renamed, or the token cannot read it"
        }
        Failure::Permanent => {
            "this is not a passing network problem: check the token (`deltaic github auth`), \
             the disk and the message above"
        }
        Failure::Transient => "every attempt failed; the next run tries again",
    };
    anyhow::Error::new(err.error).context(format!(
        "mirroring {} into {}: {hint}",
        redact(url),
        dir.display()
    ))
}

/// `text` with the password of any `scheme://user:password@host` URL replaced by `***`.
fn redact(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail.find(['/', ' ', '\t', '\n']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|colon| (colon, at)))
        {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiki_urls_replace_dot_git() {
        assert_eq!(
            wiki_url("https://github.com/o/r.git"),
            "https://github.com/o/r.wiki.git"
        );
        assert_eq!(wiki_url("file:///srv/r"), "file:///srv/r.wiki.git");
    }

    #[test]
    fn failures_are_classified_by_gits_messages() {
        let github_404 = "remote: Repository not found.\nfatal: repository 'https://github.com/o/r.wiki.git/' not found\n";
        assert_eq!(classify(github_404), Failure::NotFound);
        assert_eq!(
            classify(
                "fatal: '/tmp/x/r.wiki.git' does not appear to be a git repository\nfatal: Could not read from remote repository."
            ),
            Failure::NotFound
        );
        assert_eq!(
            classify("fatal: Authentication failed for 'https://github.com/o/r.git/'"),
            Failure::Permanent
        );
        assert_eq!(
            classify(
                "fatal: could not read Username for 'https://github.com': terminal prompts disabled"
            ),
            Failure::Permanent
        );
        assert_eq!(
            classify("error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502"),
            Failure::Transient
        );
        assert_eq!(
            classify(
                "fatal: unable to access 'https://github.com/o/r.git/': Could not resolve host: github.com"
            ),
            Failure::Transient
        );
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            redact("git push https://u:hunter2@h.example/r.git refs/*:refs/*"),
            "git push https://u:***@h.example/r.git refs/*:refs/*"
        );
        assert_eq!(
            redact("git clone --mirror https://x-access-token@github.com/o/r.git /d"),
            "git clone --mirror https://x-access-token@github.com/o/r.git /d"
        );
        assert_eq!(
            redact("a file:///x b http://h/ c"),
            "a file:///x b http://h/ c"
        );
    }

    #[test]
    fn the_refs_fingerprint_sees_any_change() {
        let a = vec![("1".repeat(40), "refs/heads/main".to_string())];
        let mut b = a.clone();
        b[0].0 = "2".repeat(40);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&[]));
    }
}
