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
    // Planning with a fixed, non-drawing RNG: scrubs are not shown here.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut units = Vec::new();
    for source in ALL_SOURCES {
        for unit in source.plan_units(&config, &mut rng)? {
            units.push(unit.root.to_string());
        }
    }
    if json {
        let doc = serde_json::json!({
            "config": config.path,
            "warnings": config.warnings,
            "units": units,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        println!("{}: OK, {} unit(s)", config.path.display(), units.len());
        for unit in &units {
            println!("  {unit}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
