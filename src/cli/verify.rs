//! `ripcord verify (--run RUN | --incident ID | --cluster) [--wait DURATION]`: clean (exit 0)
//! or dirty (exit 1), as a table or `-o json`; a cluster that cannot be read exits 3.

use super::exit::with_exit;
use super::run::{ConfigArgs, Settings, connected_client};
use super::{Exit, GlobalArgs, Output};
use crate::cleanup::verify::{self, VerifyReport};
use crate::cleanup::{Selection, source};
use crate::k8s::objects::Objects;
use clap::Args;
use std::time::Duration;

/// `ripcord verify`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("scope").required(true).args(["run", "incident", "cluster"]))]
pub struct VerifyArgs {
    /// Verify what this run touched (and the cluster's residue).
    #[arg(long, value_name = "RUN", value_parser = super::run_id)]
    pub run: Option<String>,

    /// Verify what every run of this incident touched (and the cluster's residue).
    #[arg(long, value_name = "ID", value_parser = super::incident_id)]
    pub incident: Option<String>,

    /// Verify the whole cluster: residue of any run, unfinished runs, every rollout.
    #[arg(long)]
    pub cluster: bool,

    /// Keep checking until clean or until this long has passed (e.g. `2m`; default: once).
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub wait: crate::playbook::Duration,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `ripcord verify`.
pub async fn run(args: VerifyArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let selection = match (&args.run, &args.incident, args.cluster) {
        // A local run by unique prefix or `last`; any other id may be a run in the cluster.
        (Some(run), None, false) => Selection::Run(
            super::runs::resolve_run_id(&global.state_dir(), run).unwrap_or_else(|_| run.clone()),
        ),
        (None, Some(id), false) => Selection::Incident(id.clone()),
        (None, None, true) => Selection::All,
        _ => {
            return Err(with_exit(
                Exit::Usage,
                anyhow::anyhow!("give exactly one of --run, --incident or --cluster"),
            ));
        }
    };
    let settings = Settings::load(&args.config, &global)?;
    let client = connected_client(&global).await?;
    let objects = Objects::new(client, settings.call_timeout);
    // A cluster that cannot be read cannot be verified: exit 3, never "dirty" (1).
    let unreadable = |e: crate::cleanup::CleanupError| match e {
        e @ crate::cleanup::CleanupError::Cluster { .. } => with_exit(Exit::Unreachable, e),
        e => anyhow::Error::new(e),
    };
    let runs = source::load(&settings.state_dir, Some(&objects), &selection)
        .await
        .map_err(unreadable)?;
    if selection != Selection::All && !runs.iter().any(|r| !r.is_cleanup()) {
        return Err(with_exit(
            Exit::Usage,
            crate::cleanup::CleanupError::NoRuns {
                selection: selection.to_string(),
                dir: settings.state_dir.clone(),
            },
        ));
    }
    let report = verify::verify_until(
        &objects,
        &selection,
        &runs,
        args.wait.0,
        Duration::from_secs(1),
    )
    .await
    .map_err(unreadable)?;
    verify::save(&settings.state_dir, &selection, &report)?;
    if !report.clean && !args.wait.0.is_zero() && !verify::can_settle(&report) {
        errln!(
            "stopped waiting: what is left cannot clear by itself (run `ripcord cleanup`, or fix \
             it by hand)"
        );
    }
    match global.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", render(&report)),
    }
    Ok(if report.clean { Exit::Ok } else { Exit::Failed })
}

/// The report as a table.
pub fn render(report: &VerifyReport) -> String {
    let verdict = if report.clean { "CLEAN" } else { "DIRTY" };
    let c = &report.checked;
    let mut out = format!(
        "verify {}: {verdict} ({} finding(s); checked {} touched object(s), {} node(s), {} \
         deployment(s), {} HTTPRoute(s), {} lock lease(s), {} run(s))\n",
        report.scope,
        report.findings.len(),
        c.touched_objects,
        c.nodes,
        c.deployments,
        c.http_routes,
        c.leases,
        c.runs
    );
    let table = |rows: &[crate::cleanup::verify::Finding]| {
        let w_check = rows.iter().map(|f| f.check.len()).max().unwrap_or(0).max(5);
        let w_kind = rows.iter().map(|f| f.kind.len()).max().unwrap_or(0).max(4);
        let w_obj = rows
            .iter()
            .map(|f| f.object.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut t = format!(
            "  {:<w_check$}  {:<w_kind$}  {:<w_obj$}  DETAIL\n",
            "CHECK", "KIND", "OBJECT"
        );
        for f in rows {
            t.push_str(&format!(
                "  {:<w_check$}  {:<w_kind$}  {:<w_obj$}  {}\n",
                f.check, f.kind, f.object, f.detail
            ));
        }
        t
    };
    if !report.findings.is_empty() {
        out.push_str(&table(&report.findings));
    }
    if !report.notes.is_empty() {
        out.push_str("notes (not residue):\n");
        out.push_str(&table(&report.notes));
    }
    out
}
