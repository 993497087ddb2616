//! `ripcord cleanup (--run RUN | --incident ID) [--dry-run] [--force] [--roll-forward] [--yes]`:
//! revert what the runs did and is still in effect, newest first, drift-checked, through the
//! engine (journaled as a run of its own).

use super::exit::with_exit;
use super::run::{ConfigArgs, Settings, connected_client, exit_for, run_with_progress};
use super::{Exit, GlobalArgs, Output};
use crate::cleanup::revert::{self, CleanupPlan, ItemStatus, PlanOptions};
use crate::cleanup::{CleanupError, Selection, apply, fields, source};
use crate::engine::Engine;
use crate::k8s::objects::Objects;
use clap::Args;

/// `ripcord cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Revert what this run did.
    #[arg(
        long,
        value_name = "RUN", value_parser = super::run_id,
        required_unless_present = "incident",
        conflicts_with = "incident"
    )]
    pub run: Option<String>,

    /// Revert what every run of this incident did.
    #[arg(long, value_name = "ID", value_parser = super::incident_id)]
    pub incident: Option<String>,

    /// Show the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Revert objects changed by someone since ripcord touched them too (overwrites their
    /// changes to the fields ripcord touched).
    #[arg(long)]
    pub force: bool,

    /// Roll rollbacks forward to the release they replaced (normally they are kept).
    #[arg(long)]
    pub roll_forward: bool,

    /// Pause between the traffic ramp steps when a zone is failed back (default: the
    /// `zone.failback` action's, 30s).
    #[arg(long, value_name = "DURATION")]
    pub ramp_pause: Option<crate::playbook::Duration>,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The selection of `--run`/`--incident`.
pub fn selection(run: &Option<String>, incident: &Option<String>) -> anyhow::Result<Selection> {
    match (run, incident) {
        (Some(run), None) => Ok(Selection::Run(run.clone())),
        (None, Some(incident)) => Ok(Selection::Incident(incident.clone())),
        _ => Err(with_exit(
            Exit::Usage,
            anyhow::anyhow!("give exactly one of --run RUN or --incident ID"),
        )),
    }
}

/// Runs `ripcord cleanup`.
pub async fn run(args: CleanupArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let selection = selection(&args.run, &args.incident)?;
    let settings = Settings::load(&args.config, &global)?;
    let client = connected_client(&global).await?;
    let objects = Objects::new(client.clone(), settings.call_timeout);
    let runs = source::load(&settings.state_dir, Some(&objects), &selection)
        .await
        .map_err(|e| {
            if e.is_unreachable() {
                with_exit(Exit::Unreachable, e)
            } else {
                anyhow::Error::new(e)
            }
        })?;
    if !runs.iter().any(|r| !r.is_cleanup()) {
        return Err(with_exit(
            Exit::Usage,
            CleanupError::NoRuns {
                selection: selection.to_string(),
                dir: settings.state_dir.clone(),
            },
        ));
    }
    let damaged = report_damaged(&runs);
    let observed = revert::observe(&objects, &runs).await;
    let plan = revert::compute(
        &runs,
        &observed,
        PlanOptions {
            force: args.force,
            roll_forward: args.roll_forward,
            ramp_pause: args.ramp_pause.map(|d| d.0),
        },
    );
    if global.output == Output::Text {
        print!("{}", render_plan(&selection, &plan));
    }
    if args.dry_run || plan.is_noop() {
        if global.output == Output::Json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "run": null }))?
            );
        } else if plan.is_noop() && damaged > 0 {
            outln!(
                "nothing reverted: {}; damaged journals could not be judged (see above)",
                summary_counts(&plan)
            );
        } else if plan.is_noop() {
            outln!("nothing to revert: {}", summary_counts(&plan));
        } else {
            outln!("dry run: nothing was changed");
        }
        return Ok(damaged_exit(
            damaged,
            unavailable_exit(&plan, &selection, Exit::Ok),
        ));
    }
    if !args.yes {
        super::run::confirm(&format!(
            "revert {} object(s) and fail back {} zone(s) for {selection}?",
            plan.reverts.len(),
            plan.failbacks.len()
        ))?;
    }
    let engine_plan = apply::prepare(&plan, &settings.state_dir, &selection.to_string())?;
    let mut opts = settings.run_options(global.namespace.as_deref().unwrap_or("default"));
    opts.incident = match &selection {
        Selection::Incident(id) => Some(id.clone()),
        _ => runs.iter().find_map(|r| r.incident.clone()),
    };
    opts.handle_signals = true;
    let engine = Engine::new(client, settings.http.clone());
    let outcome = run_with_progress(&engine, engine_plan, opts).await?;
    if global.output == Output::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "run": outcome }))?
        );
    } else {
        let verify_hint = match &selection {
            Selection::Incident(id) => format!("ripcord verify --incident {id}"),
            Selection::Run(id) => format!("ripcord verify --run {id}"),
            Selection::All => "ripcord verify --cluster".to_string(),
        };
        outln!(
            "cleanup {}: {} in {:.1}s, run {} ({}); {}; check with `{verify_hint}`",
            outcome.outcome,
            selection,
            outcome.duration.as_secs_f64(),
            outcome.run_id,
            outcome
                .journal
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            summary_counts(&plan),
        );
    }
    Ok(damaged_exit(
        damaged,
        unavailable_exit(&plan, &selection, exit_for(outcome.outcome)),
    ))
}

/// Says, on stderr, which runs' journals are damaged (naming the line) and what cleanup used
/// instead; returns how many there are.
fn report_damaged(runs: &[source::RunView]) -> usize {
    let mut count = 0;
    for run in runs {
        let Some(damaged) = &run.damaged else {
            continue;
        };
        count += 1;
        match &run.origin {
            source::RunOrigin::Cluster { .. } if run.is_unreadable_resource() => errln!(
                "error: run {}: {damaged}; cleanup did not judge what it changed",
                run.run_id
            ),
            source::RunOrigin::Cluster { namespace } => errln!(
                "error: run {}: {damaged}; its mutations are taken from its Run resource \
                 ({namespace}/{}) instead",
                run.run_id,
                run.run_id
            ),
            source::RunOrigin::Journal { .. } => errln!(
                "error: run {}: {damaged}; the cluster has no Run resource for it, so cleanup \
                 could not judge what it changed: {} mutation(s) recorded before the damage \
                 are listed as UNAVAILABLE, anything after it is unknown",
                run.run_id,
                run.touched.len()
            ),
        }
    }
    count
}

/// A damaged journal makes the cleanup fail (exit 1) whatever else it did.
fn damaged_exit(damaged: usize, exit: Exit) -> Exit {
    if damaged > 0 && exit == Exit::Ok {
        Exit::Failed
    } else {
        exit
    }
}

/// A cleanup that could not even judge some mutations (a read failed, a record was cut) has
/// not cleaned up: it ends with exit 1 and says to run it again, whatever else succeeded.
fn unavailable_exit(plan: &CleanupPlan, selection: &Selection, exit: Exit) -> Exit {
    let unavailable = plan
        .items
        .iter()
        .filter(|item| matches!(item.status, ItemStatus::Unavailable { .. }))
        .count();
    if unavailable == 0 {
        return exit;
    }
    let again = match selection {
        Selection::Incident(id) => format!("ripcord cleanup --incident {id}"),
        Selection::Run(id) => format!("ripcord cleanup --run {id}"),
        Selection::All => "ripcord cleanup".to_string(),
    };
    errln!(
        "cleanup incomplete: {unavailable} mutation(s) could not be checked (UNAVAILABLE above); \
         run `{again}` again once the cause is fixed"
    );
    Exit::Failed
}

/// "3 revert, 1 DRIFT: skipped, 1 rollback kept".
pub fn summary_counts(plan: &CleanupPlan) -> String {
    let counts = plan.counts();
    if counts.is_empty() {
        return "no mutations recorded".to_string();
    }
    counts
        .iter()
        .map(|(label, n)| format!("{n} {label}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plan for people: one line per mutation (newest first), the three-way difference of
/// every drift, and the patches.
pub fn render_plan(selection: &Selection, plan: &CleanupPlan) -> String {
    let mut out = format!(
        "cleanup plan for {selection} ({} run(s): {})\n",
        plan.runs.len(),
        plan.runs.join(", ")
    );
    let width = plan
        .items
        .iter()
        .map(|i| i.status.label().len())
        .max()
        .unwrap_or(0);
    for item in &plan.items {
        out.push_str(&format!(
            "  {:<width$}  {}  {} [{} {}]\n",
            item.status.label(),
            item.target,
            item.description,
            item.run_id,
            item.step
        ));
        if let Some(via) = &item.via {
            out.push_str(&format!("      via {via}\n"));
        }
        match &item.status {
            ItemStatus::Drift { drift } | ItemStatus::ForcedRevert { drift } => {
                out.push_str(&format!(
                    "      changed since ripcord touched it (resourceVersion {} → {}):\n",
                    item.resource_version_after.as_deref().unwrap_or("?"),
                    item.resource_version_now.as_deref().unwrap_or("?")
                ));
                for d in drift {
                    out.push_str(&format!(
                        "        {}: before ripcord {} | ripcord left {} | now {}\n",
                        d.path,
                        fields::display_value(&d.before),
                        fields::display_value(&d.ripcord),
                        fields::display_value(&d.now)
                    ));
                }
                if matches!(item.status, ItemStatus::Drift { .. }) {
                    out.push_str("      left alone; pass --force to revert it anyway\n");
                }
            }
            ItemStatus::NotReverted {
                reason,
                roll_forward_available,
            } => {
                out.push_str(&format!("      {reason}\n"));
                if *roll_forward_available {
                    out.push_str("      pass --roll-forward to restore the rolled-back release\n");
                }
            }
            ItemStatus::Unavailable { reason } => out.push_str(&format!("      {reason}\n")),
            _ => {}
        }
    }
    if !plan.reverts.is_empty() {
        out.push_str("patches (applied newest first):\n");
        for r in &plan.reverts {
            out.push_str(&format!("  {}: {}\n", r.target, r.patch));
        }
    }
    for f in &plan.failbacks {
        out.push_str(&format!(
            "zone fail-back: zone {} (failed out by {} step {}), ramp {:?}% with {} pauses\n",
            f.args.zone, f.run_id, f.step, f.args.ramp, f.args.ramp_pause
        ));
    }
    out
}
