//! `ripcord report (RUN | --incident ID) [--format md|html] [--out FILE]`: the run or incident
//! report from the local journals (timeline, impact graph, cleanup, verify result).
//!
//! The file flag is `--out` because `-o` is the global output-format flag.

use super::exit::with_exit;
use super::run::{ConfigArgs, Settings};
use super::{Exit, GlobalArgs};
use crate::cleanup::report::{self, CleanupRecord, Format, ReportInput};
use crate::cleanup::{CleanupError, Selection, apply, incident, source, verify};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Markdown.
    Md,
    /// Self-contained HTML.
    Html,
}

/// `ripcord report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run to report on.
    #[arg(
        value_name = "RUN",
        required_unless_present = "incident",
        conflicts_with = "incident"
    )]
    pub run: Option<String>,

    /// Report on an incident and all its runs.
    #[arg(long, value_name = "ID")]
    pub incident: Option<String>,

    /// The format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,

    /// Write the report to this file (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Gathers everything the report of `selection` shows from the state directory.
pub fn gather(
    state_dir: &std::path::Path,
    selection: &Selection,
) -> Result<ReportInput, CleanupError> {
    let all = source::local_runs(state_dir)?;
    let mut runs: Vec<source::RunView> = match selection {
        Selection::Run(id) => all
            .iter()
            .filter(|r| r.run_id == *id || r.cleanup_of().contains(id))
            .cloned()
            .collect(),
        other => all.iter().filter(|r| r.matches(other)).cloned().collect(),
    };
    source::sort_runs(&mut runs);
    let cleanups = runs
        .iter()
        .filter(|r| r.is_cleanup())
        .filter_map(|r| {
            let source::RunOrigin::Journal { path } = &r.origin else {
                return None;
            };
            let plan = apply::read_plan(path.parent()?)?;
            Some(CleanupRecord {
                run_id: r.run_id.clone(),
                plan,
            })
        })
        .collect();
    let (title, incident) = match selection {
        Selection::Incident(id) => (format!("Incident {id}"), incident::load(state_dir, id).ok()),
        Selection::Run(id) => (format!("Run {id}"), None),
        Selection::All => ("All runs".to_string(), None),
    };
    let metrics = report::collect_metrics(&runs);
    Ok(ReportInput {
        title,
        incident,
        verify: verify::load_saved(state_dir, selection),
        runs,
        cleanups,
        metrics,
        generated_at: jiff::Timestamp::now(),
    })
}

/// Runs `ripcord report`.
pub async fn run(args: ReportArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let selection = super::cleanup::selection(&args.run, &args.incident)?;
    let settings = Settings::load(&args.config, &global)?;
    let input = gather(&settings.state_dir, &selection)?;
    if input.runs.is_empty() {
        return Err(with_exit(
            Exit::Usage,
            CleanupError::NoRuns {
                selection: selection.to_string(),
                dir: settings.state_dir.clone(),
            },
        ));
    }
    let format = match args.format {
        ReportFormat::Md => Format::Markdown,
        ReportFormat::Html => Format::Html,
    };
    let text = report::render(&input, format);
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|source| CleanupError::Write {
                path: path.clone(),
                source,
            })?;
            eprintln!("report written to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(Exit::Ok)
}
