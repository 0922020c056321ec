//! Deciding whether this backup may run `rsync --inplace`, and preparing the destination for it.
//!
//! `--inplace` keeps the unchanged blocks of a changed file shared with older snapshots, but it
//! writes through hard links of the backup ([`hardlinks`]). So before rsync runs:
//!
//! 1. The destination is walked for regular files with more than one link. Without any (most
//!    hosts), nothing else happens.
//! 2. `rsync --dry-run` with the real argv lists what the transfer will change. Only the
//!    multiply-linked names it will change (data or attributes, [`Itemized::changes_existing_file`])
//!    get their own inode: cloned where the filesystem can clone (probed once, outside the
//!    backed-up tree), copied elsewhere. An unchanged tree splits nothing, so rsync has no
//!    links to make again (no `hf` lines, no changed directory times).
//! 3. A scrub (`--checksum`) skips the dry run, which would read every file twice: it clones
//!    every multiply-linked name, or runs without `--inplace` where cloning is impossible.
//!    A failed dry run is handled the same way.
//!
//! The host can change between the dry run and the transfer. [`Guard`] watches the transfer's
//! itemized lines: a change to a name that was still linked means rsync may have written
//! through the link. [`Guard::repair`] then gives every name of that inode its own inode and an
//! mtime of 0, so the next rsync pass (run at once by the caller) sends each of them again.
//!
//! Every reason to run without `--inplace` is a warning in the unit report.

use super::filter::Itemized;
use super::hardlinks::{self, InodeKey, Linked, Method};
use super::transfer::{self, Output, Transfer};
use crate::util::file_time;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the backup is about to do.
pub struct Request<'a> {
    /// The host, for messages.
    pub host: &'a str,
    /// `ROOT/rsync/<alias>`.
    pub dest: &'a Path,
    /// A directory on the backup filesystem outside `dest`, for the clone probe.
    pub scratch: &'a Path,
    /// A name for the probe's scratch files, unique to this unit (its lock's name).
    pub scratch_stem: &'a str,
    /// Whether this run compares by checksum.
    pub scrub: bool,
}

/// The outcome of [`prepare`].
pub struct Prepared {
    /// Whether rsync may run with `--inplace`.
    pub inplace: bool,
    /// Why not, or what else degraded (for the unit report; already logged).
    pub warnings: Vec<String>,
    /// Watches the transfer for writes through links that were left in place.
    pub guard: Guard,
}

/// Prepares `request.dest` for `--inplace` (see the module doc). `dry_run_argv` gives the
/// transfer's argv with `--dry-run`; it is called only when the dry run is needed.
pub fn prepare(request: &Request<'_>, dry_run_argv: impl FnOnce() -> Vec<OsString>) -> Prepared {
    let host = request.host;
    let mut warnings = Vec::new();
    let linked = match Linked::scan(request.dest) {
        Ok(linked) => linked,
        Err(err) => {
            let warning = format!(
                "{host}: could not list the hard links of the backup ({err:#}); rsync runs \
                 without --inplace this time, so changed files are rewritten whole"
            );
            return Prepared::without_inplace(warning, request.dest);
        }
    };
    let mut guard = Guard::new(request.dest, linked);
    if guard.linked.is_empty() {
        return Prepared {
            inplace: true,
            warnings,
            guard,
        };
    }
    guard.method = match hardlinks::clone_supported(request.scratch, request.scratch_stem) {
        Ok(true) => Method::Clone,
        Ok(false) => Method::Copy,
        Err(err) => {
            let warning = format!(
                "could not test whether the backup filesystem can clone files (a scratch file \
                 in {}: {err}); hard-linked files about to change are copied instead",
                request.scratch.display()
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
            Method::Copy
        }
    };
    let targets = if request.scrub {
        None
    } else {
        changed_linked_names(request, &guard.linked, dry_run_argv)
    };
    let targets = match targets {
        Some(targets) => targets,
        None if guard.method == Method::Clone => guard.linked.all_but_one(),
        None => {
            let why = if request.scrub {
                "this scrub".to_string()
            } else {
                "this run (the dry run failed)".to_string()
            };
            let warning = format!(
                "{host}: {why} runs without --inplace: the backup holds {} hard-linked files \
                 and its filesystem cannot clone them, so changed files are rewritten whole \
                 this time",
                guard.linked.names()
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
            return Prepared {
                inplace: false,
                warnings,
                guard,
            };
        }
    };
    match guard.split(targets.iter().map(|(p, k)| (p.as_path(), *k))) {
        Ok(count) => {
            if count > 0 {
                tracing::info!(
                    "{host}: gave {count} hard-linked file(s) their own inode ({}) before \
                     rsync --inplace",
                    guard.method.verb()
                );
            }
            Prepared {
                inplace: true,
                warnings,
                guard,
            }
        }
        Err(warning) => {
            let warning = format!("{host}: {warning}; rsync runs without --inplace this time");
            tracing::warn!("{warning}");
            warnings.push(warning);
            Prepared {
                inplace: false,
                warnings,
                guard,
            }
        }
    }
}

impl Prepared {
    /// No `--inplace`, for `warning` (logged here).
    fn without_inplace(warning: String, dest: &Path) -> Prepared {
        tracing::warn!("{warning}");
        Prepared {
            inplace: false,
            warnings: vec![warning],
            guard: Guard::new(dest, Linked::default()),
        }
    }
}

/// Runs the dry run and returns the multiply-linked names it will change; `None` when the dry
/// run failed (its reason logged).
fn changed_linked_names(
    request: &Request<'_>,
    linked: &Linked,
    dry_run_argv: impl FnOnce() -> Vec<OsString>,
) -> Option<Vec<(PathBuf, InodeKey)>> {
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    let dry = transfer::run_observed(&dry_run_argv(), request.host, Output::Quiet, &mut |item| {
        if let Some((path, key)) = linked_target(request.dest, linked, item)
            && seen.insert(path.clone())
        {
            targets.push((path, key));
        }
    });
    match dry {
        Ok(dry) if dry_run_is_usable(&dry) => Some(targets),
        Ok(dry) => {
            let detail = dry
                .last_error_line
                .map(|line| format!(": {line}"))
                .unwrap_or_default();
            tracing::warn!(
                "{}: the dry run that finds hard-linked files about to change failed ({}{detail})",
                request.host,
                transfer::describe_status(dry.status)
            );
            None
        }
        Err(err) => {
            tracing::warn!("{}: the dry run could not run: {err:#}", request.host);
            None
        }
    }
}

/// Whether a dry run listed every file rsync could read: success, vanished files (24), or
/// files it could not read (23), which the real transfer cannot read either.
fn dry_run_is_usable(dry: &Transfer) -> bool {
    matches!(dry.status.code(), Some(0 | 23 | 24))
}

/// The destination path and walk inode of `item`, if it changes a multiply-linked name.
fn linked_target(dest: &Path, linked: &Linked, item: &Itemized<'_>) -> Option<(PathBuf, InodeKey)> {
    if !item.changes_existing_file() {
        return None;
    }
    let path = dest.join(OsStr::from_bytes(&item.relative_path()));
    linked.inode_of(&path).map(|key| (path, key))
}

/// The argv of the dry run: `argv` with `--dry-run` after the program.
pub fn dry_run_argv(argv: &[OsString]) -> Vec<OsString> {
    let mut dry = argv.to_vec();
    dry.insert(1.min(dry.len()), "--dry-run".into());
    dry
}

/// Watches a transfer for changes to names that still shared an inode when it started.
pub struct Guard {
    dest: PathBuf,
    linked: Linked,
    method: Method,
    split: HashSet<PathBuf>,
    hits: Vec<(PathBuf, InodeKey)>,
}

impl Guard {
    fn new(dest: &Path, linked: Linked) -> Guard {
        Guard {
            dest: dest.to_path_buf(),
            linked,
            method: Method::Copy,
            split: HashSet::new(),
            hits: Vec::new(),
        }
    }

    /// Takes one itemized line of the transfer into account.
    pub fn watch(&mut self, item: &Itemized<'_>) {
        if let Some((path, key)) = linked_target(&self.dest, &self.linked, item)
            && !self.split.contains(&path)
        {
            self.hits.push((path, key));
        }
    }

    /// Names changed by the transfer although they still shared an inode (see the module doc).
    pub fn hits(&self) -> usize {
        self.hits.len()
    }

    /// Gives `targets` their own inodes; returns how many needed it, or a message naming the
    /// file that could not be split. Names that no longer share their inode are not watched.
    fn split<'p>(
        &mut self,
        targets: impl IntoIterator<Item = (&'p Path, InodeKey)>,
    ) -> Result<usize, String> {
        let mut count = 0;
        let mut keys = HashSet::new();
        for (path, key) in targets {
            match hardlinks::give_own_inode(path, key, self.method) {
                Ok(done) => count += usize::from(done.is_some()),
                Err(e) => {
                    return Err(format!(
                        "giving hard-linked {} its own inode failed: {e}",
                        path.display()
                    ));
                }
            }
            self.split.insert(path.to_path_buf());
            keys.insert(key);
        }
        for key in keys {
            let names = self.linked.group(key);
            let still_linked = names
                .iter()
                .filter(|name| {
                    std::fs::symlink_metadata(name).is_ok_and(|m| (m.dev(), m.ino()) == key)
                })
                .count();
            if still_linked <= 1 {
                self.split.extend(names.iter().map(|n| n.to_path_buf()));
            }
        }
        Ok(count)
    }

    /// After hits: gives every name of each hit inode its own inode and the mtime 0, so the
    /// next rsync pass sends each of them again; returns the names treated. The guard then
    /// watches only the other links.
    pub fn repair(&mut self) -> Result<usize, String> {
        let keys: HashSet<InodeKey> = self.hits.drain(..).map(|(_, key)| key).collect();
        let mut names: Vec<(PathBuf, InodeKey)> = keys
            .into_iter()
            .flat_map(|key| {
                self.linked
                    .group(key)
                    .iter()
                    .map(move |name| (name.to_path_buf(), key))
            })
            .collect();
        names.sort();
        self.split(names.iter().map(|(p, k)| (p.as_path(), *k)))?;
        for (path, _) in &names {
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.is_file() && meta.nlink() == 1 => {
                    file_time::set_mtime(path, 0).map_err(|e| e.to_string())?;
                }
                _ => {}
            }
        }
        Ok(names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A stand-in rsync for the dry run: prints `lines` as its stdout and exits with `code`.
    fn fake_dry_run(lines: &str, code: i32) -> Vec<OsString> {
        let script = format!("printf '{lines}'; exit {code}");
        ["sh", "-c", &script].iter().map(OsString::from).collect()
    }

    /// dest/srv/{a,b} linked, dest/srv/{c,d} linked, dest/srv/e alone.
    fn dest_with_links() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        let scratch = dir.path().join("scratch");
        fs::create_dir_all(dest.join("srv")).unwrap();
        fs::create_dir_all(&scratch).unwrap();
        fs::write(dest.join("srv/a"), "ab").unwrap();
        fs::hard_link(dest.join("srv/a"), dest.join("srv/b")).unwrap();
        fs::write(dest.join("srv/c"), "cd").unwrap();
        fs::hard_link(dest.join("srv/c"), dest.join("srv/d")).unwrap();
        fs::write(dest.join("srv/e"), "e").unwrap();
        (dir, dest, scratch)
    }

    fn nlink(path: &Path) -> u64 {
        fs::metadata(path).unwrap().nlink()
    }

    #[test]
    fn only_linked_names_the_dry_run_changes_are_split() {
        let (_dir, dest, scratch) = dest_with_links();
        let request = Request {
            host: "h",
            dest: &dest,
            scratch: &scratch,
            scratch_stem: "rsync-h",
            scrub: false,
        };
        let lines = ">f.st...... /srv/b\\n.f........x srv/e\\nhf          srv/d => srv/c\\n";
        let prepared = prepare(&request, || fake_dry_run(lines, 0));
        assert!(prepared.inplace);
        assert!(prepared.warnings.is_empty(), "{:?}", prepared.warnings);
        assert_eq!(
            (nlink(&dest.join("srv/a")), nlink(&dest.join("srv/b"))),
            (1, 1)
        );
        assert_eq!(nlink(&dest.join("srv/c")), 2, "a re-link is no write");
        assert_eq!(fs::read(dest.join("srv/b")).unwrap(), b"ab");
        assert_eq!(
            fs::read_dir(&scratch).unwrap().count(),
            0,
            "probe files removed"
        );
        // `a` is alone now: the transfer may change it without writing through anything.
        let mut guard = prepared.guard;
        guard.watch(&Itemized::parse(b">f.st...... srv/a").unwrap());
        assert_eq!(guard.hits(), 0);
        guard.watch(&Itemized::parse(b">f.st...... srv/c").unwrap());
        assert_eq!(guard.hits(), 1, "c is still linked to d");
    }

    #[test]
    fn an_unchanged_tree_splits_nothing_and_needs_no_dry_run_without_links() {
        let (_dir, dest, scratch) = dest_with_links();
        let request = Request {
            host: "h",
            dest: &dest,
            scratch: &scratch,
            scratch_stem: "rsync-h",
            scrub: false,
        };
        let prepared = prepare(&request, || fake_dry_run("", 0));
        assert!(prepared.inplace && prepared.warnings.is_empty());
        assert_eq!(nlink(&dest.join("srv/a")), 2);
        assert_eq!(nlink(&dest.join("srv/c")), 2);

        let plain = tempfile::tempdir().unwrap();
        fs::write(plain.path().join("x"), "x").unwrap();
        let request = Request {
            dest: plain.path(),
            ..request
        };
        let prepared = prepare(&request, || panic!("no links, no dry run"));
        assert!(prepared.inplace);
    }

    #[test]
    fn a_failed_dry_run_or_a_scrub_splits_all_or_gives_up_inplace_with_a_warning() {
        for scrub in [false, true] {
            let (_dir, dest, scratch) = dest_with_links();
            let clones = hardlinks::clone_supported(&scratch, "probe").unwrap();
            let request = Request {
                host: "h.example.org",
                dest: &dest,
                scratch: &scratch,
                scratch_stem: "rsync-h",
                scrub,
            };
            let prepared = prepare(&request, || {
                assert!(!scrub, "a scrub runs no dry run");
                fake_dry_run("", 12)
            });
            if clones {
                assert!(prepared.inplace);
                assert_eq!(nlink(&dest.join("srv/a")), 1);
                assert_eq!(nlink(&dest.join("srv/c")), 1);
            } else {
                assert!(!prepared.inplace);
                assert_eq!(prepared.warnings.len(), 1, "{:?}", prepared.warnings);
                let warning = &prepared.warnings[0];
                assert!(
                    warning.contains("h.example.org") && warning.contains("without --inplace"),
                    "{warning}"
                );
                assert_eq!(nlink(&dest.join("srv/a")), 2, "nothing copied");
            }
        }
    }

    #[test]
    fn a_change_to_a_name_still_linked_is_caught_and_repaired() {
        let (_dir, dest, scratch) = dest_with_links();
        let request = Request {
            host: "h",
            dest: &dest,
            scratch: &scratch,
            scratch_stem: "rsync-h",
            scrub: false,
        };
        let mut prepared = prepare(&request, || fake_dry_run(">f.st...... srv/a\\n", 0));
        let guard = &mut prepared.guard;
        // The transfer changes `a` (split before) and `d` (still linked to `c`).
        for line in [
            &b">f.st...... srv/a"[..],
            b">f.st...... srv/d",
            b">f+++++++++ srv/new",
        ] {
            guard.watch(&Itemized::parse(line).unwrap());
        }
        assert_eq!(guard.hits(), 1);
        assert_eq!(guard.repair().unwrap(), 2, "both names of the c/d inode");
        for name in ["srv/c", "srv/d"] {
            let meta = fs::metadata(dest.join(name)).unwrap();
            assert_eq!((meta.nlink(), meta.mtime()), (1, 0), "{name}");
        }
        assert_eq!(guard.hits(), 0);
        guard.watch(&Itemized::parse(b">f..t...... srv/d").unwrap());
        assert_eq!(guard.hits(), 0, "repaired names are no longer watched");
    }

    #[test]
    fn the_dry_run_argv_is_the_real_one_with_dry_run() {
        let argv: Vec<OsString> = ["rsync", "-aHRxi", "--inplace", "src", "dest"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            dry_run_argv(&argv),
            ["rsync", "--dry-run", "-aHRxi", "--inplace", "src", "dest"]
                .iter()
                .map(OsString::from)
                .collect::<Vec<_>>()
        );
    }
}
