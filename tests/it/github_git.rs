//! The github source's git side against real git (github-rgw-rbd.md §1.5, §1.11, §1.12): bare
//! mirrors of local origins over `file://` (clone, new commits, pruned branches, force-pushes,
//! empty repositories, moved remotes, scrub with a corrupted object, crash safety, wikis), the
//! token path over smart HTTP (`tests/fixtures/git-http-server.py`: `git http-backend` behind
//! Basic auth), the binary's askpass mode, Git LFS, and `restore` compared ref by ref.

use crate::harness::require;
use deltaic::config::{Config, Secret};
use deltaic::sources::github::git::{self, Git, MirrorOutcome};
use deltaic::sources::github::restore::{restore, restore_with};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const TOKEN: &str = "ghp_test_token_0123456789";

/// Runs git for fixtures (not the code under test), with a fixed identity and no user config.
fn fixture_git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.org")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.org")
        .env_remove("GIT_DIR")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch area with bare origins and a working clone to make commits in.
struct Origins {
    tmp: TempDir,
}

impl Origins {
    fn new() -> Origins {
        Origins {
            tmp: TempDir::new().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn url(&self, rel: &str) -> String {
        format!("file://{}", self.path(rel).display())
    }

    /// A bare repository `rel` (e.g. `origins/r.git`), empty.
    fn bare(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(&path).unwrap();
        fixture_git(&path, &["init", "-q", "--bare", "-b", "main"]);
        path
    }

    /// A working clone of `rel` at `work-<name>`.
    fn work(&self, rel: &str, name: &str) -> PathBuf {
        let work = self.path(&format!("work-{name}"));
        fixture_git(
            self.tmp.path(),
            &["clone", "-q", &self.url(rel), work.to_str().unwrap()],
        );
        fixture_git(&work, &["checkout", "-q", "-B", "main"]);
        work
    }

    /// An origin with two branches, an annotated tag and a pull-request ref.
    fn populated(&self, rel: &str) -> (PathBuf, PathBuf) {
        let origin = self.bare(rel);
        let work = self.work(rel, &rel.replace('/', "-"));
        commit(&work, "a.txt", "one");
        fixture_git(&work, &["tag", "-a", "-m", "release", "v1"]);
        fixture_git(&work, &["checkout", "-q", "-b", "feature"]);
        commit(&work, "b.txt", "feature");
        fixture_git(&work, &["checkout", "-q", "main"]);
        commit(&work, "a.txt", "two");
        fixture_git(
            &work,
            &[
                "push",
                "-q",
                "origin",
                "main",
                "feature",
                "v1",
                "feature:refs/pull/1/head",
            ],
        );
        (origin, work)
    }
}

fn commit(work: &Path, file: &str, content: &str) {
    fs::write(work.join(file), content).unwrap();
    fixture_git(work, &["add", file]);
    fixture_git(work, &["commit", "-q", "-m", &format!("{file}: {content}")]);
}

/// `git for-each-ref` of a repository: `<id> <ref>` lines, sorted.
fn refs(repo: &Path) -> String {
    fixture_git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"])
}

/// The code under test, with the deltaic binary as askpass helper and short pauses.
fn git() -> Git {
    Git::new("git")
        .unwrap()
        .with_askpass(env!("CARGO_BIN_EXE_deltaic"))
        .with_backoff(Duration::from_millis(20))
}

/// Entries of `dir` whose names start with `.backup-tmp` (unfinished clones).
fn temp_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".backup-tmp"))
        .collect()
}

#[test]
fn github_mirror_follows_commits_deleted_branches_and_force_pushes() {
    let o = Origins::new();
    let (origin, work) = o.populated("origins/r.git");
    let mirror = o.path("backup/org/r/repo");
    let url = o.url("origins/r.git");

    assert_eq!(
        git::update_mirror(&git(), &url, &mirror, None, false).unwrap(),
        MirrorOutcome::Cloned
    );
    assert_eq!(refs(&mirror), refs(&origin));
    assert!(
        refs(&mirror).contains("refs/pull/1/head"),
        "{}",
        refs(&mirror)
    );
    assert!(temp_leftovers(&o.path("backup/org/r")).is_empty());

    // A new commit, a deleted branch, a force-pushed main.
    commit(&work, "c.txt", "three");
    fixture_git(&work, &["push", "-q", "origin", "main"]);
    let before_force = fixture_git(&origin, &["rev-parse", "main"]);
    fixture_git(&work, &["push", "-q", "origin", ":feature"]);
    fixture_git(&work, &["reset", "-q", "--hard", "HEAD~2"]);
    commit(&work, "d.txt", "rewritten");
    fixture_git(&work, &["push", "-q", "--force", "origin", "main"]);

    assert_eq!(
        git::update_mirror(&git(), &url, &mirror, None, true).unwrap(),
        MirrorOutcome::Updated
    );
    let after = refs(&mirror);
    assert_eq!(after, refs(&origin));
    assert!(!after.contains("refs/heads/feature"), "pruned: {after}");
    assert!(
        !after.contains(before_force.trim()),
        "main follows the force-push"
    );
}

#[test]
fn github_mirror_of_an_empty_repository_clones_updates_and_fscks() {
    let o = Origins::new();
    let origin = o.bare("origins/empty.git");
    let mirror = o.path("backup/empty/repo");
    let url = o.url("origins/empty.git");
    assert_eq!(
        git::update_mirror(&git(), &url, &mirror, None, true).unwrap(),
        MirrorOutcome::Cloned
    );
    assert_eq!(
        git::update_mirror(&git(), &url, &mirror, None, true).unwrap(),
        MirrorOutcome::Updated
    );
    assert_eq!(refs(&mirror), "");
    // Then the repository gets its first commit.
    let work = o.work("origins/empty.git", "empty");
    commit(&work, "a.txt", "first");
    fixture_git(&work, &["push", "-q", "origin", "main"]);
    git::update_mirror(&git(), &url, &mirror, None, false).unwrap();
    assert_eq!(refs(&mirror), refs(&origin));
}

#[test]
fn github_mirror_follows_a_moved_repository() {
    let o = Origins::new();
    let (_, work) = o.populated("origins/old.git");
    let mirror = o.path("backup/moved/repo");
    git::update_mirror(&git(), &o.url("origins/old.git"), &mirror, None, false).unwrap();
    fs::rename(o.path("origins/old.git"), o.path("origins/new.git")).unwrap();
    fixture_git(
        &work,
        &["remote", "set-url", "origin", &o.url("origins/new.git")],
    );
    commit(&work, "moved.txt", "after the move");
    fixture_git(&work, &["push", "-q", "origin", "main"]);

    let new_url = o.url("origins/new.git");
    git::update_mirror(&git(), &new_url, &mirror, None, false).unwrap();
    assert_eq!(refs(&mirror), refs(&o.path("origins/new.git")));
    assert_eq!(
        fixture_git(&mirror, &["config", "--get", "remote.origin.url"]).trim(),
        new_url
    );
}

#[test]
fn github_mirror_scrub_fails_on_a_corrupted_object() {
    let o = Origins::new();
    let (_, work) = o.populated("origins/r.git");
    let url = o.url("origins/r.git");
    let mirror = o.path("backup/r/repo");
    git::update_mirror(&git(), &url, &mirror, None, false).unwrap();
    // A small fetch stores its objects loose (below fetch.unpackLimit).
    commit(&work, "loose.txt", "a loose blob");
    fixture_git(&work, &["push", "-q", "origin", "main"]);
    git::update_mirror(&git(), &url, &mirror, None, true).unwrap();
    let blob = fixture_git(&mirror, &["rev-parse", "main:loose.txt"]);
    let blob = blob.trim();
    let object = mirror.join("objects").join(&blob[..2]).join(&blob[2..]);
    assert!(
        object.exists(),
        "expected a loose object at {}",
        object.display()
    );
    let mut perms = fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&object, perms).unwrap();
    fs::write(&object, b"not a zlib stream").unwrap();

    // Without scrub nothing looks at the object; with scrub, fsck fails the update.
    git::update_mirror(&git(), &url, &mirror, None, false).unwrap();
    let err = git::update_mirror(&git(), &url, &mirror, None, true).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("git fsck") && text.contains("repo"), "{text}");
}

#[test]
fn github_mirror_failed_clone_leaves_nothing_and_stale_temps_go() {
    let o = Origins::new();
    let parent = o.path("backup/gone");
    let mirror = parent.join("repo");
    let err = git::update_mirror(&git(), &o.url("origins/missing.git"), &mirror, None, false)
        .unwrap_err();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
    assert!(!mirror.exists(), "a failed clone must not leave a mirror");
    assert!(
        temp_leftovers(&parent).is_empty(),
        "{:?}",
        temp_leftovers(&parent)
    );

    // A clone interrupted by a crash leaves only a temporary sibling; the next run removes it
    // and clones properly.
    let stale = parent.join(".backup-tmp999-deadbeef-repo");
    fs::create_dir_all(stale.join("objects")).unwrap();
    let (origin, _) = o.populated("origins/back.git");
    git::update_mirror(&git(), &o.url("origins/back.git"), &mirror, None, false).unwrap();
    assert!(!stale.exists());
    assert_eq!(refs(&mirror), refs(&origin));
}

#[test]
fn github_wiki_missing_is_no_wiki_on_every_run() {
    let o = Origins::new();
    let (_, _) = o.populated("origins/r.git");
    let clone_url = o.url("origins/r.git");
    let wiki_dir = o.path("backup/r/wiki");
    for _ in 0..2 {
        assert_eq!(
            git::update_wiki(&git(), &clone_url, &wiki_dir, None, false).unwrap(),
            MirrorOutcome::NoWiki
        );
        assert!(!wiki_dir.exists());
    }
    // The wiki appears: it is mirrored; it disappears again: the mirror is kept.
    let wiki_origin = o.bare("origins/r.wiki.git");
    let work = o.work("origins/r.wiki.git", "wiki");
    commit(&work, "Home.md", "# Home");
    fixture_git(&work, &["push", "-q", "origin", "main"]);
    assert_eq!(
        git::update_wiki(&git(), &clone_url, &wiki_dir, None, true).unwrap(),
        MirrorOutcome::Cloned
    );
    assert_eq!(refs(&wiki_dir), refs(&wiki_origin));
    fs::remove_dir_all(&wiki_origin).unwrap();
    assert_eq!(
        git::update_wiki(&git(), &clone_url, &wiki_dir, None, false).unwrap(),
        MirrorOutcome::NoWiki
    );
    assert!(!refs(&wiki_dir).is_empty(), "the old wiki mirror stays");
}

/// The smart-HTTP fixture server; killed on drop.
struct HttpServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl HttpServer {
    fn start(root: &Path, log: &Path, fail_first: u32) -> HttpServer {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/git-http-server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root)
            .arg(TOKEN)
            .arg(log)
            .arg(fail_first.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the git HTTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("server said {line:?}"));
        HttpServer {
            child,
            port,
            log: log.to_path_buf(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_available() -> bool {
    require::service("python3", require::program_exists("python3"))
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn github_mirror_over_http_uses_the_token_only_through_askpass() {
    if !http_available() {
        return;
    }
    let o = Origins::new();
    let (origin, _) = o.populated("srv/org/r.git");
    let server = HttpServer::start(&o.path("srv"), &o.path("server.log"), 0);
    let url = server.url("org/r.git");

    // A git wrapper records the argv it is given, then runs the real git.
    let argv_log = o.path("argv.log");
    let wrapper = o.path("git-wrapper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec git \"$@\"\n",
            argv_log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let wrapped = Git::new(&wrapper)
        .unwrap()
        .with_askpass(env!("CARGO_BIN_EXE_deltaic"))
        .with_backoff(Duration::from_millis(20));

    // Without a token, or with a wrong one: refused, quickly (no retries), nothing left.
    let mirror = o.path("backup/r/repo");
    let err = git::update_mirror(&git(), &url, &mirror, None, false).unwrap_err();
    assert!(format!("{err:#}").contains("token"), "{err:#}");
    let wrong = Secret::new("ghp_wrong");
    git::update_mirror(&git(), &url, &mirror, Some(&wrong), false).unwrap_err();
    assert!(!mirror.exists());
    assert!(!server.log().contains("auth=yes"), "{}", server.log());
    assert!(server.log().contains("auth=bad"), "{}", server.log());

    // With the token: cloned, then updated.
    let token = Secret::new(TOKEN);
    assert_eq!(
        git::update_mirror(&wrapped, &url, &mirror, Some(&token), false).unwrap(),
        MirrorOutcome::Cloned
    );
    assert_eq!(
        git::update_mirror(&wrapped, &url, &mirror, Some(&token), true).unwrap(),
        MirrorOutcome::Updated
    );
    assert_eq!(refs(&mirror), refs(&origin));
    assert!(server.log().contains("auth=yes"));

    // The token is nowhere in the mirror, nor in any argv git was given.
    assert_eq!(files_containing(&mirror, TOKEN), Vec::<PathBuf>::new());
    let argv = fs::read_to_string(&argv_log).unwrap();
    assert!(
        argv.contains("clone --mirror") && argv.contains("remote update --prune"),
        "{argv}"
    );
    assert!(argv.contains("credential.helper="), "{argv}");
    assert!(!argv.contains(TOKEN), "{argv}");
}

#[test]
fn github_mirror_over_http_retries_transient_failures_but_not_missing_repos() {
    if !http_available() {
        return;
    }
    let o = Origins::new();
    let (origin, _) = o.populated("srv/r.git");
    let server = HttpServer::start(&o.path("srv"), &o.path("server.log"), 2);
    let token = Secret::new(TOKEN);
    let mirror = o.path("backup/r/repo");
    git::update_mirror(&git(), &server.url("r.git"), &mirror, Some(&token), false).unwrap();
    assert_eq!(refs(&mirror), refs(&origin));
    assert_eq!(server.log().matches("503 ").count(), 2, "{}", server.log());

    // A missing repository is asked for once, and a missing wiki is no wiki.
    let before = server.log().lines().count();
    let gone = o.path("backup/gone/repo");
    let err = git::update_mirror(&git(), &server.url("gone.git"), &gone, Some(&token), false)
        .unwrap_err();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
    let asked = server
        .log()
        .lines()
        .skip(before)
        .filter(|l| l.contains("auth=yes"))
        .count();
    assert_eq!(asked, 1, "{}", server.log());
    assert_eq!(
        git::update_wiki(
            &git(),
            &server.url("r.git"),
            &o.path("backup/r/wiki"),
            Some(&token),
            false
        )
        .unwrap(),
        MirrorOutcome::NoWiki
    );
}

#[test]
fn github_askpass_mode_answers_git_prompts() {
    let run = |prompt: &str| {
        assert_cmd::Command::new(env!("CARGO_BIN_EXE_deltaic"))
            .arg(prompt)
            .env("DELTAIC_ASKPASS", "1")
            .env("DELTAIC_ASKPASS_TOKEN", TOKEN)
            .env("DELTAIC_ASKPASS_ORIGIN", "https://github.com")
            .env_remove("DELTAIC_ALLOW_ROOT")
            .assert()
    };
    run("Username for 'https://github.com': ")
        .success()
        .stdout("x-access-token\n");
    run("Password for 'https://x-access-token@github.com': ")
        .success()
        .stdout(format!("{TOKEN}\n"));
    run("Password for 'https://x-access-token@elsewhere.example': ")
        .code(2)
        .stdout("");
    run("Are you sure you want to continue connecting (yes/no)? ")
        .code(2)
        .stdout("");
}

fn config(root: &Path, extra: &str) -> Config {
    let text = format!(
        "settings:\n  root: {}\n  snapshot-backend: dir\n{extra}",
        root.display()
    );
    Config::from_yaml(&text, &root.join("deltaic.conf")).unwrap()
}

#[test]
fn github_restore_pushes_every_ref_to_a_fresh_bare_remote() {
    let o = Origins::new();
    let (origin, _) = o.populated("origins/r.git");
    let mirror = o.path("backup/r/repo");
    git::update_mirror(&git(), &o.url("origins/r.git"), &mirror, None, false).unwrap();
    let target = o.bare("restored/r.git");
    let config = config(&o.path("backup"), "");

    restore(&config, &mirror, &o.url("restored/r.git")).unwrap();
    assert_eq!(refs(&target), refs(&mirror));
    assert_eq!(refs(&target), refs(&origin));
    assert!(refs(&target).contains("refs/pull/1/head"));
    // Run again (a resumed restore): nothing to do, still fine.
    restore(&config, &mirror, &o.url("restored/r.git")).unwrap();

    // A remote with other history is refused and left alone.
    let other = o.bare("restored/other.git");
    let work = o.work("restored/other.git", "other");
    commit(&work, "x.txt", "unrelated");
    fixture_git(&work, &["push", "-q", "origin", "main"]);
    let before = refs(&other);
    let err = restore(&config, &mirror, &o.url("restored/other.git")).unwrap_err();
    assert!(format!("{err:#}").contains("empty repository"), "{err:#}");
    assert_eq!(refs(&other), before);
    // Forced (a GitHub wiki whose first page was made on the web): the mirror's refs win, and
    // the remote's other refs stay.
    fixture_git(&work, &["push", "-q", "origin", "main:keep-me"]);
    restore_with(git(), &config, &mirror, &o.url("restored/other.git"), true).unwrap();
    let forced = refs(&other);
    for line in refs(&mirror).lines() {
        assert!(forced.contains(line), "{line} missing from {forced}");
    }
    assert!(forced.contains("refs/heads/keep-me"), "{forced}");

    // Not a mirror at all.
    let err = restore(&config, &o.path("backup"), &o.url("restored/r.git")).unwrap_err();
    assert!(
        format!("{err:#}").contains("not a bare git mirror"),
        "{err:#}"
    );
}

#[test]
fn github_restore_over_http_with_the_token() {
    if !http_available() {
        return;
    }
    let o = Origins::new();
    let (origin, _) = o.populated("origins/r.git");
    let mirror = o.path("backup/r/repo");
    git::update_mirror(&git(), &o.url("origins/r.git"), &mirror, None, false).unwrap();
    let target = o.bare("srv/new/r.git");
    let server = HttpServer::start(&o.path("srv"), &o.path("server.log"), 0);
    let config = config(
        &o.path("backup"),
        &format!(
            "  github-token: {TOKEN}\n  github-api-url: http://127.0.0.1:{}\n",
            server.port
        ),
    );
    restore_with(git(), &config, &mirror, &server.url("new/r.git"), false).unwrap();
    assert_eq!(refs(&target), refs(&origin));
    assert!(
        server.log().contains("git-receive-pack auth=yes"),
        "{}",
        server.log()
    );
}

#[test]
fn github_lfs_objects_are_mirrored_and_restored() {
    let o = Origins::new();
    let lfs = Git::new("git").unwrap().lfs_available();
    if !require::service("git-lfs", lfs) {
        return;
    }
    let origin = o.bare("origins/lfs.git");
    let work = o.work("origins/lfs.git", "lfs");
    fixture_git(&work, &["lfs", "install", "--local"]);
    fixture_git(&work, &["lfs", "track", "*.bin"]);
    fs::write(work.join("big.bin"), vec![7u8; 5000]).unwrap();
    fixture_git(&work, &["add", ".gitattributes", "big.bin"]);
    fixture_git(&work, &["commit", "-q", "-m", "lfs"]);
    fixture_git(&work, &["push", "-q", "origin", "main"]);
    let oid = fixture_git(&work, &["lfs", "ls-files", "--long"]);
    let oid = oid.split_whitespace().next().unwrap().to_string();
    let stored = |repo: &Path| {
        repo.join("lfs/objects")
            .join(&oid[..2])
            .join(&oid[2..4])
            .join(&oid)
    };
    assert!(
        stored(&origin).exists(),
        "the fixture origin holds the LFS object"
    );

    let mirror = o.path("backup/lfs/repo");
    let url = o.url("origins/lfs.git");
    git::update_mirror(&git(), &url, &mirror, None, false).unwrap();
    assert_eq!(fs::read(stored(&mirror)).unwrap(), vec![7u8; 5000]);
    let state = mirror.join(git::LFS_STATE_FILE);
    let inode = fs::metadata(&state).unwrap().ino();
    // Nothing changed: the LFS fetch is skipped (the state file is not rewritten).
    git::update_mirror(&git(), &url, &mirror, None, false).unwrap();
    assert_eq!(fs::metadata(&state).unwrap().ino(), inode);
    // Scrub always fetches.
    git::update_mirror(&git(), &url, &mirror, None, true).unwrap();
    assert_ne!(fs::metadata(&state).unwrap().ino(), inode);

    let target = o.bare("restored/lfs.git");
    restore(
        &config(&o.path("backup"), ""),
        &mirror,
        &o.url("restored/lfs.git"),
    )
    .unwrap();
    assert_eq!(refs(&target), refs(&origin));
    assert_eq!(fs::read(stored(&target)).unwrap(), vec![7u8; 5000]);
}
