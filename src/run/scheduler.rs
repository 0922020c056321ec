//! The worker pools of a run (core-rsync-coda.md §4.2 steps 2–3, §4.4): one pool per source,
//! `<label>-workers` threads each, all pools at once, each pool taking units from its own FIFO
//! queue in plan order.
//!
//! Every unit is isolated: a failed unit, an error of deltaic's own (say, a log directory that
//! cannot be created) and even a panic in the runner are recorded as that unit's failure, and
//! the worker goes on with the next unit (BUG-7: the original's worker thread died and silently
//! skipped the rest of its queue). Spawning is behind [`UnitRunner`], so tests drive the pools
//! with fakes that fail, hang or panic; [`super::child::ChildRunner`] is the real one.

use super::excerpt::INDENT;
use super::manifest::{UnitRecord, UnitReport, UnitStatus};
use super::plan::SourcePlan;
use super::progress::Reporter;
use crate::sources::Unit;
use jiff::ZonedDateTime;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Runs one unit to completion (in the real runner: a child process, see [`super::child`]).
pub trait UnitRunner: Sync {
    /// Runs `unit`; `started` is when the scheduler started it (it picks the day of the logs).
    ///
    /// A unit that ran and failed is `Ok` with a failed status. `Err` means deltaic itself could
    /// not run the unit (e.g. its log cannot be opened); the scheduler records the unit as failed
    /// with the error as its excerpt, and goes on.
    fn run(&self, unit: &Unit, started: &ZonedDateTime) -> anyhow::Result<UnitOutcome>;
}

/// What a [`UnitRunner`] reports about one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitOutcome {
    /// How the unit ended.
    pub status: UnitStatus,
    /// The child's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// What the child reported about its work.
    pub report: UnitReport,
    /// The command line, as written in the logs and the failure mail.
    pub command: String,
    /// For a failure: the excerpt of its `.err` log, already indented (see [`super::excerpt`]).
    pub excerpt: String,
}

impl UnitOutcome {
    /// The outcome of a unit deltaic could not run itself (an internal error or a panic).
    pub fn internal_failure(unit: &Unit, message: &str) -> UnitOutcome {
        UnitOutcome {
            status: UnitStatus::Failed,
            exit_code: None,
            report: UnitReport::default(),
            command: unit.backup_args.join(" "),
            excerpt: message
                .lines()
                .map(|line| format!("{INDENT}{line}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Warning recorded for units that never started because the run was interrupted.
pub const NOT_RUN_WARNING: &str = "not run: deltaic run was interrupted before this unit started";

/// Runs every source's units, one pool per source and all pools at once, and returns one
/// record per planned unit, in plan order.
///
/// Once `stop` is set, no worker starts another unit; the units left in the queues are recorded
/// as failed with [`NOT_RUN_WARNING`]. (Stopping running units is the runner's job.)
pub fn run_pools(
    sources: &[SourcePlan],
    runner: &dyn UnitRunner,
    reporter: &dyn Reporter,
    stop: &AtomicBool,
) -> Vec<UnitRecord> {
    let mut queues = Vec::new();
    let mut all_units = Vec::new();
    for source in sources {
        let mut queue = VecDeque::new();
        for unit in &source.units {
            queue.push_back((all_units.len(), unit));
            all_units.push(unit);
        }
        queues.push((source, Mutex::new(queue)));
    }
    let results: Mutex<Vec<Option<UnitRecord>>> = Mutex::new(vec![None; all_units.len()]);

    std::thread::scope(|scope| {
        for (source, queue) in &queues {
            let threads = source.workers.get().min(source.units.len());
            for _ in 0..threads {
                let (results, queue) = (&results, queue);
                scope.spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let next = queue
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .pop_front();
                        let Some((index, unit)) = next else { break };
                        let record = run_one(unit, runner, reporter);
                        results.lock().unwrap_or_else(PoisonError::into_inner)[index] =
                            Some(record);
                    }
                });
            }
        }
    });

    let results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    results
        .into_iter()
        .zip(all_units)
        .map(|(record, unit)| record.unwrap_or_else(|| not_run(unit)))
        .collect()
}

/// Runs one unit, turning errors and panics into a failed outcome, and reports it.
fn run_one(unit: &Unit, runner: &dyn UnitRunner, reporter: &dyn Reporter) -> UnitRecord {
    let started = ZonedDateTime::now();
    reporter.unit_started(&unit.root, &started);
    let clock = Instant::now();
    let outcome = match panic::catch_unwind(AssertUnwindSafe(|| runner.run(unit, &started))) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => UnitOutcome::internal_failure(
            unit,
            &format!("deltaic could not run this unit: {err:#}"),
        ),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            UnitOutcome::internal_failure(
                unit,
                &format!("deltaic crashed running this unit: {what}"),
            )
        }
    };
    let duration_secs = clock.elapsed().as_secs_f64();
    reporter.unit_finished(&unit.root, &ZonedDateTime::now(), &outcome);
    UnitRecord {
        unit: unit.root.clone(),
        status: outcome.status,
        exit_code: outcome.exit_code,
        duration_secs,
        report: outcome.report,
    }
}

/// Whether the unit of `record` was started (false for those an interrupted run never reached,
/// whose data this run did not touch).
pub fn was_started(record: &UnitRecord) -> bool {
    !record.report.warnings.iter().any(|w| w == NOT_RUN_WARNING)
}

fn not_run(unit: &Unit) -> UnitRecord {
    UnitRecord {
        unit: unit.root.clone(),
        status: UnitStatus::Failed,
        exit_code: None,
        duration_secs: 0.0,
        report: UnitReport {
            warnings: vec![NOT_RUN_WARNING.into()],
            ..UnitReport::default()
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::run::progress::tests::Recorder;
    use crate::sources::UnitRoot;
    use std::collections::HashMap;
    use std::num::NonZeroUsize;
    use std::sync::Condvar;
    use std::time::Duration;

    /// What the fake runner does with a unit.
    #[derive(Clone, Debug)]
    pub(crate) enum Act {
        Succeed,
        Fail(i32),
        Error,
        Panic,
        /// Waits (up to 10 s) until this many units are running at once, then succeeds.
        AwaitConcurrency(usize),
        /// Blocks until `release` is called, then succeeds.
        Hang,
    }

    /// A runner that acts on each unit by name and records starts and ends.
    #[derive(Default)]
    pub(crate) struct FakeRunner {
        pub acts: HashMap<String, Act>,
        state: Mutex<FakeState>,
        changed: Condvar,
    }

    #[derive(Default)]
    struct FakeState {
        running: usize,
        max_running: usize,
        events: Vec<String>,
        released: bool,
    }

    impl FakeRunner {
        pub(crate) fn new(acts: &[(&str, Act)]) -> FakeRunner {
            FakeRunner {
                acts: acts
                    .iter()
                    .map(|(u, a)| (u.to_string(), a.clone()))
                    .collect(),
                ..FakeRunner::default()
            }
        }
        pub(crate) fn events(&self) -> Vec<String> {
            self.state.lock().unwrap().events.clone()
        }
        pub(crate) fn max_running(&self) -> usize {
            self.state.lock().unwrap().max_running
        }
        pub(crate) fn release(&self) {
            self.state.lock().unwrap().released = true;
            self.changed.notify_all();
        }
        fn wait_until(&self, mut done: impl FnMut(&FakeState) -> bool) -> bool {
            let state = self.state.lock().unwrap();
            let (_state, timeout) = self
                .changed
                .wait_timeout_while(state, Duration::from_secs(10), |s| !done(s))
                .unwrap();
            !timeout.timed_out()
        }
    }

    impl UnitRunner for FakeRunner {
        fn run(&self, unit: &Unit, _started: &ZonedDateTime) -> anyhow::Result<UnitOutcome> {
            let name = unit.root.to_string();
            {
                let mut s = self.state.lock().unwrap();
                s.running += 1;
                s.max_running = s.max_running.max(s.running);
                s.events.push(format!("start {name}"));
                self.changed.notify_all();
            }
            let act = self.acts.get(&name).cloned().unwrap_or(Act::Succeed);
            let result = match act {
                Act::Succeed => Ok(0),
                Act::Fail(code) => Ok(code),
                Act::Error => Err(anyhow::anyhow!("cannot open log for {name}")),
                Act::Panic => panic!("fake runner panics on {name}"),
                Act::AwaitConcurrency(n) => {
                    let reached = self.wait_until(|s| s.max_running >= n);
                    Ok(if reached { 0 } else { 99 })
                }
                Act::Hang => {
                    self.wait_until(|s| s.released);
                    Ok(0)
                }
            };
            let mut s = self.state.lock().unwrap();
            s.running -= 1;
            s.events.push(format!("end {name}"));
            self.changed.notify_all();
            let code = result?;
            Ok(UnitOutcome {
                status: if code == 0 {
                    UnitStatus::Ok
                } else {
                    UnitStatus::Failed
                },
                exit_code: Some(code),
                report: UnitReport::default(),
                command: format!("deltaic {}", unit.backup_args.join(" ")),
                excerpt: if code == 0 {
                    String::new()
                } else {
                    format!("   exit {code}")
                },
            })
        }
    }

    pub(crate) fn unit(name: &str) -> Unit {
        Unit {
            root: UnitRoot::try_from(name.to_string()).unwrap(),
            backup_args: vec!["backup".into(), name.into()],
        }
    }

    pub(crate) fn source(label: &'static str, workers: usize, names: &[&str]) -> SourcePlan {
        SourcePlan {
            label,
            workers: NonZeroUsize::new(workers).unwrap(),
            units: names.iter().map(|n| unit(n)).collect(),
        }
    }

    fn statuses(records: &[UnitRecord]) -> Vec<(String, UnitStatus)> {
        records
            .iter()
            .map(|r| (r.unit.to_string(), r.status))
            .collect()
    }

    #[test]
    fn two_workers_run_two_units_at_once() {
        let runner = FakeRunner::new(&[
            ("rsync/a", Act::AwaitConcurrency(2)),
            ("rsync/b", Act::AwaitConcurrency(2)),
        ]);
        let stop = AtomicBool::new(false);
        let records = run_pools(
            &[source("rsync", 2, &["rsync/a", "rsync/b"])],
            &runner,
            &Recorder::default(),
            &stop,
        );
        assert_eq!(
            statuses(&records),
            vec![
                ("rsync/a".into(), UnitStatus::Ok),
                ("rsync/b".into(), UnitStatus::Ok)
            ]
        );
        let events = runner.events();
        let first_end = events.iter().position(|e| e.starts_with("end")).unwrap();
        assert_eq!(
            events[..first_end].len(),
            2,
            "both started before either ended: {events:?}"
        );
    }

    #[test]
    fn one_worker_runs_units_one_after_another_in_order() {
        let runner = FakeRunner::default();
        let stop = AtomicBool::new(false);
        run_pools(
            &[source("rsync", 1, &["rsync/a", "rsync/b", "rsync/c"])],
            &runner,
            &Recorder::default(),
            &stop,
        );
        assert_eq!(runner.max_running(), 1);
        assert_eq!(
            runner.events(),
            [
                "start rsync/a",
                "end rsync/a",
                "start rsync/b",
                "end rsync/b",
                "start rsync/c",
                "end rsync/c"
            ]
        );
    }

    #[test]
    fn all_pools_run_at_the_same_time() {
        // One worker each: the coda unit and the rsync unit can only meet if both pools run.
        let runner = FakeRunner::new(&[
            ("coda/s/v", Act::AwaitConcurrency(2)),
            ("rsync/a", Act::AwaitConcurrency(2)),
        ]);
        let stop = AtomicBool::new(false);
        let records = run_pools(
            &[
                source("coda", 1, &["coda/s/v"]),
                source("rsync", 1, &["rsync/a"]),
            ],
            &runner,
            &Recorder::default(),
            &stop,
        );
        assert!(
            records.iter().all(|r| r.status == UnitStatus::Ok),
            "{records:?}"
        );
    }

    #[test]
    fn failures_errors_and_panics_never_stop_the_pool() {
        let runner = FakeRunner::new(&[
            ("rsync/a", Act::Fail(1)),
            ("rsync/b", Act::Error),
            ("rsync/c", Act::Panic),
        ]);
        let recorder = Recorder::default();
        let stop = AtomicBool::new(false);
        let records = run_pools(
            &[source(
                "rsync",
                1,
                &["rsync/a", "rsync/b", "rsync/c", "rsync/d"],
            )],
            &runner,
            &recorder,
            &stop,
        );
        assert_eq!(
            statuses(&records),
            vec![
                ("rsync/a".into(), UnitStatus::Failed),
                ("rsync/b".into(), UnitStatus::Failed),
                ("rsync/c".into(), UnitStatus::Failed),
                ("rsync/d".into(), UnitStatus::Ok),
            ]
        );
        assert_eq!(records[0].exit_code, Some(1));
        assert_eq!(records[1].exit_code, None);
        let finished = recorder.finished();
        assert!(
            finished[1]
                .1
                .excerpt
                .contains("cannot open log for rsync/b"),
            "{finished:?}"
        );
        assert!(
            finished[2]
                .1
                .excerpt
                .contains("fake runner panics on rsync/c"),
            "{finished:?}"
        );
        assert_eq!(finished[2].1.command, "backup rsync/c");
    }

    #[test]
    fn a_hanging_unit_holds_one_worker_and_the_other_drains_the_queue() {
        let runner = FakeRunner::new(&[("rsync/a", Act::Hang)]);
        let stop = AtomicBool::new(false);
        let pools = [source(
            "rsync",
            2,
            &["rsync/a", "rsync/b", "rsync/c", "rsync/d"],
        )];
        let records = std::thread::scope(|scope| {
            let handle = scope.spawn(|| run_pools(&pools, &runner, &Recorder::default(), &stop));
            assert!(
                runner
                    .wait_until(|s| s.events.iter().filter(|e| e.starts_with("end")).count() == 3)
            );
            runner.release();
            handle.join().unwrap()
        });
        assert!(
            records.iter().all(|r| r.status == UnitStatus::Ok),
            "{records:?}"
        );
        assert_eq!(runner.events().last().unwrap(), "end rsync/a");
    }

    #[test]
    fn a_stop_request_leaves_queued_units_recorded_as_not_run() {
        let runner = FakeRunner::new(&[("rsync/a", Act::Hang)]);
        let stop = AtomicBool::new(false);
        let pools = [source("rsync", 1, &["rsync/a", "rsync/b"])];
        let records = std::thread::scope(|scope| {
            let handle = scope.spawn(|| run_pools(&pools, &runner, &Recorder::default(), &stop));
            assert!(runner.wait_until(|s| s.running == 1));
            stop.store(true, Ordering::SeqCst);
            runner.release();
            handle.join().unwrap()
        });
        assert_eq!(records[0].status, UnitStatus::Ok);
        assert_eq!(records[1].status, UnitStatus::Failed);
        assert_eq!(
            records[1].report.warnings,
            vec![NOT_RUN_WARNING.to_string()]
        );
        assert!(!runner.events().contains(&"start rsync/b".to_string()));
        assert!(was_started(&records[0]) && !was_started(&records[1]));
    }

    #[test]
    fn the_reporter_sees_every_start_and_end() {
        let runner = FakeRunner::new(&[("rsync/b", Act::Fail(2))]);
        let recorder = Recorder::default();
        let stop = AtomicBool::new(false);
        run_pools(
            &[source("rsync", 1, &["rsync/a", "rsync/b"])],
            &runner,
            &recorder,
            &stop,
        );
        assert_eq!(recorder.started(), ["rsync/a", "rsync/b"]);
        let finished = recorder.finished();
        assert_eq!(finished.len(), 2);
        assert_eq!(finished[1].1.status, UnitStatus::Failed);
        assert_eq!(finished[1].1.excerpt, "   exit 2");
    }
}
