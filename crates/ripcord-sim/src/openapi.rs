//! Minimal OpenAPI v3 documents: enough for kubectl to detect server-side field validation
//! (`fieldValidation` on each kind's PATCH operation), so default `kubectl create/apply/replace`
//! work without client-side schema validation. Schemas are not served (`kubectl explain` does
//! not work); `/openapi/v2` answers 404.

use serde_json::{Map, Value, json};

use crate::store::{ResourceType, Store};

fn gv_path(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        format!("api/{}", rt.version)
    } else {
        format!("apis/{}/{}", rt.group, rt.version)
    }
}

/// `GET /openapi/v3`: the group-version index.
pub fn root(store: &Store) -> Value {
    let mut paths = Map::new();
    let types = store.resource_types();
    for rt in &types {
        let p = gv_path(rt);
        // The hash changes when the set of served types changes, so clients may cache.
        let url = format!("/openapi/v3/{p}?hash={:016X}", hash(&p, types.len() as u64));
        paths.insert(p, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

fn hash(s: &str, salt: u64) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ salt, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// `GET /openapi/v3/{api/v1 | apis/g/v}`: PATCH operations per kind with their query
/// parameters; `None` when the group version is not served.
pub fn group_version(store: &Store, gv: &str) -> Option<Value> {
    let types: Vec<ResourceType> = store
        .resource_types()
        .into_iter()
        .filter(|rt| gv_path(rt) == gv)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for rt in &types {
        let prefix = format!("/{}", gv_path(rt));
        let item = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("{prefix}/{}/{{name}}", rt.plural)
        };
        let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
        let params: Vec<Value> = [
            "dryRun",
            "fieldManager",
            "fieldValidation",
            "force",
            "pretty",
        ]
        .iter()
        .map(|p| param(p))
        .collect();
        paths.insert(
            item,
            json!({
                "patch": {
                    "operationId": format!("patch{}", rt.kind),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                },
                "put": {
                    "operationId": format!("replace{}", rt.kind),
                    "x-kubernetes-action": "put",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                },
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0-ripcord-sim"},
        "paths": paths,
        "components": {},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    #[test]
    fn patch_operations_advertise_field_validation() {
        let store = Store::new(SimClock::new(1.0));
        let root = root(&store);
        assert!(
            root["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let doc = group_version(&store, "apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(group_version(&store, "apis/nope/v1").is_none());
    }
}
