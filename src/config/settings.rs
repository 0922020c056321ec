//! The `settings:` mapping: core keys (core-rsync-coda.md §3.1), the rsync and coda keys
//! (§3.2, §3.3) and the keys this version adds. Defaults are the original's.

use super::{ConfigError, Probability, Seconds, Secret};
use serde::Deserialize;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// Which snapshot backend freezes the backup root after each run (D3, §5.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotBackendKind {
    /// Thin LVM snapshots through sudo, as the original.
    #[default]
    Lvm,
    /// Read-only btrfs subvolume snapshots.
    Btrfs,
    /// Reflinked (or copied) directory trees: small installations and the quickstart.
    Dir,
}

/// How ssh treats host keys (never `StrictHostKeyChecking=no`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Learn the key of a host seen for the first time; refuse a changed key.
    #[default]
    AcceptNew,
    /// Refuse any host whose key is not already in the known_hosts file.
    Yes,
}

impl HostKeyPolicy {
    /// The value for ssh's `StrictHostKeyChecking` option.
    pub fn ssh_value(self) -> &'static str {
        match self {
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::Yes => "yes",
        }
    }
}

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}

/// The `settings:` mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Root of the backup tree (required).
    #[serde(deserialize_with = "normalized_path")]
    pub root: PathBuf,
    /// `vg/lv` of the backup volume; required by the `lvm` backend.
    #[serde(default)]
    pub backup_lv: Option<String>,
    /// `df -c` warns below this percentage free (default 5).
    #[serde(default = "default_df_warning")]
    pub df_warning: f64,
    /// Prune: keep every snapshot this many days (default 14).
    #[serde(default = "default_duplicate_days")]
    pub gc_duplicate_days: u32,
    /// Prune: keep one snapshot a day this many weeks (default 8).
    #[serde(default = "default_daily_weeks")]
    pub gc_daily_weeks: u32,
    /// Prune: keep one snapshot a week this many 28-day months (default 12).
    #[serde(default = "default_weekly_months")]
    pub gc_weekly_months: u32,
    /// Log pruning: keep this many distinct days of logs per unit (default 60).
    #[serde(default = "default_log_days")]
    pub gc_log_distinct_days: u32,

    /// Snapshot backend: `lvm` (default), `btrfs` or `dir`.
    #[serde(default)]
    pub snapshot_backend: SnapshotBackendKind,
    /// Where `btrfs` and `dir` snapshots live (default: `<root>.snapshots`, beside the root).
    #[serde(default, deserialize_with = "optional_normalized_path")]
    pub snapshot_dir: Option<PathBuf>,
    /// Kill a unit that runs longer than this (default 12 hours; 0 disables).
    #[serde(default = "default_unit_timeout")]
    pub unit_timeout: Seconds,

    /// ssh host-key policy: `accept-new` (default) or `yes`.
    #[serde(default)]
    pub ssh_strict_host_keys: HostKeyPolicy,
    /// known_hosts file for the backup's ssh connections (default: ssh's own, ~/.ssh/known_hosts).
    #[serde(default)]
    pub ssh_known_hosts: Option<PathBuf>,
    /// ssh `ConnectTimeout` in seconds (default 30).
    #[serde(default = "default_connect_timeout")]
    pub ssh_connect_timeout: Seconds,

    /// Local rsync binary (default `rsync`).
    #[serde(default = "default_rsync")]
    pub rsync_local_binary: String,
    /// Global exclude patterns, placed before each host's.
    #[serde(default)]
    pub rsync_exclude: Vec<String>,
    /// Probability per run and host of a checksum scrub (default 0.0166).
    #[serde(default = "default_scrub_probability")]
    pub rsync_scrub_probability: Probability,
    /// Concurrent rsync hosts (default 1).
    #[serde(default = "one")]
    pub rsync_workers: NonZeroUsize,
    /// rsync `--bwlimit` value, e.g. `10M` (default: none).
    #[serde(default)]
    pub rsync_bwlimit: Option<String>,
    /// Update changed files in place (`--inplace`), so their unchanged blocks stay shared with
    /// older snapshots (default true; hard links are made safe first, see rsync/hardlinks.rs).
    #[serde(default = "default_true")]
    pub rsync_inplace: bool,
    /// rsync `--timeout`: abort when no data moves for this long (default 600 s; 0 disables).
    #[serde(default = "default_rsync_timeout")]
    pub rsync_timeout: Seconds,

    /// Probability of a full (rather than incremental) Coda dump (default 0.143; BUG-C1 fixed).
    #[serde(default = "default_coda_full")]
    pub coda_full_probability: Probability,
    /// `volutil` on the Coda server.
    #[serde(default = "default_volutil")]
    pub coda_volutil_path: String,
    /// `codadump2tar` on the Coda server.
    #[serde(default = "default_codadump2tar")]
    pub coda_codadump2tar_path: String,
    /// Concurrent Coda volume replicas (default 1).
    #[serde(default = "one")]
    pub coda_workers: NonZeroUsize,

    /// GitHub token (classic PAT with `repo` and `read:org`, or a fine-grained PAT); needed by
    /// the github source. `deltaic github auth` obtains one.
    #[serde(default)]
    pub github_token: Option<Secret>,
    /// File holding the GitHub token (new; mode 0600), as `deltaic github auth` stores it.
    /// Used when `github-token` is not set.
    #[serde(default, deserialize_with = "optional_normalized_path")]
    pub github_token_file: Option<PathBuf>,
    /// GitHub REST API base URL (default `https://api.github.com`; GitHub Enterprise:
    /// `https://HOST/api/v3`).
    #[serde(default = "default_github_api_url")]
    pub github_api_url: String,
    /// OAuth App client id for `deltaic github auth`'s device flow.
    #[serde(default)]
    pub github_oauth_client_id: Option<String>,
    /// Probability per run and repository of a scrub (default 0.0166).
    #[serde(default = "default_scrub_probability")]
    pub github_scrub_probability: Probability,
    /// git executable (default `git`).
    #[serde(default = "default_git")]
    pub github_git_path: String,
    /// Concurrent GitHub units (default 1).
    #[serde(default = "one")]
    pub github_workers: NonZeroUsize,
    /// Longest wait for a rate-limit reset before a unit stops and leaves the rest to the next
    /// run (default 15 minutes).
    #[serde(default = "default_github_max_wait")]
    pub github_max_wait: Seconds,
    /// Requests of the hourly quota left untouched for other users of the token (default 100).
    #[serde(default = "default_github_reserve")]
    pub github_quota_reserve: u64,
    /// Retries of a GitHub API request after a 5xx answer or a network error, with doubling
    /// pauses from 1 s (default 4: five attempts).
    #[serde(default = "default_github_retry_max")]
    pub github_retry_max: u32,

    /// Probability per run and RBD unit of a scrub: compare the whole backup file with the
    /// snapshot (default 0.0166).
    #[serde(default = "default_scrub_probability")]
    pub rbd_scrub_probability: Probability,
    /// Concurrent RBD units (default 1).
    #[serde(default = "one")]
    pub rbd_workers: NonZeroUsize,
    /// The `rbd` executable (default `rbd`).
    #[serde(default = "default_rbd")]
    pub rbd_path: String,
    /// Extra arguments put before every `rbd` command, e.g. `[--id, backup]` (default none;
    /// CEPH_CONF and CEPH_ARGS from the environment work too).
    #[serde(default)]
    pub rbd_args: Vec<String>,
    /// Kill an `rbd` command that runs this long, or an export that sends nothing for this long
    /// (default 600 s; 0 disables).
    #[serde(default = "default_rbd_timeout")]
    pub rbd_timeout: Seconds,
    /// radosgw (or any S3 service) endpoint: `host`, `host:port` or a URL (github-rgw-rbd.md
    /// §2.1, §2.10); required by the rgw source unless every bucket names its own `server`.
    #[serde(default)]
    pub rgw_server: Option<String>,
    /// Use HTTPS when `rgw-server` is not a URL (default false).
    #[serde(default)]
    pub rgw_secure: bool,
    /// PEM file of CA certificates trusted for HTTPS rgw endpoints in addition to the system's
    /// roots (a private Ceph CA); read when a bucket's client is built.
    #[serde(default, deserialize_with = "optional_normalized_path")]
    pub rgw_ca_file: Option<PathBuf>,
    /// Objects fetched or uploaded at once per bucket (default 4); a fetch sends its data and
    /// ACL requests together.
    #[serde(default = "default_rgw_threads")]
    pub rgw_threads: NonZeroUsize,
    /// Buckets backed up at once (default 1).
    #[serde(default = "one")]
    pub rgw_workers: NonZeroUsize,
    /// Probability per run and bucket of a full scrub, `--scrub` (default 0.0166).
    #[serde(default = "default_scrub_probability")]
    pub rgw_scrub_probability: Probability,
    /// Probability per run and bucket of an ACL scrub, `--scrub-acls` (default 0).
    #[serde(default = "default_zero_probability")]
    pub rgw_scrub_acl_probability: Probability,
    /// SigV4 signing region (default `us-east-1`; radosgw accepts its zonegroup name).
    #[serde(default = "default_rgw_region")]
    pub rgw_region: String,
    /// `radosgw-admin` executable, used for bucket-owner credentials (default `radosgw-admin`).
    #[serde(default = "default_rgw_admin")]
    pub rgw_admin_path: String,
    /// Fixed access key (D7): with `rgw-secret-key`, used instead of `radosgw-admin`.
    #[serde(default)]
    pub rgw_access_key: Option<String>,
    /// Fixed secret key (D7), never logged.
    #[serde(default)]
    pub rgw_secret_key: Option<Secret>,
    /// Restore uploads objects larger than this in parts of this size (bytes; default 64 MiB;
    /// at least 5 MiB, the S3 minimum part size).
    #[serde(default = "default_rgw_multipart")]
    pub rgw_multipart_threshold: u64,
    /// Back up every version and delete marker of versioned buckets (default false).
    #[serde(default)]
    pub rgw_versions: bool,
}

fn default_df_warning() -> f64 {
    5.0
}
fn default_duplicate_days() -> u32 {
    14
}
fn default_daily_weeks() -> u32 {
    8
}
fn default_weekly_months() -> u32 {
    12
}
fn default_log_days() -> u32 {
    60
}
fn default_unit_timeout() -> Seconds {
    Seconds(12 * 3600)
}
fn default_connect_timeout() -> Seconds {
    Seconds(30)
}
fn default_rsync() -> String {
    "rsync".into()
}
fn default_scrub_probability() -> Probability {
    Probability::new(0.0166)
}
fn default_github_api_url() -> String {
    "https://api.github.com".into()
}
fn default_git() -> String {
    "git".into()
}
fn default_github_max_wait() -> Seconds {
    Seconds(15 * 60)
}
fn default_github_reserve() -> u64 {
    100
}
fn default_github_retry_max() -> u32 {
    4
}
fn default_rbd() -> String {
    "rbd".into()
}
fn default_rbd_timeout() -> Seconds {
    Seconds(600)
}
fn default_rgw_threads() -> NonZeroUsize {
    NonZeroUsize::new(4).expect("non-zero")
}
fn default_zero_probability() -> Probability {
    Probability::new(0.0)
}
fn default_rgw_region() -> String {
    "us-east-1".into()
}
fn default_rgw_admin() -> String {
    "radosgw-admin".into()
}
fn default_rgw_multipart() -> u64 {
    64 << 20
}
fn default_true() -> bool {
    true
}
fn default_rsync_timeout() -> Seconds {
    Seconds(600)
}
fn default_coda_full() -> Probability {
    Probability::new(0.143)
}
fn default_volutil() -> String {
    "volutil".into()
}
fn default_codadump2tar() -> String {
    "codadump2tar".into()
}

/// Strips trailing slashes and `.` components so that `dirname(root)` is the parent (BUG-18).
pub fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}

fn normalized_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = PathBuf::deserialize(d)?;
    if path.as_os_str().is_empty() {
        return Err(serde::de::Error::custom("path is empty"));
    }
    Ok(normalize(&path))
}

fn optional_normalized_path<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<PathBuf>, D::Error> {
    Ok(Option::<PathBuf>::deserialize(d)?.map(|p| normalize(&p)))
}

impl Settings {
    /// The GitHub token: `github-token`, else the content of `github-token-file`.
    /// `Ok(None)` when neither is set; an unreadable or empty file is an error naming it.
    pub fn github_token(&self) -> anyhow::Result<Option<Secret>> {
        use anyhow::Context;
        if let Some(token) = &self.github_token {
            return Ok(Some(token.clone()));
        }
        let Some(path) = &self.github_token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading github-token-file {}; run `deltaic github auth` to create it",
                path.display()
            )
        })?;
        let token = text.trim();
        if token.is_empty() {
            anyhow::bail!(
                "github-token-file {} is empty; run `deltaic github auth`",
                path.display()
            );
        }
        Ok(Some(Secret::new(token)))
    }

    /// The `(vg, lv)` pair of `backup-lv`.
    pub fn backup_lv(&self) -> Option<(&str, &str)> {
        self.backup_lv.as_deref().and_then(|s| s.split_once('/'))
    }

    /// Where `btrfs` and `dir` snapshots live.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshot_dir.clone().unwrap_or_else(|| {
            let mut name = self.root.file_name().unwrap_or_default().to_os_string();
            name.push(".snapshots");
            self.root.with_file_name(name)
        })
    }

    pub(super) fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: None,
            key: format!("settings.{key}"),
            message,
        };
        if !self.root.is_absolute() {
            return Err(invalid(
                "root",
                format!("`{}` must be an absolute path", self.root.display()),
            ));
        }
        if let Some(lv) = &self.backup_lv {
            let parts: Vec<&str> = lv.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                return Err(invalid(
                    "backup-lv",
                    format!("`{lv}` must have the form VG/LV, e.g. backups/data"),
                ));
            }
        } else if self.snapshot_backend == SnapshotBackendKind::Lvm {
            return Err(invalid(
                "backup-lv",
                "missing: the lvm snapshot backend (the default) needs `backup-lv: VG/LV`; \
                 or set `snapshot-backend: btrfs` or `dir`"
                    .into(),
            ));
        }
        if !(0.0..=100.0).contains(&self.df_warning) {
            return Err(invalid(
                "df-warning",
                format!("{} is not a percentage between 0 and 100", self.df_warning),
            ));
        }
        if self.gc_log_distinct_days == 0 {
            return Err(invalid(
                "gc-log-distinct-days",
                "must be at least 1, or every log would be deleted".into(),
            ));
        }
        if let Some(dir) = &self.snapshot_dir
            && dir.starts_with(&self.root)
        {
            return Err(invalid(
                "snapshot-dir",
                format!(
                    "`{}` is inside root `{}`: each snapshot would copy the earlier ones",
                    dir.display(),
                    self.root.display()
                ),
            ));
        }
        Ok(())
    }
}
