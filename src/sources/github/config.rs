//! The `github:` manifest: organisation login → options (github-rgw-rbd.md §1.1), kept in file
//! order because units are planned in that order (§1.2).

use crate::config::{Config, ConfigError};
use crate::sources::check_component;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// One organisation's options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GithubOrg {
    /// Back up the organisation's teams as the `@organization` unit (default true).
    #[serde(default = "yes")]
    pub organization_metadata: bool,
}

fn yes() -> bool {
    true
}

impl Default for GithubOrg {
    fn default() -> Self {
        GithubOrg {
            organization_metadata: true,
        }
    }
}

/// The organisations, in the order the config lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GithubOrgs(Vec<(String, GithubOrg)>);

impl GithubOrgs {
    /// Whether no organisation is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The organisations in config order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &GithubOrg)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The options of `org`, if configured.
    pub fn get(&self, org: &str) -> Option<&GithubOrg> {
        self.0.iter().find(|(k, _)| k == org).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for GithubOrgs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrgsVisitor;
        impl<'de> Visitor<'de> for OrgsVisitor {
            type Value = GithubOrgs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of organisation logins to options (or nothing)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GithubOrgs, A::Error> {
                let mut orgs = Vec::new();
                while let Some((org, options)) = map.next_entry::<String, Option<GithubOrg>>()? {
                    orgs.push((org, options.unwrap_or_default()));
                }
                Ok(GithubOrgs(orgs))
            }
        }
        d.deserialize_map(OrgsVisitor)
    }
}

/// Checks organisation names and that a token is configured when organisations are.
pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    for (org, _) in config.github.iter() {
        check_component(org).map_err(|m| config.invalid(None, format!("github.{org}"), m))?;
        if org.starts_with('@') {
            return Err(config.invalid(
                None,
                format!("github.{org}"),
                "organisation logins cannot start with `@`",
            ));
        }
    }
    let settings = &config.settings;
    if !config.github.is_empty()
        && settings.github_token.is_none()
        && settings.github_token_file.is_none()
    {
        return Err(config.invalid(
            None,
            "settings.github-token",
            "missing: the github source needs `github-token` or `github-token-file`; \
             run `deltaic github auth` to get one",
        ));
    }
    Ok(())
}
