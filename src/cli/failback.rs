//! `ripcord failback zone/NAME [--zone-label K] [--ramp 10,25,50,100] [--ramp-pause 30s]
//! [--route NS/NAME --backend B] [--yes] [--dry-run] [--incident ID]`: the built-in
//! `failback-zone` playbook through the engine — uncordon only the nodes a fail-out of this
//! zone took out, then ramp its traffic back in steps — with the plan shown first, a confirmation (unless `--yes`), progress and one final line.

use super::exit::with_exit;
use super::failout::{parse_zone, route_args};
use super::run::{BuiltinRun, ConfigArgs, run_builtin};
use super::{Exit, GlobalArgs};
use crate::playbook::duration::Duration;
use clap::Args;
use std::collections::BTreeMap;

/// `ripcord failback`.
#[derive(Debug, Args)]
pub struct FailbackArgs {
    /// The zone: `zone/NAME` (NAME is the value of the zone label).
    #[arg(value_name = "zone/NAME")]
    pub target: String,

    /// The node label that carries the zone.
    #[arg(
        long,
        value_name = "KEY",
        default_value = "topology.kubernetes.io/zone"
    )]
    pub zone_label: String,

    /// The pause between traffic ramp steps (`30s`, `2m`).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub ramp_pause: String,

    /// Traffic percentages of the ramp, non-decreasing, each from 1 to 100.
    #[arg(
        long,
        value_name = "P,P,...",
        value_delimiter = ',',
        default_value = "10,25,50,100"
    )]
    pub ramp: Vec<u32>,

    /// Ramp the zone's traffic back through the Gateway API HTTPRoute (`NS/NAME` or `NAME`).
    #[arg(long, value_name = "NS/NAME", requires = "backend")]
    pub route: Option<String>,

    /// The route's backendRef that carries this zone's traffic.
    #[arg(long, value_name = "B", requires = "route")]
    pub backend: Option<String>,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Show the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The incident this fail-back belongs to.
    #[arg(long, value_name = "ID", value_parser = super::incident_id)]
    pub incident: Option<String>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `ripcord failback`.
pub async fn run(args: FailbackArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let usage = |e: String| with_exit(Exit::Usage, anyhow::anyhow!(e));
    let zone = parse_zone(&args.target).map_err(usage)?;
    check_duration("--ramp-pause", &args.ramp_pause)?;
    check_ramp(&args.ramp).map_err(usage)?;
    let mut extra_args =
        route_args(args.route.as_deref(), args.backend.as_deref()).map_err(usage)?;
    extra_args.insert("ramp".to_string(), serde_json::json!(args.ramp));
    let params = BTreeMap::from([
        ("zone".to_string(), zone.clone()),
        ("zoneLabel".to_string(), args.zone_label.clone()),
        ("rampPause".to_string(), args.ramp_pause.clone()),
    ]);
    let run = BuiltinRun {
        playbook: "builtin:failback-zone",
        params,
        what: format!("fail-back of zone {zone}"),
        question: format!("Fail zone {zone} back in (uncordon, ramp traffic back)?"),
        yes: args.yes,
        dry_run: args.dry_run,
        incident: args.incident.clone(),
        refusal_hint: None,
        extra_args,
    };
    run_builtin(run, &args.config, &global).await
}

/// Checks `--ramp`: at least one step, each from 1 to 100, never decreasing.
pub fn check_ramp(ramp: &[u32]) -> Result<(), String> {
    if ramp.is_empty() || ramp.iter().any(|p| !(1..=100).contains(p)) {
        return Err(format!(
            "--ramp {ramp:?}: give percentages from 1 to 100, like 10,25,50,100"
        ));
    }
    if ramp.windows(2).any(|w| w[0] > w[1]) {
        return Err(format!("--ramp {ramp:?}: the steps must not decrease"));
    }
    Ok(())
}

/// Refuses (exit 2) a flag value that is not a duration, naming the flag.
pub fn check_duration(flag: &str, value: &str) -> anyhow::Result<()> {
    value.parse::<Duration>().map(|_| ()).map_err(|e| {
        with_exit(
            Exit::Usage,
            anyhow::anyhow!("{flag} {value:?} is not a duration (like 30s, 2m): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_are_percentages_that_never_decrease() {
        assert!(check_ramp(&[10, 25, 50, 100]).is_ok());
        assert!(check_ramp(&[100]).is_ok());
        assert!(check_ramp(&[]).is_err());
        assert!(check_ramp(&[0, 100]).is_err());
        assert!(check_ramp(&[50, 101]).is_err());
        assert!(check_ramp(&[50, 25]).is_err());
    }
}
