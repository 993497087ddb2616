//! Garbage collection: deleting an owner deletes its dependents (background cascading
//! deletion by `ownerReferences`: a dependent goes once none of its owners exists any more,
//! matched by uid), and pods bound to a node that no longer exists are removed (pod GC).
//! Kinds the controllers cache are swept every pass; other kinds every 10 simulated seconds.
//! Foreground deletion (the `foregroundDeletion` finalizer) deletes the dependents first and
//! then releases the owner. The namespace controller empties a `Terminating` namespace and
//! then releases it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::Controllers;
use super::util::{self, at, str_at};
use crate::store::{ResourceType, kinds};

const CONTROLLER: &str = "garbage-collector";
/// The finalizer of foreground cascading deletion.
const FOREGROUND: &str = "foregroundDeletion";
/// Simulated seconds between sweeps of kinds the controllers do not cache.
const UNCACHED_SWEEP_SECONDS: i64 = 10;

/// Cached kinds whose objects may have owners.
fn cached_dependents() -> Vec<ResourceType> {
    vec![
        kinds::pods(),
        kinds::replicasets(),
        kinds::services(),
        kinds::endpoints(),
    ]
}

/// Uncached kinds whose objects may have owners.
fn uncached_dependents() -> Vec<ResourceType> {
    vec![
        kinds::controller_revisions(),
        kinds::configmaps(),
        kinds::secrets(),
        kinds::leases(),
    ]
}

/// The namespace controller: a `Terminating` namespace has its contents deleted (gracefully:
/// pods take their grace period) and, once nothing is left in it, loses its `kubernetes`
/// finalizer, which lets the store remove it.
fn finish_terminating_namespaces(c: &mut Controllers) {
    let terminating: Vec<String> = c
        .state
        .deleting
        .iter()
        .filter(|(rt, _, _)| *rt == kinds::namespaces())
        .map(|(_, _, name)| name.clone())
        .collect();
    for ns in terminating {
        let mut remaining = 0usize;
        for rt in c
            .store
            .resource_types()
            .into_iter()
            .filter(|rt| rt.namespaced)
        {
            let (objects, _) = c.store.list(&rt, Some(&ns));
            remaining += objects.len();
            for obj in objects {
                c.delete("namespace-controller", &rt, &obj);
            }
        }
        if remaining > 0 {
            continue;
        }
        if let Some(namespace) = c.store.get(&kinds::namespaces(), None, &ns) {
            c.modify(
                "namespace-controller",
                &kinds::namespaces(),
                &namespace,
                |n| {
                    if let Some(f) = n
                        .pointer_mut("/spec/finalizers")
                        .and_then(Value::as_array_mut)
                    {
                        f.retain(|v| v.as_str() != Some("kubernetes"));
                    }
                },
            );
        }
    }
}

/// Foreground cascading deletion: an owner carrying the `foregroundDeletion` finalizer has
/// its dependents deleted (in the foreground too) and loses the finalizer once none is left.
fn finish_foreground_deletions(c: &mut Controllers) {
    let owners: Vec<(ResourceType, String, String)> = c
        .state
        .deleting
        .iter()
        .filter(|(rt, _, _)| *rt != kinds::namespaces())
        .cloned()
        .collect();
    for (rt, ns, name) in owners {
        let ns_opt = rt.namespaced.then_some(ns.as_str());
        // Cached kinds (pods above all: many may be terminating) are read from the cache.
        let owner: Option<Arc<Value>> = if c.cache.caches(&rt) {
            c.cache.get(&rt, ns_opt, &name)
        } else {
            c.store.get(&rt, ns_opt, &name).map(Arc::new)
        };
        let Some(owner) = owner else {
            continue;
        };
        let foreground = at(&owner, &["metadata", "finalizers"])
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|v| v.as_str() == Some(FOREGROUND)));
        if !foreground {
            continue;
        }
        let owner_uid = util::uid(&owner).to_string();
        let mut remaining = 0usize;
        for dep_rt in c.store.resource_types() {
            let scope = if rt.namespaced {
                Some(ns.as_str())
            } else {
                None
            };
            let (objects, _) = c.store.list(&dep_rt, scope);
            for obj in objects {
                if !util::owner_uids(&obj).contains(&owner_uid.as_str()) {
                    continue;
                }
                remaining += 1;
                if at(&obj, &["metadata", "deletionTimestamp"]).is_some() {
                    continue;
                }
                if dep_rt.plural == "pods" {
                    c.state.own_deletions.insert(util::uid(&obj).to_string());
                }
                match c.store.delete_gracefully(
                    &dep_rt,
                    util::namespace(&obj),
                    util::name(&obj),
                    None,
                    &[FOREGROUND],
                ) {
                    Ok(_) => c.wrote = true,
                    Err(error) => {
                        tracing::debug!(%error, kind = %dep_rt.kind, name = %util::name(&obj), "foreground deletion of a dependent failed");
                    }
                }
            }
        }
        if remaining == 0 {
            c.modify(CONTROLLER, &rt, &owner, |o| {
                if let Some(f) = o
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|v| v.as_str() != Some(FOREGROUND));
                }
            });
        }
    }
}

/// Runs one garbage-collection sweep.
pub fn reconcile(c: &mut Controllers) {
    if !c.state.deleting.is_empty() {
        finish_terminating_namespaces(c);
        finish_foreground_deletions(c);
    }
    let nodes = c.cache.list(&kinds::nodes());
    let node_names: BTreeSet<String> = nodes.iter().map(|n| util::name(n).to_string()).collect();
    let cached_changed = c.is_dirty(&[
        super::DELETIONS,
        "pods",
        "replicasets",
        "services",
        "endpoints",
    ]);
    let mut work: Vec<(ResourceType, Vec<Arc<Value>>)> = if cached_changed {
        cached_dependents()
            .into_iter()
            .map(|rt| {
                let objects = c.cache.list(&rt);
                (rt, objects)
            })
            .collect()
    } else {
        Vec::new()
    };
    let sweep_uncached = c.state.last_gc_sweep.is_none_or(|t| {
        c.now.duration_since(t) >= jiff::SignedDuration::from_secs(UNCACHED_SWEEP_SECONDS)
    });
    if sweep_uncached {
        c.state.last_gc_sweep = Some(c.now);
        for rt in uncached_dependents() {
            let (objects, _) = c.store.list(&rt, None);
            work.push((rt, objects.into_iter().map(Arc::new).collect()));
        }
    }
    // (apiVersion, kind, namespace, name) -> uid of the live owner, if any. The keys borrow
    // from the objects: no copies per object per pass.
    let mut owners: BTreeMap<(&str, &str, &str, &str), Option<String>> = BTreeMap::new();
    for (rt, objects) in &work {
        for obj in objects {
            if rt.plural == "pods"
                && let Some(node) = str_at(obj, &["spec", "nodeName"]).filter(|n| !n.is_empty())
                && !node_names.contains(node)
            {
                // Pod GC: the node is gone, so nobody will end a grace period.
                c.delete_with_grace(CONTROLLER, rt, obj, Some(0));
                continue;
            }
            let Some(refs) = at(obj, &["metadata", "ownerReferences"]).and_then(Value::as_array)
            else {
                continue;
            };
            if refs.is_empty() {
                continue;
            }
            let ns = util::namespace(obj).unwrap_or("");
            let any_alive = refs.iter().any(|r| {
                let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
                let uid = s("uid");
                let live = owners
                    .entry((s("apiVersion"), s("kind"), ns, s("name")))
                    .or_insert_with_key(|(api_version, kind, ns, name)| {
                        owner_uid(c, api_version, kind, ns, name, uid)
                    });
                live.as_deref() == Some(uid)
            });
            if !any_alive {
                tracing::debug!(kind = %rt.kind, namespace = %ns, name = %util::name(obj), "collecting orphan");
                c.delete(CONTROLLER, rt, obj);
            }
        }
    }
}

/// The uid of the live owner, `None` when it is gone. Unknown kinds are never collected.
fn owner_uid(
    c: &Controllers,
    api_version: &str,
    kind: &str,
    ns: &str,
    name: &str,
    uid: &str,
) -> Option<String> {
    let Some(owner_rt) = c.store.find_kind(api_version, kind) else {
        return Some(uid.to_string());
    };
    let owner_ns = owner_rt.namespaced.then_some(ns);
    match c.cache.get(&owner_rt, owner_ns, name) {
        Some(o) => Some(util::uid(&o).to_string()),
        None if c.cache.caches(&owner_rt) => None,
        None => c
            .store
            .get(&owner_rt, owner_ns, name)
            .map(|o| util::uid(&o).to_string()),
    }
}
