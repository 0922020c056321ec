//! The `rsync:` manifest: host name → [`RsyncHost`] (core-rsync-coda.md §3.5).

use crate::config::{Config, ConfigError};
use crate::sources::check_component;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One host's settings under `rsync:`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct RsyncHost {
    /// Absolute paths on the host to back up; each is its own rsync source (`-x` stays inside it).
    pub mounts: Vec<String>,
    /// Directory name under `ROOT/rsync/` (default: the host name up to the first `.`).
    #[serde(default)]
    pub alias: Option<String>,
    /// Remote user (default `root`).
    #[serde(default)]
    pub user: Option<String>,
    /// Command run on the host (through ssh) before the backup; failure aborts the backup.
    #[serde(default, deserialize_with = "present_command")]
    pub pre: Option<String>,
    /// Command run on the host after a successful backup.
    #[serde(default, deserialize_with = "present_command")]
    pub post: Option<String>,
    /// Run `post` even when the backup failed, or when `pre` itself failed, to undo what `pre`
    /// set up (BUG-19). `post` must then cope with a half-done `pre`.
    #[serde(default)]
    pub post_always: bool,
    /// Patterns excluded on this host, after the global `rsync-exclude` ones.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Overrides the global `rsync-inplace` for this host.
    #[serde(default)]
    pub inplace: Option<bool>,
    /// Back up paths of this machine directly, without ssh (the host name is then only a label);
    /// `pre` and `post` run locally with `sh -c`, and the backup root is never copied into itself.
    #[serde(default)]
    pub local: bool,
}

/// A `pre:`/`post:` that is written must hold a command: an empty value crashed the original
/// (BUG-2) and is more likely a mistake than a wish for no hook.
fn present_command<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(command) if !command.trim().is_empty() => Ok(Some(command)),
        _ => Err(serde::de::Error::custom(
            "has no command: give one, or remove the key",
        )),
    }
}

impl RsyncHost {
    /// The directory name under `ROOT/rsync/`: `alias`, or the host name up to the first `.`.
    pub fn alias<'a>(&'a self, host: &'a str) -> &'a str {
        match &self.alias {
            Some(alias) => alias,
            None => host.split('.').next().unwrap_or(host),
        }
    }

    /// The remote user (default `root`).
    pub fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("root")
    }
}

/// Checks every host: safe names, absolute mounts, and no two hosts sharing a directory
/// (BUG-4: with a shared directory, each host's `--delete` destroys the other's data).
pub(crate) fn validate_hosts(config: &Config) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (host, spanned) in &config.rsync {
        let info = &spanned.value;
        let line = Some(spanned.referenced.line());
        let key = |k: &str| format!("rsync.{host}{k}");
        if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
            return Err(config.invalid(line, key(""), "not a usable host name"));
        }
        if let Some(user) = &info.user
            && (user.is_empty() || user.starts_with('-') || user.contains(['@', ' ', '/']))
        {
            return Err(config.invalid(line, key(".user"), format!("`{user}` is not a user name")));
        }
        let alias = info.alias(host);
        check_component(alias).map_err(|m| config.invalid(line, key(".alias"), m))?;
        if info.mounts.is_empty() {
            return Err(config.invalid(line, key(".mounts"), "lists no paths to back up"));
        }
        for mount in &info.mounts {
            if !mount.starts_with('/') {
                return Err(config.invalid(
                    line,
                    key(".mounts"),
                    format!("`{mount}` is not an absolute path"),
                ));
            }
        }
        if let Some(other) = seen.insert(alias.to_string(), host) {
            return Err(config.invalid(
                line,
                key(".alias"),
                format!(
                    "hosts `{other}` and `{host}` would both back up into rsync/{alias}; \
                     give one of them a different `alias:`"
                ),
            ));
        }
    }
    Ok(())
}
