//! Pod scheduling (pure): filter the nodes a pod fits on, then pick the least-loaded node in
//! the zone that holds the fewest pods of the same owner.
//!
//! Filters, like the real scheduler's default plugins: node Ready, `spec.unschedulable`
//! (unless the pod tolerates `node.kubernetes.io/unschedulable`), `NoSchedule`/`NoExecute`
//! taints without a matching toleration, `nodeSelector`, allocatable cpu/memory/pods minus
//! the requests of pods already bound. Scoring: zone spread of the pod's owner first, then
//! same-owner pods on the node, then total requested cpu fraction, then name (deterministic).

use std::collections::BTreeMap;

use serde_json::Value;

use super::util::{
    self, at, bool_at, parse_cpu_millis, parse_memory_bytes, quantity_str, str_at, string_map,
};

/// Label that carries a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Taint key the API server uses for cordoned nodes.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// What the scheduler knows about one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Value of `topology.kubernetes.io/zone` ("" when absent).
    pub zone: String,
    /// Node labels (for `nodeSelector`).
    pub labels: BTreeMap<String, String>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Whether the `Ready` condition is `True`.
    pub ready: bool,
    /// `spec.taints` as (key, value, effect).
    pub taints: Vec<(String, String, String)>,
    /// Allocatable millicores.
    pub cpu_millis: i64,
    /// Allocatable bytes of memory.
    pub memory_bytes: i64,
    /// Allocatable pod slots.
    pub max_pods: i64,
    /// Requested millicores of pods bound to the node.
    pub used_cpu_millis: i64,
    /// Requested memory of pods bound to the node.
    pub used_memory_bytes: i64,
    /// Number of pods bound to the node.
    pub pods: i64,
}

impl NodeInfo {
    /// Reads a Node object (usage starts at zero; add pods with [`NodeInfo::add_pod`]).
    pub fn from_node(node: &Value) -> NodeInfo {
        let alloc = at(node, &["status", "allocatable"]);
        let q = |k: &str| alloc.and_then(|a| a.get(k)).and_then(quantity_str);
        let taints = at(node, &["spec", "taints"])
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        let s =
                            |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        (s("key"), s("value"), s("effect"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let labels = util::labels(node);
        NodeInfo {
            name: util::name(node).to_string(),
            zone: labels.get(ZONE_LABEL).cloned().unwrap_or_default(),
            labels,
            unschedulable: bool_at(node, &["spec", "unschedulable"]),
            ready: util::pod_condition(node, "Ready")
                .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True")),
            taints,
            cpu_millis: q("cpu")
                .and_then(|s| parse_cpu_millis(&s))
                .unwrap_or(i64::MAX / 4),
            memory_bytes: q("memory")
                .and_then(|s| parse_memory_bytes(&s))
                .unwrap_or(i64::MAX / 4),
            max_pods: q("pods").and_then(|s| s.parse().ok()).unwrap_or(110),
            used_cpu_millis: 0,
            used_memory_bytes: 0,
            pods: 0,
        }
    }

    /// Accounts a pod bound to this node.
    pub fn add_pod(&mut self, cpu_millis: i64, memory_bytes: i64) {
        self.used_cpu_millis += cpu_millis;
        self.used_memory_bytes += memory_bytes;
        self.pods += 1;
    }
}

/// What the scheduler needs to know about the pod being placed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodRequest {
    /// Requested millicores.
    pub cpu_millis: i64,
    /// Requested memory bytes.
    pub memory_bytes: i64,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.tolerations` as (key, operator, value, effect).
    pub tolerations: Vec<(String, String, String, String)>,
}

impl PodRequest {
    /// Reads a pod's spec.
    pub fn from_pod(pod: &Value) -> PodRequest {
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let (cpu_millis, memory_bytes) = util::pod_requests(spec);
        let tolerations = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        let s =
                            |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        (s("key"), s("operator"), s("value"), s("effect"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        PodRequest {
            cpu_millis,
            memory_bytes,
            node_selector: string_map(spec.get("nodeSelector")),
            tolerations,
        }
    }

    /// Whether one of the pod's tolerations tolerates the taint.
    pub fn tolerates(&self, key: &str, value: &str, effect: &str) -> bool {
        self.tolerations.iter().any(|(tk, op, tv, te)| {
            let effect_ok = te.is_empty() || te == effect;
            let key_ok = tk.is_empty() && op == "Exists" || tk == key;
            let value_ok = op == "Exists" || tv == value;
            effect_ok && key_ok && value_ok
        })
    }
}

/// Whether the pod may be bound to `node` at all (ignoring resources).
pub fn node_admits(node: &NodeInfo, pod: &PodRequest) -> bool {
    if node.unschedulable && !pod.tolerates(UNSCHEDULABLE_TAINT, "", "NoSchedule") {
        return false;
    }
    let taints_ok = node
        .taints
        .iter()
        .all(|(k, v, effect)| effect == "PreferNoSchedule" || pod.tolerates(k, v, effect));
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    taints_ok && selector_ok
}

/// Whether the pod fits on `node`: ready, admitted, and enough allocatable left.
pub fn node_fits(node: &NodeInfo, pod: &PodRequest) -> bool {
    node.ready
        && node_admits(node, pod)
        && node.pods < node.max_pods
        && node.used_cpu_millis + pod.cpu_millis <= node.cpu_millis
        && node.used_memory_bytes + pod.memory_bytes <= node.memory_bytes
}

/// Picks a node for the pod. `same_owner_on_node` gives, per node name, how many pods of the
/// same owner already run there. Returns the index into `nodes`, or `None` when nothing fits.
pub fn pick_node(
    nodes: &[NodeInfo],
    pod: &PodRequest,
    same_owner_on_node: &BTreeMap<String, i64>,
) -> Option<usize> {
    let fitting: Vec<usize> = (0..nodes.len())
        .filter(|i| node_fits(&nodes[*i], pod))
        .collect();
    let mut per_zone: BTreeMap<&str, i64> = BTreeMap::new();
    for i in &fitting {
        per_zone.entry(nodes[*i].zone.as_str()).or_insert(0);
    }
    if !same_owner_on_node.is_empty() {
        for n in nodes {
            if let Some(count) = same_owner_on_node.get(&n.name)
                && let Some(z) = per_zone.get_mut(n.zone.as_str())
            {
                *z += count;
            }
        }
    }
    fitting.into_iter().min_by_key(|i| {
        let n = &nodes[*i];
        let zone = per_zone.get(n.zone.as_str()).copied().unwrap_or(0);
        let owner = same_owner_on_node.get(&n.name).copied().unwrap_or(0);
        // Requested cpu as parts per million of allocatable.
        let load = n.used_cpu_millis.saturating_mul(1_000_000) / n.cpu_millis.max(1);
        (zone, owner, load, n.pods, n.name.as_str())
    })
}

/// The zone of a node object.
pub fn node_zone(node: &Value) -> Option<&str> {
    str_at(node, &["metadata", "labels", ZONE_LABEL])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo::from_node(&json!({
            "metadata": {"name": name, "labels": {ZONE_LABEL: zone}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
    }

    fn pod(cpu: &str) -> PodRequest {
        PodRequest::from_pod(&json!({"spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}]}}))
    }

    #[test]
    fn spreads_across_zones_then_least_loaded() {
        let mut nodes = vec![
            node("a1", "a"),
            node("a2", "a"),
            node("b1", "b"),
            node("c1", "c"),
        ];
        let req = pod("100m");
        let mut owner: BTreeMap<String, i64> = BTreeMap::new();
        let mut placed = Vec::new();
        for _ in 0..6 {
            let i = pick_node(&nodes, &req, &owner).expect("a node fits");
            nodes[i].add_pod(req.cpu_millis, req.memory_bytes);
            *owner.entry(nodes[i].name.clone()).or_default() += 1;
            placed.push(nodes[i].zone.clone());
        }
        for z in ["a", "b", "c"] {
            assert_eq!(placed.iter().filter(|p| *p == z).count(), 2, "{placed:?}");
        }
        // Within zone a the two pods went to different nodes.
        assert_eq!(owner.get("a1"), Some(&1));
        assert_eq!(owner.get("a2"), Some(&1));
    }

    #[test]
    fn never_schedules_onto_cordoned_tainted_unready_or_full_nodes() {
        let mut cordoned = node("a1", "a");
        cordoned.unschedulable = true;
        let mut tainted = node("b1", "b");
        tainted
            .taints
            .push(("dedicated".into(), "gpu".into(), "NoSchedule".into()));
        let mut unready = node("c1", "c");
        unready.ready = false;
        let mut full = node("d1", "d");
        full.add_pod(3950, 0);
        let nodes = vec![cordoned, tainted, unready, full];
        assert_eq!(pick_node(&nodes, &pod("100m"), &BTreeMap::new()), None);
        // A daemonset-style toleration admits the cordoned node.
        let mut tolerant = pod("100m");
        tolerant.tolerations.push((
            UNSCHEDULABLE_TAINT.into(),
            "Exists".into(),
            String::new(),
            "NoSchedule".into(),
        ));
        assert_eq!(pick_node(&nodes, &tolerant, &BTreeMap::new()), Some(0));
        // Tolerating the gpu taint admits b1.
        let mut gpu = pod("100m");
        gpu.tolerations.push((
            "dedicated".into(),
            "Equal".into(),
            "gpu".into(),
            String::new(),
        ));
        assert_eq!(pick_node(&nodes, &gpu, &BTreeMap::new()), Some(1));
    }

    #[test]
    fn node_selector_filters() {
        let nodes = vec![node("a1", "a"), node("b1", "b")];
        let mut req = pod("1");
        req.node_selector.insert(ZONE_LABEL.into(), "b".into());
        assert_eq!(pick_node(&nodes, &req, &BTreeMap::new()), Some(1));
        // Too big for any node.
        assert_eq!(pick_node(&nodes, &pod("5"), &BTreeMap::new()), None);
    }
}
