//! `deltaic config check`: validate a configuration and print the units it defines.

use crate::config::Config;
use crate::sources::ALL_SOURCES;
use std::path::Path;
use std::process::ExitCode;

/// `deltaic config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration, report errors and warnings, and list its units
    #[command(
        after_help = "Examples:\n  deltaic config check\n  deltaic -c /etc/deltaic.conf config check --json"
    )]
    Check {
        /// Print JSON: {"config": ..., "warnings": [...], "units": [...]}
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `deltaic config` subcommand.
pub fn execute(path: &Path, cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { json } = cmd;
    let config = Config::load(path)?;
    // The run's own planning: a source that cannot list its units (the GitHub API unreachable,
    // say) is reported, not fatal, since the file itself is valid. Scrub draws are not shown.
    let plan = crate::run::plan::plan(&config, ALL_SOURCES, &mut rand::rng());
    let units: Vec<String> = plan
        .sources
        .iter()
        .flat_map(|source| source.units.iter().map(|unit| unit.root.to_string()))
        .collect();
    let unplanned: Vec<String> = plan.errors.iter().map(ToString::to_string).collect();
    if json {
        let doc = serde_json::json!({
            "config": config.path,
            "warnings": config.warnings,
            "units": units,
            "planning_errors": unplanned,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        for error in &unplanned {
            eprintln!(
                "warning: {error}; the file is valid, but `deltaic run` would fail this source \
                 until that is fixed"
            );
        }
        println!("{}: OK, {} unit(s)", config.path.display(), units.len());
        for unit in &units {
            println!("  {unit}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
