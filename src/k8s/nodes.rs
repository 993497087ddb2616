//! Nodes: list (by label selector), get and merge-patch with field manager `ripcord`, plus the
//! pure helpers node actions and zone guards need (readiness, schedulability, allocatable
//! resources, Kubernetes quantities).

use super::{K8sError, call, describe, marked_merge_patch, patch_params};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ListParams, Patch};
use kube::{Api, Client};
use serde_json::Value;
use std::time::Duration;

/// Node helpers, each call bounded by one per-call timeout.
#[derive(Clone)]
pub struct Nodes {
    client: Client,
    timeout: Duration,
}

// === impl Nodes ===

impl Nodes {
    /// Helpers using `client`, each call bounded by `call_timeout`.
    pub fn new(client: Client, call_timeout: Duration) -> Nodes {
        Nodes {
            client,
            timeout: call_timeout,
        }
    }

    fn api(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// Every node matching `selector` (`None` or empty: all nodes).
    pub async fn list(&self, selector: Option<&str>) -> Result<Vec<Node>, K8sError> {
        let mut params = ListParams::default();
        if let Some(selector) = selector.filter(|s| !s.trim().is_empty()) {
            params = params.labels(selector);
        }
        let list = call("list", "nodes", self.timeout, self.api().list(&params)).await?;
        Ok(list.items)
    }

    /// Reads one node.
    pub async fn get(&self, name: &str) -> Result<Node, K8sError> {
        call(
            "get",
            &describe("Node", None, name),
            self.timeout,
            self.api().get(name),
        )
        .await
    }

    /// Applies a JSON merge patch to a node (field manager `ripcord`); returns the node after
    /// the write.
    pub async fn patch_merge(&self, name: &str, patch: &Value) -> Result<Node, K8sError> {
        call(
            "patch",
            &describe("Node", None, name),
            self.timeout,
            self.api().patch(
                name,
                &patch_params(),
                &Patch::Merge(marked_merge_patch(patch)),
            ),
        )
        .await
    }
}

/// The node's name (empty when missing).
pub fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

/// A label's value.
pub fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// An annotation's value.
pub fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// True when the node's `Ready` condition is `True`.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// True when the node is cordoned (`spec.unschedulable: true`).
pub fn is_unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// CPU (millicores) and memory (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub cpu_millis: i64,
    /// Bytes.
    pub memory_bytes: i64,
}

impl Resources {
    /// Component-wise sum.
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }

    /// Component-wise difference, never below zero.
    pub fn minus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis).max(0),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes).max(0),
        }
    }

    /// True when both components of `need` fit into `self`.
    pub fn fits(self, need: Resources) -> bool {
        need.cpu_millis <= self.cpu_millis && need.memory_bytes <= self.memory_bytes
    }
}

impl std::fmt::Display for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}m CPU, {}Mi memory",
            self.cpu_millis,
            self.memory_bytes / (1024 * 1024)
        )
    }
}

/// The node's allocatable CPU and memory (zero when not reported or unparsable).
pub fn allocatable(node: &Node) -> Resources {
    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |key: &str, parse: fn(&str) -> Option<i64>| {
        allocatable
            .and_then(|a| a.get(key))
            .and_then(|q: &Quantity| parse(&q.0))
            .unwrap_or(0)
    };
    Resources {
        cpu_millis: get("cpu", parse_cpu_millis),
        memory_bytes: get("memory", parse_bytes),
    }
}

/// Parses a CPU quantity (`2`, `500m`, `1.5`) into millicores.
pub fn parse_cpu_millis(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(millis) = text.strip_suffix('m') {
        return millis.parse::<f64>().ok().map(|v| v.ceil() as i64);
    }
    let value = parse_decimal_quantity(text)?;
    Some((value * 1000.0).ceil() as i64)
}

/// Parses a memory quantity (`128Mi`, `1G`, `1e3`, `512`) into bytes.
pub fn parse_bytes(text: &str) -> Option<i64> {
    let value = parse_decimal_quantity(text.trim())?;
    Some(value.ceil() as i64)
}

fn parse_decimal_quantity(text: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Pi", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("m", 1e-3),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return number
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| v * factor);
        }
    }
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_cpu_millis("2"), Some(2000));
        assert_eq!(parse_cpu_millis("250m"), Some(250));
        assert_eq!(parse_cpu_millis("1.5"), Some(1500));
        assert_eq!(parse_bytes("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("512"), Some(512));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_cpu_millis("-1"), None);
    }

    #[test]
    fn node_helpers_read_status_and_spec() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a"}},
            "spec": {"unschedulable": true},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap_or_default();
        assert_eq!(name(&node), "n1");
        assert_eq!(label(&node, "topology.kubernetes.io/zone"), Some("a"));
        assert!(is_ready(&node));
        assert!(is_unschedulable(&node));
        let alloc = allocatable(&node);
        assert_eq!(alloc.cpu_millis, 4000);
        assert_eq!(alloc.memory_bytes, 8 * 1024 * 1024 * 1024);
        assert!(alloc.fits(Resources {
            cpu_millis: 4000,
            memory_bytes: 1
        }));
        assert!(!alloc.fits(Resources {
            cpu_millis: 4001,
            memory_bytes: 1
        }));
    }
}
