//! The `rbd:` manifest (github-rgw-rbd.md §3.1): pool → `{images: {friendly: image},
//! snapshots: {friendly: snapshot}}`, both mappings optional. A snapshot may also be written
//! `image@snapshot` (new), which names its image directly instead of searching the pool.

use crate::config::{Config, ConfigError};
use crate::sources::check_component;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One pool's entries under `rbd:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RbdPool {
    /// Friendly name → RBD image name: backed up incrementally.
    #[serde(default, deserialize_with = "null_is_empty")]
    pub images: BTreeMap<String, String>,
    /// Friendly name → RBD snapshot name (or `image@snapshot`): fetched whole when it changes.
    #[serde(default, deserialize_with = "null_is_empty")]
    pub snapshots: BTreeMap<String, String>,
}

/// The `rbd:` manifest: pool name → entries (sorted, as units are planned).
pub type RbdPools = BTreeMap<String, RbdPool>;

fn null_is_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// Deserializes `rbd:`, where a pool with nothing under it (`pool:`) is an empty pool.
pub(crate) fn pools<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RbdPools, D::Error> {
    let raw = Option::<BTreeMap<String, Option<RbdPool>>>::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(pool, entries)| (pool, entries.unwrap_or_default()))
        .collect())
}

/// What kind of unit: an image (incremental) or a snapshot (fetched whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `rbd/<pool>/images/<friendly>`.
    Image,
    /// `rbd/<pool>/snapshots/<friendly>`.
    Snapshot,
}

impl Kind {
    /// The directory under `rbd/<pool>/`.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Image => "images",
            Kind::Snapshot => "snapshots",
        }
    }
}

/// Suffix of the staged diff beside an image file (a friendly name may not end with it).
pub const PENDING_SUFFIX: &str = ".pending";

/// Looks up a unit's RBD name, with an error saying what is configured.
pub fn lookup<'a>(
    config: &'a Config,
    pool: &str,
    kind: Kind,
    friendly: &str,
) -> anyhow::Result<&'a str> {
    let entries = config.rbd.get(pool).ok_or_else(|| {
        anyhow::anyhow!(
            "pool `{pool}` is not configured under `rbd:` in {}",
            config.path.display()
        )
    })?;
    let map = match kind {
        Kind::Image => &entries.images,
        Kind::Snapshot => &entries.snapshots,
    };
    map.get(friendly).map(String::as_str).ok_or_else(|| {
        let known: Vec<&str> = map.keys().map(String::as_str).collect();
        let hint = crate::config::closest_key(friendly, &known)
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        anyhow::anyhow!(
            "no {} named `{friendly}` under rbd.{pool}.{} in {}{hint}",
            match kind {
                Kind::Image => "image",
                Kind::Snapshot => "snapshot",
            },
            kind.dir(),
            config.path.display()
        )
    })
}

/// Checks pool and friendly names (single safe path components; an image's friendly name must
/// not end with `.pending`, which would collide with another image's staged diff) and that
/// every RBD name is non-empty.
pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    for (pool, entries) in &config.rbd {
        check_component(pool).map_err(|m| config.invalid(None, format!("rbd.{pool}"), m))?;
        for (kind, map) in [
            (Kind::Image, &entries.images),
            (Kind::Snapshot, &entries.snapshots),
        ] {
            for (friendly, name) in map {
                let key = format!("rbd.{pool}.{}.{friendly}", kind.dir());
                check_component(friendly).map_err(|m| config.invalid(None, &key, m))?;
                if kind == Kind::Image && friendly.ends_with(PENDING_SUFFIX) {
                    return Err(config.invalid(
                        None,
                        &key,
                        "an image's friendly name cannot end with `.pending` (the staged diff \
                         of another image is named so)",
                    ));
                }
                if name.trim().is_empty() || name.starts_with('-') {
                    return Err(config.invalid(None, &key, format!("`{name}` is not an RBD name")));
                }
            }
        }
    }
    Ok(())
}
