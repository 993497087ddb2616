//! The StatefulSet controller: pods named `<set>-<ordinal>`, created in ordinal order and
//! removed in reverse order; with the default `OrderedReady` policy one pod at a time, each
//! only once every lower ordinal is Running and Ready (`Parallel` creates and deletes at once).
//! A pod's name is re-used only after its previous incarnation is gone (Terminating pods
//! block). Rolling updates replace the pods whose `controller-revision-hash` is not the update
//! revision, highest ordinal first, one at a time while the others are Ready, down to
//! `rollingUpdate.partition`; `OnDelete` leaves that to the user. Revisions are
//! ControllerRevisions ([`super::revisions`]); status reports `observedGeneration`, the
//! replica counters and `currentRevision`/`updateRevision` as `kubectl rollout status` reads
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Controllers;
use super::events::{EventType, emit};
use super::replicaset::pod_for;
use super::revisions::{self, REVISION_HASH_LABEL};
use super::util::{self, at, i64_at, str_at};
use crate::store::kinds;

const CONTROLLER: &str = "statefulset-controller";

/// The ordinal of `pod` if it is named `<set>-<n>`.
fn ordinal(set: &str, pod: &Value) -> Option<i64> {
    util::name(pod)
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn running_and_ready(pod: &Value) -> bool {
    str_at(pod, &["status", "phase"]) == Some("Running") && util::is_pod_ready(pod)
}

/// The pod for ordinal `i` at revision `revision`.
fn stateful_pod(sts: &Value, i: i64, revision: &str) -> Value {
    let mut pod = pod_for(sts);
    let name = format!("{}-{i}", util::name(sts));
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("generateName");
        meta.insert("name".into(), json!(name));
    }
    let labels = util::object_at_mut(&mut pod, &["metadata", "labels"]);
    labels.insert(REVISION_HASH_LABEL.into(), json!(revision));
    labels.insert("statefulset.kubernetes.io/pod-name".into(), json!(name));
    labels.insert("apps.kubernetes.io/pod-index".into(), json!(i.to_string()));
    util::set_at(&mut pod, &["spec", "hostname"], json!(name));
    if let Some(service) = str_at(sts, &["spec", "serviceName"]).filter(|s| !s.is_empty()) {
        util::set_at(&mut pod, &["spec", "subdomain"], json!(service));
    }
    pod
}

/// Runs the StatefulSet controller.
pub fn reconcile(c: &mut Controllers) {
    let sets = c.cache.list(&kinds::statefulsets());
    if sets.is_empty() {
        return;
    }
    let pods = c.cache.list(&kinds::pods());
    let mut by_owner: BTreeMap<&str, Vec<&Arc<Value>>> = BTreeMap::new();
    for p in &pods {
        if let Some((_, _, uid)) = util::controller_ref(p) {
            by_owner.entry(uid).or_default().push(p);
        }
    }
    for sts in sets {
        if at(&sts, &["metadata", "deletionTimestamp"]).is_some() {
            continue;
        }
        revisions::sync(c, &kinds::statefulsets(), &sts);
        let owned = by_owner.remove(util::uid(&sts)).unwrap_or_default();
        sync_set(c, &sts, &owned);
    }
}

fn sync_set(c: &mut Controllers, sts: &Value, owned: &[&Arc<Value>]) {
    let set = util::name(sts).to_string();
    let replicas = i64_at(sts, &["spec", "replicas"]).unwrap_or(1).max(0);
    let parallel = str_at(sts, &["spec", "podManagementPolicy"]) == Some("Parallel");
    let update_revision = revisions::revision_name(sts, &revisions::template_hash(sts));
    let current_revision = str_at(sts, &["status", "currentRevision"])
        .filter(|r| !r.is_empty())
        .unwrap_or(&update_revision)
        .to_string();
    // Ordinal -> pod (Terminating pods included: they still hold their name).
    let mut by_ordinal: BTreeMap<i64, &Arc<Value>> = BTreeMap::new();
    for p in owned {
        if let Some(i) = ordinal(&set, p) {
            by_ordinal.insert(i, p);
        }
    }
    let terminating = |p: &Value| at(p, &["metadata", "deletionTimestamp"]).is_some();
    let mut busy = false;
    // Create missing pods in order.
    for i in 0..replicas {
        match by_ordinal.get(&i) {
            Some(p) if terminating(p) => {
                // Wait until the old incarnation is gone before re-using the name.
                busy = true;
                if !parallel {
                    break;
                }
            }
            Some(p) => {
                if !running_and_ready(p) {
                    busy = true;
                    if !parallel {
                        break;
                    }
                }
            }
            None => {
                let pod = stateful_pod(sts, i, &update_revision);
                let name = util::name(&pod).to_string();
                if c.create(CONTROLLER, &kinds::pods(), pod).is_ok() {
                    emit(
                        c,
                        sts,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("create Pod {name} in StatefulSet {set} successful"),
                        CONTROLLER,
                    );
                }
                busy = true;
                if !parallel {
                    break;
                }
            }
        }
    }
    // Scale down: highest ordinal first; with OrderedReady one at a time once all are ready.
    let surplus: Vec<&Arc<Value>> = by_ordinal
        .range(replicas..)
        .rev()
        .map(|(_, p)| *p)
        .filter(|p| !terminating(p))
        .collect();
    if !surplus.is_empty() && (parallel || !busy) {
        let take = if parallel { surplus.len() } else { 1 };
        for p in surplus.into_iter().take(take) {
            delete_pod(c, sts, p);
        }
        busy = true;
    }
    // Rolling update: highest ordinal first, down to the partition, one at a time.
    let rolling = str_at(sts, &["spec", "updateStrategy", "type"]).unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = i64_at(
        sts,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    )
    .unwrap_or(0);
    if rolling && !busy {
        let outdated = by_ordinal
            .range(partition.max(0)..replicas)
            .rev()
            .map(|(_, p)| *p)
            .find(|p| {
                !terminating(p)
                    && str_at(p, &["metadata", "labels", REVISION_HASH_LABEL])
                        != Some(update_revision.as_str())
            });
        if let Some(p) = outdated {
            delete_pod(c, sts, p);
        }
    }
    write_status(c, sts, owned, replicas, &current_revision, &update_revision);
}

fn delete_pod(c: &mut Controllers, sts: &Value, pod: &Value) {
    if c.delete(CONTROLLER, &kinds::pods(), pod) {
        emit(
            c,
            sts,
            EventType::Normal,
            "SuccessfulDelete",
            &format!(
                "delete Pod {} in StatefulSet {} successful",
                util::name(pod),
                util::name(sts)
            ),
            CONTROLLER,
        );
    }
}

fn write_status(
    c: &mut Controllers,
    sts: &Value,
    owned: &[&Arc<Value>],
    replicas: i64,
    current_revision: &str,
    update_revision: &str,
) {
    let active: Vec<&&Arc<Value>> = owned.iter().filter(|p| util::is_pod_active(p)).collect();
    let count = |f: &dyn Fn(&Value) -> bool| active.iter().filter(|p| f(p)).count() as i64;
    let ready = count(&|p| util::is_pod_ready(p));
    let revision_of = |p: &Value| {
        str_at(p, &["metadata", "labels", REVISION_HASH_LABEL])
            .unwrap_or("")
            .to_string()
    };
    let updated = count(&|p| revision_of(p) == update_revision);
    let mut current_revision = current_revision.to_string();
    let mut current = count(&|p| revision_of(p) == current_revision);
    // The rollout is complete once every replica runs the update revision and is ready.
    if updated == replicas && ready == replicas && active.len() as i64 == replicas {
        current_revision = update_revision.to_string();
        current = updated;
    }
    let status = json!({
        "observedGeneration": i64_at(sts, &["metadata", "generation"]).unwrap_or(1),
        "replicas": active.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": i64_at(sts, &["status", "collisionCount"]).unwrap_or(0),
    });
    if at(sts, &["status"]) != Some(&status) {
        c.modify(CONTROLLER, &kinds::statefulsets(), sts, |v| {
            util::set_at(v, &["status"], status);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_named_by_ordinal_and_labelled_with_their_revision() {
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "uid": "u"},
            "spec": {"serviceName": "db", "template": {"metadata": {"labels": {"app": "db"}},
                     "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}});
        let pod = stateful_pod(&sts, 2, "db-abc");
        assert_eq!(util::name(&pod), "db-2");
        assert!(pod["metadata"].get("generateName").is_none());
        assert_eq!(pod["metadata"]["labels"][REVISION_HASH_LABEL], "db-abc");
        assert_eq!(pod["metadata"]["labels"]["app"], "db");
        assert_eq!(pod["spec"]["hostname"], "db-2");
        assert_eq!(pod["spec"]["subdomain"], "db");
        assert_eq!(ordinal("db", &pod), Some(2));
        assert_eq!(ordinal("d", &pod), None);
    }
}
