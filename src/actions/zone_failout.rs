//! `zone.failout`: take a zone (the nodes whose zone label has the zone's value) out of
//! service — cordon and mark its nodes, shift its traffic away, then drain it.
//!
//! # Guards (before the first mutation)
//! While any of the zone's nodes still has to be cordoned, `diff` checks, and refuses with
//! [`ActionError::Refused`] (saying why and how to proceed) when:
//! - the zone is the last healthy one: no other zone has a Ready, schedulable node (not
//!   overridable);
//! - the zone exceeds the blast-radius budget: more nodes than `maxNodes`, or more than
//!   `maxPercent` of the cluster's nodes (override with `overrideBlastRadius: true`);
//! - the remaining zones lack the capacity for the moved pods: the CPU/memory requests of the
//!   pods to evict exceed the allocatable resources minus the requests already bound on the
//!   Ready, schedulable nodes of the other zones (not overridable: add capacity or scale down).
//!
//! # Phases (multi-phase through re-diff)
//! 1. cordon + mark every zone node (`cordon/<node>`; see [`super::node_cordon`]);
//! 2. shift traffic: the zone's HTTPRoute backendRef weight to 0, remembering the weight it had
//!    in the route annotation `ripcord.dev/weight-before.<backend>` (`traffic/route`; inverse:
//!    the old rules), and/or POST `{"zone": …, "weight": 0}` to the traffic-manager webhook
//!    (`traffic/webhook`; the zone's nodes then carry `ripcord.dev/traffic-percent: "0"`);
//! 3. drain in waves: PDB-respecting evictions of the pods of at most `drainConcurrency`
//!    nodes at once (see [`super::node_drain`]); `verify` waits until the evicted pods'
//!    replacements are Ready in the other zones.
//!
//! The step is done when every zone node is cordoned, the traffic is away and no evictable pod
//! is left in the zone. `zone.failback` reverses it.

use super::node_cordon::{CORDONED_BY_LABEL, apply_node_patch, cordon_mutation};
use super::node_drain::{
    DrainSettings, EVICT_PREFIX, EvictionOwners, InFlight, PARALLEL_MUTATIONS, evict_listed,
    next_wave, plan_wave, wait_evictions_settled, wave_summary,
};
use super::traffic_set_weights::{apply_route_patch, route_mutation};
use super::{Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef};
use crate::k8s::http_routes::{self, HttpRoutes};
use crate::k8s::nodes::{self, Nodes, Resources};
use crate::k8s::pods::{self, Pods};
use crate::playbook::catalog::{self, TrafficShift};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The route annotation prefix remembering a backend's weight before fail-out.
pub const WEIGHT_BEFORE_PREFIX: &str = "ripcord.dev/weight-before.";
/// The node annotation recording the traffic percentage last sent to the webhook.
pub const TRAFFIC_PERCENT_ANNOTATION: &str = "ripcord.dev/traffic-percent";
/// Mutation id of the route weight change.
const TRAFFIC_ROUTE_ID: &str = "traffic/route";
/// Mutation id of the webhook call.
const TRAFFIC_WEBHOOK_ID: &str = "traffic/webhook";
/// Eviction requests in flight at once (across the nodes of a wave).
const EVICTIONS_IN_FLIGHT: usize = 32;

/// The `zone.failout` action.
#[derive(Debug)]
pub struct ZoneFailout {
    args: catalog::ZoneFailout,
    owners: EvictionOwners,
    in_flight: InFlight,
}

/// What the guards found (for the diff summary).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GuardReport {
    /// Nodes in the zone.
    pub zone_nodes: usize,
    /// Nodes in the cluster.
    pub all_nodes: usize,
    /// Requests of the pods to move.
    pub need: Resources,
    /// Free resources on the healthy nodes of the other zones.
    pub free: Resources,
}

/// Checks the fail-out guards; `Err` holds every refusal reason, each with how to proceed.
pub(crate) fn check_guards(
    args: &catalog::ZoneFailout,
    all_nodes: &[Node],
    all_pods: &[Pod],
    settings: DrainSettings,
) -> Result<GuardReport, String> {
    let zone = &args.zone;
    let in_zone = |n: &Node| nodes::label(n, &args.zone_label) == Some(zone.as_str());
    let zone_nodes: BTreeSet<&str> = all_nodes
        .iter()
        .filter(|n| in_zone(n))
        .map(nodes::name)
        .collect();
    let healthy_elsewhere: Vec<&Node> = all_nodes
        .iter()
        .filter(|n| !in_zone(n) && nodes::is_ready(n) && !nodes::is_unschedulable(n))
        .collect();
    let mut problems = Vec::new();
    if healthy_elsewhere.is_empty() {
        let others: BTreeSet<&str> = all_nodes
            .iter()
            .filter(|n| !in_zone(n))
            .map(|n| nodes::label(n, &args.zone_label).unwrap_or("(no zone label)"))
            .collect();
        problems.push(format!(
            "zone {zone} is the last healthy zone: no other zone has a Ready, schedulable node \
             (other zones: {}). Fail another zone back in (ripcord failback zone/NAME) or \
             uncordon nodes elsewhere first; this guard cannot be overridden",
            if others.is_empty() {
                "none".to_string()
            } else {
                others.into_iter().collect::<Vec<_>>().join(", ")
            }
        ));
    }
    let n = zone_nodes.len();
    let total = all_nodes.len().max(1);
    if !args.override_blast_radius {
        if let Some(max) = args.max_nodes
            && n > max as usize
        {
            problems.push(format!(
                "zone {zone} has {n} nodes, over the blast-radius budget maxNodes={max}; raise \
                 maxNodes or set overrideBlastRadius: true to proceed"
            ));
        }
        if let Some(max) = args.max_percent
            && n * 100 > max as usize * total
        {
            problems.push(format!(
                "zone {zone} holds {n} of {total} nodes ({}%), over the blast-radius budget \
                 maxPercent={max}; raise maxPercent or set overrideBlastRadius: true to proceed",
                n * 100 / total
            ));
        }
    }
    let mut need = Resources::default();
    let mut moving: Vec<Resources> = Vec::new();
    let mut used: BTreeMap<&str, Resources> = BTreeMap::new();
    for pod in all_pods {
        let Some(node) = pods::node_name(pod) else {
            continue;
        };
        if pods::is_terminating(pod) {
            continue;
        }
        if zone_nodes.contains(node) {
            if pods::drain_skip_reason(
                pod,
                settings.ignore_daemon_sets,
                settings.delete_emptydir_data,
            )
            .is_none()
            {
                need = need.plus(pods::requests(pod));
                moving.push(pods::requests(pod));
            }
        } else {
            let entry = used.entry(node).or_default();
            *entry = entry.plus(pods::requests(pod));
        }
    }
    let mut room: Vec<Resources> = healthy_elsewhere
        .iter()
        .map(|node| {
            let used = used.get(nodes::name(node)).copied().unwrap_or_default();
            nodes::allocatable(node).minus(used)
        })
        .collect();
    let free = room
        .iter()
        .fold(Resources::default(), |acc, r| acc.plus(*r));
    let unplaced = place_first_fit(&mut room, moving);
    if unplaced > 0 {
        problems.push(format!(
            "the other zones lack the capacity for zone {zone}'s pods: they request {need}, the \
             Ready schedulable nodes elsewhere have {free} free, and {unplaced} pod(s) would fit \
             on no node; add nodes to the other zones or scale workloads down, then run again \
             (the capacity guard cannot be overridden)"
        ));
    }
    if problems.is_empty() {
        Ok(GuardReport {
            zone_nodes: n,
            all_nodes: all_nodes.len(),
            need,
            free,
        })
    } else {
        Err(problems.join("; "))
    }
}

/// Places pods (largest CPU request first) on the node with the most free CPU that fits
/// each; returns how many fit nowhere. `room` is consumed as pods are placed.
fn place_first_fit(room: &mut [Resources], mut moving: Vec<Resources>) -> usize {
    moving.sort_by_key(|r| std::cmp::Reverse((r.cpu_millis, r.memory_bytes)));
    let mut unplaced = 0;
    for need in moving {
        let best = room
            .iter_mut()
            .filter(|r| r.fits(need))
            .max_by_key(|r| (r.cpu_millis, r.memory_bytes));
        match best {
            Some(slot) => *slot = slot.minus(need),
            None => unplaced += 1,
        }
    }
    unplaced
}

/// The pseudo-reference of a traffic-manager webhook call for a zone.
pub(crate) fn webhook_ref(zone: &str) -> ObjectRef {
    ObjectRef {
        api_version: "ripcord.dev/v1alpha1".into(),
        kind: "TrafficWebhook".into(),
        namespace: None,
        name: zone.to_string(),
    }
}

/// A URL fit for messages: no credentials, no query (it may carry a token).
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// A webhook call setting a zone's traffic percentage, recorded on the zone's nodes.
pub(crate) fn webhook_mutation(
    zone: &str,
    zone_nodes: &[&Node],
    percent: u32,
    id: String,
) -> Option<Mutation> {
    let want = percent.to_string();
    let done = zone_nodes.iter().all(|n| {
        let current = nodes::annotation(n, TRAFFIC_PERCENT_ANNOTATION);
        if percent >= 100 {
            current.is_none()
        } else {
            current == Some(want.as_str())
        }
    });
    if done {
        return None;
    }
    let names: Vec<&str> = zone_nodes.iter().map(|n| nodes::name(n)).collect();
    Some(Mutation {
        id,
        target: webhook_ref(zone),
        description: format!(
            "tell the traffic manager: zone {zone} gets {percent}% of its traffic"
        ),
        diff: format!("+ POST traffic webhook {{\"zone\": \"{zone}\", \"weight\": {percent}}}\n"),
        pre_image: json!({ "zone": zone, "nodes": names, "percent": zone_nodes.first()
            .and_then(|n| nodes::annotation(n, TRAFFIC_PERCENT_ANNOTATION)) }),
        resource_version: None,
        request: json!({ "zone": zone, "weight": percent, "nodes": names }),
        inverse: Inverse::None {
            reason: "a webhook call is not reverted automatically; zone.failback sends the \
                     ramp back up"
                .into(),
        },
    })
}

/// POSTs the weight to the webhook, then records the percentage on the zone's nodes
/// (annotation removed at 100%).
pub(crate) async fn apply_webhook(
    ctx: &ActionContext,
    url: &str,
    mutation: &Mutation,
) -> Result<Applied, ActionError> {
    let zone = mutation.request["zone"].as_str().unwrap_or_default();
    let weight = mutation.request["weight"].as_u64().unwrap_or(0);
    let shown = redact_url(url);
    let response = ctx
        .http
        .post(url)
        .timeout(ctx.call_timeout)
        .json(&json!({ "zone": zone, "weight": weight }))
        .send()
        .await
        .map_err(|err| ActionError::Http {
            url: shown.clone(),
            reason: err.without_url().to_string(),
        })?;
    if !response.status().is_success() {
        return Err(ActionError::Http {
            url: shown,
            reason: format!("the traffic webhook answered {}", response.status()),
        });
    }
    let value = if weight >= 100 {
        Value::Null
    } else {
        Value::from(weight.to_string())
    };
    let patch = json!({ "metadata": { "annotations": { TRAFFIC_PERCENT_ANNOTATION: value } } });
    let api = Nodes::new(ctx.client.clone(), ctx.call_timeout);
    if let Some(names) = mutation.request["nodes"].as_array() {
        for name in names.iter().filter_map(Value::as_str) {
            api.patch_merge(name, &patch).await?;
        }
    }
    tracing::info!(run = %ctx.run_id, step = %ctx.step, zone = %zone, weight, "traffic webhook called");
    Ok(Applied {
        id: mutation.id.clone(),
        target: mutation.target.clone(),
        resource_version_after: None,
    })
}

// === impl ZoneFailout ===

impl ZoneFailout {
    /// Checks the arguments.
    pub fn new(args: catalog::ZoneFailout) -> Result<ZoneFailout, ActionError> {
        if args.zone.trim().is_empty() {
            return Err(ActionError::Invalid {
                object: "zone.failout".into(),
                reason: "`zone` must not be empty".into(),
            });
        }
        if args.drain_concurrency == 0 || args.max_percent.is_some_and(|p| p > 100) {
            return Err(ActionError::Invalid {
                object: format!("zone/{}", args.zone),
                reason: "drainConcurrency must be at least 1 and maxPercent at most 100".into(),
            });
        }
        if let Some(TrafficShift {
            webhook: Some(url), ..
        }) = &args.traffic
            && reqwest::Url::parse(url).is_err()
        {
            return Err(ActionError::Invalid {
                object: format!("zone/{}", args.zone),
                reason: "traffic.webhook is not a valid URL".into(),
            });
        }
        Ok(ZoneFailout {
            args,
            owners: EvictionOwners::default(),
            in_flight: InFlight::new(EVICTIONS_IN_FLIGHT),
        })
    }

    fn settings(&self) -> DrainSettings {
        DrainSettings {
            max_concurrent: usize::MAX,
            max_nodes: Some(self.args.drain_concurrency as usize),
            ignore_daemon_sets: true,
            delete_emptydir_data: true,
        }
    }

    fn guard(&self, all_nodes: &[Node], all_pods: &[Pod]) -> Result<GuardReport, ActionError> {
        check_guards(&self.args, all_nodes, all_pods, self.settings()).map_err(|reason| {
            ActionError::Refused {
                reason: format!("not failing out zone {}: {reason}", self.args.zone),
            }
        })
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let zone = &self.args.zone;
        let node_api = Nodes::new(ctx.client.clone(), ctx.call_timeout);
        let pod_api = Pods::new(ctx.client.clone(), ctx.call_timeout);
        let all_nodes = node_api.list(None).await?;
        let zone_nodes: Vec<&Node> = all_nodes
            .iter()
            .filter(|n| nodes::label(n, &self.args.zone_label) == Some(zone.as_str()))
            .collect();
        if zone_nodes.is_empty() {
            let zones: BTreeSet<&str> = all_nodes
                .iter()
                .filter_map(|n| nodes::label(n, &self.args.zone_label))
                .collect();
            return Err(ActionError::Invalid {
                object: format!("zone/{zone}"),
                reason: format!(
                    "no node has the label {}={zone} (zones seen: {})",
                    self.args.zone_label,
                    zones.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }

        // Phase 1: cordon and mark, behind the guards.
        let cordons: Vec<Mutation> = zone_nodes
            .iter()
            .filter_map(|n| cordon_mutation(n, &ctx.run_id, &ctx.step))
            .collect();
        if !cordons.is_empty() {
            let all_pods = pod_api.list_all().await?;
            let report = self.guard(&all_nodes, &all_pods)?;
            return Ok(Diff {
                summary: format!(
                    "fail out zone {zone}: cordon {} of {} node(s) ({} of {} cluster nodes; pods \
                     to move request {}, {} free elsewhere)",
                    cordons.len(),
                    report.zone_nodes,
                    report.zone_nodes,
                    report.all_nodes,
                    report.need,
                    report.free
                ),
                mutations: cordons,
                progress: None,
            });
        }

        // Nodes cordoned by someone else get no mark: until this run has marked a node, the
        // guards still stand before the first mutation of the later phases.
        let unguarded = !zone_nodes
            .iter()
            .any(|n| nodes::label(n, CORDONED_BY_LABEL) == Some(ctx.run_id.as_str()));

        // Phase 2: traffic away.
        let mut traffic = Vec::new();
        if let Some(shift) = &self.args.traffic {
            if let Some(backend) = &shift.http_route {
                let namespace = ctx.namespace(backend.namespace.as_deref());
                let routes = HttpRoutes::new(ctx.client.clone(), ctx.call_timeout);
                let route = routes.get(&namespace, &backend.name).await?;
                let key = format!("{WEIGHT_BEFORE_PREFIX}{}", backend.backend);
                let current = http_routes::backend_weights(&route)
                    .get(&backend.backend)
                    .copied();
                let before = http_routes::annotation(&route, &key)
                    .map(str::to_string)
                    .or_else(|| current.map(|w| w.to_string()));
                let mutation = route_mutation(
                    &route,
                    &namespace,
                    &backend.name,
                    &BTreeMap::from([(backend.backend.clone(), 0)]),
                    &BTreeMap::from([(key, before)]),
                    TRAFFIC_ROUTE_ID.to_string(),
                    format!(
                        "shift zone {zone}'s traffic away: httproute/{namespace}/{} backend {} \
                         weight to 0",
                        backend.name, backend.backend
                    ),
                )?;
                traffic.extend(mutation);
            }
            if shift.webhook.is_some() {
                traffic.extend(webhook_mutation(
                    zone,
                    &zone_nodes,
                    0,
                    TRAFFIC_WEBHOOK_ID.to_string(),
                ));
            }
        }
        if !traffic.is_empty() {
            if unguarded {
                let all_pods = pod_api.list_all().await?;
                self.guard(&all_nodes, &all_pods)?;
            }
            return Ok(Diff {
                summary: format!("fail out zone {zone}: shift its traffic away"),
                mutations: traffic,
                progress: None,
            });
        }

        // Phase 3: drain in waves.
        let drained: BTreeSet<String> = zone_nodes
            .iter()
            .map(|n| nodes::name(n).to_string())
            .collect();
        let (mut all_pods, pdbs) = tokio::try_join!(pod_api.list_all(), pod_api.pdbs_all())?;
        let mut wave = plan_wave(&drained, &all_pods, &pdbs, self.settings());
        if wave.mutations.is_empty() && !wave.terminating.is_empty() {
            // Nothing left to evict, but not failed out while pods are still terminating.
            wave = next_wave(ctx, &drained, self.settings()).await?;
            all_pods = pod_api.list_all().await?;
        }
        if unguarded && !wave.mutations.is_empty() {
            self.guard(&all_nodes, &all_pods)?;
        }
        self.owners.remember(&wave);
        let summary = if wave.mutations.is_empty() {
            format!(
                "zone {zone} is failed out: {} node(s) cordoned, traffic away, no evictable pod \
                 left{}",
                drained.len(),
                if wave.skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({} DaemonSet/mirror/unmanaged pod(s) stay)",
                        wave.skipped.len()
                    )
                }
            )
        } else {
            format!("fail out zone {zone}: {}", wave_summary(&wave))
        };
        let progress = Some(self.owners.progress(&wave));
        Ok(Diff {
            summary,
            mutations: wave.mutations,
            progress,
        })
    }

    async fn apply_one(
        &self,
        ctx: &ActionContext,
        mutation: &Mutation,
    ) -> Result<Applied, ActionError> {
        if mutation.id.starts_with(EVICT_PREFIX) {
            evict_listed(ctx, mutation, &self.in_flight).await
        } else if mutation.id == TRAFFIC_ROUTE_ID {
            apply_route_patch(ctx, mutation).await
        } else if mutation.id == TRAFFIC_WEBHOOK_ID {
            let url = self
                .args
                .traffic
                .as_ref()
                .and_then(|t| t.webhook.as_deref())
                .ok_or_else(|| ActionError::Invalid {
                    object: format!("zone/{}", self.args.zone),
                    reason: "a webhook mutation without traffic.webhook".into(),
                })?;
            apply_webhook(ctx, url, mutation).await
        } else {
            apply_node_patch(ctx, mutation).await
        }
    }
}

impl Action for ZoneFailout {
    fn kind(&self) -> &'static str {
        "zone.failout"
    }

    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef> {
        super::traffic_set_weights::shift_targets(self.args.traffic.as_ref(), default_namespace)
    }

    /// Cordons of different nodes and evictions of different pods are independent; the
    /// evictions in flight stay bounded across them.
    fn parallel_mutations(&self) -> usize {
        PARALLEL_MUTATIONS
    }

    fn diff<'a>(&'a self, ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>> {
        Box::pin(self.compute(ctx))
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>> {
        Box::pin(self.apply_one(ctx, mutation))
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(wait_evictions_settled(ctx, applied, &self.owners))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, zone: &str, ready: bool, cordoned: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {catalog::DEFAULT_ZONE_LABEL: zone}},
            "spec": {"unschedulable": cordoned},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi"},
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap_or_default()
    }

    fn pod(name: &str, node: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                    "uid": "u", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c",
                "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}
        }))
        .unwrap_or_default()
    }

    fn args(json: Value) -> catalog::ZoneFailout {
        let value = json!({"action": "zone.failout", "with": json});
        match serde_json::from_value::<catalog::Action>(value) {
            Ok(catalog::Action::ZoneFailout(a)) => a,
            other => panic!("bad args: {other:?}"),
        }
    }

    fn settings() -> DrainSettings {
        DrainSettings {
            max_concurrent: 10,
            max_nodes: None,
            ignore_daemon_sets: true,
            delete_emptydir_data: true,
        }
    }

    #[test]
    fn guards_pass_with_room_elsewhere() {
        let nodes = vec![node("a1", "a", true, false), node("b1", "b", true, false)];
        let pods = vec![pod("p1", "a1", "500m"), pod("p2", "b1", "500m")];
        let report = check_guards(&args(json!({"zone": "a"})), &nodes, &pods, settings());
        let Ok(report) = report else {
            panic!("refused: {report:?}");
        };
        assert_eq!(report.need.cpu_millis, 500);
        assert_eq!(report.free.cpu_millis, 1500);
    }

    #[test]
    fn refuses_the_last_healthy_zone_even_with_override() {
        let nodes = vec![
            node("a1", "a", true, false),
            node("b1", "b", true, true),
            node("c1", "c", false, false),
        ];
        let refusal = check_guards(
            &args(json!({"zone": "a", "overrideBlastRadius": true})),
            &nodes,
            &[],
            settings(),
        );
        let Err(reason) = refusal else {
            panic!("not refused");
        };
        assert!(reason.contains("last healthy zone"), "{reason}");
        assert!(reason.contains("cannot be overridden"), "{reason}");
    }

    #[test]
    fn refuses_over_blast_radius_unless_overridden() {
        let nodes = vec![
            node("a1", "a", true, false),
            node("a2", "a", true, false),
            node("b1", "b", true, false),
        ];
        let refusal = check_guards(
            &args(json!({"zone": "a", "maxNodes": 1})),
            &nodes,
            &[],
            settings(),
        );
        assert!(
            matches!(&refusal, Err(r) if r.contains("maxNodes=1") && r.contains("overrideBlastRadius"))
        );
        let refusal = check_guards(
            &args(json!({"zone": "a", "maxPercent": 50})),
            &nodes,
            &[],
            settings(),
        );
        assert!(matches!(&refusal, Err(r) if r.contains("maxPercent=50")));
        let allowed = check_guards(
            &args(json!({"zone": "a", "maxNodes": 1, "overrideBlastRadius": true})),
            &nodes,
            &[],
            settings(),
        );
        assert!(allowed.is_ok());
    }

    #[test]
    fn refuses_without_capacity() {
        let nodes = vec![node("a1", "a", true, false), node("b1", "b", true, false)];
        let pods = vec![pod("p1", "a1", "1500m"), pod("p2", "b1", "1")];
        let refusal = check_guards(&args(json!({"zone": "a"})), &nodes, &pods, settings());
        assert!(
            matches!(&refusal, Err(r) if r.contains("lack the capacity") && r.contains("1500m")),
            "{refusal:?}"
        );
    }

    #[test]
    fn capacity_is_checked_per_node_not_only_in_total() {
        let nodes = vec![
            node("a1", "a", true, false),
            node("b1", "b", true, false),
            node("c1", "c", true, false),
        ];
        // b1 and c1 have 800m free each (1600m in total) but the 1200m pod fits on neither.
        let pods = vec![
            pod("p1", "a1", "1200m"),
            pod("p2", "b1", "1200m"),
            pod("p3", "c1", "1200m"),
        ];
        let refusal = check_guards(&args(json!({"zone": "a"})), &nodes, &pods, settings());
        assert!(
            matches!(&refusal, Err(r) if r.contains("1 pod(s) would fit on no node")),
            "{refusal:?}"
        );
    }

    #[test]
    fn redacts_secrets_from_urls() {
        assert_eq!(
            redact_url("https://user:pw@example.test/hook?token=abc"),
            "https://example.test/hook"
        );
    }

    #[test]
    fn webhook_mutation_is_idempotent_through_node_marks() {
        let mut marked = node("a1", "a", true, true);
        marked
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(TRAFFIC_PERCENT_ANNOTATION.into(), "0".into());
        assert!(webhook_mutation("a", &[&marked], 0, "w".into()).is_none());
        assert!(webhook_mutation("a", &[&marked], 25, "w".into()).is_some());
        let plain = node("a1", "a", true, true);
        assert!(webhook_mutation("a", &[&plain], 0, "w".into()).is_some());
        assert!(webhook_mutation("a", &[&plain], 100, "w".into()).is_none());
    }
}
