//! The Eviction API: PodDisruptionBudget accounting for `pods/eviction`.
//!
//! Mirrors the API server's eviction REST handler: terminal and pending pods are deleted
//! without a budget check; a pod matched by no PDB is always evictable; a pod matched by more
//! than one PDB is refused (500); otherwise the budget is computed from the currently healthy
//! (ready) pods and the eviction is refused with 429 and the real message when no disruption is
//! allowed. Unhealthy pods are evictable while the budget is met (`IfHealthyBudget`) or always
//! (`AlwaysAllow`). DaemonSet pods are evictable like any other.

use std::sync::Mutex;

use serde_json::Value;

use crate::controllers::{disruption, util};
use crate::invariants::InvariantMonitor;
use crate::server::EvictOptions;
use crate::store::{Store, StoreError, kinds};

/// Serializes evictions: the budget check and the deletion must be one step, or two
/// concurrent evictions (kubectl drain evicts pods in parallel) could both pass the check.
/// The real API server gets the same effect from its optimistic update of the PDB status.
static EVICTIONS: Mutex<()> = Mutex::new(());

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
    let _serialized = EVICTIONS.lock().unwrap_or_else(|e| e.into_inner());
    let not_found = || EvictionError::NotFound {
        namespace: ns.to_string(),
        name: pod.to_string(),
    };
    let target = store
        .get(&kinds::pods(), Some(ns), pod)
        .ok_or_else(not_found)?;
    let phase = util::str_at(&target, &["status", "phase"]).unwrap_or("Pending");
    let ignores_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending")
        || util::at(&target, &["metadata", "deletionTimestamp"]).is_some();
    if !ignores_pdb {
        let (pdbs, _) = store.list(&kinds::pod_disruption_budgets(), Some(ns));
        let labels = util::labels(&target);
        let matching: Vec<&Value> = pdbs
            .iter()
            .filter(|pdb| {
                let sel = util::at(pdb, &["spec", "selector"])
                    .cloned()
                    .unwrap_or(Value::Null);
                util::selector_matches(&sel, &labels)
            })
            .collect();
        if matching.len() > 1 {
            return Err(EvictionError::MultiplePdbs {
                namespace: ns.to_string(),
                name: pod.to_string(),
            });
        }
        if let Some(pdb) = matching.first() {
            // Only the pods the PDB selects are cloned: with a thousand pods in the namespace,
            // cloning them all made each eviction cost tens of milliseconds under this lock.
            let pods = disruption::selected_pods(store, pdb);
            let budget = disruption::budget(store, pdb, &pods);
            let healthy = util::is_pod_ready(&target);
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
        }
    }
    if options.dry_run {
        return Ok(());
    }
    monitor.note_eviction(util::uid(&target));
    match store.delete_gracefully(
        &kinds::pods(),
        Some(ns),
        pod,
        options.grace_period_seconds,
        &[],
    ) {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound { .. }) => Err(not_found()),
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
}
