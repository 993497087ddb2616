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
        .filter(|p| util::selector_matches_labels_of(&selector, p))
        .collect()
}

/// What a budget needs to know about the active pods a PDB selects: counts and their
/// controllers, not the pods themselves.
#[derive(Debug, Default)]
struct Selected {
    /// Active (not terminal, not being deleted) matching pods.
    active: i64,
    /// Those of them that are Ready.
    healthy: i64,
    /// The ReplicaSet, StatefulSet and DaemonSet controllers of those pods: (kind, name, uid).
    controllers: BTreeSet<(String, String, String)>,
    /// Active matching pods with no such controller (each expects one pod).
    uncontrolled: i64,
}

impl Selected {
    fn add(&mut self, pod: &Value) {
        if !util::is_pod_active(pod) {
            return;
        }
        self.active += 1;
        if util::is_pod_ready(pod) {
            self.healthy += 1;
        }
        match util::controller_ref(pod) {
            Some((kind @ ("ReplicaSet" | "StatefulSet" | "DaemonSet"), name, uid)) => {
                if !self
                    .controllers
                    .iter()
                    .any(|(k, n, u)| k == kind && n == name && u == uid)
                {
                    self.controllers
                        .insert((kind.to_string(), name.to_string(), uid.to_string()));
                }
            }
            _ => self.uncontrolled += 1,
        }
    }
}

/// The total scale of the controllers owning the selected pods (Deployment through its
/// ReplicaSets, ReplicaSet, StatefulSet; DaemonSet by desiredNumberScheduled; uncontrolled
/// pods count one each). The controllers are read in place, not copied.
fn expected_scale(store: &Store, ns: Option<&str>, selected: &Selected) -> i64 {
    let replicas = |v: &Value| i64_at(v, &["spec", "replicas"]).unwrap_or(1);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // ReplicaSet uid -> (owning Deployment uid and replicas, or the ReplicaSet's replicas).
    let mut rs_scale: BTreeMap<&str, Option<(String, i64)>> = BTreeMap::new();
    let mut total = selected.uncontrolled;
    for (kind, name, uid) in &selected.controllers {
        match kind.as_str() {
            "ReplicaSet" => {
                let scale = rs_scale
                    .entry(uid.as_str())
                    .or_insert_with(|| {
                        let owner = store.read(&kinds::replicasets(), ns, name, |rs| {
                            match util::controller_ref(rs) {
                                Some(("Deployment", dname, duid)) => {
                                    Err((dname.to_string(), duid.to_string()))
                                }
                                _ => Ok(replicas(rs)),
                            }
                        })?;
                        match owner {
                            Ok(rs_replicas) => Some((uid.clone(), rs_replicas)),
                            Err((dname, duid)) => {
                                let d_replicas =
                                    store.read(&kinds::deployments(), ns, &dname, replicas)?;
                                Some((duid, d_replicas))
                            }
                        }
                    })
                    .clone();
                if let Some((owner, replicas)) = scale
                    && seen.insert(owner)
                {
                    total += replicas;
                }
            }
            "StatefulSet" => {
                if seen.insert(uid.clone())
                    && let Some(r) = store.read(&kinds::statefulsets(), ns, name, replicas)
                {
                    total += r;
                }
            }
            _ => {
                if seen.insert(uid.clone())
                    && let Some(desired) = store.read(&kinds::daemonsets(), ns, name, |ds| {
                        i64_at(ds, &["status", "desiredNumberScheduled"]).unwrap_or(0)
                    })
                {
                    total += desired;
                }
            }
        }
    }
    total
}

/// Computes a PDB's budget from the current pods (`pods` may hold any namespace's pods).
pub fn budget<P: Borrow<Value>>(store: &Store, pdb: &Value, pods: &[P]) -> Budget {
    let mut selected = Selected::default();
    for p in matching_pods(pdb, pods) {
        selected.add(p);
    }
    budget_of(store, pdb, &selected)
}

/// [`budget`] from the pods in the store: one scan of the PDB's namespace under the store's
/// lock, counting the matching pods in place (none is copied). The Eviction API calls this
/// for every eviction.
pub fn budget_from_store(store: &Store, pdb: &Value) -> Budget {
    let selector = at(pdb, &["spec", "selector"]).cloned().unwrap_or(json!({}));
    let mut selected = Selected::default();
    store.for_each(
        &kinds::pods(),
        Some(util::namespace(pdb).unwrap_or("")),
        |p| {
            if util::selector_matches_labels_of(&selector, p) {
                selected.add(p);
            }
        },
    );
    budget_of(store, pdb, &selected)
}

fn budget_of(store: &Store, pdb: &Value, selected: &Selected) -> Budget {
    let current_healthy = selected.healthy;
    let spec = |k: &str| at(pdb, &["spec", k]).and_then(IntOrPercent::from_value);
    let ns = util::namespace(pdb);
    let (expected_pods, desired_healthy) = match (spec("maxUnavailable"), spec("minAvailable")) {
        (Some(max_unavailable), _) => {
            let expected = expected_scale(store, ns, selected);
            let mu = max_unavailable.scaled(expected, true);
            (expected, (expected - mu).max(0))
        }
        (None, Some(IntOrPercent::Int(min))) => (selected.active, min),
        (None, Some(min @ IntOrPercent::Percent(_))) => {
            let expected = expected_scale(store, ns, selected);
            (expected, min.scaled(expected, true))
        }
        (None, None) => (selected.active, 0),
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

    #[tokio::test]
    async fn the_store_scan_counts_what_the_pod_list_does() {
        let store = Store::new(SimClock::new(1.0));
        let d = store
            .create(
                &kinds::deployments(),
                json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 10}}),
            )
            .expect("deployment");
        let rs = store
            .create(
                &kinds::replicasets(),
                json!({"metadata": {"name": "web-abc", "namespace": "shop",
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                             "uid": util::uid(&d), "controller": true}]},
                       "spec": {"replicas": 10}}),
            )
            .expect("replicaset");
        for i in 0..10 {
            let mut p = pod(&format!("web-abc-{i}"), i != 8);
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-abc", "uid": util::uid(&rs), "controller": true}]);
            p["spec"] = json!({"nodeName": "node-1"});
            store.create(&kinds::pods(), p).expect("pod");
        }
        // One of them Terminating (not active), two more pods without a controller, one pod
        // of another app and one in another namespace.
        store
            .delete_gracefully(&kinds::pods(), Some("shop"), "web-abc-9", Some(30), &[])
            .expect("delete");
        for name in ["loose-1", "loose-2"] {
            store.create(&kinds::pods(), pod(name, true)).expect("pod");
        }
        let mut other = pod("other", true);
        other["metadata"]["labels"] = json!({"app": "other"});
        store.create(&kinds::pods(), other).expect("pod");
        let mut elsewhere = pod("elsewhere", true);
        elsewhere["metadata"]["namespace"] = json!("default");
        store.create(&kinds::pods(), elsewhere).expect("pod");
        let (pods, _) = store.list(&kinds::pods(), None);
        for spec in [
            json!({"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": "10%"}),
            json!({"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": 1}),
            json!({"selector": {"matchLabels": {"app": "web"}}, "minAvailable": "50%"}),
            json!({"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 7}),
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}),
        ] {
            let pdb = json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": spec});
            assert_eq!(
                budget_from_store(&store, &pdb),
                budget(&store, &pdb, &pods),
                "{spec}"
            );
        }
        // maxUnavailable 10% of the Deployment's 10 and the 2 loose pods: 2; 10 desired; 10
        // healthy (8 of the ReplicaSet's, one not ready, one terminating; 2 loose).
        let pdb = json!({"metadata": {"name": "web", "namespace": "shop"},
                         "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": "10%"}});
        assert_eq!(
            budget_from_store(&store, &pdb),
            Budget {
                expected_pods: 12,
                desired_healthy: 10,
                current_healthy: 10,
                disruptions_allowed: 0
            }
        );
    }
}
