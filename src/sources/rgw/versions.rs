//! Every version and delete marker of a versioned bucket (`rgw-versions`, new; issue 5 item 5).
//!
//! The current objects stay in the original's layout, so nothing changes for restores that
//! ignore versions, nor for the original tool. The history lives beside it, in `bucket_V/`
//! (no key directory can be named so: those end in `_d`), one directory per key with versions,
//! named like the key's data file with `_v` instead of `_k`:
//!
//! * `index_i`: JSON, the key's versions and delete markers **oldest first** (the restore order):
//!   `[{"version": ID, "delete_marker": false, "current": false, "last_modified": SECS,
//!   "size": N}, ...]`; the current version is listed (`current: true`) but stored in the main
//!   layout;
//! * `<escaped version id>_k`, `_m`, `_a`: each non-current version's data, metadata and ACL,
//!   in the formats of the main layout. Version ids are escaped to `[A-Za-z0-9_-]` and `%XX`.
//!
//! Versions never change, so a version whose files are complete is never fetched again; the
//! tree is collected against the complete version listing like the main one.

use super::backup::{Ctx, Files, Job, NOT_UTF8, Pool, Summary, record_outcome, show};
use super::client;
use super::gc;
use super::listing::{Local, Plan, Scrub, decode_key};
use super::paths::{self, Code, KeyError};
use crate::util::update_file;
use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::block_in_place;

/// The versions tree at the top of the bucket directory.
pub const VERSIONS_DIR: &str = "bucket_V";
/// The per-key index file.
pub const INDEX: &str = "index_i";
/// Longest version id stored (radosgw's are 32 characters).
const MAX_VERSION_ID: usize = 200;

/// One version or delete marker of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The version id (`null` for the version from before versioning was enabled).
    pub version: String,
    /// A delete marker rather than data.
    #[serde(default)]
    pub delete_marker: bool,
    /// The current version (stored in the main layout).
    #[serde(default)]
    pub current: bool,
    /// Last-Modified, whole epoch seconds.
    pub last_modified: i64,
    /// Size in bytes (0 for delete markers).
    #[serde(default)]
    pub size: u64,
}

/// A version id as a file name stem (`<escaped>_`).
pub fn version_stem(id: &str) -> Result<String, String> {
    if id.is_empty() || id.len() > MAX_VERSION_ID {
        return Err(format!(
            "version id of {} bytes cannot be stored (1..={MAX_VERSION_ID})",
            id.len()
        ));
    }
    let mut out = String::with_capacity(id.len() + 1);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('_');
    Ok(out)
}

/// The directory of `key`'s versions, relative to the bucket directory.
pub fn key_dir(key: &[u8]) -> Result<PathBuf, KeyError> {
    let mut name = paths::encode(key)?
        .file(Code::Data)
        .into_os_string()
        .into_vec();
    name.pop();
    name.push(b'v');
    Ok(Path::new(VERSIONS_DIR).join(OsString::from_vec(name)))
}

/// The key whose versions directory is `rel` (relative to [`VERSIONS_DIR`]).
pub fn key_of_dir(rel: &Path) -> Option<Vec<u8>> {
    let mut bytes = rel.as_os_str().as_bytes().to_vec();
    if bytes.pop()? != b'v' {
        return None;
    }
    bytes.push(b'k');
    match paths::decode(Path::new(std::ffi::OsStr::from_bytes(&bytes)))? {
        (key, Code::Data) => Some(key),
        _ => None,
    }
}

/// The files of version `entry` of a key whose versions directory is `kdir` (absolute).
pub fn version_files(kdir: &Path, entry: &Entry) -> Result<Files, String> {
    let stem = version_stem(&entry.version)?;
    Ok(Files {
        dir: kdir.to_path_buf(),
        data: kdir.join(format!("{stem}k")),
        meta: kdir.join(format!("{stem}m")),
        acl: kdir.join(format!("{stem}a")),
    })
}

/// One listed entry with what orders it: Last-Modified in nanoseconds and the listing position
/// (newest first within a key).
type Listed = (Entry, i128, usize);

/// Sorts one key's entries oldest first; the current entry always ends the list.
fn order(mut entries: Vec<Listed>) -> Vec<Entry> {
    entries.sort_by_key(|(e, nanos, pos)| (e.current, *nanos, std::cmp::Reverse(*pos)));
    entries.into_iter().map(|(e, _, _)| e).collect()
}

/// Lists every version and delete marker of the bucket, by key, oldest first.
async fn list_all(
    ctx: &Ctx,
    summary: &mut Summary,
) -> anyhow::Result<BTreeMap<Vec<u8>, Vec<Entry>>> {
    let bucket = &ctx.bucket;
    let mut raw: BTreeMap<Vec<u8>, Vec<Listed>> = BTreeMap::new();
    let mut position = 0usize;
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        summary.list_requests += 1;
        let out = ctx
            .client
            .list_object_versions()
            .bucket(bucket)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(client::failed(format!(
                "listing the versions of bucket {bucket}"
            )))?;
        let mut add = |key: Option<&str>,
                       time: Option<&aws_sdk_s3::primitives::DateTime>,
                       version: Option<&str>,
                       delete_marker: bool,
                       current: bool,
                       size: i64| {
            if let Some(key) = key {
                position += 1;
                let entry = Entry {
                    version: version.unwrap_or("null").to_string(),
                    delete_marker,
                    current,
                    last_modified: time.map(|t| t.secs()).unwrap_or(0),
                    size: u64::try_from(size).unwrap_or(0),
                };
                let nanos = time.map(|t| t.as_nanos()).unwrap_or(0);
                raw.entry(decode_key(key))
                    .or_default()
                    .push((entry, nanos, position));
            }
        };
        for v in out.versions() {
            let current = v.is_latest() == Some(true);
            let size = v.size().unwrap_or(0);
            add(
                v.key(),
                v.last_modified(),
                v.version_id(),
                false,
                current,
                size,
            );
        }
        for m in out.delete_markers() {
            add(m.key(), m.last_modified(), m.version_id(), true, false, 0);
        }
        if out.is_truncated() != Some(true) {
            break;
        }
        key_marker = out.next_key_marker().map(str::to_string);
        version_marker = out.next_version_id_marker().map(str::to_string);
        if key_marker.is_none() {
            return Err(anyhow!(
                "listing the versions of bucket {bucket}: truncated without a next marker"
            ));
        }
    }
    Ok(raw.into_iter().map(|(k, v)| (k, order(v))).collect())
}

/// Backs up the history of every key (see the module doc) and collects the versions tree.
pub(super) async fn backup(
    ctx: &Arc<Ctx>,
    scrub: Scrub,
    threads: usize,
    started: i64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let all = list_all(ctx, summary).await?;
    let mut keep: HashSet<PathBuf> = HashSet::new();
    let mut indexes = Vec::new();
    let mut pool = Pool::new(threads);
    for (key, entries) in all {
        if entries.iter().all(|e| e.current) {
            continue; // only a current version: the main layout has it
        }
        let rel = match key_dir(&key) {
            Ok(rel) => rel,
            Err(e) => {
                summary
                    .errors
                    .push(format!("{}: versions cannot be stored: {e}", show(&key)));
                continue;
            }
        };
        let Ok(name) = String::from_utf8(key.clone()) else {
            summary.errors.push(format!("{}: {NOT_UTF8}", show(&key)));
            continue;
        };
        let kdir = ctx.dir.join(&rel);
        keep.insert(rel.join(INDEX));
        for entry in entries.iter().filter(|e| !e.current && !e.delete_marker) {
            let files = match version_files(&kdir, entry) {
                Ok(files) => files,
                Err(e) => {
                    summary.errors.push(format!("{}: {e}", show(&key)));
                    continue;
                }
            };
            for f in [&files.data, &files.meta, &files.acl] {
                keep.insert(f.strip_prefix(&ctx.dir).expect("inside").to_path_buf());
            }
            let Local { data, meta, acl } = files.local();
            let complete = data == Some((entry.size, entry.last_modified)) && meta && acl;
            let plan = Plan {
                data: !complete || scrub == Scrub::All,
                acl: !complete || scrub != Scrub::None,
                stale: !complete,
            };
            if !plan.any() {
                continue;
            }
            let job = Job {
                key: key.clone(),
                name: name.clone(),
                version: Some(entry.version.clone()),
                files,
                mtime: entry.last_modified,
                plan,
            };
            for done in pool.spawn(ctx, job).await? {
                record_outcome(done, summary);
            }
        }
        indexes.push((kdir.join(INDEX), serde_json::to_vec(&entries)?));
    }
    for done in pool.finish().await? {
        record_outcome(done, summary);
    }
    // Indexes last: a key's index never names a version before its fetch was attempted.
    for (path, json) in indexes {
        block_in_place(|| update_file::update_file(&path, &json))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let root = ctx.dir.join(VERSIONS_DIR);
    let collected = block_in_place(|| {
        gc::collect_with(
            &root,
            &|rel| keep.contains(&Path::new(VERSIONS_DIR).join(rel)),
            started,
            &mut |rel| {
                println!(
                    "Deleting {VERSIONS_DIR}/{}",
                    show(rel.as_os_str().as_bytes())
                )
            },
        )
    })
    .with_context(|| format!("collecting old versions in {}", root.display()))?;
    summary.deleted_files += collected.files;
    Ok(())
}

/// One key's saved history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The key.
    pub key: Vec<u8>,
    /// Its versions directory (absolute).
    pub dir: PathBuf,
    /// Its versions and delete markers, oldest first.
    pub entries: Vec<Entry>,
}

/// Every key with an index under `dir`'s versions tree, in sorted walk order. A missing tree
/// has none.
pub fn read_indexes(dir: &Path) -> anyhow::Result<Vec<History>> {
    fn visit(root: &Path, rel: &Path, out: &mut Vec<History>) -> anyhow::Result<()> {
        let here = root.join(rel);
        let mut entries: Vec<_> = std::fs::read_dir(&here)
            .with_context(|| format!("reading {}", here.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let child = rel.join(entry.file_name());
            let index = root.join(&child).join(INDEX);
            if let Some(key) = key_of_dir(&child)
                && index.is_file()
            {
                let list: Vec<Entry> = serde_json::from_slice(&std::fs::read(&index)?)
                    .with_context(|| format!("reading {}", index.display()))?;
                out.push(History {
                    key,
                    dir: root.join(&child),
                    entries: list,
                });
            }
            visit(root, &child, out)?;
        }
        Ok(())
    }
    let root = dir.join(VERSIONS_DIR);
    let mut out = Vec::new();
    if root.is_dir() {
        visit(&root, Path::new(""), &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, t: i64, marker: bool, current: bool) -> Entry {
        Entry {
            version: version.into(),
            delete_marker: marker,
            current,
            last_modified: t,
            size: 1,
        }
    }

    #[test]
    fn version_ids_escape_to_safe_names() {
        assert_eq!(version_stem("abcXYZ-09_").unwrap(), "abcXYZ-09__");
        assert_eq!(version_stem("..").unwrap(), "%2E%2E_");
        assert_eq!(version_stem("a/b").unwrap(), "a%2Fb_");
        assert!(version_stem("").is_err());
        assert!(version_stem(&"x".repeat(201)).is_err());
    }

    #[test]
    fn key_directories_round_trip_and_cannot_meet_key_directories() {
        for key in ["a", "a/b", "/x", "dir/", "a//b"] {
            let rel = key_dir(key.as_bytes()).unwrap();
            assert!(rel.starts_with(VERSIONS_DIR), "{rel:?}");
            let inner = rel.strip_prefix(VERSIONS_DIR).unwrap();
            assert_eq!(key_of_dir(inner), Some(key.as_bytes().to_vec()), "{key}");
        }
        assert_eq!(key_dir(b"a/b").unwrap(), Path::new("bucket_V/a_d/b_v"));
        assert_eq!(key_of_dir(Path::new("a_d")), None);
    }

    #[test]
    fn entries_sort_oldest_first_with_the_current_one_last() {
        // Listing order is newest first within a key.
        let listed = vec![
            (entry("v3", 30, false, true), 30, 1),
            (entry("v2b", 20, false, false), 20, 2),
            (entry("v2a", 20, false, false), 20, 3),
            (entry("v1", 10, false, false), 10, 4),
            (entry("m1", 15, true, false), 15, 5),
        ];
        let names: Vec<String> = order(listed).into_iter().map(|e| e.version).collect();
        assert_eq!(names, ["v1", "m1", "v2a", "v2b", "v3"]);
    }
}
