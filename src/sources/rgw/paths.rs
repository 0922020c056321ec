//! Object key ↔ file path, the original's layout with its splitting bug fixed
//! (github-rgw-rbd.md §2.4).
//!
//! A key is split on **every** `/`: each component but the last becomes a directory `<c>_d`, the
//! last a file `<c>_<code>` (`k` data, `m` metadata JSON, `a` ACL XML). Every name therefore ends
//! in a two-byte suffix, so none is empty, `.`, `..` or a temporary file of ours, and no key can
//! reach outside the bucket directory; `a//b` and `/x` round-trip (the original collapsed them).
//! For every key the original round-tripped, the paths are the same (D1).
//!
//! A component that cannot be a file name (a NUL byte, or longer than 253 bytes, so the name
//! would pass NAME_MAX) is refused with [`KeyError`]; such an object is a per-key error.
//!
//! Only `bucket_A` (bucket ACL) and `bucket_C` (bucket CORS) at the top of the bucket directory
//! are not keys.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Longest key component that still fits NAME_MAX (255) with its two-byte suffix.
pub const MAX_COMPONENT: usize = 253;

/// The bucket ACL file at the top of the bucket directory.
pub const BUCKET_ACL: &str = "bucket_A";
/// The bucket CORS file at the top of the bucket directory.
pub const BUCKET_CORS: &str = "bucket_C";

/// What a file of the layout holds (its one-letter type code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// `k`: the object's bytes.
    Data,
    /// `m`: the metadata JSON.
    Meta,
    /// `a`: the object ACL XML.
    Acl,
}

impl Code {
    /// The suffix letter.
    pub fn letter(self) -> u8 {
        match self {
            Code::Data => b'k',
            Code::Meta => b'm',
            Code::Acl => b'a',
        }
    }

    fn from_letter(letter: u8) -> Option<Code> {
        match letter {
            b'k' => Some(Code::Data),
            b'm' => Some(Code::Meta),
            b'a' => Some(Code::Acl),
            _ => None,
        }
    }
}

/// Why a key cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty (S3 forbids it; listed only by a broken server).
    #[error("the key is empty")]
    Empty,
    /// A component holds a NUL byte, which no file name can.
    #[error("a key component contains a NUL byte, which no file name can hold")]
    Nul,
    /// A component is longer than [`MAX_COMPONENT`] bytes.
    #[error(
        "a key component is {0} bytes long; the file system allows {MAX_COMPONENT} plus the suffix"
    )]
    TooLong(usize),
}

/// The three files of one key, relative to the bucket directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    /// The directory holding them (empty for a key without `/`).
    pub dir: PathBuf,
    /// The final component with its `_` but without the code letter (`name_`).
    stem: Vec<u8>,
}

impl KeyPaths {
    /// The file with `code`, relative to the bucket directory.
    pub fn file(&self, code: Code) -> PathBuf {
        let mut name = self.stem.clone();
        name.push(code.letter());
        self.dir.join(OsString::from_vec(name))
    }
}

/// Maps `key` to its files (see the module doc).
pub fn encode(key: &[u8]) -> Result<KeyPaths, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    let parts: Vec<&[u8]> = key.split(|&b| b == b'/').collect();
    for part in &parts {
        if part.contains(&0) {
            return Err(KeyError::Nul);
        }
        if part.len() > MAX_COMPONENT {
            return Err(KeyError::TooLong(part.len()));
        }
    }
    let (last, dirs) = parts.split_last().expect("split yields at least one part");
    let mut dir = PathBuf::new();
    for part in dirs {
        let mut name = part.to_vec();
        name.extend_from_slice(b"_d");
        dir.push(OsStr::from_bytes(&name));
    }
    let mut stem = last.to_vec();
    stem.push(b'_');
    Ok(KeyPaths { dir, stem })
}

/// The key and code of a file path relative to the bucket directory, or `None` when it is not
/// a key file of the layout (a temporary file, a stray, a directory without `_d`, `bucket_A`).
pub fn decode(rel: &Path) -> Option<(Vec<u8>, Code)> {
    let bytes = rel.as_os_str().as_bytes();
    let parts: Vec<&[u8]> = bytes.split(|&b| b == b'/').collect();
    let (last, dirs) = parts.split_last()?;
    let mut key = Vec::with_capacity(bytes.len());
    for part in dirs {
        key.extend_from_slice(part.strip_suffix(b"_d")?);
        key.push(b'/');
    }
    let (&letter, rest) = last.split_last()?;
    key.extend_from_slice(rest.strip_suffix(b"_")?);
    let code = Code::from_letter(letter)?;
    if rel == Path::new(BUCKET_ACL) || rel == Path::new(BUCKET_CORS) {
        return None;
    }
    Some((key, code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Component;

    fn data(key: &str) -> String {
        encode(key.as_bytes())
            .unwrap()
            .file(Code::Data)
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_originals_examples_keep_their_paths() {
        assert_eq!(data("photos/2014/a.jpg"), "photos_d/2014_d/a.jpg_k");
        assert_eq!(data("dir/"), "dir_d/_k");
        assert_eq!(data("bucket"), "bucket_k");
        assert_eq!(data(".."), ".._k");
        assert_eq!(data("/x/y"), "_d/x_d/y_k");
        assert_eq!(data("a//b/c"), "a_d/_d/b_d/c_k");
        let paths = encode(b"a/b").unwrap();
        assert_eq!(paths.file(Code::Meta), Path::new("a_d/b_m"));
        assert_eq!(paths.file(Code::Acl), Path::new("a_d/b_a"));
        assert_eq!(paths.dir, Path::new("a_d"));
    }

    #[test]
    fn the_originals_lossy_keys_now_round_trip() {
        for key in ["a//b", "/x", "x/y//z", "a//", "//", "/"] {
            let path = encode(key.as_bytes()).unwrap().file(Code::Data);
            assert_eq!(
                decode(&path),
                Some((key.as_bytes().to_vec(), Code::Data)),
                "{key} -> {path:?}"
            );
        }
        assert_eq!(data("a//b"), "a_d/_d/b_k");
        assert_eq!(data("/x"), "_d/x_k");
    }

    #[test]
    fn unstorable_keys_are_refused() {
        assert_eq!(encode(b""), Err(KeyError::Empty));
        assert_eq!(encode(b"a/b\0c"), Err(KeyError::Nul));
        assert_eq!(
            encode(&[b'x'; 254]).unwrap_err(),
            KeyError::TooLong(254),
            "254 + 2 > NAME_MAX"
        );
        assert!(encode(&[b'x'; 253]).is_ok());
    }

    #[test]
    fn non_key_files_do_not_decode() {
        for path in [
            "bucket_A",
            "bucket_C",
            ".backup-tmp123-0abc12ef",
            "x_t",
            "x_z",
            "x",
            "dir/x_k",
            "a_d/b",
        ] {
            assert_eq!(decode(Path::new(path)), None, "{path}");
        }
        assert_eq!(
            decode(Path::new("a_d/bucket_A")),
            None,
            "code A is no key code, anywhere"
        );
        assert_eq!(
            decode(Path::new("bucket_k")),
            Some((b"bucket".to_vec(), Code::Data))
        );
    }

    fn any_key() -> impl Strategy<Value = Vec<u8>> {
        // Components of any bytes but NUL, up to the limit, joined by `/` (so empty components,
        // `.`/`..`, leading and trailing slashes and non-UTF-8 all occur).
        let component = prop_oneof![
            prop::collection::vec(1u8..=255, 0..6),
            prop::collection::vec(1u8..=255, 240..=MAX_COMPONENT),
            Just(b"..".to_vec()),
            Just(b".".to_vec()),
            Just(b".backup-tmp1-x".to_vec()),
            Just(b"x_d".to_vec()),
        ];
        prop::collection::vec(component, 1..6)
            .prop_map(|parts| parts.join(&b'/'))
            .prop_filter("S3 keys are not empty", |k| !k.is_empty())
    }

    proptest! {
        #[test]
        fn every_key_maps_inside_the_bucket_and_round_trips(key in any_key()) {
            let paths = encode(&key).unwrap();
            for code in [Code::Data, Code::Meta, Code::Acl] {
                let path = paths.file(code);
                for component in path.components() {
                    match component {
                        Component::Normal(name) => {
                            prop_assert!(name.len() <= 255);
                            prop_assert!(!name.as_bytes().starts_with(b".backup-tmp")
                                || name.as_bytes().len() > 2
                                    && name.as_bytes()[name.len() - 2] == b'_');
                        }
                        other => prop_assert!(false, "{other:?} in {path:?}"),
                    }
                }
                prop_assert_eq!(path.components().count(), key.split(|&b| b == b'/').count());
                prop_assert_eq!(decode(&path), Some((key.clone(), code)));
            }
        }

        #[test]
        fn distinct_keys_map_to_distinct_paths(a in any_key(), b in any_key()) {
            prop_assume!(a != b);
            prop_assert_ne!(
                encode(&a).unwrap().file(Code::Data),
                encode(&b).unwrap().file(Code::Data)
            );
        }
    }
}
