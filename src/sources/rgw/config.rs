//! The `rgw:` manifest and where each bucket is reached (github-rgw-rbd.md §2.1, §2.10, D7).
//!
//! An entry is a plain bucket name, as in the original, or a mapping
//! `{bucket: NAME, server: URL, ca-file: PEM, region: R, access-key: K, secret-key: S}` whose
//! fields fall back to the global `rgw-*` settings. Credentials are fixed (an access and a secret key, per bucket
//! or global) or, when neither is configured, the bucket owner's, looked up with `radosgw-admin`.

use crate::config::{Config, ConfigError, Secret};
use crate::sources::check_component;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

/// One bucket of the `rgw:` list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RgwBucket {
    /// The bucket name; also the unit directory `rgw/<bucket>`.
    pub bucket: String,
    /// Endpoint for this bucket (`host`, `host:port` or a URL); default `rgw-server`.
    #[serde(default)]
    pub server: Option<String>,
    /// PEM file of CA certificates trusted for this bucket's HTTPS endpoint; default
    /// `rgw-ca-file`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Signing region; default `rgw-region`.
    #[serde(default)]
    pub region: Option<String>,
    /// Fixed access key for this bucket; default `rgw-access-key`.
    #[serde(default)]
    pub access_key: Option<String>,
    /// Fixed secret key for this bucket; default `rgw-secret-key`.
    #[serde(default)]
    pub secret_key: Option<Secret>,
    /// Back up every version and delete marker; default `rgw-versions`.
    #[serde(default)]
    pub versions: Option<bool>,
}

impl RgwBucket {
    /// A plain entry: only the name, everything else from the settings.
    pub fn plain(bucket: &str) -> RgwBucket {
        RgwBucket {
            bucket: bucket.to_string(),
            server: None,
            ca_file: None,
            region: None,
            access_key: None,
            secret_key: None,
            versions: None,
        }
    }
}

/// The `rgw:` list, deserialised from plain names and mappings alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RgwBuckets(pub Vec<RgwBucket>);

impl<'de> Deserialize<'de> for RgwBuckets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry(RgwBucket);
        impl<'de> Deserialize<'de> for Entry {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct EntryVisitor;
                impl<'de> Visitor<'de> for EntryVisitor {
                    type Value = Entry;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a bucket name or a mapping with `bucket:` and options")
                    }
                    fn visit_str<E: de::Error>(self, name: &str) -> Result<Entry, E> {
                        Ok(Entry(RgwBucket::plain(name)))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
                        RgwBucket::deserialize(de::value::MapAccessDeserializer::new(map))
                            .map(Entry)
                    }
                }
                d.deserialize_any(EntryVisitor)
            }
        }
        let entries = Option::<Vec<Entry>>::deserialize(d)?.unwrap_or_default();
        Ok(RgwBuckets(entries.into_iter().map(|e| e.0).collect()))
    }
}

/// Where and as whom one bucket is reached, all fallbacks applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The bucket.
    pub bucket: String,
    /// The endpoint URL (`http://host:port`).
    pub endpoint: String,
    /// Extra CA certificates trusted for an `https://` endpoint (never set for `http://`).
    pub ca_file: Option<CaFile>,
    /// Signing region.
    pub region: String,
    /// How credentials are obtained.
    pub credentials: CredentialSource,
    /// Whether versions and delete markers are backed up.
    pub versions: bool,
}

/// A PEM file of CA certificates and the key that named it (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// The file.
    pub path: PathBuf,
    /// `settings.rgw-ca-file` or `rgw.<bucket>.ca-file`.
    pub key: String,
}

/// Fixed credentials, or the `radosgw-admin` lookup of the bucket owner's (D7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// An access key and its secret from the config.
    Fixed {
        /// The access key id (not secret).
        access_key: String,
        /// The secret key.
        secret_key: Secret,
    },
    /// `radosgw-admin` with this executable: the bucket owner's first S3 key (and, on restore,
    /// each object owner's).
    Admin {
        /// The `radosgw-admin` executable.
        admin_path: String,
    },
}

/// Turns `host`, `host:port` or a URL into a URL (scheme from `secure` when it has none).
pub fn endpoint_url(server: &str, secure: bool) -> Result<String, String> {
    let server = server.trim().trim_end_matches('/');
    if server.is_empty() {
        return Err("is empty".into());
    }
    if server.starts_with("http://") || server.starts_with("https://") {
        return Ok(server.to_string());
    }
    if server.contains("://") || server.contains('/') {
        return Err(format!(
            "`{server}` is neither `host`, `host:port` nor an http(s) URL"
        ));
    }
    Ok(format!(
        "{}://{server}",
        if secure { "https" } else { "http" }
    ))
}

/// The target of `bucket`: its `rgw:` entry if it has one, else the global settings alone.
pub fn target(config: &Config, bucket: &str) -> anyhow::Result<Target> {
    let entry = config
        .rgw
        .0
        .iter()
        .find(|e| e.bucket == bucket)
        .cloned()
        .unwrap_or_else(|| RgwBucket::plain(bucket));
    resolve(config, &entry).map_err(|m| anyhow::anyhow!("rgw bucket {bucket}: {m}"))
}

fn resolve(config: &Config, entry: &RgwBucket) -> Result<Target, String> {
    let s = &config.settings;
    let server = entry.server.as_ref().or(s.rgw_server.as_ref()).ok_or(
        "no endpoint: set `rgw-server` in settings (host, host:port or URL), \
         or `server:` in the bucket's entry",
    )?;
    let endpoint = endpoint_url(server, s.rgw_secure).map_err(|m| format!("server {m}"))?;
    let https = endpoint.starts_with("https://");
    if let Some(path) = entry.ca_file.as_ref().filter(|p| !p.is_absolute()) {
        return Err(format!("`ca-file` {}", not_absolute(path)));
    }
    let ca_file = match (&entry.ca_file, &s.rgw_ca_file) {
        (Some(_), _) if !https => {
            return Err(format!(
                "`ca-file` is set but the endpoint {endpoint} is plain http, so no certificate \
                 is checked: use an https:// `server` (or `rgw-secure: true`), or remove `ca-file`"
            ));
        }
        (Some(path), _) => Some(CaFile {
            path: path.clone(),
            key: format!("rgw.{}.ca-file", entry.bucket),
        }),
        // The global file serves the https endpoints only; `validate` checks it serves one.
        (None, Some(path)) if https => Some(CaFile {
            path: path.clone(),
            key: "settings.rgw-ca-file".into(),
        }),
        (None, _) => None,
    };
    let (access, secret) = if entry.access_key.is_some() || entry.secret_key.is_some() {
        (entry.access_key.clone(), entry.secret_key.clone())
    } else {
        (s.rgw_access_key.clone(), s.rgw_secret_key.clone())
    };
    let credentials = match (access, secret) {
        (Some(access_key), Some(secret_key)) => CredentialSource::Fixed {
            access_key,
            secret_key,
        },
        (None, None) => CredentialSource::Admin {
            admin_path: s.rgw_admin_path.clone(),
        },
        _ => {
            return Err("an access key needs its secret key and the reverse \
                        (`access-key`/`secret-key`, or `rgw-access-key`/`rgw-secret-key`)"
                .into());
        }
    };
    Ok(Target {
        bucket: entry.bucket.clone(),
        endpoint,
        ca_file,
        region: entry.region.clone().unwrap_or_else(|| s.rgw_region.clone()),
        credentials,
        versions: entry.versions.unwrap_or(s.rgw_versions),
    })
}

/// Checks the `rgw:` list: safe, distinct bucket names (two entries would share
/// `rgw/<bucket>`), and an endpoint and consistent credentials for each.
pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for entry in &config.rgw.0 {
        let key = format!("rgw.{}", entry.bucket);
        check_component(&entry.bucket).map_err(|m| config.invalid(None, key.clone(), m))?;
        if !seen.insert(entry.bucket.as_str()) {
            return Err(config.invalid(
                None,
                key,
                "listed twice: both entries would back up into the same directory rgw/<bucket>",
            ));
        }
        resolve(config, entry).map_err(|m| config.invalid(None, key, m))?;
    }
    validate_global_ca_file(config)
}

fn not_absolute(path: &std::path::Path) -> String {
    format!(
        "`{}` must be an absolute path (units run from cron, in any directory)",
        path.display()
    )
}

/// `rgw-ca-file` must serve at least one https endpoint: the global server's, or a bucket's
/// that has no `ca-file` of its own. Otherwise it is ignored, which hides a typo such as a
/// forgotten `rgw-secure: true`.
fn validate_global_ca_file(config: &Config) -> Result<(), ConfigError> {
    let s = &config.settings;
    let Some(path) = &s.rgw_ca_file else {
        return Ok(());
    };
    if !path.is_absolute() {
        return Err(config.invalid(None, "settings.rgw-ca-file", not_absolute(path)));
    }
    let is_https =
        |server: &str| endpoint_url(server, s.rgw_secure).is_ok_and(|u| u.starts_with("https://"));
    let global = s.rgw_server.as_deref().is_some_and(is_https);
    let entry = config.rgw.0.iter().any(|e| {
        e.ca_file.is_none()
            && e.server
                .as_deref()
                .or(s.rgw_server.as_deref())
                .is_some_and(is_https)
    });
    if global || entry {
        return Ok(());
    }
    Err(config.invalid(
        None,
        "settings.rgw-ca-file",
        format!(
            "`{}` is set but no rgw endpoint uses https, so it would be ignored: set \
             `rgw-secure: true` (or an https:// `rgw-server`), or remove `rgw-ca-file`",
            path.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(
            &format!("settings:\n  root: /b\n  snapshot-backend: dir\n{text}"),
            Path::new("/etc/deltaic.conf"),
        )
    }

    #[test]
    fn plain_names_and_mappings_resolve_with_fallbacks() {
        let c = load(
            "  rgw-server: rgw.example.org:8080\n  rgw-secure: true\nrgw:\n  - photos\n  - bucket: ext\n    server: http://127.0.0.1:9000\n    access-key: AK\n    secret-key: SK\n    region: eu\n    versions: true\n",
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let photos = target(&c, "photos").unwrap();
        assert_eq!(photos.endpoint, "https://rgw.example.org:8080");
        assert_eq!(photos.region, "us-east-1");
        assert!(matches!(photos.credentials, CredentialSource::Admin { .. }));
        let ext = target(&c, "ext").unwrap();
        assert_eq!(ext.endpoint, "http://127.0.0.1:9000");
        assert_eq!(ext.region, "eu");
        assert!(ext.versions && !photos.versions);
        match ext.credentials {
            CredentialSource::Fixed {
                access_key,
                secret_key,
            } => assert_eq!((access_key.as_str(), secret_key.expose()), ("AK", "SK")),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{:?}", target(&c, "ext").unwrap()).contains("SK"));
    }

    #[test]
    fn bad_entries_are_rejected_with_the_bucket_named() {
        for (text, needle) in [
            ("rgw:\n  - a\n", "no endpoint"),
            ("  rgw-server: h\nrgw:\n  - a\n  - a\n", "listed twice"),
            ("  rgw-server: h\nrgw:\n  - ../x\n", "rgw.../x"),
            (
                "  rgw-server: h\nrgw:\n  - bucket: a\n    access-key: k\n",
                "secret key",
            ),
            (
                "  rgw-server: h\nrgw:\n  - bucket: a\n    colour: red\n",
                "colour",
            ),
            ("  rgw-server: ftp://h\nrgw:\n  - a\n", "neither"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn ca_files_apply_to_https_endpoints_only() {
        let c = load(
            "  rgw-server: rgw.example.org\n  rgw-secure: true\n  rgw-ca-file: /etc/ceph/ca.pem\nrgw:\n  - photos\n  - bucket: ext\n    server: https://s3.example.com\n    ca-file: /etc/ext-ca.pem\n  - bucket: lab\n    server: http://127.0.0.1:7480\n",
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let ca = |bucket| target(&c, bucket).unwrap().ca_file;
        let photos = ca("photos").unwrap();
        assert_eq!(photos.path, Path::new("/etc/ceph/ca.pem"));
        assert_eq!(photos.key, "settings.rgw-ca-file");
        let ext = ca("ext").unwrap();
        assert_eq!(ext.path, Path::new("/etc/ext-ca.pem"));
        assert_eq!(ext.key, "rgw.ext.ca-file");
        assert_eq!(ca("lab"), None, "a plain-http bucket checks no certificate");
        // The global file also serves a bucket with an https server when rgw-secure is false.
        let c = load(
            "  rgw-server: h\n  rgw-ca-file: /ca.pem\nrgw:\n  - bucket: b\n    server: https://h\n",
        )
        .unwrap();
        assert_eq!(
            target(&c, "b").unwrap().ca_file.unwrap().key,
            "settings.rgw-ca-file"
        );
    }

    #[test]
    fn useless_or_relative_ca_files_are_rejected() {
        for (text, needle) in [
            (
                "  rgw-server: h\n  rgw-ca-file: /ca.pem\nrgw:\n  - a\n",
                "`settings.rgw-ca-file`: `/ca.pem` is set but no rgw endpoint uses https",
            ),
            ("  rgw-ca-file: /ca.pem\n", "no rgw endpoint uses https"),
            (
                "  rgw-server: h\nrgw:\n  - bucket: a\n    ca-file: /ca.pem\n",
                "`rgw.a`: `ca-file` is set but the endpoint http://h is plain http",
            ),
            (
                "  rgw-server: h\n  rgw-secure: true\n  rgw-ca-file: ca.pem\n",
                "`settings.rgw-ca-file`: `ca.pem` must be an absolute path",
            ),
            (
                "  rgw-server: https://h\nrgw:\n  - bucket: a\n    ca-file: ca.pem\n",
                "`ca-file` `ca.pem` must be an absolute path",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn endpoints_accept_host_port_and_urls() {
        assert_eq!(endpoint_url("h", false).unwrap(), "http://h");
        assert_eq!(endpoint_url("h:7480", true).unwrap(), "https://h:7480");
        assert_eq!(endpoint_url("http://h:1/", true).unwrap(), "http://h:1");
    }
}
