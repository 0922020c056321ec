//! The `rsync` source: remote filesystems pulled over ssh with `rsync --fake-super`, so owners,
//! modes, ACLs and xattrs are kept as `user.rsync.*` xattrs and the backup side needs no root
//! (core-rsync-coda.md §9).
//!
//! Layout: `ROOT/rsync/<alias>/<absolute path on the host>` (`-R` keeps full paths).
//!
//! Modules: `command` (the clap subcommands), `backup` and `restore` (argv and steps),
//! [`transfer`] (running rsync: output filter, exit statuses, ACL/xattr fallback), [`filter`]
//! (parsing rsync's output as bytes), [`ssh`] (the ssh options, shared with other sources),
//! `inplace` and `hardlinks` (making `--inplace` safe next to hard links) and `in_progress`
//! (the marker that turns the run after a crash into a scrub).

mod backup;
pub mod command;
mod config;
pub mod filter;
mod hardlinks;
mod in_progress;
mod inplace;
mod restore;
pub mod ssh;
pub mod transfer;

pub use config::RsyncHost;
pub(crate) use config::validate_hosts;

use crate::config::Config;
use crate::sources::{Source, Unit, UnitRoot};
use std::num::NonZeroUsize;

/// The rsync source (planning side).
pub struct Rsync;

impl Source for Rsync {
    fn label(&self) -> &'static str {
        "rsync"
    }

    fn workers(&self, config: &Config) -> NonZeroUsize {
        config.settings.rsync_workers
    }

    /// One unit per host, sorted by alias (or full host name when there is no alias), each
    /// scrubbed with probability `rsync-scrub-probability` (§4.3).
    fn plan_units(&self, config: &Config, rng: &mut dyn rand::Rng) -> anyhow::Result<Vec<Unit>> {
        let mut hosts: Vec<(&str, &String, &RsyncHost)> = config
            .rsync
            .iter()
            .map(|(host, info)| {
                let key = info.value.alias.as_deref().unwrap_or(host);
                (key, host, &info.value)
            })
            .collect();
        hosts.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut units = Vec::new();
        for (_, host, info) in hosts {
            let root = UnitRoot::from_components(&["rsync", info.alias(host)])?;
            let mut backup_args = vec!["rsync".into(), "backup".into(), host.clone()];
            if config.settings.rsync_scrub_probability.roll(rng) {
                backup_args.push("--scrub".into());
            }
            units.push(Unit { root, backup_args });
        }
        Ok(units)
    }
}
