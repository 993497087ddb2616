//! `ripcord incident open|update|close|show|list`: incident book-keeping in the state
//! directory (`<state-dir>/incidents/<ID>.json`).

use super::run::{ConfigArgs, Settings};
use super::{Exit, GlobalArgs, Output};
use crate::cleanup::incident::{self, Incident, IncidentChanges};
use crate::cleanup::{Selection, source};
use clap::{Args, Subcommand};

/// `ripcord incident`.
#[derive(Debug, Args)]
pub struct IncidentArgs {
    #[command(subcommand)]
    pub command: IncidentCommand,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The incident subcommands.
#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Open an incident (start time: now).
    Open(IncidentFields),
    /// Change an incident's fields (root causes are added; `--replace-root-causes` replaces).
    Update(IncidentFields),
    /// Close an incident (end time: now).
    Close(IncidentFields),
    /// Show an incident and the runs attached to it.
    Show {
        /// The incident id.
        id: String,
    },
    /// List incidents, newest first.
    List,
}

/// The editable fields.
#[derive(Debug, Args)]
pub struct IncidentFields {
    /// The incident id (`INC-1234`).
    pub id: String,

    /// Severity (free form: `SEV1`, `high`…).
    #[arg(long, value_name = "S")]
    pub severity: Option<String>,

    /// An impacted service (repeatable).
    #[arg(long = "service", value_name = "X")]
    pub services: Vec<String>,

    /// The impact, for people.
    #[arg(long, value_name = "TEXT")]
    pub impact: Option<String>,

    /// A root cause (repeatable; free text).
    #[arg(long = "root-cause", value_name = "TEXT")]
    pub root_causes: Vec<String>,

    /// Replace the recorded root causes instead of adding to them.
    #[arg(long)]
    pub replace_root_causes: bool,
}

impl IncidentFields {
    fn changes(&self) -> IncidentChanges {
        IncidentChanges {
            severity: self.severity.clone(),
            services: self.services.clone(),
            impact: self.impact.clone(),
            root_causes: self.root_causes.clone(),
            replace_root_causes: self.replace_root_causes,
        }
    }
}

/// Runs `ripcord incident`.
pub async fn run(args: IncidentArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let settings = Settings::load(&args.config, &global)?;
    let dir = &settings.state_dir;
    let usage = |e: crate::cleanup::CleanupError| match e {
        e @ (crate::cleanup::CleanupError::InvalidIncidentId { .. }
        | crate::cleanup::CleanupError::IncidentNotFound { .. }
        | crate::cleanup::CleanupError::IncidentExists { .. }) => {
            super::exit::with_exit(Exit::Usage, e)
        }
        e => anyhow::Error::new(e),
    };
    let shown = match &args.command {
        IncidentCommand::Open(f) => {
            incident::open(dir, &f.id, &settings.who, f.changes()).map_err(usage)?
        }
        IncidentCommand::Update(f) => incident::update(dir, &f.id, f.changes()).map_err(usage)?,
        IncidentCommand::Close(f) => incident::close(dir, &f.id, f.changes()).map_err(usage)?,
        IncidentCommand::Show { id } => incident::load(dir, id).map_err(usage)?,
        IncidentCommand::List => {
            let all = incident::list(dir)?;
            match global.output {
                Output::Json => outln!("{}", serde_json::to_string_pretty(&all)?),
                Output::Text => {
                    for i in &all {
                        outln!(
                            "{}  {}  {}  {}  {}",
                            i.id,
                            if i.is_open() { "open  " } else { "closed" },
                            i.opened_at.strftime("%Y-%m-%d %H:%M"),
                            i.severity.as_deref().unwrap_or("-"),
                            i.services.join(",")
                        );
                    }
                }
            }
            return Ok(Exit::Ok);
        }
    };
    let runs: Vec<source::RunView> = source::local_runs(dir)?
        .into_iter()
        .filter(|r| r.matches(&Selection::Incident(shown.id.clone())))
        .collect();
    match global.output {
        Output::Json => {
            let value = serde_json::json!({ "incident": shown, "runs": runs });
            outln!("{}", serde_json::to_string_pretty(&value)?);
        }
        Output::Text => out!("{}", render(&shown, &runs)),
    }
    Ok(Exit::Ok)
}

/// An incident for people.
pub fn render(i: &Incident, runs: &[source::RunView]) -> String {
    let mut out = format!(
        "incident {} ({})\n  severity:    {}\n  services:    {}\n  opened:      {} by {}\n  closed:      {}\n  impact:      {}\n  root causes: {}\n",
        i.id,
        if i.is_open() { "open" } else { "closed" },
        i.severity.as_deref().unwrap_or("-"),
        if i.services.is_empty() {
            "-".to_string()
        } else {
            i.services.join(", ")
        },
        i.opened_at,
        i.opened_by,
        i.closed_at
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into()),
        i.impact.as_deref().unwrap_or("-"),
        if i.root_causes.is_empty() {
            "-".to_string()
        } else {
            i.root_causes.join("; ")
        },
    );
    out.push_str(&format!("  runs ({} in local journals):\n", runs.len()));
    for r in runs {
        out.push_str(&format!(
            "    {}  {}  {}  by {}  {} mutation(s)\n",
            r.run_id,
            r.playbook,
            r.outcome
                .map(|o| o.to_string())
                .unwrap_or_else(|| "unfinished".into()),
            r.who,
            r.touched.len()
        ));
    }
    out
}
