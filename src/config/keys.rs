//! Unknown-key warnings with a did-you-mean (a typo such as `rsync-worker` would otherwise be
//! silently ignored and the default used).
//!
//! The known keys come from the typed structs themselves ([`struct_fields`]), so adding a field
//! to a struct makes its key known here too.

use serde::Deserialize;
use serde::de::{self, IgnoredAny, Visitor};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::Path;

/// Top-level sections. `github`, `rbd`, `rgw` and `archivers` belong to sources and archivers
/// that read their own sections.
const TOP_LEVEL: &[&str] = &[
    "settings",
    "rsync",
    "coda",
    "github",
    "rbd",
    "rgw",
    "archivers",
];

/// Settings prefixes owned by sources and archivers whose keys are checked by their own modules.
const FOREIGN_SETTING_PREFIXES: &[&str] = &["archive-", "googledrive-"];

type Keys = BTreeMap<String, Spanned<IgnoredAny>>;

#[derive(Deserialize)]
struct Shape {
    #[serde(default)]
    settings: Option<Keys>,
    #[serde(default)]
    rsync: Option<BTreeMap<String, Option<Keys>>>,
    #[serde(default)]
    coda: Option<Vec<Option<Keys>>>,
    #[serde(default)]
    rbd: Option<BTreeMap<String, Option<Keys>>>,
}

/// Returns one warning per unknown key in `text`, with its line and the closest known key.
pub(super) fn unknown_key_warnings(text: &str, path: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut check = |section: &str, keys: &Keys, known: &[&str], foreign: &[&str]| {
        for (key, value) in keys {
            if known.contains(&key.as_str()) || foreign.iter().any(|p| key.starts_with(p)) {
                continue;
            }
            let mut warning = format!(
                "{}, line {}: unknown key `{section}{key}` is ignored",
                path.display(),
                value.referenced.line()
            );
            if let Some(guess) = closest(key, known) {
                warning.push_str(&format!("; did you mean `{guess}`?"));
            }
            warnings.push(warning);
        }
    };
    if let Ok(top) = serde_saphyr::from_str::<Keys>(text) {
        check("", &top, TOP_LEVEL, &[]);
    }
    let Ok(shape) = serde_saphyr::from_str::<Shape>(text) else {
        return warnings;
    };
    if let Some(settings) = &shape.settings {
        let known = struct_fields::<super::Settings>();
        check("settings.", settings, known, FOREIGN_SETTING_PREFIXES);
    }
    let host_keys = struct_fields::<crate::sources::rsync::RsyncHost>();
    for (host, keys) in shape.rsync.iter().flatten() {
        if let Some(keys) = keys {
            check(&format!("rsync.{host}."), keys, host_keys, &[]);
        }
    }
    let group_keys = struct_fields::<crate::sources::coda::CodaGroup>();
    for (i, keys) in shape.coda.iter().flatten().enumerate() {
        if let Some(keys) = keys {
            check(&format!("coda[{i}]."), keys, group_keys, &[]);
        }
    }
    let pool_keys = struct_fields::<crate::sources::rbd::RbdPool>();
    for (pool, keys) in shape.rbd.iter().flatten() {
        if let Some(keys) = keys {
            check(&format!("rbd.{pool}."), keys, pool_keys, &[]);
        }
    }
    warnings
}

/// The known key nearest to `key`, if it is close enough to be a likely typo.
/// Also used for other names typed by hand (host names on the command line).
pub(crate) fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The field names serde uses for struct `T` (its YAML keys), read by asking `T` to deserialize
/// itself from a deserializer that only records the names.
pub(crate) fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Recorder<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Done;
    impl std::fmt::Display for Done {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names recorded")
        }
    }
    impl std::error::Error for Done {}
    impl de::Error for Done {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Done
        }
    }
    impl<'de> de::Deserializer<'de> for Recorder<'_> {
        type Error = Done;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Done> {
            Err(Done)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Done> {
            *self.0 = fields;
            Err(Done)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_fields_lists_kebab_case_keys() {
        let fields = struct_fields::<super::super::Settings>();
        assert!(fields.contains(&"rsync-workers"));
        assert!(fields.contains(&"root"));
    }

    #[test]
    fn closest_suggests_a_typo_fix_and_nothing_for_noise() {
        assert_eq!(
            closest("rsync-worker", &["rsync-workers", "root"]),
            Some("rsync-workers")
        );
        assert_eq!(closest("zzzz", &["rsync-workers", "root"]), None);
    }
}
