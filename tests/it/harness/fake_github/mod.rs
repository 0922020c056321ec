//! A fake GitHub for the github source's integration tests and benchmark: a REST API and git
//! smart-HTTP server on 127.0.0.1 that follows GitHub's documented behaviour, with state the
//! tests edit between runs (github-rgw-rbd.md §1.12, test-infra.md §5, decision D12).
//!
//! [`FakeGithub::start`] binds two listeners and serves them from a background thread with its
//! own tokio runtime; dropping the handle stops both and deletes the git repositories.
//!
//! - The **web listener** ([`FakeGithub::web_url`]) is laid out like a GitHub Enterprise host:
//!   the REST API under `/api/v3` ([`FakeGithub::api_url`], what `github-api-url` points at),
//!   the OAuth device flow under `/login/`, and git over smart HTTP at
//!   `/{org}/{repo}.git` (the repositories' `clone_url`) and `/{org}/{repo}.wiki.git`.
//! - The **asset listener** ([`FakeGithub::asset_url`]) is the separate download host that
//!   asset requests with `Accept: application/octet-stream` are redirected to; it records
//!   whether credentials reached it ([`FakeGithub::downloads`]).
//!
//! The REST behaviour (authentication, pagination with `Link`, ETags and 304, rate limits,
//! faults) is described in [`routes`]; the endpoints and their parameters in [`endpoints`];
//! the JSON shapes in [`render`]; the data model in [`state`]; rate limit, faults, device flow
//! and logs in [`control`]; git serving in [`git_http`] and the repositories' content in
//! [`git_repos`].
//!
//! Documented deviations from github.com: requests without credentials answer 401 (GitHub
//! serves public data anonymously); release `download_count` does not change on download;
//! a 304 carries no `Link` header (clients must keep their own page chain).

pub mod control;
mod device;
pub mod endpoints;
pub mod git_http;
pub mod git_repos;
pub mod render;
pub mod routes;
pub mod state;

pub use control::{AssetDownload, DevicePoll, FaultKind, LoggedRequest, RequestKind};
pub use state::{State, tick, ts};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tempfile::TempDir;

/// The token the fake accepts unless a test sets another (shaped like a classic PAT).
pub const TOKEN: &str = "ghp_FAKEfakeFAKEfakeFAKEfakeFAKEfake0001";

/// What the server tasks share with the handle.
pub struct Shared {
    /// The editable state.
    pub state: Arc<Mutex<State>>,
    /// Base URLs.
    pub urls: render::Urls,
    /// Where the bare repositories live (`<root>/{org}/{repo}.git`).
    pub git_root: PathBuf,
}

/// Locks the state, ignoring poisoning (a failed test must not cascade).
pub fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake GitHub; stops when dropped.
pub struct FakeGithub {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Holds the git root and scratch clones; deleted on drop.
    dir: TempDir,
}

impl FakeGithub {
    /// Starts an empty fake GitHub accepting [`TOKEN`].
    pub fn start() -> FakeGithub {
        let dir = tempfile::Builder::new()
            .prefix("deltaic-fake-github")
            .tempdir()
            .expect("tempdir for the fake GitHub");
        let git_root = dir.path().join("git");
        std::fs::create_dir(&git_root).expect("git root");
        let web = TcpListener::bind("127.0.0.1:0").expect("bind the web listener");
        let assets = TcpListener::bind("127.0.0.1:0").expect("bind the asset listener");
        let web_base = format!("http://{}", web.local_addr().expect("address"));
        let urls = render::Urls {
            api: format!("{web_base}{}", routes::API_PREFIX),
            web: web_base,
            assets: format!("http://{}", assets.local_addr().expect("address")),
        };
        let shared = Arc::new(Shared {
            state: Arc::new(Mutex::new(State::new(TOKEN))),
            urls,
            git_root,
        });
        for listener in [&web, &assets] {
            listener.set_nonblocking(true).expect("non-blocking");
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-github".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the fake GitHub");
                runtime.block_on(async move {
                    let web = tokio::net::TcpListener::from_std(web).expect("tokio listener");
                    let assets = tokio::net::TcpListener::from_std(assets).expect("tokio listener");
                    let web = axum::serve(web, routes::web_router(server.clone()));
                    let assets = axum::serve(assets, routes::asset_router(server));
                    tokio::select! {
                        r = web => eprintln!("fake GitHub web listener ended: {r:?}"),
                        r = assets => eprintln!("fake GitHub asset listener ended: {r:?}"),
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels open connections and kills CGI children.
            })
            .expect("spawn the fake GitHub thread");
        FakeGithub {
            shared,
            stop: Some(stop),
            thread: Some(thread),
            dir,
        }
    }

    /// The REST API base URL (`http://127.0.0.1:PORT/api/v3`): the `github-api-url` setting.
    pub fn api_url(&self) -> &str {
        &self.shared.urls.api
    }

    /// The web host (`http://127.0.0.1:PORT`): git and the device-flow login endpoints.
    pub fn web_url(&self) -> &str {
        &self.shared.urls.web
    }

    /// The asset download host (`http://127.0.0.1:PORT2`).
    pub fn asset_url(&self) -> &str {
        &self.shared.urls.assets
    }

    /// The state, for edits between runs: `fake.state().lock()`.
    pub fn state(&self) -> &Mutex<State> {
        &self.shared.state
    }

    /// Runs `edit` on the locked state.
    pub fn with<R>(&self, edit: impl FnOnce(&mut State) -> R) -> R {
        edit(&mut lock(&self.shared.state))
    }

    /// The currently valid token.
    pub fn token(&self) -> String {
        self.with(|s| s.token.clone())
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.with(|s| s.requests.clone())
    }

    /// How many logged requests satisfy `pred`; e.g. `count(|r| r.kind == RequestKind::Api &&
    /// r.status != 304)` for "no non-conditional requests".
    pub fn count(&self, pred: impl Fn(&LoggedRequest) -> bool) -> usize {
        self.with(|s| s.requests.iter().filter(|r| pred(r)).count())
    }

    /// Forgets the logged requests and downloads (between runs).
    pub fn clear_requests(&self) {
        self.with(|s| {
            s.requests.clear();
            s.downloads.clear();
        });
    }

    /// Every download from the asset host so far.
    pub fn downloads(&self) -> Vec<AssetDownload> {
        self.with(|s| s.downloads.clone())
    }

    /// Where the bare repositories live.
    pub fn git_root(&self) -> &Path {
        &self.shared.git_root
    }

    /// A scratch directory inside the fake's temporary directory.
    fn scratch_dir(&self) -> TempDir {
        tempfile::Builder::new()
            .prefix("scratch")
            .tempdir_in(self.dir.path())
            .expect("scratch directory")
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether git and `git http-backend` are available; skips loudly (or panics under
/// `DELTAIC_TEST_REQUIRE_ALL=1`) when they are not.
pub fn require_git() -> bool {
    let backend = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("git-http-backend"));
    let available = super::require::program_exists("git")
        && backend.is_some_and(|b| super::require::program_exists(&b.to_string_lossy()));
    super::require::service("git with git-http-backend", available)
}
