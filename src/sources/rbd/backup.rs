//! `rbd backup`: image units (incremental, two-phase) and snapshot units (fetched whole when the
//! snapshot changed), github-rgw-rbd.md §3.6.
//!
//! An image unit's steps, each durable (fsync) before the next, with [`state`]'s xattrs:
//!
//! 1. **recover** what a crashed or failed run left: the retired snapshot (below) is removed;
//!    a staged diff (`pending-snapshot`) is applied and rebased; a snapshot recorded only as
//!    `creating-snapshot` is removed;
//! 2. with a base snapshot on the image: **stage** (record `creating-snapshot` N, `snap create`
//!    N, `export-diff --from-snap base` piped through the strict parser into `<file>.pending`,
//!    fsync, then `pending-snapshot` = N), **apply** the staged diff to the file (only changed
//!    blocks are written) and fsync it, then **rebase** (`retired-snapshot` = base, `snapshot`
//!    = N, clear the others, unlink `<file>.pending`). The old base is not removed then but by
//!    the next run, while that run exports and applies (the **retired** snapshot): its
//!    `snap rm`, a monitor commit, overlaps the export instead of following the apply, at the
//!    cost of one more snapshot per image between runs (it holds the blocks changed in the
//!    last interval);
//! 3. without one (first run, or the base was lost): a **full fetch** of a new snapshot into the
//!    file, compared block by block with what the file already holds; `snapshot` is removed
//!    first and set last, so an interrupted fetch is never taken for a complete backup.
//!
//! In the common case (the file records a base and nothing else: no earlier run to recover)
//! N is recorded first, then `snap ls` (for the stray report and to confirm the base) runs
//! while N is created, then the retired snapshot is removed beside the export; if the base
//! turns out to be gone, N is the snapshot fetched whole.
//! Otherwise `snap ls` comes first, then recovery, then N. So a snapshot is always recorded
//! before it is created, and the one being created is never reported as a stray.
//!
//! Every step is idempotent: a rerun after a crash anywhere converges, including after the
//! retired snapshot's `snap rm` succeeded and the xattr update did not ("already gone" is
//! success). `rbd` is only asked to remove snapshots named `backup-*` that this file's xattrs
//! record. The crash points ([`state::crash_point`]) are, in order: `after-intent`, then
//! `after-snap-create`, then `after-retired-rm` on one side and `after-stage`, `after-pending`,
//! `after-apply` on the other (the concurrent steps, each killed before the other is done),
//! `after-retire`, `after-rebase`; or `after-base-lost` and `after-full-fetch`.

use super::apply::{self, CHUNK, ImageFile, Mode, Stats};
use super::config::PENDING_SUFFIX;
use super::diff::{DiffReader, Record};
use super::scrub;
use super::state::{
    self, CREATING, PENDING, RECORDED, RETIRED, SNAPID, SNAPSHOT, Xattrs, crash_point,
};
use super::tool::{Rbd, SnapInfo};
use anyhow::{Context, anyhow, bail};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::ScopedJoinHandle;

/// The retired snapshot's removal, running beside the export and apply of the next one.
type Retiring<'scope> = ScopedJoinHandle<'scope, anyhow::Result<()>>;

/// What a unit did, for its summary line and the unit report.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Diff or export bytes received from `rbd`.
    pub bytes_received: u64,
    /// Whether the backup file changed.
    pub changed: bool,
    /// Scrub mismatches repaired (`Some` when a scrub ran).
    pub scrub_mismatches: Option<u64>,
    /// Things worth a warning in the run summary.
    pub warnings: Vec<String>,
}

impl Outcome {
    fn add(&mut self, stats: &Stats) {
        self.bytes_received += stats.data_bytes;
        self.changed |= stats.changed();
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }
}

/// One image unit: `ROOT/rbd/<pool>/images/<friendly>` backing up `pool/image`.
pub struct ImageUnit<'a> {
    rbd: &'a Rbd,
    pool: &'a str,
    image: &'a str,
    path: PathBuf,
    pending: PathBuf,
    xattrs: Xattrs,
}

/// The backup file of a unit: `ROOT/rbd/<pool>/<images|snapshots>/<friendly>`.
pub fn unit_path(root: &Path, pool: &str, kind: super::Kind, friendly: &str) -> PathBuf {
    root.join("rbd").join(pool).join(kind.dir()).join(friendly)
}

/// The staged diff beside an image file: `<file>.pending`.
pub fn pending_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PENDING_SUFFIX);
    path.with_file_name(name)
}

impl<'a> ImageUnit<'a> {
    /// The unit for `pool/image` backed up into `path`.
    pub fn new(rbd: &'a Rbd, pool: &'a str, image: &'a str, path: PathBuf) -> ImageUnit<'a> {
        ImageUnit {
            rbd,
            pool,
            image,
            pending: pending_path(&path),
            xattrs: Xattrs::new(&path),
            path,
        }
    }

    /// Runs the unit: recover, then an incremental update or a full fetch, then the scrub.
    pub fn backup(&self, scrub: bool) -> anyhow::Result<Outcome> {
        let dir = self.path.parent().expect("unit paths have a parent");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut outcome = Outcome::default();
        let fetched_whole = match self.settled_base()? {
            Some(base) => self.next_from_settled(&base, &mut outcome)?,
            None => self.recover_then_next(&mut outcome)?,
        };
        if scrub && fetched_whole {
            // The full fetch just compared every byte with the snapshot.
            outcome.scrub_mismatches = Some(0);
        } else if scrub {
            let snap = self
                .xattrs
                .get(SNAPSHOT)?
                .ok_or_else(|| anyhow!("{} lost its snapshot xattr", self.path.display()))?;
            let mismatches = scrub::scrub(self.rbd, self.pool, self.image, &snap, &self.path)?;
            if mismatches > 0 {
                outcome.warnings.push(format!(
                    "scrub repaired {mismatches} mismatch(es) in {}",
                    self.path.display()
                ));
            }
            outcome.scrub_mismatches = Some(mismatches);
        }
        Ok(outcome)
    }

    /// The base snapshot when the file is settled (module doc, step 2): `snapshot` set, no
    /// `pending-snapshot` or `creating-snapshot` left by an earlier run.
    fn settled_base(&self) -> anyhow::Result<Option<String>> {
        if self.xattrs.get(PENDING)?.is_some() || self.xattrs.get(CREATING)?.is_some() {
            return Ok(None);
        }
        self.xattrs.get(SNAPSHOT)
    }

    /// The snapshots of the image, with a hint when it cannot be listed.
    fn list_snapshots(&self) -> anyhow::Result<Vec<SnapInfo>> {
        self.rbd.snapshots(self.pool, self.image).with_context(|| {
            format!(
                "the RBD image {}/{} cannot be listed: does it exist? (if it was deleted on \
                 purpose, remove it from the config and run `deltaic rbd drop {} FRIENDLY`)",
                self.pool, self.image, self.pool
            )
        })
    }

    /// The common case (module doc, step 2): the new snapshot is recorded, then created while
    /// the image is listed (for the stray report and to confirm the base) and the retired
    /// snapshot is removed. Then an incremental update, or, if the base is gone, a full fetch of
    /// the new snapshot. Returns whether the image was fetched whole.
    fn next_from_settled(&self, base: &str, outcome: &mut Outcome) -> anyhow::Result<bool> {
        let snap = self.record_new_snapshot()?;
        // Read before the retired snapshot's xattr may be cleared: it may still be listed.
        let recorded = self.recorded_snapshots()?;
        let snap = snap.as_str();
        std::thread::scope(|scope| {
            let create = scope.spawn(|| self.rbd.snap_create(self.pool, self.image, snap));
            let listed = self.list_snapshots();
            // A listing error says more (a missing image) than the failed create it implies.
            let snaps = match listed.and_then(|snaps| join(create).map(|()| snaps)) {
                Ok(snaps) => snaps,
                // It may exist anyway (killed by rbd-timeout after the fact): removed if so.
                Err(err) => return Err(self.undo_snapshot(snap, err)),
            };
            crash_point("after-snap-create");
            // `snap` may be listed: it is recorded in `creating-snapshot`, so never a stray.
            self.report_strays(&snaps, &recorded, outcome);
            // Removed while the new snapshot is exported and applied; not while it is created:
            // two snapshot changes at once contend for the image's exclusive lock, and on the
            // CI machine a concurrent `snap create` once died of SIGABRT inside librados.
            let retiring = scope.spawn(|| {
                // Crash tests of the overlap: this side waits while the other is killed.
                for step in ["after-stage", "after-pending", "after-apply"] {
                    state::hold_for_crash(step);
                }
                self.remove_retired()
            });
            if snaps.iter().any(|s| s.name == base) {
                state::hold_for_crash("after-retired-rm");
                self.incremental(base, snap, Some(retiring), outcome)?;
                Ok(false)
            } else {
                self.forget_lost_base(base, outcome)?;
                self.full_fetch(Some(snap.to_string()), outcome)?;
                self.note_retired(join(retiring), outcome);
                Ok(true)
            }
        })
    }

    /// Removes the retired snapshot (the base before the last rebase) and clears
    /// `retired-snapshot`; nothing to do when none is recorded, or when a crash between
    /// retiring it and the rebase left it the base still.
    fn remove_retired(&self) -> anyhow::Result<()> {
        let Some(old) = self.xattrs.get(RETIRED)? else {
            return Ok(());
        };
        if self.xattrs.get(SNAPSHOT)?.as_deref() == Some(old.as_str()) {
            return Ok(());
        }
        remove_snapshot(self.rbd, self.pool, Some(self.image), &old).with_context(|| {
            format!(
                "removing the previous base snapshot {old} of {}",
                self.path.display()
            )
        })?;
        crash_point("after-retired-rm");
        self.xattrs.remove(RETIRED)
    }

    /// A failed removal of the retired snapshot is a warning: it stays recorded, and the next
    /// run tries again.
    fn note_retired(&self, removal: anyhow::Result<()>, outcome: &mut Outcome) {
        if let Err(err) = removal {
            outcome.warn(format!("{err:#}; the next run tries again"));
        }
    }

    /// After a crash, a failure or on the first run (module doc, steps 1 and 3): list the
    /// image, recover, then record and create a new snapshot and update from the base, or
    /// fetch it whole. Returns whether the image was fetched whole.
    fn recover_then_next(&self, outcome: &mut Outcome) -> anyhow::Result<bool> {
        let snaps = self.list_snapshots()?;
        let has = |name: &str| snaps.iter().any(|s: &SnapInfo| s.name == name);
        self.report_strays(&snaps, &self.recorded_snapshots()?, outcome);
        self.recover(&has, outcome)?;
        match self.xattrs.get(SNAPSHOT)? {
            Some(base) if has(&base) => {
                let snap = self.create_snapshot()?;
                self.incremental(&base, &snap, None, outcome)?;
                Ok(false)
            }
            Some(base) => {
                self.forget_lost_base(&base, outcome)?;
                self.full_fetch(None, outcome)?;
                Ok(true)
            }
            None => {
                self.full_fetch(None, outcome)?;
                Ok(true)
            }
        }
    }

    /// The base snapshot is not on the image: warn, remove it from whichever image of the
    /// pool still holds it, and clear `snapshot` (a full fetch follows).
    fn forget_lost_base(&self, base: &str, outcome: &mut Outcome) -> anyhow::Result<()> {
        outcome.warn(format!(
            "base snapshot {base} of {} is not on RBD image {}/{} (removed, or the config now \
             names another image): fetching the whole image again",
            self.path.display(),
            self.pool,
            self.image
        ));
        // If the config names another image now, the old one still holds it. Not finding it
        // must not block the backup forever: it is then only reported.
        if let Err(err) = remove_snapshot(self.rbd, self.pool, None, base) {
            outcome.warn(format!(
                "could not remove the old base snapshot {base} from pool {} ({err:#}); remove \
                 it by hand with `rbd snap rm` if it still exists",
                self.pool
            ));
        }
        self.xattrs.remove(SNAPSHOT)?;
        crash_point("after-base-lost");
        Ok(())
    }

    /// The snapshots this file's xattrs record.
    fn recorded_snapshots(&self) -> anyhow::Result<Vec<String>> {
        let mut recorded = Vec::new();
        for attr in RECORDED {
            recorded.extend(self.xattrs.get(attr)?);
        }
        Ok(recorded)
    }

    /// Warns about `backup-*` snapshots on the image that are not `known` (recorded by this
    /// file: others are another Deltaic's, or leaked by an older version); they are not
    /// removed: they may be in use.
    fn report_strays(&self, snaps: &[SnapInfo], known: &[String], outcome: &mut Outcome) {
        let strays: Vec<&str> = snaps
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| n.starts_with(state::SNAPSHOT_PREFIX) && !known.iter().any(|k| k == n))
            .collect();
        if !strays.is_empty() {
            outcome.warn(format!(
                "RBD image {}/{} has backup snapshot(s) that {} does not record: {} (another \
                 Deltaic's, or leaked by an older version); remove them with `rbd snap rm` if \
                 nothing uses them",
                self.pool,
                self.image,
                self.path.display(),
                strays.join(", ")
            ));
        }
    }

    /// Finishes or undoes what an earlier run left (module doc, step 1).
    fn recover(&self, has: &dyn Fn(&str) -> bool, outcome: &mut Outcome) -> anyhow::Result<()> {
        self.note_retired(self.remove_retired(), outcome);
        if let Some(pending) = self.xattrs.get(PENDING)? {
            match self.usable_staged_diff(&pending, has) {
                Ok(()) => {
                    println!("finishing the staged diff to {pending} left by an earlier run");
                    self.apply_pending(&pending, None, outcome)?;
                }
                Err(why) => self.discard_staged_diff(&pending, &why, outcome)?,
            }
        }
        if let Some(creating) = self.xattrs.get(CREATING)? {
            if self.xattrs.get(SNAPSHOT)?.as_deref() != Some(creating.as_str()) {
                println!("removing snapshot {creating}, left unrecorded by an interrupted run");
                remove_snapshot(self.rbd, self.pool, Some(self.image), &creating)?;
            }
            self.xattrs.remove(CREATING)?;
        }
        remove_if_present(&self.pending)
    }

    /// Whether the staged diff to `pending` can be applied: its snapshot is on the image, and
    /// the whole `.pending` file is a valid stream from the base (or, once rebased, from
    /// anything) to `pending`. Checked before the file is touched.
    fn usable_staged_diff(&self, pending: &str, has: &dyn Fn(&str) -> bool) -> Result<(), String> {
        if !has(pending) {
            return Err("its snapshot is not on the configured image".into());
        }
        let base = self.xattrs.get(SNAPSHOT).map_err(|e| format!("{e:#}"))?;
        let staged =
            File::open(&self.pending).map_err(|e| format!("{}: {e}", self.pending.display()))?;
        let (from, to) = stream_ends(BufReader::with_capacity(CHUNK, staged))
            .map_err(|e| format!("{}: {e:#}", self.pending.display()))?;
        let rebased = base.as_deref() == Some(pending);
        if to.as_deref() != Some(pending) || !(rebased || from == base) {
            return Err(format!(
                "{} leads from {from:?} to {to:?}, the file's base is {base:?}",
                self.pending.display()
            ));
        }
        Ok(())
    }

    /// Gives up a staged diff that cannot be applied. The file may already hold part of it, so
    /// its base is given up too: the pending and base snapshots are removed and the image is
    /// fetched whole (compared block by block, so unchanged blocks are not rewritten).
    fn discard_staged_diff(
        &self,
        pending: &str,
        why: &str,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        outcome.warn(format!(
            "dropping the staged diff to {pending} of {} ({why}); fetching the whole image again",
            self.path.display()
        ));
        remove_snapshot(self.rbd, self.pool, Some(self.image), pending)?;
        if let Some(base) = self.xattrs.get(SNAPSHOT)? {
            if base != pending {
                remove_snapshot(self.rbd, self.pool, Some(self.image), &base)?;
            }
            // Killed between retiring the base and the rebase: it is the retired one too, and
            // gone now, so nothing is left for the next run to remove.
            if self.xattrs.get(RETIRED)?.as_deref() == Some(base.as_str()) {
                self.xattrs.remove(RETIRED)?;
            }
            self.xattrs.remove(SNAPSHOT)?;
        }
        self.xattrs.remove(PENDING)?;
        remove_if_present(&self.pending)
    }

    /// Stages the diff from `base` to the new snapshot `snap` (recorded and created), then
    /// applies and rebases it (after `retiring`, when given, is done).
    fn incremental(
        &self,
        base: &str,
        snap: &str,
        retiring: Option<Retiring<'_>>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        remove_if_present(&self.pending)?;
        if let Err(err) = self.stage(base, snap) {
            let _ = fs::remove_file(&self.pending);
            return Err(self.undo_snapshot(snap, err));
        }
        crash_point("after-stage");
        self.xattrs.set(PENDING, snap)?;
        crash_point("after-pending");
        self.apply_pending(snap, retiring, outcome)
    }

    /// Records a new snapshot name in `creating-snapshot` (durably, before it is created).
    fn record_new_snapshot(&self) -> anyhow::Result<String> {
        let snap = state::new_snapshot_name();
        self.xattrs.set(CREATING, &snap)?;
        crash_point("after-intent");
        Ok(snap)
    }

    /// Records, then creates, a new snapshot of the image.
    fn create_snapshot(&self) -> anyhow::Result<String> {
        let snap = self.record_new_snapshot()?;
        if let Err(err) = self.rbd.snap_create(self.pool, self.image, &snap) {
            // It may exist anyway (killed by rbd-timeout after the fact): removed if so.
            return Err(self.undo_snapshot(&snap, err));
        }
        crash_point("after-snap-create");
        Ok(snap)
    }

    /// Removes a snapshot this run created after a failure, then returns the failure.
    fn undo_snapshot(&self, snap: &str, err: anyhow::Error) -> anyhow::Error {
        match remove_snapshot(self.rbd, self.pool, Some(self.image), snap)
            .and_then(|_| self.xattrs.remove(CREATING))
        {
            Ok(()) => err,
            Err(cleanup) => err.context(format!(
                "also failed to remove snapshot {snap} ({cleanup:#}); the next run retries"
            )),
        }
    }

    /// `export-diff --from-snap base --snap snap` through the strict parser into
    /// `<file>.pending`, fsynced; the stream must lead from `base` to `snap`.
    fn stage(&self, base: &str, snap: &str) -> anyhow::Result<()> {
        let mut export = self
            .rbd
            .export_diff(self.pool, self.image, snap, Some(base))?;
        let line = export.command_line().to_string();
        let file = File::create(&self.pending)
            .with_context(|| format!("creating {}", self.pending.display()))?;
        let mut tee = Tee {
            inner: BufReader::with_capacity(CHUNK, &mut export),
            copy: BufWriter::with_capacity(CHUNK, file),
            error: None,
        };
        let ends = stream_ends(&mut tee);
        if let Some(err) = tee.error.take() {
            return Err(err).with_context(|| format!("writing {}", self.pending.display()));
        }
        let (from, to) = ends.with_context(|| format!("reading the output of `{line}`"))?;
        if from.as_deref() != Some(base) || to.as_deref() != Some(snap) {
            bail!("`{line}` produced a diff from {from:?} to {to:?}, not from {base} to {snap}");
        }
        let file = tee.copy.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
            .with_context(|| format!("syncing {}", self.pending.display()))?;
        export.finish()?;
        crate::util::atomic_file::sync_dir(self.pending.parent().expect("has a parent"))?;
        Ok(())
    }

    /// Applies the staged diff to `snap`, waits for `retiring` (when given), then rebases:
    /// the old base becomes the retired snapshot (or, when the one before could not be
    /// removed, is removed now), `snapshot` = `snap`, the other xattrs cleared,
    /// `<file>.pending` removed.
    fn apply_pending(
        &self,
        snap: &str,
        retiring: Option<Retiring<'_>>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        let base = self.xattrs.get(SNAPSHOT)?.filter(|b| b != snap);
        let applied = self.apply_staged(snap);
        if let Some(retiring) = retiring {
            self.note_retired(join(retiring), outcome);
        }
        let stats = applied?;
        outcome.add(&stats);
        println!(
            "{}: applied the diff to {snap}: {stats}",
            self.path.display()
        );
        if let Some(base) = base {
            match self.xattrs.get(RETIRED)? {
                None => {
                    self.xattrs.set(RETIRED, &base)?;
                    crash_point("after-retire");
                }
                Some(retired) if retired == base => {}
                // At most one snapshot waits for removal: this one goes now.
                Some(_) => remove_snapshot(self.rbd, self.pool, Some(self.image), &base)
                    .with_context(|| {
                        format!(
                            "removing the previous base snapshot {base} of {} (the snapshot \
                             before it could not be removed either); the next run finishes \
                             the staged diff and tries again",
                            self.path.display()
                        )
                    })?,
            }
        }
        self.xattrs.set(SNAPSHOT, snap)?;
        crash_point("after-rebase");
        self.xattrs.remove(PENDING)?;
        self.xattrs.remove(CREATING)?;
        remove_if_present(&self.pending)
    }

    /// Applies `<file>.pending` (which must lead to `snap`) to the file and syncs it.
    fn apply_staged(&self, snap: &str) -> anyhow::Result<Stats> {
        let staged = File::open(&self.pending)
            .with_context(|| format!("opening {}", self.pending.display()))?;
        let mut reader = DiffReader::new(BufReader::with_capacity(CHUNK, staged))
            .with_context(|| format!("reading {}", self.pending.display()))?;
        let mut file = ImageFile::open(&self.path, false)?;
        let stats = apply::apply(&mut reader, &mut file, Mode::Incremental).with_context(|| {
            format!(
                "applying {} to {}; the next run applies it again",
                self.pending.display(),
                self.path.display()
            )
        })?;
        if stats.to_snap.as_deref() != Some(snap) {
            bail!(
                "{} leads to snapshot {:?}, not {snap} as user.rbd.pending-snapshot says; \
                 run `deltaic rbd drop` for this image to start over with a full fetch",
                self.pending.display(),
                stats.to_snap
            );
        }
        file.sync()?;
        // The retired snapshot's `snap rm` may still be running (or not started).
        crash_point("after-apply");
        Ok(stats)
    }

    /// Fetches a new snapshot whole into the file (module doc, step 3): `made` when it is
    /// already recorded and created, else one made now.
    fn full_fetch(&self, made: Option<String>, outcome: &mut Outcome) -> anyhow::Result<()> {
        remove_if_present(&self.pending)?;
        ImageFile::open(&self.path, true)?;
        self.xattrs.remove(SNAPSHOT)?;
        let snap = match made {
            Some(snap) => snap,
            None => self.create_snapshot()?,
        };
        let stats = match scrub::sync_full(self.rbd, self.pool, self.image, &snap, &self.path) {
            Ok(stats) => stats,
            Err(err) => return Err(self.undo_snapshot(&snap, err)),
        };
        crash_point("after-full-fetch");
        self.xattrs.set(SNAPSHOT, &snap)?;
        self.xattrs.remove(CREATING)?;
        outcome.add(&stats);
        println!("{}: fetched {snap} whole: {stats}", self.path.display());
        Ok(())
    }
}

/// The result of a scoped thread (its panic goes on).
fn join<T>(handle: ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Reads a whole stream, checking it; returns its `f` and `t` snapshot names.
fn stream_ends(input: impl Read) -> anyhow::Result<(Option<String>, Option<String>)> {
    let mut reader = DiffReader::new(input)?;
    let (mut from, mut to) = (None, None);
    loop {
        match reader.next_record()? {
            Record::FromSnap(name) => from = Some(name),
            Record::ToSnap(name) => to = Some(name),
            Record::End => return Ok((from, to)),
            _ => {}
        }
    }
}

/// A reader that copies everything it reads into a writer (the staged diff is exactly the
/// bytes the parser consumed). A write error stops reading and is kept for the caller.
struct Tee<R, W> {
    inner: R,
    copy: W,
    error: Option<std::io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.copy.write_all(&buf[..n]) {
            let message = e.to_string();
            self.error = Some(e);
            return Err(std::io::Error::other(message));
        }
        Ok(n)
    }
}

/// Removes Deltaic's snapshot `snap` from `pool/image` when it is there, else from whichever
/// image of `pool` holds it (found with `rbd ls -l`; not at all is fine). A name that is not
/// `backup-*` is left alone with a warning: it is not Deltaic's.
pub fn remove_snapshot(
    rbd: &Rbd,
    pool: &str,
    image: Option<&str>,
    snap: &str,
) -> anyhow::Result<()> {
    if !snap.starts_with(state::SNAPSHOT_PREFIX) {
        tracing::warn!("not removing RBD snapshot {snap}: its name does not start with backup-");
        return Ok(());
    }
    if let Some(image) = image {
        match rbd.snap_remove(pool, image, snap) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            // The image may be gone (deleted after its snapshots were purged): then the
            // snapshot is gone too; any other failure stands.
            Err(err) if !rbd.list_images(pool)?.iter().any(|i| i == image) => {
                tracing::debug!("{err:#} (the image no longer exists)");
            }
            Err(err) => return Err(err),
        }
    }
    let owners = rbd
        .images_with_snapshot(pool, snap)
        .with_context(|| format!("looking for the image holding snapshot {snap} in pool {pool}"))?;
    for owner in owners {
        rbd.snap_remove(pool, &owner, snap)?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Backs up the snapshot unit `ROOT/rbd/<pool>/snapshots/<friendly>` of `spec` (a snapshot
/// name, found in the pool, or `image@snapshot`): fetched whole when its id differs from the
/// recorded `snapid`, then scrubbed when asked.
pub fn backup_snapshot(
    rbd: &Rbd,
    path: &Path,
    pool: &str,
    spec: &str,
    scrub: bool,
) -> anyhow::Result<Outcome> {
    let (image, snap) = match spec.split_once('@') {
        Some((image, snap)) => (image.to_string(), snap.to_string()),
        None => (find_image(rbd, pool, spec)?, spec.to_string()),
    };
    let id = rbd
        .snapshots(pool, &image)?
        .into_iter()
        .find(|s| s.name == snap)
        .map(|s| s.id.to_string())
        .ok_or_else(|| anyhow!("RBD image {pool}/{image} has no snapshot {snap}"))?;
    let dir = path.parent().expect("unit paths have a parent");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let xattrs = Xattrs::new(path);
    let mut outcome = Outcome::default();
    let current = xattrs.get(SNAPID)?.as_deref() == Some(id.as_str())
        && xattrs.get(SNAPSHOT)?.as_deref() == Some(snap.as_str());
    if current {
        println!(
            "{}: snapshot {snap} (id {id}) is already backed up",
            path.display()
        );
    } else {
        if path.exists() {
            xattrs.remove(SNAPID)?;
            xattrs.remove(SNAPSHOT)?;
        }
        let stats = scrub::sync_full(rbd, pool, &image, &snap, path)?;
        xattrs.set(SNAPSHOT, &snap)?;
        xattrs.set(SNAPID, &id)?;
        outcome.add(&stats);
        println!(
            "{}: fetched {pool}/{image}@{snap} (id {id}): {stats}",
            path.display()
        );
    }
    if scrub && current {
        let mismatches = scrub::scrub(rbd, pool, &image, &snap, path)?;
        if mismatches > 0 {
            outcome.warnings.push(format!(
                "scrub repaired {mismatches} mismatch(es) in {}",
                path.display()
            ));
        }
        outcome.scrub_mismatches = Some(mismatches);
    } else if scrub {
        outcome.scrub_mismatches = Some(0);
    }
    Ok(outcome)
}

/// The one image of `pool` that has a snapshot named `snap`.
fn find_image(rbd: &Rbd, pool: &str, snap: &str) -> anyhow::Result<String> {
    let mut owners = rbd.images_with_snapshot(pool, snap)?;
    match owners.len() {
        0 => bail!("no RBD image in pool {pool} has a snapshot named {snap}"),
        1 => Ok(owners.remove(0)),
        _ => bail!(
            "several RBD images in pool {pool} have a snapshot named {snap} ({}): write \
             IMAGE@{snap} in the config to say which",
            owners.join(", ")
        ),
    }
}

/// `rbd drop`: removes the snapshots this image file's xattrs record (pending, creating,
/// retired, base), clearing each xattr only once its snapshot is confirmed gone, then the staged
/// diff. The file itself stays; the next backup fetches the image whole.
pub fn drop_image(rbd: &Rbd, path: &Path, pool: &str, image: Option<&str>) -> anyhow::Result<()> {
    let pending = pending_path(path);
    if !path.exists() {
        println!("{} does not exist: nothing to drop", path.display());
        return remove_if_present(&pending);
    }
    let xattrs = Xattrs::new(path);
    for attr in RECORDED {
        if let Some(snap) = xattrs.get(attr)? {
            remove_snapshot(rbd, pool, image, &snap).with_context(|| {
                format!(
                    "dropping snapshot {snap} ({attr} of {}); fix the cause and run `deltaic \
                     rbd drop` again (what is already dropped stays dropped)",
                    path.display()
                )
            })?;
            xattrs.remove(attr)?;
            if attr == PENDING {
                remove_if_present(&pending)?;
            }
        }
    }
    remove_if_present(&pending)?;
    println!(
        "{}: Deltaic's snapshots are gone; the image can be deleted (then remove it from the \
         config), or its next backup fetches it whole",
        path.display()
    );
    Ok(())
}

/// `rbd restore`: imports a complete backup file (or snapshot file) as a new image, with
/// `features` (`--image-feature`) when any are given.
pub fn restore(
    rbd: &Rbd,
    path: &Path,
    pool: &str,
    image: &str,
    features: &[String],
) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!(
            "{} is not a backup file: give an image or snapshot unit's file, \
             ROOT/rbd/POOL/images/NAME or ROOT/rbd/POOL/snapshots/NAME (or the same path in a \
             snapshot of the backup)",
            path.display()
        );
    }
    let xattrs = Xattrs::new(path);
    if let Some(pending) = xattrs.get(PENDING)? {
        bail!(
            "{} has a partially-applied diff (user.rbd.pending-snapshot = {pending}): restore \
             from the live backup after the next successful run, or from an older snapshot",
            path.display()
        );
    }
    if xattrs.get(SNAPSHOT)?.is_none() {
        bail!(
            "{} is incomplete (no user.rbd.snapshot: a fetch was interrupted); restore from an \
             older snapshot of the backup",
            path.display()
        );
    }
    rbd.import(path, pool, image, features)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::rbd::diff::testing::{fixture, stream};

    #[test]
    fn stream_ends_are_read_from_a_whole_stream_only() {
        let bytes = stream(&[
            (Record::FromSnap("a".into()), vec![]),
            (Record::ToSnap("b".into()), vec![]),
            (Record::Size(1), vec![]),
            (Record::End, vec![]),
        ]);
        let ends = stream_ends(&bytes[..]).unwrap();
        assert_eq!(ends, (Some("a".into()), Some("b".into())));
        assert!(stream_ends(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn the_tee_copies_exactly_what_the_parser_read() {
        let bytes = fixture("t-s1-s2.diff");
        let mut tee = Tee {
            inner: &bytes[..],
            copy: Vec::new(),
            error: None,
        };
        let ends = stream_ends(&mut tee).unwrap();
        assert_eq!(ends, (Some("s1".into()), Some("s2".into())));
        assert_eq!(tee.copy, bytes);
        assert_eq!(
            pending_path(Path::new("/b/rbd/p/images/vm1")),
            Path::new("/b/rbd/p/images/vm1.pending")
        );
    }
}
