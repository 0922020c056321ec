//! The `coda` source: Coda volumes dumped over ssh (core-rsync-coda.md §10).
//!
//! `deltaic coda backup HOST VOLUME` refreshes the volume's read-only backup clone with
//! `volutil` on the server, streams `volutil dump | codadump2tar -rn .` back over ssh, and
//! applies the tar to `ROOT/coda/<server short name>/<volume>/`, keeping owners and modes in
//! `user.rsync.%stat` xattrs so that `deltaic rsync restore --coda` can put them back.
//!
//! Modules: `command` (the clap subcommand), `backup` (the flow and its markers), `remote`
//! (volutil over ssh, the dump pipeline with its status check), `tar_stream` (the strict tar
//! reader: a dump must end with the end-of-archive marker), `paths` (entry names and the
//! no-symlink-following walk), `tar_apply` (the tar-to-directory algorithm, §10.4) and
//! `cleanup` (the full-dump GC and the directory mtimes, applied last).

mod backup;
mod cleanup;
pub mod command;
mod paths;
mod remote;
mod tar_apply;
mod tar_stream;

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

/// The server's short name: the host name up to its first `.` (the original's layout).
pub fn short_name(server: &str) -> &str {
    server.split('.').next().unwrap_or(server)
}

/// The directory name of `volume` under `ROOT/coda/<server>/` (BUG-C7). A name that is a safe
/// path component is used as is (the original's layout); any other (Coda's root volume is
/// often called `/`) has `%` and `/` percent-encoded, and a name of only dots gets its dots
/// encoded, so it stays one component inside the tree: `/` becomes `%2F`.
///
/// Errors: the name is empty or contains NUL or a newline (no Coda volume is called that).
pub fn volume_dir_name(volume: &str) -> Result<String, String> {
    if volume.is_empty() || volume.contains(['\0', '\n']) {
        return Err(format!(
            "`{}` is not a Coda volume name (empty, or contains NUL or a newline)",
            volume.escape_debug()
        ));
    }
    if check_component(volume).is_ok() {
        return Ok(volume.to_string());
    }
    if volume.bytes().all(|b| b == b'.') {
        return Ok(volume.replace('.', "%2E"));
    }
    Ok(volume.replace('%', "%25").replace('/', "%2F"))
}

/// The unit root of one replica: `coda/<server short name>/<volume directory name>`.
pub fn unit_root(server: &str, volume: &str) -> Result<UnitRoot, String> {
    Ok(UnitRoot::from_components(&[
        "coda",
        short_name(server),
        &volume_dir_name(volume)?,
    ])?)
}

/// Checks server and volume names (BUG-4, BUG-C7): every replica must get its own directory.
pub(crate) fn validate_groups(config: &Config) -> Result<(), ConfigError> {
    let mut seen: std::collections::HashMap<UnitRoot, (&str, &str)> = Default::default();
    for (i, group) in config.coda.iter().enumerate() {
        for server in &group.servers {
            check_component(short_name(server))
                .map_err(|m| config.invalid(None, format!("coda[{i}].servers"), m))?;
        }
        for volume in &group.volumes {
            volume_dir_name(volume)
                .map_err(|m| config.invalid(None, format!("coda[{i}].volumes"), m))?;
            for server in &group.servers {
                let root = unit_root(server, volume)
                    .map_err(|m| config.invalid(None, format!("coda[{i}].volumes"), m))?;
                if let Some((other_server, other_volume)) =
                    seen.insert(root.clone(), (server, volume))
                {
                    return Err(config.invalid(
                        None,
                        format!("coda[{i}]"),
                        format!(
                            "volume `{volume}` on `{server}` and volume `{other_volume}` on \
                             `{other_server}` would share the directory {root}; server short \
                             names (up to the first `.`) and volume names must be unique"
                        ),
                    ));
                }
            }
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
                    let root = unit_root(server, volume).map_err(anyhow::Error::msg)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(coda: &str) -> Result<Config, ConfigError> {
        let text = format!("settings:\n  root: /b\n  snapshot-backend: dir\ncoda:\n{coda}");
        Config::from_yaml(&text, Path::new("/etc/deltaic.conf"))
    }

    #[test]
    fn volume_names_become_one_safe_component() {
        assert_eq!(volume_dir_name("a:foo").unwrap(), "a:foo");
        assert_eq!(volume_dir_name("/").unwrap(), "%2F");
        assert_eq!(volume_dir_name("a/b%c").unwrap(), "a%2Fb%25c");
        assert_eq!(volume_dir_name("..").unwrap(), "%2E%2E");
        assert_eq!(
            volume_dir_name("100%").unwrap(),
            "100%",
            "safe names stay as they were"
        );
        for bad in ["", "a\0b", "a\nb"] {
            assert!(volume_dir_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            unit_root("coda1.example.org", "/").unwrap().as_str(),
            "coda/coda1/%2F"
        );
    }

    #[test]
    fn the_root_volume_is_accepted_and_colliding_replicas_are_not() {
        let cfg = config("  - servers: [c1.example.org]\n    volumes: ['/', a:foo]\n").unwrap();
        let mut rng = rand::rng();
        let units = Coda.plan_units(&cfg, &mut rng).unwrap();
        let roots: Vec<&str> = units.iter().map(|u| u.root.as_str()).collect();
        assert_eq!(roots, ["coda/c1/%2F", "coda/c1/a:foo"]);
        assert_eq!(
            units[0].backup_args[..4],
            ["coda", "backup", "c1.example.org", "/"]
        );

        let err = config("  - servers: [c1.a.org, c1.b.org]\n    volumes: [v]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("would share the directory coda/c1/v"), "{err}");
        assert!(config("  - servers: [c1]\n    volumes: ['']\n").is_err());
    }

    #[test]
    fn full_dumps_happen_with_the_full_probability() {
        let plan = |p: f64| {
            let mut cfg = config("  - servers: [c1]\n    volumes: [v]\n").unwrap();
            cfg.settings.coda_full_probability = crate::config::Probability::new(p);
            let mut rng = rand::rng();
            Coda.plan_units(&cfg, &mut rng).unwrap()[0]
                .backup_args
                .clone()
        };
        assert!(
            !plan(1.0).contains(&"--incremental".to_string()),
            "p=1: always full"
        );
        assert!(
            plan(0.0).contains(&"--incremental".to_string()),
            "p=0: always incremental"
        );
    }
}
