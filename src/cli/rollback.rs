//! `ripcord rollback deployment/NAME [-n NS] [--to-revision N | --known-good] [--yes] [--dry-run]`:
//! the built-in `rollback` playbook through the engine, with the target revision and template
//! diff shown first, a confirmation (unless `--yes`), progress while the rollout proceeds, and
//! one final line.

use super::exit::with_exit;
use super::run::{
    ConfigArgs, Settings, confirm, connected_client_with_runs, outcome_line, plan_playbook,
    print_dry_run, print_outcome, render_mutation, run_with_progress,
};
use super::{Exit, GlobalArgs};
use crate::engine::Engine;
use crate::journal;
use clap::Args;
use std::collections::BTreeMap;

/// `ripcord rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The Deployment: `deployment/NAME` (also `deploy/NAME`).
    #[arg(value_name = "deployment/NAME")]
    pub target: String,

    /// Roll back to this revision (default: the previous one, like `kubectl rollout undo`).
    #[arg(long, value_name = "N", conflicts_with = "known_good")]
    pub to_revision: Option<i64>,

    /// Roll back to the last revision marked known-good.
    #[arg(long)]
    pub known_good: bool,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Show the target revision and the template diff; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The incident this rollback belongs to.
    #[arg(long, value_name = "ID", value_parser = super::incident_id)]
    pub incident: Option<String>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Parses `deployment/NAME` (`deploy/`, `deployments/`, `deployment.apps/` accepted).
pub fn parse_target(target: &str) -> Result<String, String> {
    let (kind, name) = target
        .split_once('/')
        .ok_or_else(|| format!("expected deployment/NAME, got {target:?}"))?;
    let kind = kind.to_ascii_lowercase();
    if !matches!(
        kind.as_str(),
        "deployment" | "deployments" | "deploy" | "deployment.apps" | "deployments.apps"
    ) {
        return Err(format!(
            "only Deployments can be rolled back (got {kind:?}); expected deployment/NAME"
        ));
    }
    if name.is_empty() || name.contains('/') {
        return Err(format!("expected deployment/NAME, got {target:?}"));
    }
    Ok(name.to_string())
}

/// Runs `ripcord rollback`.
pub async fn run(args: RollbackArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let name =
        parse_target(&args.target).map_err(|e| with_exit(Exit::Usage, anyhow::anyhow!(e)))?;
    let settings = Settings::load(&args.config, &global)?;
    let (client, runs_served) = connected_client_with_runs(&global).await?;
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let mut params = BTreeMap::new();
    params.insert("name".to_string(), name.clone());
    params.insert("namespace".to_string(), namespace.clone());
    if let Some(rev) = args.to_revision {
        params.insert("toRevision".to_string(), rev.to_string());
    }
    if args.known_good {
        params.insert("knownGood".to_string(), "true".to_string());
    }
    let plan = settings.with_config_channels(plan_playbook(
        "builtin:rollback",
        &params,
        &journal::new_run_id(),
    )?);
    super::run::ensure_incident(&settings, args.incident.as_deref(), args.dry_run)?;
    let mut opts = settings.run_options(&namespace);
    opts.incident = args.incident.clone();
    let engine = Engine::new(client, settings.http.clone()).with_run_crd_served(runs_served);
    let what = format!("rollback of deployment {namespace}/{name}");

    if args.dry_run || !args.yes {
        let mut preview = opts.clone();
        preview.dry_run = true;
        let dry = engine.run(plan.clone(), preview, None).await?;
        if args.dry_run {
            print_dry_run(&dry, global.output)?;
            return Ok(super::run::outcome_exit(&dry));
        }
        if let Some(failed) = dry.reason.as_deref() {
            return Err(with_exit(Exit::Failed, anyhow::anyhow!("{what}: {failed}")));
        }
        let mutations: Vec<_> = dry.steps.iter().flat_map(|s| s.mutations.iter()).collect();
        if mutations.is_empty() {
            errln!("{what}: nothing to change ({})", first_summary(&dry));
        } else {
            for m in &mutations {
                errln!("{}", render_mutation(m, ""));
            }
            confirm(&format!("Roll back deployment {namespace}/{name}?"))?;
        }
    }

    opts.handle_signals = true;
    let outcome = run_with_progress(&engine, plan, opts).await?;
    if let Some(line) = super::run::notification_summary(&outcome, &settings) {
        errln!("{line}");
    }
    print_outcome(&outcome, global.output, &outcome_line(&outcome, &what))?;
    Ok(super::run::outcome_exit(&outcome))
}

fn first_summary(outcome: &crate::engine::RunOutcome) -> String {
    outcome
        .steps
        .first()
        .map(|s| s.summary.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_kubectl() {
        assert_eq!(parse_target("deployment/checkout").unwrap(), "checkout");
        assert_eq!(parse_target("deploy/checkout").unwrap(), "checkout");
        assert!(parse_target("statefulset/db").is_err());
        assert!(parse_target("checkout").is_err());
        assert!(parse_target("deployment/").is_err());
    }
}
