//! `deltaic rgw restore [-f] SOURCE DEST_BUCKET` (github-rgw-rbd.md §2.8, BUG-9 fixed).
//!
//! The bucket is created if missing (refused when it holds objects, unless `--force`), its ACL
//! and CORS configuration are restored, then every object: data (a multipart upload above
//! `rgw-multipart-threshold`; the original's single PUT failed over 5 GiB), content headers and
//! user metadata from `_m`, and its ACL from `_a`. With `radosgw-admin` credentials each object
//! is uploaded as its original owner (the `Owner/ID` of its ACL); with fixed credentials, as
//! that identity. A failed object never stops the others, is never answered with a DELETE, and
//! every failure is listed at the end.

use super::backup::{Files, show};
use super::client::{self, RequestCounter};
use super::meta::{self, RestoreMeta};
use super::paths::{self, BUCKET_ACL, BUCKET_CORS, Code};
use super::{CredentialSource, Target, admin, versions, xml};
use crate::config::Config;
use crate::sources::check_component;
use anyhow::{Context, anyhow, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

/// The S3 minimum part size (every part but the last).
const MIN_PART: u64 = 5 << 20;
/// The S3 maximum number of parts.
const MAX_PARTS: u64 = 10_000;

/// `$request` (a PutObject or CreateMultipartUpload builder, which share no trait) with the
/// content headers and user metadata of `$meta` (a [`RestoreMeta`]).
macro_rules! with_meta {
    ($request:expr, $meta:expr) => {{
        let meta: &RestoreMeta = $meta;
        let h = &meta.headers;
        $request
            .set_metadata(Some(meta.user.clone().into_iter().collect()))
            .set_cache_control(h.get("Cache-Control").cloned())
            .set_content_disposition(h.get("Content-Disposition").cloned())
            .set_content_encoding(h.get("Content-Encoding").cloned())
            .set_content_language(h.get("Content-Language").cloned())
            .set_content_type(h.get("Content-Type").cloned())
    }};
}

/// Clients by object owner (radosgw-admin mode), or the one fixed client.
struct Clients {
    target: Target,
    counter: RequestCounter,
    fixed: Option<Client>,
    by_owner: Mutex<HashMap<String, Client>>,
}

impl Clients {
    async fn for_owner(&self, owner: &str) -> anyhow::Result<Client> {
        if let Some(client) = &self.fixed {
            return Ok(client.clone());
        }
        let mut cache = self.by_owner.lock().await;
        if let Some(client) = cache.get(owner) {
            return Ok(client.clone());
        }
        let CredentialSource::Admin { admin_path } = &self.target.credentials else {
            unreachable!("fixed credentials have a fixed client")
        };
        let (admin, uid) = (admin_path.clone(), owner.to_string());
        let keys = tokio::task::spawn_blocking(move || admin::user_keys(&admin, &uid)).await??;
        let client = client::build(
            &self.target,
            &keys.access_key,
            &keys.secret_key,
            &self.counter,
        )?;
        cache.insert(owner.to_string(), client.clone());
        Ok(client)
    }
}

/// Runs a restore; see the module doc.
pub fn run(config: &Config, source: &str, dest: &str, force: bool) -> anyhow::Result<ExitCode> {
    let dir = if source.contains('/') {
        std::path::absolute(source)?
    } else {
        check_component(source).map_err(|e| anyhow!("source bucket: {e}"))?;
        config.root().join("rgw").join(source)
    };
    check_component(dest).map_err(|e| anyhow!("destination bucket: {e}"))?;
    let bucket_acl = std::fs::read_to_string(dir.join(BUCKET_ACL))
        .map_err(|_| anyhow!("No backups at {} (no {BUCKET_ACL} there)", dir.display()))?;
    let target = super::target(config, dest)?;
    let threads = config.settings.rgw_threads.get();
    let part_size = config.settings.rgw_multipart_threshold.max(MIN_PART);
    let runtime = client::runtime(threads)?;
    let counter = RequestCounter::default();
    let clients = Arc::new(Clients {
        fixed: match &target.credentials {
            CredentialSource::Fixed {
                access_key,
                secret_key,
            } => Some(client::build(&target, access_key, secret_key, &counter)?),
            CredentialSource::Admin { .. } => None,
        },
        target,
        counter: counter.clone(),
        by_owner: Mutex::new(HashMap::new()),
    });
    let failures = runtime.block_on(async {
        let owner = xml::acl_owner(&bucket_acl).context("reading the saved bucket ACL")?;
        let s3 = clients.for_owner(&owner).await?;
        prepare_bucket(&s3, &dir, dest, &bucket_acl, force).await?;
        let (keys, histories) = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || anyhow::Ok((walk(&dir)?, versions::read_indexes(&dir)?))
        })
        .await??;
        let restore = |work| {
            restore_objects(
                clients.clone(),
                &owner,
                &dir,
                dest,
                work,
                threads,
                part_size,
            )
        };
        let mut failures = Vec::new();
        if !histories.is_empty() {
            // History first, so each key's current object ends up the newest version.
            s3.put_bucket_versioning()
                .bucket(dest)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(client::failed(format!("enabling versioning on {dest}")))?;
            let work = histories
                .into_iter()
                .map(|h| (h.key, Work::History(h.dir, h.entries)))
                .collect();
            failures = restore(work).await?;
        }
        let work = keys.into_iter().map(|key| (key, Work::Current)).collect();
        failures.extend(restore(work).await?);
        anyhow::Ok(failures)
    })?;
    println!("{} S3 requests", counter.get());
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    bail!(
        "{} object(s) could not be restored into {dest} (listed above); run the restore again \
         with --force to retry them",
        failures.len()
    )
}

/// Creates `dest` if missing (refusing a non-empty one without `force`), then sets its ACL and
/// CORS configuration.
async fn prepare_bucket(
    s3: &Client,
    dir: &Path,
    dest: &str,
    bucket_acl: &str,
    force: bool,
) -> anyhow::Result<()> {
    match s3.head_bucket().bucket(dest).send().await {
        Ok(_) => {
            if !force {
                let listing = s3
                    .list_objects_v2()
                    .bucket(dest)
                    .max_keys(5)
                    .send()
                    .await
                    .map_err(client::failed(format!("listing bucket {dest}")))?;
                if !listing.contents().is_empty() {
                    bail!("Destination bucket {dest} is not empty; force with --force");
                }
            }
        }
        Err(e) if client::error_status(&e) == Some(404) => {
            s3.create_bucket()
                .bucket(dest)
                .send()
                .await
                .map_err(client::failed(format!("creating bucket {dest}")))?;
        }
        Err(e) => return Err(client::failed(format!("checking bucket {dest}"))(e)),
    }
    let policy = xml::acl_policy(bucket_acl).context("reading the saved bucket ACL")?;
    s3.put_bucket_acl()
        .bucket(dest)
        .access_control_policy(policy)
        .send()
        .await
        .map_err(client::failed(format!("setting the ACL of bucket {dest}")))?;
    if let Ok(cors) = std::fs::read_to_string(dir.join(BUCKET_CORS)) {
        let config = xml::cors_configuration(&cors).context("reading the saved bucket CORS")?;
        s3.put_bucket_cors()
            .bucket(dest)
            .cors_configuration(config)
            .send()
            .await
            .map_err(client::failed(format!("setting the CORS of bucket {dest}")))?;
    }
    Ok(())
}

/// Every key with a data file under `dir`, in walk order (directories and names sorted). The
/// versions tree is not entered ([`versions::read_indexes`] reads it).
fn walk(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    fn visit(dir: &Path, rel: &Path, out: &mut Vec<Vec<u8>>) -> anyhow::Result<()> {
        let here = dir.join(rel);
        let mut entries: Vec<_> = std::fs::read_dir(&here)
            .with_context(|| format!("reading {}", here.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let child = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                if child != Path::new(versions::VERSIONS_DIR) {
                    visit(dir, &child, out)?;
                }
            } else if let Some((key, Code::Data)) = paths::decode(&child) {
                out.push(key);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(dir, Path::new(""), &mut out)?;
    Ok(out)
}

/// One unit of restore work: a key's current object, or its whole history.
enum Work {
    Current,
    History(PathBuf, Vec<versions::Entry>),
}

/// Runs `work` for every key, at most `threads` at once; returns the failures.
async fn restore_objects(
    clients: Arc<Clients>,
    bucket_owner: &str,
    dir: &Path,
    dest: &str,
    work: Vec<(Vec<u8>, Work)>,
    threads: usize,
    part_size: u64,
) -> anyhow::Result<Vec<String>> {
    let semaphore = Arc::new(Semaphore::new(threads));
    let mut tasks = JoinSet::new();
    let mut failures = Vec::new();
    for (key, item) in work {
        let permit = semaphore.clone().acquire_owned().await?;
        let (clients, dir, dest) = (clients.clone(), dir.to_path_buf(), dest.to_string());
        let owner = bucket_owner.to_string();
        tasks.spawn(async move {
            let result = match &item {
                Work::Current => restore_one(&clients, &dir, &dest, &key, part_size).await,
                Work::History(kdir, entries) => {
                    replay_history(&clients, &owner, &dest, &key, kdir, entries, part_size).await
                }
            };
            drop(permit);
            (key, result)
        });
        while let Some(done) = tasks.try_join_next() {
            note(done?, &mut failures);
        }
    }
    while let Some(done) = tasks.join_next().await {
        note(done?, &mut failures);
    }
    Ok(failures)
}

fn note((key, result): (Vec<u8>, anyhow::Result<()>), failures: &mut Vec<String>) {
    match result {
        Ok(()) => println!("{}", show(&key)),
        Err(err) => failures.push(format!("Couldn't restore {}: {err:#}", show(&key))),
    }
}

async fn restore_one(
    clients: &Clients,
    dir: &Path,
    dest: &str,
    key: &[u8],
    part_size: u64,
) -> anyhow::Result<()> {
    let files = Files::of(dir, &paths::encode(key)?);
    upload(clients, dest, key, &files, part_size).await
}

/// Uploads one object (or version) from its saved files, as the owner its ACL names, and
/// sets that ACL.
async fn upload(
    clients: &Clients,
    dest: &str,
    key: &[u8],
    files: &Files,
    part_size: u64,
) -> anyhow::Result<()> {
    let key = utf8_key(key)?;
    let data = &files.data;
    let meta = match std::fs::read(&files.meta) {
        Ok(bytes) => meta::parse(&bytes).context("reading its metadata file")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RestoreMeta::default(),
        Err(e) => return Err(e).context("reading its metadata file"),
    };
    let acl_text = std::fs::read_to_string(&files.acl)
        .with_context(|| format!("reading its ACL file {}", files.acl.display()))?;
    let owner = xml::acl_owner(&acl_text).context("reading its ACL file")?;
    let policy = xml::acl_policy(&acl_text).context("reading its ACL file")?;
    let s3 = clients.for_owner(&owner).await?;
    let size = std::fs::metadata(data)
        .with_context(|| format!("reading {}", data.display()))?
        .len();
    if size > part_size {
        upload_multipart(&s3, dest, key, data, size, part_size, &meta).await?;
    } else {
        with_meta!(s3.put_object(), &meta)
            .bucket(dest)
            .key(key)
            .body(ByteStream::from_path(data).await?)
            .send()
            .await
            .map_err(client::failed("uploading"))?;
    }
    s3.put_object_acl()
        .bucket(dest)
        .key(key)
        .access_control_policy(policy)
        .send()
        .await
        .map_err(client::failed("setting its ACL"))?;
    Ok(())
}

/// Replays one key's history, oldest first: each non-current version uploaded, each delete
/// marker a DELETE (which makes a delete marker in a versioned bucket). The current version
/// comes from the main layout afterwards.
async fn replay_history(
    clients: &Clients,
    bucket_owner: &str,
    dest: &str,
    key: &[u8],
    kdir: &Path,
    entries: &[versions::Entry],
    part_size: u64,
) -> anyhow::Result<()> {
    for entry in entries.iter().filter(|e| !e.current) {
        if entry.delete_marker {
            let name = utf8_key(key)?;
            let s3 = clients.for_owner(bucket_owner).await?;
            s3.delete_object()
                .bucket(dest)
                .key(name)
                .send()
                .await
                .map_err(client::failed("adding a delete marker"))?;
        } else {
            let files = versions::version_files(kdir, entry).map_err(anyhow::Error::msg)?;
            upload(clients, dest, key, &files, part_size)
                .await
                .with_context(|| format!("version {}", entry.version))?;
        }
    }
    Ok(())
}

/// Uploads `data` in parts of `part_size` (raised so that at most 10,000 parts are needed),
/// aborting the upload on any failure so that no parts are left behind.
async fn upload_multipart(
    s3: &Client,
    dest: &str,
    key: &str,
    data: &Path,
    size: u64,
    part_size: u64,
    meta: &RestoreMeta,
) -> anyhow::Result<()> {
    let part_size = part_size.max(size.div_ceil(MAX_PARTS));
    let upload = with_meta!(s3.create_multipart_upload(), meta)
        .bucket(dest)
        .key(key)
        .send()
        .await
        .map_err(client::failed("starting a multipart upload"))?;
    let upload_id = upload
        .upload_id()
        .ok_or_else(|| anyhow!("the server gave no upload id"))?
        .to_string();
    let result = async {
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let length = part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(data)
                .offset(offset)
                .length(Length::Exact(length))
                .build()
                .await?;
            let part = s3
                .upload_part()
                .bucket(dest)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(client::failed(format!("uploading part {number}")))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .build(),
            );
            offset += length;
            number += 1;
        }
        s3.complete_multipart_upload()
            .bucket(dest)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(client::failed("completing the multipart upload"))?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = s3
            .abort_multipart_upload()
            .bucket(dest)
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    result
}

/// The key as S3 requests name it. A key that is not UTF-8 (saved by another tool) cannot be
/// restored through S3: its files stay in the backup, to be uploaded by hand under a new name.
fn utf8_key(key: &[u8]) -> anyhow::Result<&str> {
    std::str::from_utf8(key).map_err(|_| {
        anyhow!(
            "the key is not UTF-8, and an S3 request can only name a UTF-8 key: upload its \
             saved files by hand under a UTF-8 name"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_finds_data_files_in_sorted_order_and_skips_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        for f in [
            "bucket_A",
            "b_k",
            "b_m",
            "a_d/z_k",
            "a_d/_k",
            ".backup-tmp1-00000000",
            "x_t",
        ] {
            let p = tmp.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let keys = walk(tmp.path()).unwrap();
        assert_eq!(keys, vec![b"a/".to_vec(), b"a/z".to_vec(), b"b".to_vec()]);
    }
}
