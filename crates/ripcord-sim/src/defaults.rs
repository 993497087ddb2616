//! Defaulting and the little validation the sim's API server does on writes, so objects look
//! like a real server's (e.g. Deployment strategy, pod template defaults, Service cluster IPs).
//! Defaulting is idempotent: applying it twice changes nothing.

use serde_json::{Map, Value, json};

use crate::status::ApiError;
use crate::store::{ResourceType, Store, kinds};

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    let entry = m.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut()
}

/// Sets `key` unless it holds a value: missing, `null`, `""` and `{}` count as unset (Go's
/// defaulting checks zero values; protobuf clients send them).
fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    let unset = m.get(key).is_none_or(|v| {
        v.is_null() || v.as_str() == Some("") || v.as_object().is_some_and(Map::is_empty)
    });
    if unset {
        m.insert(key.into(), value);
    }
}

/// Pod spec defaults (restartPolicy, dnsPolicy, schedulerName, termination settings, image
/// pull policy, container termination message fields).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    for field in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(field).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let latest = c.get("image").and_then(Value::as_str).is_some_and(|i| {
                    !i.rsplit('/').next().unwrap_or(i).contains(':') || i.ends_with(":latest")
                });
                default(
                    c,
                    "imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn default_template(obj: &mut Value) {
    if let Some(spec) = obj
        .pointer_mut("/spec/template")
        .and_then(|t| obj_mut(t, "spec"))
    {
        default_pod_spec(spec);
    }
}

/// Applies the server-side defaults for `rt` to `obj`.
pub fn apply_defaults(store: &Store, rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
                default(
                    spec,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
                if let Some(st) = spec.get_mut("strategy").and_then(Value::as_object_mut)
                    && st.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                {
                    let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        default(ru, "maxUnavailable", json!("25%"));
                        default(ru, "maxSurge", json!("25%"));
                    }
                }
            }
            default_template(obj);
        }
        ("apps", "replicasets") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "replicas", json!(1));
            }
            default_template(obj);
        }
        ("apps", "statefulsets") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                default(spec, "revisionHistoryLimit", json!(10));
                default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
            }
            default_template(obj);
        }
        ("apps", "daemonsets") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "revisionHistoryLimit", json!(10));
                default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
            }
            default_template(obj);
        }
        ("", "pods") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default_pod_spec(spec);
            }
        }
        ("", "services") => {
            let ip = next_cluster_ip(store);
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "type", json!("ClusterIP"));
                default(spec, "sessionAffinity", json!("None"));
                if spec
                    .get("clusterIP")
                    .is_none_or(|ip| ip.is_null() || ip.as_str() == Some(""))
                {
                    spec.insert("clusterIP".into(), json!(ip));
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                        if p.get("targetPort").is_none()
                            && let Some(port) = p.get("port").cloned()
                        {
                            p.insert("targetPort".into(), port);
                        }
                    }
                }
            }
        }
        ("", "namespaces") => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let (Some(name), Some(meta)) = (name, obj_mut(obj, "metadata")) {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "finalizers", json!(["kubernetes"]));
            }
            if let Some(status) = obj_mut(obj, "status") {
                default(status, "phase", json!("Active"));
            }
        }
        _ => {}
    }
}

/// What a real control plane adds to a new namespace: the `default` ServiceAccount (the
/// serviceaccount controller's work) and, in `default`, the `kubernetes` Service fronting the
/// API server. Objects that already exist are left alone.
pub fn namespace_created(store: &Store, namespace: &str) {
    let sa = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace},
    });
    if let Err(error) = store.create(&kinds::service_accounts(), sa) {
        tracing::debug!(%error, namespace, "default service account not created");
    }
    if namespace == "default" {
        let svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP,
                     "clusterIPs": [KUBERNETES_SERVICE_IP], "sessionAffinity": "None",
                     "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
            "status": {"loadBalancer": {}},
        });
        if let Err(error) = store.create(&kinds::services(), svc) {
            tracing::debug!(%error, "kubernetes service not created");
        }
    }
}

/// The cluster IP of `default/kubernetes` (the first address of the service range).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

fn next_cluster_ip(store: &Store) -> String {
    let n = store.count(&kinds::services()) as u64 + 1;
    format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1)
}

/// Validation of a new object of `rt` (see [`crate::validation`], which also checks
/// updates): workloads need a selector that matches their template labels, names must be
/// valid, and so on.
pub fn validate(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    crate::validation::validate(rt, obj, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    #[test]
    fn deployment_defaults_are_idempotent() {
        let store = Store::new(SimClock::new(1.0));
        let mut d = json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}});
        apply_defaults(&store, &kinds::deployments(), &mut d);
        let once = d.clone();
        apply_defaults(&store, &kinds::deployments(), &mut d);
        assert_eq!(once, d);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert!(validate(&kinds::deployments(), &d).is_ok());
        d["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
        let err = validate(&kinds::deployments(), &d).unwrap_err();
        assert!(
            err.to_string()
                .contains("`selector` does not match template `labels`")
        );
    }
}
