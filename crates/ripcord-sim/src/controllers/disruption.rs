//! PodDisruptionBudget accounting (the disruption controller): expected pods, desired and
//! current healthy pods, and `disruptionsAllowed`, computed exactly as the real controller
//! does; shared by the status writer here and by the Eviction API ([`crate::eviction`]).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::Controllers;
use super::util::{self, IntOrPercent, at, i64_at};
use crate::store::{Store, kinds};

const CONTROLLER: &str = "disruption-controller";

/// The numbers of one PodDisruptionBudget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Pods the budget expects (the owning controllers' scale, or the matching pods).
    pub expected_pods: i64,
    /// Healthy pods the budget requires.
    pub desired_healthy: i64,
    /// Ready matching pods not being deleted.
    pub current_healthy: i64,
    /// How many more pods may be disrupted now.
    pub disruptions_allowed: i64,
}

/// Pods of `ns` matched by the PDB's selector.
pub fn matching_pods<'a, P: Borrow<Value>>(pdb: &Value, pods: &'a [P]) -> Vec<&'a Value> {
    let selector = at(pdb, &["spec", "selector"]).cloned().unwrap_or(json!({}));
    pods.iter()
        .map(|p| p.borrow())
        .filter(|p| util::namespace(p) == util::namespace(pdb))
        .filter(|p| util::selector_matches(&selector, &util::labels(p)))
        .collect()
}

/// The pods of the PDB's namespace its selector matches, read from the store (only those are
/// cloned).
pub fn selected_pods(store: &Store, pdb: &Value) -> Vec<Value> {
    let selector = at(pdb, &["spec", "selector"]).cloned().unwrap_or(json!({}));
    let (pods, _, _) = store.list_page(
        &kinds::pods(),
        Some(util::namespace(pdb).unwrap_or("")),
        None,
        None,
        |p| util::selector_matches(&selector, &util::labels(p)),
    );
    pods
}

/// The total scale of the controllers owning `pods` (Deployment through its ReplicaSets,
/// ReplicaSet, StatefulSet; DaemonSet by desiredNumberScheduled; unowned pods count one each).
fn expected_scale(store: &Store, pods: &[&Value]) -> i64 {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // ReplicaSet uid -> (owning Deployment uid and replicas, or the ReplicaSet's replicas).
    let mut rs_scale: BTreeMap<String, Option<(String, i64)>> = BTreeMap::new();
    let mut total = 0;
    for p in pods {
        let ns = util::namespace(p);
        match util::controller_ref(p) {
            Some(("ReplicaSet", name, uid)) => {
                let scale = rs_scale
                    .entry(uid.to_string())
                    .or_insert_with(|| {
                        let rs = store.get(&kinds::replicasets(), ns, name)?;
                        match util::controller_ref(&rs) {
                            Some(("Deployment", dname, duid)) => {
                                let d = store.get(&kinds::deployments(), ns, dname)?;
                                Some((
                                    duid.to_string(),
                                    i64_at(&d, &["spec", "replicas"]).unwrap_or(1),
                                ))
                            }
                            _ => Some((
                                uid.to_string(),
                                i64_at(&rs, &["spec", "replicas"]).unwrap_or(1),
                            )),
                        }
                    })
                    .clone();
                if let Some((owner, replicas)) = scale
                    && seen.insert(owner)
                {
                    total += replicas;
                }
            }
            Some(("StatefulSet", name, uid)) => {
                if seen.insert(uid.to_string())
                    && let Some(s) = store.get(&kinds::statefulsets(), ns, name)
                {
                    total += i64_at(&s, &["spec", "replicas"]).unwrap_or(1);
                }
            }
            Some(("DaemonSet", name, uid)) => {
                if seen.insert(uid.to_string())
                    && let Some(ds) = store.get(&kinds::daemonsets(), ns, name)
                {
                    total += i64_at(&ds, &["status", "desiredNumberScheduled"]).unwrap_or(0);
                }
            }
            _ => total += 1,
        }
    }
    total
}

/// Computes a PDB's budget from the current pods (`pods` may hold any namespace's pods).
pub fn budget<P: Borrow<Value>>(store: &Store, pdb: &Value, pods: &[P]) -> Budget {
    let matching: Vec<&Value> = matching_pods(pdb, pods)
        .into_iter()
        .filter(|p| util::is_pod_active(p))
        .collect();
    let current_healthy = matching.iter().filter(|p| util::is_pod_ready(p)).count() as i64;
    let spec = |k: &str| at(pdb, &["spec", k]).and_then(IntOrPercent::from_value);
    let (expected_pods, desired_healthy) = match (spec("maxUnavailable"), spec("minAvailable")) {
        (Some(max_unavailable), _) => {
            let expected = expected_scale(store, &matching);
            let mu = max_unavailable.scaled(expected, true);
            (expected, (expected - mu).max(0))
        }
        (None, Some(IntOrPercent::Int(min))) => (matching.len() as i64, min),
        (None, Some(min @ IntOrPercent::Percent(_))) => {
            let expected = expected_scale(store, &matching);
            (expected, min.scaled(expected, true))
        }
        (None, None) => (matching.len() as i64, 0),
    };
    let mut allowed = current_healthy - desired_healthy;
    if expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    Budget {
        expected_pods,
        desired_healthy,
        current_healthy,
        disruptions_allowed: allowed,
    }
}

/// Writes every PDB's status.
pub fn reconcile(c: &mut Controllers) {
    let pdbs = c.cache.list(&kinds::pod_disruption_budgets());
    if pdbs.is_empty() {
        return;
    }
    let pods = c.cache.list(&kinds::pods());
    let now = c.now_str();
    for pdb in pdbs {
        let b = budget(&c.store, &pdb, &pods);
        let generation = i64_at(&pdb, &["metadata", "generation"]).unwrap_or(1);
        let (cond_status, reason) = if b.disruptions_allowed > 0 {
            ("True", "SufficientPods")
        } else {
            ("False", "InsufficientPods")
        };
        let current = util::pod_condition(&pdb, "DisruptionAllowed");
        let transition = current
            .filter(|cond| cond.get("status").and_then(Value::as_str) == Some(cond_status))
            .and_then(|cond| cond.get("lastTransitionTime").cloned())
            .unwrap_or(json!(now));
        let status = json!({
            "observedGeneration": generation,
            "disruptionsAllowed": b.disruptions_allowed,
            "currentHealthy": b.current_healthy,
            "desiredHealthy": b.desired_healthy,
            "expectedPods": b.expected_pods,
            "conditions": [{"type": "DisruptionAllowed", "status": cond_status, "reason": reason, "message": "",
                            "observedGeneration": generation, "lastTransitionTime": transition}],
        });
        if at(&pdb, &["status"]) != Some(&status) {
            c.modify(CONTROLLER, &kinds::pod_disruption_budgets(), &pdb, |v| {
                util::set_at(v, &["status"], status);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[tokio::test]
    async fn budgets_follow_the_disruption_controller() {
        let store = Store::new(SimClock::new(1.0));
        let pods = vec![
            pod("a", true),
            pod("b", true),
            pod("c", true),
            pod("d", false),
        ];
        let min3 = json!({"metadata": {"namespace": "shop"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 3}});
        let b = budget(&store, &min3, &pods);
        assert_eq!(
            (
                b.expected_pods,
                b.desired_healthy,
                b.current_healthy,
                b.disruptions_allowed
            ),
            (4, 3, 3, 0)
        );
        let min2 = json!({"metadata": {"namespace": "shop"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2}});
        assert_eq!(budget(&store, &min2, &pods).disruptions_allowed, 1);
        // maxUnavailable 25% of 4 unowned pods rounds up to 1: desired 3.
        let mu = json!({"metadata": {"namespace": "shop"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": "25%"}});
        let b = budget(&store, &mu, &pods);
        assert_eq!(
            (b.expected_pods, b.desired_healthy, b.disruptions_allowed),
            (4, 3, 0)
        );
        // Other namespaces and labels do not count.
        let other = json!({"metadata": {"namespace": "other"}, "spec": {"selector": {}, "minAvailable": 0}});
        assert_eq!(budget(&store, &other, &pods).expected_pods, 0);
    }
}
