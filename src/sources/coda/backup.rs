//! `deltaic coda backup [-i] [-R] [-v] HOST VOLUME` (core-rsync-coda.md §10.2).
//!
//! 1. Lock the unit (`ROOT/.lock/coda-<server>-<volume>`) and check the backup filesystem.
//! 2. Refresh, unless `-R`: `volutil info`, `lock`, `backup` (which unlocks). If `backup` fails
//!    after `lock` succeeded, `volutil unlock` runs before the error is returned (BUG-C9).
//! 3. In `ROOT/coda/<server short name>/<volume>/`: a missing `user.coda.incremental-ok` xattr
//!    forces a full dump. The xattr is removed (durably) before any dump changes the tree, so
//!    a failed full dump, or any dump cut off by a crash, is followed by a full dump, which
//!    compares every file with the volume. A cleanly failed incremental dump puts it back: its
//!    files were each written whole, and the next incremental sends the same changes again.
//! 4. `volutil info` again for the fresh backup id, then the dump, applied as it streams
//!    ([`tar_apply`]). A damaged stream or a failed pipeline is retried, up to
//!    [`DUMP_ATTEMPTS`] attempts with a growing pause (BUG-C13); other errors are not.
//! 5. After a complete full dump only: remove what it did not contain ([`cleanup`]). Then the
//!    directory mtimes (BUG-C11), `syncfs` (the dump's renames and directories reach the disk
//!    before anything records the dump as done), `volutil ancient <backup id>`, and
//!    `user.coda.incremental-ok = "true"`.

use super::cleanup;
use super::paths::Tree;
use super::remote::Remote;
use super::tar_apply::{self, Applied, ApplyError};
use crate::config::Config;
use crate::run::manifest::UnitReport;
use crate::run::unit_session;
use crate::sources::rsync::ssh::Ssh;
use crate::util::atomic_file;
use anyhow::Context;
use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Dump attempts before giving up (the original's).
pub const DUMP_ATTEMPTS: u32 = 10;

/// The xattr on the volume's directory saying the last dump completed, so an incremental dump
/// has a base (a compatibility contract; non-empty for old e2fsck).
pub const INCREMENTAL_OK_XATTR: &str = "user.coda.incremental-ok";

/// Environment variable overriding the first pause between dump attempts, in milliseconds
/// (default 5000; it doubles per attempt up to a minute). Tests set 0.
pub const RETRY_DELAY_ENV: &str = "DELTAIC_CODA_RETRY_DELAY_MS";

/// What `deltaic coda backup` was asked to do.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The Coda server.
    pub host: &'a str,
    /// The volume name.
    pub volume: &'a str,
    /// An incremental dump was asked for (a missing marker still forces a full one).
    pub incremental: bool,
    /// Skip re-cloning the backup volume.
    pub skip_refresh: bool,
    /// Let volutil's output through.
    pub verbose: bool,
}

/// Runs the backup (see the module doc).
pub fn run(config: &Config, request: &Request<'_>) -> anyhow::Result<ExitCode> {
    let (host, volume) = (request.host, request.volume);
    let unit = super::unit_root(host, volume).map_err(anyhow::Error::msg)?;
    let _locks = unit_session::start(config, &unit)?;
    let settings = &config.settings;
    let remote = Remote::new(
        Ssh::from_settings(settings)?,
        host,
        &settings.coda_volutil_path,
        &settings.coda_codadump2tar_path,
        request.verbose,
    )?;
    if !request.skip_refresh {
        refresh(&remote, volume)?;
    }
    let mut tree = Tree::open(&config.root().join(unit.as_str()))?;
    let root = tree.root().to_path_buf();
    let marked = xattr::get(&root, INCREMENTAL_OK_XATTR)
        .with_context(|| xattr_advice("reading", &root))?
        .is_some();
    let full = !request.incremental || !marked;
    if full && request.incremental {
        println!(
            "No record of a completed dump in {}: doing a full dump",
            root.display()
        );
    }
    if marked {
        // Durable before the tree changes: after a crash, the next dump is a full one.
        xattr::remove(&root, INCREMENTAL_OK_XATTR)
            .with_context(|| xattr_advice("removing", &root))?;
        atomic_file::sync_dir(&root)
            .with_context(|| format!("flushing {} to disk", root.display()))?;
    }
    let what = format!("{volume} on {host}");
    let result = dump_and_record(&remote, volume, full, &mut tree, &what);
    if result.is_err() && !full {
        match xattr::set(&root, INCREMENTAL_OK_XATTR, b"true") {
            Ok(()) => println!("The next backup of {what} may be incremental again"),
            Err(e) => tracing::warn!("{}: {e}", xattr_advice("restoring", &root)),
        }
    }
    let (applied, removed) = result?;
    println!(
        "{} dump of {volume} on {host}: {} entries, {} files written ({} bytes), {removed} removed",
        if full { "Full" } else { "Incremental" },
        applied.entries,
        applied.files_written,
        applied.bytes_written
    );
    UnitReport {
        bytes_transferred: Some(applied.bytes_written),
        files_transferred: Some(applied.files_written),
        ..UnitReport::default()
    }
    .write_if_requested()?;
    Ok(ExitCode::SUCCESS)
}

/// `volutil info` for the backup id, the dump, the GC of a full dump, the directory mtimes,
/// `syncfs`, `volutil ancient`, the marker; returns what was applied and how many paths the GC
/// removed.
fn dump_and_record(
    remote: &Remote,
    volume: &str,
    full: bool,
    tree: &mut Tree,
    what: &str,
) -> anyhow::Result<(Applied, u64)> {
    let backup_id = remote.info(volume)?.backup_id;
    let applied = dump_with_retries(remote, &backup_id, !full, tree, what)?;
    let removed = if full {
        cleanup::collect_garbage(tree, &applied.valid)?
    } else {
        0
    };
    cleanup::restore_dir_mtimes(tree, &applied.dir_mtimes)?;
    let root = tree.root().to_path_buf();
    sync_filesystem(&root)?;
    remote.ancient(&backup_id)?;
    xattr::set(&root, INCREMENTAL_OK_XATTR, b"true")
        .with_context(|| xattr_advice("setting", &root))?;
    Ok((applied, removed))
}

/// `volutil info`, `lock`, `backup`; `unlock` when `backup` fails after a successful `lock`.
fn refresh(remote: &Remote, volume: &str) -> anyhow::Result<()> {
    let id = remote.info(volume)?.id;
    remote.lock(&id)?;
    if let Err(err) = remote.backup(&id) {
        if let Err(unlock) = remote.unlock(&id) {
            tracing::error!(
                "{unlock:#}; volume {volume} ({id}) may stay LOCKED: run `volutil unlock {id}` \
                 on the server"
            );
        } else {
            println!("Unlocked volume {volume} ({id}) after the failed backup clone");
        }
        return Err(err.context(format!("refreshing the backup clone of {volume}")));
    }
    Ok(())
}

/// Dumps and applies, retrying a damaged stream or failed pipeline.
fn dump_with_retries(
    remote: &Remote,
    backup_id: &str,
    incremental: bool,
    tree: &mut Tree,
    what: &str,
) -> anyhow::Result<Applied> {
    let mut delay = first_retry_delay();
    let mut attempt = 1;
    loop {
        let mut dump = remote.dump(backup_id, incremental)?;
        let result = match tar_apply::apply(dump.stream(), tree) {
            Ok(applied) => dump.finish().map(|()| applied).map_err(ApplyError::from),
            Err(err) => {
                // Kills and reaps ssh now, not after the pause before the next attempt.
                drop(dump);
                Err(err)
            }
        };
        match result {
            Ok(applied) => return Ok(applied),
            Err(ApplyError::Fatal(err)) => {
                return Err(err.context(format!(
                    "dump of {what} refused; no cleanup ran, so nothing the dump did not \
                     name was deleted"
                )));
            }
            Err(ApplyError::Damaged(damaged)) if attempt < DUMP_ATTEMPTS => {
                tracing::warn!(
                    "dump attempt {attempt} of {DUMP_ATTEMPTS} of {what} failed: {damaged}; \
                     retrying in {delay:?}"
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(60));
                attempt += 1;
            }
            Err(ApplyError::Damaged(damaged)) => {
                anyhow::bail!(
                    "dump of {what} failed {DUMP_ATTEMPTS} times, last: {damaged}; no cleanup ran, \
                     and the next backup of it is a full dump if this one was"
                );
            }
        }
    }
}

fn first_retry_delay() -> Duration {
    let ms = std::env::var(RETRY_DELAY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(5000);
    Duration::from_millis(ms)
}

/// Flushes the backup filesystem, so that `volutil ancient` (the base of the next incremental)
/// never gets ahead of the data on disk.
fn sync_filesystem(root: &Path) -> anyhow::Result<()> {
    let dir = std::fs::File::open(root).with_context(|| format!("opening {}", root.display()))?;
    rustix::fs::syncfs(&dir)
        .map_err(io::Error::from)
        .with_context(|| format!("flushing the filesystem of {} to disk", root.display()))
}

fn xattr_advice(what: &str, root: &Path) -> String {
    format!(
        "{what} {INCREMENTAL_OK_XATTR} on {}; the backup filesystem must support user xattrs",
        root.display()
    )
}
