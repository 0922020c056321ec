//! Git over smart HTTP on the web host, as GitHub serves it: `/{org}/{repo}.git/...` (the
//! `.git` suffix is optional, `{repo}.wiki` names the wiki), answered by the real
//! `git http-backend` run as a CGI program over the bare repositories under the fake's git
//! root (`<root>/{org}/{repo}.git`, `<root>/{org}/{repo}.wiki.git`).
//!
//! Authentication is HTTP Basic with the token as password (any user name, e.g.
//! `x-access-token`) or, GitHub's legacy form, as user name. Wrong credentials answer 401 with
//! `WWW-Authenticate: Basic realm="GitHub"`; so do missing ones, for private repositories and
//! (unless `State::git_require_auth` is false) for public ones too. A repository or wiki that
//! does not exist answers 404, which git reports as "repository ... not found".

use super::control::FaultKind;
use super::routes::plain;
use super::{Shared, lock};
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::Response;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// What a git request addresses.
#[derive(Debug, Clone)]
pub struct GitTarget {
    /// Organisation login as requested.
    org: String,
    /// Repository name as requested, without `.git` (ends with `.wiki` for a wiki).
    name: String,
    /// The smart-HTTP part: `info/refs`, `git-upload-pack`, `git-receive-pack`, `HEAD`, ...
    rest: String,
}

impl GitTarget {
    /// The path with the `.git` suffix, as logged and matched by faults.
    pub fn canonical_path(&self) -> String {
        format!("/{}/{}.git/{}", self.org, self.name, self.rest)
    }
}

/// Recognises a smart-HTTP path: `/{org}/{repo}[.git]/{info/refs|git-upload-pack|...}`.
pub fn parse_path(path: &str) -> Option<GitTarget> {
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let (org, repo, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let known = rest == "info/refs"
        || rest == "git-upload-pack"
        || rest == "git-receive-pack"
        || rest == "HEAD"
        || rest.starts_with("objects/");
    if org.is_empty() || repo.is_empty() || !known {
        return None;
    }
    Some(GitTarget {
        org: org.to_string(),
        name: repo.strip_suffix(".git").unwrap_or(repo).to_string(),
        rest: rest.to_string(),
    })
}

/// Decodes the credential of `Authorization: Basic <base64(user:password)>`.
pub fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Standard base64 with optional padding.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// Standard base64 with padding (for clients in the self-tests).
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let mut buf = [0u8; 3];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The 401 GitHub answers git clients without valid credentials.
fn unauthorized() -> Response {
    let mut response = plain(
        StatusCode::UNAUTHORIZED,
        "Invalid username or token. Password authentication is not supported for Git operations.",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"GitHub\""),
    );
    response
}

/// Serves one smart-HTTP request.
pub async fn handle(
    shared: &Shared,
    parts: &Parts,
    target: GitTarget,
    raw_query: &str,
    body: Bytes,
) -> Response {
    // Access checks and the on-disk path, under the lock.
    let checked = {
        let mut state = lock(&shared.state);
        let canonical = target.canonical_path();
        let fault = state
            .faults
            .iter_mut()
            .find(|f| f.matches(&canonical, &[]))
            .map(|f| {
                f.remaining -= 1;
                f.kind.clone()
            });
        let credentials = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
                    .and_then(basic_credentials)
                    .is_some_and(|(user, pass)| pass == state.token || user == state.token)
            });
        let (base, wiki) = match target.name.strip_suffix(".wiki") {
            Some(base) => (base, true),
            None => (target.name.as_str(), false),
        };
        let found = state
            .org(&target.org)
            .and_then(|o| Some((o.login.clone(), o.repo(base)?)));
        let private = found.as_ref().is_none_or(|(_, r)| r.private);
        if let Some(FaultKind::Status(status)) = fault {
            Err(plain(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected fault",
            ))
        } else if credentials == Some(false)
            || (credentials.is_none() && (private || state.git_require_auth))
        {
            Err(unauthorized())
        } else {
            match found {
                Some((org, repo)) => {
                    let dir = format!("{}{}.git", repo.name, if wiki { ".wiki" } else { "" });
                    let path_info = format!("/{org}/{dir}/{}", target.rest);
                    if shared.git_root.join(&org).join(&dir).is_dir() {
                        Ok((path_info, credentials == Some(true), state.viewer.clone()))
                    } else {
                        Err(plain(StatusCode::NOT_FOUND, "Repository not found."))
                    }
                }
                None => Err(plain(StatusCode::NOT_FOUND, "Repository not found.")),
            }
        }
    };
    match checked {
        Ok((path_info, authenticated, viewer)) => {
            let user = authenticated.then_some(viewer.as_str());
            cgi(shared, parts, &path_info, raw_query, user, body)
                .await
                .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, &e))
        }
        Err(response) => response,
    }
}

/// Runs `git http-backend` for one request and turns its CGI output into a response.
async fn cgi(
    shared: &Shared,
    parts: &Parts,
    path_info: &str,
    query: &str,
    remote_user: Option<&str>,
    body: Bytes,
) -> Result<Response, String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.git_root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        // The repositories may belong to another user than the one running the tests.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .env("GIT_PROJECT_ROOT", &shared.git_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (cgi_name, http_name) in [
        ("HTTP_GIT_PROTOCOL", "git-protocol"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
    ] {
        let value = header(http_name);
        if !value.is_empty() {
            command.env(cgi_name, value);
        }
    }
    if let Some(user) = remote_user {
        command.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = async move {
        // http-backend may stop reading early (an error answer): ignore a broken pipe.
        let _ = stdin.write_all(&body).await;
        drop(stdin);
    };
    let (_, output) = tokio::join!(writer, child.wait_with_output());
    let output = output.map_err(|e| format!("git http-backend failed: {e}"))?;
    parse_cgi(&output.stdout).ok_or_else(|| {
        format!(
            "git http-backend gave no CGI header (exit {:?}): {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Splits a CGI answer into a response: header lines (with `Status: NNN reason`), a blank
/// line, the body.
fn parse_cgi(output: &[u8]) -> Option<Response> {
    let (head_len, sep_len) = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)))?;
    let head = std::str::from_utf8(&output[..head_len]).ok()?;
    let mut response = Response::new(Body::from(output[head_len + sep_len..].to_vec()));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?.parse().ok()?;
            *response.status_mut() = StatusCode::from_u16(code).ok()?;
        } else if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "a", "ab", "abc", "x-access-token:ghp_123", "user:pa:ss"] {
            let encoded = base64_encode(text.as_bytes());
            assert_eq!(
                base64_decode(&encoded).unwrap(),
                text.as_bytes(),
                "{encoded}"
            );
        }
        assert_eq!(base64_encode(b"x:y"), "eDp5");
        assert_eq!(
            basic_credentials("eDp5"),
            Some(("x".to_string(), "y".to_string()))
        );
        assert_eq!(base64_decode("****"), None);
    }

    #[test]
    fn git_paths_are_recognised() {
        let t = parse_path("/acme/widgets.git/info/refs").unwrap();
        assert_eq!(t.canonical_path(), "/acme/widgets.git/info/refs");
        let t = parse_path("/acme/widgets.wiki/git-upload-pack").unwrap();
        assert_eq!(t.name, "widgets.wiki");
        assert!(parse_path("/acme/widgets.git/evil").is_none());
        assert!(parse_path("/acme").is_none());
    }

    #[test]
    fn cgi_status_and_headers_are_parsed() {
        let r =
            parse_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope").unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-type"], "text/plain");
        let r = parse_cgi(b"Content-Type: x\n\nbody").unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(parse_cgi(b"no header end").is_none());
    }
}
