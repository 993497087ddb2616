//! `zone.failback`: bring a failed-out zone back — uncordon the nodes a fail-out took out, then
//! ramp the zone's traffic back up in steps, never all at once.
//!
//! # Phases (multi-phase through re-diff)
//! 1. uncordon (`uncordon/<node>`) only the zone's nodes that carry ripcord's mark
//!    `ripcord.dev/cordoned-by` (whichever run set it — the mark's value names the run); nodes
//!    cordoned by anyone else stay cordoned. The marks are removed.
//! 2. the ramp: one mutation per step, ids `ramp-<percent>` (`ramp-10`, `ramp-25`, …), so a
//!    resumed run continues where it stopped. For an HTTPRoute the weights are percentages of
//!    the weight the backend had before fail-out, read from the route annotation
//!    `ripcord.dev/weight-before.<backend>` that `zone.failout` wrote; the 100% step removes the
//!    annotation (no annotation: nothing to ramp). For a traffic-manager webhook the step POSTs
//!    `{"zone": …, "weight": <percent>}` and records it on the zone's nodes
//!    (`ripcord.dev/traffic-percent`, removed at 100%).
//!
//! Without a `traffic` argument the fail-back finds what the fail-out of the zone recorded: the
//! route annotation `ripcord.dev/failed-out.<zone>: <backend>` (written by `zone.failout` with
//! its traffic shift, so it works from any machine) names each route and backend to ramp back;
//! the last ramp step removes it. When no route names the zone but some route still has a
//! backend drained by a fail-out that nobody attributed to a zone, the fail-back refuses before
//! it writes anything, naming the route and asking for `--route`/`traffic` — it never reports
//! success with the zone's traffic still away.
//!
//! `verify` after each ramp step but the last waits `rampPause` — what remains of it, measured
//! from the route annotation `ripcord.dev/ramped-at.<backend>` the step wrote, so a resumed
//! fail-back does not skip an interrupted pause — and after every step
//! evaluates the optional `healthGate` (Prometheus); a failing gate stops the ramp at the
//! current weight with [`ActionError::GateFailed`].

use super::node_cordon::{CORDONED_BY_LABEL, apply_node_patch, uncordon_mutation};
use super::traffic_set_weights::{apply_route_patch, route_mutation};
use super::zone_failout::{
    TRAFFIC_PERCENT_ANNOTATION, WEIGHT_BEFORE_PREFIX, apply_webhook, webhook_mutation,
};
use super::{Action, ActionContext, ActionError, Applied, Diff, Mutation, ObjectRef};
use crate::k8s::http_routes::{self, HttpRoutes};
use crate::k8s::nodes::{self, Nodes};
use crate::metrics::prometheus::Prometheus;
use crate::playbook::PromCondition;
use crate::playbook::catalog;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The prefix of ramp mutation ids.
const RAMP_PREFIX: &str = "ramp-";
/// The suffix of the webhook variant of a ramp step.
const WEBHOOK_SUFFIX: &str = "/webhook";

/// Evaluates a health gate through Prometheus; `what` says what is held back if it fails.
pub(crate) async fn check_health_gate(
    ctx: &ActionContext,
    condition: &PromCondition,
    what: &str,
) -> Result<(), ActionError> {
    let Some(url) = ctx.prometheus_url.as_deref() else {
        return Err(ActionError::Refused {
            reason: format!(
                "a health gate needs a Prometheus URL (set prometheus.url in the config file or \
                 pass --prometheus-url); {what}"
            ),
        });
    };
    let prometheus = Prometheus::new(url, ctx.http.clone()).with_timeout(ctx.call_timeout);
    let (holds, value) = prometheus.evaluate(condition).await?;
    tracing::info!(run = %ctx.run_id, step = %ctx.step, value, holds, "health gate evaluated");
    if holds {
        Ok(())
    } else {
        Err(ActionError::GateFailed {
            reason: format!(
                "health gate `{}` observed {value}, required {} {}; {what}",
                condition.query,
                condition.op.symbol(),
                condition.threshold
            ),
        })
    }
}

/// The weight of ramp step `percent` for a backend whose weight was `before` (rounded up, so a
/// non-zero step never means zero traffic).
pub(crate) fn ramp_weight(before: u32, percent: u32) -> u32 {
    let scaled = u64::from(before) * u64::from(percent.min(100));
    u32::try_from(scaled.div_ceil(100)).unwrap_or(u32::MAX)
}

/// The next ramp step for a route: `(percent, weight)`, given the weight before fail-out, the
/// current weight and the ramp. `None`: nothing left to do.
pub(crate) fn next_route_step(before: u32, current: u32, ramp: &[u32]) -> Option<(u32, u32)> {
    for &percent in ramp {
        let weight = ramp_weight(before, percent);
        if weight > current || percent >= 100 {
            return Some((percent, weight.max(current)));
        }
    }
    None
}

/// The `zone.failback` action.
#[derive(Debug, Clone)]
pub struct ZoneFailback {
    args: catalog::ZoneFailback,
    ramp: Vec<u32>,
}

// === impl ZoneFailback ===

impl ZoneFailback {
    /// Checks the arguments (ramp steps between 0 and 100, non-decreasing; empty = `[100]`).
    pub fn new(args: catalog::ZoneFailback) -> Result<ZoneFailback, ActionError> {
        if args.ramp.iter().any(|p| *p > 100) || args.ramp.windows(2).any(|w| w[0] > w[1]) {
            return Err(ActionError::Invalid {
                object: format!("zone/{}", args.zone),
                reason: "ramp steps must be between 0 and 100 and must not decrease".into(),
            });
        }
        let mut ramp: Vec<u32> = args.ramp.iter().copied().filter(|p| *p > 0).collect();
        ramp.dedup();
        if ramp.is_empty() {
            ramp.push(100);
        }
        Ok(ZoneFailback { args, ramp })
    }

    fn final_percent(&self) -> u32 {
        self.ramp.last().copied().unwrap_or(100)
    }

    /// The route backends carrying the zone's traffic: the `traffic.httpRoute` argument, or
    /// (without a `traffic` argument) the routes a fail-out of the zone marked. Refuses when
    /// nothing names the zone but some route still has a backend drained by a fail-out.
    async fn route_backends(
        &self,
        ctx: &ActionContext,
    ) -> Result<Vec<catalog::RouteBackend>, ActionError> {
        if let Some(shift) = &self.args.traffic {
            return Ok(shift.http_route.iter().cloned().collect());
        }
        let zone = &self.args.zone;
        let marker = format!("{}{zone}", http_routes::FAILED_OUT_PREFIX);
        let routes = HttpRoutes::new(ctx.client.clone(), ctx.call_timeout)
            .list_all()
            .await?;
        let mut found = Vec::new();
        let mut unattributed = Vec::new();
        for route in &routes {
            let (namespace, name) = http_routes::namespace_and_name(route);
            if let Some(backend) = http_routes::annotation(route, &marker) {
                found.push(catalog::RouteBackend {
                    namespace: Some(namespace.clone()),
                    name: name.clone(),
                    backend: backend.to_string(),
                });
            }
            let attributed: BTreeSet<&str> =
                http_routes::annotations_with_prefix(route, http_routes::FAILED_OUT_PREFIX)
                    .map(|(_, backend)| backend)
                    .collect();
            for (backend, before) in
                http_routes::annotations_with_prefix(route, WEIGHT_BEFORE_PREFIX)
            {
                if !attributed.contains(backend) {
                    unattributed.push((
                        format!(
                            "httproute/{namespace}/{name} backend {backend} (weight before: \
                             {before})"
                        ),
                        format!("--route {namespace}/{name} --backend {backend}"),
                    ));
                }
            }
        }
        if let Some((_, flags)) = unattributed.first()
            && found.is_empty()
        {
            let drained: Vec<&str> = unattributed.iter().map(|(what, _)| what.as_str()).collect();
            return Err(ActionError::Refused {
                reason: format!(
                    "no fail-out of zone {zone} recorded which route carries its traffic, but \
                     {} {} still drained by a fail-out; failing back without ramping it would \
                     leave the traffic away. Say which route is the zone's: e.g. {flags} (or \
                     traffic.httpRoute in the playbook)",
                    drained.join(", "),
                    if drained.len() == 1 { "is" } else { "are" }
                ),
            });
        }
        tracing::info!(run = %ctx.run_id, step = %ctx.step, zone = %zone, routes = found.len(),
                       "routes recorded by the fail-out");
        Ok(found)
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let zone = &self.args.zone;
        let route_backends = self.route_backends(ctx).await?;
        let node_api = Nodes::new(ctx.client.clone(), ctx.call_timeout);
        let selector = format!("{}={zone}", self.args.zone_label);
        let zone_nodes = node_api.list(Some(&selector)).await?;
        let zone_node_refs: Vec<&Node> = zone_nodes.iter().collect();

        // Phase 1: uncordon what a fail-out took out.
        let marked: Vec<&Node> = zone_nodes
            .iter()
            .filter(|n| nodes::label(n, CORDONED_BY_LABEL).is_some())
            .collect();
        let uncordons: Vec<Mutation> = marked.iter().filter_map(|n| uncordon_mutation(n)).collect();
        if !uncordons.is_empty() {
            let runs: BTreeSet<&str> = marked
                .iter()
                .filter_map(|n| nodes::label(n, CORDONED_BY_LABEL))
                .collect();
            let others = zone_nodes
                .iter()
                .filter(|n| nodes::is_unschedulable(n))
                .count()
                - marked.iter().filter(|n| nodes::is_unschedulable(n)).count();
            let mut summary = format!(
                "fail back zone {zone}: uncordon {} node(s) taken out by run {}",
                uncordons.len(),
                runs.into_iter().collect::<Vec<_>>().join(", ")
            );
            if others > 0 {
                summary.push_str(&format!(
                    "; {others} node(s) cordoned by someone else stay cordoned"
                ));
            }
            return Ok(Diff {
                summary,
                mutations: uncordons,
                progress: None,
            });
        }

        // Phase 2: the ramp, one step per round.
        let mut mutations = Vec::new();
        let mut notes = Vec::new();
        let single = route_backends.len() == 1;
        for backend in &route_backends {
            let namespace = ctx.namespace(backend.namespace.as_deref());
            let routes = HttpRoutes::new(ctx.client.clone(), ctx.call_timeout);
            let route = routes.get(&namespace, &backend.name).await?;
            let key = format!("{WEIGHT_BEFORE_PREFIX}{}", backend.backend);
            let current = http_routes::backend_weights(&route)
                .get(&backend.backend)
                .copied()
                .unwrap_or(0);
            match http_routes::annotation(&route, &key).map(str::parse::<u32>) {
                None => notes.push(format!(
                    "backend {} carries its full weight (no {key} annotation)",
                    backend.backend
                )),
                Some(Err(_)) => {
                    return Err(ActionError::Invalid {
                        object: format!("httproute/{namespace}/{}", backend.name),
                        reason: format!("annotation {key} is not a weight"),
                    });
                }
                Some(Ok(before)) => {
                    if let Some((percent, weight)) = next_route_step(before, current, &self.ramp) {
                        let last = percent >= 100;
                        let ramped_at =
                            format!("{}{}", http_routes::RAMPED_AT_PREFIX, backend.backend);
                        let mut annotations = BTreeMap::from([
                            (key, (!last).then(|| before.to_string())),
                            (
                                ramped_at,
                                (!last).then(|| jiff::Timestamp::now().to_string()),
                            ),
                        ]);
                        if last {
                            // The fail-out's record of the zone goes with the last step.
                            annotations
                                .insert(format!("{}{zone}", http_routes::FAILED_OUT_PREFIX), None);
                        }
                        let id = if single {
                            format!("{RAMP_PREFIX}{percent}")
                        } else {
                            format!(
                                "{RAMP_PREFIX}{percent}/{namespace}/{}/{}",
                                backend.name, backend.backend
                            )
                        };
                        mutations.extend(route_mutation(
                            &route,
                            &namespace,
                            &backend.name,
                            &BTreeMap::from([(backend.backend.clone(), weight)]),
                            &annotations,
                            id,
                            format!(
                                "ramp zone {zone}'s traffic to {percent}%: httproute/\
                                 {namespace}/{} backend {} weight {current} → {weight} \
                                 (of {before})",
                                backend.name, backend.backend
                            ),
                        )?);
                    }
                }
            }
        }
        if self
            .args
            .traffic
            .as_ref()
            .is_some_and(|shift| shift.webhook.is_some())
        {
            let current: Option<u32> = zone_nodes
                .iter()
                .filter_map(|n| nodes::annotation(n, TRAFFIC_PERCENT_ANNOTATION))
                .filter_map(|v| v.parse().ok())
                .min();
            if let Some(current) = current {
                if let Some(percent) = self.ramp.iter().copied().find(|p| *p > current) {
                    mutations.extend(webhook_mutation(
                        zone,
                        &zone_node_refs,
                        percent,
                        format!("{RAMP_PREFIX}{percent}{WEBHOOK_SUFFIX}"),
                    ));
                }
            } else {
                notes.push("the traffic manager already has the zone at 100%".to_string());
            }
        }
        let summary = if mutations.is_empty() {
            let mut text = format!("zone {zone} is failed back: no marked node left");
            if !notes.is_empty() {
                text.push_str(&format!("; {}", notes.join("; ")));
            }
            text
        } else {
            mutations
                .iter()
                .map(|m| m.description.clone())
                .collect::<Vec<_>>()
                .join("; ")
        };
        Ok(Diff {
            summary,
            mutations,
            progress: None,
        })
    }

    async fn apply_one(
        &self,
        ctx: &ActionContext,
        mutation: &Mutation,
    ) -> Result<Applied, ActionError> {
        if mutation.id.ends_with(WEBHOOK_SUFFIX) {
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
        } else if mutation.id.starts_with(RAMP_PREFIX) {
            apply_route_patch(ctx, mutation).await
        } else {
            apply_node_patch(ctx, mutation).await
        }
    }

    /// What remains of the pause after the latest ramp step: `rampPause` minus the time since
    /// the step was written (`ripcord.dev/ramped-at.<backend>` on the route; the whole pause
    /// when no route says).
    async fn remaining_pause(&self, ctx: &ActionContext) -> Result<Duration, ActionError> {
        let pause = self.args.ramp_pause.0;
        let mut since: Option<Duration> = None;
        for backend in self.route_backends(ctx).await? {
            let namespace = ctx.namespace(backend.namespace.as_deref());
            let route = HttpRoutes::new(ctx.client.clone(), ctx.call_timeout)
                .get(&namespace, &backend.name)
                .await?;
            let key = format!("{}{}", http_routes::RAMPED_AT_PREFIX, backend.backend);
            let Some(at) = http_routes::annotation(&route, &key)
                .and_then(|v| v.parse::<jiff::Timestamp>().ok())
            else {
                continue;
            };
            let elapsed =
                Duration::try_from(jiff::Timestamp::now().duration_since(at)).unwrap_or_default();
            since = Some(since.map_or(elapsed, |s| s.min(elapsed)));
        }
        Ok(since.map_or(pause, |elapsed| pause.saturating_sub(elapsed)))
    }

    async fn settle(&self, ctx: &ActionContext, applied: &[Applied]) -> Result<(), ActionError> {
        let latest = applied
            .iter()
            .filter_map(|a| a.id.strip_prefix(RAMP_PREFIX))
            .filter_map(|rest| {
                let digits = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                rest[..digits].parse::<u32>().ok()
            })
            .max();
        let Some(percent) = latest else {
            return Ok(());
        };
        let last = percent >= self.final_percent();
        if !last {
            let pause = self.remaining_pause(ctx).await?;
            tracing::info!(run = %ctx.run_id, step = %ctx.step, percent,
                           pause_ms = pause.as_millis() as u64, "ramp step held");
            tokio::time::sleep(pause).await;
        }
        if let Some(gate) = &self.args.health_gate {
            check_health_gate(
                ctx,
                gate,
                &format!(
                    "zone {}'s traffic stays at {percent}% until the gate passes",
                    self.args.zone
                ),
            )
            .await?;
        }
        Ok(())
    }
}

impl Action for ZoneFailback {
    fn kind(&self) -> &'static str {
        "zone.failback"
    }

    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef> {
        super::traffic_set_weights::shift_targets(self.args.traffic.as_ref(), default_namespace)
    }

    /// Uncordons of different nodes are independent (the traffic ramp is one diff per step).
    fn parallel_mutations(&self) -> usize {
        super::node_drain::PARALLEL_MUTATIONS
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
        Box::pin(self.settle(ctx, applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_steps_follow_the_percentages() {
        let ramp = [10, 25, 50, 100];
        let mut current = 0;
        let mut seen = Vec::new();
        while let Some((percent, weight)) = next_route_step(100, current, &ramp) {
            seen.push((percent, weight));
            if percent >= 100 {
                break;
            }
            current = weight;
        }
        assert_eq!(seen, [(10, 10), (25, 25), (50, 50), (100, 100)]);
        // Resumed after 25%: continues with 50%.
        assert_eq!(next_route_step(100, 25, &ramp), Some((50, 50)));
        // Small weights round up and skip steps that would not change anything.
        assert_eq!(next_route_step(3, 0, &ramp), Some((10, 1)));
        assert_eq!(next_route_step(3, 1, &ramp), Some((50, 2)));
        // A ramp ending below 100% stops there.
        assert_eq!(next_route_step(100, 50, &[10, 50]), None);
    }

    #[test]
    fn bad_ramps_are_rejected() {
        let args = |ramp: Vec<u32>| catalog::ZoneFailback {
            zone: "a".into(),
            zone_label: catalog::DEFAULT_ZONE_LABEL.into(),
            traffic: None,
            ramp,
            ramp_pause: crate::playbook::Duration::default(),
            health_gate: None,
        };
        assert!(ZoneFailback::new(args(vec![50, 10])).is_err());
        assert!(ZoneFailback::new(args(vec![10, 200])).is_err());
        let empty = ZoneFailback::new(args(vec![]));
        assert!(empty.is_ok_and(|f| f.ramp == vec![100]));
    }
}
