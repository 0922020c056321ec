//! The retention rules: which snapshots `deltaic prune` keeps (core-rsync-coda.md §6.1, §6.3,
//! D3). A pure function, [`plan`], from the snapshot list, today's date and a
//! [`RetentionPolicy`] to a [`PrunePlan`] that says, for every snapshot, [`Decision::Keep`] with
//! the rule that keeps it or [`Decision::Remove`] with the snapshot that represents its period
//! instead. Nothing here touches the disk; [`super::apply`] carries a plan out.
//!
//! The algorithm is the original's, ordered by (date, numeric revision) (BUG-11 fixed):
//!
//! * **Pass 1** keeps the last snapshot of each day, and every snapshot of the last
//!   `gc-duplicate-days` days.
//! * **Pass 2** walks the survivors oldest first and keeps a snapshot when the first of these
//!   holds: it is the oldest survivor; it shares its day with the previous survivor; it is
//!   younger than `7 × gc-daily-weeks` days; it is the first survivor of its ISO week and
//!   younger than `28 × gc-weekly-months` days; it is the first survivor of its 28-day month
//!   (months compared by number only, §5.1).
//!
//! Two additions of the Rust version (D3): wherever a rule picks one snapshot to stand for a
//! period (the last of a day; the first of an ISO week or 28-day month), it picks a complete
//! snapshot of that period over a partial one when there is one (§6.3); and the newest complete
//! snapshot (or, when none is complete, the newest) is always kept. With only complete
//! snapshots the result is exactly §6.1's plus that safety rule.
//!
//! The kept sets are nested (days within weeks within months), so pruning the kept set again
//! removes nothing, as long as `gc-duplicate-days <= 7 × gc-daily-weeks`. With a longer
//! duplicate window the original's rule 2 is kept as it is: on a day older than the daily window
//! but inside the duplicate window, the first snapshot of the day may be removed while the later
//! ones stay.

use crate::config::Settings;
use crate::snapshot::SnapshotName;
use jiff::Span;
use jiff::civil::Date;
use std::fmt;
use std::ops::Range;

/// The retention settings (`gc-duplicate-days`, `gc-daily-weeks`, `gc-weekly-months`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep every snapshot younger than this many days.
    pub duplicate_days: u32,
    /// Keep one snapshot a day for this many weeks.
    pub daily_weeks: u32,
    /// Keep one snapshot an ISO week for this many 28-day months.
    pub weekly_months: u32,
}

impl Default for RetentionPolicy {
    /// The original's defaults: 14 days, 8 weeks, 12 months (§3.1).
    fn default() -> Self {
        RetentionPolicy {
            duplicate_days: 14,
            daily_weeks: 8,
            weekly_months: 12,
        }
    }
}

/// The cut-off dates of the three windows. A snapshot is inside a window when its date is
/// strictly later than the cut-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// `today - gc-duplicate-days`: every snapshot after it is kept.
    pub duplicate: Date,
    /// `today - 7 × gc-daily-weeks`: one snapshot a day after it.
    pub daily: Date,
    /// `today - 28 × gc-weekly-months`: one snapshot an ISO week after it.
    pub weekly: Date,
}

impl RetentionPolicy {
    /// The policy configured in `settings:`.
    pub fn from_settings(settings: &Settings) -> Self {
        RetentionPolicy {
            duplicate_days: settings.gc_duplicate_days,
            daily_weeks: settings.gc_daily_weeks,
            weekly_months: settings.gc_weekly_months,
        }
    }

    /// The windows' cut-off dates on `today`. A window reaching before the earliest date jiff
    /// knows starts at [`Date::MIN`].
    pub fn windows(&self, today: Date) -> Windows {
        Windows {
            duplicate: days_before(today, i64::from(self.duplicate_days)),
            daily: days_before(today, 7 * i64::from(self.daily_weeks)),
            weekly: days_before(today, 28 * i64::from(self.weekly_months)),
        }
    }
}

fn days_before(today: Date, days: i64) -> Date {
    Span::new()
        .try_days(days)
        .ok()
        .and_then(|span| today.checked_sub(span).ok())
        .unwrap_or(Date::MIN)
}

/// How a representative was picked from its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pick {
    /// The one §6.1 picks (the last of the day, the first of the week or month).
    Plain,
    /// A complete snapshot picked over the partial one §6.1 would have picked (§6.3).
    Complete,
}

/// Why a snapshot is kept. `Display` gives the words `deltaic prune -n` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeepRule {
    /// The oldest snapshot left after pass 1 (rule 1).
    Oldest,
    /// Inside the duplicate window, where every snapshot is kept (pass 1, rules 2 and 3).
    Recent {
        /// `gc-duplicate-days`.
        days: u32,
    },
    /// The one snapshot of its day, inside the daily window (rule 3).
    Daily {
        /// `gc-daily-weeks`.
        weeks: u32,
        /// Whether a partial last-of-day was passed over.
        pick: Pick,
    },
    /// The first snapshot of its ISO week, inside the weekly window (rule 4).
    Weekly {
        /// ISO week-numbering year.
        year: i16,
        /// ISO week, 1..=53.
        week: i8,
        /// Whether earlier partial snapshots of the week were passed over.
        pick: Pick,
    },
    /// The first snapshot of its 28-day month, kept forever (rule 5).
    Monthly {
        /// ISO week-numbering year of the snapshot.
        year: i16,
        /// 28-day month, 1..=14 (§5.1).
        month: i8,
        /// Whether earlier partial snapshots of the month were passed over.
        pick: Pick,
    },
    /// The newest complete snapshot, which is always kept (D3 safety rule).
    NewestComplete,
    /// The newest snapshot, kept because no snapshot is complete (D3 safety rule).
    NewestNoneComplete,
}

impl fmt::Display for KeepRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = |pick: &Pick| match pick {
            Pick::Plain => "first",
            Pick::Complete => "first complete",
        };
        match self {
            KeepRule::Oldest => write!(f, "oldest: the oldest day is always kept"),
            KeepRule::Recent { days } => {
                write!(f, "recent: every snapshot of the last {days} days")
            }
            KeepRule::Daily { weeks, pick } => {
                let last = match pick {
                    Pick::Plain => "last",
                    Pick::Complete => "last complete",
                };
                write!(f, "daily: {last} of its day, for {weeks} weeks")
            }
            KeepRule::Weekly { year, week, pick } => {
                write!(
                    f,
                    "weekly: {} of ISO week {year:04}-W{week:02}",
                    first(pick)
                )
            }
            KeepRule::Monthly { year, month, pick } => {
                write!(
                    f,
                    "monthly: {} of 28-day month {month} of {year:04}",
                    first(pick)
                )
            }
            KeepRule::NewestComplete => write!(f, "safety: the newest complete snapshot"),
            KeepRule::NewestNoneComplete => {
                write!(f, "safety: the newest snapshot (none is complete)")
            }
        }
    }
}

/// Why a snapshot is removed: the period it belongs to is represented by another, kept,
/// snapshot. `Display` gives the words `deltaic prune -n` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoveReason {
    /// Another snapshot of the same day is kept.
    Day {
        /// The day.
        date: Date,
        /// The snapshot kept for it.
        kept: SnapshotName,
    },
    /// Another snapshot of the same ISO week is kept.
    Week {
        /// ISO week-numbering year.
        year: i16,
        /// ISO week.
        week: i8,
        /// The snapshot kept for it.
        kept: SnapshotName,
    },
    /// Another snapshot of the same 28-day month is kept. Months are compared by number only
    /// (§6.1 rule 5), so after a gap of a whole number of years `kept` may be a year older.
    Month {
        /// ISO week-numbering year of the removed snapshot.
        year: i16,
        /// 28-day month.
        month: i8,
        /// The snapshot kept for it.
        kept: SnapshotName,
    },
}

impl RemoveReason {
    /// The kept snapshot that represents the removed one's period.
    pub fn kept(&self) -> SnapshotName {
        match self {
            RemoveReason::Day { kept, .. }
            | RemoveReason::Week { kept, .. }
            | RemoveReason::Month { kept, .. } => *kept,
        }
    }
}

impl fmt::Display for RemoveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveReason::Day { date, kept } => write!(f, "day {date} is kept as {kept}"),
            RemoveReason::Week { year, week, kept } => {
                write!(f, "ISO week {year:04}-W{week:02} is kept as {kept}")
            }
            RemoveReason::Month { year, month, kept } => {
                write!(f, "28-day month {month} of {year:04} is kept as {kept}")
            }
        }
    }
}

/// What happens to one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Kept, by this rule (the first that applies).
    Keep(KeepRule),
    /// Removed, for this reason.
    Remove(RemoveReason),
}

impl Decision {
    /// Whether the snapshot is kept.
    pub fn is_keep(&self) -> bool {
        matches!(self, Decision::Keep(_))
    }

    /// `keep` or `remove`.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Keep(_) => "keep",
            Decision::Remove(_) => "remove",
        }
    }
}

impl fmt::Display for Decision {
    /// `keep RULE` or `remove REASON`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Keep(rule) => write!(f, "keep {rule}"),
            Decision::Remove(reason) => write!(f, "remove {reason}"),
        }
    }
}

/// One snapshot of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanEntry {
    /// The snapshot.
    pub name: SnapshotName,
    /// Whether its run was complete, as given to [`plan`].
    pub complete: bool,
    /// What happens to it.
    pub decision: Decision,
}

/// The outcome of [`plan`]: one entry per distinct snapshot, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    entries: Vec<PlanEntry>,
}

impl PrunePlan {
    /// Every snapshot with its decision, ordered by (date, revision).
    pub fn entries(&self) -> &[PlanEntry] {
        &self.entries
    }

    /// The snapshots kept, oldest first.
    pub fn kept(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| e.decision.is_keep())
    }

    /// The snapshots to remove, oldest first.
    pub fn removed(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| !e.decision.is_keep())
    }

    /// The decision for `name`, if it is in the plan.
    pub fn decision(&self, name: &SnapshotName) -> Option<Decision> {
        self.entries
            .binary_search_by(|e| e.name.cmp(name))
            .ok()
            .map(|i| self.entries[i].decision)
    }
}

/// Decides, for every snapshot, whether it is kept and why (§6.1, §6.3, D3).
///
/// `snapshots` are `(name, complete)` pairs in any order. A name given twice counts once, and
/// as complete only if every copy says so. `today` is the local date the windows are measured
/// from. The plan has one entry per distinct name, ordered by (date, revision).
pub fn plan(
    snapshots: &[(SnapshotName, bool)],
    today: Date,
    policy: &RetentionPolicy,
) -> PrunePlan {
    let items = sorted_unique(snapshots);
    let n = items.len();
    let Some(last) = n.checked_sub(1) else {
        return PrunePlan::default();
    };
    let windows = policy.windows(today);
    let date = |i: usize| items[i].0.date;
    let complete = |i: usize| items[i].1;

    // Pass 1: per day, the last complete snapshot (else the last) stands for the day; inside
    // the duplicate window every snapshot survives.
    let mut day_rep = vec![0; n];
    let mut filtered = Vec::with_capacity(n);
    for day in runs(n, |a, b| date(a) == date(b)) {
        let rep = day
            .clone()
            .rev()
            .find(|&i| complete(i))
            .unwrap_or(day.end - 1);
        for i in day {
            day_rep[i] = rep;
            if i == rep || date(i) > windows.duplicate {
                filtered.push(i);
            }
        }
    }

    // Pass 2 over the survivors. Weeks and months are runs of survivors with the same key;
    // each run's first complete survivor (else its first) stands for it.
    let weeks = representatives(&filtered, |i| items[i].0.iso_week(), complete);
    let months = representatives(&filtered, |i| items[i].0.month(), complete);
    let mut decisions: Vec<Option<Decision>> = vec![None; n];
    for (p, &i) in filtered.iter().enumerate() {
        let name = items[i].0;
        let rule = if p == 0 {
            Some(KeepRule::Oldest)
        } else if date(filtered[p - 1]) == date(i) || date(i) > windows.daily {
            // Rule 2 (duplicates of a day that survived pass 1) or rule 3 (one per day).
            Some(if date(i) > windows.duplicate {
                KeepRule::Recent {
                    days: policy.duplicate_days,
                }
            } else {
                let last_of_day = runs_end(n, i, |a, b| date(a) == date(b)) - 1;
                let pick = if last_of_day == i {
                    Pick::Plain
                } else {
                    Pick::Complete
                };
                KeepRule::Daily {
                    weeks: policy.daily_weeks,
                    pick,
                }
            })
        } else if date(i) > windows.weekly && weeks[p].rep == i {
            let (year, week) = name.iso_week();
            Some(KeepRule::Weekly {
                year,
                week,
                pick: weeks[p].pick(),
            })
        } else if months[p].rep == i {
            let (year, _) = name.iso_week();
            Some(KeepRule::Monthly {
                year,
                month: name.month(),
                pick: months[p].pick(),
            })
        } else {
            None
        };
        decisions[i] = rule.map(Decision::Keep);
    }

    // D3 safety rule.
    let (newest, rule) = match (0..n).rev().find(|&i| complete(i)) {
        Some(i) => (i, KeepRule::NewestComplete),
        None => (last, KeepRule::NewestNoneComplete),
    };
    decisions[newest].get_or_insert(Decision::Keep(rule));

    // Each removed snapshot names the kept snapshot standing for its smallest period that a
    // rule applies to: its day, else (inside the weekly window) its ISO week, else its 28-day
    // month. A month's representative is always kept (rule 5 or an earlier rule).
    let position: Vec<Option<usize>> = {
        let mut position = vec![None; n];
        for (p, &i) in filtered.iter().enumerate() {
            position[i] = Some(p);
        }
        position
    };
    let kept = |d: &[Option<Decision>], i: usize| matches!(d[i], Some(Decision::Keep(_)));
    let mut entries = Vec::with_capacity(n);
    for (i, &(name, is_complete)) in items.iter().enumerate() {
        let decision = match decisions[i] {
            Some(decision) => decision,
            None => {
                let rep = day_rep[i];
                // The day's representative always survives pass 1.
                let p = position[rep].unwrap_or_default();
                let (year, week) = name.iso_week();
                let reason = if kept(&decisions, rep) {
                    RemoveReason::Day {
                        date: name.date,
                        kept: items[rep].0,
                    }
                } else if name.date > windows.weekly && kept(&decisions, weeks[p].rep) {
                    RemoveReason::Week {
                        year,
                        week,
                        kept: items[weeks[p].rep].0,
                    }
                } else {
                    debug_assert!(
                        kept(&decisions, months[p].rep),
                        "month representative removed"
                    );
                    RemoveReason::Month {
                        year,
                        month: name.month(),
                        kept: items[months[p].rep].0,
                    }
                };
                Decision::Remove(reason)
            }
        };
        entries.push(PlanEntry {
            name,
            complete: is_complete,
            decision,
        });
    }
    PrunePlan { entries }
}

/// Sorts by (date, revision) and merges repeated names (complete only if all copies are).
fn sorted_unique(snapshots: &[(SnapshotName, bool)]) -> Vec<(SnapshotName, bool)> {
    let mut items = snapshots.to_vec();
    items.sort_by_key(|&(name, _)| name);
    items.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 &= later.1;
            true
        } else {
            false
        }
    });
    items
}

/// Splits `0..n` into maximal runs of consecutive indices for which `same` holds pairwise.
fn runs(n: usize, same: impl Fn(usize, usize) -> bool) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=n {
        if i == n || !same(i - 1, i) {
            runs.push(start..i);
            start = i;
        }
    }
    runs
}

/// The end of the run (as in [`runs`]) that contains `i`.
fn runs_end(n: usize, i: usize, same: impl Fn(usize, usize) -> bool) -> usize {
    let mut end = i + 1;
    while end < n && same(end - 1, end) {
        end += 1;
    }
    end
}

/// Which survivor stands for the run (week or month) containing a position in `filtered`.
#[derive(Debug, Clone, Copy)]
struct Representative {
    /// Index (into the sorted snapshots) of the run's first complete member, else its first.
    rep: usize,
    /// Index of the run's first member.
    first: usize,
}

impl Representative {
    fn pick(&self) -> Pick {
        if self.rep == self.first {
            Pick::Plain
        } else {
            Pick::Complete
        }
    }
}

/// For each position of `filtered`, the representative of its run of equal `key`s.
fn representatives<K: PartialEq>(
    filtered: &[usize],
    key: impl Fn(usize) -> K,
    complete: impl Fn(usize) -> bool,
) -> Vec<Representative> {
    let mut out = Vec::with_capacity(filtered.len());
    for run in runs(filtered.len(), |a, b| key(filtered[a]) == key(filtered[b])) {
        let members = &filtered[run];
        let first = members[0];
        let rep = members
            .iter()
            .copied()
            .find(|&i| complete(i))
            .unwrap_or(first);
        out.extend(std::iter::repeat_n(
            Representative { rep, first },
            members.len(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn name(s: &str) -> SnapshotName {
        s.parse().unwrap()
    }

    fn complete(names: &[&str]) -> Vec<(SnapshotName, bool)> {
        names.iter().map(|s| (name(s), true)).collect()
    }

    /// One snapshot `YYYYMMDD-1` per day from `first` to `last`, inclusive.
    fn daily(first: Date, last: Date) -> Vec<(SnapshotName, bool)> {
        first
            .series(Span::new().days(1))
            .take_while(|d| *d <= last)
            .map(|d| (SnapshotName::first_of(d), true))
            .collect()
    }

    fn kept_names(plan: &PrunePlan) -> Vec<String> {
        plan.kept().map(|e| e.name.to_string()).collect()
    }

    fn decision(plan: &PrunePlan, s: &str) -> Decision {
        plan.decision(&name(s))
            .unwrap_or_else(|| panic!("{s} not in plan"))
    }

    /// The original's `select_snapshots_to_remove` (prune.py), transcribed literally, over
    /// names sorted by (date, revision). Returns the names it keeps.
    #[allow(clippy::nonminimal_bool)] // kept as literal as the Python it transcribes
    fn original_keeps(
        names: &[SnapshotName],
        today: Date,
        policy: &RetentionPolicy,
    ) -> BTreeSet<SnapshotName> {
        let w = policy.windows(today);
        let mut sorted = names.to_vec();
        sorted.sort();
        let mut filtered = Vec::new();
        let mut prev: Option<SnapshotName> = None;
        for cur in sorted.iter().rev() {
            if prev.is_none() || prev.unwrap().date != cur.date || cur.date > w.duplicate {
                filtered.insert(0, *cur);
            }
            prev = Some(*cur);
        }
        let keep = |prev: Option<SnapshotName>, cur: SnapshotName| {
            let Some(prev) = prev else { return true };
            prev.date == cur.date
                || (cur.date > w.daily && prev.date != cur.date)
                || (cur.date > w.weekly && prev.iso_week() != cur.iso_week())
                || prev.month() != cur.month()
        };
        let mut kept = BTreeSet::new();
        let mut prev = None;
        for cur in filtered {
            if keep(prev, cur) {
                kept.insert(cur);
            }
            prev = Some(cur);
        }
        kept
    }

    /// §6.1 test vector input: one snapshot a day 2022-06-01..2024-06-15, a `-2` on each of the
    /// last 20 days, plus 20230301-2 and 20230301-3.
    fn spec_vector() -> Vec<(SnapshotName, bool)> {
        let mut snapshots = daily(date(2022, 6, 1), date(2024, 6, 15));
        for (d, _) in daily(date(2024, 5, 27), date(2024, 6, 15)) {
            snapshots.push((
                SnapshotName {
                    date: d.date,
                    revision: 2,
                },
                true,
            ));
        }
        snapshots.extend(complete(&["20230301-2", "20230301-3"]));
        snapshots
    }

    #[test]
    fn spec_test_vector_keeps_125_of_768() {
        let snapshots = spec_vector();
        assert_eq!(snapshots.len(), 768);
        let plan = plan(&snapshots, date(2024, 6, 15), &RetentionPolicy::default());
        assert_eq!(plan.entries().len(), 768);
        let kept: BTreeSet<SnapshotName> = plan.kept().map(|e| e.name).collect();
        assert_eq!(kept.len(), 125);

        let mut expected = BTreeSet::new();
        // Both revisions 2024-06-02..15 (dup = 2024-06-01).
        for (s, _) in daily(date(2024, 6, 2), date(2024, 6, 15)) {
            expected.insert(s);
            expected.insert(SnapshotName {
                date: s.date,
                revision: 2,
            });
        }
        // Only -2 for 2024-05-27..06-01.
        for (s, _) in daily(date(2024, 5, 27), date(2024, 6, 1)) {
            expected.insert(SnapshotName {
                date: s.date,
                revision: 2,
            });
            assert!(!kept.contains(&s), "{s} kept");
        }
        // -1 daily 2024-04-21..05-26 (daily = 2024-04-20).
        for (s, _) in daily(date(2024, 4, 21), date(2024, 5, 26)) {
            expected.insert(s);
        }
        // Mondays 2023-07-17..2024-04-15 (weekly = 2023-07-15).
        for (s, _) in daily(date(2023, 7, 17), date(2024, 4, 15)) {
            if s.date.weekday() == jiff::civil::Weekday::Monday {
                expected.insert(s);
            }
        }
        // The oldest, then the first of each 28-day month.
        for s in [
            "20220601-1",
            "20220620-1",
            "20220718-1",
            "20220815-1",
            "20220912-1",
            "20221010-1",
            "20221107-1",
            "20221205-1",
            "20230102-1",
            "20230130-1",
            "20230227-1",
            "20230327-1",
            "20230424-1",
            "20230522-1",
            "20230619-1",
        ] {
            expected.insert(name(s));
        }
        assert_eq!(kept, expected);
        for s in ["20230301-1", "20230301-2", "20230301-3"] {
            assert!(!decision(&plan, s).is_keep(), "{s} kept");
        }
        // And it agrees with the transcribed original.
        let names: Vec<SnapshotName> = snapshots.iter().map(|s| s.0).collect();
        assert_eq!(
            kept,
            original_keeps(&names, date(2024, 6, 15), &RetentionPolicy::default())
        );
    }

    #[test]
    fn spec_test_vector_rules_are_named() {
        let plan = plan(
            &spec_vector(),
            date(2024, 6, 15),
            &RetentionPolicy::default(),
        );
        assert_eq!(
            decision(&plan, "20220601-1"),
            Decision::Keep(KeepRule::Oldest)
        );
        assert_eq!(
            decision(&plan, "20240615-2"),
            Decision::Keep(KeepRule::Recent { days: 14 })
        );
        assert_eq!(
            decision(&plan, "20240602-1"),
            Decision::Keep(KeepRule::Recent { days: 14 })
        );
        assert_eq!(
            decision(&plan, "20240527-2"),
            Decision::Keep(KeepRule::Daily {
                weeks: 8,
                pick: Pick::Plain
            })
        );
        assert_eq!(
            decision(&plan, "20230717-1"),
            Decision::Keep(KeepRule::Weekly {
                year: 2023,
                week: 29,
                pick: Pick::Plain
            })
        );
        assert_eq!(
            decision(&plan, "20230619-1"),
            Decision::Keep(KeepRule::Monthly {
                year: 2023,
                month: 7,
                pick: Pick::Plain
            })
        );
        assert_eq!(
            decision(&plan, "20240527-1"),
            Decision::Remove(RemoveReason::Day {
                date: date(2024, 5, 27),
                kept: name("20240527-2")
            })
        );
        assert_eq!(
            decision(&plan, "20230718-1"),
            Decision::Remove(RemoveReason::Week {
                year: 2023,
                week: 29,
                kept: name("20230717-1")
            })
        );
        // 20230301-3 is the last of its day, removed for its month (20230301 is in week 9,
        // month 3, which starts on Monday 20230227).
        assert_eq!(
            decision(&plan, "20230301-3"),
            Decision::Remove(RemoveReason::Month {
                year: 2023,
                month: 3,
                kept: name("20230227-1")
            })
        );
        // Its earlier revisions: the day's representative is removed, so they too name the month.
        assert_eq!(
            decision(&plan, "20230301-1").to_string(),
            "remove 28-day month 3 of 2023 is kept as 20230227-1"
        );
    }

    #[test]
    fn rule_words_are_precise() {
        let text = |d: Decision| d.to_string();
        assert_eq!(
            text(Decision::Keep(KeepRule::Oldest)),
            "keep oldest: the oldest day is always kept"
        );
        assert_eq!(
            text(Decision::Keep(KeepRule::Recent { days: 14 })),
            "keep recent: every snapshot of the last 14 days"
        );
        assert_eq!(
            text(Decision::Keep(KeepRule::Daily {
                weeks: 8,
                pick: Pick::Complete
            })),
            "keep daily: last complete of its day, for 8 weeks"
        );
        assert_eq!(
            text(Decision::Keep(KeepRule::Weekly {
                year: 2024,
                week: 3,
                pick: Pick::Plain
            })),
            "keep weekly: first of ISO week 2024-W03"
        );
        assert_eq!(
            text(Decision::Keep(KeepRule::Monthly {
                year: 2020,
                month: 14,
                pick: Pick::Complete
            })),
            "keep monthly: first complete of 28-day month 14 of 2020"
        );
        assert_eq!(
            text(Decision::Keep(KeepRule::NewestComplete)),
            "keep safety: the newest complete snapshot"
        );
        assert_eq!(
            text(Decision::Remove(RemoveReason::Day {
                date: date(2024, 5, 27),
                kept: name("20240527-2")
            })),
            "remove day 2024-05-27 is kept as 20240527-2"
        );
    }

    #[test]
    fn newest_complete_is_kept_when_runs_stopped_months_ago() {
        // §6.1: one snapshot a day 2024-01-08..14, pruned on 2024-04-17. The original keeps only
        // 20240108-1; the safety rule (D3) also keeps the newest.
        let snapshots = daily(date(2024, 1, 8), date(2024, 1, 14));
        let today = date(2024, 4, 17);
        let names: Vec<SnapshotName> = snapshots.iter().map(|s| s.0).collect();
        let original = original_keeps(&names, today, &RetentionPolicy::default());
        assert_eq!(
            original
                .into_iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
            ["20240108-1"]
        );
        let plan = plan(&snapshots, today, &RetentionPolicy::default());
        assert_eq!(kept_names(&plan), ["20240108-1", "20240114-1"]);
        assert_eq!(
            decision(&plan, "20240114-1"),
            Decision::Keep(KeepRule::NewestComplete)
        );
        assert_eq!(
            decision(&plan, "20240110-1"),
            Decision::Remove(RemoveReason::Week {
                year: 2024,
                week: 2,
                kept: name("20240108-1")
            })
        );
    }

    #[test]
    fn newest_complete_is_kept_over_newer_partials_and_newest_when_none_complete() {
        let mut snapshots = daily(date(2024, 1, 8), date(2024, 1, 14));
        snapshots[4].1 = true; // 20240112-1 complete
        snapshots[5].1 = false;
        snapshots[6].1 = false;
        let today = date(2024, 4, 17);
        let p = plan(&snapshots, today, &RetentionPolicy::default());
        assert_eq!(kept_names(&p), ["20240108-1", "20240112-1"]);
        assert_eq!(
            decision(&p, "20240112-1"),
            Decision::Keep(KeepRule::NewestComplete)
        );

        let all_partial: Vec<_> = snapshots.iter().map(|&(n, _)| (n, false)).collect();
        let p = plan(&all_partial, today, &RetentionPolicy::default());
        assert_eq!(kept_names(&p), ["20240108-1", "20240114-1"]);
        assert_eq!(
            decision(&p, "20240114-1"),
            Decision::Keep(KeepRule::NewestNoneComplete)
        );
    }

    #[test]
    fn bug_11_revision_10_is_later_than_9() {
        // Twelve snapshots on one day outside the duplicate window: the last is -12, not -9.
        let mut snapshots: Vec<_> = (1..=12)
            .map(|r| {
                (
                    SnapshotName {
                        date: date(2024, 1, 1),
                        revision: r,
                    },
                    true,
                )
            })
            .collect();
        snapshots.extend(complete(&["20240102-1"]));
        snapshots.reverse(); // input order does not matter
        let p = plan(&snapshots, date(2024, 6, 15), &RetentionPolicy::default());
        assert_eq!(kept_names(&p), ["20240101-12", "20240102-1"]);
        assert_eq!(
            decision(&p, "20240101-12"),
            Decision::Keep(KeepRule::Oldest)
        );
        assert_eq!(
            decision(&p, "20240101-9"),
            Decision::Remove(RemoveReason::Day {
                date: date(2024, 1, 1),
                kept: name("20240101-12")
            })
        );
        // Entries come out in (date, revision) order.
        let order: Vec<u32> = p
            .entries()
            .iter()
            .take(12)
            .map(|e| e.name.revision)
            .collect();
        assert_eq!(order, (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn a_53_week_year_has_a_14th_month_of_one_week() {
        // 2020 has 53 ISO weeks: W49..W52 are month 13, W53 (2020-12-28..2021-01-03) is month
        // 14, and 2021-W01 starts month 1. Pruned ten years later, only months remain.
        let snapshots = daily(date(2020, 11, 30), date(2021, 1, 10));
        let p = plan(&snapshots, date(2030, 1, 1), &RetentionPolicy::default());
        assert_eq!(
            kept_names(&p),
            ["20201130-1", "20201228-1", "20210104-1", "20210110-1"]
        );
        assert_eq!(
            decision(&p, "20201228-1"),
            Decision::Keep(KeepRule::Monthly {
                year: 2020,
                month: 14,
                pick: Pick::Plain
            })
        );
        assert_eq!(
            decision(&p, "20210103-1"),
            Decision::Remove(RemoveReason::Month {
                year: 2020,
                month: 14,
                kept: name("20201228-1")
            })
        );
        assert_eq!(
            decision(&p, "20210104-1"),
            Decision::Keep(KeepRule::Monthly {
                year: 2021,
                month: 1,
                pick: Pick::Plain
            })
        );
    }

    #[test]
    fn weeks_follow_the_iso_calendar_across_a_year_boundary() {
        // 2024-12-30 (a Monday) starts ISO week 2025-W01; 2025-01-01 starts no new week.
        let snapshots = daily(date(2024, 12, 23), date(2025, 1, 12));
        let p = plan(&snapshots, date(2025, 4, 1), &RetentionPolicy::default());
        assert_eq!(
            kept_names(&p),
            ["20241223-1", "20241230-1", "20250106-1", "20250112-1"]
        );
        assert_eq!(
            decision(&p, "20241230-1"),
            Decision::Keep(KeepRule::Weekly {
                year: 2025,
                week: 1,
                pick: Pick::Plain
            })
        );
        assert_eq!(
            decision(&p, "20250101-1"),
            Decision::Remove(RemoveReason::Week {
                year: 2025,
                week: 1,
                kept: name("20241230-1")
            })
        );
    }

    #[test]
    fn months_are_compared_by_number_only() {
        // 2023-03-06 and 2024-03-04 are both in ISO week 10, month 3, with nothing between:
        // rule 5 sees no new month (§6.1), so outside the weekly window 20240304-1 goes.
        let snapshots = complete(&["20230306-1", "20240304-1", "20240311-1", "20240318-1"]);
        let p = plan(&snapshots, date(2030, 1, 1), &RetentionPolicy::default());
        assert_eq!(kept_names(&p), ["20230306-1", "20240318-1"]);
        assert_eq!(
            decision(&p, "20240304-1").to_string(),
            "remove 28-day month 3 of 2024 is kept as 20230306-1"
        );
    }

    #[test]
    fn partial_last_of_day_does_not_displace_a_complete_one() {
        // §6.3: outside the duplicate window, a day whose last snapshot is partial keeps its
        // last complete one instead.
        let snapshots = vec![
            (name("20240519-1"), true),
            (name("20240520-1"), true),
            (name("20240520-2"), false),
            (name("20240521-1"), true),
        ];
        let p = plan(&snapshots, date(2024, 6, 15), &RetentionPolicy::default());
        assert_eq!(kept_names(&p), ["20240519-1", "20240520-1", "20240521-1"]);
        assert_eq!(
            decision(&p, "20240520-1"),
            Decision::Keep(KeepRule::Daily {
                weeks: 8,
                pick: Pick::Complete
            })
        );
        assert_eq!(
            decision(&p, "20240520-2").to_string(),
            "remove day 2024-05-20 is kept as 20240520-1"
        );
        // All complete: §6.1 keeps the last of the day.
        let all: Vec<_> = snapshots.iter().map(|&(n, _)| (n, true)).collect();
        let p = plan(&all, date(2024, 6, 15), &RetentionPolicy::default());
        assert_eq!(kept_names(&p), ["20240519-1", "20240520-2", "20240521-1"]);
        // A day with only partial snapshots keeps its last.
        let p = plan(
            &[
                (name("20240520-1"), false),
                (name("20240520-2"), false),
                (name("20240521-1"), true),
            ],
            date(2024, 6, 15),
            &RetentionPolicy::default(),
        );
        assert_eq!(kept_names(&p), ["20240520-2", "20240521-1"]);
    }

    #[test]
    fn a_week_starting_with_a_partial_is_kept_as_its_first_complete() {
        // §6.3: 2024-W10 (Mon 2024-03-04) is in the weekly window on 2024-06-15 but not in the
        // daily one; its first snapshot is partial, so its first complete one stands for it.
        let snapshots = vec![
            (name("20240226-1"), true),
            (name("20240304-1"), false),
            (name("20240305-1"), true),
            (name("20240306-1"), true),
            (name("20240311-1"), false),
            (name("20240312-1"), false),
            (name("20240318-1"), true),
        ];
        let p = plan(&snapshots, date(2024, 6, 15), &RetentionPolicy::default());
        assert_eq!(
            kept_names(&p),
            ["20240226-1", "20240305-1", "20240311-1", "20240318-1"]
        );
        assert_eq!(
            decision(&p, "20240305-1"),
            Decision::Keep(KeepRule::Weekly {
                year: 2024,
                week: 10,
                pick: Pick::Complete
            })
        );
        assert_eq!(
            decision(&p, "20240305-1").to_string(),
            "keep weekly: first complete of ISO week 2024-W10"
        );
        assert_eq!(
            decision(&p, "20240304-1"),
            Decision::Remove(RemoveReason::Week {
                year: 2024,
                week: 10,
                kept: name("20240305-1")
            })
        );
        // A week with no complete snapshot keeps its first, partial or not.
        assert_eq!(
            decision(&p, "20240311-1"),
            Decision::Keep(KeepRule::Weekly {
                year: 2024,
                week: 11,
                pick: Pick::Plain
            })
        );
    }

    #[test]
    fn a_month_starting_with_a_partial_is_kept_as_its_first_complete() {
        // Outside the weekly window only months count: 2023-W13 (Mon 2023-03-27) starts month 4.
        let snapshots = vec![
            (name("20230320-1"), true),
            (name("20230327-1"), false),
            (name("20230403-1"), true),
            (name("20230410-1"), true),
        ];
        let p = plan(&snapshots, date(2030, 1, 1), &RetentionPolicy::default());
        assert_eq!(kept_names(&p), ["20230320-1", "20230403-1", "20230410-1"]);
        assert_eq!(
            decision(&p, "20230403-1"),
            Decision::Keep(KeepRule::Monthly {
                year: 2023,
                month: 4,
                pick: Pick::Complete
            })
        );
        assert_eq!(
            decision(&p, "20230327-1"),
            Decision::Remove(RemoveReason::Month {
                year: 2023,
                month: 4,
                kept: name("20230403-1")
            })
        );
    }

    #[test]
    fn partials_inside_the_duplicate_window_are_all_kept() {
        let snapshots = vec![
            (name("20240610-1"), false),
            (name("20240610-2"), true),
            (name("20240610-3"), false),
            (name("20240611-1"), true),
        ];
        let p = plan(&snapshots, date(2024, 6, 15), &RetentionPolicy::default());
        assert_eq!(p.removed().count(), 0);
    }

    #[test]
    fn repeated_names_count_once_and_as_partial_if_any_copy_is() {
        let snapshots = vec![
            (name("20240101-1"), true),
            (name("20240101-2"), true),
            (name("20240101-2"), false),
            (name("20240102-1"), true),
        ];
        let p = plan(&snapshots, date(2024, 6, 15), &RetentionPolicy::default());
        assert_eq!(p.entries().len(), 3);
        assert!(!p.entries()[1].complete);
        assert_eq!(kept_names(&p), ["20240101-1", "20240102-1"]);
    }

    #[test]
    fn empty_input_gives_an_empty_plan() {
        assert!(
            plan(&[], date(2024, 1, 1), &RetentionPolicy::default())
                .entries()
                .is_empty()
        );
    }

    #[test]
    fn huge_settings_keep_everything() {
        let policy = RetentionPolicy {
            duplicate_days: u32::MAX,
            daily_weeks: u32::MAX,
            weekly_months: u32::MAX,
        };
        assert_eq!(policy.windows(date(2024, 1, 1)).weekly, Date::MIN);
        let p = plan(&spec_vector(), date(2024, 6, 15), &policy);
        assert_eq!(p.removed().count(), 0);
    }

    #[test]
    fn policy_comes_from_settings() {
        let config = crate::config::Config::from_yaml(
            "settings:\n  root: /srv/b\n  snapshot-backend: dir\n  gc-duplicate-days: 3\n  gc-daily-weeks: 2\n  gc-weekly-months: 5\n",
            std::path::Path::new("/etc/deltaic.conf"),
        )
        .unwrap();
        let policy = RetentionPolicy::from_settings(&config.settings);
        assert_eq!(
            policy,
            RetentionPolicy {
                duplicate_days: 3,
                daily_weeks: 2,
                weekly_months: 5
            }
        );
        assert_eq!(
            policy.windows(date(2024, 6, 15)),
            Windows {
                duplicate: date(2024, 6, 12),
                daily: date(2024, 6, 1),
                weekly: date(2024, 1, 27)
            }
        );
    }

    // --- properties -------------------------------------------------------------------------

    const TODAY: Date = date(2024, 6, 15);

    /// Up to 80 distinct snapshots within ~3 years before TODAY (a few after), half of them in
    /// the last 120 days, mostly revisions 1..3 (so days with several snapshots are common) but
    /// up to 11; each complete with probability 3/4.
    fn arb_snapshots() -> impl Strategy<Value = Vec<(SnapshotName, bool)>> {
        let day = prop_oneof![-1100i64..5, -120i64..5];
        let revision = prop_oneof![3 => 1u32..3, 1 => 1u32..12];
        proptest::collection::btree_map((day, revision), prop::bool::weighted(0.75), 0..80)
            .prop_map(|m| {
                m.into_iter()
                    .map(|((day, revision), complete)| {
                        let d = TODAY.checked_add(Span::new().days(day)).unwrap();
                        (SnapshotName { date: d, revision }, complete)
                    })
                    .collect()
            })
    }

    /// A policy with `gc-duplicate-days <= 7 × gc-daily-weeks`, under which §6.1 is stable.
    fn arb_policy() -> impl Strategy<Value = RetentionPolicy> {
        (0u32..20, 0u32..30, 0u32..30).prop_map(|(daily_weeks, dup, weekly_months)| {
            RetentionPolicy {
                duplicate_days: dup.min(7 * daily_weeks),
                daily_weeks,
                weekly_months,
            }
        })
    }

    fn kept_set(p: &PrunePlan) -> BTreeSet<SnapshotName> {
        p.kept().map(|e| e.name).collect()
    }

    proptest! {
        #[test]
        fn all_complete_input_gives_the_original_plus_the_newest(
            snapshots in arb_snapshots(), dup in 0u32..100, daily in 0u32..20, weekly in 0u32..30,
        ) {
            // Any settings, even a duplicate window longer than the daily one.
            let policy = RetentionPolicy { duplicate_days: dup, daily_weeks: daily, weekly_months: weekly };
            let names: Vec<SnapshotName> = snapshots.iter().map(|s| s.0).collect();
            let all: Vec<_> = names.iter().map(|&n| (n, true)).collect();
            let mut expected = original_keeps(&names, TODAY, &policy);
            if let Some(newest) = names.iter().max() {
                expected.insert(*newest);
            }
            prop_assert_eq!(kept_set(&plan(&all, TODAY, &policy)), expected);
        }

        #[test]
        fn decisions_cover_every_input_exactly_once(snapshots in arb_snapshots(), policy in arb_policy()) {
            let p = plan(&snapshots, TODAY, &policy);
            let input: Vec<SnapshotName> = snapshots.iter().map(|s| s.0).collect();
            let mut planned: Vec<SnapshotName> = p.entries().iter().map(|e| e.name).collect();
            prop_assert!(planned.windows(2).all(|w| w[0] < w[1]), "not sorted or repeated");
            planned.sort();
            let mut input_sorted = input.clone();
            input_sorted.sort();
            prop_assert_eq!(planned, input_sorted);
            for e in p.entries() {
                let given = snapshots.iter().find(|s| s.0 == e.name).unwrap().1;
                prop_assert_eq!(e.complete, given);
            }
        }

        #[test]
        fn pruning_the_kept_set_again_removes_nothing(snapshots in arb_snapshots(), policy in arb_policy()) {
            let first = plan(&snapshots, TODAY, &policy);
            let kept: Vec<(SnapshotName, bool)> = first.kept().map(|e| (e.name, e.complete)).collect();
            let second = plan(&kept, TODAY, &policy);
            let removed: Vec<String> = second.removed().map(|e| e.name.to_string()).collect();
            prop_assert!(removed.is_empty(), "second pass removes {:?}", removed);
        }

        #[test]
        fn the_oldest_day_always_keeps_a_snapshot(snapshots in arb_snapshots(), policy in arb_policy()) {
            // Pass 1 may drop earlier revisions of the oldest day; the day itself always stays,
            // and a lone oldest snapshot is always kept.
            let p = plan(&snapshots, TODAY, &policy);
            if let Some(oldest) = p.entries().first() {
                prop_assert!(p.kept().any(|e| e.name.date == oldest.name.date));
                if p.entries().get(1).is_none_or(|e| e.name.date != oldest.name.date) {
                    prop_assert!(oldest.decision.is_keep());
                }
            }
        }

        #[test]
        fn the_newest_complete_snapshot_is_never_removed(snapshots in arb_snapshots(), policy in arb_policy()) {
            let p = plan(&snapshots, TODAY, &policy);
            let target = p.entries().iter().rev().find(|e| e.complete).or(p.entries().last());
            if let Some(target) = target {
                prop_assert!(target.decision.is_keep(), "{} removed", target.name);
            }
        }

        #[test]
        fn a_looser_policy_keeps_a_superset(
            snapshots in arb_snapshots(), strict in arb_policy(), extra in (0u32..10, 0u32..5, 0u32..10),
        ) {
            let loose = RetentionPolicy {
                duplicate_days: (strict.duplicate_days + extra.0).min(7 * (strict.daily_weeks + extra.1)),
                daily_weeks: strict.daily_weeks + extra.1,
                weekly_months: strict.weekly_months + extra.2,
            };
            let strict_kept = kept_set(&plan(&snapshots, TODAY, &strict));
            let loose_kept = kept_set(&plan(&snapshots, TODAY, &loose));
            let missing: Vec<String> = strict_kept.difference(&loose_kept).map(|n| n.to_string()).collect();
            prop_assert!(missing.is_empty(), "looser policy drops {:?}", missing);
        }

        #[test]
        fn a_partial_never_stands_for_a_period_that_has_a_complete_one(
            snapshots in arb_snapshots(), policy in arb_policy(),
        ) {
            let p = plan(&snapshots, TODAY, &policy);
            let windows = policy.windows(TODAY);
            let complete_where = |f: &dyn Fn(&SnapshotName) -> bool| p.entries().iter().any(|e| e.complete && f(&e.name));
            for e in p.kept().filter(|e| !e.complete) {
                let n = e.name;
                match e.decision {
                    Decision::Keep(KeepRule::Daily { .. }) => prop_assert!(!complete_where(&|m| m.date == n.date)),
                    Decision::Keep(KeepRule::Weekly { .. }) => prop_assert!(!complete_where(&|m| m.iso_week() == n.iso_week())),
                    Decision::Keep(KeepRule::Monthly { .. }) => prop_assert!(
                        !complete_where(&|m| m.iso_week().0 == n.iso_week().0 && m.month() == n.month())
                    ),
                    _ => {}
                }
                if n.date <= windows.duplicate && !matches!(e.decision, Decision::Keep(KeepRule::Oldest)) {
                    // Outside the duplicate window a partial survives only as its day's stand-in.
                    prop_assert!(!complete_where(&|m| m.date == n.date), "{} kept over a complete one", n);
                }
            }
        }

        #[test]
        fn every_removal_names_a_kept_snapshot_of_its_period(snapshots in arb_snapshots(), policy in arb_policy()) {
            let p = plan(&snapshots, TODAY, &policy);
            for e in p.removed() {
                let Decision::Remove(reason) = e.decision else { unreachable!() };
                let kept = reason.kept();
                prop_assert!(p.decision(&kept).is_some_and(|d| d.is_keep()), "{} names removed {}", e.name, kept);
                match reason {
                    RemoveReason::Day { date, .. } => prop_assert!(date == e.name.date && kept.date == date),
                    RemoveReason::Week { .. } => prop_assert_eq!(kept.iso_week(), e.name.iso_week()),
                    RemoveReason::Month { month, .. } => prop_assert!(month == e.name.month() && kept.month() == month),
                }
            }
        }
    }
}
