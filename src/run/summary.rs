//! The end of a run: the [`RunManifest`] built from the unit records (D3), and the one-line
//! summary printed on stderr when something went wrong (and at `-v` otherwise).

use super::RunOutcome;
use super::manifest::{Coverage, MANIFEST_VERSION, RunManifest, UnitRecord, UnitStatus};
use super::plan::PlanningError;
use jiff::ZonedDateTime;

/// `at` in RFC 3339 with its UTC offset, to the second (`2024-01-02T03:04:05+01:00`).
pub fn rfc3339(at: &ZonedDateTime) -> String {
    let at = at.round(jiff::Unit::Second).unwrap_or_else(|_| at.clone());
    at.timestamp().display_with_offset(at.offset()).to_string()
}

/// The manifest of a run that started and finished at the given times (no snapshot yet).
/// Here the run is complete when every source could be planned and every unit succeeded; the
/// driver then narrows `complete` to the whole tree ([`super::unit_status::judge`]).
pub fn build_manifest(
    started: &ZonedDateTime,
    finished: &ZonedDateTime,
    planning_errors: &[PlanningError],
    units: Vec<UnitRecord>,
) -> RunManifest {
    RunManifest {
        version: MANIFEST_VERSION,
        deltaic_version: env!("CARGO_PKG_VERSION").to_string(),
        started: rfc3339(started),
        finished: rfc3339(finished),
        snapshot: None,
        complete: planning_errors.is_empty() && units.iter().all(|u| u.status == UnitStatus::Ok),
        planning_errors: planning_errors.iter().map(ToString::to_string).collect(),
        units,
        coverage: Coverage::default(),
    }
}

/// How many failed unit names the summary line lists before eliding the rest.
const NAMES_SHOWN: usize = 5;

/// One line saying how the run went, e.g.
/// `deltaic run: 1 of 3 units failed (rsync/a); snapshot 20240102-1 taken, recorded as partial`.
pub fn one_line(outcome: &RunOutcome) -> String {
    let manifest = &outcome.manifest;
    let total = manifest.units.len();
    let failed: Vec<&UnitRecord> = manifest
        .units
        .iter()
        .filter(|u| u.status != UnitStatus::Ok)
        .collect();
    let mut parts = Vec::new();
    if failed.is_empty() {
        parts.push(match total {
            0 => "no units to back up".to_string(),
            1 => "the unit succeeded".to_string(),
            n => format!("all {n} units succeeded"),
        });
    } else {
        let names = elided(failed.iter().map(|u| u.unit.as_str()));
        let timed_out = failed
            .iter()
            .filter(|u| u.status == UnitStatus::TimedOut)
            .count();
        let timed_out = if timed_out > 0 {
            format!(", {timed_out} of them timed out")
        } else {
            String::new()
        };
        parts.push(format!(
            "{} of {total} units failed ({names}){timed_out}",
            failed.len(),
        ));
    }
    parts.extend(earlier_problems(manifest));
    parts.push(match &outcome.snapshot {
        Some(name) if manifest.complete => format!("snapshot {name} taken"),
        Some(name) => format!("snapshot {name} taken, recorded as partial"),
        None if outcome.snapshot_requested => "no snapshot taken".to_string(),
        None => "no snapshot requested".to_string(),
    });
    format!("deltaic run: {}", parts.join("; "))
}

/// Why a record is partial beyond the failures of its own units: sources that could not be
/// planned, and units whose last run (before this one, or never) did not succeed.
pub fn earlier_problems(manifest: &RunManifest) -> Vec<String> {
    let mut parts = Vec::new();
    let unplanned = |errors: &[String], what: &str| {
        let sources: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap_or(e))
            .collect();
        let count = match sources.len() {
            1 => format!("1 {what}source"),
            n => format!("{n} {what}sources"),
        };
        format!("{count} could not be planned ({})", sources.join(", "))
    };
    if !manifest.planning_errors.is_empty() {
        parts.push(unplanned(&manifest.planning_errors, ""));
    }
    let coverage = &manifest.coverage;
    if !coverage.left_out_planning_errors.is_empty() {
        parts.push(unplanned(&coverage.left_out_planning_errors, "unselected "));
    }
    let earlier: Vec<&str> = coverage
        .units_not_ok
        .iter()
        .filter(|u| !manifest.units.iter().any(|r| &r.unit == *u))
        .map(|u| u.as_str())
        .collect();
    if !earlier.is_empty() {
        let count = earlier.len();
        parts.push(format!(
            "{count} {} did not succeed in {} last run or never ran ({})",
            if count == 1 { "unit" } else { "units" },
            if count == 1 { "its" } else { "their" },
            elided(earlier.into_iter())
        ));
    }
    parts
}

/// The first [`NAMES_SHOWN`] names, comma-separated, then `…` if there are more.
fn elided<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut shown: Vec<&str> = names.iter().take(NAMES_SHOWN).copied().collect();
    if names.len() > NAMES_SHOWN {
        shown.push("…");
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::manifest::UnitReport;
    use crate::sources::UnitRoot;

    fn record(name: &str, status: UnitStatus) -> UnitRecord {
        UnitRecord {
            unit: UnitRoot::try_from(name.to_string()).unwrap(),
            status,
            exit_code: None,
            duration_secs: 1.5,
            report: UnitReport::default(),
        }
    }

    fn at(h: i8) -> ZonedDateTime {
        jiff::civil::date(2024, 1, 2)
            .at(h, 4, 5, 600_000_000)
            .to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(1)))
            .unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339_with_offset() {
        assert_eq!(rfc3339(&at(3)), "2024-01-02T03:04:06+01:00");
    }

    #[test]
    fn a_run_is_complete_only_without_failures_or_planning_errors() {
        let ok = build_manifest(&at(1), &at(2), &[], vec![record("rsync/a", UnitStatus::Ok)]);
        assert!(ok.complete);
        assert_eq!(ok.started, "2024-01-02T01:04:06+01:00");
        assert_eq!(ok.finished, "2024-01-02T02:04:06+01:00");
        assert_eq!(ok.version, MANIFEST_VERSION);
        assert_eq!(ok.snapshot, None);

        let timed_out = build_manifest(
            &at(1),
            &at(2),
            &[],
            vec![record("rsync/a", UnitStatus::TimedOut)],
        );
        assert!(!timed_out.complete);

        let error = PlanningError {
            source: "github",
            message: "HTTP 502".into(),
        };
        let unplanned = build_manifest(
            &at(1),
            &at(2),
            &[error],
            vec![record("rsync/a", UnitStatus::Ok)],
        );
        assert!(!unplanned.complete);
        assert_eq!(unplanned.planning_errors, ["github: HTTP 502"]);
    }

    fn outcome(manifest: RunManifest, snapshot: Option<&str>) -> RunOutcome {
        RunOutcome {
            manifest,
            snapshot: snapshot.map(|s| s.parse().unwrap()),
            snapshot_requested: true,
            problems: vec![],
        }
    }

    #[test]
    fn the_summary_line_names_failures_and_the_snapshot() {
        let units = vec![
            record("rsync/a", UnitStatus::Failed),
            record("rsync/b", UnitStatus::Ok),
            record("rsync/c", UnitStatus::TimedOut),
        ];
        let error = PlanningError {
            source: "github",
            message: "HTTP 502: bad gateway".into(),
        };
        let manifest = build_manifest(&at(1), &at(2), &[error], units);
        assert_eq!(
            one_line(&outcome(manifest, Some("20240102-1"))),
            "deltaic run: 2 of 3 units failed (rsync/a, rsync/c), 1 of them timed out; \
             1 source could not be planned (github); snapshot 20240102-1 taken, recorded as partial"
        );
        let good = build_manifest(
            &at(1),
            &at(2),
            &[],
            vec![record("rsync/a", UnitStatus::Ok); 2],
        );
        assert_eq!(
            one_line(&outcome(good.clone(), Some("20240102-2"))),
            "deltaic run: all 2 units succeeded; snapshot 20240102-2 taken"
        );
        assert_eq!(
            one_line(&outcome(good, None)),
            "deltaic run: all 2 units succeeded; no snapshot taken"
        );
    }

    #[test]
    fn earlier_problems_name_units_of_other_runs_and_unplanned_sources() {
        let mut manifest = build_manifest(
            &at(1),
            &at(2),
            &[],
            vec![record("rsync/a", UnitStatus::Failed)],
        );
        assert!(earlier_problems(&manifest).is_empty());
        let root = |n: &str| crate::sources::UnitRoot::try_from(n.to_string()).unwrap();
        // rsync/a failed in this run: the summary names it already, not again here.
        manifest.coverage.units_not_ok = vec![root("rsync/a"), root("rsync/b"), root("rsync/c")];
        manifest.coverage.left_out_planning_errors = vec!["github: HTTP 502".into()];
        assert_eq!(
            earlier_problems(&manifest),
            [
                "1 unselected source could not be planned (github)",
                "2 units did not succeed in their last run or never ran (rsync/b, rsync/c)"
            ]
        );
    }

    #[test]
    fn long_failure_lists_are_elided() {
        let units: Vec<UnitRecord> = (0..8)
            .map(|i| record(&format!("rsync/h{i}"), UnitStatus::Failed))
            .collect();
        let line = one_line(&outcome(build_manifest(&at(1), &at(2), &[], units), None));
        assert!(
            line.contains(
                "8 of 8 units failed (rsync/h0, rsync/h1, rsync/h2, rsync/h3, rsync/h4, …)"
            ),
            "{line}"
        );
    }
}
