//! Garbage collection: deleting an owner deletes its dependents (background cascading
//! deletion by `ownerReferences`: a dependent goes once none of its owners exists any more,
//! matched by uid), and pods bound to a node that no longer exists are removed (pod GC).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Controllers;
use super::util::{self, at, str_at};
use crate::sim::store::{ResourceType, kinds};

const CONTROLLER: &str = "garbage-collector";

/// Kinds whose objects may have owners in this sim.
fn dependent_kinds() -> Vec<ResourceType> {
    vec![
        kinds::pods(),
        kinds::replicasets(),
        kinds::controller_revisions(),
        kinds::configmaps(),
        kinds::secrets(),
        kinds::services(),
        kinds::endpoints(),
        kinds::leases(),
    ]
}

/// Runs one garbage-collection sweep.
pub fn reconcile(c: &mut Controllers) {
    // (apiVersion, kind, namespace, name) -> uid of the live owner, if any.
    let mut owners: BTreeMap<(String, String, String, String), Option<String>> = BTreeMap::new();
    let (nodes, _) = c.store.list(&kinds::nodes(), None);
    let node_names: BTreeSet<&str> = nodes.iter().map(util::name).collect();
    for rt in dependent_kinds() {
        let (objects, _) = c.store.list(&rt, None);
        for obj in objects {
            if rt.plural == "pods"
                && let Some(node) = str_at(&obj, &["spec", "nodeName"]).filter(|n| !n.is_empty())
                && !node_names.contains(node)
            {
                c.delete(CONTROLLER, &rt, &obj);
                continue;
            }
            let Some(refs) = at(&obj, &["metadata", "ownerReferences"]).and_then(Value::as_array)
            else {
                continue;
            };
            if refs.is_empty() {
                continue;
            }
            let ns = util::namespace(&obj).unwrap_or("").to_string();
            let mut any_alive = false;
            for r in refs {
                let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let (api_version, kind, name, uid) =
                    (s("apiVersion"), s("kind"), s("name"), s("uid"));
                let key = (api_version.clone(), kind.clone(), ns.clone(), name.clone());
                let live_uid = owners
                    .entry(key)
                    .or_insert_with(|| {
                        let Some(owner_rt) = c.store.find_kind(&api_version, &kind) else {
                            // Unknown owner kinds are never collected.
                            return Some(uid.clone());
                        };
                        let owner_ns = owner_rt.namespaced.then_some(ns.as_str());
                        c.store
                            .get(&owner_rt, owner_ns, &name)
                            .map(|o| util::uid(&o).to_string())
                    })
                    .clone();
                if live_uid.as_deref() == Some(uid.as_str()) {
                    any_alive = true;
                    break;
                }
            }
            if !any_alive {
                tracing::debug!(kind = %rt.kind, namespace = %ns, name = %util::name(&obj), "collecting orphan");
                c.delete(CONTROLLER, &rt, &obj);
            }
        }
    }
}
