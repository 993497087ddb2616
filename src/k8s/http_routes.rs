//! Gateway API HTTPRoutes (`gateway.networking.k8s.io/v1`): get and merge-patch as JSON (the
//! kind is fixed, so no discovery call), plus pure helpers reading and rewriting backendRef
//! weights.
//!
//! A merge patch replaces lists whole, so a weight change patches `spec.rules` with every rule
//! as observed and only the named backendRefs' weights changed.

use super::{K8sError, call, describe, marked_merge_patch, patch_params};
use kube::api::{DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The Gateway API group.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The apiVersion written in references.
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";
/// The kind.
pub const KIND: &str = "HTTPRoute";
/// The route annotation a zone fail-out writes when it shifts the zone's traffic away on the
/// route: `ripcord.dev/failed-out.<zone>: <backend>`, so that a fail-back of the zone finds the
/// route and backend to ramp back (from any machine) without being told; removed by the
/// fail-back's last ramp step (or the fail-out's cleanup).
pub const FAILED_OUT_PREFIX: &str = "ripcord.dev/failed-out.";
/// The route annotation recording when the last ramp step of a backend was written
/// (`ripcord.dev/ramped-at.<backend>: <RFC 3339>`), so that a resumed fail-back waits only what
/// remains of that step's pause; removed by the last ramp step.
pub const RAMPED_AT_PREFIX: &str = "ripcord.dev/ramped-at.";

/// The weight a backendRef has when it names none (Gateway API default).
pub const DEFAULT_WEIGHT: u32 = 1;

/// The namespace and name of a route read as JSON.
pub fn namespace_and_name(route: &Value) -> (String, String) {
    let text = |pointer: &str| {
        route
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("/metadata/namespace"), text("/metadata/name"))
}

/// The annotations of a route whose key starts with `prefix`: (rest of the key, value).
pub fn annotations_with_prefix<'a>(
    route: &'a Value,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    route
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v.as_str()?)))
}

/// HTTPRoute helpers, each call bounded by one per-call timeout.
#[derive(Clone)]
pub struct HttpRoutes {
    client: Client,
    timeout: Duration,
    resource: ApiResource,
}

// === impl HttpRoutes ===

impl HttpRoutes {
    /// Helpers using `client`, each call bounded by `call_timeout`.
    pub fn new(client: Client, call_timeout: Duration) -> HttpRoutes {
        let gvk = GroupVersionKind::gvk(GROUP, "v1", KIND);
        HttpRoutes {
            client,
            timeout: call_timeout,
            resource: ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
        }
    }

    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.resource)
    }

    /// Reads one HTTPRoute as JSON.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Value, K8sError> {
        let object = describe(KIND, Some(namespace), name);
        let found = call("get", &object, self.timeout, self.api(namespace).get(name)).await?;
        serde_json::to_value(found).map_err(|source| K8sError::Serde { object, source })
    }

    /// Lists the HTTPRoutes of every namespace as JSON (one call; none when the cluster does
    /// not serve the Gateway API).
    pub async fn list_all(&self) -> Result<Vec<Value>, K8sError> {
        let object = "httproutes (all namespaces)".to_string();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.resource);
        let listed = match call(
            "list",
            &object,
            self.timeout,
            api.list(&kube::api::ListParams::default()),
        )
        .await
        {
            Ok(listed) => listed,
            Err(K8sError::NotFound { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        listed
            .items
            .into_iter()
            .map(|route| {
                serde_json::to_value(route).map_err(|source| K8sError::Serde {
                    object: object.clone(),
                    source,
                })
            })
            .collect()
    }

    /// Applies a JSON merge patch (field manager `ripcord`); returns the route after the write.
    pub async fn patch_merge(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, K8sError> {
        let object = describe(KIND, Some(namespace), name);
        let written = call(
            "patch",
            &object,
            self.timeout,
            self.api(namespace).patch(
                name,
                &patch_params(),
                &Patch::Merge(marked_merge_patch(patch)),
            ),
        )
        .await?;
        serde_json::to_value(written).map_err(|source| K8sError::Serde { object, source })
    }
}

/// The route's `spec.rules` (empty list when missing).
pub fn rules(route: &Value) -> Value {
    route
        .pointer("/spec/rules")
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()))
}

/// backendRef name → weight, over every rule (the first occurrence of a name wins).
pub fn backend_weights(route: &Value) -> BTreeMap<String, u32> {
    let mut weights = BTreeMap::new();
    for backend in backend_refs(route) {
        let Some(name) = backend.get("name").and_then(Value::as_str) else {
            continue;
        };
        let weight = backend
            .get("weight")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_WEIGHT, |w| u32::try_from(w).unwrap_or(u32::MAX));
        weights.entry(name.to_string()).or_insert(weight);
    }
    weights
}

fn backend_refs(route: &Value) -> impl Iterator<Item = &Value> {
    route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|rule| rule.get("backendRefs").and_then(Value::as_array))
        .flatten()
}

/// The route's rules with the named backendRefs' weights replaced (every occurrence).
pub fn rules_with_weights(route: &Value, weights: &BTreeMap<String, u32>) -> Value {
    let mut rules = rules(route);
    if let Some(list) = rules.as_array_mut() {
        for rule in list {
            let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else {
                continue;
            };
            for backend in refs {
                let name = backend
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let (Some(name), Some(obj)) = (name, backend.as_object_mut())
                    && let Some(weight) = weights.get(&name)
                {
                    obj.insert("weight".to_string(), Value::from(*weight));
                }
            }
        }
    }
    rules
}

/// An annotation's value.
pub fn annotation<'a>(route: &'a Value, key: &str) -> Option<&'a str> {
    route
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The route's resourceVersion.
pub fn resource_version(route: &Value) -> Option<String> {
    route
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route() -> Value {
        json!({"spec": {"rules": [
            {"backendRefs": [{"name": "a", "weight": 100}, {"name": "b", "weight": 50}, {"name": "c"}]},
            {"backendRefs": [{"name": "a", "weight": 7}]}
        ]}})
    }

    #[test]
    fn weights_are_read_with_defaults() {
        let weights = backend_weights(&route());
        assert_eq!(weights.get("a"), Some(&100));
        assert_eq!(weights.get("b"), Some(&50));
        assert_eq!(weights.get("c"), Some(&DEFAULT_WEIGHT));
    }

    #[test]
    fn rewriting_touches_only_named_backends() {
        let new = rules_with_weights(&route(), &BTreeMap::from([("a".to_string(), 0)]));
        assert_eq!(new[0]["backendRefs"][0]["weight"], json!(0));
        assert_eq!(new[0]["backendRefs"][1]["weight"], json!(50));
        assert_eq!(new[1]["backendRefs"][0]["weight"], json!(0));
        assert!(new[0]["backendRefs"][2].get("weight").is_none());
    }
}
