//! The `rgw` source: S3 buckets of a Ceph RADOS Gateway, or of any S3 service (D7), backed up
//! object by object with their metadata and ACLs (github-rgw-rbd.md §2).

pub mod admin;
pub mod client;
mod config;
pub mod paths;

pub(crate) use config::validate;
pub use config::{CaFile, CredentialSource, RgwBucket, RgwBuckets, Target, target};
pub mod backup;
pub mod command;
mod gc;
pub mod listing;
pub mod meta;
pub mod restore;
pub mod tls;
pub mod transport;
pub mod versions;
pub mod xml;

use crate::config::Config;
use crate::sources::{Source, Unit, UnitRoot};
use std::num::NonZeroUsize;

/// An S3 client for `target`'s bucket: fixed credentials, or the bucket owner's from
/// `radosgw-admin` (D7).
pub async fn bucket_client(
    target: &Target,
    counter: &client::RequestCounter,
) -> anyhow::Result<aws_sdk_s3::Client> {
    let keys = match &target.credentials {
        CredentialSource::Fixed {
            access_key,
            secret_key,
        } => admin::KeyPair {
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
        },
        CredentialSource::Admin { admin_path } => {
            let (admin, bucket) = (admin_path.clone(), target.bucket.clone());
            tokio::task::spawn_blocking(move || {
                let owner = admin::bucket_owner(&admin, &bucket)?;
                admin::user_keys(&admin, &owner)
            })
            .await??
        }
    };
    client::build(target, &keys.access_key, &keys.secret_key, counter)
}

/// The rgw source (planning side).
pub struct Rgw;

impl Source for Rgw {
    fn label(&self) -> &'static str {
        "rgw"
    }

    fn workers(&self, config: &Config) -> NonZeroUsize {
        config.settings.rgw_workers
    }

    /// One unit per bucket in config order, `rgw/<bucket>`, with `--scrub-acls` and `--scrub`
    /// drawn independently (§2.1).
    fn plan_units(&self, config: &Config, rng: &mut dyn rand::Rng) -> anyhow::Result<Vec<Unit>> {
        let settings = &config.settings;
        let mut units = Vec::new();
        for entry in &config.rgw.0 {
            let root = UnitRoot::from_components(&["rgw", &entry.bucket])?;
            let mut backup_args = vec!["rgw".into(), "backup".into()];
            if settings.rgw_scrub_acl_probability.roll(rng) {
                backup_args.push("--scrub-acls".into());
            }
            if settings.rgw_scrub_probability.roll(rng) {
                backup_args.push("--scrub".into());
            }
            backup_args.push(entry.bucket.clone());
            units.push(Unit { root, backup_args });
        }
        Ok(units)
    }
}
