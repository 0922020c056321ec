//! The single-node Ceph the rbd and rgw tests share (started by `.ci/ceph start`, see
//! test-infra.md §3), found through `DELTAIC_TEST_CEPH_CONF` and `DELTAIC_TEST_RGW_ENDPOINT`
//! (and, for HTTPS, `DELTAIC_TEST_RGW_TLS_ENDPOINT` and `DELTAIC_TEST_RGW_CA`).
//!
//! Tests share one cluster, so each one works on names of its own ([`unique_name`]) and removes
//! what it created. Every command runs under `timeout`, because a Ceph client waiting for a
//! monitor that is gone would otherwise hang the test run.

use super::require;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Environment variable naming the test cluster's ceph.conf.
pub const CONF_ENV: &str = "DELTAIC_TEST_CEPH_CONF";
/// Environment variable naming the test radosgw's S3 endpoint (`http://127.0.0.1:PORT`).
pub const RGW_ENV: &str = "DELTAIC_TEST_RGW_ENDPOINT";

/// Environment variable naming radosgw's HTTPS endpoint (`https://127.0.0.1:PORT`).
pub const RGW_TLS_ENV: &str = "DELTAIC_TEST_RGW_TLS_ENDPOINT";
/// Environment variable naming the PEM file of the CA that signed radosgw's certificate.
pub const RGW_CA_ENV: &str = "DELTAIC_TEST_RGW_CA";

/// radosgw's HTTPS endpoint, whose certificate a throwaway CA signed.
#[derive(Debug, Clone)]
pub struct RgwTls {
    /// `https://127.0.0.1:PORT` (the certificate names 127.0.0.1 and localhost).
    pub endpoint: String,
    /// The CA's PEM file.
    pub ca: PathBuf,
}

/// Seconds a single Ceph command may take before the test fails.
const COMMAND_TIMEOUT: &str = "60";

/// The running test cluster.
#[derive(Debug, Clone)]
pub struct Ceph {
    /// The cluster's ceph.conf (pass it as `CEPH_CONF`).
    pub conf: PathBuf,
    /// The radosgw S3 endpoint, `http://127.0.0.1:PORT`.
    pub rgw_endpoint: String,
}

impl Ceph {
    /// The cluster named by the environment, or `None` after a loud skip (a panic under
    /// `DELTAIC_TEST_REQUIRE_ALL=1`). Start one with
    /// `eval "$(sudo .ci/ceph start /tmp/deltaic-ceph)"`.
    pub fn get() -> Option<Ceph> {
        let conf = std::env::var_os(CONF_ENV).map(PathBuf::from);
        let available = conf.as_ref().is_some_and(|c| c.is_file())
            && require::program_exists("rbd")
            && require::program_exists("radosgw-admin");
        let what = format!(
            "a Ceph cluster ({CONF_ENV} unset or not a file, or rbd missing; \
             run `eval \"$(sudo .ci/ceph start /tmp/deltaic-ceph)\"`)"
        );
        if !require::service(&what, available) {
            return None;
        }
        let rgw_endpoint =
            std::env::var(RGW_ENV).unwrap_or_else(|_| "http://127.0.0.1:7480".to_string());
        Some(Ceph {
            conf: conf.unwrap(),
            rgw_endpoint,
        })
    }

    /// radosgw's HTTPS endpoint, or `None` after a loud skip (a panic under
    /// `DELTAIC_TEST_REQUIRE_ALL=1`): a cluster started by an older `.ci/ceph` has none.
    pub fn rgw_tls(&self) -> Option<RgwTls> {
        let endpoint = std::env::var(RGW_TLS_ENV)
            .ok()
            .filter(|e| e.starts_with("https://"));
        let ca = std::env::var_os(RGW_CA_ENV).map(PathBuf::from);
        let available = endpoint.is_some() && ca.as_ref().is_some_and(|c| c.is_file());
        let what = format!(
            "radosgw over HTTPS ({RGW_TLS_ENV} or {RGW_CA_ENV} unset, or the CA file missing; \
             restart the cluster with this version of .ci/ceph and eval `.ci/ceph env DIR`)"
        );
        if !require::service(&what, available) {
            return None;
        }
        Some(RgwTls {
            endpoint: endpoint.unwrap(),
            ca: ca.unwrap(),
        })
    }

    /// A command for `program` (rbd, rados, radosgw-admin, ceph) bound to this cluster and
    /// wrapped in `timeout`.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("timeout");
        command
            .arg(COMMAND_TIMEOUT)
            .arg(program)
            .env("CEPH_CONF", &self.conf);
        command
    }

    /// Runs `program args...`, panicking with its stderr when it fails; returns its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> Vec<u8> {
        let output = self.output(program, args);
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Runs `program args...` and returns its whole output, whatever its status.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    /// Runs `program args...` (adding `--format=json`) and parses its JSON output.
    pub fn json(&self, program: &str, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--format=json");
        let stdout = self.run(program, &all);
        serde_json::from_slice(&stdout).unwrap_or_else(|e| {
            panic!(
                "{program} {args:?}: output is not JSON ({e}): {}",
                String::from_utf8_lossy(&stdout)
            )
        })
    }
}

/// A name no other test uses on the shared cluster: `prefix` plus a random suffix (lowercase
/// letters and digits, valid for pools, images and buckets).
pub fn unique_name(prefix: &str) -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    let suffix: String = (0..10)
        .map(|_| {
            let n = rng.random_range(0..36u8);
            char::from_digit(u32::from(n), 36).unwrap()
        })
        .collect();
    format!("{prefix}-{suffix}")
}
