//! The `rgw` source: S3 buckets of a Ceph RADOS Gateway, or of any S3 service (D7), backed up
//! object by object with their metadata and ACLs (github-rgw-rbd.md §2).

pub mod admin;
pub mod client;
mod config;
pub mod paths;

pub(crate) use config::validate;
pub use config::{CredentialSource, RgwBucket, RgwBuckets, Target, target};
