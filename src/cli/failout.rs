//! `ripcord failout zone/NAME [--zone-label K] [--max-nodes N] [--max-percent P]
//! [--override-blast-radius] [--drain-concurrency N] [--route NS/NAME --backend B] [--yes]
//! [--dry-run] [--incident ID]`: the built-in `failout-zone`
//! playbook through the engine — cordon and mark the zone's nodes behind the guards (last
//! healthy zone, capacity, blast radius), shift the zone's traffic away (with `--route`), then
//! drain them in waves respecting PodDisruptionBudgets —
//! with the plan shown first, a confirmation (unless `--yes`), progress with eviction counts,
//! and one final line.

use super::exit::with_exit;
use super::run::{BuiltinRun, ConfigArgs, RefusalHint, run_builtin};
use super::{Exit, GlobalArgs};
use clap::Args;
use std::collections::BTreeMap;

/// `ripcord failout`.
#[derive(Debug, Args)]
pub struct FailoutArgs {
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

    /// Refuse when more nodes than this would be out of service (the zone's plus those
    /// already cordoned or not Ready elsewhere; default: no limit).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_nodes: Option<u32>,

    /// Refuse when more than this percentage of the cluster's nodes would be out of service
    /// (the zone's plus those already cordoned or not Ready elsewhere).
    #[arg(long, value_name = "P", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_percent: u32,

    /// Proceed beyond the blast-radius budget (never beyond the last healthy zone).
    #[arg(long)]
    pub override_blast_radius: bool,

    /// Shift the zone's traffic away (after the cordons, before the drain): the Gateway API
    /// HTTPRoute (`NS/NAME` or `NAME`).
    #[arg(long, value_name = "NS/NAME", requires = "backend")]
    pub route: Option<String>,

    /// The route's backendRef that carries this zone's traffic (its weight goes to 0).
    #[arg(long, value_name = "B", requires = "route")]
    pub backend: Option<String>,

    /// Nodes drained at once.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub drain_concurrency: u32,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Show the plan (nodes to cordon, guards' findings); write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The incident this fail-out belongs to.
    #[arg(long, value_name = "ID", value_parser = super::incident_id)]
    pub incident: Option<String>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Parses `zone/NAME` (`colo/NAME` accepted).
pub fn parse_zone(target: &str) -> Result<String, String> {
    let (kind, name) = target
        .split_once('/')
        .ok_or_else(|| format!("expected zone/NAME, got {target:?}"))?;
    if !matches!(kind.to_ascii_lowercase().as_str(), "zone" | "colo") {
        return Err(format!("expected zone/NAME, got {target:?}"));
    }
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(format!("expected zone/NAME, got {target:?}"));
    }
    Ok(name.to_string())
}

/// The `traffic` argument of `zone.failout`/`zone.failback` for `--route NS/NAME --backend B`.
pub fn route_args(
    route: Option<&str>,
    backend: Option<&str>,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut out = serde_json::Map::new();
    let (Some(route), Some(backend)) = (route, backend) else {
        return Ok(out);
    };
    let (namespace, name) = match route.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, route),
    };
    let bad = |s: &str| s.is_empty() || s.contains('/') || s.chars().any(char::is_whitespace);
    if bad(name) || namespace.is_some_and(bad) || bad(backend) {
        return Err(format!(
            "--route {route:?} --backend {backend:?}: expected --route NS/NAME (or NAME) and a \
             backendRef name"
        ));
    }
    let mut http_route = serde_json::json!({ "name": name, "backend": backend });
    if let Some(ns) = namespace {
        http_route["namespace"] = serde_json::json!(ns);
    }
    out.insert(
        "traffic".to_string(),
        serde_json::json!({ "httpRoute": http_route }),
    );
    Ok(out)
}

/// Runs `ripcord failout`.
pub async fn run(args: FailoutArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let usage = |e: String| with_exit(Exit::Usage, anyhow::anyhow!(e));
    let zone = parse_zone(&args.target).map_err(usage)?;
    let extra_args = route_args(args.route.as_deref(), args.backend.as_deref()).map_err(usage)?;
    let mut params = BTreeMap::from([
        ("zone".to_string(), zone.clone()),
        ("zoneLabel".to_string(), args.zone_label.clone()),
        ("maxPercent".to_string(), args.max_percent.to_string()),
        (
            "overrideBlastRadius".to_string(),
            args.override_blast_radius.to_string(),
        ),
        (
            "drainConcurrency".to_string(),
            args.drain_concurrency.to_string(),
        ),
    ]);
    if let Some(n) = args.max_nodes {
        params.insert("maxNodes".to_string(), n.to_string());
    }
    let run = BuiltinRun {
        playbook: "builtin:failout-zone",
        params,
        what: format!("fail-out of zone {zone}"),
        question: format!("Fail out zone {zone} (cordon and drain its nodes)?"),
        yes: args.yes,
        dry_run: args.dry_run,
        incident: args.incident.clone(),
        extra_args,
        refusal_hint: Some(RefusalHint {
            when: "blast-radius budget",
            hint: "to go beyond the blast-radius budget, pass --override-blast-radius (or a \
                   higher --max-percent / --max-nodes)"
                .into(),
        }),
    };
    run_builtin(run, &args.config, &global).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_targets_parse() {
        assert_eq!(parse_zone("zone/zone-a").unwrap(), "zone-a");
        assert_eq!(parse_zone("colo/fra1").unwrap(), "fra1");
        assert!(parse_zone("zone-a").is_err());
        assert!(parse_zone("node/a-1").is_err());
        assert!(parse_zone("zone/").is_err());
        assert!(parse_zone("zone/a/b").is_err());
    }

    #[test]
    fn routes_become_the_traffic_argument() {
        let args = route_args(Some("shop/web"), Some("web-zone-a")).unwrap();
        assert_eq!(
            args["traffic"],
            serde_json::json!({"httpRoute": {"namespace": "shop", "name": "web", "backend": "web-zone-a"}})
        );
        let args = route_args(Some("web"), Some("b")).unwrap();
        assert!(args["traffic"]["httpRoute"].get("namespace").is_none());
        assert!(route_args(None, None).unwrap().is_empty());
        assert!(route_args(Some("a/b/c"), Some("b")).is_err());
        assert!(route_args(Some("web"), Some("")).is_err());
    }
}
