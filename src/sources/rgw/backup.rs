//! One bucket backed up (github-rgw-rbd.md §2.5, §2.6): list, fetch what the listing says
//! changed (at most `rgw-threads` requests at once), save the bucket ACL and CORS, then collect
//! the files of keys no longer listed.
//!
//! Crash safety: every file is replaced atomically (temp + fsync + rename, only when its
//! content differs), and the `_k` file's mtime, set last to the object's Last-Modified, is what
//! marks a key as done: a key interrupted anywhere before that is fetched again next time.
//!
//! Errors on one key (BUG-2 fixed) never remove its files: the last good copy stays and the
//! unit fails at the end, naming every such key. A key that vanished between the listing and
//! its GET (404, BUG-3) counts as deleted. Deletions are decided only after a complete listing.

use super::client::{self, RawBody};
use super::gc;
use super::listing::{self, Local, Plan, Scrub};
use super::meta::ObjectMeta;
use super::paths::{self, BUCKET_ACL, BUCKET_CORS, Code, KeyPaths};
use crate::util::update_file::{self, Flush};
use crate::util::{atomic_file, file_time};
use anyhow::{Context, anyhow};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::DateTimeFormat;
use md5::Digest;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;
use tokio::task::{JoinSet, block_in_place};

/// What one bucket's backup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Objects in the listing.
    pub listed: u64,
    /// Keys whose files changed.
    pub updated: u64,
    /// Object bytes downloaded.
    pub bytes: u64,
    /// Keys gone between listing and GET.
    pub vanished: u64,
    /// Files removed by garbage collection.
    pub deleted_files: u64,
    /// Differences a scrub found and repaired (D6).
    pub scrub_mismatches: u64,
    /// List requests sent.
    pub list_requests: u64,
    /// Per-key and bucket-level failures; any makes the unit fail.
    pub errors: Vec<String>,
    /// Warnings for the run summary.
    pub warnings: Vec<String>,
}

/// How one key ended.
pub(super) enum KeyOutcome {
    /// Nothing changed on disk.
    Unchanged,
    /// Some file changed; `mismatch` when only a scrub could see it.
    Updated { mismatch: bool },
    /// 404 after the listing: the object was deleted meanwhile.
    Vanished,
}

/// Keys being written (fsynced) at once, per request slot: fsyncs are latency-bound, and
/// concurrent ones share journal commits.
const WRITE_SLOTS_PER_THREAD: usize = 4;

/// What every fetch of one bucket shares.
pub(super) struct Ctx {
    /// The S3 client.
    pub client: Client,
    /// The bucket.
    pub bucket: String,
    /// The bucket directory.
    pub dir: PathBuf,
    /// Object bytes received so far.
    pub bytes: AtomicU64,
    /// Slots for the file-writing half of a fetch (fsyncs), taken once its requests are done,
    /// so that writing one key overlaps the requests of the next.
    pub write_slots: Semaphore,
}

/// Where one object (or one version of it) is stored: absolute paths.
#[derive(Debug, Clone)]
pub struct Files {
    /// The directory holding the three files.
    pub dir: PathBuf,
    /// `_k`.
    pub data: PathBuf,
    /// `_m`.
    pub meta: PathBuf,
    /// `_a`.
    pub acl: PathBuf,
}

impl Files {
    /// The files of `paths` under the bucket directory `root`.
    pub fn of(root: &Path, paths: &KeyPaths) -> Files {
        Files {
            dir: root.join(&paths.dir),
            data: root.join(paths.file(Code::Data)),
            meta: root.join(paths.file(Code::Meta)),
            acl: root.join(paths.file(Code::Acl)),
        }
    }

    /// What the backup holds there.
    pub fn local(&self) -> Local {
        Local::read(&self.data, &self.meta, &self.acl)
    }
}

/// At most `threads` keys fetched at once; results collected as they finish.
pub(super) struct Pool {
    semaphore: Arc<Semaphore>,
    /// Keys between their first request and their last write: bounds the bodies held in
    /// memory while waiting for a write slot (a request slot is given back before writing).
    in_flight: Arc<Semaphore>,
    tasks: JoinSet<(Vec<u8>, Result<KeyOutcome, String>)>,
}

impl Pool {
    pub(super) fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        Pool {
            semaphore: Arc::new(Semaphore::new(threads)),
            in_flight: Arc::new(Semaphore::new(threads * (1 + WRITE_SLOTS_PER_THREAD))),
            tasks: JoinSet::new(),
        }
    }

    /// Starts one fetch once a slot is free; returns the results that are ready.
    pub(super) async fn spawn(
        &mut self,
        ctx: &Arc<Ctx>,
        job: Job,
    ) -> anyhow::Result<Vec<(Vec<u8>, Result<KeyOutcome, String>)>> {
        let in_flight = self.in_flight.clone().acquire_owned().await?;
        let permit = self.semaphore.clone().acquire_owned().await?;
        let ctx = ctx.clone();
        self.tasks.spawn(async move {
            let outcome = fetch(&ctx, &job, permit).await;
            drop(in_flight);
            (job.key, outcome)
        });
        let mut ready = Vec::new();
        while let Some(done) = self.tasks.try_join_next() {
            ready.push(done?);
        }
        Ok(ready)
    }

    /// Waits for every fetch still running.
    pub(super) async fn finish(
        mut self,
    ) -> anyhow::Result<Vec<(Vec<u8>, Result<KeyOutcome, String>)>> {
        let mut done = Vec::new();
        while let Some(result) = self.tasks.join_next().await {
            done.push(result?);
        }
        Ok(done)
    }
}

/// One object or version to fetch.
pub(super) struct Job {
    /// The key as listed (bytes).
    pub key: Vec<u8>,
    /// The key as requested.
    pub name: String,
    /// The version to GET, if not the current one.
    pub version: Option<String>,
    /// Where it goes.
    pub files: Files,
    /// Last-Modified from the listing, whole seconds.
    pub mtime: i64,
    /// What to fetch.
    pub plan: Plan,
}

/// Backs up `bucket` into `dir` (the unit directory `ROOT/rgw/<bucket>`, created if needed),
/// with every version and delete marker when `versions` is set.
/// Returns `Err` only when the run could not list the bucket at all; per-key and later failures
/// are in [`Summary::errors`].
pub async fn backup_bucket(
    client: &Client,
    bucket: &str,
    dir: &Path,
    scrub: Scrub,
    threads: usize,
    versions: bool,
) -> anyhow::Result<Summary> {
    client
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| {
            // The advice is about the server's answer; a transport failure says its own.
            let advice = if client::error_status(&e).is_some() {
                " (check the bucket name and that the credentials may read it)"
            } else {
                ""
            };
            anyhow!(
                "bucket {bucket} is not accessible: {}{advice}",
                client::describe(&e)
            )
        })?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let started = jiff::Timestamp::now().as_second();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        bucket: bucket.to_string(),
        dir: dir.to_path_buf(),
        bytes: AtomicU64::new(0),
        write_slots: Semaphore::new(threads.max(1) * WRITE_SLOTS_PER_THREAD),
    });
    let mut summary = Summary::default();
    let mut valid: HashSet<Vec<u8>> = HashSet::new();
    let mut pool = Pool::new(threads);

    let mut token = None;
    let listing: anyhow::Result<()> = loop {
        summary.list_requests += 1;
        let page = match listing::page(client, bucket, token.take()).await {
            Ok(page) => page,
            Err(err) => break Err(err),
        };
        for listed in page.objects {
            summary.listed += 1;
            valid.insert(listed.key.clone());
            let paths = match paths::encode(&listed.key) {
                Ok(p) => p,
                Err(e) => {
                    summary
                        .errors
                        .push(format!("{}: cannot be stored: {e}", show(&listed.key)));
                    continue;
                }
            };
            let Ok(key) = String::from_utf8(listed.key.clone()) else {
                summary
                    .errors
                    .push(format!("{}: {NOT_UTF8}", show(&listed.key)));
                continue;
            };
            let files = Files::of(dir, &paths);
            let plan = listing::plan(&listed, &files.local(), scrub);
            if !plan.any() {
                continue;
            }
            let job = Job {
                key: listed.key,
                name: key,
                version: None,
                files,
                mtime: listed.mtime,
                plan,
            };
            for done in pool.spawn(&ctx, job).await? {
                record(done, &mut summary, &mut valid);
            }
        }
        match page.next {
            Some(next) => token = Some(next),
            None => break Ok(()),
        }
    };
    for done in pool.finish().await? {
        record(done, &mut summary, &mut valid);
    }

    if let Err(err) = bucket_files(&ctx).await {
        summary.errors.push(format!("{err:#}"));
    }
    let versions_ok = if versions {
        match super::versions::backup(&ctx, scrub, threads, started, &mut summary).await {
            Ok(()) => true,
            Err(err) => {
                summary.errors.push(format!("{err:#}"));
                false
            }
        }
    } else {
        true
    };
    summary.bytes = ctx.bytes.load(Ordering::Relaxed);
    match listing {
        Ok(()) => {
            // The versions tree has its own collection; kept as is when it could not run.
            let skip = (versions || !versions_ok).then_some(super::versions::VERSIONS_DIR);
            let collected = block_in_place(|| {
                gc::collect(dir, &valid, started, skip, &mut |rel| {
                    println!("Deleting {}", show(rel.as_os_str().as_encoded_bytes()))
                })
            })
            .with_context(|| format!("collecting deleted objects in {}", dir.display()))?;
            summary.deleted_files = collected.files;
            if collected.fresh > 0 {
                let text = format!(
                    "{} file(s) written during this run were deleted again: their objects \
                     vanished from the bucket meanwhile",
                    collected.fresh
                );
                tracing::warn!("{text}");
                summary.warnings.push(text);
            }
        }
        Err(err) => {
            summary.errors.push(format!(
                "{err:#}; the listing is incomplete, so nothing was deleted from the backup"
            ));
        }
    }
    Ok(summary)
}

/// Folds one finished key into the summary.
pub(super) fn record_outcome(done: (Vec<u8>, Result<KeyOutcome, String>), summary: &mut Summary) {
    let mut ignored = HashSet::new();
    record(done, summary, &mut ignored);
}

fn record(
    (key, outcome): (Vec<u8>, Result<KeyOutcome, String>),
    summary: &mut Summary,
    valid: &mut HashSet<Vec<u8>>,
) {
    match outcome {
        Ok(KeyOutcome::Unchanged) => {}
        Ok(KeyOutcome::Updated { mismatch, .. }) => {
            summary.updated += 1;
            println!("{}", show(&key));
            if mismatch {
                summary.scrub_mismatches += 1;
                let text = format!(
                    "scrub: {} differed from the server although its listing had not changed \
                     (repaired)",
                    show(&key)
                );
                tracing::warn!("{text}");
                summary.warnings.push(text);
            }
        }
        Ok(KeyOutcome::Vanished) => {
            summary.vanished += 1;
            valid.remove(&key);
        }
        Err(message) => summary
            .errors
            .push(format!("Couldn't fetch {}: {message}", show(&key))),
    }
}

/// A key for messages: control characters and invalid UTF-8 escaped.
pub fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).escape_debug().to_string()
}

/// Why a listed key that is not UTF-8 is skipped, and what to do about it.
pub const NOT_UTF8: &str = "the key is not UTF-8, and an S3 request can only name a UTF-8 \
     key: it is not backed up; ask its owner to store it under a UTF-8 key";

/// What one request of a key found: the object, or nothing any more (404 after the listing).
enum Found<T> {
    Here(T),
    Gone,
}

/// Fetches what the job's plan says for one key (or version) and writes its files. The data
/// and ACL requests go out together: on a high-latency server the key then costs one round
/// trip, not two. The request slot `permit` is given back before the files are committed.
async fn fetch(
    ctx: &Ctx,
    job: &Job,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<KeyOutcome, String> {
    let data = async {
        match job.plan.data {
            true => fetch_data(ctx, job).await.map(Some),
            false => Ok(None),
        }
    };
    let acl = async {
        match job.plan.acl {
            true => fetch_acl(ctx, job).await.map(Some),
            false => Ok(None),
        }
    };
    let (data, acl) = tokio::join!(data, acl);
    drop(permit);
    let data = match data? {
        Some(Found::Gone) => return Ok(KeyOutcome::Vanished),
        Some(Found::Here(got)) => Some(got),
        None => None,
    };
    let acl = match acl? {
        Some(Found::Gone) => return Ok(KeyOutcome::Vanished),
        Some(Found::Here(body)) => Some(body),
        None => None,
    };
    let _writing = ctx.write_slots.acquire().await.map_err(|e| e.to_string())?;
    let files = job.files.clone();
    let changed = tokio::task::spawn_blocking(move || write_files(&files, data, acl))
        .await
        .map_err(|e| e.to_string())??;
    Ok(if changed {
        KeyOutcome::Updated {
            mismatch: !job.plan.stale,
        }
    } else {
        KeyOutcome::Unchanged
    })
}

/// An object's data as received: in memory when small, else already streamed into an
/// uncommitted update of `_k`.
enum Body {
    Small(Vec<u8>),
    Streamed(update_file::UpdateFile),
}

/// What a GET of the object gave: its data, the `_m` bytes and Last-Modified (whole seconds).
type Got = (Body, Vec<u8>, i64);

/// Writes one key's files (on a blocking thread): each replaced only if it differs, fsynced and
/// renamed; `_k` gets its mtime last (the key's completion mark); the directory is fsynced once.
/// Returns whether any file changed.
fn write_files(files: &Files, data: Option<Got>, acl: Option<Vec<u8>>) -> Result<bool, String> {
    let replace = |path: &Path, bytes: &[u8]| {
        let mut update = update_file::UpdateFile::new(path).flush(Flush::File);
        update
            .write_all(bytes)
            .and_then(|()| update.commit())
            .map_err(|e| io_error("writing", path, e))
    };
    let mut changed = false;
    let mut mtime = None;
    if let Some((body, meta, t)) = data {
        changed |= match body {
            Body::Small(bytes) => replace(&files.data, &bytes)?,
            Body::Streamed(update) => update
                .commit()
                .map_err(|e| io_error("writing", &files.data, e))?,
        };
        changed |= replace(&files.meta, &meta)?;
        mtime = Some(t);
    }
    if let Some(body) = acl {
        changed |= replace(&files.acl, &body)?;
    }
    if let Some(t) = mtime {
        file_time::set_mtime(&files.meta, t).map_err(|e| e.to_string())?;
        file_time::set_mtime(&files.data, t).map_err(|e| e.to_string())?;
    }
    if changed {
        atomic_file::sync_dir(&files.dir).map_err(|e| io_error("syncing", &files.dir, e))?;
    }
    Ok(changed)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Objects up to this size are received in memory and written in one go.
const SMALL_OBJECT: i64 = 1 << 20;

/// GETs the object (verifying a simple ETag's MD5): in memory when small, else streamed into
/// an uncommitted update of `_k`.
async fn fetch_data(ctx: &Ctx, job: &Job) -> Result<Found<Got>, String> {
    let files = &job.files;
    let out = match ctx
        .client
        .get_object()
        .bucket(&ctx.bucket)
        .key(&job.name)
        .set_version_id(job.version.clone())
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if client::error_status(&e) == Some(404) => return Ok(Found::Gone),
        Err(e) => return Err(client::describe(&e)),
    };
    // The GET's own date: the data written is that version, whatever the listing saw.
    let mtime = out.last_modified().map(|t| t.secs()).unwrap_or(job.mtime);
    let meta = object_meta(&out);
    let expected_md5 = out
        .e_tag()
        .map(|e| e.trim_matches('"').to_ascii_lowercase())
        .filter(|e| e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()));
    let small = out.content_length().is_some_and(|n| n <= SMALL_OBJECT);
    let mut body = if small {
        Body::Small(Vec::new())
    } else {
        Body::Streamed(update_file::UpdateFile::new(&files.data).flush(Flush::File))
    };
    let mut md5 = md5::Md5::new();
    let mut stream = out.body;
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading the object body: {e}"))?;
        md5.update(&chunk);
        received += chunk.len() as u64;
        match &mut body {
            Body::Small(bytes) => bytes.extend_from_slice(&chunk),
            Body::Streamed(update) => block_in_place(|| update.write_all(&chunk))
                .map_err(|e| io_error("writing", &files.data, e))?,
        }
    }
    ctx.bytes.fetch_add(received, Ordering::Relaxed);
    if let Some(expected) = expected_md5 {
        let got: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if got != expected {
            // `update` is dropped uncommitted: the old file stays.
            return Err(format!(
                "the data received has MD5 {got}, the server's ETag says {expected}; \
                 kept the previous copy, the next run tries again"
            ));
        }
    }
    Ok(Found::Here((body, meta.file_bytes(), mtime)))
}

/// GETs the object's ACL, raw.
async fn fetch_acl(ctx: &Ctx, job: &Job) -> Result<Found<Vec<u8>>, String> {
    let raw = RawBody::default();
    let result = ctx
        .client
        .get_object_acl()
        .bucket(&ctx.bucket)
        .key(&job.name)
        .set_version_id(job.version.clone())
        .customize()
        .interceptor(raw.clone())
        .send()
        .await;
    match result {
        Ok(_) => {}
        Err(e) if client::error_status(&e) == Some(404) => return Ok(Found::Gone),
        Err(e) => return Err(format!("reading its ACL: {}", client::describe(&e))),
    }
    raw.take()
        .map(Found::Here)
        .ok_or_else(|| "the ACL answer had no body to keep".to_string())
}

/// The `_m` content of a GET answer.
fn object_meta(out: &aws_sdk_s3::operation::get_object::GetObjectOutput) -> ObjectMeta {
    let mut meta = ObjectMeta::default();
    let headers = [
        ("Cache-Control", out.cache_control()),
        ("Content-Disposition", out.content_disposition()),
        ("Content-Encoding", out.content_encoding()),
        ("Content-Language", out.content_language()),
        ("Content-Type", out.content_type()),
    ];
    for (name, value) in headers {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            meta.headers.insert(name, v.to_string());
        }
    }
    meta.etag = out.e_tag().map(str::to_string);
    meta.last_modified = out
        .last_modified()
        .and_then(|t| t.fmt(DateTimeFormat::HttpDate).ok());
    if let Some(user) = out.metadata() {
        meta.user = user.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    meta
}

/// `bucket_A` and `bucket_C` (removed when the bucket has no CORS configuration).
async fn bucket_files(ctx: &Ctx) -> anyhow::Result<()> {
    let bucket = &ctx.bucket;
    let raw = RawBody::default();
    ctx.client
        .get_bucket_acl()
        .bucket(bucket)
        .customize()
        .interceptor(raw.clone())
        .send()
        .await
        .map_err(client::failed(format!(
            "reading the ACL of bucket {bucket}"
        )))?;
    let acl = raw
        .take()
        .ok_or_else(|| anyhow!("the bucket ACL answer had no body"))?;
    let acl_path = ctx.dir.join(BUCKET_ACL);
    block_in_place(|| update_file::update_file(&acl_path, &acl))
        .with_context(|| format!("writing {}", acl_path.display()))?;

    let cors_path = ctx.dir.join(BUCKET_CORS);
    let raw = RawBody::default();
    let cors = ctx
        .client
        .get_bucket_cors()
        .bucket(bucket)
        .customize()
        .interceptor(raw.clone())
        .send()
        .await;
    match cors {
        Ok(_) => {
            let body = raw
                .take()
                .ok_or_else(|| anyhow!("the bucket CORS answer had no body"))?;
            block_in_place(|| update_file::update_file(&cors_path, &body))
                .with_context(|| format!("writing {}", cors_path.display()))?;
        }
        Err(e) if client::error_status(&e) == Some(404) => match std::fs::remove_file(&cors_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", cors_path.display()));
            }
            _ => {}
        },
        Err(e) => {
            return Err(client::failed(format!(
                "reading the CORS configuration of bucket {bucket}"
            ))(e));
        }
    }
    Ok(())
}
