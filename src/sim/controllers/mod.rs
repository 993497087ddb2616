//! Simulated controllers: Deployment, ReplicaSet, pod lifecycle and scheduling, DaemonSet,
//! garbage collection, nodes, PodDisruptionBudget status and endpoints.
//!
//! One tokio task runs them all. It reacts to every store change (`Store::subscribe`) and to
//! timers in simulated time (pod start and readiness, crash-loop back-off, progress
//! deadlines). Each wake-up drains the pending store events (feeding the
//! [`InvariantMonitor`]) and then runs one reconcile *pass*: every controller compares the
//! desired with the observed state and writes through `Store::modify`/`create`/`delete`,
//! never through HTTP. A pass that writes something causes events, hence another pass; a pass
//! that writes nothing lets the task sleep until the next timer. Like the real controllers,
//! each pass takes at most one rollout step per Deployment.

pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod nodes;
pub mod pods;
pub mod replicaset;
pub mod scheduler;
pub mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::TryRecvError;

use super::invariants::InvariantMonitor;
use super::scenario::SimSettings;
use super::store::{ResourceType, Store, StoreError};

/// Longest simulated sleep between passes when no timer is due (periodic resync).
const RESYNC: Duration = Duration::from_secs(30);

/// Errors of controller writes (logged and retried on the next pass; never fatal).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A write to the store failed.
    #[error("{controller} controller could not {operation} {kind} {namespace}/{name}")]
    Write {
        /// Which controller.
        controller: &'static str,
        /// create, modify or delete.
        operation: &'static str,
        /// Kind of the object.
        kind: String,
        /// Namespace ("" for cluster-scoped).
        namespace: String,
        /// Name.
        name: String,
        /// The store's error.
        source: StoreError,
    },
}

impl ControllerError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ControllerError::Write { .. } => "controller_write",
        }
    }
}

/// Starts the controllers on the current tokio runtime. Abort the handle to stop them.
pub fn spawn(
    store: Store,
    settings: SimSettings,
    monitor: InvariantMonitor,
) -> tokio::task::JoinHandle<()> {
    let mut events = store.subscribe();
    monitor.configure(&settings);
    let mut controllers = Controllers::new(store, settings, monitor);
    tokio::spawn(async move {
        controllers.monitor.resync(&controllers.store);
        loop {
            let next = controllers.pass();
            let clock = controllers.store.clock().clone();
            let now = clock.now();
            let sleep_for = next
                .map(|t| {
                    let d = t.duration_since(now);
                    Duration::try_from(d).unwrap_or(Duration::ZERO)
                })
                .unwrap_or(RESYNC)
                .min(RESYNC);
            if controllers.wrote {
                // Our own writes produced events; pick them up right away.
                tokio::task::yield_now().await;
            } else {
                tokio::select! {
                    received = events.recv() => {
                        match received {
                            Ok(event) => controllers.observe(&event),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                controllers.monitor.resync(&controllers.store);
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                    }
                    _ = clock.sleep(sleep_for) => {}
                }
            }
            loop {
                match events.try_recv() {
                    Ok(event) => controllers.observe(&event),
                    Err(TryRecvError::Lagged(_)) => controllers.monitor.resync(&controllers.store),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return,
                }
            }
        }
    })
}

/// Per-pod timing the simulated kubelet keeps in memory (simulated times).
#[derive(Clone, Debug, Default)]
pub(crate) struct PodTimes {
    /// When the pod was bound to its node.
    pub bound_at: Option<jiff::Timestamp>,
    /// When the current container instance started.
    pub started_at: Option<jiff::Timestamp>,
    /// When a crash-looping container next restarts.
    pub restart_at: Option<jiff::Timestamp>,
}

/// State kept across passes.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Kubelet timers per pod uid.
    pub pod_times: BTreeMap<String, PodTimes>,
    /// Pod uids the controllers deleted themselves (so the monitor does not blame the API).
    pub own_deletions: BTreeSet<String>,
    /// (uid, reason) pairs that already produced a one-off event.
    pub emitted_once: BTreeSet<(String, String)>,
    /// Endpoints objects the endpoints controller manages: (namespace, name).
    pub managed_endpoints: BTreeSet<(String, String)>,
    /// Counter for event names.
    pub event_seq: u64,
    /// Paused state per deployment uid seen on the previous pass.
    pub paused: BTreeMap<String, bool>,
}

/// All controllers and their shared state.
pub struct Controllers {
    pub(crate) store: Store,
    pub(crate) settings: SimSettings,
    pub(crate) monitor: InvariantMonitor,
    pub(crate) state: State,
    /// Simulated time of the current pass.
    pub(crate) now: jiff::Timestamp,
    /// Earliest timer due after this pass.
    pub(crate) next_wake: Option<jiff::Timestamp>,
    /// Whether the current pass wrote anything.
    pub(crate) wrote: bool,
}

// === impl Controllers ===

impl Controllers {
    /// Controllers over `store` (not yet running; see [`spawn`] or [`Controllers::pass`]).
    pub fn new(store: Store, settings: SimSettings, monitor: InvariantMonitor) -> Controllers {
        monitor.configure(&settings);
        let now = store.clock().now();
        Controllers {
            store,
            settings,
            monitor,
            state: State::default(),
            now,
            next_wake: None,
            wrote: false,
        }
    }

    /// Runs one reconcile pass of every controller; returns when the next timer is due.
    pub fn pass(&mut self) -> Option<jiff::Timestamp> {
        self.now = self.store.clock().now();
        self.next_wake = None;
        self.wrote = false;
        nodes::reconcile(self);
        gc::reconcile(self);
        deployment::reconcile(self);
        replicaset::reconcile(self);
        daemonset::reconcile(self);
        pods::reconcile(self);
        disruption::reconcile(self);
        endpoints::reconcile(self);
        events::prune(self);
        self.next_wake
    }

    /// Runs passes until one writes nothing (at most `limit`); for tests driving the
    /// controllers without the task.
    pub fn settle(&mut self, limit: usize) -> usize {
        let mut rx = self.store.subscribe();
        for i in 0..limit {
            self.pass();
            while let Ok(event) = rx.try_recv() {
                self.observe(&event);
            }
            if !self.wrote {
                return i + 1;
            }
        }
        limit
    }

    /// Feeds one store event to the invariant monitor.
    pub(crate) fn observe(&mut self, event: &super::store::StoreEvent) {
        let own = event.kind == super::store::EventKind::Deleted
            && event.resource.plural == "pods"
            && self.state.own_deletions.remove(util::uid(&event.object));
        self.monitor.observe(&self.store, event, own);
    }

    /// The current simulated time as Kubernetes formats it.
    pub(crate) fn now_str(&self) -> String {
        super::clock::format_k8s_time(self.now)
    }

    /// Asks for a pass no later than `at`.
    pub(crate) fn wake_at(&mut self, at: jiff::Timestamp) {
        self.next_wake = Some(match self.next_wake {
            Some(t) if t <= at => t,
            _ => at,
        });
    }

    /// `store.modify`, logging failures; returns the new object.
    pub(crate) fn modify(
        &mut self,
        controller: &'static str,
        rt: &ResourceType,
        obj: &Value,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let before = util::at(obj, &["metadata", "resourceVersion"]).cloned();
        let result = self
            .store
            .modify(rt, util::namespace(obj), util::name(obj), |v| {
                f(v);
                Ok(())
            });
        match result {
            Ok(v) => {
                if util::at(&v, &["metadata", "resourceVersion"]).cloned() != before {
                    self.wrote = true;
                }
                Some(v)
            }
            Err(source) => {
                self.log_error(controller, "modify", rt, obj, source);
                None
            }
        }
    }

    /// `store.create`, logging failures.
    pub(crate) fn create(
        &mut self,
        controller: &'static str,
        rt: &ResourceType,
        obj: Value,
    ) -> Result<Value, StoreError> {
        match self.store.create(rt, obj.clone()) {
            Ok(v) => {
                self.wrote = true;
                Ok(v)
            }
            Err(source) => {
                let e = ControllerError::Write {
                    controller,
                    operation: "create",
                    kind: rt.kind.clone(),
                    namespace: util::namespace(&obj).unwrap_or("").to_string(),
                    name: util::name(&obj).to_string(),
                    source,
                };
                tracing::debug!(error = %e, category = e.category(), "controller write failed");
                let ControllerError::Write { source, .. } = e;
                Err(source)
            }
        }
    }

    /// `store.delete`, logging failures other than NotFound. Pod deletions are remembered as
    /// the controllers' own.
    pub(crate) fn delete(
        &mut self,
        controller: &'static str,
        rt: &ResourceType,
        obj: &Value,
    ) -> bool {
        if rt.plural == "pods" {
            self.state.own_deletions.insert(util::uid(obj).to_string());
            self.state.pod_times.remove(util::uid(obj));
        }
        match self.store.delete(rt, util::namespace(obj), util::name(obj)) {
            Ok(_) => {
                self.wrote = true;
                true
            }
            Err(StoreError::NotFound { .. }) => {
                self.state.own_deletions.remove(util::uid(obj));
                false
            }
            Err(source) => {
                self.state.own_deletions.remove(util::uid(obj));
                self.log_error(controller, "delete", rt, obj, source);
                false
            }
        }
    }

    fn log_error(
        &self,
        controller: &'static str,
        operation: &'static str,
        rt: &ResourceType,
        obj: &Value,
        source: StoreError,
    ) {
        let e = ControllerError::Write {
            controller,
            operation,
            kind: rt.kind.clone(),
            namespace: util::namespace(obj).unwrap_or("").to_string(),
            name: util::name(obj).to_string(),
            source,
        };
        tracing::debug!(error = %e, category = e.category(), "controller write failed");
    }
}
