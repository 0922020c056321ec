//! `deltaic run`: the nightly driver (see [`crate::run`]).
//!
//! Under cron (stdout not a terminal) it prints exactly the original's lines: Starting/Ending on
//! stdout, failure blocks on stderr, so `deltaic run >/dev/null && echo OK` mails only the
//! failures (core-rsync-coda.md §4.6). On a terminal, a progress line (units done, running,
//! failed) stays at the bottom, with the same lines scrolling above it.

use crate::config::Config;
use crate::run::child::{ChildCommand, ChildRunner};
use crate::run::plan::Plan;
use crate::run::progress::{self, Lines, Reporter};
use crate::run::scheduler::UnitOutcome;
use crate::run::{self, manifest::UnitStatus, summary};
use crate::sources::{ALL_SOURCES, UnitRoot};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::ZonedDateTime;
use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

/// Options of `deltaic run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  deltaic run                          back up everything, then snapshot (cron: `deltaic run >/dev/null && echo OK`)
  deltaic run --only rsync/octopus     back up one unit, then snapshot
  deltaic run -S                       back up without taking a snapshot
  deltaic run --dry-run                print the plan (units, scrubs) and do nothing")]
pub struct Args {
    /// Do not take a snapshot after the units finish
    #[arg(short = 'S', long, overrides_with = "snapshot")]
    pub no_snapshot: bool,
    /// Take a snapshot after the units finish (the default)
    #[arg(long, overrides_with = "no_snapshot")]
    pub snapshot: bool,
    /// Run only these units (e.g. rsync/octopus); may be repeated
    #[arg(long, value_name = "UNIT", num_args = 1..)]
    pub only: Vec<String>,
    /// Print the units that would run, with their command lines, and exit (no lock, no writes;
    /// exit 1 if a source cannot be planned)
    #[arg(long)]
    pub dry_run: bool,
    /// Print the run manifest as JSON on stdout, instead of the Starting/Ending lines
    #[arg(long)]
    pub json: bool,
}

/// Runs `deltaic run`: exit 0 when every unit succeeded and the snapshot (if asked for) was
/// taken; 1 when a unit failed, a source could not be planned or the snapshot failed.
pub fn execute(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    // Lock before planning, as the original: planning may hit the network (github).
    let _lock = if args.dry_run {
        None
    } else {
        Some(run::lock_root(config)?)
    };
    let mut plan = run::plan::plan(config, ALL_SOURCES, &mut rand::rng());
    for ignored in plan.select(&args.only)? {
        tracing::warn!(
            "cannot plan the {} units, but none was asked for: {}",
            ignored.source,
            ignored.message
        );
    }
    let command = ChildCommand::for_this_process(config)?;
    if args.dry_run {
        return print_plan(&plan, &command, args.json);
    }
    for error in &plan.errors {
        eprintln!(
            "error: cannot plan the {} units, so they are not backed up in this run: {}",
            error.source, error.message
        );
    }

    let stop = run::signals::stop_flag()?;
    let runner = ChildRunner::new(config, command, std::env::vars_os(), &stop)?;
    let reporter: Box<dyn Reporter> = if io::stdout().is_terminal() && !args.json {
        Box::new(TerminalProgress::new(plan.units().count()))
    } else {
        Box::new(Lines::new((!args.json).then(io::stdout), io::stderr()))
    };
    let open = || crate::snapshot::open(config);
    let snapshots: Option<run::OpenBackend<'_>> = (!args.no_snapshot).then_some(&open);
    let outcome = run::execute(config, &plan, &runner, reporter.as_ref(), &stop, snapshots);
    drop(reporter);

    for problem in &outcome.problems {
        eprintln!("error: {problem}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.manifest)?);
    }
    let line = summary::one_line(&outcome);
    // A `--only` run can succeed and leave the tree partial: say so, but exit 0.
    if outcome.success() && (outcome.manifest.complete || outcome.snapshot.is_none()) {
        tracing::info!("{line}");
    } else {
        eprintln!("{line}");
    }
    Ok(if outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--dry-run`: each unit with its child command line (or JSON); exit 1 when a source could
/// not be planned, since tonight's run would then be partial.
fn print_plan(plan: &Plan, command: &ChildCommand, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let units: Vec<serde_json::Value> = plan
            .units()
            .map(|unit| {
                let argv: Vec<String> = command
                    .argv(unit)
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                serde_json::json!({ "unit": unit.root, "argv": argv })
            })
            .collect();
        let errors: Vec<String> = plan.errors.iter().map(ToString::to_string).collect();
        let doc = serde_json::json!({ "units": units, "planning_errors": errors });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for unit in plan.units() {
            println!("{}: {}", unit.root, command.display(unit));
        }
    }
    for error in &plan.errors {
        eprintln!(
            "error: cannot plan the {} units: {}",
            error.source, error.message
        );
    }
    Ok(if plan.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The terminal display: a bar of units done, with the running and failed units, on stdout;
/// the Starting/Ending lines scroll above it and failure blocks go to stderr as under cron.
struct TerminalProgress {
    bar: ProgressBar,
    state: Mutex<(Vec<UnitRoot>, usize)>,
}

impl TerminalProgress {
    fn new(total: usize) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {pos}/{len} units done {wide_msg}",
            )
            .expect("the template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        TerminalProgress {
            bar,
            state: Mutex::new((Vec::new(), 0)),
        }
    }

    fn update(&self, change: impl FnOnce(&mut (Vec<UnitRoot>, usize))) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut state);
        let (running, failed) = &*state;
        let failed = if *failed > 0 {
            format!("{failed} failed · ")
        } else {
            String::new()
        };
        let running: Vec<&str> = running.iter().map(UnitRoot::as_str).collect();
        self.bar
            .set_message(format!("{failed}running: {}", running.join(", ")));
    }
}

impl Reporter for TerminalProgress {
    fn unit_started(&self, unit: &UnitRoot, at: &ZonedDateTime) {
        self.bar
            .println(progress::starting_line(at, unit).trim_end());
        self.update(|(running, _)| running.push(unit.clone()));
    }

    fn unit_finished(&self, unit: &UnitRoot, at: &ZonedDateTime, outcome: &UnitOutcome) {
        let failed = outcome.status != UnitStatus::Ok;
        if failed {
            self.bar
                .suspend(|| eprint!("{}", progress::failure_block(at, unit, outcome)));
        }
        self.bar.println(progress::ending_line(at, unit).trim_end());
        self.bar.inc(1);
        self.update(|(running, failures)| {
            running.retain(|r| r != unit);
            *failures += usize::from(failed);
        });
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
