//! The warm-gate controller: releases pods the readiness gate `ripcord.dev/warmed` would
//! otherwise keep out of service forever.
//!
//! A Deployment that declares the gate in its pod template (see
//! `actions::deployment_restart`) relies on ripcord to release every new pod. A ripcord restart
//! does that for the pods it replaces; a rollout someone else starts (`kubectl rollout
//! restart`, CI applying a new image) creates pods nobody warms. While this daemon leads, this
//! controller watches every pod and takes those that carry the gate, have ready containers and
//! whose gate condition is not `True` (see [`held_by_gate`]):
//!
//! 1. It finds the owning Deployment (pod → ReplicaSet → Deployment). A pod of another owner is
//!    left alone (its owner chose the gate, not ripcord's restart).
//! 2. When the lock Lease `deployment/NS/NAME` is held and renewed (a ripcord restart of that
//!    Deployment is running), the pod is that run's to release: the controller checks again
//!    every [`WarmGate::recheck`]. The Lease is looked up where the daemon's runs keep theirs
//!    (the daemon's namespace) and where a CLI run keeps its own unless told otherwise (the
//!    Deployment's namespace): one list by name across namespaces (the chart grants `list` on
//!    Leases everywhere, nothing more), so a CLI restart's pods are left to it too. A crashed run's Lease expires, and
//!    the pod is then released here; a resumed run finds it released and does not release it
//!    again (a release is a no-op on a pod whose condition is already `True`).
//! 3. When the Deployment has the annotation `ripcord.dev/warmup` (JSON, the shape of the
//!    restart action's `warmupRequest`: `{"port": 8080, "path": "/warm", "via": "proxy"}`), the
//!    pod is warmed first; a failed warm-up leaves it out of service and is retried
//!    ([`MAX_WARMUP_ATTEMPTS`] times, then left for a person, with an error log).
//! 4. It sets the pod condition `ripcord.dev/warmed: True` through `pods/NAME/status`.
//!
//! At most [`WarmGate::concurrency`] pods are handled at once. Every outcome is logged with the
//! pod and counted in `ripcord_warm_gate_releases_total{outcome}` (`warmed`: warmed then
//! released, `released`: released without a warm-up annotation, `warmup-failed`, `error`).
//! Losing leadership stops the controller (the next leader's controller takes over). RBAC:
//! pods `list`/`watch`/`get`, `pods/status` `patch`, `pods/proxy` `get` (warm-ups through the
//! API server), replicasets and deployments `get`, leases `list` (in every namespace; `get` in its own).

use crate::actions::ActionContext;
use crate::actions::deployment_restart::{
    WARMED_CONDITION, held_by_gate, release_gate, template_declares_gate, warm_up,
};
use crate::daemon::metrics::DaemonMetrics;
use crate::errors::error_chain;
use crate::k8s::deployments::Deployments;
use crate::k8s::leases;
use crate::k8s::pods::{self, Pods};
use crate::playbook::catalog::WarmupRequest;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// The Deployment annotation holding the warm-up request of its pods (JSON).
pub const WARMUP_ANNOTATION: &str = "ripcord.dev/warmup";

/// Warm-up attempts per pod before the controller leaves it to a person.
pub const MAX_WARMUP_ATTEMPTS: u32 = 5;

/// The controller's settings and handles.
#[derive(Clone)]
pub struct WarmGate {
    /// The cluster.
    pub client: kube::Client,
    /// Outbound HTTP for direct warm-up calls.
    pub http: reqwest::Client,
    /// Leadership: the controller works only while this is true.
    pub leader: watch::Receiver<bool>,
    /// Metrics.
    pub metrics: Arc<DaemonMetrics>,
    /// The namespace of the runs' lock Leases (the daemon's); `None`: the Deployment's
    /// namespace (a CLI run's default).
    pub lock_namespace: Option<String>,
    /// Bound of each API call.
    pub call_timeout: Duration,
    /// Pods handled at once.
    pub concurrency: usize,
    /// How often a pod whose Deployment a running restart holds (or whose warm-up failed) is
    /// looked at again.
    pub recheck: Duration,
}

/// What happened to one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Warmed through the Deployment's annotation, then released.
    Warmed,
    /// Released without a warm-up (no annotation).
    Released,
    /// Nothing to do any more (released by someone else, gone, not a Deployment's pod).
    Skipped,
    /// The warm-up kept failing; the pod stays out of service.
    WarmupFailed,
    /// An API call failed.
    Error,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Warmed => "warmed",
            Outcome::Released => "released",
            Outcome::Skipped => "skipped",
            Outcome::WarmupFailed => "warmup-failed",
            Outcome::Error => "error",
        }
    }
}

/// One look at a pod.
enum Step {
    Done(Outcome),
    /// Look again after `recheck`.
    Later,
}

// === impl WarmGate ===

impl WarmGate {
    /// Starts the controller.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(mut self) {
        let shared = Arc::new(self.clone());
        loop {
            if self.leader.wait_for(|leading| *leading).await.is_err() {
                return;
            }
            tracing::info!(
                condition = WARMED_CONDITION,
                "warm-gate controller watching pods"
            );
            let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
            let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
            let mut tasks = tokio::task::JoinSet::new();
            let mut stream = Pods::new(self.client.clone(), self.call_timeout).watch_all();
            // Without leader election nobody ever sends on the leadership channel (its sender
            // is gone and the value stays `true`): stop listening to it rather than waking on
            // its closed state forever (which restarted the pod watch in a hot loop).
            let mut leadership_open = true;
            let mut ended = false;
            loop {
                tokio::select! {
                    changed = self.leader.changed(), if leadership_open => {
                        leadership_open = changed.is_ok();
                        if !*self.leader.borrow() {
                            break;
                        }
                    }
                    item = stream.next() => match item {
                        None => {
                            ended = true;
                            break;
                        }
                        Some(Err(err)) => {
                            tracing::warn!(error = %error_chain(&err), "warm-gate pod watch failed; retrying");
                        }
                        Some(Ok(pod)) => {
                            if !held_by_gate(&pod) {
                                continue;
                            }
                            let key = pod.metadata.uid.clone().unwrap_or_else(|| {
                                format!("{}/{}", pods::namespace(&pod), pods::name(&pod))
                            });
                            let fresh = in_flight
                                .lock()
                                .map(|mut set| set.insert(key.clone()))
                                .unwrap_or(false);
                            if !fresh {
                                continue;
                            }
                            let shared = shared.clone();
                            let in_flight = in_flight.clone();
                            let permits = permits.clone();
                            tasks.spawn(async move {
                                shared.handle(&pod, &permits).await;
                                if let Ok(mut set) = in_flight.lock() {
                                    set.remove(&key);
                                }
                            });
                        }
                    },
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
            tasks.abort_all();
            if ended {
                // The watch stream never ends by itself (it re-lists and retries with a
                // backoff); if it does, start over after a pause, never in a tight loop.
                tracing::warn!("warm-gate pod watch ended; watching again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            tracing::info!("warm-gate controller stopped (not leading)");
        }
    }

    /// Handles one held pod until it is released, skipped or given up.
    async fn handle(&self, pod: &Pod, permits: &Semaphore) {
        let (namespace, name) = (
            pods::namespace(pod).to_string(),
            pods::name(pod).to_string(),
        );
        let mut warmup_failures = 0u32;
        loop {
            let step = {
                let Ok(_permit) = permits.acquire().await else {
                    return;
                };
                self.look(&namespace, &name, &mut warmup_failures).await
            };
            match step {
                Step::Done(outcome) => {
                    if outcome != Outcome::Skipped {
                        self.metrics.warm_gate_release(outcome.label());
                    }
                    return;
                }
                Step::Later => tokio::time::sleep(self.recheck).await,
            }
        }
    }

    /// One look at a pod: release it, or say when to look again.
    async fn look(&self, namespace: &str, name: &str, warmup_failures: &mut u32) -> Step {
        let pods_api = Pods::new(self.client.clone(), self.call_timeout);
        let pod = match pods_api.get(namespace, name).await {
            Ok(pod) => pod,
            Err(crate::k8s::K8sError::NotFound { .. }) => return Step::Done(Outcome::Skipped),
            Err(err) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), error = %error_chain(&err), "warm-gate: cannot read the pod");
                return Step::Later;
            }
        };
        if !held_by_gate(&pod) {
            return Step::Done(Outcome::Skipped);
        }
        let who = format!("{namespace}/{name}");
        let Some(deployment_name) = self.owning_deployment(&pod).await else {
            tracing::debug!(pod = %who, "warm-gate: not a Deployment's pod; left alone");
            return Step::Done(Outcome::Skipped);
        };
        let deployments = Deployments::new(self.client.clone(), namespace, self.call_timeout);
        let deployment = match deployments.get(&deployment_name).await {
            Ok(d) => d,
            Err(err) => {
                tracing::warn!(pod = %who, deployment = %deployment_name, error = %error_chain(&err), "warm-gate: cannot read the Deployment");
                return Step::Later;
            }
        };
        if let Some(holder) = self.restart_running(namespace, &deployment_name).await {
            tracing::debug!(pod = %who, deployment = %deployment_name, run = %holder,
                            "warm-gate: a running restart holds the Deployment; its pod is the run's to release");
            return Step::Later;
        }
        let annotation = deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(WARMUP_ANNOTATION));
        let warmed = match annotation {
            None => false,
            Some(text) => {
                let request: WarmupRequest = match serde_json::from_str(text) {
                    Ok(r) => r,
                    Err(err) => {
                        tracing::error!(pod = %who, deployment = %deployment_name, error = %err,
                                        annotation = WARMUP_ANNOTATION,
                                        "warm-gate: the warm-up annotation is not a warm-up request; the pod stays out of service");
                        return Step::Done(Outcome::WarmupFailed);
                    }
                };
                let ctx = self.context(namespace);
                if let Err(err) = warm_up(&ctx, &request, &pod).await {
                    *warmup_failures += 1;
                    let attempts = *warmup_failures;
                    if attempts >= MAX_WARMUP_ATTEMPTS {
                        tracing::error!(pod = %who, deployment = %deployment_name, attempts,
                                        error = %error_chain(&err),
                                        hint = %crate::actions::deployment_restart::manual_release_hint(namespace, name),
                                        "warm-gate: warm-up keeps failing; the pod stays out of service");
                        return Step::Done(Outcome::WarmupFailed);
                    }
                    tracing::warn!(pod = %who, deployment = %deployment_name, attempts,
                                   error = %error_chain(&err), "warm-gate: warm-up failed; retrying");
                    self.metrics
                        .warm_gate_release(Outcome::WarmupFailed.label());
                    return Step::Later;
                }
                true
            }
        };
        let message = if warmed {
            format!("warmed by the ripcord daemon (Deployment annotation {WARMUP_ANNOTATION})")
        } else {
            "released by the ripcord daemon once its containers were ready (no warm-up \
             annotation on the Deployment)"
                .to_string()
        };
        let reason = if warmed { "Warmed" } else { "ContainersReady" };
        match release_gate(&pods_api, &pod, reason, &message).await {
            Ok(()) => {
                let outcome = if warmed {
                    Outcome::Warmed
                } else {
                    Outcome::Released
                };
                tracing::info!(pod = %who, deployment = %deployment_name, condition = WARMED_CONDITION,
                               outcome = outcome.label(), gated_template = template_declares_gate(&deployment),
                               "warm-gate: readiness gate released");
                Step::Done(outcome)
            }
            Err(err) => {
                tracing::warn!(pod = %who, error = %error_chain(&err), "warm-gate: cannot release the readiness gate");
                self.metrics.warm_gate_release(Outcome::Error.label());
                Step::Later
            }
        }
    }

    /// The Deployment controlling the pod's ReplicaSet, if any.
    async fn owning_deployment(&self, pod: &Pod) -> Option<String> {
        let owner = pods::controller_of(pod).filter(|o| o.kind == "ReplicaSet")?;
        let rs = Pods::new(self.client.clone(), self.call_timeout)
            .replica_set(pods::namespace(pod), &owner.name)
            .await
            .ok()?;
        rs.metadata
            .owner_references
            .as_ref()?
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == "Deployment")
            .map(|o| o.name.clone())
    }

    /// The run holding the lock of `deployment/NS/NAME`, when its Lease is live in any
    /// namespace: the daemon's lock namespace (where its own runs lock) or the Deployment's
    /// (where a CLI run locks unless given `--lock-namespace`); one list by name
    /// ([`leases::live_holder_anywhere`]). Without `list` on Leases cluster-wide (403) only
    /// the daemon's own lock namespace is read. A failed read counts as held (look again later
    /// rather than race a running restart).
    async fn restart_running(&self, namespace: &str, deployment: &str) -> Option<String> {
        let lock = format!("deployment/{namespace}/{deployment}");
        // No run of ours is asking: any live holder counts.
        let anywhere = leases::live_holder_anywhere(&self.client, &lock, "", self.call_timeout);
        let unreadable = |ns: &str, err: &leases::LeaseError| {
            tracing::warn!(lock = %lock, namespace = ns, error = %error_chain(err),
                           "warm-gate: cannot read the lock Lease; looking again later");
            Some("unknown (the Lease could not be read)".to_string())
        };
        match anywhere.await {
            Ok(Some(leases::LeaseError::Held { holder, .. })) => Some(holder),
            Ok(_) => None,
            Err(leases::LeaseError::Api {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 403 => {
                tracing::debug!(lock = %lock, "warm-gate: cannot list Leases cluster-wide; reading the daemon's lock namespace only");
                let own = leases::lock_namespace(self.lock_namespace.as_deref(), namespace);
                let lease = leases::lease_name(&lock);
                match leases::live_holder(&self.client, own, &lease, self.call_timeout).await {
                    Ok(holder) => holder,
                    Err(err) => unreadable(own, &err),
                }
            }
            Err(err) => unreadable("*", &err),
        }
    }

    /// An action context for the warm-up calls (not a run: nothing is journaled).
    fn context(&self, namespace: &str) -> ActionContext {
        ActionContext {
            client: self.client.clone(),
            run_id: "warm-gate".into(),
            step: "release".into(),
            default_namespace: namespace.to_string(),
            http: self.http.clone(),
            prometheus_url: None,
            call_timeout: self.call_timeout,
            verify_timeout: self.call_timeout,
            playbook: "warm-gate".into(),
            notifier: None,
            state_dir: None,
            observed: Default::default(),
            notices: Default::default(),
        }
    }
}
