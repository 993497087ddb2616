//! The ReplicaSet controller: creates pods (`<rs>-<5 random chars>` through `generateName`)
//! and deletes surplus ones, least valuable first (unscheduled, pending, not ready, ready
//! for the shortest time, most restarts, newest), and keeps the status counters.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Controllers;
use super::events::{EventType, emit};
use super::util::{self, at, i64_at, str_at};
use crate::store::kinds;

const CONTROLLER: &str = "replicaset-controller";
/// Most pods created or deleted per ReplicaSet per sync (the real controller's burstReplicas).
const BURST_REPLICAS: i64 = 500;

/// A pod for `owner` (a ReplicaSet or DaemonSet) from its template, named by `generateName`,
/// with the defaults admission adds (service account, not-ready/unreachable tolerations).
pub fn pod_for(owner: &Value) -> Value {
    let template = at(owner, &["spec", "template"])
        .cloned()
        .unwrap_or(json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    let s = util::object_at_mut(&mut spec, &[]);
    s.entry("serviceAccountName").or_insert(json!("default"));
    s.entry("serviceAccount").or_insert(json!("default"));
    s.entry("enableServiceLinks").or_insert(json!(true));
    s.entry("preemptionPolicy")
        .or_insert(json!("PreemptLowerPriority"));
    s.entry("priority").or_insert(json!(0));
    let tolerations = s.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !list
                .iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
            {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    let mut meta = json!({
        "generateName": format!("{}-", util::name(owner)),
        "namespace": util::namespace(owner),
        "ownerReferences": [util::owner_reference(owner)],
    });
    if let Some(labels) = at(&template, &["metadata", "labels"]) {
        util::set_at(&mut meta, &["labels"], labels.clone());
    }
    if let Some(anns) = at(&template, &["metadata", "annotations"]) {
        util::set_at(&mut meta, &["annotations"], anns.clone());
    }
    let qos = if util::pod_requests(&spec) == (0, 0) {
        "BestEffort"
    } else {
        "Burstable"
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": qos},
    })
}

/// Groups active pods by their controller's uid.
pub fn pods_by_owner(pods: &[Arc<Value>]) -> BTreeMap<String, Vec<Arc<Value>>> {
    let mut out: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
    for p in pods.iter().filter(|p| util::is_pod_active(p)) {
        if let Some((_, _, uid)) = util::controller_ref(p) {
            out.entry(uid.to_string()).or_default().push(p.clone());
        }
    }
    out
}

/// Deletion preference: `Less` means delete `a` before `b` (`ActivePodsWithRanks`).
fn deletion_order(a: &Value, b: &Value) -> Ordering {
    let assigned = |p: &Value| str_at(p, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
    let phase_rank = |p: &Value| match str_at(p, &["status", "phase"]) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let ready_since = |p: &Value| {
        util::pod_condition(p, "Ready")
            .filter(|_| util::is_pod_ready(p))
            .and_then(|c| c.get("lastTransitionTime"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let restarts = |p: &Value| {
        at(p, &["status", "containerStatuses"])
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let created = |p: &Value| {
        str_at(p, &["metadata", "creationTimestamp"])
            .unwrap_or("")
            .to_string()
    };
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(util::is_pod_ready(a).cmp(&util::is_pod_ready(b)))
        // Ready more recently (later timestamp) goes first.
        .then(ready_since(b).cmp(&ready_since(a)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
        .then(util::name(b).cmp(util::name(a)))
}

/// Runs the ReplicaSet controller over every ReplicaSet.
pub fn reconcile(c: &mut Controllers) {
    let sets = c.cache.list(&kinds::replicasets());
    if sets.is_empty() {
        return;
    }
    let pods = c.cache.list(&kinds::pods());
    let mut by_owner = pods_by_owner(&pods);
    for rs in sets {
        if at(&rs, &["metadata", "deletionTimestamp"]).is_some() {
            continue;
        }
        let mut owned = by_owner.remove(util::uid(&rs)).unwrap_or_default();
        let desired = i64_at(&rs, &["spec", "replicas"])
            .unwrap_or(1)
            .clamp(0, i64::from(i32::MAX));
        let diff = (owned.len() as i64 - desired).clamp(-BURST_REPLICAS, BURST_REPLICAS);
        if diff < 0 {
            for _ in 0..(-diff) {
                match c.create(CONTROLLER, &kinds::pods(), pod_for(&rs)) {
                    Ok(pod) => {
                        emit(
                            c,
                            &rs,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", util::name(&pod)),
                            CONTROLLER,
                        );
                        owned.push(Arc::new(pod));
                    }
                    Err(error) => {
                        emit(
                            c,
                            &rs,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {error}"),
                            CONTROLLER,
                        );
                        break;
                    }
                }
            }
        } else if diff > 0 {
            owned.sort_by(|a, b| deletion_order(a, b));
            let doomed: Vec<Arc<Value>> = owned.drain(..diff as usize).collect();
            for pod in doomed {
                if c.delete(CONTROLLER, &kinds::pods(), &pod) {
                    emit(
                        c,
                        &rs,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", util::name(&pod)),
                        CONTROLLER,
                    );
                    emit(
                        c,
                        &pod,
                        EventType::Normal,
                        "Killing",
                        &format!("Stopping container {}", first_container(&pod)),
                        "kubelet",
                    );
                }
            }
        }
        write_status(c, &rs, &owned);
    }
}

/// The name of the first container of a pod.
pub fn first_container(pod: &Value) -> &str {
    at(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .and_then(|cs| cs.first())
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn write_status(c: &mut Controllers, rs: &Value, owned: &[Arc<Value>]) {
    let min_ready = i64_at(rs, &["spec", "minReadySeconds"]).unwrap_or(0);
    let selector = at(rs, &["spec", "selector"]).cloned().unwrap_or(json!({}));
    let template_labels = util::string_map(at(rs, &["spec", "template", "metadata", "labels"]));
    let ready = owned.iter().filter(|p| util::is_pod_ready(p)).count();
    let available = owned
        .iter()
        .filter(|p| util::is_pod_available(p, min_ready, c.now))
        .count();
    if min_ready > 0 {
        // Wake when a ready pod becomes available.
        let now = c.now;
        let due: Vec<jiff::Timestamp> = owned
            .iter()
            .filter(|p| util::is_pod_ready(p) && !util::is_pod_available(p, min_ready, now))
            .filter_map(|p| {
                util::pod_condition(p, "Ready")
                    .and_then(|cond| cond.get("lastTransitionTime"))
                    .and_then(Value::as_str)
                    .and_then(util::parse_time)
            })
            .map(|t| {
                t.checked_add(jiff::SignedDuration::from_secs(min_ready))
                    .unwrap_or(t)
            })
            .collect();
        for t in due {
            c.wake_at(t);
        }
    }
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            // Read in place: no copy of every pod's labels on every pass.
            util::selector_matches_labels_of(&selector, p)
                && template_labels.iter().all(|(k, v)| {
                    at(p, &["metadata", "labels", k]).and_then(Value::as_str) == Some(v.as_str())
                })
        })
        .count();
    let status = json!({
        "replicas": owned.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": i64_at(rs, &["metadata", "generation"]).unwrap_or(1),
    });
    let status = util::normalize(&status).unwrap_or(json!({}));
    // The real controller omits zero counters (omitempty) but always writes replicas.
    let mut status = status;
    util::set_at(&mut status, &["replicas"], json!(owned.len()));
    if at(rs, &["status"]) != Some(&status) {
        c.modify(CONTROLLER, &kinds::replicasets(), rs, |v| {
            util::set_at(v, &["status"], status);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_prefers_unscheduled_then_unready_then_newest() {
        let unscheduled = json!({"metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}, "status": {"phase": "Pending"}});
        let unready = json!({"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"nodeName": "n"},
                             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}});
        let ready_old = json!({"metadata": {"name": "c", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"nodeName": "n"},
                               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]}});
        let ready_new = json!({"metadata": {"name": "d", "creationTimestamp": "2026-01-01T00:01:00Z"}, "spec": {"nodeName": "n"},
                               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:01:05Z"}]}});
        let mut pods = [ready_old, ready_new, unready, unscheduled];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods.iter().map(util::name).collect();
        assert_eq!(names, ["a", "b", "d", "c"]);
    }

    #[test]
    fn pods_get_owner_generate_name_and_default_tolerations() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "shop", "uid": "rs1"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}});
        let pod = pod_for(&rs);
        assert_eq!(
            str_at(&pod, &["metadata", "generateName"]),
            Some("web-abc-")
        );
        assert!(util::is_controlled_by(&pod, "rs1"));
        assert_eq!(str_at(&pod, &["metadata", "labels", "app"]), Some("web"));
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(first_container(&pod), "web");
    }
}
