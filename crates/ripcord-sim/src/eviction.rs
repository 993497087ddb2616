//! The Eviction API: PodDisruptionBudget accounting for `pods/eviction`.
//!
//! Mirrors the API server's eviction REST handler: terminal and pending pods are deleted
//! without a budget check; a pod matched by no PDB is always evictable; a pod matched by more
//! than one PDB is refused (500); otherwise the budget is computed from the currently healthy
//! (ready) pods and the eviction is refused with 429 and the real message when no disruption is
//! allowed. Unhealthy pods are evictable while the budget is met (`IfHealthyBudget`) or always
//! (`AlwaysAllow`). DaemonSet pods are evictable like any other.
//!
//! Evictions run concurrently, as on a real API server. The real one reads the PDB's
//! `status.disruptionsAllowed` and decrements it with an optimistic (resourceVersion-checked)
//! update, retrying on conflict: two evictions under one budget cannot both spend its last
//! disruption, evictions under different budgets do not wait for each other. Here the budget
//! is computed from the pods themselves (no stale status), so the check and the deletion
//! hold a lock of *that PDB* (namespace/name) instead: evictions of pods under one PDB take
//! turns, evictions under different PDBs, or of pods no PDB selects, run in parallel. The
//! check is cheap (the selected pods are counted in place in the store, none is copied), so a
//! turn is short.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use serde_json::Value;

use crate::controllers::{disruption, util};
use crate::invariants::InvariantMonitor;
use crate::server::EvictOptions;
use crate::store::{Store, StoreError, kinds};

/// One lock per PodDisruptionBudget, by (namespace, name): held from the budget check to the
/// pod's deletion, so that two concurrent evictions (kubectl drain and ripcord evict pods in
/// parallel) cannot both pass the check for the same budget.
static PDB_LOCKS: LazyLock<Mutex<HashMap<(String, String), PdbLock>>> =
    LazyLock::new(Mutex::default);

/// The lock of one PDB, shared by the evictions under it.
type PdbLock = Arc<Mutex<()>>;

/// How often an eviction re-reads the pod when its PDBs changed while it waited for a PDB's
/// lock (a conflict, in the API server's terms) before giving up with what it last saw.
const CONFLICT_RETRIES: usize = 5;

/// The lock of one PDB (the map entry is created on first use and kept: one per PDB name).
fn pdb_lock(ns: &str, name: &str) -> PdbLock {
    let mut locks = PDB_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks
        .entry((ns.to_string(), name.to_string()))
        .or_default()
        .clone()
}

fn hold(lock: &Mutex<()>) -> MutexGuard<'_, ()> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// The API server's message when a PDB blocks an eviction.
pub const DISRUPTION_BUDGET_MESSAGE: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// Why an eviction was refused.
#[derive(Debug, thiserror::Error)]
pub enum EvictionError {
    /// The pod does not exist (404).
    #[error("pods \"{name}\" not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
    },
    /// A PodDisruptionBudget does not allow the disruption (429 TooManyRequests).
    #[error("{message}")]
    DisruptionNotAllowed {
        /// The API server's message.
        message: String,
        /// The `DisruptionBudget` cause: which budget, how many healthy pods it needs and has.
        cause: String,
    },
    /// More than one PDB matches the pod (500).
    #[error(
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    )]
    MultiplePdbs {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
    },
    /// Deleting the pod failed.
    #[error("cannot delete pod {namespace}/{name}")]
    Delete {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The store's error.
        source: StoreError,
    },
}

impl EvictionError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            EvictionError::NotFound { .. } => "not_found",
            EvictionError::DisruptionNotAllowed { .. } => "disruption_not_allowed",
            EvictionError::MultiplePdbs { .. } => "multiple_pdbs",
            EvictionError::Delete { .. } => "delete_failed",
        }
    }

    /// The HTTP status code the API server answers with.
    pub fn code(&self) -> u16 {
        match self {
            EvictionError::NotFound { .. } => 404,
            EvictionError::DisruptionNotAllowed { .. } => 429,
            EvictionError::MultiplePdbs { .. } => 500,
            EvictionError::Delete { source, .. } => source.code(),
        }
    }

    /// The `Status.reason` the API server uses.
    pub fn reason(&self) -> &'static str {
        match self {
            EvictionError::NotFound { .. } => "NotFound",
            EvictionError::DisruptionNotAllowed { .. } => "TooManyRequests",
            EvictionError::MultiplePdbs { .. } => "InternalError",
            EvictionError::Delete { source, .. } => source.reason(),
        }
    }
}

/// Evicts `ns/pod` if its disruption budget allows it: the pod is deleted gracefully (it stays
/// Terminating for its grace period, as on a real cluster). A pod that is already terminating
/// is evicted at once (success), as upstream.
pub fn evict(
    store: &Store,
    monitor: &InvariantMonitor,
    ns: &str,
    pod: &str,
) -> Result<(), EvictionError> {
    evict_with(store, monitor, ns, pod, &EvictOptions::default())
}

/// [`evict`] with the Eviction's `deleteOptions`: a dry run checks the budget and deletes
/// nothing; `gracePeriodSeconds` overrides the pod's.
pub fn evict_with(
    store: &Store,
    monitor: &InvariantMonitor,
    ns: &str,
    pod: &str,
    options: &EvictOptions,
) -> Result<(), EvictionError> {
    // The PDB whose lock is taken for the next read: (name, lock).
    let mut locked: Option<(String, PdbLock)> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let guard = locked.as_ref().map(|(_, lock)| hold(lock));
        let target = store
            .get(&kinds::pods(), Some(ns), pod)
            .ok_or_else(|| not_found(ns, pod))?;
        let phase = util::str_at(&target, &["status", "phase"]).unwrap_or("Pending");
        let ignores_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending")
            || util::at(&target, &["metadata", "deletionTimestamp"]).is_some();
        if ignores_pdb {
            return delete(store, monitor, ns, pod, &target, options);
        }
        // The PDBs of the namespace that select the pod (only those are copied).
        let (matching, _, _) = store.list_page(
            &kinds::pod_disruption_budgets(),
            Some(ns),
            None,
            None,
            |pdb| {
                let sel = util::at(pdb, &["spec", "selector"]).unwrap_or(&Value::Null);
                util::selector_matches_labels_of(sel, &target)
            },
        );
        if matching.len() > 1 {
            return Err(EvictionError::MultiplePdbs {
                namespace: ns.to_string(),
                name: pod.to_string(),
            });
        }
        let Some(pdb) = matching.first() else {
            return delete(store, monitor, ns, pod, &target, options);
        };
        let pdb_name = util::name(pdb);
        if guard.is_some() && locked.as_ref().is_some_and(|(name, _)| name == pdb_name) {
            // Read under this PDB's lock: no other eviction spends this budget until the
            // pod is deleted (or the eviction refused).
            check_budget(store, ns, pod, &target, pdb)?;
            return delete(store, monitor, ns, pod, &target, options);
        }
        drop(guard);
        if attempt > CONFLICT_RETRIES {
            // The pod's PDB kept changing while the eviction waited for its lock.
            return Err(EvictionError::DisruptionNotAllowed {
                message: DISRUPTION_BUDGET_MESSAGE.to_string(),
                cause: format!("The disruption budget {pdb_name} is being changed; retry"),
            });
        }
        // Take this PDB's lock and read the pod and its PDBs again under it.
        locked = Some((pdb_name.to_string(), pdb_lock(ns, pdb_name)));
    }
}

fn not_found(ns: &str, pod: &str) -> EvictionError {
    EvictionError::NotFound {
        namespace: ns.to_string(),
        name: pod.to_string(),
    }
}

/// Refuses the eviction of `target` when `pdb` allows no disruption now (computed from the
/// pods in the store).
fn check_budget(
    store: &Store,
    ns: &str,
    pod: &str,
    target: &Value,
    pdb: &Value,
) -> Result<(), EvictionError> {
    let budget = disruption::budget_from_store(store, pdb);
    let healthy = util::is_pod_ready(target);
    let always_allow =
        util::str_at(pdb, &["spec", "unhealthyPodEvictionPolicy"]) == Some("AlwaysAllow");
    let unhealthy_ok =
        !healthy && (always_allow || budget.current_healthy >= budget.desired_healthy);
    if !unhealthy_ok && budget.disruptions_allowed <= 0 {
        tracing::debug!(namespace = ns, pod, pdb = %util::name(pdb),
            healthy = budget.current_healthy, desired = budget.desired_healthy, "eviction refused by disruption budget");
        return Err(EvictionError::DisruptionNotAllowed {
            message: DISRUPTION_BUDGET_MESSAGE.to_string(),
            cause: format!(
                "The disruption budget {} needs {} healthy pods and has {} currently",
                util::name(pdb),
                budget.desired_healthy,
                budget.current_healthy
            ),
        });
    }
    Ok(())
}

/// The eviction itself, once allowed: the pod is deleted gracefully (nothing on a dry run).
fn delete(
    store: &Store,
    monitor: &InvariantMonitor,
    ns: &str,
    pod: &str,
    target: &Value,
    options: &EvictOptions,
) -> Result<(), EvictionError> {
    if options.dry_run {
        return Ok(());
    }
    monitor.note_eviction(util::uid(target));
    match store.delete_gracefully(
        &kinds::pods(),
        Some(ns),
        pod,
        options.grace_period_seconds,
        &[],
    ) {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound { .. }) => Err(not_found(ns, pod)),
        Err(source) => Err(EvictionError::Delete {
            namespace: ns.to_string(),
            name: pod.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use serde_json::json;

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
               "spec": {"containers": [{"name": "web", "image": "web:1"}]},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[tokio::test]
    async fn pdb_blocks_with_the_real_message_and_unmatched_pods_go() {
        let store = Store::new(SimClock::new(1.0));
        let monitor = InvariantMonitor::new();
        for (n, r) in [("a", true), ("b", true), ("c", false)] {
            store.create(&kinds::pods(), pod(n, r)).expect("create pod");
        }
        store
            .create(
                &kinds::pod_disruption_budgets(),
                json!({"metadata": {"name": "web", "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}}),
            )
            .expect("create pdb");
        // 2 healthy, 1 required: one eviction allowed.
        evict(&store, &monitor, "shop", "a").expect("first eviction allowed");
        let err = evict(&store, &monitor, "shop", "b").expect_err("budget exhausted");
        assert_eq!(err.code(), 429);
        assert_eq!(
            err.to_string(),
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        // The unhealthy pod may go while the budget is met (1 healthy >= 1).
        evict(&store, &monitor, "shop", "c").expect("unhealthy pod evictable");
        assert!(matches!(
            evict(&store, &monitor, "shop", "zzz"),
            Err(EvictionError::NotFound { .. })
        ));
        let mut other = pod("x", true);
        other["metadata"]["labels"] = json!({"app": "other"});
        store.create(&kinds::pods(), other).expect("create");
        evict(&store, &monitor, "shop", "x").expect("no PDB matches");
    }

    #[tokio::test]
    async fn concurrent_evictions_never_overdraw_the_budget() {
        let store = Store::new(SimClock::new(1.0));
        let monitor = InvariantMonitor::new();
        let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        for n in &names {
            store
                .create(&kinds::pods(), pod(n, true))
                .expect("create pod");
        }
        store
            .create(
                &kinds::pod_disruption_budgets(),
                json!({"metadata": {"name": "web", "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 6}}),
            )
            .expect("create pdb");
        let handles: Vec<_> = names
            .into_iter()
            .map(|n| {
                let (store, monitor) = (store.clone(), monitor.clone());
                std::thread::spawn(move || evict(&store, &monitor, "shop", &n).is_ok())
            })
            .collect();
        let allowed = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|ok| *ok)
            .count();
        assert_eq!(allowed, 2);
        assert_eq!(store.list(&kinds::pods(), Some("shop")).0.len(), 6);
    }

    /// `n` ready pods labelled `app`, bound to a node (so an eviction leaves them
    /// Terminating, as on a real cluster), and a PDB `app` over them allowing `allowed`.
    fn budgeted_app(store: &Store, app: &str, n: usize, allowed: usize) -> Vec<String> {
        let names: Vec<String> = (0..n).map(|i| format!("{app}-{i}")).collect();
        for name in &names {
            let mut p = pod(name, true);
            p["metadata"]["labels"] = json!({"app": app});
            p["spec"]["nodeName"] = json!("node-1");
            store.create(&kinds::pods(), p).expect("create pod");
        }
        store
            .create(
                &kinds::pod_disruption_budgets(),
                json!({"metadata": {"name": app, "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": app}}, "minAvailable": n - allowed}}),
            )
            .expect("create pdb");
        names
    }

    #[tokio::test]
    async fn many_concurrent_evictions_spend_each_budget_exactly() {
        let store = Store::new(SimClock::new(1.0));
        let monitor = InvariantMonitor::new();
        // Two budgets of 40 pods, 7 and 3 disruptions allowed; 80 threads at once.
        let mut all: Vec<String> = budgeted_app(&store, "web", 40, 7);
        all.extend(budgeted_app(&store, "api", 40, 3));
        let barrier = Arc::new(std::sync::Barrier::new(all.len()));
        let handles: Vec<_> = all
            .into_iter()
            .map(|n| {
                let (store, monitor, barrier) = (store.clone(), monitor.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let result = evict(&store, &monitor, "shop", &n);
                    (n, result.map_err(|e| e.code()))
                })
            })
            .collect();
        let results: Vec<(String, Result<(), u16>)> = handles
            .into_iter()
            .map(|h| h.join().expect("eviction thread"))
            .collect();
        let allowed = |app: &str| {
            results
                .iter()
                .filter(|(n, r)| n.starts_with(app) && r.is_ok())
                .count()
        };
        assert_eq!((allowed("web-"), allowed("api-")), (7, 3));
        assert!(
            results.iter().all(|(_, r)| matches!(r, Ok(()) | Err(429))),
            "refusals are 429s: {results:?}"
        );
        // The evicted pods are Terminating; the budgets are spent, not overdrawn.
        for (app, healthy) in [("web", 33), ("api", 37)] {
            let pdb = store
                .get(&kinds::pod_disruption_budgets(), Some("shop"), app)
                .expect("pdb");
            let b = disruption::budget_from_store(&store, &pdb);
            assert_eq!((b.current_healthy, b.disruptions_allowed), (healthy, 0));
        }
    }

    #[tokio::test]
    async fn evictions_under_different_budgets_do_not_wait_for_each_other() {
        let store = Store::new(SimClock::new(1.0));
        let monitor = InvariantMonitor::new();
        // Unique names: the PDB locks are process-wide.
        let held = budgeted_app(&store, "held-budget", 4, 2);
        let free = budgeted_app(&store, "free-budget", 4, 2);
        // Someone is inside `held-budget`'s check (its lock is taken).
        let lock = pdb_lock("shop", "held-budget");
        let guard = hold(&lock);
        let spawn = |name: String| {
            let (store, monitor) = (store.clone(), monitor.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(evict(&store, &monitor, "shop", &name).is_ok());
            });
            rx
        };
        let waiting = spawn(held[0].clone());
        let other = spawn(free[0].clone());
        let unbudgeted = {
            let mut p = pod("loner", true);
            p["metadata"]["labels"] = json!({"app": "loner"});
            store.create(&kinds::pods(), p).expect("create");
            spawn("loner".to_string())
        };
        let timeout = std::time::Duration::from_secs(10);
        assert_eq!(other.recv_timeout(timeout), Ok(true), "other budget evicts");
        assert_eq!(
            unbudgeted.recv_timeout(timeout),
            Ok(true),
            "no budget: evicts"
        );
        assert!(
            waiting
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "an eviction under a budget being checked waits for its turn"
        );
        drop(guard);
        assert_eq!(waiting.recv_timeout(timeout), Ok(true), "then evicts");
    }

    #[tokio::test]
    async fn dry_runs_and_terminating_pods_spend_nothing() {
        let store = Store::new(SimClock::new(1.0));
        let monitor = InvariantMonitor::new();
        let names = budgeted_app(&store, "dry", 3, 1);
        let dry = EvictOptions {
            dry_run: true,
            grace_period_seconds: None,
        };
        for _ in 0..3 {
            evict_with(&store, &monitor, "shop", &names[0], &dry).expect("dry run allowed");
        }
        evict(&store, &monitor, "shop", &names[0]).expect("allowed");
        // Already Terminating: evicted again at once, the budget is not consulted.
        evict(&store, &monitor, "shop", &names[0]).expect("terminating pod evictable");
        let err = evict_with(&store, &monitor, "shop", &names[1], &dry).expect_err("spent");
        assert_eq!(err.code(), 429);
    }
}
