//! The binary as git's `GIT_ASKPASS` helper (github-rgw-rbd.md §1.11 "Git credentials", option
//! 1): the GitHub token reaches git without ever being in an argv, a log line or a mirror's
//! config.
//!
//! [`super::git`] runs git with `GIT_ASKPASS=<this executable>`, and in git's environment
//! `DELTAIC_ASKPASS=1`, the token in `DELTAIC_ASKPASS_TOKEN` and the origin it is meant for
//! (`https://github.com`) in `DELTAIC_ASKPASS_ORIGIN`. git then starts this executable with
//! the prompt as its only argument; `main` calls [`run_if_requested`] before parsing argv, so
//! clap never sees the prompt. Answers:
//! - `Username for 'https://github.com': ` → `x-access-token` (GitHub's documented user name
//!   for a token given as the password; any token type works with it);
//! - `Password for 'https://x-access-token@github.com': ` → the token;
//! - a prompt for another origin (a redirect, an `.lfsconfig` pointing elsewhere), or anything
//!   else: no answer, exit status 2, so the token never goes to a host it was not meant for.
//!
//! This replaces the original's separate `dt-askpass` executable, which answered with the
//! token as the user name for any prompt.

use std::ffi::OsStr;
use std::process::ExitCode;

/// Environment marker that turns the binary into the askpass helper (value `1`).
pub const MODE_ENV: &str = "DELTAIC_ASKPASS";
/// Environment variable holding the token (only in git's environment).
pub const TOKEN_ENV: &str = "DELTAIC_ASKPASS_TOKEN";
/// Environment variable holding the only origin (`scheme://host[:port]`) the token is for.
pub const ORIGIN_ENV: &str = "DELTAIC_ASKPASS_ORIGIN";
/// The user name sent with a token.
pub const USERNAME: &str = "x-access-token";

/// In askpass mode (`DELTAIC_ASKPASS=1`), answers the prompt in argv\[1\] on stdout and returns
/// the exit code; otherwise `None`, and `main` goes on as usual. Call it before anything else.
pub fn run_if_requested() -> Option<ExitCode> {
    if std::env::var_os(MODE_ENV).as_deref() != Some(OsStr::new("1")) {
        return None;
    }
    let prompt = std::env::args_os()
        .nth(1)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let token = std::env::var(TOKEN_ENV).ok();
    let origin = std::env::var(ORIGIN_ENV).ok();
    Some(match answer(&prompt, token.as_deref(), origin.as_deref()) {
        Ok(reply) => {
            println!("{reply}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("deltaic askpass: {why}");
            ExitCode::from(2)
        }
    })
}

/// The answer to one git prompt, or why there is none. `token` and `origin` come from
/// [`TOKEN_ENV`] and [`ORIGIN_ENV`]. Error messages never contain the token.
pub fn answer<'a>(
    prompt: &str,
    token: Option<&'a str>,
    origin: Option<&str>,
) -> Result<&'a str, String> {
    let is_username = prompt.starts_with("Username");
    let is_password = prompt.starts_with("Password");
    if !is_username && !is_password {
        return Err(format!(
            "unexpected prompt {prompt:?} (expected git's `Username for '…'` or `Password for '…'`)"
        ));
    }
    let expected = origin.ok_or_else(|| format!("{ORIGIN_ENV} is not set"))?;
    let asked = prompt
        .split_once('\'')
        .and_then(|(_, rest)| rest.rsplit_once('\''))
        .and_then(|(url, _)| origin_of(url))
        .ok_or_else(|| format!("no URL in the prompt {prompt:?}"))?;
    if asked != expected {
        return Err(format!(
            "git asks credentials for {asked}, but the token is only for {expected}; not answering"
        ));
    }
    if is_username {
        return Ok(USERNAME);
    }
    match token {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(format!("{TOKEN_ENV} is not set")),
    }
}

/// `scheme://host[:port]` of an `http(s)` URL, without user info or path, scheme and host
/// lower-cased; `None` for other URLs (`file://`, `ssh://`, `git@host:path`), which never use
/// the askpass helper with a token.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Option<&str> = Some("https://github.com");

    #[test]
    fn answers_git_prompts_for_the_expected_origin() {
        let token = Some("ghp_secret");
        assert_eq!(
            answer("Username for 'https://github.com': ", token, ORIGIN),
            Ok(USERNAME)
        );
        assert_eq!(
            answer(
                "Password for 'https://x-access-token@github.com': ",
                token,
                ORIGIN
            ),
            Ok("ghp_secret")
        );
    }

    #[test]
    fn refuses_other_hosts_unknown_prompts_and_a_missing_token() {
        let token = Some("ghp_secret");
        let other = answer("Password for 'https://x@evil.example': ", token, ORIGIN);
        assert!(
            other.as_ref().unwrap_err().contains("evil.example"),
            "{other:?}"
        );
        assert!(!other.unwrap_err().contains("ghp_secret"));
        assert!(answer("Enter passphrase for key: ", token, ORIGIN).is_err());
        assert!(answer("Password for 'https://github.com': ", None, ORIGIN).is_err());
        assert!(answer("Username for 'https://github.com': ", token, None).is_err());
        // A different scheme or port is a different origin.
        assert!(answer("Username for 'http://github.com': ", token, ORIGIN).is_err());
        assert!(answer("Username for 'https://github.com:8443': ", token, ORIGIN).is_err());
    }

    #[test]
    fn origins_drop_user_info_and_path() {
        assert_eq!(
            origin_of("https://x-access-token:pw@GitHub.com/o/r.git").as_deref(),
            Some("https://github.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/cgi-bin/git/r.git").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin_of("file:///srv/r.git"), None);
        assert_eq!(origin_of("git@github.com:o/r.git"), None);
        assert_eq!(origin_of("https:///nohost"), None);
    }
}
