//! `deployment.restart`: restart a Deployment's pods in explicit batches, waiting for each
//! batch's replacements to be Ready and warm before the next one.
//!
//! # Design
//! `kubectl rollout restart` stamps the pod template and lets the Deployment controller pace the
//! rollout by `maxSurge`/`maxUnavailable`; that cannot promise "batches of N, at most N
//! unready", and a resumed run cannot tell which pods it already replaced. ripcord instead
//! restarts pod by pod through the Eviction API (PodDisruptionBudgets are honoured; a 429 is
//! retried with backoff within the step timeout) and lets the ReplicaSet recreate each pod from
//! the unchanged template:
//!
//! 1. `restart/mark` — one merge patch on the Deployment's *metadata* (no rollout) records the
//!    run (`ripcord.dev/restart: <run-id>/<step>`) and the names of the pods to restart
//!    (`ripcord.dev/restart-pods: a,b,c`). This is the restart marker: it derives from the run
//!    id, and because replacement pods get new names, a pod is restarted at most once — a
//!    resumed run evicts only listed pods that still exist. Inverse: remove both annotations.
//! 2. `batch-<k>/<pod>` — each diff evicts up to `batch − unready` listed pods (unready counts
//!    the Deployment's pods that are not Ready plus missing replicas), so at most `batch` pods
//!    are ever unready because of the restart. Inverse `None`.
//! 3. `verify` waits (bounded) until the evicted pods are gone and every pod of the Deployment
//!    is Ready again, then waits `warmup`, then calls `warmupRequest` on every new pod
//!    (header `X-Ripcord-Pod: <ns>/<name>`), then evaluates the `healthGate`; only then does
//!    the next diff start the next batch.
//!
//! A warm-up call goes where `warmupRequest.via` says: `direct` to `http://<podIP>:<port><path>`,
//! `proxy` through the API server's pod proxy (`pods/NAME:PORT/proxy/PATH`, which works from a
//! laptop outside the pod network), `auto` (the default) directly when a TCP connection to the
//! pod opens within a second, else through the proxy. Each call's result (pod, route, status,
//! duration) is appended to `warmup.jsonl` in the run directory. The environment variable
//! `RIPCORD_WARMUP_BASE_URL` (e.g. `http://127.0.0.1:8080`, for tests and a port-forward)
//! replaces `http://<podIP>:<port>` for direct calls, and makes `auto` direct.
//! After a crash, pods of batches finished before it may be warmed a second time (warm-up
//! endpoints must be idempotent).
//!
//! # Readiness gate: no traffic to a cold pod
//! Without help, a replacement pod becomes Ready, enters its Services' endpoints and serves
//! live traffic before ripcord warms it. A Deployment opts out of that by declaring the pod
//! readiness gate [`WARMED_CONDITION`] in its pod template
//! (`readinessGates: [{conditionType: ripcord.dev/warmed}]`; ripcord never adds it — that would
//! change the template, i.e. be a rollout). Kubernetes then keeps each new pod not Ready (out
//! of the endpoints) until the pod condition `ripcord.dev/warmed` is `True`. With the gate
//! (`readinessGate: auto`, the default, or `require`), `verify` waits for the new pods'
//! *containers* to be ready (`ContainersReady`) instead of `Ready`, warms each pod (the pod
//! proxy and the pod IP reach a not-Ready pod), and only after its warm-up answered sets the
//! condition through `pods/NAME/status` (a strategic merge patch of one condition, with reason,
//! message and `lastTransitionTime`) — then waits for `Ready`. Each release is logged and
//! appended to [`WARMUP_LOG`] (`"event": "gate-released"`). A failed warm-up leaves the pod out
//! of the endpoints and fails the step with the pod's name and how to release it by hand.
//! `require` refuses before any write when the template lacks the gate (with the YAML to add);
//! `off` releases a declared gate as soon as the containers are ready and warms afterwards
//! (the behaviour without a gate: a gate nobody releases would keep the pods out of service).
//!
//! The condition write has no inverse and is not journaled as a mutation: it is status of a pod
//! that exists only because of this restart, it says something true ("this pod was warmed"),
//! and taking it back would only take a warmed, serving pod out of its endpoints. Cleanup and
//! `ripcord verify` look at journaled mutations and at ripcord's `ripcord.dev/last-mutation`
//! marker (which a status write does not set), so a released gate is never reported as a
//! leftover. Pods of a gated Deployment rolled by someone else (`kubectl rollout restart`, CI)
//! are released by the daemon's warm-gate controller (`daemon::warm_gate`).
//!
//! # Waiting on a watch
//! `verify` does not poll: it reads the Deployment once, then follows its pods through one
//! watch (a list, then change events; `k8s::pods::PodWatch::start_selected`), so a batch moves on
//! the moment its last replacement is Ready and the last evicted pod is gone. The watch is the
//! step's: the first diff starts it (its list runs while the run takes its lock and snapshot)
//! and every batch's wait follows it. The state the wait ended with is handed to the next diff
//! (when it is at most [`REUSE_FOR`] old), which then reads nothing: per batch one read of the
//! Deployment, instead of a read of the Deployment and its pods every [`POLL`]. Should the
//! watch fail (RBAC without `watch` on pods, say), the wait falls back to polling.
//!
//! StatefulSets and DaemonSets are not restarted by this action (it reads a Deployment and
//! fails with not-found otherwise): their controllers recreate pods in their own order (a
//! StatefulSet pod keeps its name, so the name-based marker would not apply) — use
//! `kubectl rollout restart` for them.

use super::node_drain::{evict_with_retry, pod_ref};
use super::zone_failback::check_health_gate;
use super::{
    Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef, Progress,
    deployment_ref,
};
use crate::errors::error_chain;
use crate::k8s::deployments::Deployments;
use crate::k8s::pods::{self, PodWatch, Pods};
use crate::playbook::catalog;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The Deployment annotation naming the run and step restarting it.
pub const RESTART_ANNOTATION: &str = "ripcord.dev/restart";
/// The Deployment annotation listing the pods the restart replaces.
pub const RESTART_PODS_ANNOTATION: &str = "ripcord.dev/restart-pods";
/// The environment variable overriding `http://<podIP>:<port>` in warm-up URLs.
pub const WARMUP_BASE_URL_ENV: &str = "RIPCORD_WARMUP_BASE_URL";
/// The header naming the pod a warm-up request is meant for.
pub const WARMUP_POD_HEADER: &str = "X-Ripcord-Pod";
/// The pod readiness gate (condition type) that keeps a new pod out of its Services' endpoints
/// until ripcord warmed it.
pub const WARMED_CONDITION: &str = "ripcord.dev/warmed";

/// Mutation id of the marker.
const MARK_ID: &str = "restart/mark";
/// Prefix of batch mutation ids.
const BATCH_PREFIX: &str = "batch-";
/// Poll interval of waits that cannot watch (a diff waiting for room, a failed watch).
const POLL: Duration = Duration::from_millis(100);
/// How old the state a verify ended with may be for the next diff to use it instead of
/// reading the Deployment and its pods again.
const REUSE_FOR: Duration = Duration::from_millis(500);

/// The `deployment.restart` action.
#[derive(Debug)]
pub struct DeploymentRestart {
    args: catalog::DeploymentRestart,
    warmed: Mutex<BTreeSet<String>>,
    /// The state the last verify ended with, and when; the next diff takes it.
    last: Mutex<Option<(Instant, Observed)>>,
    /// The watch of the Deployment's pods (namespace, selector, view), started by the first
    /// diff and followed by every batch's wait: one list and one watch per step.
    view: tokio::sync::Mutex<Option<(String, String, Arc<PodWatch>)>>,
    /// A watch failed: diffs no longer start one ahead of the waits.
    view_failed: AtomicBool,
}

/// What the Deployment's pods look like now.
#[derive(Debug, Clone)]
struct Observed {
    deployment: Deployment,
    namespace: String,
    replicas: i64,
    /// Non-terminating pods of the Deployment.
    pods: Vec<Pod>,
    /// Names of the Deployment's pods that are terminating (deleted or evicted, still in their
    /// grace period).
    terminating: Vec<String>,
}

impl Observed {
    /// The Deployment and its pods (terminating ones set apart, the rest sorted by name).
    fn new(deployment: Deployment, namespace: String, live: Vec<Pod>) -> Observed {
        let replicas = i64::from(
            deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1),
        );
        let (terminating, mut live): (Vec<Pod>, Vec<Pod>) =
            live.into_iter().partition(pods::is_terminating);
        live.sort_by(|a, b| pods::name(a).cmp(pods::name(b)));
        Observed {
            deployment,
            namespace,
            replicas,
            pods: live,
            terminating: terminating
                .iter()
                .map(|p| pods::name(p).to_string())
                .collect(),
        }
    }

    /// Pods that are unready or terminating, plus replicas with no pod at all: what the
    /// restart's batch size bounds.
    fn unready(&self) -> i64 {
        let not_ready = self.pods.iter().filter(|p| !pods::is_ready(p)).count() as i64;
        let terminating = self.terminating.len() as i64;
        let missing = (self.replicas - self.pods.len() as i64 - terminating).max(0);
        not_ready + terminating + missing
    }

    /// True when the Deployment's pod template declares the [`WARMED_CONDITION`] readiness
    /// gate.
    fn template_gated(&self) -> bool {
        template_declares_gate(&self.deployment)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }
}

/// True when `deployment`'s pod template declares the [`WARMED_CONDITION`] readiness gate.
pub fn template_declares_gate(deployment: &Deployment) -> bool {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.condition_type == WARMED_CONDITION))
}

/// True when the pod carries the [`WARMED_CONDITION`] gate, its containers are ready and the
/// gate's condition is not `True`: the gate alone keeps it out of its Services' endpoints.
pub fn held_by_gate(pod: &Pod) -> bool {
    pods::has_readiness_gate(pod, WARMED_CONDITION)
        && pods::containers_ready(pod)
        && pods::condition_status(pod, WARMED_CONDITION) != Some("True")
        && !pods::is_terminating(pod)
}

/// The command that releases a held pod by hand.
pub fn manual_release_hint(namespace: &str, name: &str) -> String {
    format!(
        "kubectl -n {namespace} patch pod {name} --subresource=status --type=strategic -p \
         '{{\"status\":{{\"conditions\":[{{\"type\":\"{WARMED_CONDITION}\",\"status\":\"True\"}}]}}}}' \
         (or delete the pod)"
    )
}

/// Sets the [`WARMED_CONDITION`] of `pod` to `True` (through `pods/NAME/status`), which lets the
/// kubelet mark it Ready. `reason` is a CamelCase word, `message` says why.
pub async fn release_gate(
    pods_api: &Pods,
    pod: &Pod,
    reason: &str,
    message: &str,
) -> Result<(), crate::k8s::K8sError> {
    let condition = json!({
        "type": WARMED_CONDITION,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": jiff::Timestamp::now().to_string(),
    });
    pods_api
        .set_condition(pods::namespace(pod), pods::name(pod), &condition)
        .await
        .map(|_| ())
}

/// What a batch still waits for: `None` once the evicted pods are gone (not merely
/// Terminating) and every replica has a pod passing `settled`, else (evicted pods left, pods
/// not settled + terminating + missing).
fn settle_progress(
    evicted: &BTreeSet<&str>,
    settled: &impl Fn(&Pod) -> bool,
    observed: &Observed,
) -> Option<(usize, i64)> {
    let left = observed
        .pods
        .iter()
        .map(pods::name)
        .chain(observed.terminating.iter().map(String::as_str))
        .filter(|name| evicted.contains(name))
        .count();
    let unsettled = observed.pods.iter().filter(|p| !settled(p)).count() as i64;
    let missing =
        (observed.replicas - observed.pods.len() as i64 - observed.terminating.len() as i64).max(0);
    let waiting = unsettled + observed.terminating.len() as i64 + missing;
    (left != 0 || waiting != 0).then_some((left, waiting))
}

/// The pod names listed in the restart annotation.
fn listed(value: Option<&str>) -> BTreeSet<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `matchLabels` of a Deployment's selector as a label selector string.
fn selector_of(deployment: &Deployment) -> Option<String> {
    let labels = deployment.spec.as_ref()?.selector.match_labels.as_ref()?;
    if labels.is_empty() {
        return None;
    }
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

// === impl DeploymentRestart ===

impl DeploymentRestart {
    /// Checks the arguments (a valid batch size).
    pub fn new(args: catalog::DeploymentRestart) -> Result<DeploymentRestart, ActionError> {
        args.batch
            .validate()
            .map_err(|reason| ActionError::Invalid {
                object: format!("deployment/{}", args.name),
                reason: format!("batch: {reason}"),
            })?;
        Ok(DeploymentRestart {
            args,
            warmed: Mutex::new(BTreeSet::new()),
            last: Mutex::new(None),
            view: tokio::sync::Mutex::default(),
            view_failed: AtomicBool::new(false),
        })
    }

    fn marker(ctx: &ActionContext) -> String {
        format!("{}/{}", ctx.run_id, ctx.step)
    }

    /// Reads the Deployment; returns it with its namespace and pod selector.
    async fn read_deployment(
        &self,
        ctx: &ActionContext,
    ) -> Result<(Deployment, String, String), ActionError> {
        let namespace = ctx.namespace(self.args.namespace.as_deref());
        let deployments = Deployments::new(ctx.client.clone(), &namespace, ctx.call_timeout);
        let deployment = deployments.get(&self.args.name).await?;
        let selector = selector_of(&deployment).ok_or_else(|| ActionError::Invalid {
            object: deployments.describe(&self.args.name),
            reason: "the Deployment's selector has no matchLabels; ripcord cannot find its pods"
                .into(),
        })?;
        Ok((deployment, namespace, selector))
    }

    /// The step's watch of the pods `selector` picks in `namespace`, started unless it runs
    /// (a new one when the selector changed, or after the last one failed).
    async fn pod_view(
        &self,
        ctx: &ActionContext,
        namespace: &str,
        selector: &str,
    ) -> Arc<PodWatch> {
        let mut slot = self.view.lock().await;
        match slot.as_ref() {
            Some((ns, sel, view)) if ns == namespace && sel == selector => view.clone(),
            _ => {
                let view = Arc::new(PodWatch::start_selected(
                    ctx.client.clone(),
                    namespace,
                    selector,
                ));
                *slot = Some((namespace.to_string(), selector.to_string(), view.clone()));
                view
            }
        }
    }

    /// Forgets a watch that failed, so that the next wait tries a new one.
    async fn drop_view(&self) {
        self.view_failed.store(true, Ordering::Relaxed);
        *self.view.lock().await = None;
    }

    /// The Deployment (read) and its pods: from the step's watch once its list is in (the
    /// waits read the same view), else listed.
    async fn observe(&self, ctx: &ActionContext) -> Result<Observed, ActionError> {
        let (deployment, namespace, selector) = self.read_deployment(ctx).await?;
        if !self.view_failed.load(Ordering::Relaxed) {
            // The batches' waits follow this watch; it lists while the run takes its lock and
            // snapshot.
            let view = self.pod_view(ctx, &namespace, &selector).await;
            if view.is_ready() {
                let live = view.pods().iter().map(|p| Pod::clone(p)).collect();
                return Ok(Observed::new(deployment, namespace, live));
            }
        }
        let live = Pods::new(ctx.client.clone(), ctx.call_timeout)
            .list(&namespace, &selector)
            .await?;
        Ok(Observed::new(deployment, namespace, live))
    }

    /// The state the last verify ended with when it is fresh enough, else a new read.
    async fn observe_reusing(&self, ctx: &ActionContext) -> Result<Observed, ActionError> {
        let reused = self
            .last
            .lock()
            .ok()
            .and_then(|mut last| last.take())
            .filter(|(at, _)| at.elapsed() <= REUSE_FOR)
            .map(|(_, observed)| observed);
        match reused {
            Some(observed) => Ok(observed),
            None => self.observe(ctx).await,
        }
    }

    fn batch_size(&self, observed: &Observed) -> i64 {
        let total = u32::try_from(observed.replicas.max(0)).unwrap_or(u32::MAX);
        i64::from(self.args.batch.resolve(total))
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let marker = Self::marker(ctx);
        let mut observed = self.observe_reusing(ctx).await?;
        let object = format!("deployment/{}/{}", observed.namespace, self.args.name);
        if self.args.readiness_gate == catalog::ReadinessGateMode::Require
            && !observed.template_gated()
        {
            return Err(ActionError::Refused {
                reason: format!(
                    "{object}'s pod template does not declare the readiness gate \
                     {WARMED_CONDITION} (readinessGate: require); new pods would serve traffic \
                     before they are warmed. Add it to the Deployment (a rollout) and run \
                     again:\n  spec:\n    template:\n      spec:\n        readinessGates:\n          \
                     - conditionType: {WARMED_CONDITION}\nor use readinessGate: auto"
                ),
            });
        }

        if observed.annotation(RESTART_ANNOTATION) != Some(marker.as_str()) {
            if observed.pods.is_empty() {
                return Ok(Diff {
                    summary: format!("{object} has no pods to restart"),
                    mutations: Vec::new(),
                    progress: None,
                });
            }
            let names: Vec<&str> = observed.pods.iter().map(pods::name).collect();
            let request = json!({ "metadata": { "annotations": {
                RESTART_ANNOTATION: marker, RESTART_PODS_ANNOTATION: names.join(","),
            }}});
            let before = json!({ "metadata": { "annotations": {
                RESTART_ANNOTATION: observed.annotation(RESTART_ANNOTATION),
                RESTART_PODS_ANNOTATION: observed.annotation(RESTART_PODS_ANNOTATION),
            }}});
            let description = format!(
                "restart {object}: {} pod(s) in batches of {}",
                names.len(),
                self.batch_size(&observed)
            );
            return Ok(Diff {
                summary: description.clone(),
                mutations: vec![Mutation {
                    id: MARK_ID.into(),
                    target: deployment_ref(&observed.namespace, &self.args.name),
                    description: format!("record the pods {object}'s restart replaces"),
                    diff: format!(
                        "  metadata.annotations:\n+   {RESTART_ANNOTATION}: {marker}\n+   \
                                   {RESTART_PODS_ANNOTATION}: {} pod names\n",
                        names.len()
                    ),
                    pre_image: before.clone(),
                    resource_version: observed.deployment.metadata.resource_version.clone(),
                    request: request.clone(),
                    inverse: Inverse::MergePatch {
                        patch: before,
                        expected: request,
                    },
                }],
                progress: Some(Progress {
                    what: "pods restarted".into(),
                    done: 0,
                    total: names.len() as u64,
                }),
            });
        }

        let to_restart = listed(observed.annotation(RESTART_PODS_ANNOTATION));
        let batch = self.batch_size(&observed);
        let deadline = Instant::now() + ctx.verify_timeout;
        loop {
            let pending: Vec<&Pod> = observed
                .pods
                .iter()
                .filter(|p| to_restart.contains(pods::name(p)))
                .collect();
            if pending.is_empty() {
                return Ok(Diff {
                    summary: format!("{object}: all {} listed pod(s) restarted", to_restart.len()),
                    mutations: Vec::new(),
                    progress: Some(Progress {
                        what: "pods restarted".into(),
                        done: to_restart.len() as u64,
                        total: to_restart.len() as u64,
                    }),
                });
            }
            let unready = observed.unready();
            let slots = batch - unready;
            if slots > 0 {
                let done = to_restart.len() - pending.len();
                let number = done / usize::try_from(batch).unwrap_or(1).max(1) + 1;
                // Finish a batch an interrupted run started before opening the next one.
                let batch_left = usize::try_from(batch).unwrap_or(1).max(1)
                    - done % usize::try_from(batch).unwrap_or(1).max(1);
                let take = usize::try_from(slots)
                    .unwrap_or(0)
                    .min(batch_left)
                    .min(pending.len());
                let mutations: Vec<Mutation> = pending[..take]
                    .iter()
                    .map(|pod| self.batch_mutation(pod, number))
                    .collect();
                return Ok(Diff {
                    summary: format!(
                        "{object}: batch {number}: restart {} pod(s), {} of {} restarted so far, \
                         {unready} unready now",
                        mutations.len(),
                        done,
                        to_restart.len()
                    ),
                    mutations,
                    progress: Some(Progress {
                        what: format!(
                            "batch {number} of {}: pods restarted, {unready} unready",
                            to_restart
                                .len()
                                .div_ceil(usize::try_from(batch).unwrap_or(1).max(1))
                        ),
                        done: done as u64,
                        total: to_restart.len() as u64,
                    }),
                });
            }
            if Instant::now() + POLL > deadline {
                return Err(ActionError::Timeout {
                    what: format!(
                        "{object} to have fewer than {batch} unready pods ({unready} unready) \
                         before the next restart batch"
                    ),
                    after: ctx.verify_timeout,
                });
            }
            tokio::time::sleep(POLL).await;
            observed = self.observe(ctx).await?;
        }
    }

    fn batch_mutation(&self, pod: &Pod, number: usize) -> Mutation {
        let (namespace, name) = (pods::namespace(pod), pods::name(pod));
        Mutation {
            id: format!("{BATCH_PREFIX}{number}/{name}"),
            target: pod_ref(namespace, name),
            description: format!("restart pod {namespace}/{name} (batch {number})"),
            diff: format!("- pod {namespace}/{name} (replaced by the ReplicaSet)\n"),
            pre_image: json!({ "metadata": { "name": name, "namespace": namespace,
                "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version },
                "spec": { "nodeName": pods::node_name(pod) } }),
            resource_version: pod.metadata.resource_version.clone(),
            request: json!({ "namespace": namespace, "name": name }),
            inverse: Inverse::None {
                reason: "the ReplicaSet replaced the pod from the same template".into(),
            },
        }
    }

    async fn apply_one(
        &self,
        ctx: &ActionContext,
        mutation: &Mutation,
    ) -> Result<Applied, ActionError> {
        if mutation.id.starts_with(BATCH_PREFIX) {
            return evict_with_retry(ctx, mutation).await;
        }
        let namespace = mutation.target.namespace.clone().unwrap_or_default();
        let deployments = Deployments::new(ctx.client.clone(), &namespace, ctx.call_timeout);
        let written = deployments
            .patch_merge(&mutation.target.name, &mutation.request)
            .await?;
        tracing::info!(run = %ctx.run_id, step = %ctx.step, target = %mutation.target,
                       "restart marker written");
        Ok(Applied {
            id: mutation.id.clone(),
            target: mutation.target.clone(),
            resource_version_after: written.metadata.resource_version,
        })
    }

    async fn settle(&self, ctx: &ActionContext, applied: &[Applied]) -> Result<(), ActionError> {
        let evicted: BTreeSet<&str> = applied
            .iter()
            .filter(|a| a.id.starts_with(BATCH_PREFIX))
            .map(|a| a.target.name.as_str())
            .collect();
        if evicted.is_empty() {
            return Ok(());
        }
        let mode = self.args.readiness_gate;
        // First the replacements' containers: Ready, or held back by the gate alone.
        let observed = self
            .wait_settled(ctx, &evicted, |p| pods::is_ready(p) || held_by_gate(p))
            .await?;
        let mut observed_at = Instant::now();
        let to_restart = listed(observed.annotation(RESTART_PODS_ANNOTATION));
        let warmed = self.warmed.lock().map(|w| w.clone()).unwrap_or_default();
        let fresh: Vec<Pod> = observed
            .pods
            .iter()
            .filter(|p| !to_restart.contains(pods::name(p)) && !warmed.contains(pods::name(p)))
            .cloned()
            .collect();
        let held: Vec<Pod> = observed
            .pods
            .iter()
            .filter(|p| held_by_gate(p))
            .cloned()
            .collect();
        if fresh.is_empty() && held.is_empty() {
            self.remember(observed_at, observed);
            return Ok(());
        }
        let object = format!("deployment/{}/{}", observed.namespace, self.args.name);
        let hold = mode != catalog::ReadinessGateMode::Off;
        let mut observed = observed;
        if !hold && !held.is_empty() {
            // `off`: the gate holds nothing back; release at once, warm afterwards.
            for pod in &held {
                self.release(
                    ctx,
                    pod,
                    "GateOff",
                    "readinessGate: off (released without waiting for the warm-up)",
                )
                .await?;
            }
            observed = self.wait_settled(ctx, &evicted, pods::is_ready).await?;
            observed_at = Instant::now();
        }
        if !self.args.warmup.0.is_zero() {
            tracing::info!(run = %ctx.run_id, step = %ctx.step, pods = fresh.len(),
                           held = held.len(),
                           warmup_ms = self.args.warmup.0.as_millis() as u64, "warming up");
            tokio::time::sleep(self.args.warmup.0).await;
        }
        // Warm every new pod (and any pod the gate still holds); a held pod is released once
        // its own warm-up answered.
        let mut targets: Vec<Pod> = fresh.clone();
        for pod in &held {
            if !targets.iter().any(|p| pods::name(p) == pods::name(pod)) {
                targets.push(pod.clone());
            }
        }
        let calls = targets.iter().map(|pod| async move {
            if let Some(request) = &self.args.warmup_request {
                warm_up(ctx, request, pod).await.map_err(|err| {
                    if hold && held_by_gate(pod) {
                        ActionError::VerifyFailed {
                            reason: format!(
                                "{err}; pod {}/{} stays out of its Services' endpoints (readiness \
                                 gate {WARMED_CONDITION} not released). Fix the warm-up and resume \
                                 the run, or release the pod by hand: {}",
                                pods::namespace(pod),
                                pods::name(pod),
                                manual_release_hint(pods::namespace(pod), pods::name(pod))
                            ),
                        }
                    } else {
                        err
                    }
                })?;
            }
            if hold && held_by_gate(pod) {
                let message = match &self.args.warmup_request {
                    Some(request) => format!(
                        "warmed by ripcord run {} step {} ({} {} answered {})",
                        ctx.run_id,
                        ctx.step,
                        request.method.trim().to_ascii_uppercase(),
                        warmup_path(request),
                        request.expected_status
                    ),
                    None => format!(
                        "released by ripcord run {} step {} after the warm-up time",
                        ctx.run_id, ctx.step
                    ),
                };
                self.release(ctx, pod, "Warmed", &message).await?;
            }
            Ok::<(), ActionError>(())
        });
        let mut first_error = None;
        for result in futures::future::join_all(calls).await {
            if let Err(err) = result
                && first_error.is_none()
            {
                first_error = Some(err);
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        if hold && !held.is_empty() {
            observed = self.wait_settled(ctx, &evicted, pods::is_ready).await?;
            observed_at = Instant::now();
        }
        if let Ok(mut warmed) = self.warmed.lock() {
            warmed.extend(targets.iter().map(|p| pods::name(p).to_string()));
        }
        if let Some(gate) = &self.args.health_gate {
            check_health_gate(
                ctx,
                gate,
                &format!("the restart of {object} holds before its next batch"),
            )
            .await?;
        }
        self.remember(observed_at, observed);
        Ok(())
    }

    /// Keeps `observed` (seen at `at`) for the next diff.
    fn remember(&self, at: Instant, observed: Observed) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((at, observed));
        }
    }

    /// Waits (bounded by the step's verify timeout) until the evicted pods are gone (not
    /// merely Terminating), every replica has a pod and every pod passes `settled`. Follows the
    /// pods through one watch; falls back to polling when the watch fails.
    async fn wait_settled(
        &self,
        ctx: &ActionContext,
        evicted: &BTreeSet<&str>,
        settled: impl Fn(&Pod) -> bool,
    ) -> Result<Observed, ActionError> {
        let deadline = Instant::now() + ctx.verify_timeout;
        let (deployment, namespace, selector) = self.read_deployment(ctx).await?;
        let watch = self.pod_view(ctx, &namespace, &selector).await;
        let mut changes = watch.subscribe();
        let watched = watch
            .ready(deadline.saturating_duration_since(Instant::now()))
            .await;
        let mut failed = watched.err();
        while failed.is_none() {
            let pods = watch.pods().iter().map(|p| Pod::clone(p)).collect();
            let observed = Observed::new(deployment.clone(), namespace.clone(), pods);
            if settle_progress(evicted, &settled, &observed).is_none() {
                return Ok(observed);
            }
            match watch.changed(&mut changes, deadline).await {
                Ok(true) => {}
                Ok(false) => return Err(self.settle_timeout(ctx, evicted, &settled, &observed)),
                Err(err) => failed = Some(err),
            }
        }
        if let Some(err) = failed {
            tracing::info!(run = %ctx.run_id, step = %ctx.step, error = %error_chain(&err),
                           "cannot watch the Deployment's pods; polling instead");
        }
        drop(watch);
        self.drop_view().await;
        loop {
            let observed = self.observe(ctx).await?;
            if settle_progress(evicted, &settled, &observed).is_none() {
                return Ok(observed);
            }
            if Instant::now() + POLL > deadline {
                return Err(self.settle_timeout(ctx, evicted, &settled, &observed));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn settle_timeout(
        &self,
        ctx: &ActionContext,
        evicted: &BTreeSet<&str>,
        settled: &impl Fn(&Pod) -> bool,
        observed: &Observed,
    ) -> ActionError {
        let (left, waiting) = settle_progress(evicted, settled, observed).unwrap_or((0, 0));
        let held = observed.pods.iter().filter(|p| held_by_gate(p)).count();
        ActionError::Timeout {
            what: format!(
                "deployment/{}/{}'s restarted pods to be replaced and Ready ({left} evicted \
                 pod(s) still there, {waiting} unready, {held} held by the readiness gate \
                 {WARMED_CONDITION})",
                observed.namespace, self.args.name
            ),
            after: ctx.verify_timeout,
        }
    }

    /// Releases the readiness gate of `pod`, logs it and appends it to the warm-up log.
    async fn release(
        &self,
        ctx: &ActionContext,
        pod: &Pod,
        reason: &str,
        message: &str,
    ) -> Result<(), ActionError> {
        let who = format!("{}/{}", pods::namespace(pod), pods::name(pod));
        let pods_api = Pods::new(ctx.client.clone(), ctx.call_timeout);
        let result = release_gate(&pods_api, pod, reason, message).await;
        record_warmup(
            ctx,
            &json!({
                "at": jiff::Timestamp::now().to_string(),
                "step": ctx.step,
                "pod": who,
                "event": "gate-released",
                "condition": WARMED_CONDITION,
                "reason": reason,
                "ok": result.is_ok(),
                "error": result.as_ref().err().map(|e| error_chain(e)),
            }),
        );
        match result {
            Ok(()) => {
                tracing::info!(run = %ctx.run_id, step = %ctx.step, pod = %who,
                               condition = WARMED_CONDITION, reason, "readiness gate released");
                Ok(())
            }
            Err(err) => Err(ActionError::VerifyFailed {
                reason: format!(
                    "cannot release the readiness gate {WARMED_CONDITION} of pod {who}: {}; the \
                     pod stays out of its Services' endpoints (RBAC: patch pods/status). Release \
                     it by hand: {}",
                    error_chain(&err),
                    manual_release_hint(pods::namespace(pod), pods::name(pod))
                ),
            }),
        }
    }
}

/// The warm-up URL of a pod: `http://<podIP>:<port><path>`, or `<base><path>` when
/// `RIPCORD_WARMUP_BASE_URL` is set.
fn warmup_url(request: &catalog::WarmupRequest, pod: &Pod) -> Option<String> {
    let path = warmup_path(request);
    if let Some(base) = warmup_base_url() {
        return Some(format!("{base}{path}"));
    }
    let ip = pods::pod_ip(pod)?;
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    Some(format!("http://{host}:{}{path}", request.port))
}

/// `RIPCORD_WARMUP_BASE_URL`, trimmed, if set.
fn warmup_base_url() -> Option<String> {
    std::env::var(WARMUP_BASE_URL_ENV)
        .ok()
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .filter(|b| !b.is_empty())
}

fn warmup_path(request: &catalog::WarmupRequest) -> String {
    if request.path.starts_with('/') {
        request.path.clone()
    } else {
        format!("/{}", request.path)
    }
}

/// How long `via: auto` waits for a TCP connection to the pod before using the API server's
/// pod proxy instead.
const DIRECT_PROBE: Duration = Duration::from_secs(1);

/// The file in the run directory where every warm-up call's result is appended (one JSON
/// line each; `ripcord runs show` lists them).
pub const WARMUP_LOG: &str = "warmup.jsonl";

/// The route `via` chooses for `pod`: `auto` is the pod IP (or the base URL override) when a
/// TCP connection opens within [`DIRECT_PROBE`], else the proxy.
async fn warmup_route(request: &catalog::WarmupRequest, pod: &Pod) -> catalog::WarmupVia {
    use catalog::WarmupVia;
    match request.via {
        WarmupVia::Proxy | WarmupVia::Direct => request.via,
        WarmupVia::Auto if warmup_base_url().is_some() => WarmupVia::Direct,
        WarmupVia::Auto => {
            let Some(ip) = pods::pod_ip(pod) else {
                return WarmupVia::Proxy;
            };
            let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
                return WarmupVia::Proxy;
            };
            let addr = std::net::SocketAddr::new(ip, request.port);
            match tokio::time::timeout(DIRECT_PROBE, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => WarmupVia::Direct,
                _ => WarmupVia::Proxy,
            }
        }
    }
}

/// Appends one warm-up result to the run's [`WARMUP_LOG`] (best effort: the result is also
/// logged; a full disk must not fail a restart that warmed its pods).
fn record_warmup(ctx: &ActionContext, entry: &serde_json::Value) {
    use std::io::Write as _;
    let Some(state_dir) = &ctx.state_dir else {
        return;
    };
    let dir = crate::journal::run_dir(state_dir, &ctx.run_id);
    if !dir.is_dir() {
        return;
    }
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(WARMUP_LOG))
        .and_then(|mut f| {
            writeln!(f, "{entry}")?;
            f.sync_data()
        });
    if let Err(err) = appended {
        tracing::warn!(run = %ctx.run_id, step = %ctx.step, error = %err, "cannot record the warm-up result");
    }
}

pub(crate) async fn warm_up(
    ctx: &ActionContext,
    request: &catalog::WarmupRequest,
    pod: &Pod,
) -> Result<(), ActionError> {
    let who = format!("{}/{}", pods::namespace(pod), pods::name(pod));
    let method = reqwest::Method::from_bytes(request.method.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| ActionError::Invalid {
            object: "warmupRequest".into(),
            reason: format!("{:?} is not an HTTP method", request.method),
        })?;
    let via = warmup_route(request, pod).await;
    let started = Instant::now();
    let (target, answer) = match via {
        catalog::WarmupVia::Proxy => {
            let path = warmup_path(request);
            let target = format!(
                "pods/{}:{}/proxy{path} (API server)",
                pods::name(pod),
                request.port
            );
            let headers = [(WARMUP_POD_HEADER, who.clone())];
            let proxied = Pods::new(ctx.client.clone(), ctx.call_timeout)
                .proxy(
                    pods::namespace(pod),
                    pods::name(pod),
                    request.port,
                    &pods::ProxyRequest {
                        method,
                        path: &path,
                        headers: &headers,
                    },
                    request.timeout.0,
                )
                .await
                .map_err(|err| error_chain(&err));
            (target, proxied)
        }
        _ => {
            let url = warmup_url(request, pod).ok_or_else(|| ActionError::Invalid {
                object: format!("pod/{who}"),
                reason: "the pod has no IP to warm up (use warmupRequest.via: proxy)".into(),
            })?;
            let sent = ctx
                .http
                .request(method, &url)
                .header(WARMUP_POD_HEADER, &who)
                .timeout(request.timeout.0)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|err| err.without_url().to_string());
            (url, sent)
        }
    };
    let via_name = match via {
        catalog::WarmupVia::Proxy => "proxy",
        _ => "direct",
    };
    let ok = matches!(&answer, Ok(status) if *status == request.expected_status);
    record_warmup(
        ctx,
        &json!({
            "at": jiff::Timestamp::now().to_string(),
            "step": ctx.step,
            "pod": who,
            "via": via_name,
            "target": target,
            "status": answer.as_ref().ok(),
            "ok": ok,
            "error": answer.as_ref().err(),
            "ms": started.elapsed().as_millis() as u64,
        }),
    );
    match answer {
        Ok(status) if status == request.expected_status => {
            tracing::info!(run = %ctx.run_id, step = %ctx.step, pod = %who, via = via_name, status, "pod warmed up");
            Ok(())
        }
        Ok(status) => Err(ActionError::Http {
            url: target,
            reason: format!(
                "warm-up of pod {who} answered {status}, expected {}",
                request.expected_status
            ),
        }),
        Err(reason) => Err(ActionError::Http {
            url: target,
            reason: format!("warm-up of pod {who} ({via_name}): {reason}"),
        }),
    }
}

impl Action for DeploymentRestart {
    fn kind(&self) -> &'static str {
        "deployment.restart"
    }

    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef> {
        let ns = super::namespace_or(self.args.namespace.as_deref(), default_namespace);
        vec![deployment_ref(ns, &self.args.name)]
    }

    /// A batch's evictions are independent: the batch is restarted together.
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
    use serde_json::Value;

    #[test]
    fn listed_pods_parse() {
        assert_eq!(
            listed(Some("a, b,,c")),
            BTreeSet::from(["a".to_string(), "b".to_string(), "c".to_string()])
        );
        assert!(listed(None).is_empty());
    }

    #[test]
    fn warmup_url_uses_the_pod_ip() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop"},
            "status": {"podIP": "10.1.2.3"}
        }))
        .unwrap_or_default();
        let request = catalog::WarmupRequest {
            port: 8080,
            path: "warm".into(),
            method: "GET".into(),
            expected_status: 200,
            timeout: crate::playbook::Duration::from_secs(1),
            via: catalog::WarmupVia::Auto,
        };
        // The env override is exercised by the integration tests; here it must be unset.
        if std::env::var(WARMUP_BASE_URL_ENV).is_err() {
            assert_eq!(
                warmup_url(&request, &pod).as_deref(),
                Some("http://10.1.2.3:8080/warm")
            );
        }
        let no_ip: Pod = serde_json::from_value(Value::Null).unwrap_or_default();
        if std::env::var(WARMUP_BASE_URL_ENV).is_err() {
            assert!(warmup_url(&request, &no_ip).is_none());
        }
    }
}
