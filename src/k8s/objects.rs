//! Any kind through `DynamicObject`/`ApiResource`: discovery of a kind, get, JSON merge patch.
//! Used by `object.patch` and by evidence capture for kinds without a typed helper.

use super::{K8sError, call, describe, marked_merge_patch, patch_params};
use kube::api::{DynamicObject, ListParams, Patch};
use kube::core::{ApiResource, GroupVersion, GroupVersionKind};
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde_json::Value;
use std::time::Duration;

/// A kind resolved through discovery.
#[derive(Debug, Clone)]
pub struct ResolvedKind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// True for namespaced kinds.
    pub namespaced: bool,
}

/// Dynamic object helpers, each call bounded by one per-call timeout.
#[derive(Clone)]
pub struct Objects {
    client: Client,
    timeout: Duration,
}

// === impl Objects ===

impl Objects {
    /// Helpers using `client`, each call bounded by `call_timeout`.
    pub fn new(client: Client, call_timeout: Duration) -> Objects {
        Objects {
            client,
            timeout: call_timeout,
        }
    }

    /// Resolves `apiVersion` + `kind` to a served resource: built-in kinds from a table (no
    /// request), anything else through one discovery call.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResolvedKind, K8sError> {
        if let Some(known) = builtin_kind(api_version, kind) {
            return Ok(known);
        }
        let gv: GroupVersion = api_version.parse().map_err(|_| K8sError::Invalid {
            object: format!("{api_version} {kind}"),
            reason: format!("{api_version:?} is not a valid apiVersion"),
        })?;
        let gvk = GroupVersionKind::gvk(&gv.group, &gv.version, kind);
        let object = format!("{api_version} {kind}");
        let found = tokio::time::timeout(self.timeout, discovery::pinned_kind(&self.client, &gvk))
            .await
            .map_err(|_| K8sError::Timeout {
                operation: "discover",
                object: object.clone(),
                after: self.timeout,
            })?;
        match found {
            Ok((resource, caps)) => Ok(ResolvedKind {
                resource,
                namespaced: caps.scope == Scope::Namespaced,
            }),
            Err(source) => Err(K8sError::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                source,
            }),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bound of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn api(&self, kind: &ResolvedKind, namespace: Option<&str>) -> Api<DynamicObject> {
        match (kind.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            (true, None) => Api::default_namespaced_with(self.client.clone(), &kind.resource),
            (false, _) => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    /// Reads one object as JSON.
    pub async fn get(
        &self,
        kind: &ResolvedKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, K8sError> {
        let object = describe(&kind.resource.kind, namespace, name);
        let found = call(
            "get",
            &object,
            self.timeout,
            self.api(kind, namespace).get(name),
        )
        .await?;
        serde_json::to_value(found).map_err(|source| K8sError::Serde { object, source })
    }

    /// Lists objects of a kind (one namespace, or cluster-wide for cluster-scoped kinds) as JSON.
    pub async fn list(
        &self,
        kind: &ResolvedKind,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<Vec<Value>, K8sError> {
        let object = describe(&kind.resource.plural, namespace, "*");
        let list = call(
            "list",
            &object,
            self.timeout,
            self.api(kind, namespace).list(params),
        )
        .await?;
        list.items
            .into_iter()
            .map(|item| {
                serde_json::to_value(item).map_err(|source| K8sError::Serde {
                    object: object.clone(),
                    source,
                })
            })
            .collect()
    }

    /// One page of a list (`params.limit` is the page size, `params.continue_token` the page):
    /// the items as JSON (each with `apiVersion` and `kind`, which a list may leave out) and
    /// the token of the next page (`None`: the list ends here).
    pub async fn list_page(
        &self,
        kind: &ResolvedKind,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<(Vec<Value>, Option<String>), K8sError> {
        let object = describe(&kind.resource.plural, namespace, "*");
        // Parsed straight into JSON values: no typed or `DynamicObject` detour (its flattened
        // fields make a 10,000-pod list parse and serialize twice).
        let url = match (kind.namespaced, namespace) {
            (true, Some(ns)) => {
                <DynamicObject as kube::Resource>::url_path(&kind.resource, Some(ns))
            }
            _ => <DynamicObject as kube::Resource>::url_path(&kind.resource, None),
        };
        let request = kube::core::Request::new(url)
            .list(params)
            .map_err(|source| K8sError::Serde {
                object: object.clone(),
                source: serde_json::Error::io(std::io::Error::other(source.to_string())),
            })?;
        let list: kube::core::ObjectList<Value> = call(
            "list",
            &object,
            self.timeout,
            self.client
                .request::<kube::core::ObjectList<Value>>(request),
        )
        .await?;
        let next = list.metadata.continue_.filter(|token| !token.is_empty());
        let mut items = Vec::with_capacity(list.items.len());
        for mut value in list.items {
            if let Some(map) = value.as_object_mut() {
                map.entry("apiVersion")
                    .or_insert_with(|| Value::String(kind.resource.api_version.clone()));
                map.entry("kind")
                    .or_insert_with(|| Value::String(kind.resource.kind.clone()));
            }
            items.push(value);
        }
        Ok((items, next))
    }

    /// Applies a JSON merge patch (RFC 7386) with field manager `ripcord`; returns the object
    /// after the write.
    pub async fn patch_merge(
        &self,
        kind: &ResolvedKind,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<Value, K8sError> {
        let object = describe(&kind.resource.kind, namespace, name);
        let written = call(
            "patch",
            &object,
            self.timeout,
            self.api(kind, namespace).patch(
                name,
                &patch_params(),
                &Patch::Merge(marked_merge_patch(patch)),
            ),
        )
        .await?;
        serde_json::to_value(written).map_err(|source| K8sError::Serde { object, source })
    }
}

/// Built-in kinds every conformant API server serves: (apiVersion, kind, plural, namespaced).
const BUILTIN_KINDS: &[(&str, &str, &str, bool)] = &[
    ("v1", "Pod", "pods", true),
    ("v1", "Service", "services", true),
    ("v1", "Endpoints", "endpoints", true),
    ("v1", "ConfigMap", "configmaps", true),
    ("v1", "Secret", "secrets", true),
    ("v1", "Event", "events", true),
    ("v1", "ServiceAccount", "serviceaccounts", true),
    ("v1", "Node", "nodes", false),
    ("v1", "Namespace", "namespaces", false),
    ("apps/v1", "Deployment", "deployments", true),
    ("apps/v1", "ReplicaSet", "replicasets", true),
    ("apps/v1", "DaemonSet", "daemonsets", true),
    ("apps/v1", "StatefulSet", "statefulsets", true),
    (
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
    (
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    ("coordination.k8s.io/v1", "Lease", "leases", true),
];

/// A built-in kind resolved without discovery, if `apiVersion`/`kind` is one.
pub fn builtin_kind(api_version: &str, kind: &str) -> Option<ResolvedKind> {
    let (_, _, plural, namespaced) = BUILTIN_KINDS
        .iter()
        .find(|(v, k, _, _)| *v == api_version && *k == kind)?;
    let gv: GroupVersion = api_version.parse().ok()?;
    let gvk = GroupVersionKind::gvk(&gv.group, &gv.version, kind);
    Some(ResolvedKind {
        resource: ApiResource::from_gvk_with_plural(&gvk, plural),
        namespaced: *namespaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_resolve_without_discovery() {
        let d = builtin_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(d.resource.plural, "deployments");
        assert_eq!(d.resource.group, "apps");
        assert!(d.namespaced);
        let n = builtin_kind("v1", "Node").unwrap();
        assert_eq!(n.resource.group, "");
        assert!(!n.namespaced);
        assert!(builtin_kind("example.com/v1", "Widget").is_none());
    }
}
