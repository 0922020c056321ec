//! `deltaic github auth` (github-rgw-rbd.md §1.3, D5): obtain a token and store it.
//!
//! Two ways in: the OAuth device flow (an OAuth App's client id in `github-oauth-client-id`;
//! the user opens a URL and types a code), or a personal access token (classic with scopes
//! `repo` and `read:org`, or fine-grained with read access to contents, issues, pull requests,
//! metadata and members) read from stdin. Either way the token is validated with `GET /user`
//! (classic tokens: `X-OAuth-Scopes` must include `repo` and `read:org`) and written with mode
//! 0600 to `github-token-file` (default: `github-token` beside the config file). The token is
//! never printed.

use crate::config::{Config, Secret};
use crate::util::atomic_file;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// Scopes a classic token needs.
const REQUIRED_SCOPES: &[&str] = &["repo", "read:org"];

/// Runs `deltaic github auth`.
pub fn run(config: &Config, token_stdin: bool) -> anyhow::Result<()> {
    let settings = &config.settings;
    let runtime = super::api::runtime()?;
    let http = reqwest::Client::builder()
        .user_agent(concat!("deltaic/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(60))
        .build()?;
    if !token_stdin && let Ok(Some(existing)) = settings.github_token() {
        match runtime.block_on(validate(&http, &settings.github_api_url, &existing)) {
            Ok(login) => {
                eprintln!("The stored token is valid (user {login}); nothing to do.");
                return Ok(());
            }
            Err(err) => eprintln!("The stored token was not accepted ({err:#}); reauthorizing."),
        }
    }
    let token = if token_stdin {
        read_token()?
    } else {
        let client_id = settings.github_oauth_client_id.as_deref().context(
            "the device flow needs `github-oauth-client-id` (an OAuth App with the device flow \
             enabled); or paste a personal access token: deltaic github auth --token-stdin",
        )?;
        let web = web_url(&settings.github_api_url);
        runtime.block_on(device_flow(&http, &web, client_id))?
    };
    let login = runtime.block_on(validate(&http, &settings.github_api_url, &token))?;
    let path = token_path(config);
    atomic_file::write(&path, format!("{}\n", token.expose()).as_bytes())
        .with_context(|| format!("storing the token in {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    eprintln!(
        "Token for user {login} stored in {} (mode 0600).",
        path.display()
    );
    if settings.github_token_file.is_none() {
        eprintln!("Add this to the settings of {}:", config.path.display());
        println!("settings:\n  github-token-file: {}", path.display());
    }
    if settings.github_token.is_some() {
        eprintln!("Remove `github-token` from the config: it takes precedence over the file.");
    }
    Ok(())
}

/// Where the token is stored: `github-token-file`, or `github-token` beside the config.
fn token_path(config: &Config) -> PathBuf {
    config
        .settings
        .github_token_file
        .clone()
        .unwrap_or_else(|| {
            config
                .path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("github-token")
        })
}

/// Reads a token from stdin, without echo on a terminal.
fn read_token() -> anyhow::Result<Secret> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("GitHub token: ");
        std::io::stderr().flush()?;
        let echo_off = EchoOff::new(&stdin);
        stdin.lock().read_line(&mut line)?;
        drop(echo_off);
        eprintln!();
    } else {
        stdin.lock().read_line(&mut line)?;
    }
    let token = line.trim();
    if token.is_empty() {
        bail!("no token given on stdin");
    }
    Ok(Secret::new(token))
}

/// Turns terminal echo off while it lives.
struct EchoOff {
    saved: Option<rustix::termios::Termios>,
}

impl EchoOff {
    fn new(stdin: &std::io::Stdin) -> EchoOff {
        let saved = rustix::termios::tcgetattr(stdin).ok();
        if let Some(saved) = &saved {
            let mut quiet = saved.clone();
            quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
            let _ =
                rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &quiet);
        }
        EchoOff { saved }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let stdin = std::io::stdin();
            let _ =
                rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, saved);
        }
    }
}

/// The web host of an API URL, where the OAuth endpoints live: `https://api.github.com` →
/// `https://github.com`; GitHub Enterprise `https://HOST/api/v3` → `https://HOST`; anything
/// else (a test server) as it is.
pub fn web_url(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if let Some(rest) = api.strip_suffix("/api/v3") {
        return rest.to_string();
    }
    api.replacen("://api.", "://", 1)
}

/// Checks `token` with `GET /user`; returns the login. Classic tokens must carry the scopes.
async fn validate(http: &reqwest::Client, api_url: &str, token: &Secret) -> anyhow::Result<String> {
    let url = format!("{}/user", api_url.trim_end_matches('/'));
    let response = http
        .get(&url)
        .bearer_auth(token.expose())
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        bail!("GitHub rejected the token (401 Bad credentials): it is wrong, expired or revoked");
    }
    if !status.is_success() {
        bail!("GET {url} answered HTTP {status}");
    }
    let scopes = response
        .headers()
        .get("x-oauth-scopes")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    #[derive(Deserialize)]
    struct User {
        login: String,
    }
    let user: User = response.json().await.context("parsing GET /user")?;
    if let Some(scopes) = scopes {
        let granted: Vec<&str> = scopes.split(',').map(str::trim).collect();
        let missing: Vec<&str> = REQUIRED_SCOPES
            .iter()
            .copied()
            .filter(|s| !granted.contains(s))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the token lacks the scope(s) {}: create a classic token with `repo` and \
                 `read:org` (it has: {scopes})",
                missing.join(", ")
            );
        }
    }
    Ok(user.login)
}

#[derive(Debug, Deserialize)]
struct DeviceCode {
    device_code: String,
    user_code: String,
    verification_uri: String,
    expires_in: u64,
    #[serde(default = "default_interval")]
    interval: u64,
}

fn default_interval() -> u64 {
    5
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    interval: Option<u64>,
}

/// The OAuth device flow: show the code, poll until the user approves, denies or the code
/// expires; back off on `slow_down`.
async fn device_flow(http: &reqwest::Client, web: &str, client_id: &str) -> anyhow::Result<Secret> {
    let code: DeviceCode = http
        .post(format!("{web}/login/device/code"))
        .header("Accept", "application/json")
        .form(&[("client_id", client_id), ("scope", "repo read:org")])
        .send()
        .await
        .context("starting the device flow")?
        .error_for_status()
        .context("starting the device flow (is github-oauth-client-id right?)")?
        .json()
        .await
        .context("parsing the device code answer")?;
    eprintln!(
        "Open {} and enter the code {} (it expires in {} minutes).",
        code.verification_uri,
        code.user_code,
        code.expires_in.div_ceil(60)
    );
    let mut interval = Duration::from_secs(code.interval.max(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(code.expires_in);
    loop {
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the device code expired before it was approved: run `deltaic github auth` again"
            );
        }
        let answer: TokenAnswer = http
            .post(format!("{web}/login/oauth/access_token"))
            .header("Accept", "application/json")
            .form(&[
                ("client_id", client_id),
                ("device_code", code.device_code.as_str()),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ])
            .send()
            .await
            .context("polling for the token")?
            .json()
            .await
            .context("parsing the token answer")?;
        if let Some(token) = answer.access_token {
            return Ok(Secret::new(token));
        }
        match answer.error.as_deref() {
            Some("authorization_pending") => {}
            Some("slow_down") => {
                interval = Duration::from_secs(answer.interval.unwrap_or(interval.as_secs() + 5));
            }
            Some("expired_token") => {
                bail!("the device code expired: run `deltaic github auth` again")
            }
            Some("access_denied") => bail!("access was denied in the browser"),
            other => bail!(
                "the device flow failed: {}",
                answer
                    .error_description
                    .or(other.map(str::to_string))
                    .unwrap_or_else(|| "no token and no error".into())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls_of_api_urls() {
        assert_eq!(web_url("https://api.github.com"), "https://github.com");
        assert_eq!(web_url("https://api.github.com/"), "https://github.com");
        assert_eq!(
            web_url("https://ghe.example.org/api/v3"),
            "https://ghe.example.org"
        );
        assert_eq!(web_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
