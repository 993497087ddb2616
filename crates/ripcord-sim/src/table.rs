//! `meta.k8s.io/v1 Table` responses (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
//! with the columns `kubectl get` shows for the built-in kinds. Ages use simulated time.

use serde_json::{Value, json};

use crate::clock::SimClock;
use crate::discovery::crd_for;
use crate::store::{ResourceType, Store};

/// What each row's `object` holds (`includeObject` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the API server's default).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter (default `Metadata`).
    pub fn from_param(p: Option<&str>) -> IncludeObject {
        match p {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        p.contains("as=Table") && p.contains("g=meta.k8s.io")
    })
}

/// Formats an age like kubectl's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    let hours = secs / 3600;
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let days = hours / 24;
        let rem = days % 365;
        if rem == 0 {
            format!("{}y", days / 365)
        } else {
            format!("{}y{rem}d", days / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

fn age(clock: &SimClock, obj: &Value, pointer: &str) -> String {
    let Some(ts) = obj
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    human_duration(clock.now().duration_since(ts).as_secs())
}

fn s<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn n(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn containers(obj: &Value, template: bool) -> (String, String) {
    let p = if template {
        "/spec/template/spec/containers"
    } else {
        "/spec/containers"
    };
    let cs = obj
        .pointer(p)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn selector_string(obj: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    } else if let Some(m) = obj.pointer("/spec/selector").and_then(Value::as_object)
        && obj.pointer("/spec/selector/matchExpressions").is_none()
    {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                parts.push(format!("{k}={v}"));
            }
        }
    }
    for e in obj
        .pointer("/spec/selector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let key = s(e, "/key");
        match s(e, "/operator") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// The label selector of a workload as a string (`app=web`), as the Scale subresource
/// reports it.
pub fn workload_selector(obj: &Value) -> String {
    selector_string(obj)
}

fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let mut reason = s(pod, "/status/reason").to_string();
    if reason.is_empty() {
        reason = s(pod, "/status/phase").to_string();
    }
    for cs in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let waiting = s(cs, "/state/waiting/reason");
        if !waiting.is_empty() {
            return waiting.to_string();
        }
        let terminated = s(cs, "/state/terminated/reason");
        if !terminated.is_empty() {
            return terminated.to_string();
        }
    }
    if reason.is_empty() {
        "Pending".into()
    } else {
        reason
    }
}

fn node_status(node: &Value) -> String {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| s(c, "/type") == "Ready")
        .map(|c| s(c, "/status") == "True");
    let mut st = match ready {
        Some(true) => "Ready".to_string(),
        Some(false) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        st.push_str(",SchedulingDisabled");
    }
    st
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
        })
        .collect();
    roles.sort();
    or_none(roles.join(","))
}

fn node_address(node: &Value, kind: &str) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| s(a, "/type") == kind)
        .map(|a| s(a, "/address").to_string())
        .unwrap_or_default()
}

fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let mut out = n(p, "/port").to_string();
            if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
                out.push_str(&format!(":{np}"));
            }
            let proto = s(p, "/protocol");
            format!("{out}/{}", if proto.is_empty() { "TCP" } else { proto })
        })
        .collect();
    or_none(ports.join(","))
}

fn endpoints_string(ep: &Value) -> String {
    let mut out = Vec::new();
    for subset in ep
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<i64> = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| n(p, "/port"))
            .collect();
        for addr in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = s(addr, "/ip");
            if ports.is_empty() {
                out.push(ip.to_string());
            }
            for p in &ports {
                out.push(format!("{ip}:{p}"));
            }
        }
    }
    if out.len() > 3 {
        let more = out.len() - 3;
        out.truncate(3);
        return format!("{} + {more} more...", out.join(","));
    }
    or_none(out.join(","))
}

type Columns = Vec<(&'static str, &'static str, u8)>;

fn columns_and_cells(
    store: &Store,
    rt: &ResourceType,
    obj: &Value,
    clock: &SimClock,
) -> (Columns, Vec<Value>) {
    let name = json!(s(obj, "/metadata/name"));
    let created = age(clock, obj, "/metadata/creationTimestamp");
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => {
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: i64 = statuses.iter().map(|c| n(c, "/restartCount")).sum();
            (
                vec![
                    ("Name", "string", 0),
                    ("Ready", "string", 0),
                    ("Status", "string", 0),
                    ("Restarts", "string", 0),
                    ("Age", "string", 0),
                    ("IP", "string", 1),
                    ("Node", "string", 1),
                    ("Nominated Node", "string", 1),
                    ("Readiness Gates", "string", 1),
                ],
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    json!(pod_status(obj)),
                    json!(restarts.to_string()),
                    json!(created),
                    json!(or_none(s(obj, "/status/podIP").into())),
                    json!(or_none(s(obj, "/spec/nodeName").into())),
                    json!("<none>"),
                    json!(readiness_gates_column(obj)),
                ],
            )
        }
        ("apps", "deployments") => {
            let (cs, images) = containers(obj, true);
            (
                vec![
                    ("Name", "string", 0),
                    ("Ready", "string", 0),
                    ("Up-to-date", "integer", 0),
                    ("Available", "integer", 0),
                    ("Age", "string", 0),
                    ("Containers", "string", 1),
                    ("Images", "string", 1),
                    ("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        n(obj, "/status/readyReplicas"),
                        n(obj, "/spec/replicas")
                    )),
                    json!(n(obj, "/status/updatedReplicas")),
                    json!(n(obj, "/status/availableReplicas")),
                    json!(created),
                    json!(cs),
                    json!(images),
                    json!(selector_string(obj)),
                ],
            )
        }
        ("apps", "replicasets") | ("apps", "statefulsets") => {
            let (cs, images) = containers(obj, true);
            (
                vec![
                    ("Name", "string", 0),
                    ("Desired", "integer", 0),
                    ("Current", "integer", 0),
                    ("Ready", "integer", 0),
                    ("Age", "string", 0),
                    ("Containers", "string", 1),
                    ("Images", "string", 1),
                    ("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(n(obj, "/spec/replicas")),
                    json!(n(obj, "/status/replicas")),
                    json!(n(obj, "/status/readyReplicas")),
                    json!(created),
                    json!(cs),
                    json!(images),
                    json!(selector_string(obj)),
                ],
            )
        }
        ("apps", "daemonsets") => {
            let node_selector = obj
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            (
                vec![
                    ("Name", "string", 0),
                    ("Desired", "integer", 0),
                    ("Current", "integer", 0),
                    ("Ready", "integer", 0),
                    ("Up-to-date", "integer", 0),
                    ("Available", "integer", 0),
                    ("Node Selector", "string", 0),
                    ("Age", "string", 0),
                ],
                vec![
                    name,
                    json!(n(obj, "/status/desiredNumberScheduled")),
                    json!(n(obj, "/status/currentNumberScheduled")),
                    json!(n(obj, "/status/numberReady")),
                    json!(n(obj, "/status/updatedNumberScheduled")),
                    json!(n(obj, "/status/numberAvailable")),
                    json!(or_none(node_selector)),
                    json!(created),
                ],
            )
        }
        ("", "nodes") => (
            vec![
                ("Name", "string", 0),
                ("Status", "string", 0),
                ("Roles", "string", 0),
                ("Age", "string", 0),
                ("Version", "string", 0),
                ("Internal-IP", "string", 1),
                ("External-IP", "string", 1),
                ("OS-Image", "string", 1),
                ("Kernel-Version", "string", 1),
                ("Container-Runtime", "string", 1),
            ],
            vec![
                name,
                json!(node_status(obj)),
                json!(node_roles(obj)),
                json!(created),
                json!(s(obj, "/status/nodeInfo/kubeletVersion")),
                json!(or_none(node_address(obj, "InternalIP"))),
                json!(or_none(node_address(obj, "ExternalIP"))),
                json!(or_none(s(obj, "/status/nodeInfo/osImage").into())),
                json!(or_none(s(obj, "/status/nodeInfo/kernelVersion").into())),
                json!(or_none(
                    s(obj, "/status/nodeInfo/containerRuntimeVersion").into()
                )),
            ],
        ),
        ("", "namespaces") => (
            vec![
                ("Name", "string", 0),
                ("Status", "string", 0),
                ("Age", "string", 0),
            ],
            vec![
                name,
                json!(match s(obj, "/status/phase") {
                    "" => "Active",
                    p => p,
                }),
                json!(created),
            ],
        ),
        ("", "services") => (
            vec![
                ("Name", "string", 0),
                ("Type", "string", 0),
                ("Cluster-IP", "string", 0),
                ("External-IP", "string", 0),
                ("Port(s)", "string", 0),
                ("Age", "string", 0),
                ("Selector", "string", 1),
            ],
            vec![
                name,
                json!(match s(obj, "/spec/type") {
                    "" => "ClusterIP",
                    t => t,
                }),
                json!(or_none(s(obj, "/spec/clusterIP").into())),
                json!("<none>"),
                json!(service_ports(obj)),
                json!(created),
                json!(or_none(selector_string(obj))),
            ],
        ),
        ("", "endpoints") => (
            vec![
                ("Name", "string", 0),
                ("Endpoints", "string", 0),
                ("Age", "string", 0),
            ],
            vec![name, json!(endpoints_string(obj)), json!(created)],
        ),
        ("", "configmaps") => (
            vec![
                ("Name", "string", 0),
                ("Data", "integer", 0),
                ("Age", "string", 0),
            ],
            vec![
                name,
                json!(
                    obj.get("data")
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                        + obj
                            .get("binaryData")
                            .and_then(Value::as_object)
                            .map_or(0, |m| m.len())
                ),
                json!(created),
            ],
        ),
        ("", "secrets") => (
            vec![
                ("Name", "string", 0),
                ("Type", "string", 0),
                ("Data", "integer", 0),
                ("Age", "string", 0),
            ],
            vec![
                name,
                json!(s(obj, "/type")),
                json!(
                    obj.get("data")
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                ),
                json!(created),
            ],
        ),
        ("", "events") => {
            let object = format!(
                "{}/{}",
                s(obj, "/involvedObject/kind").to_lowercase(),
                s(obj, "/involvedObject/name")
            );
            let last = if obj
                .pointer("/lastTimestamp")
                .and_then(Value::as_str)
                .is_some()
            {
                age(clock, obj, "/lastTimestamp")
            } else {
                age(clock, obj, "/eventTime")
            };
            (
                vec![
                    ("Last Seen", "string", 0),
                    ("Type", "string", 0),
                    ("Reason", "string", 0),
                    ("Object", "string", 0),
                    ("Message", "string", 0),
                ],
                vec![
                    json!(last),
                    json!(s(obj, "/type")),
                    json!(s(obj, "/reason")),
                    json!(object),
                    json!(s(obj, "/message")),
                ],
            )
        }
        ("policy", "poddisruptionbudgets") => (
            vec![
                ("Name", "string", 0),
                ("Min Available", "string", 0),
                ("Max Unavailable", "string", 0),
                ("Allowed Disruptions", "integer", 0),
                ("Age", "string", 0),
            ],
            vec![
                name,
                json!(int_or_string(obj.pointer("/spec/minAvailable"))),
                json!(int_or_string(obj.pointer("/spec/maxUnavailable"))),
                json!(n(obj, "/status/disruptionsAllowed")),
                json!(created),
            ],
        ),
        ("coordination.k8s.io", "leases") => (
            vec![
                ("Name", "string", 0),
                ("Holder", "string", 0),
                ("Age", "string", 0),
            ],
            vec![name, json!(s(obj, "/spec/holderIdentity")), json!(created)],
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions") => (
            vec![("Name", "string", 0), ("Created At", "date", 0)],
            vec![name, json!(s(obj, "/metadata/creationTimestamp"))],
        ),
        _ => custom_columns(store, rt, obj, name, created),
    }
}

fn custom_columns(
    store: &Store,
    rt: &ResourceType,
    obj: &Value,
    name: Value,
    created: String,
) -> (Columns, Vec<Value>) {
    let mut cols: Columns = vec![("Name", "string", 0)];
    let mut cells = vec![name];
    let printer_columns: Vec<Value> = crd_for(store, rt)
        .and_then(|crd| {
            crd.pointer("/spec/versions")
                .and_then(Value::as_array)
                .and_then(|vs| {
                    vs.iter()
                        .find(|v| s(v, "/name") == rt.version)
                        .and_then(|v| v.get("additionalPrinterColumns"))
                        .and_then(Value::as_array)
                        .cloned()
                })
        })
        .unwrap_or_default();
    for col in printer_columns.iter().take(8) {
        // The column's real name and type are filled in by `column_definitions`.
        let path = s(col, "/jsonPath");
        let pointer = path.replace('.', "/");
        let value = obj.pointer(&pointer).cloned().unwrap_or(Value::Null);
        let cell = match value {
            Value::Null => json!("<none>"),
            Value::String(_) | Value::Number(_) | Value::Bool(_) => value,
            other => json!(other.to_string()),
        };
        cols.push(("", "string", 0));
        cells.push(cell);
    }
    cols.push(("Age", "date", 0));
    cells.push(json!(created));
    (cols, cells)
}

fn column_definitions(store: &Store, rt: &ResourceType, cols: &Columns) -> Vec<Value> {
    let printer_names: Vec<(String, String)> = crd_for(store, rt)
        .and_then(|crd| {
            crd.pointer("/spec/versions")
                .and_then(Value::as_array)
                .and_then(|vs| {
                    vs.iter()
                        .find(|v| s(v, "/name") == rt.version)
                        .and_then(|v| v.get("additionalPrinterColumns"))
                        .and_then(Value::as_array)
                        .map(|cs| {
                            cs.iter()
                                .map(|c| (s(c, "/name").to_string(), s(c, "/type").to_string()))
                                .collect()
                        })
                })
        })
        .unwrap_or_default();
    let mut custom = printer_names.into_iter();
    cols.iter()
        .map(|(name, ty, priority)| {
            let (name, ty) = if name.is_empty() {
                custom
                    .next()
                    .unwrap_or_else(|| ("Column".into(), "string".into()))
            } else {
                (name.to_string(), ty.to_string())
            };
            let format = if name == "Name" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
        })
        .collect()
}

fn row_object(obj: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(obj.clone()),
        IncludeObject::Metadata => {
            let mut metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
            if let Some(m) = metadata.as_object_mut() {
                m.remove("managedFields");
            }
            Some(json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
            }))
        }
    }
}

/// A Table of `objs`. `list_meta` is the list metadata (resourceVersion, continue);
/// `with_columns` includes the column definitions (watch events after the first omit them).
pub fn table(
    store: &Store,
    rt: &ResourceType,
    objs: &[Value],
    include: IncludeObject,
    list_meta: Value,
    with_columns: bool,
) -> Value {
    let clock = store.clock();
    let mut cols: Option<Columns> = None;
    let rows: Vec<Value> = objs
        .iter()
        .map(|obj| {
            let (c, cells) = columns_and_cells(store, rt, obj, clock);
            if cols.is_none() {
                cols = Some(c);
            }
            let mut row = json!({"cells": cells});
            if let Some(o) = row_object(obj, include) {
                row["object"] = o;
            }
            row
        })
        .collect();
    let cols = cols.unwrap_or_else(|| columns_and_cells(store, rt, &json!({}), clock).0);
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = json!(column_definitions(store, rt, &cols));
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

/// kubectl's READINESS GATES column: `<none>` without gates, else `passing/total` (a gate passes
/// when its condition in `status.conditions` is `True`).
fn readiness_gates_column(pod: &Value) -> String {
    let gates: Vec<&str> = pod
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let passing = gates
        .iter()
        .filter(|gate| {
            conditions
                .iter()
                .any(|c| c["type"] == **gate && c["status"] == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kinds;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
    }

    #[tokio::test]
    async fn deployment_and_node_rows() {
        let store = Store::new(SimClock::new(1.0));
        let d = json!({"metadata": {"name": "web", "creationTimestamp": store.clock().rfc3339()},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = table(
            &store,
            &kinds::deployments(),
            &[d],
            IncludeObject::Object,
            json!({}),
            true,
        );
        assert_eq!(t["rows"][0]["cells"][1], "2/3");
        assert_eq!(t["rows"][0]["cells"][7], "app=web");
        assert_eq!(t["columnDefinitions"][1]["name"], "Ready");
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let t = table(
            &store,
            &kinds::nodes(),
            &[node],
            IncludeObject::Metadata,
            json!({}),
            false,
        );
        assert_eq!(t["rows"][0]["cells"][1], "Ready,SchedulingDisabled");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
    }
}
