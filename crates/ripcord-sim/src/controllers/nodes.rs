//! The node lifecycle controller: keeps the `node.kubernetes.io/unschedulable:NoSchedule`
//! taint in step with `spec.unschedulable` (cordon), and gives nodes created through the
//! API without a status a Ready condition and default allocatable resources.

use serde_json::{Value, json};

use super::Controllers;
use super::scheduler::UNSCHEDULABLE_TAINT;
use super::util::{self, at, bool_at};
use crate::store::kinds;

const CONTROLLER: &str = "node-lifecycle-controller";

/// Runs the node controller.
pub fn reconcile(c: &mut Controllers) {
    let nodes = c.cache.list(&kinds::nodes());
    let now = c.now_str();
    for node in nodes {
        let cordoned = bool_at(&node, &["spec", "unschedulable"]);
        let has_taint = at(&node, &["spec", "taints"])
            .and_then(Value::as_array)
            .is_some_and(|ts| {
                ts.iter()
                    .any(|t| t.get("key").and_then(Value::as_str) == Some(UNSCHEDULABLE_TAINT))
            });
        let needs_status = util::pod_condition(&node, "Ready").is_none()
            || at(&node, &["status", "allocatable"]).is_none();
        if cordoned == has_taint && !needs_status {
            continue;
        }
        let now = now.clone();
        c.modify(CONTROLLER, &kinds::nodes(), &node, |v| {
            if cordoned && !has_taint {
                let taints = util::object_at_mut(v, &["spec"]).entry("taints").or_insert_with(|| json!([]));
                if let Some(list) = taints.as_array_mut() {
                    list.push(json!({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": now}));
                }
            } else if !cordoned && has_taint {
                if let Some(list) = v.pointer_mut("/spec/taints").and_then(Value::as_array_mut) {
                    list.retain(|t| t.get("key").and_then(Value::as_str) != Some(UNSCHEDULABLE_TAINT));
                }
                if v.pointer("/spec/taints").and_then(Value::as_array).is_some_and(Vec::is_empty) {
                    util::remove_at(v, &["spec", "taints"]);
                }
            }
            if util::pod_condition(v, "Ready").is_none() {
                let conds = util::object_at_mut(v, &["status"]).entry("conditions").or_insert_with(|| json!([]));
                if let Some(list) = conds.as_array_mut() {
                    list.push(json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}));
                }
            }
            if at(v, &["status", "allocatable"]).is_none() {
                let alloc = json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
                util::set_at(v, &["status", "allocatable"], alloc.clone());
                util::set_at(v, &["status", "capacity"], alloc);
            }
        });
    }
}
