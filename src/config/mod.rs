//! The configuration file (`deltaic.conf`): loading, typed settings and validation.
//!
//! The file is YAML and compatible with the original's (core-rsync-coda.md §3, D1): the same
//! keys with the same defaults, plus new keys documented in `example-config.yaml`. Loading is
//! strict where the original crashed later (null values, `workers: 0`, colliding aliases: BUG-1..4)
//! and lenient where it is harmless: an unknown key is a warning with a did-you-mean, so a config
//! written for a newer or older Deltaic still loads.
//!
//! Every error names the file, and where the YAML parser knows it, the line and the key.

mod error;
mod keys;
mod secret;
mod settings;
mod values;

pub use error::ConfigError;
pub(crate) use keys::closest as closest_key;
pub use secret::Secret;
pub use settings::{HostKeyPolicy, Settings, SnapshotBackendKind};
pub use values::{Probability, Seconds};

use crate::sources::coda::CodaGroup;
use crate::sources::github::GithubOrgs;
use crate::sources::rbd::RbdPools;
use crate::sources::rgw::RgwBuckets;
use crate::sources::rsync::RsyncHost;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The default configuration path: `$XDG_CONFIG_HOME/deltaic.conf`, else `~/.config/deltaic.conf`
/// (core-rsync-coda.md §2.2).
pub fn default_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("deltaic.conf");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".config").join("deltaic.conf")
}

/// A loaded and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the file it was loaded from; passed to unit children as `-c` (D2).
    pub path: PathBuf,
    /// The `settings:` mapping.
    pub settings: Settings,
    /// The `rsync:` manifest: host name → host settings, in file order is irrelevant (units sort).
    pub rsync: BTreeMap<String, Spanned<RsyncHost>>,
    /// The `coda:` manifest: a list of replica groups.
    pub coda: Vec<CodaGroup>,
    /// The `github:` manifest: organisations in file order.
    pub github: GithubOrgs,
    /// The `rbd:` manifest: pool → images and snapshots.
    pub rbd: RbdPools,
    /// The `rgw:` manifest: buckets (plain names or mappings), in file order.
    pub rgw: RgwBuckets,
    /// Warnings found while loading (unknown keys); printed by the CLI, listed by `config check`.
    pub warnings: Vec<String>,
}

/// The raw top-level document, before validation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawConfig {
    settings: Option<Settings>,
    #[serde(default)]
    rsync: Option<BTreeMap<String, Spanned<RsyncHost>>>,
    #[serde(default)]
    coda: Option<Vec<CodaGroup>>,
    #[serde(default)]
    github: Option<GithubOrgs>,
    #[serde(default, deserialize_with = "crate::sources::rbd::deserialize_pools")]
    rbd: RbdPools,
    #[serde(default)]
    rgw: Option<RgwBuckets>,
}

impl Config {
    /// Loads and validates the configuration at `path`.
    ///
    /// Errors: the file is missing or unreadable, is not YAML, has a value of the wrong type or
    /// out of range, or fails a cross-key check (colliding aliases, unsafe names). Each error names
    /// the file and, where known, the line and key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Self::from_yaml(&text, &path)
    }

    /// Parses and validates configuration text; `path` is used in messages and passed to children.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let syntax = |err: serde_saphyr::Error| {
            let line = err.location().map(|l| l.line());
            ConfigError::Syntax {
                path: path.to_owned(),
                line,
                message: error::explain(
                    &error::first_line(&err.to_string()),
                    line.and_then(|l| error::key_on_line(text, l)),
                ),
            }
        };
        if text.trim().is_empty() || is_null_document(text) {
            // BUG-1: the original died later with an obscure click error.
            return Err(ConfigError::Empty {
                path: path.to_owned(),
            });
        }
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(syntax)?;
        let warnings = keys::unknown_key_warnings(text, path);
        let settings = raw.settings.ok_or_else(|| ConfigError::Invalid {
            path: path.to_owned(),
            line: None,
            key: "settings".into(),
            message: "missing; it must hold at least `root`".into(),
        })?;
        let config = Config {
            path: path.to_owned(),
            settings,
            rsync: raw.rsync.unwrap_or_default(),
            coda: raw.coda.unwrap_or_default(),
            github: raw.github.unwrap_or_default(),
            rbd: raw.rbd,
            rgw: raw.rgw.unwrap_or_default(),
            warnings,
        };
        config.validate()?;
        Ok(config)
    }

    /// Cross-key checks that a single value's parser cannot make.
    fn validate(&self) -> Result<(), ConfigError> {
        self.settings.validate(&self.path)?;
        crate::sources::rsync::validate_hosts(self)?;
        crate::sources::coda::validate_groups(self)?;
        crate::sources::github::validate(self)?;
        crate::sources::rbd::validate(self)?;
        crate::sources::rgw::validate(self)?;
        Ok(())
    }

    /// The backup root, normalised (no trailing slash: BUG-18).
    pub fn root(&self) -> &Path {
        &self.settings.root
    }

    /// Builds an [`ConfigError::Invalid`] for `key` at `line` in this file.
    pub fn invalid(
        &self,
        line: Option<u64>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }
}

/// True for a document that is only `null`/`~` (with comments), which PyYAML loads as None.
fn is_null_document(text: &str) -> bool {
    let meaningful: Vec<&str> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && *l != "---" && *l != "...")
        .collect();
    matches!(
        meaningful.as_slice(),
        [] | ["null"] | ["~"] | ["Null"] | ["NULL"]
    )
}

#[cfg(test)]
mod tests;
