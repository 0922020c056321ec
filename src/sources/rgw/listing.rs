//! Listing a bucket and deciding, from the listing alone, what each key needs
//! (github-rgw-rbd.md §2.5, §2.6): an object whose size and Last-Modified (whole seconds)
//! match its `_k` file, and whose `_m` and `_a` files exist, costs no request at all.
//!
//! Listings use ListObjectsV2 with `encoding-type=url` (BUG-5: keys with XML-invalid control
//! characters would otherwise break the parser), 1,000 keys a page.

use super::client;
use anyhow::anyhow;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::EncodingType;
use percent_encoding::percent_decode_str;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// How much of an unchanged object a run re-reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scrub {
    /// Nothing: the listing decides.
    None,
    /// Every object ACL (`-A`).
    Acls,
    /// Everything: data, metadata and ACL of every object (`-c`; wins over `-A`).
    All,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key, url-decoded.
    pub key: Vec<u8>,
    /// Size in bytes.
    pub size: u64,
    /// Last-Modified in whole epoch seconds.
    pub mtime: i64,
}

/// What the backup holds for one key, from a few `stat`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Local {
    /// Size and mtime (seconds) of `_k`, if it exists.
    pub data: Option<(u64, i64)>,
    /// Whether `_m` exists.
    pub meta: bool,
    /// Whether `_a` exists.
    pub acl: bool,
}

impl Local {
    /// Reads the state of the files `data`, `meta` and `acl` (absolute paths).
    pub fn read(data: &Path, meta: &Path, acl: &Path) -> Local {
        let regular = |p: &Path| std::fs::symlink_metadata(p).ok().filter(|m| m.is_file());
        Local {
            data: regular(data).map(|m| (m.len(), m.mtime())),
            meta: regular(meta).is_some(),
            acl: regular(acl).is_some(),
        }
    }
}

/// What to fetch for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// GET the object (data and metadata).
    pub data: bool,
    /// GET its ACL.
    pub acl: bool,
    /// The listing alone would have fetched the data: a difference found otherwise is a scrub
    /// mismatch (D6).
    pub stale: bool,
}

impl Plan {
    /// Whether any request is needed.
    pub fn any(&self) -> bool {
        self.data || self.acl
    }
}

/// Decides what `listed` needs given the backup's `local` state and the scrub level.
pub fn plan(listed: &Listed, local: &Local, scrub: Scrub) -> Plan {
    let stale = local.data != Some((listed.size, listed.mtime)) || !local.meta;
    let data = stale || scrub == Scrub::All;
    Plan {
        data,
        acl: data || scrub != Scrub::None || !local.acl,
        stale: stale || !local.acl,
    }
}

/// Url-decodes a listed key (`encoding-type=url`).
pub fn decode_key(raw: &str) -> Vec<u8> {
    percent_decode_str(raw).collect()
}

/// One page of the listing and where the next one starts.
#[derive(Debug)]
pub struct Page {
    /// The objects in key order.
    pub objects: Vec<Listed>,
    /// The continuation token, `None` on the last page.
    pub next: Option<String>,
}

/// Lists the page of `bucket` after `token` (the first page with `None`).
pub async fn page(client: &Client, bucket: &str, token: Option<String>) -> anyhow::Result<Page> {
    let out = client
        .list_objects_v2()
        .bucket(bucket)
        .encoding_type(EncodingType::Url)
        .max_keys(1000)
        .set_continuation_token(token)
        .send()
        .await
        .map_err(client::failed(format!("listing bucket {bucket}")))?;
    let mut objects = Vec::with_capacity(out.contents().len());
    for object in out.contents() {
        let raw = object
            .key()
            .ok_or_else(|| anyhow!("listing bucket {bucket}: an object without a key"))?;
        objects.push(Listed {
            key: decode_key(raw),
            size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
            mtime: object.last_modified().map(|t| t.secs()).unwrap_or(0),
        });
    }
    let next = match (out.is_truncated(), out.next_continuation_token()) {
        (Some(true), Some(token)) => Some(token.to_string()),
        (Some(true), None) => {
            return Err(anyhow!(
                "listing bucket {bucket}: the server said the listing goes on but gave no \
                 continuation token; nothing is deleted from the backup this run"
            ));
        }
        _ => None,
    };
    Ok(Page { objects, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(size: u64, mtime: i64) -> Listed {
        Listed {
            key: b"k".to_vec(),
            size,
            mtime,
        }
    }

    const CURRENT: Local = Local {
        data: Some((10, 100)),
        meta: true,
        acl: true,
    };

    #[test]
    fn an_unchanged_object_needs_no_request_without_a_scrub() {
        let p = plan(&listed(10, 100), &CURRENT, Scrub::None);
        assert!(!p.any(), "{p:?}");
    }

    #[test]
    fn size_mtime_or_missing_files_refetch() {
        for (l, local) in [
            (listed(11, 100), CURRENT),
            (listed(10, 101), CURRENT),
            (listed(10, 100), Local::default()),
            (
                listed(10, 100),
                Local {
                    meta: false,
                    ..CURRENT
                },
            ),
        ] {
            let p = plan(&l, &local, Scrub::None);
            assert!(p.data && p.acl && p.stale, "{l:?} {local:?}: {p:?}");
        }
        let p = plan(
            &listed(10, 100),
            &Local {
                acl: false,
                ..CURRENT
            },
            Scrub::None,
        );
        assert_eq!(
            p,
            Plan {
                data: false,
                acl: true,
                stale: true
            }
        );
    }

    #[test]
    fn scrubs_fetch_what_they_check_and_are_not_stale() {
        let acls = plan(&listed(10, 100), &CURRENT, Scrub::Acls);
        assert_eq!(
            acls,
            Plan {
                data: false,
                acl: true,
                stale: false
            }
        );
        let all = plan(&listed(10, 100), &CURRENT, Scrub::All);
        assert_eq!(
            all,
            Plan {
                data: true,
                acl: true,
                stale: false
            }
        );
    }

    #[test]
    fn url_encoded_keys_decode_to_bytes() {
        assert_eq!(decode_key("a%20b/%01%2F"), b"a b/\x01/");
        assert_eq!(decode_key("caf%C3%A9"), "café".as_bytes());
        assert_eq!(decode_key("%FF"), vec![0xff]);
    }
}
