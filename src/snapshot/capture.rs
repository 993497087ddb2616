//! The two capture phases. Reads run concurrently; their results (or failures) are written as
//! files and merged into the bundle's manifest under a process-wide lock.

use super::{Entry, Failure, MANIFEST_FILE, Manifest, SnapshotError, SnapshotRequest};
use crate::actions::ObjectRef;
use crate::errors::error_chain;
use crate::k8s::K8sError;
use crate::k8s::objects::{Objects, builtin_kind};
use crate::k8s::workloads::Workloads;
use crate::metrics::prometheus::Prometheus;
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::ListParams;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bound on each read of the capture.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many pods per namespace when no Deployment narrows the selection.
const MAX_PODS: u32 = 500;
/// At most this many pods per namespace are captured (pages of [`MAX_PODS`]); a longer list is
/// recorded as truncated in the manifest.
const MAX_PODS_PER_NAMESPACE: usize = 20_000;
/// Logs are read for at most this many pods per capture, unready and restarted pods first
/// (they carry the evidence); the rest are listed in the manifest as not captured.
const MAX_LOG_PODS: usize = 200;
/// The newest this many events per namespace are kept.
const MAX_EVENTS: usize = 200;
/// Concurrent log reads.
const LOG_CONCURRENCY: usize = 8;
/// The window of the impact range queries.
const IMPACT_WINDOW: Duration = Duration::from_secs(30 * 60);
/// The step of the impact range queries.
const IMPACT_STEP: Duration = Duration::from_secs(15);

/// Serializes manifest merges of concurrent phases.
static MANIFEST_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One result of a read, written later.
enum Captured {
    Json {
        kind: String,
        name: String,
        file: PathBuf,
        value: Value,
    },
    Text {
        kind: String,
        name: String,
        file: PathBuf,
        text: String,
    },
    Failed {
        what: String,
        error: String,
    },
}

fn failed(what: impl Into<String>, err: &dyn std::error::Error) -> Captured {
    Captured::Failed {
        what: what.into(),
        error: error_chain(err),
    }
}

/// A file-name-safe version of a name.
fn safe(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "_".into()
    } else {
        cleaned
    }
}

/// The longest file name part [`bounded`] keeps (well under the 255 bytes of `NAME_MAX`, with
/// room for the hash and an extension).
const MAX_NAME_PART: usize = 100;

/// [`safe`], bounded: a longer name (Kubernetes names reach 253 characters) is cut and
/// suffixed with a hash of the whole name, so two long names never share a file.
fn bounded(name: &str) -> String {
    let cleaned = safe(name);
    if cleaned.len() <= MAX_NAME_PART {
        return cleaned;
    }
    // FNV-1a: stable across builds and runs.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{}-{hash:016x}", &cleaned[..MAX_NAME_PART - 17])
}

fn object_file(namespace: Option<&str>, kind: &str, name: &str) -> PathBuf {
    PathBuf::from("objects")
        .join(namespace.map(bounded).unwrap_or_else(|| "_cluster".into()))
        .join(bounded(&kind.to_lowercase()))
        .join(format!("{}.json", bounded(name)))
}

fn qualified(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Drops `managedFields`; ConfigMaps keep names and keys only.
fn sanitize(kind: &str, mut value: Value) -> Value {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if kind == "ConfigMap" {
        let keys = |field: &str| -> Vec<String> {
            value
                .get(field)
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let data_keys = keys("data");
        let binary_keys = keys("binaryData");
        let mut metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        return json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "dataKeys": data_keys,
            "binaryDataKeys": binary_keys,
            "note": "values are not captured",
        });
    }
    value
}

fn object_item(kind: &str, value: Value) -> Captured {
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed")
        .to_string();
    Captured::Json {
        kind: kind.to_string(),
        name: qualified(namespace.as_deref(), &name),
        file: object_file(namespace.as_deref(), kind, &name),
        value: sanitize(kind, value),
    }
}

fn secret_names_item(namespace: &str, names: Vec<String>) -> Captured {
    Captured::Json {
        kind: "SecretNames".into(),
        name: namespace.to_string(),
        file: PathBuf::from("objects")
            .join(bounded(namespace))
            .join("secret-names.json"),
        value: json!({ "namespace": namespace, "names": names,
                       "note": "Secrets are never captured; names only" }),
    }
}

/// Writes one private file (`0600`, parents `0700`, never through a symlink) off the async
/// threads.
async fn write_file(path: &Path, bytes: Vec<u8>) -> Result<(), SnapshotError> {
    let owned = path.to_path_buf();
    let result =
        tokio::task::spawn_blocking(move || crate::journal::files::write_private(&owned, &bytes))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
    result.map_err(|source| SnapshotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the items and merges this phase into `manifest.json`; returns this phase's manifest.
/// A file that cannot be written becomes a `failed` entry; the rest of the bundle is written.
async fn write_items(dir: &Path, items: Vec<Captured>) -> Result<Manifest, SnapshotError> {
    let owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || crate::journal::files::create_private_dir_all(&owned))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())))
        .map_err(|source| SnapshotError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut phase = Manifest::default();
    for item in items {
        let (kind, name, file, bytes) = match item {
            Captured::Json {
                kind,
                name,
                file,
                mut value,
            } => {
                let file_name = file.to_string_lossy().into_owned();
                for line in super::redact::redact_credentials(&mut value) {
                    phase.redacted.push(format!("{file_name}: {line}"));
                }
                let bytes = serde_json::to_vec_pretty(&value).unwrap_or_default();
                (kind, name, file, bytes)
            }
            Captured::Text {
                kind,
                name,
                file,
                text,
            } => (kind, name, file, text.into_bytes()),
            Captured::Failed { what, error } => {
                phase.failed.push(Failure { what, error });
                continue;
            }
        };
        match write_file(&dir.join(&file), bytes).await {
            Ok(()) => phase.captured.push(Entry {
                kind,
                name,
                file: file.to_string_lossy().into_owned(),
            }),
            Err(err) => {
                tracing::warn!(file = %file.display(), error = %err, "snapshot file not written");
                phase.failed.push(Failure {
                    what: format!("{} {name}", kind.to_lowercase()),
                    error: error_chain(&err),
                });
            }
        }
    }
    let _guard = MANIFEST_LOCK.lock().await;
    let path = dir.join(MANIFEST_FILE);
    let mut merged = match tokio::fs::read(&path).await {
        Ok(bytes) => serde_json::from_slice::<Manifest>(&bytes).unwrap_or_default(),
        Err(_) => Manifest::default(),
    };
    merged.merge(&phase);
    let bytes = serde_json::to_vec_pretty(&merged).unwrap_or_default();
    write_file(&path, bytes).await?;
    Ok(phase)
}

// === phase 1: targets ===

/// Captures the target objects (and a Deployment's ReplicaSets) into `dir`. Fast: one read
/// per target, all concurrent. Read failures are manifest entries; only I/O fails.
pub async fn capture_targets(
    client: &Client,
    request: &SnapshotRequest,
    dir: &Path,
) -> Result<Manifest, SnapshotError> {
    let objects = Objects::new(client.clone(), CALL_TIMEOUT);
    let workloads = Workloads::new(client.clone(), CALL_TIMEOUT);
    let reads = request
        .targets
        .iter()
        .map(|target| capture_target(&objects, &workloads, request, target));
    let items: Vec<Captured> = join_all(reads).await.into_iter().flatten().collect();
    write_items(dir, items).await
}

async fn capture_target(
    objects: &Objects,
    workloads: &Workloads,
    request: &SnapshotRequest,
    target: &ObjectRef,
) -> Vec<Captured> {
    let what = target.to_string();
    if target.kind == "Secret" && target.api_version == "v1" {
        return vec![Captured::Json {
            kind: "SecretName".into(),
            name: qualified(target.namespace.as_deref(), &target.name),
            file: object_file(target.namespace.as_deref(), "secret-name", &target.name),
            value: json!({ "name": target.name, "namespace": target.namespace,
                           "note": "Secrets are never captured; name only" }),
        }];
    }
    let kind = match objects.resolve(&target.api_version, &target.kind).await {
        Ok(kind) => kind,
        Err(err) => return vec![failed(what, &err)],
    };
    let namespace = if kind.namespaced {
        target.namespace.as_deref()
    } else {
        None
    };
    let value = match objects.get(&kind, namespace, &target.name).await {
        Ok(value) => value,
        Err(err) => return vec![failed(what, &err)],
    };
    let mut items = Vec::new();
    if target.kind == "Deployment"
        && target.api_version == "apps/v1"
        && let Some(ns) = namespace
    {
        let (replica_sets, unready_logs) = futures::join!(
            owned_replica_sets(objects, ns, &value),
            unready_pod_logs(workloads, request, ns, &value)
        );
        items.extend(replica_sets);
        items.extend(unready_logs);
    }
    items.insert(0, object_item(&target.kind, value));
    items
}

/// A Deployment's `matchLabels` as a selector string (None when it has expressions or none).
fn deployment_selector(deployment: &Value) -> Option<String> {
    let selector = deployment.pointer("/spec/selector")?;
    if selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    let labels = selector.get("matchLabels")?.as_object()?;
    if labels.is_empty() {
        return None;
    }
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Logs of the Deployment's pods that are not Ready. These are the pods a mitigation is about
/// to replace (a bad release's), so their logs are the evidence most likely to vanish; they are
/// read in the fast phase, before the first mutation. One LIST plus one read per container.
async fn unready_pod_logs(
    workloads: &Workloads,
    request: &SnapshotRequest,
    namespace: &str,
    deployment: &Value,
) -> Vec<Captured> {
    let Some(selector) = deployment_selector(deployment) else {
        return Vec::new();
    };
    let params = ListParams::default().labels(&selector).limit(MAX_PODS);
    let pods = match workloads.list::<Pod>(namespace, &params).await {
        Ok(pods) => pods,
        Err(err) => return vec![failed(format!("pods in {namespace} ({selector})"), &err)],
    };
    let unready: Vec<Pod> = pods.into_iter().filter(|pod| !pod_is_ready(pod)).collect();
    capture_logs(workloads, request, &unready, &BTreeSet::new()).await
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

async fn owned_replica_sets(
    objects: &Objects,
    namespace: &str,
    deployment: &Value,
) -> Vec<Captured> {
    let Some(kind) = builtin_kind("apps/v1", "ReplicaSet") else {
        return Vec::new();
    };
    let uid = deployment
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut params = ListParams::default();
    if let Some(selector) = deployment_selector(deployment) {
        params = params.labels(&selector);
    }
    let name = deployment
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match objects.list(&kind, Some(namespace), &params).await {
        Ok(list) => list
            .into_iter()
            .filter(|rs| {
                rs.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|owners| {
                        owners
                            .iter()
                            .any(|o| o.get("uid").and_then(Value::as_str) == Some(&uid))
                    })
            })
            .map(|rs| object_item("ReplicaSet", rs))
            .collect(),
        Err(err) => vec![failed(
            format!("replicasets of deployment/{namespace}/{name}"),
            &err,
        )],
    }
}

// === phase 2: everything else ===

/// Captures everything else into `dir`: pods, PDBs, HPAs, Services, EndpointSlices,
/// ConfigMap keys, Secret names, events, logs, node conditions and impact metrics. Read
/// failures are manifest entries; only I/O fails.
pub async fn capture_rest(
    client: &Client,
    request: &SnapshotRequest,
    dir: &Path,
    prometheus: Option<Prometheus>,
) -> Result<Manifest, SnapshotError> {
    let objects = Objects::new(client.clone(), CALL_TIMEOUT);
    let workloads = Workloads::new(client.clone(), CALL_TIMEOUT);
    let per_namespace = request
        .namespaces
        .iter()
        .map(|ns| capture_namespace(&objects, &workloads, request, ns));
    let metrics = capture_metrics(request, prometheus.as_ref());
    let (namespaces, metric_items) = futures::join!(join_all(per_namespace), metrics);
    let mut items = Vec::new();
    let mut pods = Vec::new();
    for (ns_items, ns_pods) in namespaces {
        items.extend(ns_items);
        pods.extend(ns_pods);
    }
    items.extend(metric_items);
    // Logs the fast phase already took (unready pods of a target) are not read twice.
    let already = logs_in_manifest(dir).await;
    let (logs, nodes) = futures::join!(
        capture_logs(&workloads, request, &pods, &already),
        capture_nodes(&workloads, &pods)
    );
    items.extend(logs);
    items.extend(nodes);
    write_items(dir, items).await
}

/// The (namespace, pod) pairs whose current log is already in the bundle's manifest.
async fn logs_in_manifest(dir: &Path) -> BTreeSet<(String, String)> {
    let Ok(bytes) = tokio::fs::read(dir.join(MANIFEST_FILE)).await else {
        return BTreeSet::new();
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
        return BTreeSet::new();
    };
    manifest
        .captured
        .iter()
        .filter(|entry| entry.kind == "Log")
        .filter_map(|entry| {
            let mut parts = entry.name.splitn(3, '/');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// The pods of the namespace's target Deployments, or all pods (bounded) when there are none.
async fn namespace_pods(
    objects: &Objects,
    workloads: &Workloads,
    request: &SnapshotRequest,
    namespace: &str,
    items: &mut Vec<Captured>,
) -> Vec<Pod> {
    let deployment_targets: Vec<&ObjectRef> = request
        .targets
        .iter()
        .filter(|t| t.kind == "Deployment" && t.namespace.as_deref() == Some(namespace))
        .collect();
    let mut selectors = Vec::new();
    if let Some(kind) = builtin_kind("apps/v1", "Deployment") {
        for target in &deployment_targets {
            match objects.get(&kind, Some(namespace), &target.name).await {
                Ok(d) => selectors.push(deployment_selector(&d).unwrap_or_default()),
                Err(err) => items.push(failed(format!("pods of {target}"), &err)),
            }
        }
    }
    if deployment_targets.is_empty() {
        selectors.push(String::new());
    }
    let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
    for selector in selectors {
        let mut params = ListParams::default().limit(MAX_PODS);
        if !selector.is_empty() {
            params = params.labels(&selector);
        }
        match workloads
            .list_paged::<Pod>(namespace, &params, MAX_PODS_PER_NAMESPACE)
            .await
        {
            Ok((list, truncated)) => {
                if truncated {
                    items.push(Captured::Failed {
                        what: format!("pods in {namespace} ({selector})"),
                        error: format!(
                            "truncated: only the first {MAX_PODS_PER_NAMESPACE} pods were captured"
                        ),
                    });
                }
                for pod in list {
                    pods.insert(pod.metadata.name.clone().unwrap_or_default(), pod);
                }
            }
            Err(err) => items.push(failed(format!("pods in {namespace} ({selector})"), &err)),
        }
    }
    pods.into_values().collect()
}

async fn capture_namespace(
    objects: &Objects,
    workloads: &Workloads,
    request: &SnapshotRequest,
    namespace: &str,
) -> (Vec<Captured>, Vec<Pod>) {
    let mut items = Vec::new();
    let pods = namespace_pods(objects, workloads, request, namespace, &mut items).await;
    for pod in &pods {
        match serde_json::to_value(pod) {
            Ok(value) => items.push(object_item("Pod", value)),
            Err(err) => items.push(failed(format!("pod {namespace}"), &err)),
        }
    }
    let kinds = [
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("v1", "Service"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("v1", "ConfigMap"),
    ];
    let lists = kinds.iter().map(|(api_version, kind)| async move {
        let what = format!("{kind} in {namespace}");
        let resolved = match builtin_kind(api_version, kind) {
            Some(resolved) => resolved,
            None => match objects.resolve(api_version, kind).await {
                Ok(resolved) => resolved,
                Err(err) => return vec![failed(what, &err)],
            },
        };
        match objects
            .list(&resolved, Some(namespace), &ListParams::default())
            .await
        {
            Ok(list) => list.into_iter().map(|o| object_item(kind, o)).collect(),
            // A 404 on a collection: the server does not serve this kind.
            Err(K8sError::NotFound { .. }) => vec![Captured::Failed {
                what,
                error: format!("{api_version} {kind} is not served by this API server (404)"),
            }],
            Err(err) => vec![failed(what, &err)],
        }
    });
    let events = async {
        if !request.spec.events {
            return Vec::new();
        }
        match builtin_kind("v1", "Event") {
            Some(kind) => match objects
                .list(&kind, Some(namespace), &ListParams::default())
                .await
            {
                Ok(list) => vec![events_item(namespace, list)],
                Err(err) => vec![failed(format!("events in {namespace}"), &err)],
            },
            None => Vec::new(),
        }
    };
    let secrets = async {
        match workloads.secret_names(namespace).await {
            Ok(names) => secret_names_item(namespace, names),
            Err(err) => failed(format!("secret names in {namespace}"), &err),
        }
    };
    let (lists, events, secrets) = futures::join!(join_all(lists), events, secrets);
    items.extend(lists.into_iter().flatten());
    items.extend(events);
    items.push(secrets);
    (items, pods)
}

fn event_time(event: &Value) -> String {
    [
        "/lastTimestamp",
        "/eventTime",
        "/series/lastObservedTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| event.pointer(p).and_then(Value::as_str))
    .unwrap_or_default()
    .to_string()
}

/// The newest [`MAX_EVENTS`] events of a namespace, oldest first, in one file.
fn events_item(namespace: &str, mut events: Vec<Value>) -> Captured {
    events.sort_by_key(event_time);
    let total = events.len();
    let keep: Vec<Value> = events
        .into_iter()
        .skip(total.saturating_sub(MAX_EVENTS))
        .map(|e| sanitize("Event", e))
        .collect();
    Captured::Json {
        kind: "Events".into(),
        name: namespace.to_string(),
        file: PathBuf::from("events").join(format!("{}.json", bounded(namespace))),
        value: json!({ "namespace": namespace, "total": total, "items": keep }),
    }
}

async fn capture_logs(
    workloads: &Workloads,
    request: &SnapshotRequest,
    pods: &[Pod],
    captured_logs: &BTreeSet<(String, String)>,
) -> Vec<Captured> {
    let tail = request.spec.log_tail_lines;
    let mut reads = Vec::new();
    let mut skipped = Vec::new();
    // Evidence first: unready and restarted pods, then the rest, up to the cap.
    let mut ordered: Vec<&Pod> = pods.iter().collect();
    ordered.sort_by_key(|pod| {
        (
            pod_is_ready(pod) && restarts_of(pod) == 0,
            restarts_of(pod) == 0,
        )
    });
    let mut logged = 0usize;
    for pod in ordered {
        if logged >= MAX_LOG_PODS {
            skipped.push(pod);
            continue;
        }
        if captured_logs.contains(&(
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        )) {
            continue;
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let restarts: BTreeMap<String, i32> = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| (c.name.clone(), c.restart_count))
                    .collect()
            })
            .unwrap_or_default();
        logged += 1;
        for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let restarted = restarts.get(&container.name).copied().unwrap_or(0) > 0;
            reads.push((
                namespace.clone(),
                name.clone(),
                container.name.clone(),
                false,
            ));
            if request.spec.previous_logs && restarted {
                reads.push((
                    namespace.clone(),
                    name.clone(),
                    container.name.clone(),
                    true,
                ));
            }
        }
    }
    let mut items: Vec<Captured> = Vec::new();
    if !skipped.is_empty() {
        items.push(Captured::Failed {
            what: format!("logs of {} more pod(s)", skipped.len()),
            error: format!(
                "not captured: logs are read for at most {MAX_LOG_PODS} pods, unready and \
                 restarted ones first"
            ),
        });
    }
    let logs: Vec<Captured> = futures::stream::iter(reads)
        .map(|(namespace, pod, container, previous)| async move {
            let label = format!(
                "{}log of {namespace}/{pod}/{container}",
                if previous { "previous " } else { "" }
            );
            match workloads
                .pod_log(&namespace, &pod, Some(&container), previous, tail)
                .await
            {
                Ok(text) => Captured::Text {
                    kind: if previous {
                        "PreviousLog".into()
                    } else {
                        "Log".into()
                    },
                    name: format!("{namespace}/{pod}/{container}"),
                    file: PathBuf::from("logs")
                        .join(bounded(&namespace))
                        .join(bounded(&pod))
                        .join(format!(
                            "{}{}.log",
                            bounded(&container),
                            if previous { ".previous" } else { "" }
                        )),
                    text,
                },
                Err(err) => failed(label, &err),
            }
        })
        .buffer_unordered(LOG_CONCURRENCY)
        .collect()
        .await;
    items.extend(logs);
    items
}

fn restarts_of(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|statuses| statuses.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

async fn capture_nodes(workloads: &Workloads, pods: &[Pod]) -> Vec<Captured> {
    let names: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    let reads = names.into_iter().map(|name| async move {
        match workloads.node(&name).await {
            Ok(node) => {
                let spec = node.spec.as_ref();
                let value = json!({
                    "name": name,
                    "labels": node.metadata.labels,
                    "unschedulable": spec.and_then(|s| s.unschedulable).unwrap_or(false),
                    "taints": spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
                    "conditions": node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default(),
                });
                Captured::Json {
                    kind: "NodeConditions".into(),
                    name: name.clone(),
                    file: PathBuf::from("nodes").join(format!("{}.json", bounded(&name))),
                    value,
                }
            }
            Err(err) => failed(format!("node {name}"), &err),
        }
    });
    join_all(reads).await
}

async fn capture_metrics(
    request: &SnapshotRequest,
    prometheus: Option<&Prometheus>,
) -> Vec<Captured> {
    if request.spec.prometheus.is_empty() {
        return Vec::new();
    }
    let Some(prometheus) = prometheus else {
        return vec![Captured::Failed {
            what: "impact metrics".into(),
            error: "no Prometheus URL configured".into(),
        }];
    };
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let start = end - IMPACT_WINDOW.as_secs_f64();
    let reads = request.spec.prometheus.iter().map(|q| async move {
        let (now, range) = futures::join!(
            prometheus.query_scalar(&q.query),
            prometheus.query_range(&q.query, start, end, IMPACT_STEP)
        );
        if let (Err(err), Err(_)) = (&now, &range) {
            return failed(format!("metric {}", q.name), err);
        }
        let value = json!({
            "name": q.name,
            "query": q.query,
            "at": end,
            "value": now.as_ref().ok().copied().filter(|v| v.is_finite()),
            "valueError": now.as_ref().err().map(|e| e.to_string()),
            "range": { "start": start, "end": end, "stepSeconds": IMPACT_STEP.as_secs(),
                       "values": range.as_ref().ok().map(|points| points
                            .iter()
                            .filter(|(_, v)| v.is_finite())
                            .map(|(t, v)| json!([t, v]))
                            .collect::<Vec<_>>()) },
            "rangeError": range.as_ref().err().map(|e| e.to_string()),
        });
        Captured::Json {
            kind: "Metric".into(),
            name: q.name.clone(),
            file: PathBuf::from("metrics").join(format!("{}.json", bounded(&q.name))),
            value,
        }
    });
    join_all(reads).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmaps_keep_names_and_keys_only() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "shop", "managedFields": [{}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"hunter2\"}}"}},
            "data": {"password": "hunter2", "mode": "fast"}});
        let out = sanitize("ConfigMap", cm).to_string();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("password") && out.contains("mode"), "{out}");
        assert!(!out.contains("managedFields"), "{out}");
    }

    #[test]
    fn issue13_long_names_get_bounded_distinct_file_names() {
        let long_a = format!("{}a", "x".repeat(252));
        let long_b = format!("{}b", "x".repeat(252));
        let a = object_file(Some("shop"), "Deployment", &long_a);
        let b = object_file(Some("shop"), "Deployment", &long_b);
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.len() <= MAX_NAME_PART + 5, "{name}");
        assert_eq!(bounded("web"), "web");
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(safe("../etc/passwd"), ".._etc_passwd");
        assert_eq!(safe(".."), "_");
        assert_eq!(
            object_file(Some("shop"), "Deployment", "web"),
            PathBuf::from("objects/shop/deployment/web.json")
        );
    }

    #[test]
    fn events_keep_the_newest() {
        let events: Vec<Value> = (0..250)
            .map(|i| {
                json!({"metadata": {"name": format!("e{i}")},
                            "lastTimestamp": format!("2026-11-25T10:{:02}:{:02}Z", i / 60, i % 60)})
            })
            .collect();
        let Captured::Json { value, .. } = events_item("shop", events) else {
            panic!("events are one JSON file");
        };
        assert_eq!(value["total"], 250);
        assert_eq!(value["items"].as_array().unwrap().len(), MAX_EVENTS);
        assert_eq!(value["items"][0]["metadata"]["name"], "e50");
    }
}
