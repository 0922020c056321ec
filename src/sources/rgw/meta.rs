//! The `_m` metadata file (github-rgw-rbd.md §2.4): Python `json.dumps(sort_keys=True)` bytes
//! without a trailing newline (D4), holding the content headers under their canonical names, the
//! ETag, the Last-Modified HTTP date and the user metadata (`"metadata"`).
//!
//! User metadata values are percent-decoded when backed up and their non-ASCII characters
//! percent-encoded when restored, as the original's boto did, so files written by either
//! version restore the same (a value holding a literal `%XX` is decoded: the original's
//! limitation, kept for compatibility).

use crate::sources::github::pyjson;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The content headers kept, by their canonical names (§2.4).
pub const CONTENT_HEADERS: [&str; 5] = [
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Type",
];

/// What a GET of the object said about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Content headers by canonical name (only the non-empty ones).
    pub headers: BTreeMap<&'static str, String>,
    /// The ETag with its quotes.
    pub etag: Option<String>,
    /// The Last-Modified header as an HTTP date.
    pub last_modified: Option<String>,
    /// User metadata (`x-amz-meta-*` with the prefix removed), raw as sent.
    pub user: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// The `_m` file bytes.
    pub fn file_bytes(&self) -> Vec<u8> {
        let mut map = Map::new();
        for (name, value) in &self.headers {
            if !value.is_empty() {
                map.insert((*name).to_string(), Value::String(value.clone()));
            }
        }
        if let Some(etag) = self.etag.as_ref().filter(|e| !e.is_empty()) {
            map.insert("ETag".into(), Value::String(etag.clone()));
        }
        if let Some(date) = self.last_modified.as_ref().filter(|d| !d.is_empty()) {
            map.insert("Last-Modified".into(), Value::String(date.clone()));
        }
        let user: Map<String, Value> = self
            .user
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(decode_value(v))))
            .collect();
        map.insert("metadata".into(), Value::Object(user));
        pyjson::dumps(&Value::Object(map)).into_bytes()
    }
}

/// What restore sends from an `_m` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreMeta {
    /// Content headers by canonical name, ready to send.
    pub headers: BTreeMap<&'static str, String>,
    /// User metadata, values encoded for a header.
    pub user: BTreeMap<String, String>,
}

/// Parses an `_m` file for restore. Header names match case-insensitively (§2.8 step 3).
pub fn parse(bytes: &[u8]) -> anyhow::Result<RestoreMeta> {
    let value: Value = serde_json::from_slice(bytes)?;
    let map = value
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("the metadata file is not a JSON object"))?;
    let mut meta = RestoreMeta::default();
    for (name, value) in map {
        if let Some(canonical) = CONTENT_HEADERS
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name))
            && let Some(text) = value.as_str()
        {
            meta.headers.insert(canonical, encode_value(text));
        }
    }
    if let Some(user) = map.get("metadata").and_then(Value::as_object) {
        for (name, value) in user {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            meta.user.insert(name.clone(), encode_value(&text));
        }
    }
    Ok(meta)
}

/// Percent-decodes a header value; bytes that do not decode to UTF-8 keep the raw value.
fn decode_value(raw: &str) -> String {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .unwrap_or_else(|_| raw.to_string())
}

/// Only non-ASCII (and control characters, which no header may hold) are encoded.
const NON_ASCII: &AsciiSet = CONTROLS;

/// Encodes a value for an HTTP header: non-ASCII characters as percent-encoded UTF-8, ASCII
/// (including `%`) as is, like boto 2.
fn encode_value(text: &str) -> String {
    utf8_percent_encode(text, NON_ASCII).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_matches_the_originals_bytes() {
        let mut meta = ObjectMeta {
            etag: Some("\"5d41402abc4b2a76b9719d911017c592\"".into()),
            last_modified: Some("Tue, 01 Apr 2014 12:00:00 GMT".into()),
            ..ObjectMeta::default()
        };
        meta.headers.insert("Content-Type", "text/plain".into());
        meta.headers.insert("Cache-Control", String::new());
        meta.user.insert("color".into(), "blue".into());
        meta.user.insert("name".into(), "caf%C3%A9".into());
        assert_eq!(
            String::from_utf8(meta.file_bytes()).unwrap(),
            "{\"Content-Type\": \"text/plain\", \"ETag\": \"\\\"5d41402abc4b2a76b9719d911017c592\\\"\", \
             \"Last-Modified\": \"Tue, 01 Apr 2014 12:00:00 GMT\", \"metadata\": {\"color\": \"blue\", \
             \"name\": \"caf\\u00e9\"}}"
        );
    }

    #[test]
    fn restore_reencodes_non_ascii_and_keeps_ascii_punctuation() {
        let parsed = parse(
            "{\"content-type\": \"text/x\", \"ETag\": \"\\\"x\\\"\", \"metadata\": {\"a\": \"caf\\u00e9 50%\", \"n\": 3}}"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(parsed.headers.get("Content-Type").unwrap(), "text/x");
        assert_eq!(parsed.headers.len(), 1, "ETag is not sent");
        assert_eq!(parsed.user.get("a").unwrap(), "caf%C3%A9 50%");
        assert_eq!(parsed.user.get("n").unwrap(), "3");
        assert!(parse(b"[1]").is_err());
    }
}
