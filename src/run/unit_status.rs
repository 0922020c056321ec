//! Each unit's last outcome, kept across runs in `ROOT/.deltaic/unit-status.json`
//! (`{"rsync/octopus": {"status": "ok", "time": "2024-01-02T03:04:05+01:00"}, ...}`).
//!
//! A unit whose last run failed may have left torn files in the tree (rsync `--inplace`), and
//! they stay there until the unit next succeeds, whatever other runs do meanwhile. So whether a
//! snapshot is complete is judged over the *full* plan ([`judge`]): every configured unit must
//! have succeeded the last time it ran (a unit that never ran counts as not ok), and every source
//! must have been planned. `deltaic run` updates the file for the units it ran, before its
//! manifest, holding `.lock/backup` exclusively; a unit run by hand updates its own entry
//! ([`super::unit_session`]) under `.lock/unit-status`, holding `.lock/backup` shared; `deltaic
//! snapshot` only reads it. So the read-modify-writes never race. The file is replaced
//! atomically.

use super::manifest::{UnitRecord, UnitStatus, state_dir};
use crate::sources::UnitRoot;
use crate::util::atomic_file;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One unit's last outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastOutcome {
    /// How it ended.
    pub status: UnitStatus,
    /// When (RFC 3339): the end of the run that ran it.
    pub time: String,
}

/// Every unit's last outcome, by unit root.
pub type UnitStatuses = BTreeMap<UnitRoot, LastOutcome>;

/// Where the statuses live: `ROOT/.deltaic/unit-status.json`.
pub fn path(root: &Path) -> PathBuf {
    state_dir(root).join("unit-status.json")
}

/// Reads the statuses. A missing file is empty (no unit ran yet); an unreadable one is empty
/// too, with a warning: every unit then counts as not ok until it runs again.
pub fn load(root: &Path) -> UnitStatuses {
    let path = path(root);
    let parsed = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(anyhow::Error::from),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return UnitStatuses::new(),
        Err(e) => Err(e.into()),
    };
    parsed.unwrap_or_else(|err| {
        tracing::warn!(
            "cannot read the units' last outcomes from {} ({err:#}); every unit counts as not \
             backed up until it runs again",
            path.display()
        );
        UnitStatuses::new()
    })
}

/// Records the outcome of each unit in `ran`, at `time`.
pub fn update<'a>(
    statuses: &mut UnitStatuses,
    ran: impl IntoIterator<Item = &'a UnitRecord>,
    time: &str,
) {
    for record in ran {
        statuses.insert(
            record.unit.clone(),
            LastOutcome {
                status: record.status,
                time: time.to_string(),
            },
        );
    }
}

/// Writes the statuses atomically.
pub fn save(root: &Path, statuses: &UnitStatuses) -> anyhow::Result<()> {
    let path = path(root);
    let mut json = serde_json::to_vec_pretty(statuses)?;
    json.push(b'\n');
    atomic_file::write(&path, &json)
        .with_context(|| format!("writing the units' last outcomes {}", path.display()))
}

/// Whether the tree is complete, and if not, which units make it partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// No planning error, and every unit of the full plan last succeeded.
    pub complete: bool,
    /// The units of the full plan whose last outcome is not ok (or which never ran).
    pub units_not_ok: Vec<UnitRoot>,
}

/// Judges the tree: `full_plan` is every unit of every source (not only those a run selected),
/// `planning_failed` whether some source could not be planned (its units are unknown).
pub fn judge<'a>(
    statuses: &UnitStatuses,
    full_plan: impl IntoIterator<Item = &'a UnitRoot>,
    planning_failed: bool,
) -> Verdict {
    let units_not_ok: Vec<UnitRoot> = full_plan
        .into_iter()
        .filter(|unit| statuses.get(*unit).map(|o| o.status) != Some(UnitStatus::Ok))
        .cloned()
        .collect();
    Verdict {
        complete: !planning_failed && units_not_ok.is_empty(),
        units_not_ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::manifest::UnitReport;

    fn root(name: &str) -> UnitRoot {
        UnitRoot::try_from(name.to_string()).unwrap()
    }

    fn record(name: &str, status: UnitStatus) -> UnitRecord {
        UnitRecord {
            unit: root(name),
            status,
            exit_code: None,
            duration_secs: 0.0,
            report: UnitReport::default(),
        }
    }

    #[test]
    fn statuses_survive_a_round_trip_and_later_runs_update_only_their_units() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let mut statuses = load(dir.path());
        let first = [
            record("rsync/a", UnitStatus::Ok),
            record("rsync/b", UnitStatus::Failed),
        ];
        update(&mut statuses, &first, "2024-01-01T01:00:00Z");
        save(dir.path(), &statuses).unwrap();

        let mut statuses = load(dir.path());
        update(
            &mut statuses,
            &[record("rsync/a", UnitStatus::TimedOut)],
            "2024-01-02T01:00:00Z",
        );
        save(dir.path(), &statuses).unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "rsync/a": {"status": "timed-out", "time": "2024-01-02T01:00:00Z"},
                "rsync/b": {"status": "failed", "time": "2024-01-01T01:00:00Z"},
            })
        );
        let leftovers: Vec<_> = std::fs::read_dir(state_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["unit-status.json"], "no temporary file left");
    }

    #[test]
    fn a_garbled_file_counts_as_no_unit_ever_succeeding() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(state_dir(dir.path())).unwrap();
        std::fs::write(path(dir.path()), "{not json").unwrap();
        let statuses = load(dir.path());
        assert!(statuses.is_empty());
        let verdict = judge(&statuses, &[root("rsync/a")], false);
        assert!(!verdict.complete);
    }

    #[test]
    fn complete_needs_every_unit_of_the_full_plan_ok_and_no_planning_error() {
        let mut statuses = UnitStatuses::new();
        update(
            &mut statuses,
            &[
                record("rsync/a", UnitStatus::Ok),
                record("rsync/b", UnitStatus::Failed),
                record("rsync/gone", UnitStatus::Failed),
            ],
            "t",
        );
        let (a, b, new) = (root("rsync/a"), root("rsync/b"), root("rsync/new"));
        assert_eq!(
            judge(&statuses, [&a], false),
            Verdict {
                complete: true,
                units_not_ok: vec![]
            }
        );
        assert!(!judge(&statuses, [&a], true).complete, "planning failed");
        // A failed unit, and one that never ran; a unit no longer configured does not count.
        assert_eq!(
            judge(&statuses, [&a, &b, &new], false),
            Verdict {
                complete: false,
                units_not_ok: vec![b.clone(), new.clone()]
            }
        );
        assert!(judge(&statuses, [], false).complete);
    }
}
