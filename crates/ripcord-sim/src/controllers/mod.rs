//! Simulated controllers: Deployment, ReplicaSet, pod lifecycle and scheduling, DaemonSet,
//! StatefulSet (both with ControllerRevisions), garbage collection, nodes,
//! PodDisruptionBudget status and endpoints.
//!
//! One tokio task runs them all. It reacts to every store change (`Store::subscribe`) and to
//! timers in simulated time (pod start and readiness, crash-loop back-off, progress
//! deadlines). Each wake-up drains the pending store events (feeding the
//! [`InvariantMonitor`]) and then runs one reconcile *pass*: every controller compares the
//! desired with the observed state and writes through `Store::modify`/`create`/`delete`,
//! never through HTTP. A pass that writes something causes events, hence another pass; a pass
//! that writes nothing lets the task sleep until the next timer. Before the pod controller
//! (scheduler and kubelet) runs, the pass drains the events again, so that a pod created
//! earlier in the pass is bound in the same pass. Like the real controllers,
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
pub mod revisions;
pub mod scheduler;
pub mod statefulset;
pub mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::TryRecvError;

use super::invariants::InvariantMonitor;
use super::scenario::SimSettings;
use super::store::{EventKind, ResourceType, Store, StoreError, StoreEvent, kinds};

/// Marker in the dirty set: some object was deleted (owners may be gone).
pub(crate) const DELETIONS: &str = "*deleted*";

/// Consecutive writing passes after which the task pauses for 10 ms of real time.
const BUSY_PASSES_BEFORE_PAUSE: u64 = 200;

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
    let mut controllers = Controllers::new(store, settings, monitor);
    tokio::spawn(async move {
        let mut busy_passes: u64 = 0;
        loop {
            let next = controllers.pass();
            let clock = controllers.store.clock().clone();
            let now = clock.now();
            let sleep_for = next
                .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO))
                .unwrap_or(RESYNC)
                .min(RESYNC);
            if controllers.wrote {
                // Our own writes produced events; pick them up right away, but never spin:
                // a long run of writing passes gets a short real pause.
                busy_passes += 1;
                if busy_passes.is_multiple_of(BUSY_PASSES_BEFORE_PAUSE) {
                    tracing::debug!(passes = busy_passes, "controllers busy; pausing briefly");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            } else {
                busy_passes = 0;
                let received = tokio::select! {
                    received = controllers.events.recv() => Some(received),
                    _ = clock.sleep(sleep_for) => None,
                };
                match received {
                    Some(Ok(event)) => controllers.observe(&event),
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                        controllers.resync();
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
                    None => {}
                }
            }
            if !controllers.drain() {
                return;
            }
        }
    })
}

/// The controllers' informer-like cache: the objects of the kinds they reconcile, kept up to
/// date from the store's event stream, shared as `Arc`s so a pass does not copy them.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    objects: BTreeMap<ResourceType, BTreeMap<(String, String), Arc<Value>>>,
}

fn cached_kinds() -> Vec<ResourceType> {
    vec![
        kinds::pods(),
        kinds::nodes(),
        kinds::replicasets(),
        kinds::deployments(),
        kinds::daemonsets(),
        kinds::statefulsets(),
        kinds::services(),
        kinds::endpoints(),
        kinds::pod_disruption_budgets(),
    ]
}

fn object_key(v: &Value) -> (String, String) {
    (
        util::namespace(v).unwrap_or("").to_string(),
        util::name(v).to_string(),
    )
}

fn resource_version(v: &Value) -> u64 {
    util::str_at(v, &["metadata", "resourceVersion"])
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

impl Cache {
    /// Reloads every cached kind from the store.
    fn resync(&mut self, store: &Store) {
        self.objects.clear();
        for rt in cached_kinds() {
            let (items, _) = store.list(&rt, None);
            let map = items
                .into_iter()
                .map(|v| (object_key(&v), Arc::new(v)))
                .collect();
            self.objects.insert(rt, map);
        }
    }

    /// Applies one store event (older versions than the cached one are ignored).
    fn apply(&mut self, event: &StoreEvent) {
        let Some(map) = self.objects.get_mut(&event.resource) else {
            return;
        };
        let key = object_key(&event.object);
        let stale = map.get(&key).is_some_and(|cur| {
            resource_version(cur) > event.rv && event.kind != EventKind::Deleted
        });
        if stale {
            return;
        }
        match event.kind {
            EventKind::Deleted => {
                if map
                    .get(&key)
                    .is_some_and(|cur| resource_version(cur) <= event.rv)
                {
                    map.remove(&key);
                }
            }
            EventKind::Added | EventKind::Modified => {
                map.insert(key, Arc::new(event.object.clone()));
            }
        }
    }

    /// Every cached object of a kind, sorted by namespace and name.
    pub(crate) fn list(&self, rt: &ResourceType) -> Vec<Arc<Value>> {
        self.objects
            .get(rt)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a kind is cached.
    pub(crate) fn caches(&self, rt: &ResourceType) -> bool {
        self.objects.contains_key(rt)
    }

    /// One cached object.
    pub(crate) fn get(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Arc<Value>> {
        self.objects
            .get(rt)?
            .get(&(ns.unwrap_or("").to_string(), name.to_string()))
            .cloned()
    }
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
    /// When uncached kinds were last garbage-collected.
    pub last_gc_sweep: Option<jiff::Timestamp>,
    /// Objects being deleted (deletionTimestamp set, not yet gone): (type, namespace, name).
    /// The namespace controller, foreground deletion and the kubelet work from this set.
    pub deleting: BTreeSet<(ResourceType, String, String)>,
    /// DaemonSets and StatefulSets (`Kind/uid`) whose ControllerRevisions are in step with
    /// this template hash.
    pub revisions_synced: BTreeMap<String, String>,
    /// Pods deleted through the API since the last pass (the kubelet reports `Killing`).
    pub killed: Vec<Value>,
    /// When events were last pruned.
    pub last_prune: Option<jiff::Timestamp>,
}

/// All controllers and their shared state.
pub struct Controllers {
    pub(crate) store: Store,
    pub(crate) cache: Cache,
    /// Kinds changed since the last pass began (`None`: everything, e.g. after a resync).
    pending_dirty: Option<BTreeSet<String>>,
    /// What changed before the current pass.
    pass_dirty: Option<BTreeSet<String>>,
    events: tokio::sync::broadcast::Receiver<StoreEvent>,
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
        let events = store.subscribe();
        let now = store.clock().now();
        let mut cache = Cache::default();
        cache.resync(&store);
        monitor.resync(&store);
        Controllers {
            cache,
            pending_dirty: None,
            pass_dirty: None,
            events,
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
        self.pass_dirty = self.pending_dirty.take();
        self.pending_dirty = Some(BTreeSet::new());
        if self.is_dirty(&["nodes"]) {
            nodes::reconcile(self);
        }
        gc::reconcile(self);
        // Deployments and pods also run on timers (progress deadlines, readiness delays).
        deployment::reconcile(self);
        if self.is_dirty(&["replicasets", "pods"]) {
            replicaset::reconcile(self);
        }
        if self.is_dirty(&["daemonsets", "nodes", "pods"]) {
            daemonset::reconcile(self);
        }
        if self.is_dirty(&["statefulsets", "pods"]) {
            statefulset::reconcile(self);
        }
        // The scheduler sees the pods the controllers above created in this pass (as a real
        // scheduler binds a new pod at once) instead of binding them a whole pass later.
        self.drain();
        pods::reconcile(self);
        if self.is_dirty(&["poddisruptionbudgets", "pods", "deployments", "replicasets"]) {
            disruption::reconcile(self);
        }
        if self.is_dirty(&["services", "pods", "nodes", "endpoints"]) {
            endpoints::reconcile(self);
        }
        for pod in std::mem::take(&mut self.state.killed) {
            let message = format!("Stopping container {}", replicaset::first_container(&pod));
            events::emit(
                self,
                &pod,
                events::EventType::Normal,
                "Killing",
                &message,
                "kubelet",
            );
        }
        events::prune(self);
        self.next_wake
    }

    /// Runs passes until one writes nothing (at most `limit`); for tests and benchmarks
    /// driving the controllers without the task. Returns the number of passes.
    pub fn settle(&mut self, limit: usize) -> usize {
        for i in 0..limit {
            self.pass();
            self.drain();
            if !self.wrote {
                return i + 1;
            }
        }
        limit
    }

    /// Applies every pending store event; `false` when the store is gone.
    pub(crate) fn drain(&mut self) -> bool {
        loop {
            match self.events.try_recv() {
                Ok(event) => self.observe(&event),
                Err(TryRecvError::Lagged(_)) => self.resync(),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Closed) => return false,
            }
        }
    }

    /// Reloads the cache and the monitor after missed events.
    pub(crate) fn resync(&mut self) {
        self.pending_dirty = None;
        self.cache.resync(&self.store);
        self.state.deleting.clear();
        for rt in self.store.resource_types() {
            for key in self.store.keys_where(&rt, None, |o| {
                util::at(o, &["metadata", "deletionTimestamp"]).is_some()
            }) {
                self.state.deleting.insert((rt.clone(), key.0, key.1));
            }
        }
        self.monitor.resync(&self.store);
    }

    /// Feeds one store event to the cache and the invariant monitor.
    pub(crate) fn observe(&mut self, event: &StoreEvent) {
        let is_pod = event.resource.plural == "pods" && event.resource.group.is_empty();
        let deleting = util::at(&event.object, &["metadata", "deletionTimestamp"]).is_some();
        // A pod starts terminating: the first event that carries its deletionTimestamp.
        let termination_starts = is_pod
            && event.kind != EventKind::Deleted
            && deleting
            && self
                .cache
                .get(
                    &event.resource,
                    util::namespace(&event.object),
                    util::name(&event.object),
                )
                .is_some_and(|p| util::at(&p, &["metadata", "deletionTimestamp"]).is_none());
        if deleting && event.kind != EventKind::Deleted {
            self.state.deleting.insert((
                event.resource.clone(),
                util::namespace(&event.object).unwrap_or("").to_string(),
                util::name(&event.object).to_string(),
            ));
        } else if event.kind == EventKind::Deleted {
            self.state.deleting.remove(&(
                event.resource.clone(),
                util::namespace(&event.object).unwrap_or("").to_string(),
                util::name(&event.object).to_string(),
            ));
        }
        self.cache.apply(event);
        if let Some(dirty) = self.pending_dirty.as_mut() {
            if !dirty.contains(&event.resource.plural) {
                dirty.insert(event.resource.plural.clone());
            }
            if event.kind == EventKind::Deleted {
                dirty.insert(DELETIONS.to_string());
            }
        }
        let pod_deleted = event.kind == EventKind::Deleted && is_pod;
        let own = if pod_deleted {
            self.state.pod_times.remove(util::uid(&event.object));
            self.state.own_deletions.remove(util::uid(&event.object))
        } else {
            is_pod && self.state.own_deletions.contains(util::uid(&event.object))
        };
        // The kubelet reports `Killing` when an API deletion starts (or, for a pod removed
        // at once, when it goes).
        let killed = termination_starts || (pod_deleted && !deleting);
        if killed && !own && util::str_at(&event.object, &["spec", "nodeName"]).is_some() {
            self.state.killed.push(event.object.clone());
        }
        self.monitor.observe(&self.store, event, own);
    }

    /// Whether objects of one of these kinds (plural names) changed before this pass.
    pub(crate) fn is_dirty(&self, plurals: &[&str]) -> bool {
        match &self.pass_dirty {
            None => true,
            Some(d) => plurals.iter().any(|p| d.contains(*p)),
        }
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
        let namespace = util::namespace(&obj).unwrap_or("").to_string();
        let name = util::str_at(&obj, &["metadata", "name"])
            .or_else(|| util::str_at(&obj, &["metadata", "generateName"]))
            .unwrap_or("")
            .to_string();
        match self.store.create(rt, obj) {
            Ok(v) => {
                self.wrote = true;
                Ok(v)
            }
            Err(source) => {
                let e = ControllerError::Write {
                    controller,
                    operation: "create",
                    kind: rt.kind.clone(),
                    namespace,
                    name,
                    source,
                };
                tracing::debug!(error = %e, category = e.category(), "controller write failed");
                let ControllerError::Write { source, .. } = e;
                Err(source)
            }
        }
    }

    /// A graceful delete (`Store::delete_gracefully`: pods stay Terminating for their grace
    /// period, finalizers hold), logging failures other than NotFound. Pod deletions are
    /// remembered as the controllers' own. Objects already being deleted are left alone.
    pub(crate) fn delete(
        &mut self,
        controller: &'static str,
        rt: &ResourceType,
        obj: &Value,
    ) -> bool {
        self.delete_with_grace(controller, rt, obj, None)
    }

    /// [`Controllers::delete`] with an explicit grace period (`Some(0)`: at once, as the pod
    /// garbage collector and the kubelet's final removal do).
    pub(crate) fn delete_with_grace(
        &mut self,
        controller: &'static str,
        rt: &ResourceType,
        obj: &Value,
        grace_period_seconds: Option<i64>,
    ) -> bool {
        if grace_period_seconds.is_none()
            && util::at(obj, &["metadata", "deletionTimestamp"]).is_some()
        {
            return false;
        }
        if rt.plural == "pods" {
            self.state.own_deletions.insert(util::uid(obj).to_string());
        }
        match self.store.delete_gracefully(
            rt,
            util::namespace(obj),
            util::name(obj),
            grace_period_seconds,
            &[],
        ) {
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
