//! The `rbd` source: Ceph RBD images backed up incrementally into large sparse files, and
//! configured RBD snapshots fetched whole (github-rgw-rbd.md §3), compatible with the
//! original's layout (`ROOT/rbd/<pool>/(images|snapshots)/<friendly>`, the `user.rbd.*`
//! xattrs, `backup-*` snapshots), so an existing backup continues incrementally.
//!
//! Modules: [`diff`] (the strict export-diff v1 reader), [`apply`] (writing a stream into the
//! sparse file: only changed blocks, holes punched, constant memory), [`tool`] (the `rbd` CLI,
//! time-limited), [`state`] (the xattrs and crash points), [`backup`] (the two-phase update,
//! snapshot units, drop, restore), [`scrub`] (full comparison, D6), `config` (the `rbd:`
//! manifest), `command` (the CLI group).

pub mod apply;
pub mod backup;
pub mod command;
mod config;
pub mod diff;
pub mod scrub;
pub mod state;
pub mod tool;

pub use config::{Kind, RbdPool, RbdPools};
pub(crate) use config::{pools as deserialize_pools, validate};

use crate::config::Config;
use crate::sources::{Source, Unit, UnitRoot};
use std::num::NonZeroUsize;

/// The rbd source (planning side).
pub struct Rbd;

impl Source for Rbd {
    fn label(&self) -> &'static str {
        "rbd"
    }

    fn workers(&self, config: &Config) -> NonZeroUsize {
        config.settings.rbd_workers
    }

    /// Pools sorted; in each, images sorted by friendly name, then snapshots (§3.1). A scrub
    /// (`-c`) is drawn per unit with `rbd-scrub-probability`.
    fn plan_units(&self, config: &Config, rng: &mut dyn rand::Rng) -> anyhow::Result<Vec<Unit>> {
        let mut units = Vec::new();
        for (pool, entries) in &config.rbd {
            for (kind, map) in [
                (Kind::Image, &entries.images),
                (Kind::Snapshot, &entries.snapshots),
            ] {
                for friendly in map.keys() {
                    let root = UnitRoot::from_components(&["rbd", pool, kind.dir(), friendly])?;
                    let mut backup_args = vec!["rbd".into(), "backup".into()];
                    if config.settings.rbd_scrub_probability.roll(rng) {
                        backup_args.push("-c".into());
                    }
                    if kind == Kind::Snapshot {
                        backup_args.push("-s".into());
                    }
                    backup_args.extend([pool.clone(), friendly.clone()]);
                    units.push(Unit { root, backup_args });
                }
            }
        }
        Ok(units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_planned_in_the_original_order_with_its_arguments() {
        let text = "settings:\n  root: /b\n  snapshot-backend: dir\n  rbd-scrub-probability: 1\n\
                    rbd:\n  zpool:\n    images: {b: img-b, a: img-a}\n    snapshots: {gold: s1}\n  \
                    apool:\n  mpool:\n    snapshots:\n";
        let config = Config::from_yaml(text, std::path::Path::new("/c.yaml")).unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let units = Rbd.plan_units(&config, &mut rand::rng()).unwrap();
        let got: Vec<(String, String)> = units
            .iter()
            .map(|u| (u.root.to_string(), u.backup_args.join(" ")))
            .collect();
        let want = [
            ("rbd/zpool/images/a", "rbd backup -c zpool a"),
            ("rbd/zpool/images/b", "rbd backup -c zpool b"),
            ("rbd/zpool/snapshots/gold", "rbd backup -c -s zpool gold"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_names_and_unknown_keys_are_caught() {
        let load = |rbd: &str| {
            Config::from_yaml(
                &format!("settings:\n  root: /b\n  snapshot-backend: dir\nrbd:\n{rbd}"),
                std::path::Path::new("/c.yaml"),
            )
        };
        let err = load("  p:\n    images: {x.pending: img}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rbd.p.images.x.pending"), "{err}");
        assert!(load("  ..:\n    images: {a: b}\n").is_err());
        let c = load("  p:\n    image: {a: b}\n").unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("rbd.p.image") && w.contains("`images`")),
            "{:?}",
            c.warnings
        );
    }
}
