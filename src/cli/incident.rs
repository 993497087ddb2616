//! `ripcord incident open|update|close|show|list|note|action|handoff|ack`: incident
//! book-keeping in the state directory (`<state-dir>/incidents/<ID>.json`): the postmortem's
//! times, the owner and hand-offs (acknowledged by the taker), notes and action items.

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
        #[arg(value_parser = super::incident_id)]
        id: String,
    },
    /// List incidents, newest first.
    List,
    /// Add a free-text note (kept with who wrote it and when).
    Note {
        /// The incident id.
        id: String,
        /// The note.
        text: String,
    },
    /// Follow-up action items: `add`, `done`.
    #[command(subcommand)]
    Action(ActionCommand),
    /// Hand the incident to someone else; they take over when they acknowledge (`ack`).
    Handoff {
        /// The incident id.
        id: String,
        /// Who takes over.
        #[arg(long, value_name = "NAME")]
        to: String,
    },
    /// Acknowledge a hand-off addressed to you: you own the incident from now.
    Ack {
        /// The incident id.
        id: String,
        /// Who acknowledges (default: the operator, see `--who`).
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
    },
}

/// `incident action …`.
#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// Add an action item; prints its number.
    Add {
        /// The incident id.
        id: String,
        /// What is to be done.
        text: String,
        /// Who will do it.
        #[arg(long, value_name = "NAME")]
        owner: Option<String>,
    },
    /// Mark action item N done.
    Done {
        /// The incident id.
        id: String,
        /// The item's number.
        number: usize,
    },
}

/// The editable fields.
#[derive(Debug, Args)]
pub struct IncidentFields {
    /// The incident id (`INC-1234`).
    #[arg(value_parser = super::incident_id)]
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

    /// When the impact began: RFC 3339, `now`, or a period ago (`45m`).
    #[arg(long, value_name = "TIME")]
    pub impact_start: Option<String>,

    /// When it was detected (default: when the incident was opened).
    #[arg(long, value_name = "TIME")]
    pub detected: Option<String>,

    /// When the impact was mitigated (default: the end of its first successful run).
    #[arg(long, value_name = "TIME")]
    pub mitigated: Option<String>,

    /// When it was resolved.
    #[arg(long, value_name = "TIME")]
    pub resolved: Option<String>,
}

impl IncidentFields {
    fn changes(&self) -> anyhow::Result<IncidentChanges> {
        Ok(IncidentChanges {
            severity: self.severity.clone(),
            services: self.services.clone(),
            impact: self.impact.clone(),
            root_causes: self.root_causes.clone(),
            replace_root_causes: self.replace_root_causes,
            impact_started_at: parse_time("--impact-start", self.impact_start.as_deref())?,
            detected_at: parse_time("--detected", self.detected.as_deref())?,
            mitigated_at: parse_time("--mitigated", self.mitigated.as_deref())?,
            resolved_at: parse_time("--resolved", self.resolved.as_deref())?,
        })
    }
}

/// A time flag: RFC 3339, `now`, or a period ago (`90s`, `45m`, `2h`, `-2h`).
fn parse_time(flag: &str, text: Option<&str>) -> anyhow::Result<Option<jiff::Timestamp>> {
    let Some(text) = text else {
        return Ok(None);
    };
    if text == "now" {
        return Ok(Some(jiff::Timestamp::now()));
    }
    super::runs::parse_since(text.trim_start_matches('-'))
        .map(Some)
        .map_err(|e| {
            super::exit::with_exit(
                Exit::Usage,
                anyhow::anyhow!("{flag} {text:?}: {e} (or `now`)"),
            )
        })
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
    let now = jiff::Timestamp::now();
    let refused = |m: String| super::exit::with_exit(Exit::Refused, anyhow::anyhow!(m));
    let not_usable = |m: String| super::exit::with_exit(Exit::Usage, anyhow::anyhow!(m));
    let shown = match &args.command {
        IncidentCommand::Open(f) => {
            incident::open(dir, &f.id, &settings.who, f.changes()?).map_err(usage)?
        }
        IncidentCommand::Update(f) => incident::update(dir, &f.id, f.changes()?).map_err(usage)?,
        IncidentCommand::Close(f) => incident::close(dir, &f.id, f.changes()?).map_err(usage)?,
        IncidentCommand::Show { id } => incident::load(dir, id).map_err(usage)?,
        IncidentCommand::Note { id, text } => {
            let mut i = incident::load(dir, id).map_err(usage)?;
            i.add_note(&settings.who, text, now);
            incident::save(dir, &i).map_err(usage)?;
            errln!("note added to incident {id}");
            i
        }
        IncidentCommand::Action(ActionCommand::Add { id, text, owner }) => {
            let mut i = incident::load(dir, id).map_err(usage)?;
            let number = i.add_action(&settings.who, text, owner.clone(), now);
            incident::save(dir, &i).map_err(usage)?;
            errln!("action item {number} added to incident {id}");
            i
        }
        IncidentCommand::Action(ActionCommand::Done { id, number }) => {
            let mut i = incident::load(dir, id).map_err(usage)?;
            i.complete_action(*number, now).map_err(not_usable)?;
            incident::save(dir, &i).map_err(usage)?;
            errln!("action item {number} of incident {id} is done");
            i
        }
        IncidentCommand::Handoff { id, to } => {
            let mut i = incident::load(dir, id).map_err(usage)?;
            i.hand_off(to, now);
            incident::save(dir, &i).map_err(usage)?;
            errln!(
                "incident {id}: handed to {to}, who takes over with `ripcord incident ack {id} --as {to}`"
            );
            i
        }
        IncidentCommand::Ack { id, by } => {
            let mut i = incident::load(dir, id).map_err(usage)?;
            let by = by.clone().unwrap_or_else(|| settings.who.clone());
            i.acknowledge(&by, now).map_err(refused)?;
            incident::save(dir, &i).map_err(usage)?;
            errln!("incident {id}: {by} took over");
            i
        }
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
    let d = i.durations(crate::cleanup::report::first_mitigation(runs));
    let time = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
    let took = |d: Option<std::time::Duration>| {
        d.map(|d| format!("{}s", d.as_secs()))
            .unwrap_or_else(|| "-".into())
    };
    out.push_str(&format!(
        "  owner:       {}{}\n  impact from: {}\n  detected:    {}\n  mitigated:   {}{}\n  resolved:    {}\n  time to detect: {}, to mitigate: {}, to resolve: {}\n",
        i.current_owner(),
        i.pending_handoff()
            .map(|h| format!(" (hand-off to {} pending since {})", h.to, h.at))
            .unwrap_or_default(),
        time(i.impact_started_at),
        d.detected_at,
        time(d.mitigated_at),
        if d.mitigated_by_run { " (first successful run)" } else { "" },
        time(i.resolved_at),
        took(d.time_to_detect),
        took(d.time_to_mitigate),
        took(d.time_to_resolve),
    ));
    for h in &i.handoffs {
        out.push_str(&format!(
            "  hand-off:    {} -> {} at {}, {}\n",
            h.from,
            h.to,
            h.at,
            h.acked_at
                .map(|a| format!("acknowledged at {a}"))
                .unwrap_or_else(|| "not acknowledged yet".into())
        ));
    }
    for n in &i.notes {
        out.push_str(&format!("  note:        {} {}: {}\n", n.at, n.by, n.text));
    }
    for a in &i.action_items {
        out.push_str(&format!(
            "  action {}:    [{}] {}{}\n",
            a.number,
            if a.done_at.is_some() { "x" } else { " " },
            a.text,
            a.owner
                .as_deref()
                .map(|o| format!(" (owner {o})"))
                .unwrap_or_default()
        ));
    }
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
