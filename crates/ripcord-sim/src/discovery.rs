//! API discovery: `/version`, `/api`, `/apis`, group-version resource lists (legacy format) and
//! the aggregated discovery documents (`apidiscovery.k8s.io/v2`) that kubectl >= 1.30 and
//! kube-rs ask for.

use serde_json::{Value, json};

use crate::store::{ResourceType, Store, kinds};

/// The Kubernetes version the sim claims to be.
pub const SIM_K8S_MINOR: &str = "34";

/// The verbs every served resource supports.
pub const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The media type of aggregated discovery v2 responses.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// A subresource as advertised in discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// Name, e.g. `scale`.
    pub name: &'static str,
    /// Group of the kind it returns.
    pub group: String,
    /// Version of the kind it returns.
    pub version: String,
    /// The kind it returns.
    pub kind: String,
    /// Verbs.
    pub verbs: Vec<&'static str>,
}

/// Discovery metadata for one resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// The type.
    pub rt: ResourceType,
    /// Lower-case singular name.
    pub singular: String,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Subresources.
    pub subresources: Vec<Subresource>,
}

fn status_sub(rt: &ResourceType) -> Subresource {
    Subresource {
        name: "status",
        group: rt.group.clone(),
        version: rt.version.clone(),
        kind: rt.kind.clone(),
        verbs: vec!["get", "patch", "update"],
    }
}

fn scale_sub() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling".into(),
        version: "v1".into(),
        kind: "Scale".into(),
        verbs: vec!["get", "patch", "update"],
    }
}

/// Discovery metadata for `rt`, using the CRD objects in `store` for custom resources.
pub fn resource_info(store: &Store, rt: &ResourceType) -> ResourceInfo {
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (short, cats, subs): (Vec<String>, Vec<String>, Vec<Subresource>) =
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "pods") => (
                strs(&["po"]),
                strs(&["all"]),
                vec![
                    Subresource {
                        name: "eviction",
                        group: "policy".into(),
                        version: "v1".into(),
                        kind: "Eviction".into(),
                        verbs: vec!["create"],
                    },
                    Subresource {
                        name: "log",
                        group: String::new(),
                        version: "v1".into(),
                        kind: "Pod".into(),
                        verbs: vec!["get"],
                    },
                    Subresource {
                        name: "proxy",
                        group: String::new(),
                        version: "v1".into(),
                        kind: "PodProxyOptions".into(),
                        verbs: vec!["create", "delete", "get", "patch", "update"],
                    },
                    status_sub(rt),
                ],
            ),
            ("", "nodes") => (strs(&["no"]), vec![], vec![status_sub(rt)]),
            ("", "namespaces") => (strs(&["ns"]), vec![], vec![status_sub(rt)]),
            ("", "services") => (strs(&["svc"]), strs(&["all"]), vec![status_sub(rt)]),
            ("", "endpoints") => (strs(&["ep"]), vec![], vec![]),
            ("", "configmaps") => (strs(&["cm"]), vec![], vec![]),
            ("", "events") | ("events.k8s.io", "events") => (strs(&["ev"]), vec![], vec![]),
            ("", "serviceaccounts") => (strs(&["sa"]), vec![], vec![]),
            ("", "persistentvolumeclaims") => (strs(&["pvc"]), vec![], vec![status_sub(rt)]),
            ("", "persistentvolumes") => (strs(&["pv"]), vec![], vec![status_sub(rt)]),
            ("", "replicationcontrollers") => (
                strs(&["rc"]),
                strs(&["all"]),
                vec![scale_sub(), status_sub(rt)],
            ),
            ("batch", "jobs") => (vec![], strs(&["all"]), vec![status_sub(rt)]),
            ("batch", "cronjobs") => (strs(&["cj"]), strs(&["all"]), vec![status_sub(rt)]),
            ("autoscaling", "horizontalpodautoscalers") => {
                (strs(&["hpa"]), strs(&["all"]), vec![status_sub(rt)])
            }
            ("discovery.k8s.io", "endpointslices") => (vec![], vec![], vec![]),
            ("networking.k8s.io", "ingresses") => (strs(&["ing"]), vec![], vec![status_sub(rt)]),
            ("apps", "deployments") => (
                strs(&["deploy"]),
                strs(&["all"]),
                vec![scale_sub(), status_sub(rt)],
            ),
            ("apps", "replicasets") => (
                strs(&["rs"]),
                strs(&["all"]),
                vec![scale_sub(), status_sub(rt)],
            ),
            ("apps", "statefulsets") => (
                strs(&["sts"]),
                strs(&["all"]),
                vec![scale_sub(), status_sub(rt)],
            ),
            ("apps", "daemonsets") => (strs(&["ds"]), strs(&["all"]), vec![status_sub(rt)]),
            ("policy", "poddisruptionbudgets") => (strs(&["pdb"]), vec![], vec![status_sub(rt)]),
            ("gateway.networking.k8s.io", "httproutes") => {
                (vec![], strs(&["gateway-api"]), vec![status_sub(rt)])
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => (
                strs(&["crd", "crds"]),
                strs(&["api-extensions"]),
                vec![status_sub(rt)],
            ),
            _ => custom_info(store, rt),
        };
    let singular = crd_for(store, rt)
        .and_then(|crd| {
            crd.pointer("/spec/names/singular")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| rt.kind.to_lowercase());
    ResourceInfo {
        rt: rt.clone(),
        singular,
        short_names: short,
        categories: cats,
        subresources: subs,
    }
}

/// The CRD object defining `rt`, if it is a custom resource.
pub fn crd_for(store: &Store, rt: &ResourceType) -> Option<Value> {
    if kinds::builtin().contains(rt) {
        return None;
    }
    store.list(&kinds::crds(), None).0.into_iter().find(|crd| {
        crd.pointer("/spec/group").and_then(Value::as_str) == Some(rt.group.as_str())
            && crd.pointer("/spec/names/plural").and_then(Value::as_str) == Some(rt.plural.as_str())
    })
}

/// Whether the custom resource `rt` has the status subresource enabled in its CRD.
pub fn crd_has_status(store: &Store, rt: &ResourceType) -> bool {
    crd_for(store, rt).is_some_and(|crd| {
        crd.pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|v| {
                v.get("name").and_then(Value::as_str) == Some(rt.version.as_str())
                    && v.pointer("/subresources/status").is_some()
            })
    })
}

fn custom_info(store: &Store, rt: &ResourceType) -> (Vec<String>, Vec<String>, Vec<Subresource>) {
    let Some(crd) = crd_for(store, rt) else {
        return (vec![], vec![], vec![]);
    };
    let list = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let subs = if crd_has_status(store, rt) {
        vec![status_sub(rt)]
    } else {
        vec![]
    };
    (
        list("/spec/names/shortNames"),
        list("/spec/names/categories"),
        subs,
    )
}

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": SIM_K8S_MINOR,
        "emulationMajor": "1",
        "emulationMinor": SIM_K8S_MINOR,
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "33",
        "gitVersion": format!("v1.{SIM_K8S_MINOR}.0-ripcord-sim"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api` (legacy): the core group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// The named groups and their versions, in discovery order.
fn groups(store: &Store) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for rt in store.resource_types() {
        if rt.group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, versions)) => {
                if !versions.contains(&rt.version) {
                    versions.push(rt.version.clone());
                }
            }
            None => out.push((rt.group.clone(), vec![rt.version.clone()])),
        }
    }
    out
}

/// `GET /apis` (legacy): an `APIGroupList`.
pub fn api_group_list(store: &Store) -> Value {
    let groups: Vec<Value> = groups(store)
        .into_iter()
        .map(|(group, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            let preferred = vs.first().cloned().unwrap_or(Value::Null);
            json!({"name": group, "versions": vs, "preferredVersion": preferred})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}` (legacy): one `APIGroup`, or `None` if the group is not served.
pub fn api_group(store: &Store, group: &str) -> Option<Value> {
    let list = api_group_list(store);
    let found = list["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == group)?
        .clone();
    let mut found = found;
    found["kind"] = json!("APIGroup");
    found["apiVersion"] = json!("v1");
    Some(found)
}

/// `GET /api/v1` or `/apis/{group}/{version}` (legacy): an `APIResourceList`, or `None`
/// when the group version is not served.
pub fn api_resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
    let types: Vec<ResourceType> = store
        .resource_types()
        .into_iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for rt in &types {
        let info = resource_info(store, rt);
        let mut r = json!({
            "name": rt.plural,
            "singularName": info.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": ALL_VERBS,
        });
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            r["categories"] = json!(info.categories);
        }
        resources.push(r);
        for sub in &info.subresources {
            let mut s = json!({
                "name": format!("{}/{}", rt.plural, sub.name),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if sub.group != rt.group || sub.version != rt.version {
                s["group"] = json!(sub.group);
                s["version"] = json!(sub.version);
            }
            resources.push(s);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn aggregated_resource(store: &Store, rt: &ResourceType) -> Value {
    let info = resource_info(store, rt);
    let subs: Vec<Value> = info
        .subresources
        .iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                "verbs": s.verbs,
            })
        })
        .collect();
    let mut r = json!({
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": info.singular,
        "verbs": ALL_VERBS,
    });
    if !info.short_names.is_empty() {
        r["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        r["categories"] = json!(info.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) for the core group
/// (`core == true`, served at `/api`) or all named groups (served at `/apis`).
pub fn aggregated(store: &Store, core: bool) -> Value {
    let types = store.resource_types();
    let group_names: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        groups(store)
    };
    let items: Vec<Value> = group_names
        .into_iter()
        .map(|(group, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = types
                        .iter()
                        .filter(|t| t.group == group && &t.version == v)
                        .map(|t| aggregated_resource(store, t))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !group.is_empty() {
                metadata["name"] = json!(group);
            }
            json!({"metadata": metadata, "versions": vs})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// Whether an `Accept` header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        p.contains("g=apidiscovery.k8s.io")
            && p.contains("v=v2;")
            && p.contains("as=APIGroupDiscoveryList")
            || p.contains("g=apidiscovery.k8s.io")
                && p.ends_with("v=v2")
                && p.contains("as=APIGroupDiscoveryList")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    #[test]
    fn core_resource_list_has_short_names_and_subresources() {
        let store = Store::new(SimClock::new(1.0));
        let list = api_resource_list(&store, "", "v1").unwrap();
        let res = list["resources"].as_array().unwrap();
        let pods = res.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        let eviction = res.iter().find(|r| r["name"] == "pods/eviction").unwrap();
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["kind"], "Eviction");
        assert!(api_resource_list(&store, "nope", "v1").is_none());
        let apps = api_resource_list(&store, "apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
    }

    #[test]
    fn aggregated_lists_groups() {
        let store = Store::new(SimClock::new(1.0));
        let apis = aggregated(&store, false);
        let names: Vec<_> = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].clone())
            .collect();
        assert!(names.contains(&json!("apps")));
        assert!(names.contains(&json!("policy")));
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
    }
}
