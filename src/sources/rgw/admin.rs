//! Bucket-owner credentials from `radosgw-admin` (github-rgw-rbd.md §2.2), the original's
//! credential model (D7 keeps it as the default):
//! `radosgw-admin --format=json bucket stats --bucket B` gives the owner, and
//! `radosgw-admin --format=json user info --uid U` that user's first S3 key.
//!
//! The child inherits the environment (D2), so `CEPH_CONF` and `CEPH_ARGS` reach it. Its stdout
//! holds secret keys: it is parsed and dropped, never logged, and errors quote only stderr.

use crate::config::Secret;
use crate::util::process;
use anyhow::{Context, anyhow};
use serde_json::Value;

/// One S3 key pair of a radosgw user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: Secret,
}

/// Runs `admin --format=json ARGS` and parses its stdout as JSON.
fn admin_json(admin: &str, args: &[&str]) -> anyhow::Result<Value> {
    let mut cmd = process::command(admin, ["--format=json"].iter().chain(args));
    let out = process::output(&mut cmd).map_err(|e| {
        anyhow!("{e}").context("radosgw-admin failed (is the Ceph config and keyring readable?)")
    })?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        // Never quote the output: it may hold secret keys.
        anyhow!(
            "`{admin} --format=json {}` printed no valid JSON ({e})",
            args.join(" ")
        )
    })
}

/// The user id owning `bucket`.
pub fn bucket_owner(admin: &str, bucket: &str) -> anyhow::Result<String> {
    let stats = admin_json(admin, &["bucket", "stats", "--bucket", bucket])
        .with_context(|| format!("looking up the owner of bucket {bucket}"))?;
    stats
        .get("owner")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("radosgw-admin bucket stats for {bucket} names no owner"))
}

/// The first S3 key pair of user `uid`.
pub fn user_keys(admin: &str, uid: &str) -> anyhow::Result<KeyPair> {
    let info = admin_json(admin, &["user", "info", "--uid", uid])
        .with_context(|| format!("looking up the S3 keys of radosgw user {uid}"))?;
    parse_keys(&info).ok_or_else(|| {
        anyhow!(
            "radosgw user {uid} has no S3 key; create one with \
             `radosgw-admin key create --uid={uid} --key-type=s3 --gen-access-key --gen-secret`, \
             or configure fixed credentials (rgw-access-key/rgw-secret-key)"
        )
    })
}

fn parse_keys(info: &Value) -> Option<KeyPair> {
    let first = info.get("keys")?.as_array()?.first()?;
    Some(KeyPair {
        access_key: first.get("access_key")?.as_str()?.to_string(),
        secret_key: Secret::new(first.get("secret_key")?.as_str()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_is_used_and_a_user_without_keys_is_none() {
        let info = serde_json::json!({"user_id": "u", "keys": [
            {"user": "u", "access_key": "AK1", "secret_key": "S1"},
            {"user": "u", "access_key": "AK2", "secret_key": "S2"}]});
        let keys = parse_keys(&info).unwrap();
        assert_eq!(
            (keys.access_key.as_str(), keys.secret_key.expose()),
            ("AK1", "S1")
        );
        assert_eq!(parse_keys(&serde_json::json!({"keys": []})), None);
    }

    #[test]
    fn a_failing_tool_is_an_error_naming_it_without_its_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("radosgw-admin");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho '{\"keys\":[{\"secret_key\":\"TOPSECRET\"' ; echo oops >&2; exit 0\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = format!("{:#}", user_keys(fake.to_str().unwrap(), "u").unwrap_err());
        assert!(err.contains("no valid JSON"), "{err}");
        assert!(!err.contains("TOPSECRET"), "{err}");
        let err = format!(
            "{:#}",
            bucket_owner("/nonexistent/radosgw-admin", "b").unwrap_err()
        );
        assert!(err.contains("could not be started"), "{err}");
    }
}
