//! Pods for node drains and restarts: listing (one namespace or the whole cluster), the
//! Eviction API (`pods/eviction`, which honours PodDisruptionBudgets), PodDisruptionBudgets and
//! ReplicaSets, plus pure helpers (readiness, controllers, resource requests, which pods a drain
//! may evict, PDB disruption budgets computed from live pods), and requests to a pod's port
//! through the API server's pod proxy (warm-up calls from outside the pod network).
//!
//! [`PodWatch`] is a live view of the cluster's pods for waits that would otherwise poll: one
//! paged list, then a watch from its resourceVersion (kube's reflector, re-listing after a
//! `410 Gone`), with a notification after every change (issue 18: the drain's waits).

use super::nodes::{Resources, parse_bytes, parse_cpu_millis};
use super::{K8sError, call, describe};
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{EvictParams, ListParams, Patch, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Pods per page of a list (the initial list of a [`PodWatch`], [`Pods::list_all`]): the
/// snapshot's page size, a few hundred kB of JSON per page.
pub const LIST_PAGE: u32 = 2000;

/// The annotation the kubelet puts on mirror (static) pods.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The outcome of one eviction request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictOutcome {
    /// The API server accepted the eviction (the pod is being deleted).
    Evicted,
    /// The pod no longer exists (evicted earlier, or deleted by someone else).
    Gone,
    /// A PodDisruptionBudget does not allow the disruption now (HTTP 429); retry later.
    Blocked {
        /// The API server's message.
        message: String,
    },
}

/// Pod helpers, each call bounded by one per-call timeout.
#[derive(Clone)]
pub struct Pods {
    client: Client,
    timeout: Duration,
}

// === impl Pods ===

impl Pods {
    /// Helpers using `client`, each call bounded by `call_timeout`.
    pub fn new(client: Client, call_timeout: Duration) -> Pods {
        Pods {
            client,
            timeout: call_timeout,
        }
    }

    /// Every pod of the cluster, read in pages of [`LIST_PAGE`] (one list call per page).
    pub async fn list_all(&self) -> Result<Vec<Pod>, K8sError> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let mut params = ListParams::default().limit(LIST_PAGE);
        let mut pods = Vec::new();
        loop {
            let page = call("list", "pods", self.timeout, api.list(&params)).await?;
            pods.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(pods),
            }
        }
    }

    /// Pods of one namespace matching a label selector (empty: all).
    pub async fn list(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut params = ListParams::default();
        if !selector.is_empty() {
            params = params.labels(selector);
        }
        let object = describe("pods", Some(namespace), "*");
        let list = call("list", &object, self.timeout, api.list(&params)).await?;
        Ok(list.items)
    }

    /// Every PodDisruptionBudget of the cluster.
    pub async fn pdbs_all(&self) -> Result<Vec<PodDisruptionBudget>, K8sError> {
        let api: Api<PodDisruptionBudget> = Api::all(self.client.clone());
        let list = call(
            "list",
            "poddisruptionbudgets",
            self.timeout,
            api.list(&ListParams::default()),
        )
        .await?;
        Ok(list.items)
    }

    /// Reads one pod.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Pod, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let object = describe("Pod", Some(namespace), name);
        call("get", &object, self.timeout, api.get(name)).await
    }

    /// Reads a ReplicaSet.
    pub async fn replica_set(&self, namespace: &str, name: &str) -> Result<ReplicaSet, K8sError> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let object = describe("ReplicaSet", Some(namespace), name);
        call("get", &object, self.timeout, api.get(name)).await
    }

    /// Reads a StatefulSet (a drain waits for the replacements of the pods it evicted).
    pub async fn stateful_set(&self, namespace: &str, name: &str) -> Result<StatefulSet, K8sError> {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), namespace);
        let object = describe("StatefulSet", Some(namespace), name);
        call("get", &object, self.timeout, api.get(name)).await
    }

    /// Evicts a pod through the Eviction API (field manager `ripcord`). A PDB refusal (429) is
    /// an outcome, not an error: the caller decides how long to keep retrying.
    pub async fn evict(&self, namespace: &str, name: &str) -> Result<EvictOutcome, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = EvictParams {
            delete_options: None,
            post_options: PostParams {
                dry_run: false,
                field_manager: Some(super::FIELD_MANAGER.to_string()),
            },
        };
        let object = describe("Pod", Some(namespace), name);
        match call("evict", &object, self.timeout, api.evict(name, &params)).await {
            Ok(_) => Ok(EvictOutcome::Evicted),
            Err(K8sError::NotFound { .. }) => Ok(EvictOutcome::Gone),
            Err(K8sError::Api {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 429 => Ok(EvictOutcome::Blocked {
                message: status.message.clone(),
            }),
            Err(other) => Err(other),
        }
    }
}

// === pod status conditions (readiness gates) ===

impl Pods {
    /// Sets one condition in a pod's status through the `status` subresource (a strategic
    /// merge patch: `status.conditions` merge by `type`, the kubelet's conditions stay; RBAC
    /// `pods/status` patch). This is how a readiness gate is released: once every gate's
    /// condition is `True` (and the containers are ready) the kubelet marks the pod Ready.
    pub async fn set_condition(
        &self,
        namespace: &str,
        name: &str,
        condition: &serde_json::Value,
    ) -> Result<Pod, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let object = describe("Pod", Some(namespace), name);
        let patch = serde_json::json!({ "status": { "conditions": [condition] } });
        call(
            "patch the status of",
            &object,
            self.timeout,
            api.patch_status(name, &super::patch_params(), &Patch::Strategic(&patch)),
        )
        .await
    }

    /// Every pod of the cluster as a stream: each pod once at the start (and after every
    /// re-list), then each pod again whenever it changes (kube-runtime's watcher with its
    /// default back-off; a watch error is an item, the stream goes on).
    pub fn watch_all(&self) -> BoxStream<'static, Result<Pod, K8sError>> {
        let api: Api<Pod> = Api::all(self.client.clone());
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .map(|item| {
                item.map_err(|err| K8sError::Invalid {
                    object: "pods".into(),
                    reason: format!("watch: {err}"),
                })
            })
            .boxed()
    }
}

/// The status (`True`, `False`, `Unknown`) of the pod's condition `type_`, if present.
pub fn condition_status<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// True when the pod's `ContainersReady` condition is `True` (its containers pass their
/// readiness probes; `Ready` may still wait for readiness gates).
pub fn containers_ready(pod: &Pod) -> bool {
    condition_status(pod, "ContainersReady") == Some("True")
}

/// True when the pod's `spec.readinessGates` names the condition type `gate`.
pub fn has_readiness_gate(pod: &Pod, gate: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.condition_type == gate))
}

// === a live view of the pods ===

/// A live, read-only view of every pod of the cluster: one paged list, then a watch from its
/// resourceVersion, kept by kube's reflector in a background task (re-listing after a
/// `410 Gone`, reconnecting with a backoff after other errors). Waits read it after each
/// change instead of polling the API server. The task ends when the view is dropped.
pub struct PodWatch {
    store: reflector::Store<Pod>,
    changes: tokio::sync::watch::Receiver<u64>,
    /// The last error of the watch, if the API server refused it outright (401/403: no point
    /// in waiting on a view that will not change).
    refused: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PodWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWatch")
            .field("pods", &self.store.len())
            .field("changes", &*self.changes.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodWatch {
    /// Starts watching every pod of the cluster (lists in pages of [`LIST_PAGE`]); the view
    /// is empty until [`PodWatch::ready`].
    pub fn start(client: Client) -> PodWatch {
        PodWatch::watch(Api::all(client), watcher::Config::default())
    }

    /// Starts watching the pods of `namespace` matching the label `selector` (all of them
    /// when empty), e.g. one Deployment's pods.
    pub fn start_selected(client: Client, namespace: &str, selector: &str) -> PodWatch {
        let mut config = watcher::Config::default();
        if !selector.is_empty() {
            config = config.labels(selector);
        }
        PodWatch::watch(Api::namespaced(client, namespace), config)
    }

    fn watch(api: Api<Pod>, config: watcher::Config) -> PodWatch {
        let (store, writer) = reflector::store();
        let (tx, changes) = tokio::sync::watch::channel(0u64);
        let refused: Arc<Mutex<Option<String>>> = Arc::default();
        let seen = refused.clone();
        let config = config.page_size(LIST_PAGE);
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        if let Ok(mut refused) = seen.lock() {
                            *refused = None;
                        }
                    }
                    Err(err) => {
                        let code = watch_error_code(&err);
                        tracing::warn!(error = %err, code, "pod watch failed; retrying with a backoff");
                        if matches!(code, Some(401 | 403))
                            && let Ok(mut refused) = seen.lock()
                        {
                            *refused = Some(err.to_string());
                        }
                    }
                }
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        });
        PodWatch {
            store,
            changes,
            refused,
            task,
        }
    }

    /// Waits (at most `timeout`) until the initial list is in.
    pub async fn ready(&self, timeout: Duration) -> Result<(), K8sError> {
        let mut changes = self.changes.clone();
        let wait = async {
            loop {
                if let Some(reason) = self.refused() {
                    return Err(watch_refused(reason));
                }
                tokio::select! {
                    ready = self.store.wait_until_ready() => {
                        return ready.map_err(|_| watch_ended());
                    }
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return Err(watch_ended());
                        }
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(K8sError::Timeout {
                operation: "list",
                object: "pods".into(),
                after: timeout,
            }))
    }

    /// Whether the initial list is in (and the watch not refused): [`PodWatch::pods`] is the
    /// cluster's state as of the watch's last event.
    pub fn is_ready(&self) -> bool {
        use futures::FutureExt;
        self.refused().is_none()
            && matches!(self.store.wait_until_ready().now_or_never(), Some(Ok(())))
    }

    /// The pods as last seen.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.store.state()
    }

    /// A handle to await the next change with ([`PodWatch::changed`]).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Waits for a change seen through `changes` (from [`PodWatch::subscribe`]) until
    /// `deadline`: `Ok(true)` on a change, `Ok(false)` at the deadline, an error when the
    /// watch is refused (401/403) or gone.
    pub async fn changed(
        &self,
        changes: &mut tokio::sync::watch::Receiver<u64>,
        deadline: Instant,
    ) -> Result<bool, K8sError> {
        if let Some(reason) = self.refused() {
            return Err(watch_refused(reason));
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => match self.refused() {
                Some(reason) => Err(watch_refused(reason)),
                None => Ok(true),
            },
            Ok(Err(_)) => Err(watch_ended()),
            Err(_) => Ok(false),
        }
    }

    fn refused(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }
}

/// The HTTP status of a watch error, when the API server answered with one.
fn watch_error_code(err: &watcher::Error) -> Option<u16> {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

fn watch_refused(reason: String) -> K8sError {
    K8sError::Invalid {
        object: "pods".into(),
        reason: format!(
            "the API server refuses to list or watch pods ({reason}); RBAC: list and watch on \
             pods"
        ),
    }
}

fn watch_ended() -> K8sError {
    K8sError::Invalid {
        object: "pods".into(),
        reason: "the pod watch ended unexpectedly".into(),
    }
}

// === the API server's pod proxy ===

impl Pods {
    /// One HTTP request to a pod's port through the API server's pod proxy
    /// (`METHOD /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH`): reaches the pod from
    /// wherever the API server is reachable (a laptop outside the pod network), with the
    /// caller's Kubernetes credentials (RBAC: `pods/proxy`). Returns the pod's HTTP status (an
    /// API-server error such as "cannot connect" comes back as its status, 502/503); bounded
    /// by `timeout`.
    pub async fn proxy(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        request: &ProxyRequest<'_>,
        timeout: Duration,
    ) -> Result<u16, K8sError> {
        let object = describe("Pod", Some(namespace), name);
        let path = request.path.trim_start_matches('/');
        let mut http = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
            .get_subresource(&format!("proxy/{path}"), &format!("{name}:{port}"))
            .map_err(|e| K8sError::Invalid {
                object: object.clone(),
                reason: format!("cannot build the proxy request: {e}"),
            })?;
        *http.method_mut() = request.method.clone();
        for (header, value) in request.headers {
            let value =
                reqwest::header::HeaderValue::from_str(value).map_err(|_| K8sError::Invalid {
                    object: object.clone(),
                    reason: format!("header {header} has a value HTTP cannot carry"),
                })?;
            http.headers_mut().insert(*header, value);
        }
        let send = self.client.send(http.map(kube::client::Body::from));
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(response)) => Ok(response.status().as_u16()),
            Ok(Err(source)) => Err(K8sError::Api {
                operation: "proxy to",
                object,
                source,
            }),
            Err(_) => Err(K8sError::Timeout {
                operation: "proxy to",
                object,
                after: timeout,
            }),
        }
    }
}

/// A request [`Pods::proxy`] sends to a pod.
#[derive(Debug, Clone)]
pub struct ProxyRequest<'a> {
    /// The HTTP method.
    pub method: reqwest::Method,
    /// The path on the pod (`/warm`, with any query string).
    pub path: &'a str,
    /// Extra headers (name, value).
    pub headers: &'a [(&'static str, String)],
}

/// The pod's name (empty when missing).
pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// The pod's namespace (empty when missing).
pub fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

/// The node the pod is bound to, if any.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// The pod's IP, if assigned.
pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

/// True when the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// True when the pod is being deleted, or has finished (Succeeded/Failed).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

/// The pod's controller (the owner reference with `controller: true`).
pub fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()
        .and_then(|owners| owners.iter().find(|o| o.controller == Some(true)))
}

/// True for mirror (static) pods, which the API cannot evict.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// True for pods controlled by a DaemonSet.
pub fn is_daemon_set_pod(pod: &Pod) -> bool {
    controller_of(pod).is_some_and(|o| o.kind == "DaemonSet")
}

/// True when the pod mounts an `emptyDir` volume (its data is lost on eviction).
pub fn uses_empty_dir(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|volumes| volumes.iter().any(|v| v.empty_dir.is_some()))
}

/// The sum of the pod's container resource requests.
pub fn requests(pod: &Pod) -> Resources {
    let mut total = Resources::default();
    let Some(spec) = pod.spec.as_ref() else {
        return total;
    };
    for container in &spec.containers {
        let Some(requests) = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
        else {
            continue;
        };
        total = total.plus(Resources {
            cpu_millis: requests
                .get("cpu")
                .and_then(|q| parse_cpu_millis(&q.0))
                .unwrap_or(0),
            memory_bytes: requests
                .get("memory")
                .and_then(|q| parse_bytes(&q.0))
                .unwrap_or(0),
        });
    }
    total
}

/// Why a drain leaves a pod alone, or `None` when it evicts it.
pub fn drain_skip_reason(
    pod: &Pod,
    ignore_daemon_sets: bool,
    delete_emptydir_data: bool,
) -> Option<&'static str> {
    if is_terminating(pod) {
        return Some("already terminating");
    }
    if is_mirror(pod) {
        return Some("mirror pod");
    }
    if is_daemon_set_pod(pod) {
        // kubectl refuses to drain without --ignore-daemonsets; a DaemonSet pod would be
        // recreated on the same node anyway, so ripcord always leaves it and says so.
        return Some(if ignore_daemon_sets {
            "DaemonSet pod"
        } else {
            "DaemonSet pod (cannot be moved off its node)"
        });
    }
    if controller_of(pod).is_none() {
        // Like `kubectl drain` without --force: nothing would recreate a bare pod.
        return Some("not managed by a controller (it would be lost)");
    }
    if uses_empty_dir(pod) && !delete_emptydir_data {
        return Some("uses emptyDir (set deleteEmptydirData to evict it)");
    }
    None
}

/// True when the label selector of `pdb` (matchLabels and matchExpressions) selects `pod`.
pub fn pdb_selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    if pdb.metadata.namespace.as_deref() != pod.metadata.namespace.as_deref() {
        return false;
    }
    let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let labels_match = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let expressions_match = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
    });
    labels_match && expressions_match
}

/// How many more pods the PDB allows to disrupt now, computed from the live pods (the API
/// server remains the authority: an eviction it refuses comes back as 429). Healthy = Ready and
/// not terminating; expected = the PDB's `status.expectedPods` or the number of selected pods,
/// whichever is larger.
pub fn pdb_disruptions_allowed<P: std::borrow::Borrow<Pod>>(
    pdb: &PodDisruptionBudget,
    pods: &[P],
) -> i64 {
    let selected: Vec<&Pod> = pods
        .iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|p| pdb_selects(pdb, p) && !is_terminating(p))
        .collect();
    let healthy = selected.iter().filter(|p| is_ready(p)).count() as i64;
    let expected = (selected.len() as i64).max(
        pdb.status
            .as_ref()
            .map(|s| i64::from(s.expected_pods))
            .unwrap_or(0),
    );
    let spec = pdb.spec.as_ref();
    let desired_healthy = if let Some(min) = spec.and_then(|s| s.min_available.as_ref()) {
        scaled(min, expected, true)
    } else if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        expected - scaled(max, expected, true)
    } else {
        // No constraint: everything may go.
        0
    };
    (healthy - desired_healthy).max(0)
}

fn scaled(value: &IntOrString, total: i64, round_up: bool) -> i64 {
    match value {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(text) => {
            let percent = text
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<i64>().ok())
                .unwrap_or(0);
            let product = total.saturating_mul(percent);
            if round_up {
                (product + 99) / 100
            } else {
                product / 100
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, extra: serde_json::Value) -> Pod {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-1", "uid": "rs", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c",
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if let Some(existing) = target.get_mut(k).and_then(|e| e.as_object_mut())
                    && let Some(v) = v.as_object()
                {
                    existing.extend(v.clone());
                    continue;
                }
                target.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(value).unwrap_or_default()
    }

    fn pdb(spec: serde_json::Value) -> PodDisruptionBudget {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap_or_default()
    }

    #[test]
    fn pdb_budget_from_live_pods() {
        let pods: Vec<Pod> = (0..6)
            .map(|i| pod(&format!("p{i}"), i != 5, json!({})))
            .collect();
        // 5 healthy of 6, minAvailable 4 → 1 more may go.
        assert_eq!(
            pdb_disruptions_allowed(&pdb(json!({"minAvailable": 4})), &pods),
            1
        );
        // maxUnavailable 2 → desired healthy 4 → 1.
        assert_eq!(
            pdb_disruptions_allowed(&pdb(json!({"maxUnavailable": 2})), &pods),
            1
        );
        // maxUnavailable 50% of 6 → 3 → desired 3 → 2.
        assert_eq!(
            pdb_disruptions_allowed(&pdb(json!({"maxUnavailable": "50%"})), &pods),
            2
        );
        assert_eq!(
            pdb_disruptions_allowed(&pdb(json!({"minAvailable": "100%"})), &pods),
            0
        );
    }

    #[test]
    fn drain_skips_daemonsets_mirrors_and_emptydir_unless_allowed() {
        let ds = pod(
            "ds",
            true,
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                "name": "agent", "uid": "u", "controller": true}]}}),
        );
        assert_eq!(drain_skip_reason(&ds, true, true), Some("DaemonSet pod"));
        let mirror = pod(
            "m",
            true,
            json!({"metadata": {"annotations": {MIRROR_ANNOTATION: "x"}}}),
        );
        assert_eq!(drain_skip_reason(&mirror, true, true), Some("mirror pod"));
        let scratch = pod(
            "e",
            true,
            json!({"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}),
        );
        assert!(drain_skip_reason(&scratch, true, false).is_some());
        assert_eq!(drain_skip_reason(&scratch, true, true), None);
        let plain = pod("p", true, json!({}));
        assert_eq!(drain_skip_reason(&plain, true, true), None);
        assert_eq!(requests(&plain).cpu_millis, 250);
        assert_eq!(requests(&plain).memory_bytes, 64 * 1024 * 1024);
    }
}
