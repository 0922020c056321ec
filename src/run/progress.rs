//! What a run tells the operator while it goes (core-rsync-coda.md §4.4 steps 3, 8 and 9).
//!
//! The scheduler reports unit starts and ends to a [`Reporter`]. [`Lines`] prints exactly the
//! original's lines, which is what cron mails:
//!
//! ```text
//! 2024-01-02 03:00:00 Starting rsync/octopus          (stdout)
//! 2024-01-02 03:10:00 Failed:  rsync/octopus          (stderr)
//!    /usr/bin/deltaic -c /etc/deltaic.conf rsync backup octopus.example.org
//!    rsync: connection refused
//!    # Task exited with status 1
//!    # Ending task at 2024-01-02 03:10:00
//! 2024-01-02 03:10:00 Ending   rsync/octopus          (stdout)
//! ```
//!
//! The line texts are pure functions, shared with the terminal progress display of the CLI.

use super::scheduler::UnitOutcome;
use super::unit_log::timestamp;
use crate::run::manifest::UnitStatus;
use crate::sources::UnitRoot;
use jiff::ZonedDateTime;
use std::io::Write;
use std::sync::{Mutex, PoisonError};

/// Receives the progress of a run; called from the worker threads.
pub trait Reporter: Sync {
    /// `unit` started at `at`.
    fn unit_started(&self, unit: &UnitRoot, at: &ZonedDateTime);
    /// `unit` ended at `at` with `outcome`.
    fn unit_finished(&self, unit: &UnitRoot, at: &ZonedDateTime, outcome: &UnitOutcome);
}

/// `<time> Starting <unit>` (stdout, §4.4 step 3).
pub fn starting_line(at: &ZonedDateTime, unit: &UnitRoot) -> String {
    format!("{} Starting {unit}\n", timestamp(at))
}

/// `<time> Ending   <unit>` (stdout, §4.4 step 9; three spaces line it up with Starting).
pub fn ending_line(at: &ZonedDateTime, unit: &UnitRoot) -> String {
    format!("{} Ending   {unit}\n", timestamp(at))
}

/// The failure block (stderr, §4.4 step 8): `<time> Failed:  <unit>`, the command line indented
/// by three spaces, then the (already indented) excerpt.
pub fn failure_block(at: &ZonedDateTime, unit: &UnitRoot, outcome: &UnitOutcome) -> String {
    let mut block = format!(
        "{} Failed:  {unit}\n   {}\n",
        timestamp(at),
        outcome.command
    );
    if !outcome.excerpt.is_empty() {
        block.push_str(&outcome.excerpt);
        block.push('\n');
    }
    block
}

/// Prints the original's lines: Starting/Ending on `out` (unless disabled, e.g. for `--json`),
/// failure blocks on `err`. Each line or block is written and flushed whole, so lines of
/// concurrent units never interleave.
pub struct Lines<O, E> {
    out: Option<Mutex<O>>,
    err: Mutex<E>,
}

impl<O: Write + Send, E: Write + Send> Lines<O, E> {
    /// Prints Starting/Ending lines to `out` when given, and failure blocks to `err`.
    pub fn new(out: Option<O>, err: E) -> Self {
        Lines {
            out: out.map(Mutex::new),
            err: Mutex::new(err),
        }
    }
}

/// Writes and flushes `text`; the run goes on if the terminal or pipe is gone.
fn emit(stream: &Mutex<impl Write>, text: &str) {
    let mut stream = stream.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = stream
        .write_all(text.as_bytes())
        .and_then(|()| stream.flush());
}

impl<O: Write + Send, E: Write + Send> Reporter for Lines<O, E> {
    fn unit_started(&self, unit: &UnitRoot, at: &ZonedDateTime) {
        if let Some(out) = &self.out {
            emit(out, &starting_line(at, unit));
        }
    }

    fn unit_finished(&self, unit: &UnitRoot, at: &ZonedDateTime, outcome: &UnitOutcome) {
        if outcome.status != UnitStatus::Ok {
            emit(&self.err, &failure_block(at, unit, outcome));
        }
        if let Some(out) = &self.out {
            emit(out, &ending_line(at, unit));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::run::manifest::UnitReport;

    /// A reporter that remembers what it was told.
    #[derive(Default)]
    pub(crate) struct Recorder {
        started: Mutex<Vec<String>>,
        finished: Mutex<Vec<(String, UnitOutcome)>>,
    }

    impl Recorder {
        pub(crate) fn started(&self) -> Vec<String> {
            self.started.lock().unwrap().clone()
        }
        pub(crate) fn finished(&self) -> Vec<(String, UnitOutcome)> {
            self.finished.lock().unwrap().clone()
        }
    }

    impl Reporter for Recorder {
        fn unit_started(&self, unit: &UnitRoot, _at: &ZonedDateTime) {
            self.started.lock().unwrap().push(unit.to_string());
        }
        fn unit_finished(&self, unit: &UnitRoot, _at: &ZonedDateTime, outcome: &UnitOutcome) {
            self.finished
                .lock()
                .unwrap()
                .push((unit.to_string(), outcome.clone()));
        }
    }

    fn noon() -> ZonedDateTime {
        jiff::civil::date(2024, 1, 2)
            .at(12, 0, 1, 0)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .unwrap()
    }

    fn outcome(status: UnitStatus, excerpt: &str) -> UnitOutcome {
        UnitOutcome {
            status,
            exit_code: Some(1),
            report: UnitReport::default(),
            command: "/usr/bin/deltaic -c /etc/d.conf rsync backup h.example.org".into(),
            excerpt: excerpt.into(),
        }
    }

    #[test]
    fn lines_match_the_original() {
        let unit = UnitRoot::try_from("rsync/h".to_string()).unwrap();
        assert_eq!(
            starting_line(&noon(), &unit),
            "2024-01-02 12:00:01 Starting rsync/h\n"
        );
        assert_eq!(
            ending_line(&noon(), &unit),
            "2024-01-02 12:00:01 Ending   rsync/h\n"
        );
        assert_eq!(
            failure_block(
                &noon(),
                &unit,
                &outcome(
                    UnitStatus::Failed,
                    "   boom\n   # Task exited with status 1"
                )
            ),
            "2024-01-02 12:00:01 Failed:  rsync/h\n   /usr/bin/deltaic -c /etc/d.conf rsync backup h.example.org\n   boom\n   # Task exited with status 1\n"
        );
    }

    #[test]
    fn lines_reporter_sends_failures_to_err_and_the_rest_to_out() {
        let unit = UnitRoot::try_from("rsync/h".to_string()).unwrap();
        let lines = Lines::new(Some(Vec::new()), Vec::new());
        lines.unit_started(&unit, &noon());
        lines.unit_finished(&unit, &noon(), &outcome(UnitStatus::TimedOut, "   x"));
        lines.unit_finished(&unit, &noon(), &outcome(UnitStatus::Ok, ""));
        let out = String::from_utf8(lines.out.unwrap().into_inner().unwrap()).unwrap();
        let err = String::from_utf8(lines.err.into_inner().unwrap()).unwrap();
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(
            out.contains("Starting rsync/h") && out.contains("Ending   rsync/h"),
            "{out}"
        );
        assert_eq!(err.matches("Failed:  rsync/h").count(), 1, "{err}");
    }

    #[test]
    fn without_out_only_failures_are_printed() {
        let unit = UnitRoot::try_from("rsync/h".to_string()).unwrap();
        let lines: Lines<Vec<u8>, Vec<u8>> = Lines::new(None, Vec::new());
        lines.unit_started(&unit, &noon());
        lines.unit_finished(&unit, &noon(), &outcome(UnitStatus::Failed, ""));
        let err = String::from_utf8(lines.err.into_inner().unwrap()).unwrap();
        assert_eq!(
            err,
            "2024-01-02 12:00:01 Failed:  rsync/h\n   /usr/bin/deltaic -c /etc/d.conf rsync backup h.example.org\n"
        );
    }
}
