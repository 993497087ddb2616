//! `zone.failout`: take a zone (the nodes whose zone label has the zone's value) out of
//! service — cordon and mark its nodes, shift its traffic away, then drain it.
//!
//! # Guards (before the first mutation)
//! While any of the zone's nodes still has to be cordoned, `diff` checks, and refuses with
//! [`ActionError::Refused`] (saying why and how to proceed) when:
//! - the zone is the last healthy one: no other zone has a Ready, schedulable node (not
//!   overridable): at least one healthy zone always remains;
//! - the fail-out exceeds the blast-radius budget, which is cumulative: the zone's nodes plus
//!   the nodes of other zones already out of service (cordoned — by an earlier fail-out or
//!   anyone — or not Ready) are more than `maxNodes`, or more than `maxPercent` of the
//!   cluster's nodes (override with `overrideBlastRadius: true`);
//! - the remaining zones lack the capacity for the moved pods: the CPU/memory requests of the
//!   pods to evict — and of the pods still on nodes of other zones that ripcord cordoned (a
//!   fail-out of another run, maybe still draining) — do not fit, first-fit per node, into the
//!   allocatable resources minus the requests already bound on the Ready, schedulable nodes of
//!   the other zones (not overridable: add capacity or scale down).
//!
//! # Phases (multi-phase through re-diff)
//! 1. cordon + mark every zone node (`cordon/<node>`; see [`super::node_cordon`]);
//! 2. shift traffic: the zone's HTTPRoute backendRef weight to 0, remembering the weight it had
//!    in the route annotation `ripcord.dev/weight-before.<backend>` (`traffic/route`; inverse:
//!    the old rules), and/or POST `{"zone": …, "weight": 0}` to the traffic-manager webhook
//!    (`traffic/webhook`; the zone's nodes then carry `ripcord.dev/traffic-percent: "0"`);
//! 3. drain in waves: PDB-respecting evictions of the pods of at most `drainConcurrency`
//!    nodes at once (see [`super::node_drain`]); `verify` waits until the evicted pods'
//!    replacements are Ready in the other zones. The waves are planned on, and the waits
//!    read, the drain's live pod view (one paged list, then a watch) instead of listing every
//!    pod of the cluster per round.
//!
//! The cordons are fleet-guarded ([`Action::fleet_guarded`]): the engine writes them only under
//! the cluster-wide fleet lock, from a diff (and so a guard check) made after taking it, so runs
//! failing out different zones at the same moment see each other's cordons (see
//! `engine/guards.rs`). With the default budget (`maxPercent: 50`) of three equal zones, one
//! zone can be out at a time; with `overrideBlastRadius`, all but the last healthy one.
//!
//! The step is done when every zone node is cordoned, the traffic is away and no evictable pod
//! is left in the zone. `zone.failback` reverses it.

use super::node_cordon::{CORDONED_BY_LABEL, apply_node_patch, cordon_mutation};
use super::node_drain::{
    DrainPods, DrainSettings, EVICT_PREFIX, EvictionOwners, InFlight, PARALLEL_MUTATIONS,
    evict_listed, next_wave, settle_remembered, wait_evictions_settled, wave_summary,
};
use super::traffic_set_weights::{apply_route_patch, route_mutation};
use super::{Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef};
use crate::k8s::http_routes::{self, HttpRoutes};
use crate::k8s::nodes::{self, Nodes, Resources};
use crate::k8s::pods;
use crate::playbook::catalog::{self, TrafficShift};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The route annotation prefix remembering a backend's weight before fail-out.
pub const WEIGHT_BEFORE_PREFIX: &str = "ripcord.dev/weight-before.";
/// The node annotation recording the traffic percentage last sent to the webhook.
pub const TRAFFIC_PERCENT_ANNOTATION: &str = "ripcord.dev/traffic-percent";
/// Mutation id of the route weight change.
const TRAFFIC_ROUTE_ID: &str = "traffic/route";
/// Mutation id of the webhook call.
const TRAFFIC_WEBHOOK_ID: &str = "traffic/webhook";
/// Mutation id prefix of the cordons (see [`cordon_mutation`]).
const CORDON_PREFIX: &str = "cordon/";
/// Eviction requests in flight at once (across the nodes of a wave).
const EVICTIONS_IN_FLIGHT: usize = 32;

/// The `zone.failout` action.
#[derive(Debug)]
pub struct ZoneFailout {
    args: catalog::ZoneFailout,
    owners: EvictionOwners,
    pods: DrainPods,
    in_flight: InFlight,
}

/// The drain as planned on today's pods, for the plan shown before the first mutation:
/// `drain: evict N pod(s) in W wave(s) of at most C node(s)`, then one line per wave
/// (`wave 1: 5 pod(s) from node-1 (3), node-2 (2)`).
/// DaemonSet and mirror pods stay and are counted apart.
pub(crate) fn drain_outlook<P: Borrow<Pod>>(
    drained: &BTreeSet<String>,
    all_pods: &[P],
    nodes_per_wave: usize,
) -> String {
    let mut per_node: BTreeMap<&str, usize> = drained.iter().map(|n| (n.as_str(), 0)).collect();
    let mut staying = 0;
    for pod in all_pods.iter().map(Borrow::borrow) {
        let Some(node) = pods::node_name(pod) else {
            continue;
        };
        let Some(count) = per_node.get_mut(node) else {
            continue;
        };
        match pods::drain_skip_reason(pod, true, true) {
            None => *count += 1,
            Some("already terminating") => {}
            Some(_) => staying += 1,
        }
    }
    let busy: Vec<(&str, usize)> = per_node.into_iter().filter(|(_, n)| *n > 0).collect();
    let total: usize = busy.iter().map(|(_, n)| n).sum();
    let waves: Vec<String> = busy
        .chunks(nodes_per_wave.max(1))
        .enumerate()
        .map(|(i, wave)| {
            let pods: usize = wave.iter().map(|(_, n)| n).sum();
            let nodes: Vec<String> = wave.iter().map(|(n, c)| format!("{n} ({c})")).collect();
            format!("wave {}: {pods} pod(s) from {}", i + 1, nodes.join(", "))
        })
        .collect();
    let mut text = format!(
        "drain: evict {total} pod(s) in {} wave(s) of at most {} node(s), respecting \
         PodDisruptionBudgets",
        waves.len(),
        nodes_per_wave.max(1)
    );
    if staying > 0 {
        text.push_str(&format!(" ({staying} DaemonSet/mirror pod(s) stay)"));
    }
    for wave in waves {
        text.push_str("\n   ");
        text.push_str(&wave);
    }
    text
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
pub(crate) fn check_guards<P: Borrow<Pod>>(
    args: &catalog::ZoneFailout,
    all_nodes: &[Node],
    all_pods: &[P],
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
    // The budget is cumulative: nodes of other zones that are already out of service (cordoned
    // by an earlier fail-out or anyone else, or not Ready) count with this zone's.
    let mut out_elsewhere: BTreeMap<&str, usize> = BTreeMap::new();
    for node in all_nodes
        .iter()
        .filter(|n| !in_zone(n) && (!nodes::is_ready(n) || nodes::is_unschedulable(n)))
    {
        *out_elsewhere
            .entry(nodes::label(node, &args.zone_label).unwrap_or("(no zone label)"))
            .or_default() += 1;
    }
    let already_out: usize = out_elsewhere.values().sum();
    let out_after = n + already_out;
    let counted = if already_out == 0 {
        format!("its {n} node(s)")
    } else {
        format!(
            "its {n} node(s) plus {already_out} already cordoned or not Ready elsewhere ({})",
            out_elsewhere
                .iter()
                .map(|(zone, count)| format!("{zone}: {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if !args.override_blast_radius {
        if let Some(max) = args.max_nodes
            && out_after > max as usize
        {
            problems.push(format!(
                "failing out zone {zone} would put {out_after} node(s) out of service \
                 ({counted}), over the blast-radius budget maxNodes={max}; fail a zone back in, \
                 raise maxNodes or set overrideBlastRadius: true to proceed"
            ));
        }
        if let Some(max) = args.max_percent
            && out_after * 100 > max as usize * total
        {
            problems.push(format!(
                "failing out zone {zone} would put {out_after} of {total} nodes ({}%) out of \
                 service ({counted}), over the blast-radius budget maxPercent={max}; fail a zone \
                 back in, raise maxPercent or set overrideBlastRadius: true to proceed",
                out_after * 100 / total
            ));
        }
    }
    let mut need = Resources::default();
    let mut moving: Vec<Resources> = Vec::new();
    let mut used: BTreeMap<&str, Resources> = BTreeMap::new();
    // Nodes elsewhere that ripcord cordoned (a fail-out or drain of another run, maybe still
    // draining): their evictable pods are on their way to the same healthy nodes.
    let draining: BTreeSet<&str> = all_nodes
        .iter()
        .filter(|n| {
            !in_zone(n)
                && nodes::is_unschedulable(n)
                && nodes::label(n, CORDONED_BY_LABEL).is_some()
        })
        .map(nodes::name)
        .collect();
    let mut in_flight = 0usize;
    for pod in all_pods.iter().map(Borrow::borrow) {
        let Some(node) = pods::node_name(pod) else {
            continue;
        };
        if pods::is_terminating(pod) {
            continue;
        }
        let evictable = || {
            pods::drain_skip_reason(
                pod,
                settings.ignore_daemon_sets,
                settings.delete_emptydir_data,
            )
            .is_none()
        };
        if zone_nodes.contains(node) {
            if evictable() {
                need = need.plus(pods::requests(pod));
                moving.push(pods::requests(pod));
            }
        } else if draining.contains(node) {
            if evictable() {
                in_flight += 1;
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
        let also = if in_flight == 0 {
            String::new()
        } else {
            format!(
                " (counting {in_flight} pod(s) still to leave nodes another run cordoned: {})",
                draining.iter().copied().collect::<Vec<_>>().join(", ")
            )
        };
        problems.push(format!(
            "the other zones lack the capacity for zone {zone}'s pods: they request {need}, the \
             Ready schedulable nodes elsewhere have {free} free, and {unplaced} pod(s) would fit \
             on no node{also}; add nodes to the other zones or scale workloads down, then run \
             again (the capacity guard cannot be overridden)"
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
    let shown = crate::redact::url(url);
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
            pods: DrainPods::default(),
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

    fn guard<P: Borrow<Pod>>(
        &self,
        all_nodes: &[Node],
        all_pods: &[P],
    ) -> Result<GuardReport, ActionError> {
        check_guards(&self.args, all_nodes, all_pods, self.settings()).map_err(|reason| {
            ActionError::Refused {
                reason: format!("not failing out zone {}: {reason}", self.args.zone),
            }
        })
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let zone = &self.args.zone;
        let node_api = Nodes::new(ctx.client.clone(), ctx.call_timeout);
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
            // The guards read the drain's pod view: one list of every pod for the whole step
            // (the diff under the fleet lock and the one after the zone lock read it again at
            // no cost), then a watch. Its lag behind the API server is the watch's; the nodes,
            // which carry the other runs' cordons, are listed fresh by every diff.
            let all_pods = self.view_pods(ctx).await?;
            let report = self.guard(&all_nodes, &all_pods)?;
            // The dry run and the confirmation show this phase's mutations; the later phases
            // (planned on today's state) are listed in the summary, in the order they run.
            let mut summary = format!(
                "fail out zone {zone}, in this order:\n1. cordon {} of {} node(s): {} ({} of {} \
                 cluster nodes; pods to move request {}, {} free elsewhere)",
                cordons.len(),
                report.zone_nodes,
                cordons
                    .iter()
                    .map(|m| m.target.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                report.zone_nodes,
                report.all_nodes,
                report.need,
                report.free
            );
            let mut phase = 2;
            for line in self.traffic_outlook(ctx, &zone_nodes).await? {
                summary.push_str(&format!("\n{phase}. {line}"));
                phase += 1;
            }
            let drained: BTreeSet<String> = zone_nodes
                .iter()
                .map(|n| nodes::name(n).to_string())
                .collect();
            summary.push_str(&format!(
                "\n{phase}. {}",
                drain_outlook(&drained, &all_pods, self.args.drain_concurrency as usize)
            ));
            return Ok(Diff {
                summary,
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
                let from = current.map(|w| w.to_string()).unwrap_or_else(|| "?".into());
                let mutation = route_mutation(
                    &route,
                    &namespace,
                    &backend.name,
                    &BTreeMap::from([(backend.backend.clone(), 0)]),
                    &BTreeMap::from([
                        (key, before),
                        // What the fail-back of the zone ramps back (issue 12).
                        (
                            format!("{}{zone}", http_routes::FAILED_OUT_PREFIX),
                            Some(backend.backend.clone()),
                        ),
                    ]),
                    TRAFFIC_ROUTE_ID.to_string(),
                    format!(
                        "shift zone {zone}'s traffic away: httproute/{namespace}/{} backend {} \
                         weight {from} -> 0",
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
                let all_pods = self.view_pods(ctx).await?;
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
        // Nothing left to evict but pods still terminating: not failed out yet, next_wave
        // waits for them.
        let wave = next_wave(ctx, &self.pods, &drained, self.settings()).await?;
        if wave.mutations.is_empty() {
            settle_remembered(ctx, &self.owners, &self.pods).await?;
        }
        if unguarded && !wave.mutations.is_empty() {
            let all_pods = self.view_pods(ctx).await?;
            self.guard(&all_nodes, &all_pods)?;
        }
        self.owners.remember(&wave, &drained, self.settings());
        let summary = if wave.mutations.is_empty() {
            format!(
                "zone {zone} is failed out: {} node(s) cordoned, {}no evictable pod left{}",
                drained.len(),
                if self.args.traffic.is_some() {
                    "traffic away, "
                } else {
                    ""
                },
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

    /// Every pod of the cluster, as the drain's view sees it (started and listed on first
    /// use).
    async fn view_pods(&self, ctx: &ActionContext) -> Result<Vec<Arc<Pod>>, ActionError> {
        Ok(self.pods.get(ctx).await?.pods())
    }

    /// The traffic shifts the later phase will make, one line each (for the plan shown
    /// before the first mutation): `shift traffic: httproute NS/NAME backend B weight W -> 0`.
    async fn traffic_outlook(
        &self,
        ctx: &ActionContext,
        zone_nodes: &[&Node],
    ) -> Result<Vec<String>, ActionError> {
        let mut lines = Vec::new();
        let Some(shift) = &self.args.traffic else {
            lines.push("shift traffic: no route or webhook given, traffic is not shifted".into());
            return Ok(lines);
        };
        if let Some(backend) = &shift.http_route {
            let namespace = ctx.namespace(backend.namespace.as_deref());
            let routes = HttpRoutes::new(ctx.client.clone(), ctx.call_timeout);
            let route = routes.get(&namespace, &backend.name).await?;
            let from = http_routes::backend_weights(&route)
                .get(&backend.backend)
                .map(|w| w.to_string())
                .unwrap_or_else(|| "(no such backend)".into());
            lines.push(format!(
                "shift traffic: httproute {namespace}/{} backend {} weight {from} -> 0",
                backend.name, backend.backend
            ));
        }
        if shift.webhook.is_some() {
            lines.push(format!(
                "shift traffic: tell the traffic webhook zone {} gets 0% ({} node(s) marked)",
                self.args.zone,
                zone_nodes.len()
            ));
        }
        Ok(lines)
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

    /// The cordons: they take the zone's capacity out of the fleet, behind guards that count
    /// what every other run already took out.
    fn fleet_guarded(&self, diff: &Diff) -> bool {
        diff.mutations
            .iter()
            .any(|m| m.id.starts_with(CORDON_PREFIX))
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
        Box::pin(wait_evictions_settled(
            ctx,
            applied,
            &self.owners,
            &self.pods,
        ))
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
            &[] as &[Pod],
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
            &[] as &[Pod],
            settings(),
        );
        assert!(
            matches!(&refusal, Err(r) if r.contains("maxNodes=1") && r.contains("overrideBlastRadius"))
        );
        let refusal = check_guards(
            &args(json!({"zone": "a", "maxPercent": 50})),
            &nodes,
            &[] as &[Pod],
            settings(),
        );
        assert!(matches!(&refusal, Err(r) if r.contains("maxPercent=50")));
        let allowed = check_guards(
            &args(json!({"zone": "a", "maxNodes": 1, "overrideBlastRadius": true})),
            &nodes,
            &[] as &[Pod],
            settings(),
        );
        assert!(allowed.is_ok());
    }

    #[test]
    fn issue12_blast_radius_is_cumulative() {
        // zone b is out already (cordoned); failing out a would put 2 of 3 nodes out.
        let nodes = vec![
            node("a1", "a", true, false),
            node("b1", "b", true, true),
            node("c1", "c", true, false),
        ];
        let refusal = check_guards(
            &args(json!({"zone": "a", "maxPercent": 50})),
            &nodes,
            &[] as &[Pod],
            settings(),
        );
        assert!(
            matches!(&refusal, Err(r) if r.contains("2 of 3 nodes") && r.contains("b: 1")),
            "{refusal:?}"
        );
        let refusal = check_guards(
            &args(json!({"zone": "a", "maxNodes": 1})),
            &nodes,
            &[] as &[Pod],
            settings(),
        );
        assert!(
            matches!(&refusal, Err(r) if r.contains("maxNodes=1")),
            "{refusal:?}"
        );
        // A node that is not Ready counts as out too; the override still passes (c is healthy).
        let mut not_ready = nodes.clone();
        not_ready[1] = node("b1", "b", false, false);
        assert!(
            check_guards(
                &args(json!({"zone": "a", "maxPercent": 50})),
                &not_ready,
                &[] as &[Pod],
                settings()
            )
            .is_err()
        );
        assert!(
            check_guards(
                &args(json!({"zone": "a", "maxPercent": 50, "overrideBlastRadius": true})),
                &nodes,
                &[] as &[Pod],
                settings()
            )
            .is_ok()
        );
    }

    #[test]
    fn issue12_capacity_counts_pods_still_draining_from_another_runs_zone() {
        let mut b1 = node("b1", "b", true, true);
        b1.metadata
            .labels
            .get_or_insert_default()
            .insert(CORDONED_BY_LABEL.into(), "r-other".into());
        let nodes = vec![
            node("a1", "a", true, false),
            b1,
            node("c1", "c", true, false),
        ];
        // c1 has 2 CPUs: a's 1200m fits alone, not with b's 1200m still to move.
        let pods = vec![pod("p1", "a1", "1200m"), pod("p2", "b1", "1200m")];
        let args = args(json!({"zone": "a", "overrideBlastRadius": true}));
        let refusal = check_guards(&args, &nodes, &pods, settings());
        assert!(
            matches!(&refusal, Err(r) if r.contains("still to leave") && r.contains("b1")),
            "{refusal:?}"
        );
        assert!(check_guards(&args, &nodes, &pods[..1], settings()).is_ok());
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
