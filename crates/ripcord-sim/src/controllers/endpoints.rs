//! The endpoints controller: one `Endpoints` object per Service with a selector, listing the
//! IPs of matching pods (ready ones under `addresses`, the rest under `notReadyAddresses`).
//! A Service annotated `sim.ripcord.dev/zone` only lists pods on nodes of that zone (a sim
//! extension standing in for per-zone backends).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::Controllers;
use super::scheduler::node_zone;
use super::util::{self, at, str_at};
use crate::scenario::SERVICE_ZONE_ANNOTATION;
use crate::store::kinds;

const CONTROLLER: &str = "endpoint-controller";

fn address(pod: &Value) -> Value {
    json!({
        "ip": str_at(pod, &["status", "podIP"]),
        "nodeName": str_at(pod, &["spec", "nodeName"]),
        "targetRef": {"kind": "Pod", "namespace": util::namespace(pod), "name": util::name(pod), "uid": util::uid(pod)},
    })
}

/// Runs the endpoints controller.
pub fn reconcile(c: &mut Controllers) {
    let services = c.cache.list(&kinds::services());
    let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
    if !services.is_empty() {
        let pods = c.cache.list(&kinds::pods());
        let nodes = c.cache.list(&kinds::nodes());
        // The labels are read in place: no copy of every pod's labels on every pass.
        let mut by_ns: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        for p in &pods {
            if util::is_pod_active(p) && str_at(p, &["status", "podIP"]).is_some() {
                by_ns
                    .entry(util::namespace(p).unwrap_or(""))
                    .or_default()
                    .push(p.as_ref());
            }
        }
        let zone_of: BTreeMap<&str, &str> = nodes
            .iter()
            .filter_map(|n| node_zone(n).map(|z| (util::name(n), z)))
            .collect();
        for svc in &services {
            let selector = util::string_map(at(svc, &["spec", "selector"]));
            if selector.is_empty() {
                continue;
            }
            let ns = util::namespace(svc).unwrap_or("").to_string();
            let name = util::name(svc).to_string();
            wanted.insert((ns.clone(), name.clone()));
            let zone = util::annotation(svc, SERVICE_ZONE_ANNOTATION);
            let mut ready = Vec::new();
            let mut not_ready = Vec::new();
            for p in by_ns
                .get(ns.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                // `map_selector_matches` (the selector is not empty) on the labels in place.
                let matches = selector.iter().all(|(k, v)| {
                    at(p, &["metadata", "labels", k]).and_then(Value::as_str) == Some(v.as_str())
                });
                if !matches {
                    continue;
                }
                if let Some(zone) = zone {
                    let node = str_at(p, &["spec", "nodeName"]).unwrap_or("");
                    if zone_of.get(node) != Some(&zone) {
                        continue;
                    }
                }
                if util::is_pod_ready(p) {
                    ready.push(address(p));
                } else {
                    not_ready.push(address(p));
                }
            }
            let ports: Vec<Value> = at(svc, &["spec", "ports"])
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let port = p
                                .get("targetPort")
                                .filter(|t| t.is_number())
                                .or_else(|| p.get("port"))
                                .cloned()
                                .unwrap_or(json!(80));
                            json!({"name": p.get("name"), "port": port, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))})
                        })
                        .collect()
                })
                .unwrap_or_default();
            let subsets = if ready.is_empty() && not_ready.is_empty() {
                json!(null)
            } else {
                json!([{"addresses": ready, "notReadyAddresses": not_ready, "ports": ports}])
            };
            let mut desired = json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, "labels": util::labels(svc)},
                "subsets": subsets,
            });
            desired = util::normalize(&desired).unwrap_or(desired);
            match c.cache.get(&kinds::endpoints(), Some(&ns), &name) {
                None => {
                    let _ = c.create(CONTROLLER, &kinds::endpoints(), desired);
                }
                Some(current) => {
                    if current.get("subsets") != desired.get("subsets") {
                        let subsets = desired.get("subsets").cloned();
                        c.modify(
                            CONTROLLER,
                            &kinds::endpoints(),
                            &current,
                            |v| match subsets {
                                Some(s) => util::set_at(v, &["subsets"], s),
                                None => {
                                    util::remove_at(v, &["subsets"]);
                                }
                            },
                        );
                    }
                }
            }
        }
    }
    // Endpoints of deleted services go too.
    let stale: Vec<(String, String)> = c
        .state
        .managed_endpoints
        .difference(&wanted)
        .cloned()
        .collect();
    for (ns, name) in stale {
        if let Some(ep) = c.cache.get(&kinds::endpoints(), Some(&ns), &name) {
            c.delete(CONTROLLER, &kinds::endpoints(), &ep);
        }
    }
    c.state.managed_endpoints = wanted;
}
