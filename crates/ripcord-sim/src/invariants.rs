//! The invariant monitor: PDB violations, pods on cordoned nodes, readiness history.
//!
//! The controllers' task feeds it every store event in order. It records a [`Violation`]
//! when a PodDisruptionBudget's healthy count drops below its minimum *because a healthy pod
//! was deleted or evicted through the API* (pods crashing or controllers scaling down are not
//! violations), and when a pod is bound to a cordoned node it does not tolerate. It also keeps
//! a readiness timeline per Deployment (a sample on every change of its ready/unready pod
//! counts) so tests can assert "never more than N unready".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::controllers::disruption;
use super::controllers::scheduler::{PodRequest, UNSCHEDULABLE_TAINT};
use super::controllers::util;
use super::scenario::BAD_RELEASE_ANNOTATION;
use super::scenario::SimSettings;
use super::service_metrics::Traffic;
use super::store::{EventKind, Store, StoreEvent, kinds};

/// Samples kept at most (oldest dropped first).
const HISTORY_LIMIT: usize = 200_000;

/// What kind of invariant broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// A PodDisruptionBudget went below its desired healthy count through an API deletion or
    /// eviction.
    PdbViolated,
    /// A pod was bound to a node with `spec.unschedulable` it does not tolerate.
    ScheduledOnCordonedNode,
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// Simulated time it was observed.
    pub time: jiff::Timestamp,
    /// What broke.
    pub kind: ViolationKind,
    /// Namespace of the PDB or pod.
    pub namespace: String,
    /// The PDB (for `PdbViolated`) or pod (for `ScheduledOnCordonedNode`).
    pub name: String,
    /// Human-readable detail (pod, node, counts).
    pub message: String,
}

/// One point of a Deployment's readiness timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadinessSample {
    /// Simulated time of the change.
    pub time: jiff::Timestamp,
    /// Namespace.
    pub namespace: String,
    /// Deployment name.
    pub deployment: String,
    /// Ready pods.
    pub ready: u32,
    /// Active pods that are not ready.
    pub unready: u32,
}

#[derive(Clone, Debug)]
struct TrackedPod {
    deployment: Option<String>,
    ready: bool,
    node: Option<String>,
    running: bool,
    bad: bool,
}

/// Pod counts of one Deployment, maintained incrementally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Agg {
    ready: u32,
    unready: u32,
    serving: u32,
    bad: u32,
}

impl Agg {
    fn of(t: &TrackedPod) -> Agg {
        let bad = t.bad && t.running;
        Agg {
            ready: u32::from(t.ready),
            unready: u32::from(!t.ready),
            serving: u32::from(bad || t.ready),
            bad: u32::from(bad),
        }
    }

    fn add(&mut self, o: Agg) {
        self.ready += o.ready;
        self.unready += o.unready;
        self.serving += o.serving;
        self.bad += o.bad;
    }

    fn sub(&mut self, o: Agg) {
        self.ready = self.ready.saturating_sub(o.ready);
        self.unready = self.unready.saturating_sub(o.unready);
        self.serving = self.serving.saturating_sub(o.serving);
        self.bad = self.bad.saturating_sub(o.bad);
    }
}

#[derive(Default)]
struct MonitorState {
    violations: Vec<Violation>,
    history: Vec<ReadinessSample>,
    pods: BTreeMap<(String, String), TrackedPod>,
    cordoned: BTreeMap<String, bool>,
    counts: BTreeMap<(String, String), (u32, u32)>,
    agg: BTreeMap<(String, String), Agg>,
    evicted: BTreeSet<String>,
    settings: SimSettings,
    traffic: BTreeMap<(String, String), Traffic>,
}

/// Records invariant violations and the readiness history. Cheap to clone.
#[derive(Clone, Default)]
pub struct InvariantMonitor {
    inner: Arc<Mutex<MonitorState>>,
}

impl std::fmt::Debug for InvariantMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("InvariantMonitor")
            .field("violations", &s.violations.len())
            .field("samples", &s.history.len())
            .finish()
    }
}

/// The Deployment a pod belongs to: its ReplicaSet's name minus `-<pod-template-hash>`.
pub fn deployment_of(pod: &Value) -> Option<String> {
    let (kind, rs, _) = util::controller_ref(pod)?;
    if kind != "ReplicaSet" {
        return None;
    }
    let hash = util::labels(pod).get(util::POD_TEMPLATE_HASH).cloned()?;
    rs.strip_suffix(&format!("-{hash}")).map(str::to_string)
}

// === impl InvariantMonitor ===

impl InvariantMonitor {
    /// An empty monitor.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MonitorState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    /// Whether no violation was recorded.
    pub fn is_clean(&self) -> bool {
        self.lock().violations.is_empty()
    }

    /// The readiness timeline of every Deployment, oldest first.
    pub fn history(&self) -> Vec<ReadinessSample> {
        self.lock().history.clone()
    }

    /// The readiness timeline of one Deployment.
    pub fn history_of(&self, namespace: &str, deployment: &str) -> Vec<ReadinessSample> {
        self.lock()
            .history
            .iter()
            .filter(|s| s.namespace == namespace && s.deployment == deployment)
            .cloned()
            .collect()
    }

    /// The most unready pods the Deployment ever had at once.
    pub fn max_unready(&self, namespace: &str, deployment: &str) -> u32 {
        self.history_of(namespace, deployment)
            .iter()
            .map(|s| s.unready)
            .max()
            .unwrap_or(0)
    }

    /// The fewest ready pods the Deployment had at once after `since` (inclusive).
    pub fn min_ready_since(
        &self,
        namespace: &str,
        deployment: &str,
        since: jiff::Timestamp,
    ) -> Option<u32> {
        let history = self.history_of(namespace, deployment);
        // The state in force at `since` is the last sample before it.
        let before = history
            .iter()
            .rev()
            .find(|s| s.time < since)
            .map(|s| s.ready);
        history
            .iter()
            .filter(|s| s.time >= since)
            .map(|s| s.ready)
            .chain(before)
            .min()
    }

    /// The Deployment's simulated traffic counters, advanced to `now`.
    pub fn traffic(&self, namespace: &str, deployment: &str, now: jiff::Timestamp) -> Traffic {
        let mut s = self.lock();
        let t = s
            .traffic
            .entry((namespace.to_string(), deployment.to_string()))
            .or_default();
        t.advance(now);
        t.clone()
    }

    /// Tells the monitor which releases are bad (from the scenario settings).
    pub(crate) fn configure(&self, settings: &SimSettings) {
        self.lock().settings = settings.clone();
    }

    /// Records a violation.
    pub fn record(&self, v: Violation) {
        tracing::warn!(kind = ?v.kind, namespace = %v.namespace, name = %v.name, message = %v.message, "sim invariant violated");
        self.lock().violations.push(v);
    }

    /// Notes that a pod uid is being evicted through the Eviction API (already PDB-checked).
    pub(crate) fn note_eviction(&self, uid: &str) {
        self.lock().evicted.insert(uid.to_string());
    }

    /// Rebuilds the tracked pods and nodes from the store (after missed events); records no
    /// violations.
    pub(crate) fn resync(&self, store: &Store) {
        let (pods, _) = store.list(&kinds::pods(), None);
        let (nodes, _) = store.list(&kinds::nodes(), None);
        let now = store.clock().now();
        let mut s = self.lock();
        s.cordoned = nodes
            .iter()
            .map(|n| {
                (
                    util::name(n).to_string(),
                    util::bool_at(n, &["spec", "unschedulable"]),
                )
            })
            .collect();
        s.pods = pods
            .iter()
            .filter(|p| util::is_pod_active(p))
            .map(|p| (pod_key(p), track(p, &s.settings)))
            .collect();
        let mut agg: BTreeMap<(String, String), Agg> = BTreeMap::new();
        for ((ns, _), t) in &s.pods {
            if let Some(d) = &t.deployment {
                agg.entry((ns.clone(), d.clone()))
                    .or_default()
                    .add(Agg::of(t));
            }
        }
        s.agg = agg;
        let deployments: BTreeSet<(String, String)> = s
            .pods
            .iter()
            .filter_map(|((ns, _), t)| t.deployment.clone().map(|d| (ns.clone(), d)))
            .chain(s.counts.keys().cloned())
            .chain(s.agg.keys().cloned())
            .collect();
        for (ns, d) in deployments {
            sample(&mut s, &ns, &d, now);
        }
    }

    /// Feeds one store event. `own_deletion` marks pod deletions made by the controllers.
    pub(crate) fn observe(&self, store: &Store, event: &StoreEvent, own_deletion: bool) {
        match event.resource.plural.as_str() {
            "nodes" if event.resource.group.is_empty() => {
                let name = util::name(&event.object).to_string();
                let mut s = self.lock();
                if event.kind == EventKind::Deleted {
                    s.cordoned.remove(&name);
                } else {
                    s.cordoned.insert(
                        name,
                        util::bool_at(&event.object, &["spec", "unschedulable"]),
                    );
                }
            }
            "pods" if event.resource.group.is_empty() => {
                self.observe_pod(store, event, own_deletion)
            }
            _ => {}
        }
    }

    fn observe_pod(&self, store: &Store, event: &StoreEvent, own_deletion: bool) {
        let pod = &event.object;
        let key = pod_key(pod);
        let now = store.clock().now();
        let mut check_pdb = false;
        {
            let mut s = self.lock();
            let active = event.kind != EventKind::Deleted && util::is_pod_active(pod);
            let tracked = track(pod, &s.settings);
            let previous = replace_pod(&mut s, &key, active.then(|| tracked.clone()));
            // Binding check.
            if let Some(node) = tracked.node.as_deref()
                && previous.as_ref().and_then(|p| p.node.as_deref()).is_none()
                && event.kind != EventKind::Deleted
                && s.cordoned.get(node).copied().unwrap_or(false)
                && !PodRequest::from_pod(pod).tolerates(UNSCHEDULABLE_TAINT, "", "NoSchedule")
            {
                let v = Violation {
                    time: now,
                    kind: ViolationKind::ScheduledOnCordonedNode,
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                    message: format!("pod {}/{} was bound to cordoned node {node}", key.0, key.1),
                };
                tracing::warn!(namespace = %v.namespace, pod = %v.name, node, "pod bound to cordoned node");
                s.violations.push(v);
            }
            let mut deployments: Vec<String> = tracked.deployment.iter().cloned().collect();
            if let Some(d) = previous.as_ref().and_then(|p| p.deployment.clone())
                && !deployments.contains(&d)
            {
                deployments.push(d);
            }
            for d in deployments {
                sample(&mut s, &key.0, &d, now);
            }
            // A deletion disrupts the pod when it starts: at once, or when the pod turns
            // Terminating (graceful deletion) — not again when a Terminating pod goes.
            let terminating = util::at(pod, &["metadata", "deletionTimestamp"]).is_some();
            let deletion_starts = match event.kind {
                EventKind::Deleted => !terminating,
                _ => terminating && previous.is_some(),
            };
            if deletion_starts {
                let evicted = s.evicted.remove(util::uid(pod));
                let was_healthy = previous.as_ref().is_some_and(|p| p.ready)
                    || (event.kind == EventKind::Deleted && util::is_pod_ready(pod));
                check_pdb = was_healthy && !own_deletion && !evicted;
            } else if event.kind == EventKind::Deleted {
                s.evicted.remove(util::uid(pod));
            }
        }
        if check_pdb {
            self.check_pdbs_after_deletion(store, pod, now);
        }
    }

    fn check_pdbs_after_deletion(&self, store: &Store, pod: &Value, now: jiff::Timestamp) {
        let ns = util::namespace(pod).unwrap_or("");
        let (pdbs, _) = store.list(&kinds::pod_disruption_budgets(), Some(ns));
        let labels = util::labels(pod);
        let matching: Vec<&Value> = pdbs
            .iter()
            .filter(|pdb| {
                let sel = util::at(pdb, &["spec", "selector"])
                    .cloned()
                    .unwrap_or(Value::Null);
                util::selector_matches(&sel, &labels)
            })
            .collect();
        if matching.is_empty() {
            return;
        }
        for pdb in matching {
            let b = disruption::budget_from_store(store, pdb);
            if b.current_healthy < b.desired_healthy {
                self.record(Violation {
                    time: now,
                    kind: ViolationKind::PdbViolated,
                    namespace: ns.to_string(),
                    name: util::name(pdb).to_string(),
                    message: format!(
                        "deleting pod {ns}/{} left {} healthy pods; the budget needs {}",
                        util::name(pod),
                        b.current_healthy,
                        b.desired_healthy
                    ),
                });
            }
        }
    }
}

fn pod_key(pod: &Value) -> (String, String) {
    (
        util::namespace(pod).unwrap_or("").to_string(),
        util::name(pod).to_string(),
    )
}

fn track(pod: &Value, settings: &SimSettings) -> TrackedPod {
    let images: Vec<&str> = util::at(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("image").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let bad = settings
        .bad_mode(util::annotation(pod, BAD_RELEASE_ANNOTATION), &images)
        .is_some();
    TrackedPod {
        running: util::str_at(pod, &["status", "phase"]) == Some("Running"),
        bad,
        deployment: deployment_of(pod),
        ready: util::is_pod_ready(pod),
        node: util::str_at(pod, &["spec", "nodeName"])
            .filter(|n| !n.is_empty())
            .map(str::to_string),
    }
}

/// Replaces the tracked state of one pod (`None`: gone), keeping the aggregates in step;
/// returns the previous state.
fn replace_pod(
    s: &mut MonitorState,
    key: &(String, String),
    new: Option<TrackedPod>,
) -> Option<TrackedPod> {
    let previous = match new {
        Some(t) => {
            if let Some(d) = &t.deployment {
                s.agg
                    .entry((key.0.clone(), d.clone()))
                    .or_default()
                    .add(Agg::of(&t));
            }
            s.pods.insert(key.clone(), t)
        }
        None => s.pods.remove(key),
    };
    if let Some(p) = &previous
        && let Some(d) = &p.deployment
        && let Some(a) = s.agg.get_mut(&(key.0.clone(), d.clone()))
    {
        a.sub(Agg::of(p));
    }
    previous
}

fn sample(s: &mut MonitorState, ns: &str, deployment: &str, now: jiff::Timestamp) {
    let Agg {
        ready,
        unready,
        serving,
        bad,
    } = s
        .agg
        .get(&(ns.to_string(), deployment.to_string()))
        .copied()
        .unwrap_or_default();
    let key = (ns.to_string(), deployment.to_string());
    let traffic = s.traffic.entry(key.clone()).or_default();
    traffic.advance(now);
    traffic.serving = serving;
    traffic.bad = bad;
    if s.counts.get(&key) == Some(&(ready, unready)) {
        return;
    }
    s.counts.insert(key, (ready, unready));
    s.history.push(ReadinessSample {
        time: now,
        namespace: ns.to_string(),
        deployment: deployment.to_string(),
        ready,
        unready,
    });
    if s.history.len() > HISTORY_LIMIT {
        let excess = s.history.len() - HISTORY_LIMIT;
        s.history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_is_derived_from_replicaset_and_hash() {
        let pod = json!({"metadata": {"labels": {"pod-template-hash": "abc"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "uid": "u", "controller": true}]}});
        assert_eq!(deployment_of(&pod).as_deref(), Some("web"));
        let ds_pod = json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "name": "a", "uid": "u", "controller": true}]}});
        assert_eq!(deployment_of(&ds_pod), None);
    }

    #[test]
    fn samples_only_on_change() {
        let mut s = MonitorState::default();
        let now = jiff::Timestamp::UNIX_EPOCH;
        replace_pod(
            &mut s,
            &("ns".into(), "a".into()),
            Some(TrackedPod {
                deployment: Some("web".into()),
                ready: true,
                node: None,
                running: true,
                bad: false,
            }),
        );
        sample(&mut s, "ns", "web", now);
        sample(&mut s, "ns", "web", now);
        assert_eq!(s.history.len(), 1);
        replace_pod(
            &mut s,
            &("ns".into(), "b".into()),
            Some(TrackedPod {
                deployment: Some("web".into()),
                ready: false,
                node: None,
                running: true,
                bad: true,
            }),
        );
        sample(&mut s, "ns", "web", now);
        assert_eq!(s.history.len(), 2);
        assert_eq!((s.history[1].ready, s.history[1].unready), (1, 1));
        let t = s
            .traffic
            .get(&("ns".to_string(), "web".to_string()))
            .cloned()
            .unwrap_or_default();
        assert_eq!((t.serving, t.bad), (2, 1));
        // Removing a pod updates the aggregate.
        replace_pod(&mut s, &("ns".into(), "a".into()), None);
        sample(&mut s, "ns", "web", now);
        assert_eq!((s.history[2].ready, s.history[2].unready), (0, 1));
    }
}
