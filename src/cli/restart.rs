//! `ripcord restart deployment/NAME [-n NS] [--batch N|P%] [--warmup 30s]
//! [--warmup-port P --warmup-path /warm] [--readiness-gate auto|require|off] [--yes] [--dry-run]
//! [--incident ID]`: the built-in
//! `rolling-restart` playbook through the engine — the Deployment's pods restarted in batches,
//! each batch waiting for readiness and then the warm-up time before the next — with the plan shown first, a confirmation (unless `--yes`),
//! progress (batch k of n, pods restarted / total) and one final line.

use super::exit::with_exit;
use super::failback::check_duration;
use super::rollback::parse_target;
use super::run::{BuiltinRun, ConfigArgs, run_builtin};
use super::{Exit, GlobalArgs};
use clap::Args;
use std::collections::BTreeMap;

/// `ripcord restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The Deployment: `deployment/NAME` (also `deploy/NAME`).
    #[arg(value_name = "deployment/NAME")]
    pub target: String,

    /// Pods per batch: a count (`3`) or a percentage of the replicas (`25%`).
    #[arg(long, value_name = "N|P%", default_value = "25%")]
    pub batch: String,

    /// Time to wait after a batch is ready before restarting the next one.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub warmup: String,

    /// Call each new pod on this container port once it is ready (cache pre-warm).
    #[arg(long, value_name = "PORT", requires = "warmup_path")]
    pub warmup_port: Option<u16>,

    /// The path of the per-pod warm-up call (`/warm`).
    #[arg(long, value_name = "PATH", requires = "warmup_port")]
    pub warmup_path: Option<String>,

    /// How warm-up requests reach the pods: `auto` (the pod IP if reachable within 1s, else
    /// the API server's pod proxy), `proxy` (always the API server: works from a laptop) or
    /// `direct` (always the pod IP).
    #[arg(long, value_name = "HOW", default_value = "auto", value_parser = ["auto", "proxy", "direct"], requires = "warmup_port")]
    pub warmup_via: String,

    /// Keep new pods out of their Services' endpoints until warmed, through the pod readiness
    /// gate `ripcord.dev/warmed` the pod template declares: `auto` (use it when declared),
    /// `require` (refuse when the template lacks it) or `off` (release it at once).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "require", "off"])]
    pub readiness_gate: String,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Show the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The incident this restart belongs to.
    #[arg(long, value_name = "ID", value_parser = super::incident_id)]
    pub incident: Option<String>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Checks `--batch`: a positive count or a percentage from 1% to 100%.
pub fn check_batch(batch: &str) -> Result<(), String> {
    let (digits, percent) = match batch.strip_suffix('%') {
        Some(d) => (d, true),
        None => (batch, false),
    };
    match digits.parse::<u32>() {
        Ok(n) if n >= 1 && (!percent || n <= 100) => Ok(()),
        _ => Err(format!(
            "--batch {batch:?} must be a count of at least 1 (`3`) or a percentage from 1% to 100% (`25%`)"
        )),
    }
}

/// Runs `ripcord restart`.
pub async fn run(args: RestartArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let usage = |e: String| with_exit(Exit::Usage, anyhow::anyhow!(e));
    let name = parse_target(&args.target)
        .map_err(|e| e.replace("rolled back", "restarted"))
        .map_err(usage)?;
    check_batch(&args.batch).map_err(usage)?;
    check_duration("--warmup", &args.warmup)?;
    let mut extra_args = serde_json::Map::new();
    if let (Some(port), Some(path)) = (args.warmup_port, &args.warmup_path) {
        if !path.starts_with('/') {
            return Err(usage(format!("--warmup-path {path:?} must start with /")));
        }
        extra_args.insert(
            "warmupRequest".to_string(),
            serde_json::json!({ "port": port, "path": path, "via": args.warmup_via }),
        );
    }
    let mut params = BTreeMap::from([
        ("name".to_string(), name.clone()),
        ("batch".to_string(), args.batch.clone()),
        ("warmup".to_string(), args.warmup.clone()),
        ("readinessGate".to_string(), args.readiness_gate.clone()),
    ]);
    if let Some(ns) = &global.namespace {
        params.insert("namespace".to_string(), ns.clone());
    }
    let shown = global
        .namespace
        .as_deref()
        .map(|ns| format!("{ns}/{name}"))
        .unwrap_or_else(|| name.clone());
    let run = BuiltinRun {
        playbook: "builtin:rolling-restart",
        params,
        what: format!("rolling restart of deployment {shown}"),
        question: format!(
            "Restart deployment {shown} in batches of {} with {} warm-up?",
            args.batch, args.warmup
        ),
        yes: args.yes,
        dry_run: args.dry_run,
        incident: args.incident.clone(),
        refusal_hint: None,
        extra_args,
    };
    run_builtin(run, &args.config, &global).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_counts_or_percentages() {
        assert!(check_batch("3").is_ok());
        assert!(check_batch("25%").is_ok());
        assert!(check_batch("100%").is_ok());
        assert!(check_batch("0").is_err());
        assert!(check_batch("101%").is_err());
        assert!(check_batch("-1").is_err());
        assert!(check_batch("three").is_err());
        assert!(check_batch("").is_err());
    }
}
