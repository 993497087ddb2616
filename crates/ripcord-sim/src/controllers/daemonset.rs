//! The DaemonSet controller: one pod per node the pod may run on (DaemonSet pods tolerate
//! cordoned, not-ready and unreachable nodes, as the real controller adds those
//! tolerations), bound directly to its node; pods of an outdated template are replaced one
//! at a time; status counters; ControllerRevisions for `kubectl rollout history/undo`
//! ([`super::revisions`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::Controllers;
use super::events::{EventType, emit};
use super::replicaset::pod_for;
use super::scheduler::{NodeInfo, PodRequest, UNSCHEDULABLE_TAINT, node_admits};
use super::util::{self, at, i64_at, str_at};
use crate::store::kinds;

const CONTROLLER: &str = "daemonset-controller";
/// Label with the hash of the template a DaemonSet pod was created from.
pub const REVISION_HASH: &str = "controller-revision-hash";

fn template_hash(ds: &Value) -> String {
    super::revisions::template_hash(ds)
}

/// The pod the controller creates for `node`.
fn daemon_pod(ds: &Value, node: &str, hash: &str) -> Value {
    let mut pod = pod_for(ds);
    util::object_at_mut(&mut pod, &["metadata", "labels"])
        .insert(REVISION_HASH.into(), json!(hash));
    util::object_at_mut(&mut pod, &["metadata", "labels"]).insert(
        "pod-template-generation".into(),
        json!(
            i64_at(ds, &["metadata", "generation"])
                .unwrap_or(1)
                .to_string()
        ),
    );
    util::set_at(&mut pod, &["spec", "nodeName"], json!(node));
    util::set_at(
        &mut pod,
        &["spec", "affinity"],
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}),
    );
    if let Some(list) = pod
        .pointer_mut("/spec/tolerations")
        .and_then(Value::as_array_mut)
    {
        for (key, effect) in [
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            (UNSCHEDULABLE_TAINT, "NoSchedule"),
        ] {
            list.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
        for t in list.iter_mut() {
            // DaemonSet pods tolerate not-ready/unreachable forever.
            if let Some(m) = t.as_object_mut() {
                m.remove("tolerationSeconds");
            }
        }
    }
    pod
}

/// Runs the DaemonSet controller.
pub fn reconcile(c: &mut Controllers) {
    let sets = c.cache.list(&kinds::daemonsets());
    if sets.is_empty() {
        return;
    }
    let nodes = c.cache.list(&kinds::nodes());
    let pods = c.cache.list(&kinds::pods());
    let mut by_owner = super::replicaset::pods_by_owner(&pods);
    for ds in sets {
        if at(&ds, &["metadata", "deletionTimestamp"]).is_some() {
            continue;
        }
        super::revisions::sync(c, &kinds::daemonsets(), &ds);
        let owned = by_owner.remove(util::uid(&ds)).unwrap_or_default();
        let hash = template_hash(&ds);
        let probe = daemon_pod(&ds, "", &hash);
        let req = PodRequest::from_pod(&probe);
        let wanted: Vec<String> = nodes
            .iter()
            .filter(|n| node_admits(&NodeInfo::from_node(n), &req))
            .map(|n| util::name(n).to_string())
            .collect();
        let wanted_set: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
        let mut per_node: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
        for p in owned {
            per_node
                .entry(str_at(&p, &["spec", "nodeName"]).unwrap_or("").to_string())
                .or_default()
                .push(p);
        }
        let mut kept: Vec<Arc<Value>> = Vec::new();
        // Remove pods on nodes that are gone or no longer wanted, and duplicates.
        for (node, mut list) in std::mem::take(&mut per_node) {
            if !wanted_set.contains(node.as_str()) {
                for p in list {
                    delete_pod(c, &ds, &p);
                }
                continue;
            }
            list.sort_by_key(|p| std::cmp::Reverse(util::is_pod_ready(p)));
            let mut rest = list.split_off(1.min(list.len()));
            kept.append(&mut list);
            for p in rest.drain(..) {
                delete_pod(c, &ds, &p);
            }
        }
        // Create missing pods (node names are unique: a pod created here is on no other
        // wanted node).
        let kept_nodes: BTreeSet<String> = kept
            .iter()
            .filter_map(|p| str_at(p, &["spec", "nodeName"]))
            .map(str::to_string)
            .collect();
        for node in &wanted {
            if kept_nodes.contains(node) {
                continue;
            }
            match c.create(CONTROLLER, &kinds::pods(), daemon_pod(&ds, node, &hash)) {
                Ok(pod) => {
                    emit(
                        c,
                        &ds,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", util::name(&pod)),
                        CONTROLLER,
                    );
                    kept.push(Arc::new(pod));
                }
                Err(error) => {
                    emit(
                        c,
                        &ds,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {error}"),
                        CONTROLLER,
                    );
                }
            }
        }
        // Rolling update: replace one outdated pod when every kept pod is ready.
        let outdated: Vec<&Arc<Value>> = kept
            .iter()
            .filter(|p| str_at(p, &["metadata", "labels", REVISION_HASH]) != Some(hash.as_str()))
            .collect();
        if let Some(first) = outdated.first()
            && kept.iter().all(|p| util::is_pod_ready(p))
        {
            let first = (*first).clone();
            delete_pod(c, &ds, &first);
            kept.retain(|p| util::uid(p) != util::uid(&first));
        }
        write_status(c, &ds, &kept, wanted.len(), &hash);
    }
}

fn delete_pod(c: &mut Controllers, ds: &Value, pod: &Value) {
    if c.delete(CONTROLLER, &kinds::pods(), pod) {
        emit(
            c,
            ds,
            EventType::Normal,
            "SuccessfulDelete",
            &format!("Deleted pod: {}", util::name(pod)),
            CONTROLLER,
        );
    }
}

fn write_status(c: &mut Controllers, ds: &Value, kept: &[Arc<Value>], desired: usize, hash: &str) {
    let ready = kept.iter().filter(|p| util::is_pod_ready(p)).count();
    let updated = kept
        .iter()
        .filter(|p| str_at(p, &["metadata", "labels", REVISION_HASH]) == Some(hash))
        .count();
    let status = json!({
        "currentNumberScheduled": kept.len(),
        "desiredNumberScheduled": desired,
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": desired.saturating_sub(ready),
        "updatedNumberScheduled": updated,
        "observedGeneration": i64_at(ds, &["metadata", "generation"]).unwrap_or(1),
    });
    if at(ds, &["status"]) != Some(&status) {
        c.modify(CONTROLLER, &kinds::daemonsets(), ds, |v| {
            util::set_at(v, &["status"], status);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_pods_tolerate_cordoned_nodes_and_are_bound() {
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "d1"},
            "spec": {"template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}});
        let pod = daemon_pod(&ds, "n1", "h");
        assert_eq!(str_at(&pod, &["spec", "nodeName"]), Some("n1"));
        let req = PodRequest::from_pod(&pod);
        assert!(req.tolerates(UNSCHEDULABLE_TAINT, "", "NoSchedule"));
        assert_eq!(
            str_at(&pod, &["metadata", "labels", REVISION_HASH]),
            Some("h")
        );
    }
}
