//! The rgw source against the real radosgw of the shared test Ceph (github-rgw-rbd.md §2.11):
//! backup and restore through the `deltaic` binary, objects and buckets made with aws-sdk-s3.
//! Every test creates its own radosgw users and buckets (unique names) and removes them,
//! objects included, when it ends.

use crate::harness::ceph::{Ceph, unique_name};
use crate::harness::deltaic::{Deltaic, Ran};
use crate::harness::tree::contents;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A radosgw user made for one test (removed with its buckets and objects on drop).
struct User {
    ceph: Ceph,
    uid: String,
    access: String,
    secret: String,
}

impl User {
    fn create(ceph: &Ceph, prefix: &str) -> User {
        let uid = unique_name(prefix);
        let info = ceph.json(
            "radosgw-admin",
            &["user", "create", "--uid", &uid, "--display-name", &uid],
        );
        let key = &info["keys"][0];
        User {
            ceph: ceph.clone(),
            uid,
            access: key["access_key"].as_str().unwrap().to_string(),
            secret: key["secret_key"].as_str().unwrap().to_string(),
        }
    }

    fn client(&self) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.ceph.rgw_endpoint)
            .credentials_provider(Credentials::new(
                &self.access,
                &self.secret,
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            // deltaic's own transport: radosgw's Nagle would cost 40 ms per request otherwise.
            .http_client(deltaic::sources::rgw::transport::QuickAckClient)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build();
        Client::from_conf(config)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let out = self.ceph.output(
            "radosgw-admin",
            &["user", "rm", "--uid", &self.uid, "--purge-data"],
        );
        if !out.status.success() {
            eprintln!(
                "cleanup: radosgw-admin user rm {} failed: {}",
                self.uid,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A test's world: the cluster, a temp dir with the backup root and config, a runtime.
struct Env {
    ceph: Ceph,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Env {
    fn new() -> Option<Env> {
        let ceph = Ceph::get()?;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        Some(Env {
            ceph,
            dir,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root().join("rgw").join(bucket)
    }

    /// Writes the config (radosgw-admin credentials unless `extra` says otherwise).
    fn config(&self, extra: &str, buckets: &[&str]) -> Deltaic {
        let server = self.ceph.rgw_endpoint.trim_start_matches("http://");
        self.config_at(server, extra, buckets)
    }

    /// [`Env::config`] with `rgw-server: server`.
    fn config_at(&self, server: &str, extra: &str, buckets: &[&str]) -> Deltaic {
        let mut text = format!(
            "settings:\n  root: {}\n  snapshot-backend: dir\n  snapshot-dir: {}\n  \
             rgw-server: {server}\n  rgw-scrub-probability: 0\n  rgw-multipart-threshold: 5242880\n{extra}rgw:\n",
            self.root().display(),
            self.dir.path().join("snaps").display()
        );
        for b in buckets {
            text.push_str(&format!("  - {b}\n"));
        }
        let path = self.dir.path().join("deltaic.conf");
        fs::write(&path, text).unwrap();
        Deltaic::new(&path).env("CEPH_CONF", &self.ceph.conf)
    }

    fn put(&self, s3: &Client, bucket: &str, key: &str, body: &[u8]) {
        self.rt
            .block_on(
                s3.put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(body.to_vec()))
                    .send(),
            )
            .unwrap_or_else(|e| panic!("put {key:?}: {e:?}"));
    }

    /// Sets `key`'s ACL: full control for `owner`, read for `reader`.
    fn grant_read(&self, s3: &Client, bucket: &str, key: &str, owner: &User, reader: &User) {
        self.rt
            .block_on(
                s3.put_object_acl()
                    .bucket(bucket)
                    .key(key)
                    .grant_full_control(format!("id={}", owner.uid))
                    .grant_read(format!("id={}", reader.uid))
                    .send(),
            )
            .unwrap_or_else(|e| panic!("put_object_acl {key:?}: {e:?}"));
    }

    /// A new user (prefix `rgwalice`), her client, and a new bucket of hers named from `prefix`.
    fn alice_bucket(&self, prefix: &str) -> (User, Client, String) {
        let alice = User::create(&self.ceph, "rgwalice");
        let s3 = alice.client();
        let bucket = unique_name(prefix);
        self.create_bucket(&s3, &bucket);
        (alice, s3, bucket)
    }

    fn create_bucket(&self, s3: &Client, bucket: &str) {
        self.rt
            .block_on(s3.create_bucket().bucket(bucket).send())
            .unwrap();
    }

    fn keys(&self, s3: &Client, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .rt
                .block_on(
                    s3.list_objects_v2()
                        .bucket(bucket)
                        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
                        .set_continuation_token(token)
                        .send(),
                )
                .unwrap();
            for o in out.contents() {
                let raw = o.key().unwrap();
                keys.push(
                    percent_encoding::percent_decode_str(raw)
                        .decode_utf8()
                        .unwrap()
                        .into_owned(),
                );
            }
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return keys;
            }
        }
    }

    /// Everything a restore must reproduce about one object.
    fn object_state(&self, s3: &Client, bucket: &str, key: &str) -> ObjectState {
        let out = self
            .rt
            .block_on(s3.get_object().bucket(bucket).key(key).send())
            .unwrap_or_else(|e| panic!("get {key:?}: {e:?}"));
        let headers = [
            out.content_type(),
            out.cache_control(),
            out.content_disposition(),
            out.content_encoding(),
            out.content_language(),
        ]
        .iter()
        .map(|h| h.map(str::to_string))
        .collect();
        let metadata = out
            .metadata()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let data = self
            .rt
            .block_on(out.body.collect())
            .unwrap()
            .into_bytes()
            .to_vec();
        let acl = self
            .rt
            .block_on(s3.get_object_acl().bucket(bucket).key(key).send())
            .unwrap();
        ObjectState {
            data,
            headers,
            metadata,
            owner: acl.owner().and_then(|o| o.id()).map(str::to_string),
            grants: grants(acl.grants()),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct ObjectState {
    data: Vec<u8>,
    headers: Vec<Option<String>>,
    metadata: BTreeMap<String, String>,
    owner: Option<String>,
    grants: BTreeSet<(String, String)>,
}

fn grants(grants: &[aws_sdk_s3::types::Grant]) -> BTreeSet<(String, String)> {
    grants
        .iter()
        .map(|g| {
            let who = g.grantee().unwrap();
            (
                who.id().or(who.uri()).unwrap_or("?").to_string(),
                g.permission().unwrap().as_str().to_string(),
            )
        })
        .collect()
}

/// The `N S3 requests` figure of a backup's closing line.
fn requests(ran: &Ran) -> u64 {
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains(" S3 requests"))
        .unwrap_or_else(|| panic!("no request line in {}", ran.stdout));
    let before = line.split(" S3 requests").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, rel: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in fs::read_dir(dir.join(rel)).unwrap() {
            let e = e.unwrap();
            let child = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(dir, &child, out);
            } else {
                out.insert(child);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, Path::new(""), &mut out);
    out
}

#[test]
fn a_bucket_round_trips_with_metadata_acls_cors_owners_and_multipart() {
    let Some(env) = Env::new() else { return };
    let (alice, s3, bucket) = env.alice_bucket("rgwsrc");
    let bob = User::create(&env.ceph, "rgwbob");
    let rt = &env.rt;
    // Bob may write into alice's bucket; the bucket ACL names him.
    rt.block_on(
        s3.put_bucket_acl()
            .bucket(&bucket)
            .grant_full_control(format!("id={}", alice.uid))
            .grant_write(format!("id={}", bob.uid))
            .send(),
    )
    .unwrap();
    rt.block_on(
        s3.put_bucket_cors()
            .bucket(&bucket)
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(
                        CorsRule::builder()
                            .allowed_methods("GET")
                            .allowed_origins("https://example.org")
                            .max_age_seconds(300)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send(),
    )
    .unwrap();
    rt.block_on(
        s3.put_object()
            .bucket(&bucket)
            .key("docs/report.txt")
            .body(ByteStream::from_static(b"quarterly numbers\n"))
            .content_type("text/plain; charset=utf-8")
            .cache_control("max-age=60")
            .content_disposition("attachment; filename=\"r.txt\"")
            .content_language("en")
            .metadata("color", "blue")
            .metadata("name", "caf%C3%A9")
            .send(),
    )
    .unwrap();
    env.grant_read(&s3, &bucket, "docs/report.txt", &alice, &bob);
    for key in [
        "a//b",
        "/x",
        "dir/",
        "..",
        "x_d/y_k",
        "ünï/cödé",
        "sp ace%20+",
    ] {
        env.put(&s3, &bucket, key, key.as_bytes());
    }
    let big: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    env.put(&s3, &bucket, "big.bin", &big);
    // An object owned by bob, readable by the bucket owner.
    rt.block_on(
        bob.client()
            .put_object()
            .bucket(&bucket)
            .key("bobs.txt")
            .body(ByteStream::from_static(b"bob was here"))
            .grant_full_control(format!("id={}", alice.uid))
            .send(),
    )
    .unwrap();

    let deltaic = env.config("  rgw-threads: 3\n", &[&bucket]);
    let ran = deltaic.expect(["rgw", "backup", &bucket], 0);
    let dir = env.bucket_dir(&bucket);
    assert_eq!(
        fs::read(dir.join("docs_d/report.txt_k")).unwrap(),
        b"quarterly numbers\n"
    );
    let meta = fs::read_to_string(dir.join("docs_d/report.txt_m")).unwrap();
    assert!(
        meta.starts_with("{\"Cache-Control\": \"max-age=60\", ")
            && meta.contains("\"metadata\": {\"color\": \"blue\", \"name\": \"caf\\u00e9\"}")
            && !meta.ends_with('\n'),
        "{meta}"
    );
    assert!(
        fs::read_to_string(dir.join("docs_d/report.txt_a"))
            .unwrap()
            .contains(&bob.uid)
    );
    assert!(
        fs::read_to_string(dir.join("bucket_A"))
            .unwrap()
            .contains(&bob.uid)
    );
    assert!(
        fs::read_to_string(dir.join("bucket_C"))
            .unwrap()
            .contains("https://example.org")
    );
    assert_eq!(fs::read(dir.join("a_d/_d/b_k")).unwrap(), b"a//b");
    assert_eq!(fs::read(dir.join("_d/x_k")).unwrap(), b"/x");
    assert_eq!(fs::read(dir.join("sp ace%20+_k")).unwrap(), b"sp ace%20+");
    assert_eq!(fs::read(dir.join("big.bin_k")).unwrap(), big);
    assert!(requests(&ran) > 0);

    // Restore into a new bucket and compare object by object.
    let dest = unique_name("rgwdst");
    deltaic.expect(["rgw", "restore", &bucket, &dest], 0);
    let src_keys = env.keys(&s3, &bucket);
    assert_eq!(src_keys.len(), 10, "{src_keys:?}");
    assert_eq!(env.keys(&s3, &dest), src_keys);
    for key in &src_keys {
        assert_eq!(
            env.object_state(&s3, &dest, key),
            env.object_state(&s3, &bucket, key),
            "{key:?}"
        );
    }
    assert_eq!(
        env.object_state(&s3, &dest, "bobs.txt").owner.as_deref(),
        Some(bob.uid.as_str()),
        "uploaded as its owner"
    );
    let etag = rt
        .block_on(s3.head_object().bucket(&dest).key("big.bin").send())
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    assert!(etag.ends_with("-3\""), "12 MiB in 5 MiB parts: {etag}");
    let acl = |b: &str| {
        grants(
            rt.block_on(s3.get_bucket_acl().bucket(b).send())
                .unwrap()
                .grants(),
        )
    };
    assert_eq!(acl(&dest), acl(&bucket));
    let cors = rt
        .block_on(s3.get_bucket_cors().bucket(&dest).send())
        .unwrap();
    assert_eq!(
        cors.cors_rules()[0].allowed_origins(),
        ["https://example.org"]
    );

    // A second restore into the now non-empty bucket is refused without --force.
    let refused = deltaic.expect(["rgw", "restore", &bucket, &dest], 1);
    assert!(
        refused.stderr.contains("not empty; force with --force"),
        "{}",
        refused.stderr
    );
    deltaic.expect(["rgw", "restore", "--force", &bucket, &dest], 0);
}

#[test]
fn changes_deletions_and_acl_only_changes_are_mirrored() {
    let Some(env) = Env::new() else { return };
    let (alice, s3, bucket) = env.alice_bucket("rgwchg");
    let bob = User::create(&env.ceph, "rgwbob");
    for i in 0..30 {
        env.put(
            &s3,
            &bucket,
            &format!("k/{i:02}"),
            format!("v{i}").as_bytes(),
        );
    }
    let deltaic = env.config("", &[&bucket]);
    deltaic.expect(["rgw", "backup", &bucket], 0);
    let dir = env.bucket_dir(&bucket);

    // Nothing changed: HEAD, one list, bucket ACL and CORS; not one object request.
    let quiet = deltaic.expect(["rgw", "backup", &bucket], 0);
    assert_eq!(requests(&quiet), 4, "{}", quiet.stdout);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.put(&s3, &bucket, "k/01", b"changed");
    env.rt
        .block_on(s3.delete_object().bucket(&bucket).key("k/02").send())
        .unwrap();
    env.grant_read(&s3, &bucket, "k/03", &alice, &bob);
    let ran = deltaic.expect(["rgw", "backup", &bucket], 0);
    assert_eq!(fs::read(dir.join("k_d/01_k")).unwrap(), b"changed");
    assert!(!dir.join("k_d/02_k").exists() && !dir.join("k_d/02_m").exists());
    assert!(ran.stdout.contains("Deleting k_d/02_k"), "{}", ran.stdout);
    // radosgw moves Last-Modified on an ACL change, so the listing shows it too.
    assert!(
        fs::read_to_string(dir.join("k_d/03_a"))
            .unwrap()
            .contains(&bob.uid),
        "the new ACL is backed up"
    );
    assert_eq!(
        requests(&ran),
        8,
        "two GETs and two ACL GETs more: {}",
        ran.stdout
    );

    // An ACL copy that differs without a listing change (services that keep Last-Modified on
    // ACL changes; or damage) is invisible to a normal run and caught by an ACL scrub, which
    // repairs it and reports it as a scrub mismatch (D6).
    let good_acl = fs::read(dir.join("k_d/03_a")).unwrap();
    fs::write(dir.join("k_d/03_a"), b"<AccessControlPolicy/>").unwrap();
    let ran = deltaic.expect(["rgw", "backup", &bucket], 0);
    assert_eq!(requests(&ran), 4, "{}", ran.stdout);
    let report = env.dir.path().join("report.json");
    let ran = deltaic
        .command(["rgw", "backup", "--scrub-acls", &bucket])
        .env("DELTAIC_UNIT_REPORT", &report)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(
        fs::read(dir.join("k_d/03_a")).unwrap(),
        good_acl,
        "repaired"
    );
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["scrub_mismatches"], 1, "{report}");
    assert_eq!(report["scrubbed"], true);

    // A full scrub of an unchanged bucket rewrites nothing and finds nothing.
    let before = fs::metadata(dir.join("k_d/05_k")).unwrap();
    let ran = deltaic.expect(["rgw", "backup", "-c", &bucket], 0);
    assert!(requests(&ran) >= 4 + 2 * 29, "{}", ran.stdout);
    let after = fs::metadata(dir.join("k_d/05_k")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));
}

#[test]
fn hostile_keys_never_leave_the_bucket_directory() {
    let Some(env) = Env::new() else { return };
    let (_alice, s3, bucket) = env.alice_bucket("rgwodd");
    let long = format!("dir/{}", "L".repeat(300));
    let hostile = [
        "../../../../escape",
        "../x",
        "a/../../b",
        "/etc/passwd",
        "//double",
        ".",
        "a/./b",
        "..",
        ".backup-tmp1-deadbeef",
        "ctrl\u{1}\u{7f}char",
        "new\nline",
        "bucket_A",
        "x_d",
        "x_d/y_k",
    ];
    for key in hostile.iter().copied().chain([long.as_str()]) {
        env.put(&s3, &bucket, key, key.as_bytes());
    }
    let deltaic = env.config("", &[&bucket]);
    let ran = deltaic.expect(["rgw", "backup", &bucket], 1);
    assert!(
        ran.stderr.contains("cannot be stored") && ran.stderr.contains("300 bytes"),
        "the long key is a per-key error: {}",
        ran.stderr
    );
    // Nothing outside the bucket directory, and every file decodes to a listed key.
    let outside: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside.len(), 2, "only root and deltaic.conf: {outside:?}");
    let dir = env.bucket_dir(&bucket);
    let found = files(&dir);
    for key in hostile {
        let path = deltaic::sources::rgw::paths::encode(key.as_bytes())
            .unwrap()
            .file(deltaic::sources::rgw::paths::Code::Data);
        assert_eq!(
            fs::read(dir.join(&path)).unwrap(),
            key.as_bytes(),
            "{key:?}"
        );
    }
    for file in &found {
        let name = file.as_os_str().as_bytes();
        assert!(
            deltaic::sources::rgw::paths::decode(file).is_some()
                || name == b"bucket_A"
                || name == b"bucket_C",
            "{file:?}"
        );
    }
    // A second run keeps every good copy although the long key still fails.
    let ran = deltaic.expect(["rgw", "backup", &bucket], 1);
    assert!(!ran.stdout.contains("Deleting"), "{}", ran.stdout);
    assert_eq!(files(&dir), found);
}

#[test]
fn a_killed_backup_converges_on_the_next_run() {
    let Some(env) = Env::new() else { return };
    let (_alice, s3, bucket) = env.alice_bucket("rgwkill");
    let body: Vec<u8> = vec![7; 64 << 10];
    for i in 0..800 {
        env.put(&s3, &bucket, &format!("obj/{i:03}"), &body);
    }
    let deltaic = env.config("  rgw-threads: 2\n", &[&bucket]);
    let dir = env.bucket_dir(&bucket);
    let child = deltaic.spawn(["rgw", "backup", &bucket]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("obj_d/010_k").exists() {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let partial = files(&dir)
        .iter()
        .filter(|f| f.to_string_lossy().ends_with("_k"))
        .count();
    assert!(partial < 800, "killed mid-bucket ({partial} objects)");

    deltaic.expect(["rgw", "backup", &bucket], 0);
    for i in 0..800 {
        assert_eq!(fs::read(dir.join(format!("obj_d/{i:03}_k"))).unwrap(), body);
    }
    let all = files(&dir);
    assert_eq!(
        all.len(),
        800 * 3 + 1,
        "data, meta, ACL, bucket_A; no temp files"
    );
    let ran = deltaic.expect(["rgw", "backup", &bucket], 0);
    assert_eq!(requests(&ran), 4, "converged: {}", ran.stdout);
}

#[test]
fn fixed_credentials_back_up_without_radosgw_admin() {
    let Some(env) = Env::new() else { return };
    let (alice, s3, bucket) = env.alice_bucket("rgwfix");
    env.put(&s3, &bucket, "hello", b"world");
    let extra = format!(
        "  rgw-admin-path: /nonexistent/radosgw-admin\n  rgw-access-key: {}\n  rgw-secret-key: {}\n",
        alice.access, alice.secret
    );
    let deltaic = env.config(&extra, &[&bucket]);
    let ran = deltaic.expect(["rgw", "backup", &bucket], 0);
    assert!(!ran.stdout.contains(&alice.secret) && !ran.stderr.contains(&alice.secret));
    assert_eq!(
        fs::read(env.bucket_dir(&bucket).join("hello_k")).unwrap(),
        b"world"
    );
    let dest = unique_name("rgwfixdst");
    deltaic.expect(["rgw", "restore", &bucket, &dest], 0);
    assert_eq!(env.object_state(&s3, &dest, "hello").data, b"world");

    // A wrong secret fails clearly, without printing it.
    let extra = format!(
        "  rgw-access-key: {}\n  rgw-secret-key: wrongsecret123\n",
        alice.access
    );
    let ran = env
        .config(&extra, &[&bucket])
        .expect(["rgw", "backup", &bucket], 1);
    assert!(ran.stderr.contains("not accessible"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("wrongsecret123"), "{}", ran.stderr);
}

#[test]
fn deltaic_run_plans_and_runs_rgw_units() {
    let Some(env) = Env::new() else { return };
    let alice = User::create(&env.ceph, "rgwalice");
    let s3 = alice.client();
    let (b1, b2) = (unique_name("rgwrun"), unique_name("rgwrun"));
    for b in [&b1, &b2] {
        env.create_bucket(&s3, b);
        env.put(&s3, b, "one", b"1");
    }
    let deltaic = env.config("  rgw-workers: 2\n", &[&b1, &b2]);
    let ran = deltaic.expect(["run"], 0);
    for b in [&b1, &b2] {
        assert!(ran.stdout.contains(&format!("rgw/{b}")), "{}", ran.stdout);
        assert_eq!(fs::read(env.bucket_dir(b).join("one_k")).unwrap(), b"1");
    }
}

/// A key's history as S3 lists it, oldest first: (delete marker?, data of a version).
fn history(env: &Env, s3: &Client, bucket: &str, key: &str) -> Vec<(bool, Vec<u8>)> {
    let out = env
        .rt
        .block_on(s3.list_object_versions().bucket(bucket).prefix(key).send())
        .unwrap();
    let mut items: Vec<(i128, usize, bool, Option<String>)> = Vec::new();
    for (i, v) in out.versions().iter().enumerate() {
        if v.key() == Some(key) {
            let t = v.last_modified().unwrap().as_nanos();
            items.push((t, i, false, v.version_id().map(str::to_string)));
        }
    }
    for m in out.delete_markers() {
        if m.key() == Some(key) {
            items.push((
                m.last_modified().unwrap().as_nanos(),
                usize::MAX,
                true,
                None,
            ));
        }
    }
    // Oldest first; at the same instant, versions are listed newest first.
    items.sort_by_key(|(t, i, _, _)| (*t, std::cmp::Reverse(*i)));
    items
        .into_iter()
        .map(|(_, _, marker, version)| {
            let data = version
                .map(|v| {
                    let got = env
                        .rt
                        .block_on(s3.get_object().bucket(bucket).key(key).version_id(v).send())
                        .unwrap();
                    env.rt
                        .block_on(got.body.collect())
                        .unwrap()
                        .into_bytes()
                        .to_vec()
                })
                .unwrap_or_default();
            (marker, data)
        })
        .collect()
}

#[test]
fn versions_and_delete_markers_are_backed_up_and_replayed_in_order() {
    let Some(env) = Env::new() else { return };
    let (_alice, s3, bucket) = env.alice_bucket("rgwver");
    env.rt
        .block_on(
            s3.put_bucket_versioning()
                .bucket(&bucket)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let pause = || std::thread::sleep(std::time::Duration::from_millis(1100));
    env.put(&s3, &bucket, "doc", b"one");
    pause();
    env.put(&s3, &bucket, "doc", b"two");
    pause();
    env.rt
        .block_on(s3.delete_object().bucket(&bucket).key("doc").send())
        .unwrap();
    pause();
    env.put(&s3, &bucket, "doc", b"three");
    env.put(&s3, &bucket, "gone", b"before");
    pause();
    env.rt
        .block_on(s3.delete_object().bucket(&bucket).key("gone").send())
        .unwrap();
    env.put(&s3, &bucket, "plain", b"only");

    let deltaic = env.config("  rgw-versions: true\n", &[&bucket]);
    let ran = deltaic.expect(["rgw", "backup", &bucket], 0);
    let dir = env.bucket_dir(&bucket);
    assert_eq!(fs::read(dir.join("doc_k")).unwrap(), b"three");
    assert!(!dir.join("gone_k").exists(), "its current state is deleted");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("bucket_V/doc_v/index_i")).unwrap()).unwrap();
    let kinds: Vec<(bool, bool)> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["delete_marker"].as_bool().unwrap(),
                e["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [(false, false), (false, false), (true, false), (false, true)]
    );
    assert!(
        !dir.join("bucket_V/plain_v").exists(),
        "no history, nothing extra"
    );
    assert!(requests(&ran) > 0);

    // Nothing changed: the versions cost one more listing, no fetch.
    let quiet = deltaic.expect(["rgw", "backup", &bucket], 0);
    assert_eq!(requests(&quiet), 5, "{}", quiet.stdout);

    let dest = unique_name("rgwverdst");
    deltaic.expect(["rgw", "restore", &bucket, &dest], 0);
    for key in ["doc", "gone", "plain"] {
        assert_eq!(
            history(&env, &s3, &dest, key),
            history(&env, &s3, &bucket, key),
            "{key}"
        );
    }
    assert_eq!(
        history(&env, &s3, &dest, "doc"),
        [
            (false, b"one".to_vec()),
            (false, b"two".to_vec()),
            (true, vec![]),
            (false, b"three".to_vec())
        ]
    );

    // A version deleted for good leaves the backup too.
    let first = env
        .rt
        .block_on(
            s3.list_object_versions()
                .bucket(&bucket)
                .prefix("gone")
                .send(),
        )
        .unwrap();
    let v = first.versions()[0].version_id().unwrap().to_string();
    env.rt
        .block_on(
            s3.delete_object()
                .bucket(&bucket)
                .key("gone")
                .version_id(v)
                .send(),
        )
        .unwrap();
    let ran = deltaic.expect(["rgw", "backup", &bucket], 0);
    assert!(
        ran.stdout.contains("Deleting bucket_V/gone_v/"),
        "{}",
        ran.stdout
    );
}

#[test]
fn a_failing_key_keeps_its_last_good_copy() {
    let Some(env) = Env::new() else { return };
    let (alice, s3, bucket) = env.alice_bucket("rgwfail");
    let bob = User::create(&env.ceph, "rgwbob");
    env.rt
        .block_on(
            s3.put_bucket_acl()
                .bucket(&bucket)
                .grant_full_control(format!("id={}", alice.uid))
                .grant_write(format!("id={}", bob.uid))
                .send(),
        )
        .unwrap();
    let grant = |read_acp: bool| {
        let put = bob
            .client()
            .put_object_acl()
            .bucket(&bucket)
            .key("bobs.txt")
            .grant_full_control(format!("id={}", bob.uid));
        let put = if read_acp {
            put.grant_read(format!("id={}", alice.uid))
                .grant_read_acp(format!("id={}", alice.uid))
        } else {
            put.grant_read(format!("id={}", alice.uid))
        };
        env.rt.block_on(put.send()).unwrap();
    };
    env.rt
        .block_on(
            bob.client()
                .put_object()
                .bucket(&bucket)
                .key("bobs.txt")
                .body(ByteStream::from_static(b"good"))
                .send(),
        )
        .unwrap();
    grant(true);
    env.put(&s3, &bucket, "other", b"fine");
    let deltaic = env.config("", &[&bucket]);
    deltaic.expect(["rgw", "backup", &bucket], 0);
    let dir = env.bucket_dir(&bucket);
    let before: Vec<Vec<u8>> = ["bobs.txt_k", "bobs.txt_m", "bobs.txt_a"]
        .iter()
        .map(|f| fs::read(dir.join(f)).unwrap())
        .collect();

    // Alice may still read the data but no longer the ACL: the key fails, its files stay.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    grant(false);
    let ran = deltaic.expect(["rgw", "backup", &bucket], 1);
    assert!(
        ran.stderr
            .contains("Couldn't fetch bobs.txt: reading its ACL: AccessDenied"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stdout.contains("Deleting"), "{}", ran.stdout);
    let after: Vec<Vec<u8>> = ["bobs.txt_k", "bobs.txt_m", "bobs.txt_a"]
        .iter()
        .map(|f| fs::read(dir.join(f)).unwrap())
        .collect();
    assert_eq!(after, before, "the last good copy is untouched");
    assert_eq!(fs::read(dir.join("other_k")).unwrap(), b"fine");

    grant(true);
    deltaic.expect(["rgw", "backup", &bucket], 0);
}

#[test]
fn a_restore_goes_on_past_a_failed_object_and_lists_it() {
    let Some(env) = Env::new() else { return };
    let (_alice, s3, bucket) = env.alice_bucket("rgwrst");
    for key in ["a", "b", "c"] {
        env.put(&s3, &bucket, key, key.as_bytes());
    }
    let deltaic = env.config("  rgw-threads: 1\n", &[&bucket]);
    deltaic.expect(["rgw", "backup", &bucket], 0);
    // A damaged ACL file: that object cannot be restored as it was.
    fs::write(env.bucket_dir(&bucket).join("b_a"), b"not xml <").unwrap();
    let dest = unique_name("rgwrstdst");
    let ran = deltaic.expect(["rgw", "restore", &bucket, &dest], 1);
    assert!(
        ran.stderr
            .contains("Couldn't restore b: reading its ACL file"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("1 object(s) could not be restored"),
        "{}",
        ran.stderr
    );
    assert_eq!(env.keys(&s3, &dest), ["a", "c"], "the others are restored");
}

#[test]
fn an_https_endpoint_with_a_private_ca_needs_rgw_ca_file() {
    let Some(env) = Env::new() else { return };
    let Some(tls) = env.ceph.rgw_tls() else {
        return;
    };
    let (_alice, s3, bucket) = env.alice_bucket("rgwtls");
    env.put(&s3, &bucket, "docs/a.txt", b"first");
    env.put(&s3, &bucket, "b", b"second");
    let with_ca = format!("  rgw-ca-file: {}\n", tls.ca.display());
    let deltaic = env.config_at(&tls.endpoint, &with_ca, &[&bucket]);
    deltaic.expect(["rgw", "backup", &bucket], 0);
    let dir = env.bucket_dir(&bucket);
    assert_eq!(fs::read(dir.join("docs_d/a.txt_k")).unwrap(), b"first");
    assert_eq!(fs::read(dir.join("b_k")).unwrap(), b"second");
    let backed_up: BTreeSet<PathBuf> = files(&dir)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with("_k"))
        .collect();
    let expected: BTreeSet<PathBuf> = ["docs_d/a.txt_k", "b_k"].map(PathBuf::from).into();
    assert_eq!(backed_up, expected, "the backup holds the bucket's objects");
    let before = contents(&dir);

    // Without the CA file the handshake fails, the error says why and what to do, and the
    // backup is left as it was.
    env.put(&s3, &bucket, "b", b"changed");
    let ran = env
        .config_at(&tls.endpoint, "", &[&bucket])
        .expect(["rgw", "backup", &bucket], 1);
    assert!(
        ran.stderr.contains("UnknownIssuer") || ran.stderr.contains("unknown issuer"),
        "the cause is shown: {}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("does not trust") && ran.stderr.contains("rgw-ca-file"),
        "{}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("check the bucket name"),
        "{}",
        ran.stderr
    );
    assert_eq!(requests(&ran), 1, "a refused certificate is not retried");
    assert_eq!(contents(&dir), before, "a failed handshake changes nothing");

    // A CA file that is no PEM certificate is refused before any request.
    let junk = env.dir.path().join("junk.pem");
    fs::write(&junk, "not a certificate\n").unwrap();
    let ran = env
        .config_at(
            &tls.endpoint,
            &format!("  rgw-ca-file: {}\n", junk.display()),
            &[&bucket],
        )
        .expect(["rgw", "backup", &bucket], 1);
    assert!(
        ran.stderr.contains("`settings.rgw-ca-file`")
            && ran.stderr.contains(&junk.display().to_string())
            && ran.stderr.contains("holds no PEM certificate"),
        "{}",
        ran.stderr
    );
    assert_eq!(contents(&dir), before);

    // With the CA again (the config file was rewritten), the change arrives, and a restore
    // goes over HTTPS too.
    let deltaic = env.config_at(&tls.endpoint, &with_ca, &[&bucket]);
    deltaic.expect(["rgw", "backup", &bucket], 0);
    assert_eq!(fs::read(dir.join("b_k")).unwrap(), b"changed");
    let dest = unique_name("rgwtlsdst");
    deltaic.expect(["rgw", "restore", &bucket, &dest], 0);
    assert_eq!(env.object_state(&s3, &dest, "b").data, b"changed");
    assert_eq!(env.object_state(&s3, &dest, "docs/a.txt").data, b"first");
}
