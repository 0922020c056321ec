//! The `coda` source: Coda volumes dumped over ssh (core-rsync-coda.md §10). This version reads
//! and validates the `coda:` manifest; the backup itself is not implemented yet, so a configured
//! volume fails its unit with a clear message instead of being skipped silently.

pub mod command;

use crate::config::{Config, ConfigError};
use crate::sources::{Source, Unit, UnitRoot, check_component};
use serde::Deserialize;
use std::num::NonZeroUsize;

/// One replica group under `coda:`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct CodaGroup {
    /// Servers holding replicas of the volumes; each replica is backed up on its own.
    pub servers: Vec<String>,
    /// Volume names, e.g. `a:foo`.
    pub volumes: Vec<String>,
}

/// Checks server and volume names (BUG-4, BUG-C7).
pub(crate) fn validate_groups(config: &Config) -> Result<(), ConfigError> {
    for (i, group) in config.coda.iter().enumerate() {
        for server in &group.servers {
            let short = server.split('.').next().unwrap_or(server);
            check_component(short)
                .map_err(|m| config.invalid(None, format!("coda[{i}].servers"), m))?;
        }
        for volume in &group.volumes {
            check_component(volume)
                .map_err(|m| config.invalid(None, format!("coda[{i}].volumes"), m))?;
        }
    }
    Ok(())
}

/// The coda source (planning side).
pub struct Coda;

impl Source for Coda {
    fn label(&self) -> &'static str {
        "coda"
    }

    fn workers(&self, config: &Config) -> NonZeroUsize {
        config.settings.coda_workers
    }

    /// One unit per (volume, server), in config order: group, then volume, then server (§4.3).
    /// Incremental unless a full dump is drawn with `coda-full-probability` (BUG-C1 fixed).
    fn plan_units(&self, config: &Config, rng: &mut dyn rand::Rng) -> anyhow::Result<Vec<Unit>> {
        let mut units = Vec::new();
        for group in &config.coda {
            for volume in &group.volumes {
                for server in &group.servers {
                    let short = server.split('.').next().unwrap_or(server);
                    let root = UnitRoot::from_components(&["coda", short, volume])
                        .map_err(anyhow::Error::msg)?;
                    let mut backup_args = vec![
                        "coda".into(),
                        "backup".into(),
                        server.clone(),
                        volume.clone(),
                    ];
                    if !config.settings.coda_full_probability.roll(rng) {
                        backup_args.push("--incremental".into());
                    }
                    units.push(Unit { root, backup_args });
                }
            }
        }
        Ok(units)
    }
}
