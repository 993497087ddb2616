//! `ripcord runs list [--incident ID] [--target T] [--since 2h] [--failed]` and
//! `ripcord runs show RUN`: the local run journals.
//!
//! A run is named by its id, by a unique prefix of it (`r-20261202-2306`), or as `last` (the
//! newest run); [`resolve_run_id`] does that for every command taking a run.

use super::exit::with_exit;
use super::{Exit, GlobalArgs, Output};
use crate::journal::{self, Entry, Outcome, Record};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

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
    List(ListArgs),
    /// Show one run's timeline and where its evidence is.
    Show {
        /// The run: its id, a unique prefix of it, or `last`.
        run: String,
    },
}

/// Filters of `runs list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the runs of this incident.
    #[arg(long, value_name = "ID")]
    pub incident: Option<String>,

    /// Only the runs whose target contains this text (`zone-a`, `deployment/shop/web`).
    #[arg(long, value_name = "TEXT")]
    pub target: Option<String>,

    /// Only the runs started in this last period (`30m`, `2h`, `7d`) or since this RFC 3339
    /// time.
    #[arg(long, value_name = "PERIOD|TIME")]
    pub since: Option<String>,

    /// Only the runs that did not succeed (failed, refused, interrupted, unfinished).
    #[arg(long)]
    pub failed: bool,
}

/// One row of `runs list` (also its JSON form).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRow {
    /// The run id.
    pub run_id: String,
    /// The playbook.
    pub playbook: String,
    /// What it acted on (`zone/zone-a`, `deployment/shop/web`), from its lock or parameters.
    pub target: String,
    /// The incident.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// What started it (`cli`, `api`, `alertmanager`, `schedule`).
    pub trigger: String,
    /// Who started it.
    pub who: String,
    /// When it started.
    pub started_at: Option<jiff::Timestamp>,
    /// Wall time from start to its last finish, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// How it ended (`None`: running, or the process died).
    pub outcome: Option<Outcome>,
    /// Mutations applied.
    pub mutations: usize,
    /// The journal file.
    pub journal: PathBuf,
    /// A problem reading the journal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Runs `ripcord runs …`.
pub async fn run(args: RunsArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let state_dir = global.state_dir();
    match args.command {
        RunsCommand::List(filters) => {
            let since = match &filters.since {
                Some(text) => Some(parse_since(text).map_err(|e| {
                    with_exit(Exit::Usage, anyhow::anyhow!("--since {text:?}: {e}"))
                })?),
                None => None,
            };
            let rows: Vec<RunRow> = rows(&state_dir)?
                .into_iter()
                .filter(|r| {
                    filters
                        .incident
                        .as_ref()
                        .is_none_or(|i| r.incident.as_ref() == Some(i))
                })
                .filter(|r| {
                    filters
                        .target
                        .as_ref()
                        .is_none_or(|t| r.target.contains(t.as_str()))
                })
                .filter(|r| since.is_none_or(|s| r.started_at.is_some_and(|at| at >= s)))
                .filter(|r| !filters.failed || r.outcome != Some(Outcome::Succeeded))
                .collect();
            if global.output == Output::Json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(Exit::Ok);
            }
            if rows.is_empty() {
                outln!("no runs in {} match", state_dir.display());
                return Ok(Exit::Ok);
            }
            outln!(
                "{:<23} {:<16} {:<24} {:<10} {:<8} {:<10} {:>8}  {:<11} STARTED",
                "RUN",
                "PLAYBOOK",
                "TARGET",
                "INCIDENT",
                "TRIGGER",
                "WHO",
                "DURATION",
                "OUTCOME"
            );
            for r in rows {
                let outcome = r
                    .outcome
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "unfinished".into());
                let duration = r
                    .duration_seconds
                    .map(|d| format!("{d:.1}s"))
                    .unwrap_or_else(|| "-".into());
                let started = r
                    .started_at
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                outln!(
                    "{:<23} {:<16} {:<24} {:<10} {:<8} {:<10} {:>8}  {:<11} {started}{}",
                    r.run_id,
                    r.playbook,
                    r.target,
                    r.incident.as_deref().unwrap_or("-"),
                    r.trigger,
                    r.who,
                    duration,
                    outcome,
                    r.problem.map(|p| format!("  ({p})")).unwrap_or_default()
                );
            }
            Ok(Exit::Ok)
        }
        RunsCommand::Show { run } => {
            let run = resolve_run_id(&state_dir, &run)?;
            let path = journal::journal_path(&state_dir, &run);
            let (entries, torn) = journal::read(&path)?;
            if global.output == Output::Json {
                outln!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(Exit::Ok);
            }
            out!("{}", timeline(&entries));
            if let Some(torn) = torn {
                outln!("(journal: {torn})");
            }
            out!("{}", evidence(&state_dir, &run, &entries));
            Ok(Exit::Ok)
        }
    }
}

/// Where a run's evidence is: journal, snapshot, warm-up results, reports.
fn evidence(state_dir: &Path, run_id: &str, entries: &[Entry]) -> String {
    let dir = journal::run_dir(state_dir, run_id);
    let mut out = format!(
        "journal:  {}\n",
        journal::journal_path(state_dir, run_id).display()
    );
    let snapshot = entries.iter().rev().find_map(|e| match &e.record {
        Record::SnapshotTaken { dir, .. } => Some(PathBuf::from(dir)),
        _ => None,
    });
    match snapshot.or_else(|| Some(dir.join("snapshot")).filter(|d| d.is_dir())) {
        Some(snapshot) => out.push_str(&format!("snapshot: {}\n", snapshot.display())),
        None => out.push_str("snapshot: none taken\n"),
    }
    let warmups = dir.join(crate::actions::deployment_restart::WARMUP_LOG);
    if warmups.is_file() {
        out.push_str(&format!("warm-ups: {}\n", warmups.display()));
        let text = std::fs::read_to_string(&warmups).unwrap_or_default();
        for call in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let s = |k: &str| call[k].as_str().unwrap_or("?").to_string();
            let result = match (call["status"].as_u64(), call["error"].as_str()) {
                (Some(status), _) => status.to_string(),
                (None, Some(error)) => error.to_string(),
                (None, None) => "no answer".into(),
            };
            out.push_str(&format!(
                "  {} {} via {}: {result}{} ({} ms)\n",
                s("at"),
                s("pod"),
                s("via"),
                if call["ok"] == serde_json::Value::Bool(true) {
                    ""
                } else {
                    " FAILED"
                },
                call["ms"].as_u64().unwrap_or(0)
            ));
        }
    }
    let mut reports: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "html"))
        .collect();
    reports.sort();
    for report in &reports {
        out.push_str(&format!("report:   {}\n", report.display()));
    }
    out.push_str(&format!(
        "report:   ripcord report {run_id} (Markdown on stdout; --format html --out {})\n",
        dir.join("report.html").display()
    ));
    out
}

/// Every local run as a row, newest first.
pub fn rows(state_dir: &Path) -> anyhow::Result<Vec<RunRow>> {
    let mut out = Vec::new();
    for summary in journal::list_runs(state_dir)? {
        let (trigger, target) = journal::read(&summary.journal)
            .ok()
            .and_then(|(entries, _)| {
                entries.into_iter().find_map(|e| match e.record {
                    Record::RunStarted {
                        trigger,
                        params,
                        plan,
                        ..
                    } => Some((trigger, target_of(&plan, &params))),
                    _ => None,
                })
            })
            .unwrap_or_else(|| ("-".into(), "-".into()));
        let duration_seconds = summary
            .started_at
            .zip(summary.finished_at)
            .map(|(start, end)| end.duration_since(start).as_secs_f64().max(0.0));
        out.push(RunRow {
            run_id: summary.run_id,
            playbook: summary.playbook,
            target,
            incident: summary.incident,
            trigger,
            who: summary.who,
            started_at: summary.started_at,
            duration_seconds,
            outcome: summary.outcome,
            mutations: summary.mutations,
            journal: summary.journal,
            problem: summary.problem,
        });
    }
    Ok(out)
}

/// What a run acted on: its lock (`zone/zone-a`, `deployment/shop/web`), else its `zone` or
/// `name` parameter.
fn target_of(
    plan: &serde_json::Value,
    params: &std::collections::BTreeMap<String, serde_json::Value>,
) -> String {
    if let Some(lock) = plan.get("lock").and_then(|l| l.as_str()) {
        return lock.to_string();
    }
    let param = |k: &str| params.get(k).and_then(|v| v.as_str()).map(str::to_string);
    if let Some(zone) = param("zone") {
        return format!("zone/{zone}");
    }
    match (param("namespace"), param("name")) {
        (Some(ns), Some(name)) => format!("deployment/{ns}/{name}"),
        (None, Some(name)) => format!("deployment/{name}"),
        _ => "-".into(),
    }
}

/// `--since`: a period back from now (`90s`, `30m`, `2h`, `7d`) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at);
    }
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("expected a period like 2h or an RFC 3339 time")?;
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| "expected a period like 2h or an RFC 3339 time")?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?} (use s, m, h or d)")),
    };
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(seconds))
        .map_err(|e| e.to_string())
}

/// Resolves a run named by its id, a unique prefix of it, or `last` (the newest run in
/// `state_dir`). Unknown or ambiguous names are usage errors (exit 2) that say what exists.
pub fn resolve_run_id(state_dir: &Path, name: &str) -> anyhow::Result<String> {
    let usage = |m: String| with_exit(Exit::Usage, anyhow::anyhow!(m));
    if journal::validate_run_id(name).is_ok() && journal::journal_path(state_dir, name).is_file() {
        return Ok(name.to_string());
    }
    let mut ids: Vec<String> = match std::fs::read_dir(state_dir.join("runs")) {
        Ok(dir) => dir
            .flatten()
            .filter(|e| e.path().join(journal::JOURNAL_FILE).is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    };
    ids.sort();
    if name == "last" {
        return ids
            .pop()
            .ok_or_else(|| usage(format!("no runs in {}", state_dir.display())));
    }
    let matching: Vec<&String> = ids.iter().filter(|id| id.starts_with(name)).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(usage(format!(
            "no run {name} in {} (see `ripcord runs list`)",
            state_dir.display()
        ))),
        many => Err(usage(format!(
            "{name} names {} runs: {}; give more of the id",
            many.len(),
            many.iter()
                .take(5)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
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
