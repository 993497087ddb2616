//! `node.drain`: cordon the selected nodes (with ripcord's marks, see [`super::node_cordon`]),
//! then evict their pods through the Eviction API in waves.
//!
//! Multi-phase through re-diff: the first diff returns the cordons; every later diff returns the
//! next *wave* of evictions — at most `maxConcurrent` pods, chosen so that every
//! PodDisruptionBudget selecting them still allows the disruption (computed from the live pods;
//! the API server stays the authority). A wave is one mutation per node
//! (`evict/<node>/<first pod>`, listing that node's pods of the wave) because the engine applies
//! mutations one after the other: `apply` evicts the node's pods concurrently (at most
//! `maxConcurrent` requests in flight), never deletes them, and keeps retrying a PDB refusal
//! (HTTP 429) with a capped exponential backoff, bounded by the step's timeout. A pod already
//! gone counts as evicted, so applying the same mutation again is harmless. `verify` waits
//! (bounded) until the PDB budgets have room for the next wave — replacements of evicted pods
//! Ready elsewhere (the drained nodes are cordoned) — and, when nothing is left to plan, until
//! every evicted pod is gone and every ReplicaSet it evicted from is fully Ready again. The
//! waves overlap as the budgets allow; the diff that finds nothing left to evict first waits
//! for whatever an early-ended wait left unsettled, so a drain still ends settled.
//!
//! The waves are planned on, and the waits read, a live view of the pods ([`DrainPods`], a
//! [`PodWatch`]: one paged list when the drain phase starts, then a watch): a wait wakes on
//! the change that ends it, instead of polling; the ReplicaSets the waits need are read
//! concurrently and kept for 2 s, the PDBs likewise (issue 18). A resumed run starts a new
//! view from a fresh list, so its re-diff sees what the earlier process evicted.
//!
//! DaemonSet pods and mirror pods are skipped (a DaemonSet pod would come back on the same node);
//! pods with `emptyDir` volumes are evicted only with `deleteEmptydirData`; pods no controller
//! manages are skipped like `kubectl drain` does without `--force`. Evictions have the inverse
//! `None`: the controllers recreate the pods; the cordon's inverse uncordons.

use super::node_cordon::{apply_node_patch, cordon_mutation, select_nodes};
use super::{
    Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef, Progress,
};
use crate::k8s::K8sError;
use crate::k8s::nodes;
use crate::k8s::pods::{self, EvictOutcome, PodWatch, Pods};
use crate::playbook::catalog;
use crate::retry::{self, Stopped};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How often a wait for replacements reads the ReplicaSets again (one scaled or deleted
/// meanwhile, by a rollout, must not hold the wait until its timeout).
const REPLICA_SETS_REFRESH: Duration = Duration::from_secs(2);

/// Pages of the initial pod list a [`DrainPods`] view may take, in call timeouts.
const VIEW_READY_CALLS: u32 = 4;

/// The prefix marking a StatefulSet among the owners a wait reads (ReplicaSet names are bare;
/// no object name contains `/`).
const STATEFUL_SET_OWNER: &str = "StatefulSet/";

/// How long a drain plans on the PodDisruptionBudgets it listed before listing them again.
/// A PDB created or changed meanwhile is still enforced: the API server refuses (429) an
/// eviction it does not allow, and the eviction retries.
const PDBS_REFRESH: Duration = Duration::from_secs(2);

/// Once the next wave has room for some of its pods but not all, how long a wait gathers more
/// room (replacements going Ready one after the other) before it lets the next wave start
/// with what it has: fewer, larger waves, each still started within this of its first room.
const WAVE_GATHER: Duration = Duration::from_millis(15);

/// Node writes (cordons, one node's evictions) the engine may send at once.
pub(crate) const PARALLEL_MUTATIONS: usize = 16;

/// The prefix of eviction mutation ids.
pub(crate) const EVICT_PREFIX: &str = "evict/";

/// What a drain evicts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainSettings {
    /// Evictions per wave.
    pub max_concurrent: usize,
    /// Nodes whose pods a wave may evict (`None`: every drained node).
    pub max_nodes: Option<usize>,
    /// Leave DaemonSet pods alone.
    pub ignore_daemon_sets: bool,
    /// Evict pods with emptyDir volumes.
    pub delete_emptydir_data: bool,
}

/// The next wave of a drain.
#[derive(Debug, Default)]
pub(crate) struct Wave {
    /// The evictions of this wave.
    pub mutations: Vec<Mutation>,
    /// Evictable pods left on the drained nodes (this wave included).
    pub remaining: usize,
    /// Pods whose PDB allows no disruption right now.
    pub blocked: usize,
    /// Pods left alone, with the reason (`ns/pod: reason`).
    pub skipped: Vec<String>,
    /// Pods on the drained nodes that are already terminating (`ns/pod`): not evicted again,
    /// but a drain is not done until they are gone, as with `kubectl drain`.
    pub terminating: Vec<String>,
    /// `ns/pod` → owning ReplicaSet name, for the wave's pods.
    pub owners: BTreeMap<String, String>,
    /// Pods of this wave that every PDB allows now (the rest of `mutations`, if any, is the
    /// one pod a fully blocked wave tries anyway).
    pub allowed: usize,
    /// Pods the wave would take if no PDB held any back: the evictable pods of its nodes, up
    /// to the per-wave limit.
    pub full: usize,
}

/// What `diff` learned for `verify`: the ReplicaSet owning each pod of a wave, and the pods
/// of each eviction mutation. In memory only: after a crash, the re-diff sees any pod that is
/// still there and evicts it again.
#[derive(Debug, Default)]
pub(crate) struct EvictionOwners(Mutex<Memory>);

#[derive(Debug, Default)]
struct Memory {
    owners: BTreeMap<String, String>,
    pods: BTreeMap<String, Vec<ObjectRef>>,
    /// The most evictable pods a diff has seen (the progress total).
    most_seen: u64,
    /// The drain the last diff planned (its nodes and limits), so that a wait can tell when
    /// the next wave has room.
    drain: Option<(BTreeSet<String>, DrainSettings)>,
    /// A wait ended when the next wave had room, and no wait has seen everything settle
    /// since.
    unsettled: bool,
    /// `(namespace, name)` → uid of each evicted pod (from the eviction's pre-image): a pod
    /// recreated under the same name (a StatefulSet's) is not the evicted one.
    uids: HashMap<(String, String), String>,
    /// ReplicaSets the waits read, with when: read again after [`REPLICA_SETS_REFRESH`].
    sets: BTreeMap<(String, String), (Option<ReplicaSetWant>, Instant)>,
}

impl EvictionOwners {
    /// Remembers a wave the diff planned for the `drained` nodes with `settings`.
    pub(crate) fn remember(
        &self,
        wave: &Wave,
        drained: &BTreeSet<String>,
        settings: DrainSettings,
    ) {
        if let Ok(mut memory) = self.0.lock() {
            memory
                .owners
                .extend(wave.owners.iter().map(|(k, v)| (k.clone(), v.clone())));
            for m in &wave.mutations {
                memory.pods.insert(m.id.clone(), pods_of(m));
                for pod in m.pre_image["pods"].as_array().into_iter().flatten() {
                    let meta = &pod["metadata"];
                    if let (Some(ns), Some(name), Some(uid)) = (
                        meta["namespace"].as_str(),
                        meta["name"].as_str(),
                        meta["uid"].as_str(),
                    ) {
                        memory
                            .uids
                            .insert((ns.to_string(), name.to_string()), uid.to_string());
                    }
                }
            }
            memory.drain = Some((drained.clone(), settings));
        }
    }

    fn drain(&self) -> Option<(BTreeSet<String>, DrainSettings)> {
        self.0.lock().ok().and_then(|m| m.drain.clone())
    }

    /// Whether a wait ended early (for the next wave) since the last full settle.
    fn unsettled(&self) -> bool {
        self.0.lock().is_ok_and(|m| m.unsettled)
    }

    fn set_unsettled(&self, unsettled: bool) {
        if let Ok(mut memory) = self.0.lock() {
            memory.unsettled = unsettled;
        }
    }

    /// The uids of the evicted pods, by `(namespace, name)`.
    fn uids(&self) -> HashMap<(String, String), String> {
        self.0.lock().map(|m| m.uids.clone()).unwrap_or_default()
    }

    /// Every pod this action evicted (in this process).
    fn all_pods(&self) -> Vec<ObjectRef> {
        self.0
            .lock()
            .map(|m| m.pods.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The ReplicaSets `wanted`, read again when older than [`REPLICA_SETS_REFRESH`] (all
    /// of those at once, concurrently); one deleted meanwhile is left out.
    async fn replica_sets(
        &self,
        api: &Pods,
        wanted: &BTreeSet<(String, String)>,
    ) -> Result<BTreeMap<(String, String), ReplicaSetWant>, ActionError> {
        let now = Instant::now();
        let stale: BTreeSet<(String, String)> = match self.0.lock() {
            Ok(memory) => wanted
                .iter()
                .filter(|key| {
                    memory
                        .sets
                        .get(*key)
                        .is_none_or(|(_, at)| now >= *at + REPLICA_SETS_REFRESH)
                })
                .cloned()
                .collect(),
            Err(_) => wanted.clone(),
        };
        let fresh = replica_sets(api, &stale).await?;
        let mut found = BTreeMap::new();
        if let Ok(mut memory) = self.0.lock() {
            for key in stale {
                let want = fresh.get(&key).cloned();
                memory.sets.insert(key, (want, now));
            }
            for key in wanted {
                if let Some((Some(want), _)) = memory.sets.get(key) {
                    found.insert(key.clone(), want.clone());
                }
            }
        } else {
            found = fresh;
        }
        Ok(found)
    }

    /// Progress counts after `wave`: the total is the most evictable pods any diff of this
    /// process saw (after a resume: those left then), done is how many of them are gone.
    pub(crate) fn progress(&self, wave: &Wave) -> Progress {
        let remaining = wave.remaining as u64;
        let total = match self.0.lock() {
            Ok(mut memory) => {
                memory.most_seen = memory.most_seen.max(remaining);
                memory.most_seen
            }
            Err(_) => remaining,
        };
        Progress {
            what: "pods evicted".into(),
            done: total - remaining,
            total,
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0.lock().ok().and_then(|m| m.owners.get(key).cloned())
    }

    fn pods(&self, mutation_id: &str) -> Vec<ObjectRef> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.pods.get(mutation_id).cloned())
            .unwrap_or_default()
    }
}

/// The drain's live view of the cluster's pods: a [`PodWatch`] started by the first read of
/// the drain and kept while the action lives (one step). The guards, the waves and the waits
/// read it, and the waits wake on its changes; no diff lists every pod again. Beside it, the
/// PodDisruptionBudgets, listed at most every [`PDBS_REFRESH`].
#[derive(Debug, Default)]
pub(crate) struct DrainPods {
    view: tokio::sync::Mutex<Option<Arc<PodWatch>>>,
    pdbs: tokio::sync::Mutex<Option<(Arc<Vec<PodDisruptionBudget>>, Instant)>>,
}

impl DrainPods {
    /// Starts the view without waiting for it (so that its initial list runs while other
    /// reads do). No-op once started.
    pub(crate) fn start(&self, ctx: &ActionContext) {
        if let Ok(mut slot) = self.view.try_lock()
            && slot.is_none()
        {
            *slot = Some(Arc::new(PodWatch::start(ctx.client.clone())));
        }
    }

    /// The view, started on first use, once its initial list is in.
    pub(crate) async fn get(&self, ctx: &ActionContext) -> Result<Arc<PodWatch>, ActionError> {
        let view = {
            let mut slot = self.view.lock().await;
            slot.get_or_insert_with(|| Arc::new(PodWatch::start(ctx.client.clone())))
                .clone()
        };
        view.ready(ctx.call_timeout * VIEW_READY_CALLS).await?;
        Ok(view)
    }

    /// The PodDisruptionBudgets of the cluster, listed again when the last list is older
    /// than [`PDBS_REFRESH`].
    pub(crate) async fn pdbs(
        &self,
        ctx: &ActionContext,
    ) -> Result<Arc<Vec<PodDisruptionBudget>>, ActionError> {
        let mut slot = self.pdbs.lock().await;
        if let Some((pdbs, at)) = slot.as_ref()
            && at.elapsed() < PDBS_REFRESH
        {
            return Ok(pdbs.clone());
        }
        let api = Pods::new(ctx.client.clone(), ctx.call_timeout);
        let pdbs = Arc::new(api.pdbs_all().await?);
        *slot = Some((pdbs.clone(), Instant::now()));
        Ok(pdbs)
    }
}

/// The pods an eviction mutation lists in its request.
fn pods_of(mutation: &Mutation) -> Vec<ObjectRef> {
    mutation.request["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some(pod_ref(p["namespace"].as_str()?, p["name"].as_str()?)))
        .collect()
}

/// Plans the next wave: the evictable pods on `drained` nodes, at most `max_concurrent`, each
/// allowed by every PDB that selects it (budgets computed from `pods`). When every remaining
/// pod is blocked, the wave holds one of them anyway: its eviction retries on 429 until a
/// budget frees up or the step times out.
pub(crate) fn plan_wave<P: Borrow<Pod>>(
    drained: &BTreeSet<String>,
    all_pods: &[P],
    pdbs: &[PodDisruptionBudget],
    settings: DrainSettings,
) -> Wave {
    let mut wave = Wave::default();
    let mut candidates: Vec<&Pod> = Vec::new();
    // Nodes whose pods are still going away: being drained, whether or not they hold
    // evictable pods.
    let mut emptying: BTreeSet<&str> = BTreeSet::new();
    for pod in all_pods.iter().map(Borrow::borrow) {
        let Some(node) = pods::node_name(pod) else {
            continue;
        };
        if !drained.contains(node) {
            continue;
        }
        match pods::drain_skip_reason(
            pod,
            settings.ignore_daemon_sets,
            settings.delete_emptydir_data,
        ) {
            Some("already terminating") => {
                emptying.insert(node);
                wave.terminating
                    .push(format!("{}/{}", pods::namespace(pod), pods::name(pod)))
            }
            Some(reason) => wave.skipped.push(format!(
                "{}/{}: {reason}",
                pods::namespace(pod),
                pods::name(pod)
            )),
            None => candidates.push(pod),
        }
    }
    candidates.sort_by_key(|p| (pods::namespace(p), pods::name(p)));
    wave.remaining = candidates.len();
    if let Some(max_nodes) = settings.max_nodes {
        // The first `max_nodes` nodes (by name) being drained: still holding evictable pods,
        // or pods going away (a wave may start while the last one's pods terminate, but the
        // nodes drained at once stay within the limit).
        let active: BTreeSet<&str> = candidates
            .iter()
            .filter_map(|p| pods::node_name(p))
            .chain(emptying)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(max_nodes.max(1))
            .collect();
        candidates.retain(|p| pods::node_name(p).is_some_and(|n| active.contains(n)));
    }
    wave.full = candidates.len().min(settings.max_concurrent.max(1));
    let mut budgets: Vec<i64> = pdbs
        .iter()
        .map(|pdb| pods::pdb_disruptions_allowed(pdb, all_pods))
        .collect();
    let mut chosen: Vec<&Pod> = Vec::new();
    for pod in &candidates {
        if chosen.len() >= settings.max_concurrent.max(1) {
            break;
        }
        let covering: Vec<usize> = pdbs
            .iter()
            .enumerate()
            .filter(|(_, pdb)| pods::pdb_selects(pdb, pod))
            .map(|(i, _)| i)
            .collect();
        // An unready pod does not count against its budget (the API server lets it go too).
        let counts = pods::is_ready(pod);
        if counts && covering.iter().any(|i| budgets[*i] <= 0) {
            wave.blocked += 1;
            continue;
        }
        if counts {
            for i in covering {
                budgets[i] -= 1;
            }
        }
        chosen.push(pod);
    }
    wave.allowed = chosen.len();
    if chosen.is_empty()
        && let Some(first) = candidates.first()
    {
        chosen.push(first);
    }
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in chosen {
        let key = format!("{}/{}", pods::namespace(pod), pods::name(pod));
        match pods::controller_of(pod) {
            Some(owner) if owner.kind == "ReplicaSet" => {
                wave.owners.insert(key, owner.name.clone());
            }
            Some(owner) if owner.kind == "StatefulSet" => {
                wave.owners
                    .insert(key, format!("{STATEFUL_SET_OWNER}{}", owner.name));
            }
            _ => {}
        }
        by_node
            .entry(pods::node_name(pod).unwrap_or_default())
            .or_default()
            .push(pod);
    }
    for (node, node_pods) in by_node {
        wave.mutations.push(eviction_mutation(node, &node_pods));
    }
    wave
}

/// The eviction of some pods of one node (a non-empty list).
pub(crate) fn eviction_mutation(node: &str, node_pods: &[&Pod]) -> Mutation {
    let first = node_pods
        .first()
        .map(|p| format!("{}/{}", pods::namespace(p), pods::name(p)))
        .unwrap_or_default();
    let mut diff = String::new();
    let mut listed = Vec::new();
    let mut pre = Vec::new();
    for pod in node_pods {
        let (namespace, name) = (pods::namespace(pod), pods::name(pod));
        let owner = pods::controller_of(pod)
            .map(|o| format!("{} {}", o.kind, o.name))
            .unwrap_or_default();
        diff.push_str(&format!("- pod {namespace}/{name} on {node} ({owner})\n"));
        listed.push(json!({ "namespace": namespace, "name": name }));
        pre.push(json!({
            "metadata": {
                "name": name, "namespace": namespace,
                "uid": pod.metadata.uid,
                "resourceVersion": pod.metadata.resource_version,
                "ownerReferences": pod.metadata.owner_references,
            },
            "spec": { "nodeName": node },
        }));
    }
    Mutation {
        id: format!("{EVICT_PREFIX}{node}/{first}"),
        target: super::node_cordon::node_ref(node),
        description: format!("evict {} pod(s) from node {node}", node_pods.len()),
        diff,
        pre_image: json!({ "pods": pre }),
        resource_version: None,
        request: json!({ "pods": listed }),
        inverse: Inverse::None {
            reason: "evicted pods are recreated on other nodes by their controllers".into(),
        },
    }
}

/// The reference of a pod.
pub(crate) fn pod_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    }
}

/// Evicts the mutation's pod (a restart batch's mutation targets one pod), retrying PDB
/// refusals (429) with a capped backoff until `ctx.verify_timeout` has passed.
pub(crate) async fn evict_with_retry(
    ctx: &ActionContext,
    mutation: &Mutation,
) -> Result<Applied, ActionError> {
    let namespace = mutation.target.namespace.clone().unwrap_or_default();
    let deadline = Instant::now() + ctx.verify_timeout;
    evict_pod(ctx, &namespace, &mutation.target.name, deadline).await?;
    Ok(Applied {
        id: mutation.id.clone(),
        target: mutation.target.clone(),
        resource_version_after: None,
    })
}

/// The bound on eviction requests in flight across all the `apply` calls of one action (the
/// engine may apply several eviction mutations of a wave at once).
#[derive(Debug)]
pub(crate) struct InFlight(tokio::sync::Semaphore);

impl InFlight {
    /// At most `limit` (at least 1) evictions at once.
    pub(crate) fn new(limit: usize) -> InFlight {
        InFlight(tokio::sync::Semaphore::new(limit.max(1)))
    }
}

/// Evicts every pod an eviction mutation lists, each eviction holding a permit of `in_flight`
/// while its request (and its retries after PDB refusals, until `ctx.verify_timeout` has
/// passed) run.
pub(crate) async fn evict_listed(
    ctx: &ActionContext,
    mutation: &Mutation,
    in_flight: &InFlight,
) -> Result<Applied, ActionError> {
    use futures::stream::{self, TryStreamExt};
    let deadline = Instant::now() + ctx.verify_timeout;
    let listed = pods_of(mutation);
    stream::iter(listed.iter().map(Ok::<_, ActionError>))
        .try_for_each_concurrent(None, |pod| async move {
            // The semaphore is never closed; a closed one would only lift the bound.
            let _permit = in_flight.0.acquire().await.ok();
            let namespace = pod.namespace.as_deref().unwrap_or_default();
            evict_pod(ctx, namespace, &pod.name, deadline).await
        })
        .await?;
    Ok(Applied {
        id: mutation.id.clone(),
        target: mutation.target.clone(),
        resource_version_after: None,
    })
}

async fn evict_pod(
    ctx: &ActionContext,
    namespace: &str,
    name: &str,
    deadline: Instant,
) -> Result<(), ActionError> {
    let api = Pods::new(ctx.client.clone(), ctx.call_timeout);
    let policy = retry::pdb_eviction(deadline.saturating_duration_since(Instant::now()));
    let mut refusals = 0u32;
    let evicted = retry::retry(
        &policy,
        || async {
            match api.evict(namespace, name).await {
                Ok(EvictOutcome::Evicted | EvictOutcome::Gone) => Ok(()),
                Ok(EvictOutcome::Blocked { message }) => Err(Eviction::Refused(message)),
                Err(err) => Err(Eviction::Failed(err.into())),
            }
        },
        |err| matches!(err, Eviction::Refused(_)),
        retry::never(),
        |_, wait| {
            refusals += 1;
            tracing::debug!(run = %ctx.run_id, step = %ctx.step, pod = %name,
                            backoff_ms = wait.as_millis() as u64, "eviction refused by a PDB, retrying");
        },
    )
    .await;
    match evicted {
        Ok(()) => {
            tracing::info!(run = %ctx.run_id, step = %ctx.step, pod = %name,
                           namespace = %namespace, refusals, "pod evicted");
            Ok(())
        }
        Err(Stopped::Failed(Eviction::Refused(message))) => Err(ActionError::Timeout {
            what: format!(
                "a PodDisruptionBudget to allow evicting pod {namespace}/{name} \
                 ({} refusals, last: {message}); check that the pods it \
                 protects can become Ready elsewhere, or raise the step timeout",
                refusals + 1
            ),
            after: ctx.verify_timeout,
        }),
        Err(Stopped::Failed(Eviction::Failed(err))) => Err(err),
        // `never` does not cancel; a stop request drops this future instead.
        Err(Stopped::Cancelled) => Err(ActionError::Timeout {
            what: format!("evicting pod {namespace}/{name}"),
            after: ctx.verify_timeout,
        }),
    }
}

/// How one eviction attempt did not go through.
enum Eviction {
    /// A PodDisruptionBudget refused it (429): retried.
    Refused(String),
    /// Any other failure: not retried here.
    Failed(ActionError),
}

/// Waits (bounded by `ctx.verify_timeout`) until every evicted pod in `applied` is gone and
/// the ReplicaSets that owned them are fully Ready again, reading the drain's pod view after
/// each change — or, while the drain the last diff planned has pods left, until the next wave
/// has room: the view shows every evicted pod terminating or gone, and the PDBs allow
/// evicting the next wave's pods (all of them, or some once [`WAVE_GATHER`] has passed since
/// the first). The waves overlap as the budgets allow instead of waiting for the slowest
/// replacement. What such an early end leaves unsettled is waited for by the diff that finds
/// nothing left to evict ([`settle_remembered`]), so a drain still ends with every
/// replacement Ready.
pub(crate) async fn wait_evictions_settled(
    ctx: &ActionContext,
    applied: &[Applied],
    owners: &EvictionOwners,
    view: &DrainPods,
) -> Result<(), ActionError> {
    let evicted: Vec<ObjectRef> = applied
        .iter()
        .filter(|a| a.id.starts_with(EVICT_PREFIX))
        .flat_map(|a| owners.pods(&a.id))
        .collect();
    wait_settled(ctx, evicted, owners, view, true).await
}

/// Waits until every eviction this action remembers (of this process) is settled, when an
/// earlier wait ended early for the next wave: called by the diff that finds nothing left to
/// evict, before it reports the drain done.
pub(crate) async fn settle_remembered(
    ctx: &ActionContext,
    owners: &EvictionOwners,
    view: &DrainPods,
) -> Result<(), ActionError> {
    if !owners.unsettled() {
        return Ok(());
    }
    let evicted = owners.all_pods();
    wait_settled(ctx, evicted, owners, view, false).await
}

/// The wait of [`wait_evictions_settled`] on the pods `evicted`; `early`: it may end when the
/// next wave has room.
async fn wait_settled(
    ctx: &ActionContext,
    evicted: Vec<ObjectRef>,
    owners: &EvictionOwners,
    view: &DrainPods,
    early: bool,
) -> Result<(), ActionError> {
    if evicted.is_empty() {
        return Ok(());
    }
    let watch = view.get(ctx).await?;
    let mut changes = watch.subscribe();
    let api = Pods::new(ctx.client.clone(), ctx.call_timeout);
    let deadline = Instant::now() + ctx.verify_timeout;
    let wanted: BTreeSet<(String, String)> = evicted
        .iter()
        .filter_map(|target| {
            let ns = target.namespace.clone().unwrap_or_default();
            owners
                .get(&format!("{ns}/{}", target.name))
                .map(|rs| (ns, rs))
        })
        .collect();
    let drain = owners.drain().filter(|_| early);
    let uids = owners.uids();
    let mut first_room: Option<Instant> = None;
    loop {
        changes.borrow_and_update();
        let live = watch.pods();
        let mut wake = deadline;
        if let Some((drained, settings)) = &drain
            && all_leaving(&live, &evicted, &uids)
        {
            let pdbs = view.pdbs(ctx).await?;
            let next = plan_wave(drained, &live, &pdbs, *settings);
            if next.allowed > 0 {
                let since = *first_room.get_or_insert_with(Instant::now);
                if next.allowed >= next.full || Instant::now() >= since + WAVE_GATHER {
                    tracing::debug!(run = %ctx.run_id, step = %ctx.step, room = next.allowed,
                                    of = next.full, "the next wave has room");
                    owners.set_unsettled(true);
                    return Ok(());
                }
                wake = wake.min(since + WAVE_GATHER);
            }
        }
        let sets = owners.replica_sets(&api, &wanted).await?;
        let Some(what) = unsettled(&live, &evicted, &uids, &sets) else {
            owners.set_unsettled(false);
            return Ok(());
        };
        let refresh = Instant::now() + REPLICA_SETS_REFRESH;
        if watch.changed(&mut changes, wake.min(refresh)).await? {
            continue;
        }
        if Instant::now() >= deadline {
            return Err(ActionError::Timeout {
                what,
                after: ctx.verify_timeout,
            });
        }
    }
}

/// Whether the view shows each evicted pod terminating or gone (so that a wave planned on it
/// cannot pick them again).
fn all_leaving(
    live: &[Arc<Pod>],
    evicted: &[ObjectRef],
    uids: &HashMap<(String, String), String>,
) -> bool {
    let staying = present(live.iter().filter(|p| !pods::is_terminating(p)), uids);
    evicted
        .iter()
        .all(|t| !staying.contains(&(t.namespace.as_deref().unwrap_or_default(), t.name.as_str())))
}

/// `(namespace, name)` of the pods in `live` that may be evicted ones: a pod whose uid differs
/// from the evicted pod's of that name is its replacement (a StatefulSet reuses names), not it.
fn present<'a>(
    live: impl Iterator<Item = &'a Arc<Pod>>,
    uids: &HashMap<(String, String), String>,
) -> HashSet<(&'a str, &'a str)> {
    live.filter(|p| {
        let key = (pods::namespace(p).to_string(), pods::name(p).to_string());
        match (uids.get(&key), p.metadata.uid.as_deref()) {
            (Some(evicted), Some(uid)) => evicted == uid,
            _ => true,
        }
    })
    .map(|p| (pods::namespace(p), pods::name(p)))
    .collect()
}

/// A ReplicaSet a wait needs: its uid and desired replicas.
#[derive(Debug, Clone)]
struct ReplicaSetWant {
    uid: String,
    desired: i64,
}

/// Reads the ReplicaSets and StatefulSets `(namespace, name)` (a StatefulSet's name carries
/// the [`STATEFUL_SET_OWNER`] prefix) concurrently; one deleted meanwhile (a rollout finished)
/// is left out: nothing to wait for. So is a StatefulSet the identity may not read (a chart
/// older than this rule): its replacements are not waited for, as before.
async fn replica_sets(
    api: &Pods,
    wanted: &BTreeSet<(String, String)>,
) -> Result<BTreeMap<(String, String), ReplicaSetWant>, ActionError> {
    let reads = wanted.iter().map(|(ns, name)| async move {
        let read = match name.strip_prefix(STATEFUL_SET_OWNER) {
            Some(sts) => api.stateful_set(ns, sts).await.map(|set| {
                (
                    set.metadata.uid.clone().unwrap_or_default(),
                    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            }),
            None => api.replica_set(ns, name).await.map(|rs| {
                (
                    rs.metadata.uid.clone().unwrap_or_default(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            }),
        };
        match read {
            Ok((uid, desired)) => Ok(Some((
                (ns.clone(), name.clone()),
                ReplicaSetWant {
                    uid,
                    desired: i64::from(desired),
                },
            ))),
            Err(K8sError::NotFound { .. }) => Ok(None),
            Err(err) if err.status_code() == Some(403) && name.starts_with(STATEFUL_SET_OWNER) => {
                tracing::warn!(namespace = %ns, owner = %name,
                               "cannot read the StatefulSet (RBAC): not waiting for its replacements");
                Ok(None)
            }
            Err(err) => Err(ActionError::from(err)),
        }
    });
    Ok(futures::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// `None` when settled (every evicted pod gone, every ReplicaSet in `sets` fully Ready in
/// `live`), else what is still awaited.
fn unsettled(
    live: &[Arc<Pod>],
    evicted: &[ObjectRef],
    uids: &HashMap<(String, String), String>,
    sets: &BTreeMap<(String, String), ReplicaSetWant>,
) -> Option<String> {
    let present = present(live.iter(), uids);
    let still_there: Vec<String> = evicted
        .iter()
        .filter(|t| {
            present.contains(&(t.namespace.as_deref().unwrap_or_default(), t.name.as_str()))
        })
        .map(|t| format!("{}/{}", t.namespace.as_deref().unwrap_or_default(), t.name))
        .collect();
    if !still_there.is_empty() {
        return Some(format!(
            "evicted pods to go away ({} left: {})",
            still_there.len(),
            preview(&still_there)
        ));
    }
    let mut ready: HashMap<&str, i64> = HashMap::new();
    for pod in live {
        if let Some(owner) = pods::controller_of(pod)
            && pods::is_ready(pod)
            && !pods::is_terminating(pod)
        {
            *ready.entry(owner.uid.as_str()).or_default() += 1;
        }
    }
    let not_ready: Vec<String> = sets
        .iter()
        .filter_map(|((ns, name), rs)| {
            let count = ready.get(rs.uid.as_str()).copied().unwrap_or(0);
            (count < rs.desired).then(|| match name.strip_prefix(STATEFUL_SET_OWNER) {
                Some(sts) => format!("statefulset/{ns}/{sts} {count}/{} ready", rs.desired),
                None => format!("replicaset/{ns}/{name} {count}/{} ready", rs.desired),
            })
        })
        .collect();
    if not_ready.is_empty() {
        None
    } else {
        Some(format!(
            "replacement pods to become Ready elsewhere ({})",
            preview(&not_ready)
        ))
    }
}

fn preview(items: &[String]) -> String {
    let mut text = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        text.push_str(&format!(" and {} more", items.len() - 5));
    }
    text
}

/// Observes the cluster (the drain's pod view, the PDBs) and returns the next wave for
/// `drained` nodes. When nothing is left to evict but pods on the drained nodes are still
/// terminating, waits (bounded by `ctx.verify_timeout`) until they are gone, so an empty wave
/// means a drained node.
pub(crate) async fn next_wave(
    ctx: &ActionContext,
    view: &DrainPods,
    drained: &BTreeSet<String>,
    settings: DrainSettings,
) -> Result<Wave, ActionError> {
    let api = Pods::new(ctx.client.clone(), ctx.call_timeout);
    let (watch, pdbs) = tokio::try_join!(view.get(ctx), view.pdbs(ctx))?;
    let mut changes = watch.subscribe();
    let deadline = Instant::now() + ctx.verify_timeout;
    loop {
        changes.borrow_and_update();
        let mut wave = plan_wave(drained, &watch.pods(), &pdbs, settings);
        if wave.mutations.is_empty() && wave.terminating.is_empty() {
            // Drained as the view sees it: confirmed on a fresh (paged) read, so that a change
            // the watch has not delivered yet cannot end the drain early.
            wave = plan_wave(drained, &api.list_all().await?, &pdbs, settings);
        }
        if !wave.mutations.is_empty() || wave.terminating.is_empty() {
            return Ok(wave);
        }
        if !watch.changed(&mut changes, deadline).await? {
            return Err(ActionError::Timeout {
                what: format!(
                    "terminating pods on the drained nodes to go away ({} left: {})",
                    wave.terminating.len(),
                    preview(&wave.terminating)
                ),
                after: ctx.verify_timeout,
            });
        }
    }
}

/// One line describing a wave.
pub(crate) fn wave_summary(wave: &Wave) -> String {
    let mut text = format!(
        "evict {} pod(s) now, {} evictable left in total",
        // One mutation per node: count its pods, not the mutations.
        wave.mutations
            .iter()
            .map(|m| pods_of(m).len())
            .sum::<usize>(),
        wave.remaining
    );
    if wave.blocked > 0 {
        text.push_str(&format!(
            ", {} waiting for PodDisruptionBudget room",
            wave.blocked
        ));
    }
    if !wave.skipped.is_empty() {
        text.push_str(&format!(
            ", {} left alone ({})",
            wave.skipped.len(),
            preview(&wave.skipped)
        ));
    }
    text
}

/// The `node.drain` action.
#[derive(Debug)]
pub struct NodeDrain {
    args: catalog::NodeDrain,
    owners: EvictionOwners,
    pods: DrainPods,
    in_flight: InFlight,
}

// === impl NodeDrain ===

impl NodeDrain {
    /// Checks the arguments (a selection, `maxConcurrent` ≥ 1).
    pub fn new(args: catalog::NodeDrain) -> Result<NodeDrain, ActionError> {
        if args.names.is_empty() && args.selector.as_deref().is_none_or(str::is_empty) {
            return Err(ActionError::Invalid {
                object: "nodes".into(),
                reason: "give `names` or `selector` (or both)".into(),
            });
        }
        if args.max_concurrent == 0 {
            return Err(ActionError::Invalid {
                object: "node.drain".into(),
                reason: "maxConcurrent must be at least 1".into(),
            });
        }
        Ok(NodeDrain {
            in_flight: InFlight::new(args.max_concurrent as usize),
            args,
            owners: EvictionOwners::default(),
            pods: DrainPods::default(),
        })
    }

    fn settings(&self) -> DrainSettings {
        DrainSettings {
            max_concurrent: self.args.max_concurrent as usize,
            max_nodes: None,
            ignore_daemon_sets: self.args.ignore_daemon_sets,
            delete_emptydir_data: self.args.delete_emptydir_data,
        }
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let selected = select_nodes(ctx, &self.args.names, self.args.selector.as_deref()).await?;
        let cordons: Vec<Mutation> = selected
            .iter()
            .filter_map(|n| cordon_mutation(n, &ctx.run_id, &ctx.step))
            .collect();
        if !cordons.is_empty() {
            // The pod view lists while the cordons are written.
            self.pods.start(ctx);
            return Ok(Diff {
                summary: format!(
                    "drain {} node(s): cordon {} first",
                    selected.len(),
                    cordons.len()
                ),
                mutations: cordons,
                progress: None,
            });
        }
        let drained: BTreeSet<String> = selected
            .iter()
            .map(|n| nodes::name(n).to_string())
            .collect();
        let wave = next_wave(ctx, &self.pods, &drained, self.settings()).await?;
        if wave.mutations.is_empty() {
            settle_remembered(ctx, &self.owners, &self.pods).await?;
        }
        self.owners.remember(&wave, &drained, self.settings());
        let progress = Some(self.owners.progress(&wave));
        Ok(Diff {
            summary: format!("drain {} node(s): {}", drained.len(), wave_summary(&wave)),
            mutations: wave.mutations,
            progress,
        })
    }
}

impl Action for NodeDrain {
    fn kind(&self) -> &'static str {
        "node.drain"
    }

    fn targets(&self, _default_namespace: &str) -> Vec<ObjectRef> {
        self.args
            .names
            .iter()
            .map(|n| super::node_cordon::node_ref(n))
            .collect()
    }

    /// Cordons of different nodes and evictions of different pods are independent; the
    /// evictions in flight stay bounded by `maxConcurrent` across them.
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
        Box::pin(async move {
            if mutation.id.starts_with(EVICT_PREFIX) {
                evict_listed(ctx, mutation, &self.in_flight).await
            } else {
                apply_node_patch(ctx, mutation).await
            }
        })
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
    use serde_json::{Value, json};

    fn pod(name: &str, node: &str, app: &str, owner_kind: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "uid": name, "labels": {"app": app},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind,
                    "name": format!("{app}-rs"), "uid": format!("{app}-uid"), "controller": true}]},
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap_or_default()
    }

    fn pdb(app: &str, spec: Value) -> PodDisruptionBudget {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": app}});
        serde_json::from_value(
            json!({"metadata": {"name": app, "namespace": "shop"}, "spec": spec}),
        )
        .unwrap_or_default()
    }

    fn settings(max: usize) -> DrainSettings {
        DrainSettings {
            max_concurrent: max,
            max_nodes: None,
            ignore_daemon_sets: true,
            delete_emptydir_data: true,
        }
    }

    #[test]
    fn waves_respect_pdb_budgets_and_concurrency() {
        let drained = BTreeSet::from(["a-1".to_string()]);
        let mut all = Vec::new();
        for i in 0..6 {
            let node = if i < 3 { "a-1" } else { "b-1" };
            all.push(pod(&format!("web-{i}"), node, "web", "ReplicaSet"));
        }
        all.push(pod("api-0", "a-1", "api", "ReplicaSet"));
        all.push(pod("agent-0", "a-1", "agent", "DaemonSet"));
        // web: 6 healthy, minAvailable 4 → 2 at once; api: no PDB.
        let pdbs = vec![pdb("web", json!({"minAvailable": 4}))];
        let wave = plan_wave(&drained, &all, &pdbs, settings(10));
        let ids: Vec<&str> = wave.mutations.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["evict/a-1/shop/api-0"]);
        let listed: Vec<String> = pods_of(&wave.mutations[0])
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(listed, ["api-0", "web-0", "web-1"]);
        assert_eq!(wave.remaining, 4);
        assert_eq!(wave.blocked, 1);
        assert_eq!(wave.skipped.len(), 1);
        assert!(wave.skipped[0].contains("DaemonSet"));
        assert_eq!(
            wave.owners.get("shop/web-0").map(String::as_str),
            Some("web-rs")
        );
        assert!(matches!(wave.mutations[0].inverse, Inverse::None { .. }));

        let capped = plan_wave(&drained, &all, &pdbs, settings(1));
        assert_eq!(pods_of(&capped.mutations[0]).len(), 1);

        // Two drained nodes, one node at a time: only a-1's pods.
        let two = BTreeSet::from(["a-1".to_string(), "b-1".to_string()]);
        let one_node = DrainSettings {
            max_nodes: Some(1),
            ..settings(100)
        };
        let wave = plan_wave(&two, &all, &[], one_node);
        assert_eq!(wave.remaining, 7);
        assert_eq!(wave.mutations.len(), 1);
        assert_eq!(wave.mutations[0].target.name, "a-1");
        assert_eq!(pods_of(&wave.mutations[0]).len(), 4);
        // Without a node limit, one mutation per node.
        let both = plan_wave(&two, &all, &[], settings(100));
        let targets: Vec<&str> = both
            .mutations
            .iter()
            .map(|m| m.target.name.as_str())
            .collect();
        assert_eq!(targets, ["a-1", "b-1"]);
    }

    #[test]
    fn issue18_a_wave_settles_when_its_pods_are_gone_and_their_replica_sets_ready() {
        let evicted = vec![pod_ref("shop", "web-0")];
        let sets = BTreeMap::from([(
            ("shop".to_string(), "web-rs".to_string()),
            ReplicaSetWant {
                uid: "web-uid".into(),
                desired: 2,
            },
        )]);
        let old = Arc::new(pod("web-0", "a-1", "web", "ReplicaSet"));
        let new = Arc::new(pod("web-1", "b-1", "web", "ReplicaSet"));
        let other = Arc::new(pod("web-2", "b-1", "web", "ReplicaSet"));
        let waiting = unsettled(&[old, new.clone()], &evicted, &HashMap::new(), &sets);
        assert!(
            waiting
                .as_deref()
                .is_some_and(|w| w.contains("go away") && w.contains("shop/web-0")),
            "{waiting:?}"
        );
        let waiting = unsettled(std::slice::from_ref(&new), &evicted, &HashMap::new(), &sets);
        assert!(
            waiting
                .as_deref()
                .is_some_and(|w| w.contains("replicaset/shop/web-rs 1/2 ready")),
            "{waiting:?}"
        );
        assert_eq!(
            unsettled(&[new, other], &evicted, &HashMap::new(), &sets),
            None
        );
        // A ReplicaSet deleted meanwhile is not in `sets`: nothing to wait for.
        assert_eq!(
            unsettled(&[], &evicted, &HashMap::new(), &BTreeMap::new()),
            None
        );
    }

    fn terminating(mut pod: Pod) -> Pod {
        pod.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-12-03T11:00:00Z")).expect("a timestamp"));
        pod
    }

    #[test]
    fn issue18_nodes_whose_pods_are_going_away_count_as_drained_at_once() {
        let drained = BTreeSet::from(["a-1".to_string(), "a-2".to_string()]);
        let all = vec![
            terminating(pod("web-0", "a-1", "web", "ReplicaSet")),
            pod("web-1", "a-2", "web", "ReplicaSet"),
            pod("web-2", "b-1", "web", "ReplicaSet"),
        ];
        let one_node = DrainSettings {
            max_nodes: Some(1),
            ..settings(10)
        };
        // a-1 is still being drained (its pod terminates): a-2 waits for the node slot.
        let wave = plan_wave(&drained, &all, &[], one_node);
        assert!(wave.mutations.is_empty(), "{:?}", wave.mutations);
        assert_eq!((wave.allowed, wave.full), (0, 0));
        assert_eq!(wave.terminating, ["shop/web-0"]);
        // Once a-1 is empty, a-2 goes.
        let wave = plan_wave(&drained, &all[1..], &[], one_node);
        assert_eq!(wave.mutations.len(), 1);
        assert_eq!((wave.allowed, wave.full), (1, 1));
        // Two nodes at once: a-2 goes while a-1's pod terminates.
        let wave = plan_wave(&drained, &all, &[], settings(10));
        assert_eq!(wave.mutations[0].target.name, "a-2");
    }

    #[test]
    fn issue18_allowed_counts_what_the_budgets_let_go_now() {
        let drained = BTreeSet::from(["a-1".to_string()]);
        let mut all: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("web-{i}"), "a-1", "web", "ReplicaSet"))
            .collect();
        all.extend((4..8).map(|i| pod(&format!("web-{i}"), "b-1", "web", "ReplicaSet")));
        let pdbs = vec![pdb("web", json!({"maxUnavailable": 2}))];
        let wave = plan_wave(&drained, &all, &pdbs, settings(10));
        assert_eq!((wave.allowed, wave.full), (2, 4));
        // Fully blocked: the one pod tried anyway is not room.
        let pdbs = vec![pdb("web", json!({"maxUnavailable": 0}))];
        let wave = plan_wave(&drained, &all, &pdbs, settings(10));
        assert_eq!(pods_of(&wave.mutations[0]).len(), 1);
        assert_eq!((wave.allowed, wave.full), (0, 4));
    }

    #[test]
    fn issue18_a_wait_plans_on_the_view_only_once_it_shows_the_evictions() {
        let evicted = vec![pod_ref("shop", "web-0"), pod_ref("shop", "web-1")];
        let web0 = Arc::new(pod("web-0", "a-1", "web", "ReplicaSet"));
        let web0_leaving = Arc::new(terminating(pod("web-0", "a-1", "web", "ReplicaSet")));
        let other = Arc::new(pod("web-2", "a-1", "web", "ReplicaSet"));
        // web-0 still looks untouched: the watch has not delivered its eviction yet.
        assert!(!all_leaving(
            &[web0, other.clone()],
            &evicted,
            &HashMap::new()
        ));
        // web-0 terminating, web-1 gone.
        assert!(all_leaving(
            &[web0_leaving, other],
            &evicted,
            &HashMap::new()
        ));
    }

    #[test]
    fn a_pod_recreated_under_the_evicted_ones_name_is_its_replacement() {
        // A StatefulSet recreates web-0 under the same name (new uid) on another node.
        let evicted = vec![pod_ref("shop", "web-0")];
        let uids = HashMap::from([(
            ("shop".to_string(), "web-0".to_string()),
            "uid-old".to_string(),
        )]);
        let mut again = pod("web-0", "b-1", "web", "StatefulSet");
        again.metadata.uid = Some("uid-new".into());
        let again = Arc::new(again);
        assert!(all_leaving(std::slice::from_ref(&again), &evicted, &uids));
        assert_eq!(
            unsettled(
                std::slice::from_ref(&again),
                &evicted,
                &uids,
                &BTreeMap::new()
            ),
            None
        );
        // The evicted pod itself (same uid) is still there.
        let mut same = pod("web-0", "a-1", "web", "StatefulSet");
        same.metadata.uid = Some("uid-old".into());
        let same = Arc::new(same);
        assert!(!all_leaving(std::slice::from_ref(&same), &evicted, &uids));
        assert!(
            unsettled(
                std::slice::from_ref(&same),
                &evicted,
                &uids,
                &BTreeMap::new()
            )
            .is_some()
        );
    }

    #[test]
    fn a_fully_blocked_wave_still_tries_one_pod() {
        let drained = BTreeSet::from(["a-1".to_string()]);
        let all = vec![
            pod("web-0", "a-1", "web", "ReplicaSet"),
            pod("web-1", "b-1", "web", "ReplicaSet"),
        ];
        let pdbs = vec![pdb("web", json!({"minAvailable": 2}))];
        let wave = plan_wave(&drained, &all, &pdbs, settings(10));
        assert_eq!(pods_of(&wave.mutations[0]).len(), 1);
        assert_eq!(wave.blocked, 1);
    }
}
