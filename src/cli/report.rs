//! `ripcord report (RUN | --incident ID) [--format md|html] [--out FILE]`: the run or incident
//! report (timeline, impact graph, cleanup, verify result) from the local journals and, for runs
//! whose journal is on another machine, from the cluster's `Run` resources.
//!
//! The file flag is `--out` because `-o` is the global output-format flag.

use super::exit::with_exit;
use super::run::{ConfigArgs, Settings, connected_client};
use super::{Exit, GlobalArgs};
use crate::cleanup::report::{self, CleanupRecord, Format, ReportInput};
use crate::cleanup::{CleanupError, Selection, apply, incident, source, verify};
use crate::k8s::runs::{self, Run, RunListError};
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
        value_name = "RUN", value_parser = super::run_id,
        required_unless_present = "incident",
        conflicts_with = "incident"
    )]
    pub run: Option<String>,

    /// Report on an incident and all its runs.
    #[arg(long, value_name = "ID", value_parser = super::incident_id)]
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

/// Gathers everything the report of `selection` shows from the state directory alone.
pub fn gather(
    state_dir: &std::path::Path,
    selection: &Selection,
) -> Result<ReportInput, CleanupError> {
    let local = source::local_runs(state_dir)?;
    Ok(gather_from(state_dir, selection, local, &[]))
}

/// True when the report of `selection` needs the cluster's `Run` resources: the selected run
/// has no local journal, or (for an incident) no local run carries the incident id.
pub fn needs_cluster(local: &[source::RunView], selection: &Selection) -> bool {
    match selection {
        Selection::Run(id) => !local.iter().any(|r| r.run_id == *id),
        Selection::Incident(_) => !local.iter().any(|r| r.matches(selection)),
        Selection::All => false,
    }
}

/// Gathers the report of `selection` from the local runs and, for runs with no local journal,
/// the cluster's `Run` resources (`remote`; a local journal always wins over its resource).
pub fn gather_from(
    state_dir: &std::path::Path,
    selection: &Selection,
    local: Vec<source::RunView>,
    remote: &[Run],
) -> ReportInput {
    let mut runs: Vec<source::RunView> =
        local.into_iter().filter(|r| r.matches(selection)).collect();
    let mut cluster = Vec::new();
    for run in remote {
        let Some((view, details)) = source::from_typed_run(run) else {
            continue;
        };
        if view.matches(selection) && !runs.iter().any(|r| r.run_id == view.run_id) {
            runs.push(view);
            cluster.push(details);
        }
    }
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
    ReportInput {
        title,
        incident,
        verify: verify::load_saved(state_dir, selection),
        runs,
        cleanups,
        metrics,
        generated_at: jiff::Timestamp::now(),
        cluster,
        notes: Vec::new(),
    }
}

/// Reads every `Run` resource of the cluster (all namespaces). A cluster without the CRD has
/// none. Unreachable (no kubeconfig, transport failure, timeout) → exit 3.
async fn cluster_runs(global: &GlobalArgs, settings: &Settings) -> anyhow::Result<Vec<Run>> {
    let client = connected_client(global).await?;
    match runs::list_runs(&client, None, settings.call_timeout).await {
        Ok(list) => Ok(list),
        Err(RunListError::CrdMissing) => Ok(Vec::new()),
        Err(err) if err.is_unreachable() => Err(with_exit(
            Exit::Unreachable,
            anyhow::Error::new(err).context("cannot read the cluster's Run resources"),
        )),
        Err(err) => Err(anyhow::Error::new(err).context("cannot read the cluster's Run resources")),
    }
}

/// Runs `ripcord report`.
///
/// Local journals come first. The cluster is asked only when something may be missing
/// locally: the selected run has no local journal (the cluster is then required), or the
/// report is about an incident (other machines may have run mitigations for it; when no local
/// run carries the incident id the cluster is required, otherwise an unreachable cluster only
/// adds a note to the report).
pub async fn run(args: ReportArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let selection = super::cleanup::selection(&args.run, &args.incident)?;
    let settings = Settings::load(&args.config, &global)?;
    let local = source::local_runs(&settings.state_dir)?;
    let required = needs_cluster(&local, &selection);
    let mut notes = Vec::new();
    let remote = if required {
        cluster_runs(&global, &settings).await?
    } else if matches!(selection, Selection::Incident(_)) {
        match cluster_runs(&global, &settings).await {
            Ok(remote) => remote,
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot read the cluster's Run resources; reporting local journals only");
                errln!("warning: {err:#}; the report covers this machine's journals only");
                notes.push(format!(
                    "the cluster's Run resources could not be read ({err:#}); runs of this \
                     incident made on other machines are missing from this report"
                ));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let mut input = gather_from(&settings.state_dir, &selection, local, &remote);
    if let (Selection::Incident(id), None) = (&selection, &input.incident) {
        notes.push(format!(
            "no record of incident {id} on this machine (incident records are local: \
             `ripcord incident open {id}`); severity, impact and root causes are not shown"
        ));
    }
    input.notes = notes;
    if input.runs.is_empty() {
        let error = CleanupError::NoRuns {
            selection: selection.to_string(),
            dir: settings.state_dir.clone(),
        };
        return Err(with_exit(Exit::Usage, error));
    }
    let format = match args.format {
        ReportFormat::Md => Format::Markdown,
        ReportFormat::Html => Format::Html,
    };
    let text = report::render(&input, format);
    match &args.out {
        Some(path) => {
            crate::journal::files::write_private(path, text.as_bytes()).map_err(|source| {
                CleanupError::Write {
                    path: path.clone(),
                    source,
                }
            })?;
            errln!("report written to {}", path.display());
        }
        None => out!("{text}"),
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, Record};
    use std::path::Path;

    fn local(run_id: &str, incident: Option<&str>) -> source::RunView {
        let entries = vec![Entry {
            seq: 1,
            at: jiff::Timestamp::UNIX_EPOCH,
            record: Record::RunStarted {
                run_id: run_id.into(),
                playbook: "p".into(),
                trigger: "cli".into(),
                who: "w".into(),
                incident: incident.map(str::to_string),
                params: Default::default(),
                plan: serde_json::json!({}),
            },
        }];
        source::from_entries(run_id, Path::new("/j"), entries)
    }

    #[test]
    fn the_cluster_is_needed_only_when_something_is_missing_locally() {
        let runs = vec![local("r-1", Some("INC-1")), local("r-2", None)];
        assert!(!needs_cluster(&runs, &Selection::Run("r-1".into())));
        assert!(needs_cluster(&runs, &Selection::Run("r-3".into())));
        assert!(!needs_cluster(&runs, &Selection::Incident("INC-1".into())));
        assert!(needs_cluster(&runs, &Selection::Incident("INC-2".into())));
        assert!(!needs_cluster(&runs, &Selection::All));
    }

    #[test]
    fn a_local_journal_wins_over_its_run_resource() {
        let dir = tempfile::tempdir().unwrap();
        let mut remote = Run::new(
            "r-1",
            runs::RunSpec {
                playbook: "remote".into(),
                params: Default::default(),
                trigger: "api".into(),
                who: "x".into(),
                incident: Some("INC-1".into()),
            },
        );
        remote.metadata.namespace = Some("ops".into());
        let mut other = remote.clone();
        other.metadata.name = Some("r-9".into());
        let input = gather_from(
            dir.path(),
            &Selection::Incident("INC-1".into()),
            vec![local("r-1", Some("INC-1"))],
            &[remote, other],
        );
        let mut ids: Vec<&str> = input.runs.iter().map(|r| r.run_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec!["r-1", "r-9"]);
        let r1 = input.runs.iter().find(|r| r.run_id == "r-1").unwrap();
        assert_eq!(r1.playbook, "p", "the local journal, not the resource");
        assert_eq!(input.cluster.len(), 1);
        assert_eq!(input.cluster[0].run_id, "r-9");
    }
}
