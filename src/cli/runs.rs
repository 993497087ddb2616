//! `ripcord runs list` and `ripcord runs show RUN`: the local run journals.

use super::exit::with_exit;
use super::{Exit, GlobalArgs, Output};
use crate::journal::{self, Entry};
use clap::{Args, Subcommand};

/// `ripcord runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: RunsCommand,
}

/// The `runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List the runs in the state directory, newest first.
    List,
    /// Show one run's timeline.
    Show {
        /// The run id (`r-YYYYMMDD-HHMMSS-xxxx`).
        run: String,
    },
}

/// Runs `ripcord runs …`.
pub async fn run(args: RunsArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let state_dir = global.state_dir();
    match args.command {
        RunsCommand::List => {
            let runs = journal::list_runs(&state_dir)?;
            if global.output == Output::Json {
                outln!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(Exit::Ok);
            }
            if runs.is_empty() {
                outln!("no runs in {}", state_dir.display());
                return Ok(Exit::Ok);
            }
            outln!(
                "{:<24} {:<18} {:<12} {:<10} {:>9}  STARTED",
                "RUN",
                "PLAYBOOK",
                "OUTCOME",
                "WHO",
                "MUTATIONS"
            );
            for r in runs {
                let outcome = r
                    .outcome
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "unfinished".into());
                let started = r.started_at.map(|t| t.to_string()).unwrap_or_default();
                outln!(
                    "{:<24} {:<18} {:<12} {:<10} {:>9}  {started}{}",
                    r.run_id,
                    r.playbook,
                    outcome,
                    r.who,
                    r.mutations,
                    r.problem.map(|p| format!("  ({p})")).unwrap_or_default()
                );
            }
            Ok(Exit::Ok)
        }
        RunsCommand::Show { run } => {
            journal::validate_run_id(&run).map_err(|e| with_exit(Exit::Usage, e))?;
            let path = journal::journal_path(&state_dir, &run);
            if !path.is_file() {
                return Err(with_exit(
                    Exit::Usage,
                    anyhow::anyhow!("no run {run} in {}", state_dir.display()),
                ));
            }
            let (entries, torn) = journal::read(&path)?;
            if global.output == Output::Json {
                outln!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(Exit::Ok);
            }
            out!("{}", timeline(&entries));
            if let Some(torn) = torn {
                outln!("(journal: {torn})");
            }
            outln!("journal: {}", path.display());
            Ok(Exit::Ok)
        }
    }
}

/// A run's timeline for people: one line per record, with the offset from the first record.
pub fn timeline(entries: &[Entry]) -> String {
    let Some(first) = entries.first() else {
        return "(empty journal)\n".to_string();
    };
    let mut out = format!("run started at {}\n", first.at);
    for entry in entries {
        let offset = entry.at.duration_since(first.at).as_secs_f64();
        out.push_str(&format!(
            "{:>4} +{offset:>7.3}s  {}\n",
            entry.seq,
            entry.record.describe()
        ));
    }
    out
}

/// Runs `ripcord crd`: prints the `runs.ripcord.dev` CRD as YAML.
pub fn print_crd() -> anyhow::Result<Exit> {
    out!("{}", crate::k8s::runs::crd_yaml()?);
    Ok(Exit::Ok)
}
