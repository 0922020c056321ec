//! Per-unit, per-day logs: `ROOT/Logs/<unit>/<YYYYMMDD>.out` and `.err` (core-rsync-coda.md
//! §4.4 steps 1, 2, 5 and 7). Both files are opened in append mode, so every run of a day
//! accumulates in the same pair, and each run is framed by header and footer lines:
//!
//! ```text
//! # Starting task at 2024-01-02 03:04:05
//! # /usr/bin/deltaic -c /etc/deltaic.conf rsync backup octopus.example.org
//! … the child's output …
//! # Task exited with status 1
//! # Ending task at 2024-01-02 03:10:00
//!
//! ```
//!
//! The header and footer texts are pure functions ([`header`], [`footer`]); [`UnitLog`] holds the
//! open files and hands out descriptors for the child's stdout and stderr.

use crate::sources::UnitRoot;
use anyhow::Context;
use jiff::ZonedDateTime;
use jiff::civil::Date;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the log directory under ROOT (a compatibility contract, §11).
pub const LOGS_DIR: &str = "Logs";

/// The format of every timestamp in logs and on the run's stdout/stderr (local time).
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// `ROOT/Logs`.
pub fn logs_dir(root: &Path) -> PathBuf {
    root.join(LOGS_DIR)
}

/// `ROOT/Logs/<unit>/<YYYYMMDD>` without extension: the stem of the `.out`/`.err` pair.
pub fn log_base(root: &Path, unit: &UnitRoot, day: Date) -> PathBuf {
    logs_dir(root)
        .join(unit.as_str())
        .join(day.strftime("%Y%m%d").to_string())
}

/// `at` as `YYYY-MM-DD HH:MM:SS`.
pub fn timestamp(at: &ZonedDateTime) -> String {
    at.strftime(TIME_FORMAT).to_string()
}

/// How a unit's child ended, as far as its log footer is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEnd {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
    /// It could not be started at all.
    NotStarted(String),
}

/// Why deltaic stopped a unit before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// It ran longer than `unit-timeout` (the limit).
    TimedOut(Duration),
    /// `deltaic run` itself was interrupted (SIGTERM or SIGINT).
    Interrupted,
}

/// The two header lines written before the child starts (§4.4 step 5).
pub fn header(started: &ZonedDateTime, command: &str) -> String {
    format!("# Starting task at {}\n# {command}\n", timestamp(started))
}

/// The footer written after the child ended (§4.4 step 7): how it ended, when, and a blank
/// line. When deltaic stopped the unit, a line saying why comes first
/// (`# Task timed out after N s`).
pub fn footer(end: &ChildEnd, killed: Option<&Killed>, ended: &ZonedDateTime) -> String {
    let mut text = String::new();
    match killed {
        Some(Killed::TimedOut(limit)) => {
            text.push_str(&format!("# Task timed out after {} s\n", limit.as_secs()))
        }
        Some(Killed::Interrupted) => text.push_str("# Task stopped: deltaic run was interrupted\n"),
        None => {}
    }
    match end {
        ChildEnd::Exited(code) => text.push_str(&format!("# Task exited with status {code}\n")),
        ChildEnd::Signaled(sig) => text.push_str(&format!("# Task died on signal {sig}\n")),
        ChildEnd::NotStarted(why) => {
            text.push_str(&format!("# Task could not be started: {why}\n"))
        }
    }
    text.push_str(&format!("# Ending task at {}\n\n", timestamp(ended)));
    text
}

/// The open `.out` and `.err` logs of one unit run.
#[derive(Debug)]
pub struct UnitLog {
    /// Path of the `.out` file.
    pub out_path: PathBuf,
    /// Path of the `.err` file.
    pub err_path: PathBuf,
    out: File,
    err: File,
}

impl UnitLog {
    /// Creates `ROOT/Logs/<unit>` if needed and opens both files of `day` for appending.
    ///
    /// Errors: the directory cannot be created or a file cannot be opened (named in the error).
    pub fn open(root: &Path, unit: &UnitRoot, day: Date) -> anyhow::Result<UnitLog> {
        let base = log_base(root, unit, day);
        let dir = base
            .parent()
            .expect("a log base always has a parent: ROOT/Logs/<unit>");
        fs::create_dir_all(dir)
            .with_context(|| format!("creating log directory {}", dir.display()))?;
        let out_path = base.with_extension("out");
        let err_path = base.with_extension("err");
        let open = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log {}", path.display()))
        };
        Ok(UnitLog {
            out: open(&out_path)?,
            err: open(&err_path)?,
            out_path,
            err_path,
        })
    }

    /// Appends `text` to both files.
    pub fn write_both(&mut self, text: &str) -> anyhow::Result<()> {
        for (file, path) in [
            (&mut self.out, &self.out_path),
            (&mut self.err, &self.err_path),
        ] {
            file.write_all(text.as_bytes())
                .and_then(|()| file.flush())
                .with_context(|| format!("writing log {}", path.display()))?;
        }
        Ok(())
    }

    /// Descriptors for the child's stdout and stderr (duplicates of the append-mode files).
    pub fn child_stdio(&self) -> io::Result<(File, File)> {
        Ok((self.out.try_clone()?, self.err.try_clone()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i8, m: i8, s: i8) -> ZonedDateTime {
        jiff::civil::date(2024, 1, 2)
            .at(h, m, s, 0)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .unwrap()
    }

    #[test]
    fn header_and_footer_match_the_original_format() {
        assert_eq!(
            header(
                &at(3, 4, 5),
                "/usr/bin/deltaic -c /etc/d.conf rsync backup h"
            ),
            "# Starting task at 2024-01-02 03:04:05\n# /usr/bin/deltaic -c /etc/d.conf rsync backup h\n"
        );
        assert_eq!(
            footer(&ChildEnd::Exited(1), None, &at(3, 10, 0)),
            "# Task exited with status 1\n# Ending task at 2024-01-02 03:10:00\n\n"
        );
        assert_eq!(
            footer(&ChildEnd::Signaled(9), None, &at(23, 59, 59)),
            "# Task died on signal 9\n# Ending task at 2024-01-02 23:59:59\n\n"
        );
    }

    #[test]
    fn a_timeout_is_written_before_the_status_line() {
        assert_eq!(
            footer(
                &ChildEnd::Signaled(15),
                Some(&Killed::TimedOut(Duration::from_secs(3600))),
                &at(4, 0, 0)
            ),
            "# Task timed out after 3600 s\n# Task died on signal 15\n# Ending task at 2024-01-02 04:00:00\n\n"
        );
    }

    #[test]
    fn an_interrupted_unit_says_so() {
        let text = footer(
            &ChildEnd::Signaled(15),
            Some(&Killed::Interrupted),
            &at(4, 0, 0),
        );
        assert!(
            text.starts_with(
                "# Task stopped: deltaic run was interrupted\n# Task died on signal 15\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_child_that_never_started_says_why() {
        let text = footer(
            &ChildEnd::NotStarted("No such file or directory".into()),
            None,
            &at(1, 0, 0),
        );
        assert!(
            text.starts_with("# Task could not be started: No such file or directory\n"),
            "{text}"
        );
    }

    #[test]
    fn logs_are_per_unit_and_day_and_append() {
        let dir = tempfile::tempdir().unwrap();
        let unit = UnitRoot::try_from("coda/srv/a:vol".to_string()).unwrap();
        let day = jiff::civil::date(2024, 3, 9);
        for round in ["first\n", "second\n"] {
            let mut log = UnitLog::open(dir.path(), &unit, day).unwrap();
            log.write_both(round).unwrap();
            let (mut out, _err) = log.child_stdio().unwrap();
            out.write_all(b"child\n").unwrap();
        }
        let base = dir.path().join("Logs/coda/srv/a:vol/20240309");
        assert_eq!(
            fs::read_to_string(base.with_extension("out")).unwrap(),
            "first\nchild\nsecond\nchild\n"
        );
        assert_eq!(
            fs::read_to_string(base.with_extension("err")).unwrap(),
            "first\nsecond\n"
        );
    }
}
