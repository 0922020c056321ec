//! `deltaic prune`: snapshot retention and log pruning (see [`crate::prune`]).
//!
//! Normal mode lists the snapshots, learns from each run record whether it is complete, plans
//! with today's local date, removes what the plan says, then prunes `ROOT/Logs`. `-n` prints
//! the plan instead and changes nothing; `--simulate` plans over names read from stdin.
//! Output is one line per snapshot, `NAME keep RULE` or `NAME remove REASON`, or with `--json`
//! an array of `{"name", "action", "rule", "complete"}` objects.

use crate::config::Config;
use crate::prune::{self, PrunePlan, RetentionPolicy};
use crate::run::manifest;
use crate::snapshot::{self, SnapshotBackend, SnapshotName};
use anyhow::{Context, anyhow, bail};
use jiff::civil::Date;
use std::collections::BTreeMap;
use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Options of `deltaic prune`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Retention (core-rsync-coda.md §6.1): snapshots older than gc-duplicate-days are first thinned
to one a day (the day's last); then each snapshot is kept by the first rule that applies:
  oldest    the oldest day is always kept
  recent    every snapshot of the last gc-duplicate-days days
  daily     one snapshot a day, for gc-daily-weeks weeks
  weekly    the first snapshot of each ISO week, for gc-weekly-months 28-day months
  monthly   the first snapshot of each 28-day month (ISO weeks 1-4, 5-8, ...), forever
  safety    the newest complete snapshot (the newest, if none is complete)
Where one snapshot stands for a day, week or month, a complete one is chosen over a partial
one (from a run in which some unit failed) when the period has one. Then, in every directory
under ROOT/Logs, the files of the newest gc-log-distinct-days days are kept.

Examples:
  deltaic prune                        remove expired snapshots and old logs
  deltaic prune -n                     show each snapshot, kept or removed, and by which rule
  deltaic ls | deltaic prune --simulate --as-of 2025-01-01
                                       what would be kept on a date, without touching anything
  printf '20240101-1\\n20240102-1 partial\\n' | deltaic prune --simulate
                                       try the rules on made-up snapshots")]
pub struct Args {
    /// Print what would be kept and removed (and by which rule); change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print each snapshot and log file removed
    #[arg(short, long)]
    pub verbose: bool,
    /// Read snapshots from stdin and print the decisions; touch nothing. One a line:
    /// `YYYYMMDD-N`, optionally followed by `complete` (the default) or `partial`
    #[arg(long)]
    pub simulate: bool,
    /// With --simulate: prune as if today were DATE (YYYY-MM-DD)
    #[arg(long, value_name = "DATE", requires = "simulate")]
    pub as_of: Option<String>,
    /// Print the decisions as JSON: [{"name", "action", "rule", "complete"}], plus "error" for
    /// a removal that failed
    #[arg(long)]
    pub json: bool,
}

/// Runs `deltaic prune`.
pub fn execute(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    if args.simulate {
        let today = match &args.as_of {
            Some(text) => parse_as_of(text)?,
            None => today(),
        };
        let stdin = io::stdin();
        if stdin.is_terminal() {
            eprintln!(
                "reading snapshots from stdin, one a line (`YYYYMMDD-N [partial]`); end with Ctrl-D"
            );
        }
        let snapshots = read_snapshots(stdin.lock())?;
        let policy = RetentionPolicy::from_settings(&config.settings);
        let plan = prune::plan(&snapshots, today, &policy);
        write_stdout(&render_plan(&plan, args.json, &BTreeMap::new()))?;
        return Ok(ExitCode::SUCCESS);
    }

    let backend = snapshot::open(config)?;
    let mut out = String::new();
    let result = prune_snapshots_and_logs(config, backend.as_ref(), today(), &args, &mut out);
    write_stdout(&out)?;
    result.map(|()| ExitCode::SUCCESS)
}

/// Normal mode and `-n`: plans over the backend's snapshots as of `today`; with `-n` renders
/// the plan into `out`, otherwise applies it, prunes the logs, and renders what `-v`/`--json`
/// ask for. Every failure is collected and returned as one error after the rest is done.
fn prune_snapshots_and_logs(
    config: &Config,
    backend: &dyn SnapshotBackend,
    today: Date,
    args: &Args,
    out: &mut String,
) -> anyhow::Result<()> {
    let root = config.root();
    let policy = RetentionPolicy::from_settings(&config.settings);
    let names = backend.list().context("listing snapshots")?;
    let snapshots: Vec<(SnapshotName, bool)> = names
        .into_iter()
        .map(|name| (name, manifest::is_complete(root, &name)))
        .collect();
    let plan = prune::plan(&snapshots, today, &policy);
    if args.dry_run {
        out.push_str(&render_plan(&plan, args.json, &BTreeMap::new()));
        return Ok(());
    }

    let applied = prune::apply(&plan, backend, root);
    // Logs are pruned even when a snapshot could not be removed; both are reported below.
    let logs = prune::prune_logs(&root.join("Logs"), config.settings.gc_log_distinct_days);

    let errors: BTreeMap<SnapshotName, String> = applied
        .failures
        .iter()
        .map(|(name, err)| (*name, format!("{err:#}")))
        .collect();
    if args.json {
        out.push_str(&render_plan(&plan, true, &errors));
    } else if args.verbose {
        for name in &applied.removed {
            out.push_str(&format!("removed snapshot {name}\n"));
        }
        for path in &logs.removed {
            out.push_str(&format!("removed log {}\n", path.display()));
        }
    }

    let problems: Vec<String> = applied
        .failures
        .iter()
        .map(|(_, err)| format!("{err:#}"))
        .chain(logs.errors.iter().map(|err| format!("{err:#}")))
        .collect();
    if !problems.is_empty() {
        bail!(
            "prune finished with {} error(s); everything else was done:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Today's local date.
fn today() -> Date {
    jiff::ZonedDateTime::now().date()
}

/// Parses `--as-of`: strictly `YYYY-MM-DD`.
fn parse_as_of(text: &str) -> anyhow::Result<Date> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let date = if shaped {
        text.parse::<Date>().ok()
    } else {
        None
    };
    date.ok_or_else(|| {
        anyhow!("--as-of `{text}` is not a date of the form YYYY-MM-DD (e.g. 2025-01-31)")
    })
}

/// Reads `--simulate` input: one snapshot a line, `NAME [complete|partial]`, blank lines
/// ignored. Errors name the line.
fn read_snapshots(input: impl BufRead) -> anyhow::Result<Vec<(SnapshotName, bool)>> {
    let mut seen: BTreeMap<SnapshotName, usize> = BTreeMap::new();
    let mut snapshots = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading stdin line {number}"))?;
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let name: SnapshotName = first
            .parse()
            .map_err(|err| anyhow!("stdin line {number}: {err}"))?;
        let complete = match words.next() {
            None | Some("complete") => true,
            Some("partial") => false,
            Some(other) => bail!(
                "stdin line {number}: `{other}` after {name}: only `complete` or `partial` may follow the name"
            ),
        };
        if let Some(extra) = words.next() {
            bail!(
                "stdin line {number}: unexpected `{extra}`; a line is `YYYYMMDD-N [complete|partial]`"
            );
        }
        if let Some(earlier) = seen.insert(name, number) {
            bail!("stdin line {number}: {name} is already on line {earlier}");
        }
        snapshots.push((name, complete));
    }
    Ok(snapshots)
}

/// One element of the `--json` array.
#[derive(serde::Serialize)]
struct JsonDecision<'a> {
    name: SnapshotName,
    action: &'static str,
    rule: String,
    complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The plan as text lines (`NAME keep RULE`, `NAME remove REASON`) or as JSON, with the
/// removal errors (by snapshot) in the JSON.
fn render_plan(plan: &PrunePlan, json: bool, errors: &BTreeMap<SnapshotName, String>) -> String {
    if json {
        let items: Vec<JsonDecision> = plan
            .entries()
            .iter()
            .map(|e| {
                let rule = match e.decision {
                    prune::Decision::Keep(rule) => rule.to_string(),
                    prune::Decision::Remove(reason) => reason.to_string(),
                };
                JsonDecision {
                    name: e.name,
                    action: e.decision.action(),
                    rule,
                    complete: e.complete,
                    error: errors.get(&e.name).map(String::as_str),
                }
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&items).expect("plain structs serialize");
        text.push('\n');
        text
    } else {
        plan.entries()
            .iter()
            .map(|e| format!("{} {}\n", e.name, e.decision))
            .collect()
    }
}

/// Writes program output; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::tests::{FakeBackend, write_record};

    fn read(text: &str) -> anyhow::Result<Vec<(SnapshotName, bool)>> {
        read_snapshots(text.as_bytes())
    }

    #[test]
    fn simulation_input_takes_names_with_an_optional_state() {
        let got = read("20240101-1\n\n  20240102-1   partial \n20240103-10\tcomplete\n").unwrap();
        let want: Vec<(SnapshotName, bool)> = vec![
            ("20240101-1".parse().unwrap(), true),
            ("20240102-1".parse().unwrap(), false),
            ("20240103-10".parse().unwrap(), true),
        ];
        assert_eq!(got, want);
        assert!(read("").unwrap().is_empty());
    }

    #[test]
    fn simulation_input_errors_name_the_line() {
        let cases = [
            (
                "20240101-1\nnot-a-name\n",
                "stdin line 2: `not-a-name` is not a snapshot name",
            ),
            (
                "\n\n20240101-1 broken\n",
                "stdin line 3: `broken` after 20240101-1",
            ),
            (
                "20240101-1 partial extra\n",
                "stdin line 1: unexpected `extra`",
            ),
            (
                "20240101-1\n20240101-1 partial\n",
                "stdin line 2: 20240101-1 is already on line 1",
            ),
        ];
        for (input, message) in cases {
            let err = format!("{:#}", read(input).unwrap_err());
            assert!(err.starts_with(message), "{input:?}: {err}");
        }
        let err = read_snapshots(&b"20240101-1\n\xff\n"[..]).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("reading stdin line 2"),
            "{err:#}"
        );
    }

    #[test]
    fn as_of_must_be_an_iso_date() {
        assert_eq!(
            parse_as_of("2024-06-15").unwrap(),
            jiff::civil::date(2024, 6, 15)
        );
        for bad in [
            "20240615",
            "2024-6-15",
            "2024-02-30",
            "2024-06-15T00:00",
            "yesterday",
            "",
        ] {
            let err = parse_as_of(bad).unwrap_err().to_string();
            assert!(err.contains("YYYY-MM-DD"), "{bad}: {err}");
        }
    }

    #[test]
    fn json_carries_each_decision_and_removal_errors() {
        let snapshots: Vec<(SnapshotName, bool)> = vec![
            ("20240101-1".parse().unwrap(), true),
            ("20240101-2".parse().unwrap(), false),
            ("20240102-1".parse().unwrap(), true),
        ];
        let plan = prune::plan(
            &snapshots,
            jiff::civil::date(2024, 6, 15),
            &RetentionPolicy::default(),
        );
        let errors = BTreeMap::from([(
            "20240101-2".parse().unwrap(),
            "removing snapshot 20240101-2: busy".to_string(),
        )]);
        let value: serde_json::Value =
            serde_json::from_str(&render_plan(&plan, true, &errors)).unwrap();
        assert_eq!(
            value,
            serde_json::json!([
                {"name": "20240101-1", "action": "keep", "rule": "oldest: the oldest day is always kept", "complete": true},
                {"name": "20240101-2", "action": "remove", "rule": "day 2024-01-01 is kept as 20240101-1", "complete": false,
                 "error": "removing snapshot 20240101-2: busy"},
                {"name": "20240102-1", "action": "keep", "rule": "safety: the newest complete snapshot", "complete": true},
            ])
        );
        assert_eq!(
            render_plan(&plan, false, &errors),
            "20240101-1 keep oldest: the oldest day is always kept\n\
             20240101-2 remove day 2024-01-01 is kept as 20240101-1\n\
             20240102-1 keep safety: the newest complete snapshot\n"
        );
    }

    /// A ROOT with run records for 2024-01-08..14 (20240114-1 partial), logs of five days,
    /// and a fake backend holding those snapshots (removing `failing` fails).
    struct Fixture {
        _dir: tempfile::TempDir,
        config: Config,
        backend: FakeBackend,
    }

    fn fixture(failing: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backup");
        let config = Config::from_yaml(
            &format!(
                "settings:\n  root: {}\n  snapshot-backend: dir\n  gc-log-distinct-days: 2\n",
                root.display()
            ),
            &dir.path().join("deltaic.conf"),
        )
        .unwrap();
        let names: Vec<SnapshotName> = (8..=14).map(|d| name(&format!("202401{d:02}-1"))).collect();
        for n in &names {
            write_record(&root, *n, n.to_string() != "20240114-1");
        }
        for day in 1..=5 {
            let path = root.join(format!("Logs/rsync/host/2024010{day}.out"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "log\n").unwrap();
        }
        let failing: Vec<SnapshotName> = failing.iter().map(|s| name(s)).collect();
        Fixture {
            _dir: dir,
            config,
            backend: FakeBackend::with(&names, &failing),
        }
    }

    fn name(s: &str) -> SnapshotName {
        s.parse().unwrap()
    }

    fn args(dry_run: bool, verbose: bool, json: bool) -> Args {
        Args {
            dry_run,
            verbose,
            simulate: false,
            as_of: None,
            json,
        }
    }

    const APRIL_17: Date = jiff::civil::date(2024, 4, 17);

    fn left(f: &Fixture) -> Vec<String> {
        f.backend
            .list()
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    fn logs_left(f: &Fixture) -> Vec<String> {
        let dir = f.config.root().join("Logs/rsync/host");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn dry_run_prints_the_plan_with_partial_snapshots_and_changes_nothing() {
        let f = fixture(&[]);
        let mut out = String::new();
        prune_snapshots_and_logs(
            &f.config,
            &f.backend,
            APRIL_17,
            &args(true, false, false),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            "20240108-1 keep oldest: the oldest day is always kept\n\
             20240109-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
             20240110-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
             20240111-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
             20240112-1 remove ISO week 2024-W02 is kept as 20240108-1\n\
             20240113-1 keep safety: the newest complete snapshot\n\
             20240114-1 remove ISO week 2024-W02 is kept as 20240108-1\n"
        );
        assert!(f.backend.calls.borrow().is_empty());
        assert_eq!(left(&f).len(), 7);
        assert_eq!(logs_left(&f).len(), 5, "-n pruned logs");
    }

    #[test]
    fn pruning_removes_snapshots_records_and_logs_and_reports_with_verbose() {
        let f = fixture(&[]);
        let mut out = String::new();
        prune_snapshots_and_logs(
            &f.config,
            &f.backend,
            APRIL_17,
            &args(false, true, false),
            &mut out,
        )
        .unwrap();
        assert_eq!(left(&f), ["20240108-1", "20240113-1"]);
        let root = f.config.root();
        for removed in ["20240109-1", "20240112-1", "20240114-1"] {
            assert!(
                !manifest::record_path(root, &name(removed)).exists(),
                "record of {removed}"
            );
        }
        assert!(manifest::record_path(root, &name("20240113-1")).exists());
        assert_eq!(logs_left(&f), ["20240104.out", "20240105.out"]);
        let logs = root.join("Logs/rsync/host");
        let expected: String = [
            "20240109-1",
            "20240110-1",
            "20240111-1",
            "20240112-1",
            "20240114-1",
        ]
        .iter()
        .map(|n| format!("removed snapshot {n}\n"))
        .chain((1..=3).rev().map(|d| {
            format!(
                "removed log {}\n",
                logs.join(format!("2024010{d}.out")).display()
            )
        }))
        .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn a_failed_removal_fails_the_command_after_everything_else_is_done() {
        let f = fixture(&["20240110-1"]);
        let mut out = String::new();
        let err = prune_snapshots_and_logs(
            &f.config,
            &f.backend,
            APRIL_17,
            &args(false, false, true),
            &mut out,
        )
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.starts_with("prune finished with 1 error(s)"),
            "{message}"
        );
        assert!(
            message.contains("removing snapshot 20240110-1: lvremove: device busy"),
            "{message}"
        );
        assert_eq!(left(&f), ["20240108-1", "20240110-1", "20240113-1"]);
        assert!(manifest::record_path(f.config.root(), &name("20240110-1")).exists());
        assert_eq!(
            logs_left(&f).len(),
            2,
            "logs are pruned despite the failure"
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let with_error: Vec<&str> = value
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o.get("error").is_some())
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(with_error, ["20240110-1"]);
    }
}
