//! The two capture phases. Reads run concurrently; their results (or failures) are written as
//! files and merged into the bundle's manifest under a process-wide lock. The targets phase
//! writes one file per object; the broad phase one `List` file per kind and list page.

use super::{Entry, Failure, MANIFEST_FILE, Manifest, SnapshotError, SnapshotRequest};
use crate::actions::{ObjectRef, Observed};
use crate::errors::error_chain;
use crate::k8s::K8sError;
use crate::k8s::objects::{Objects, builtin_kind};
use crate::k8s::workloads::Workloads;
use crate::metrics::prometheus::Prometheus;
use futures::StreamExt;
use futures::future::join_all;
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
const LOG_CONCURRENCY: usize = 16;
/// Page size of the broad phase's lists (kubectl's is 500): fewer round trips, fewer files (one
/// per page), and memory bounded by about two pages (one being written while the next is read).
const PAGE_SIZE: u32 = 2_000;
/// At most this many objects of each other kind per namespace.
const MAX_OBJECTS_PER_KIND: usize = 20_000;
/// Up to this many nodes are read one by one; more in one paged LIST.
const NODE_GETS_MAX: usize = 3;
/// The window of the impact range queries.
const IMPACT_WINDOW: Duration = Duration::from_secs(30 * 60);
/// The step of the impact range queries.
const IMPACT_STEP: Duration = Duration::from_secs(15);

/// Settings of the broad phase ([`capture_rest_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestOptions {
    /// Objects per list page, and so per page file (default 2,000; 0 counts as 1).
    pub page_size: u32,
}

impl Default for RestOptions {
    fn default() -> RestOptions {
        RestOptions {
            page_size: PAGE_SIZE,
        }
    }
}

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
    /// One page of a kind's list: one `List` file, one manifest entry per item.
    Page {
        /// The manifest kind of every item.
        kind: String,
        file: PathBuf,
        /// `(manifest name, object)`, in page order.
        items: Vec<(String, Value)>,
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

/// An object's namespace and name.
fn names_of(value: &Value) -> (Option<&str>, &str) {
    let namespace = value.pointer("/metadata/namespace").and_then(Value::as_str);
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    (namespace, name)
}

fn object_item(kind: &str, value: Value) -> Captured {
    let (namespace, name) = names_of(&value);
    let (namespace, name) = (namespace.map(str::to_string), name.to_string());
    Captured::Json {
        kind: kind.to_string(),
        name: qualified(namespace.as_deref(), &name),
        file: object_file(namespace.as_deref(), kind, &name),
        value: sanitize(kind, value),
    }
}

/// An object of a broad-phase page: its manifest name and its sanitized value.
fn page_item(kind: &str, value: Value) -> (String, Value) {
    let (namespace, name) = names_of(&value);
    let name = qualified(namespace, name);
    (name, sanitize(kind, value))
}

/// `objects/<namespace|_cluster>/<kind>/page-0001.json` (`variant` > 1: `page-0001-2.json`).
fn page_file(namespace: Option<&str>, kind: &str, number: usize, variant: usize) -> PathBuf {
    let name = if variant > 1 {
        format!("page-{number:04}-{variant}.json")
    } else {
        format!("page-{number:04}.json")
    };
    PathBuf::from("objects")
        .join(namespace.map(bounded).unwrap_or_else(|| "_cluster".into()))
        .join(bounded(&kind.to_lowercase()))
        .join(name)
}

/// Numbers one kind's pages in one namespace (or cluster-wide), skipping a name a file of the
/// bundle already has (a target named `page-0001`): the phases never share a file.
struct Pages<'a> {
    namespace: Option<String>,
    /// The manifest kind of the items.
    kind: String,
    /// The kind the directory is named after.
    dir_kind: String,
    /// Pages numbered so far.
    numbered: usize,
    taken: &'a BTreeSet<String>,
}

impl<'a> Pages<'a> {
    fn new(
        namespace: Option<&str>,
        kind: &str,
        dir_kind: &str,
        taken: &'a BTreeSet<String>,
    ) -> Pages<'a> {
        Pages {
            namespace: namespace.map(str::to_string),
            kind: kind.to_string(),
            dir_kind: dir_kind.to_string(),
            numbered: 0,
            taken,
        }
    }

    /// The next page, holding `items` (none when empty).
    fn page(&mut self, items: Vec<(String, Value)>) -> Option<Captured> {
        if items.is_empty() {
            return None;
        }
        self.numbered += 1;
        let mut variant = 1;
        let mut file = page_file(self.namespace.as_deref(), &self.dir_kind, self.numbered, 1);
        while self.taken.contains(&*file.to_string_lossy()) {
            variant += 1;
            file = page_file(
                self.namespace.as_deref(),
                &self.dir_kind,
                self.numbered,
                variant,
            );
        }
        Some(Captured::Page {
            kind: self.kind.clone(),
            file,
            items,
        })
    }

    /// `items` cut into pages of `page_size`.
    fn pages(&mut self, mut items: Vec<(String, Value)>, page_size: usize) -> Vec<Captured> {
        let mut out = Vec::new();
        while !items.is_empty() {
            let rest = items.split_off(page_size.max(1).min(items.len()));
            out.extend(self.page(items));
            items = rest;
        }
        out
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
/// threads, synced to disk (the manifest).
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

/// Writes one object file like [`crate::journal::files::write_private`] (`0600` in `0700`,
/// `O_NOFOLLOW`) but without an fsync per file: a bundle holds one file per object (10,000
/// pods: 10,000 fsyncs cost more than the whole capture). The manifest, written last, is
/// synced, and lists only files written whole.
///
/// A file that does not exist yet (the common case: the bundle directory is this run's own,
/// `0700`) is created `O_EXCL` in place — two system calls fewer per object than a temporary
/// file renamed over it. Only when the name is taken (a file or link left by an earlier
/// process of the run) is it replaced through a temporary file created `O_EXCL` and renamed
/// over it, so nothing is ever followed or half-overwritten.
/// `made`: directories already created by this batch.
fn write_object_file(
    path: &Path,
    bytes: &[u8],
    made: &mut BTreeSet<PathBuf>,
) -> std::io::Result<()> {
    write_object_file_with(path, made, |out| out.write_all(bytes))
}

/// [`write_object_file`], the content written by `write` (through a buffer, so a page is
/// serialized straight to its file, never held whole in memory as bytes).
fn write_object_file_with(
    path: &Path,
    made: &mut BTreeSet<PathBuf>,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !made.contains(parent)
    {
        crate::journal::files::create_private_dir_all(parent)?;
        made.insert(parent.to_path_buf());
    }
    match crate::journal::files::open_private(
        path,
        std::fs::OpenOptions::new().write(true).create_new(true),
    ) {
        Ok(file) => {
            let written = write_through(&file, write);
            drop(file);
            if written.is_err() {
                let _ = std::fs::remove_file(path);
            }
            return written;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let file = crate::journal::files::open_private(
            &tmp,
            std::fs::OpenOptions::new().write(true).create_new(true),
        )?;
        write_through(&file, write)?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Runs `write` on `file` through a buffer, flushed.
fn write_through(
    file: &std::fs::File,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
    write(&mut out)?;
    out.flush()
}

/// Redacts, serializes (once, pretty) and writes `items` under `dir`, on the calling (blocking)
/// thread; returns their manifest. A file that cannot be written becomes a `failed` entry.
fn write_files_blocking(dir: &Path, items: Vec<Captured>) -> Result<Manifest, SnapshotError> {
    crate::journal::files::create_private_dir_all(dir).map_err(|source| {
        SnapshotError::CreateDir {
            path: dir.to_path_buf(),
            source,
        }
    })?;
    let mut made = BTreeSet::new();
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
            Captured::Page { kind, file, items } => {
                write_page(dir, &kind, &file, items, &mut made, &mut phase);
                continue;
            }
            Captured::Failed { what, error } => {
                phase.failed.push(Failure { what, error });
                continue;
            }
        };
        match write_object_file(&dir.join(&file), &bytes, &mut made) {
            Ok(()) => phase.captured.push(Entry {
                kind,
                name,
                file: file.to_string_lossy().into_owned(),
                index: None,
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
    Ok(phase)
}

/// Writes one page as a `List` file (redacted, pretty, serialized straight to the file) and
/// records one manifest entry per item, with its index; a page that cannot be written is one
/// `failed` entry naming the page and how many objects it held.
fn write_page(
    dir: &Path,
    kind: &str,
    file: &Path,
    items: Vec<(String, Value)>,
    made: &mut BTreeSet<PathBuf>,
    phase: &mut Manifest,
) {
    let file_name = file.to_string_lossy().into_owned();
    let (names, values): (Vec<String>, Vec<Value>) = items.into_iter().unzip();
    let mut list = json!({ "apiVersion": "v1", "kind": "List", "items": values });
    for line in super::redact::redact_credentials(&mut list) {
        phase.redacted.push(format!("{file_name}: {line}"));
    }
    let written = write_object_file_with(&dir.join(file), made, |out| {
        serde_json::to_writer_pretty(out, &list).map_err(std::io::Error::from)
    });
    match written {
        Ok(()) => {
            phase
                .captured
                .extend(names.into_iter().enumerate().map(|(index, name)| Entry {
                    kind: kind.to_string(),
                    name,
                    file: file_name.clone(),
                    index: Some(index),
                }));
        }
        Err(err) => {
            tracing::warn!(file = %file_name, objects = names.len(), error = %err,
                "snapshot page not written");
            phase.failed.push(Failure {
                what: format!(
                    "page {file_name} ({} {} object(s))",
                    names.len(),
                    kind.to_lowercase()
                ),
                error: error_chain(&err),
            });
        }
    }
}

/// [`write_files_blocking`] on a blocking thread.
async fn write_files(dir: &Path, items: Vec<Captured>) -> Result<Manifest, SnapshotError> {
    let owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || write_files_blocking(&owned, items))
        .await
        .unwrap_or_else(|join| {
            Err(SnapshotError::Write {
                path: dir.to_path_buf(),
                source: std::io::Error::other(join.to_string()),
            })
        })
}

/// Merges `phase` into the bundle's `manifest.json` (synced).
pub(super) async fn merge_manifest(dir: &Path, phase: &Manifest) -> Result<(), SnapshotError> {
    let _guard = MANIFEST_LOCK.lock().await;
    let path = dir.join(MANIFEST_FILE);
    let mut merged = match tokio::fs::read(&path).await {
        Ok(bytes) => serde_json::from_slice::<Manifest>(&bytes).unwrap_or_default(),
        Err(_) => Manifest::default(),
    };
    merged.merge(phase);
    merged.format_version = crate::model::format::Format::SnapshotManifest.current();
    let bytes = serde_json::to_vec_pretty(&merged).unwrap_or_default();
    write_file(&path, bytes).await
}

/// Writes the items and merges this phase into `manifest.json`; returns this phase's manifest.
/// A file that cannot be written becomes a `failed` entry; the rest of the bundle is written.
async fn write_items(dir: &Path, items: Vec<Captured>) -> Result<Manifest, SnapshotError> {
    let phase = write_files(dir, items).await?;
    merge_manifest(dir, &phase).await?;
    Ok(phase)
}

// === phase 1: targets ===

/// What the targets phase read that the broad phase would otherwise read again: the label
/// selectors of the target Deployments and the (complete) lists of their pods.
#[derive(Debug, Clone, Default)]
pub struct TargetReads {
    /// `(namespace, deployment)` → its `matchLabels` selector (empty: none usable).
    selectors: BTreeMap<(String, String), String>,
    /// `(namespace, selector)` → every pod it selects, as listed.
    pods: BTreeMap<(String, String), Vec<Value>>,
}

impl TargetReads {
    fn extend(&mut self, other: TargetReads) {
        self.selectors.extend(other.selectors);
        self.pods.extend(other.pods);
    }
}

/// Captures the target objects (and a Deployment's ReplicaSets) into `dir`. Fast: one read
/// per target, all concurrent, none at all for a target a diff already read (`observed`:
/// the object and its ReplicaSets as the diff saw them). Read failures are manifest entries;
/// only I/O fails. Returns, besides the manifest, what [`capture_rest`] can reuse.
pub async fn capture_targets(
    client: &Client,
    request: &SnapshotRequest,
    dir: &Path,
    observed: &Observed,
) -> Result<(Manifest, TargetReads), SnapshotError> {
    let objects = Objects::new(client.clone(), CALL_TIMEOUT);
    let workloads = Workloads::new(client.clone(), CALL_TIMEOUT);
    let reads = request
        .targets
        .iter()
        .map(|target| capture_target(&objects, &workloads, request, target, observed));
    let mut items = Vec::new();
    let mut all_reads = TargetReads::default();
    for (target_items, target_reads) in join_all(reads).await {
        items.extend(target_items);
        all_reads.extend(target_reads);
    }
    Ok((write_items(dir, items).await?, all_reads))
}

async fn capture_target(
    objects: &Objects,
    workloads: &Workloads,
    request: &SnapshotRequest,
    target: &ObjectRef,
    observed: &Observed,
) -> (Vec<Captured>, TargetReads) {
    let mut reads = TargetReads::default();
    let what = target.to_string();
    if target.kind == "Secret" && target.api_version == "v1" {
        return (
            vec![Captured::Json {
                kind: "SecretName".into(),
                name: qualified(target.namespace.as_deref(), &target.name),
                file: object_file(target.namespace.as_deref(), "secret-name", &target.name),
                value: json!({ "name": target.name, "namespace": target.namespace,
                               "note": "Secrets are never captured; name only" }),
            }],
            reads,
        );
    }
    let (value, related, namespace) = match observed.get(target) {
        Some(read) => (read.object, Some(read.related), target.namespace.as_deref()),
        None => {
            let kind = match objects.resolve(&target.api_version, &target.kind).await {
                Ok(kind) => kind,
                Err(err) => return (vec![failed(what, &err)], reads),
            };
            let namespace = if kind.namespaced {
                target.namespace.as_deref()
            } else {
                None
            };
            match objects.get(&kind, namespace, &target.name).await {
                Ok(value) => (value, None, namespace),
                Err(err) => return (vec![failed(what, &err)], reads),
            }
        }
    };
    let mut items = Vec::new();
    if target.kind == "Deployment"
        && target.api_version == "apps/v1"
        && let Some(ns) = namespace
    {
        let selector = deployment_selector(&value);
        reads.selectors.insert(
            (ns.to_string(), target.name.clone()),
            selector.clone().unwrap_or_default(),
        );
        let replica_sets = async {
            match related {
                Some(owned) => owned
                    .into_iter()
                    .map(|rs| object_item("ReplicaSet", rs))
                    .collect(),
                None => owned_replica_sets(objects, ns, &value).await,
            }
        };
        let (replica_sets, (unready_logs, listed)) = futures::join!(
            replica_sets,
            unready_pod_logs(objects, workloads, request, ns, selector.as_deref())
        );
        items.extend(replica_sets);
        items.extend(unready_logs);
        if let (Some(selector), Some(pods)) = (selector, listed) {
            reads.pods.insert((ns.to_string(), selector), pods);
        }
    }
    items.insert(0, object_item(&target.kind, value));
    (items, reads)
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
/// Also returns the pods listed when the list was complete (one page), for the broad phase.
async fn unready_pod_logs(
    objects: &Objects,
    workloads: &Workloads,
    request: &SnapshotRequest,
    namespace: &str,
    selector: Option<&str>,
) -> (Vec<Captured>, Option<Vec<Value>>) {
    let Some(selector) = selector else {
        return (Vec::new(), None);
    };
    let Some(kind) = builtin_kind("v1", "Pod") else {
        return (Vec::new(), None);
    };
    let params = ListParams::default().labels(selector).limit(MAX_PODS);
    let (pods, next) = match objects.list_page(&kind, Some(namespace), &params).await {
        Ok(page) => page,
        Err(err) => {
            return (
                vec![failed(format!("pods in {namespace} ({selector})"), &err)],
                None,
            );
        }
    };
    let unready: Vec<PodSummary> = pods
        .iter()
        .map(PodSummary::of)
        .filter(|pod| !pod.ready)
        .collect();
    let logs = capture_logs(workloads, request, &unready, &BTreeSet::new()).await;
    (logs, next.is_none().then_some(pods))
}

/// What the capture keeps of a pod once its object is written: enough to choose whose logs to
/// read and which nodes to describe.
#[derive(Debug, Clone)]
struct PodSummary {
    namespace: String,
    name: String,
    node: Option<String>,
    ready: bool,
    /// Container names with their restart counts, in spec order.
    containers: Vec<(String, i32)>,
}

impl PodSummary {
    fn of(pod: &Value) -> PodSummary {
        let text = |p: &str| pod.pointer(p).and_then(Value::as_str).map(str::to_string);
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        let restarts: BTreeMap<&str, i32> = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map(|statuses| {
                statuses
                    .iter()
                    .filter_map(|c| {
                        Some((
                            c.get("name")?.as_str()?,
                            c.get("restartCount")
                                .and_then(Value::as_i64)
                                .and_then(|n| i32::try_from(n).ok())
                                .unwrap_or(0),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let containers = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .map(|n| (n.to_string(), restarts.get(n).copied().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        PodSummary {
            namespace: text("/metadata/namespace").unwrap_or_default(),
            name: text("/metadata/name").unwrap_or_default(),
            node: text("/spec/nodeName"),
            ready,
            containers,
        }
    }

    fn restarts(&self) -> i32 {
        self.containers.iter().map(|(_, n)| n).sum()
    }
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

/// Captures everything else into `dir`: pods, Deployments, ReplicaSets, PDBs, HPAs, Services,
/// EndpointSlices, ConfigMap keys, Secret names, events, logs, node conditions and impact
/// metrics. `reads`: what [`capture_targets`] read (the target Deployments' selectors and
/// pods), not read again. Read failures are manifest entries; only I/O fails.
///
/// Memory stays bounded by the page size, not the namespace: every list is read in pages of
/// [`PAGE_SIZE`] and each page is written to disk as one `List` file (on a blocking thread,
/// while the next page is read) and dropped; of each pod only a summary stays (name, node,
/// readiness, restart counts) to choose logs and nodes.
pub async fn capture_rest(
    client: &Client,
    request: &SnapshotRequest,
    dir: &Path,
    prometheus: Option<Prometheus>,
    reads: TargetReads,
) -> Result<Manifest, SnapshotError> {
    capture_rest_with(
        client,
        request,
        dir,
        prometheus,
        reads,
        RestOptions::default(),
    )
    .await
}

/// [`capture_rest`] with its settings (the page size).
pub async fn capture_rest_with(
    client: &Client,
    request: &SnapshotRequest,
    dir: &Path,
    prometheus: Option<Prometheus>,
    reads: TargetReads,
    options: RestOptions,
) -> Result<Manifest, SnapshotError> {
    let objects = Objects::new(client.clone(), CALL_TIMEOUT);
    let workloads = Workloads::new(client.clone(), CALL_TIMEOUT);
    let page_size = options.page_size.max(1);
    // The targets phase's records (the objects as they were before the first mutation) are
    // never overwritten nor duplicated by this phase, which runs while the mitigation writes.
    let before = before_in_manifest(dir).await;
    let per_namespace = request.namespaces.iter().map(|ns| {
        capture_namespace(
            &objects, &workloads, request, ns, dir, &reads, &before, page_size,
        )
    });
    let metrics = capture_metrics(request, prometheus.as_ref());
    let (namespaces, metric_items) = futures::join!(join_all(per_namespace), metrics);
    let mut written = Manifest::default();
    let mut items = Vec::new();
    let mut pods = Vec::new();
    for result in namespaces {
        let (ns_written, ns_items, ns_pods) = result?;
        written.merge(&ns_written);
        items.extend(ns_items);
        pods.extend(ns_pods);
    }
    items.extend(metric_items);
    // Logs the fast phase already took (unready pods of a target) are not read twice.
    let already = logs_in_manifest(dir).await;
    let (logs, nodes) = futures::join!(
        capture_logs(&workloads, request, &pods, &already),
        capture_nodes(&objects, &workloads, &pods, &before, page_size)
    );
    items.extend(logs);
    items.extend(nodes);
    let rest = write_files(dir, items).await?;
    written.merge(&rest);
    merge_manifest(dir, &written).await?;
    Ok(written)
}

/// What the bundle's manifest held when the broad phase started: the targets phase's record.
#[derive(Debug, Default)]
struct Before {
    /// Its files (never overwritten: a page never takes one of their names).
    files: BTreeSet<String>,
    /// Its objects, `(kind, namespace/name)` (left out of the pages).
    objects: BTreeSet<(String, String)>,
}

impl Before {
    /// Whether `object` (of `kind`) is already in the bundle.
    fn has(&self, kind: &str, object: &Value) -> bool {
        if self.objects.is_empty() {
            return false;
        }
        let (namespace, name) = names_of(object);
        self.objects
            .contains(&(kind.to_string(), qualified(namespace, name)))
    }
}

/// The files and objects already in the bundle's manifest.
async fn before_in_manifest(dir: &Path) -> Before {
    let Ok(bytes) = tokio::fs::read(dir.join(MANIFEST_FILE)).await else {
        return Before::default();
    };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
        return Before::default();
    };
    let mut before = Before::default();
    for entry in manifest.captured {
        before.objects.insert((entry.kind, entry.name));
        before.files.insert(entry.file);
    }
    before
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

/// Reads a kind in pages of `page_size` and writes each page as it comes, as one file of
/// `pages` (the write of one page overlaps the read of the next); `seen` gets each object
/// (to keep a summary of the caller's choosing) and may leave it out of the page (`false`:
/// already in the bundle). Returns the written manifest and, when the list was cut at
/// `max_items` or failed, a failure entry.
#[allow(clippy::too_many_arguments)]
async fn stream_kind(
    objects: &Objects,
    resolved: &crate::k8s::objects::ResolvedKind,
    kind: &str,
    namespace: &str,
    selector: &str,
    max_items: usize,
    dir: &Path,
    pages: &mut Pages<'_>,
    page_size: u32,
    mut seen: impl FnMut(&Value) -> bool,
) -> Result<(Manifest, Option<Captured>), SnapshotError> {
    let what = if selector.is_empty() {
        format!("{kind} in {namespace}")
    } else {
        format!("{kind} in {namespace} ({selector})")
    };
    let mut params = ListParams::default().limit(page_size);
    if !selector.is_empty() {
        params = params.labels(selector);
    }
    let mut written = Manifest::default();
    let mut writing: Option<tokio::task::JoinHandle<Result<Manifest, SnapshotError>>> = None;
    let mut count = 0usize;
    let mut problem = None;
    loop {
        let (page, next) = match objects.list_page(resolved, Some(namespace), &params).await {
            Ok(page) => page,
            // A 404 on a collection: the server does not serve this kind.
            Err(K8sError::NotFound { .. }) => {
                problem = Some(Captured::Failed {
                    what,
                    error: format!(
                        "{} {kind} is not served by this API server (404)",
                        resolved.resource.api_version
                    ),
                });
                break;
            }
            Err(err) => {
                problem = Some(failed(what, &err));
                break;
            }
        };
        let mut items = Vec::with_capacity(page.len());
        let mut cut = false;
        for object in page {
            if count >= max_items {
                cut = true;
                break;
            }
            if seen(&object) {
                count += 1;
                items.push(page_item(kind, object));
            }
        }
        if let Some(previous) = writing.take() {
            written.merge(&join_write(previous, dir).await?);
        }
        if let Some(page) = pages.page(items) {
            let owned = dir.to_path_buf();
            writing = Some(tokio::task::spawn_blocking(move || {
                write_files_blocking(&owned, vec![page])
            }));
        }
        match next {
            _ if cut || (next.is_some() && count >= max_items) => {
                problem = Some(Captured::Failed {
                    what,
                    error: format!("truncated: only the first {max_items} were captured"),
                });
                break;
            }
            Some(token) => params.continue_token = Some(token),
            None => break,
        }
    }
    if let Some(last) = writing.take() {
        written.merge(&join_write(last, dir).await?);
    }
    Ok((written, problem))
}

async fn join_write(
    task: tokio::task::JoinHandle<Result<Manifest, SnapshotError>>,
    dir: &Path,
) -> Result<Manifest, SnapshotError> {
    task.await.unwrap_or_else(|join| {
        Err(SnapshotError::Write {
            path: dir.to_path_buf(),
            source: std::io::Error::other(join.to_string()),
        })
    })
}

/// The pods of the namespace's target Deployments, or all pods (bounded) when there are none:
/// written page by page (a pod the targets phase captured left out); their summaries returned.
#[allow(clippy::too_many_arguments)]
async fn capture_pods(
    objects: &Objects,
    request: &SnapshotRequest,
    namespace: &str,
    dir: &Path,
    reads: &TargetReads,
    before: &Before,
    page_size: u32,
    items: &mut Vec<Captured>,
) -> Result<(Manifest, Vec<PodSummary>), SnapshotError> {
    let deployment_targets: Vec<&ObjectRef> = request
        .targets
        .iter()
        .filter(|t| t.kind == "Deployment" && t.namespace.as_deref() == Some(namespace))
        .collect();
    let mut selectors = Vec::new();
    if let Some(kind) = builtin_kind("apps/v1", "Deployment") {
        for target in &deployment_targets {
            let known = reads
                .selectors
                .get(&(namespace.to_string(), target.name.clone()));
            match known {
                Some(selector) => selectors.push(selector.clone()),
                None => match objects.get(&kind, Some(namespace), &target.name).await {
                    Ok(d) => selectors.push(deployment_selector(&d).unwrap_or_default()),
                    Err(err) => items.push(failed(format!("pods of {target}"), &err)),
                },
            }
        }
    }
    if deployment_targets.is_empty() {
        selectors.push(String::new());
    }
    let mut written = Manifest::default();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut pods: Vec<PodSummary> = Vec::new();
    let Some(pod_kind) = builtin_kind("v1", "Pod") else {
        return Ok((written, pods));
    };
    // One numbering for the namespace's pod pages, whatever selector listed them.
    let mut pages = Pages::new(Some(namespace), "Pod", "Pod", &before.files);
    for selector in selectors {
        // Every pod is summarized once (logs, nodes); one the targets phase captured is left
        // out of the pages.
        let mut take = |pod: &Value| {
            let summary = PodSummary::of(pod);
            if !names.insert(summary.name.clone()) {
                return false;
            }
            pods.push(summary);
            !before.has("Pod", pod)
        };
        if let Some(listed) = reads.pods.get(&(namespace.to_string(), selector.clone())) {
            let fresh: Vec<(String, Value)> = listed
                .iter()
                .filter(|pod| take(pod))
                .map(|pod| page_item("Pod", pod.clone()))
                .collect();
            let fresh = pages.pages(fresh, page_size as usize);
            written.merge(&write_files(dir, fresh).await?);
            continue;
        }
        let (ns_written, problem) = stream_kind(
            objects,
            &pod_kind,
            "Pod",
            namespace,
            &selector,
            MAX_PODS_PER_NAMESPACE,
            dir,
            &mut pages,
            page_size,
            take,
        )
        .await?;
        written.merge(&ns_written);
        items.extend(problem);
    }
    Ok((written, pods))
}

/// One namespace: pods and the other kinds (written page by page), events, Secret names.
/// Returns what was written, the items still to write, and the pods' summaries.
#[allow(clippy::too_many_arguments)]
async fn capture_namespace(
    objects: &Objects,
    workloads: &Workloads,
    request: &SnapshotRequest,
    namespace: &str,
    dir: &Path,
    reads: &TargetReads,
    before: &Before,
    page_size: u32,
) -> Result<(Manifest, Vec<Captured>, Vec<PodSummary>), SnapshotError> {
    let mut pod_items = Vec::new();
    let pods = capture_pods(
        objects,
        request,
        namespace,
        dir,
        reads,
        before,
        page_size,
        &mut pod_items,
    );
    let kinds = [
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
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
                Err(err) => return Ok((Manifest::default(), Some(failed(what, &err)))),
            },
        };
        let mut pages = Pages::new(Some(namespace), kind, kind, &before.files);
        stream_kind(
            objects,
            &resolved,
            kind,
            namespace,
            "",
            MAX_OBJECTS_PER_KIND,
            dir,
            &mut pages,
            page_size,
            |object| !before.has(kind, object),
        )
        .await
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
    let (pods, lists, events, secrets) = futures::join!(pods, join_all(lists), events, secrets);
    let (mut written, pods) = pods?;
    let mut items = pod_items;
    for list in lists {
        let (list_written, problem) = list?;
        written.merge(&list_written);
        items.extend(problem);
    }
    items.extend(events);
    items.push(secrets);
    Ok((written, items, pods))
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
    pods: &[PodSummary],
    captured_logs: &BTreeSet<(String, String)>,
) -> Vec<Captured> {
    let tail = request.spec.log_tail_lines;
    let mut reads = Vec::new();
    let mut skipped = 0usize;
    // Evidence first: unready and restarted pods, then the rest, up to the cap.
    let mut ordered: Vec<&PodSummary> = pods.iter().collect();
    ordered.sort_by_key(|pod| (pod.ready && pod.restarts() == 0, pod.restarts() == 0));
    let mut logged = 0usize;
    for pod in ordered {
        if logged >= MAX_LOG_PODS {
            skipped += 1;
            continue;
        }
        if captured_logs.contains(&(pod.namespace.clone(), pod.name.clone())) {
            continue;
        }
        logged += 1;
        for (container, restarts) in &pod.containers {
            reads.push((
                pod.namespace.clone(),
                pod.name.clone(),
                container.clone(),
                false,
            ));
            if request.spec.previous_logs && *restarts > 0 {
                reads.push((
                    pod.namespace.clone(),
                    pod.name.clone(),
                    container.clone(),
                    true,
                ));
            }
        }
    }
    let mut items: Vec<Captured> = Vec::new();
    if skipped > 0 {
        items.push(Captured::Failed {
            what: format!("logs of {skipped} more pod(s)"),
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

/// The conditions of the nodes running `pods`: one GET per node for a few, else one paged
/// LIST of the nodes (a 10,000-pod namespace runs on every node: 100 GETs become 1 LIST).
/// Written as pages of trimmed `Node` objects (labels, unschedulable, taints, conditions) under
/// `objects/_cluster/node/`, manifest kind `NodeConditions`.
async fn capture_nodes(
    objects: &Objects,
    workloads: &Workloads,
    pods: &[PodSummary],
    before: &Before,
    page_size: u32,
) -> Vec<Captured> {
    let names: BTreeSet<String> = pods.iter().filter_map(|p| p.node.clone()).collect();
    let item = |name: &str, node: &Value| -> (String, Value) {
        let spec = node.get("spec");
        let value = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": node.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
            },
            "spec": {
                "unschedulable": spec.and_then(|s| s.get("unschedulable")).and_then(Value::as_bool).unwrap_or(false),
                "taints": spec.and_then(|s| s.get("taints")).cloned().unwrap_or_else(|| json!([])),
            },
            "status": {
                "conditions": node.pointer("/status/conditions").cloned().unwrap_or_else(|| json!([])),
            },
        });
        (name.to_string(), value)
    };
    let mut found: Vec<(String, Value)> = Vec::new();
    let mut out: Vec<Captured> = Vec::new();
    if names.len() > NODE_GETS_MAX
        && let Some(kind) = builtin_kind("v1", "Node")
    {
        let mut params = ListParams::default().limit(page_size);
        loop {
            match objects.list_page(&kind, None, &params).await {
                Ok((page, next)) => {
                    for node in page {
                        if let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str)
                            && names.contains(name)
                        {
                            found.push(item(name, &node));
                        }
                    }
                    match next {
                        Some(token) => params.continue_token = Some(token),
                        None => break,
                    }
                }
                Err(err) => {
                    out.push(failed("nodes", &err));
                    break;
                }
            }
        }
    } else {
        let reads = names.into_iter().map(|name| async move {
            match workloads.node(&name).await {
                Ok(node) => match serde_json::to_value(&node) {
                    Ok(value) => Ok(item(&name, &value)),
                    Err(err) => Err(failed(format!("node {name}"), &err)),
                },
                Err(err) => Err(failed(format!("node {name}"), &err)),
            }
        });
        for read in join_all(reads).await {
            match read {
                Ok(node) => found.push(node),
                Err(failure) => out.push(failure),
            }
        }
    }
    let mut pages = Pages::new(None, "NodeConditions", "Node", &before.files);
    out.extend(pages.pages(found, page_size as usize));
    out
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

    /// Object files are created in place when new, replaced through a temporary file when the
    /// name is taken, and a link planted at the name is replaced, never followed.
    #[test]
    fn object_files_are_created_in_place_and_never_follow_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut made = BTreeSet::new();
        let path = dir.path().join("objects/shop/Pod/a.json");
        write_object_file(&path, b"one", &mut made).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Taken: replaced whole.
        write_object_file(&path, b"two", &mut made).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // A link planted at the name: the link is replaced, its target untouched.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        let linked = dir.path().join("objects/shop/Pod/b.json");
        std::os::unix::fs::symlink(&outside, &linked).unwrap();
        write_object_file(&linked, b"three", &mut made).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert!(
            !std::fs::symlink_metadata(&linked)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&linked).unwrap(), b"three");
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("objects/shop/Pod"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    fn pod(name: &str, env: Value) -> (String, Value) {
        page_item(
            "Pod",
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "shop", "managedFields": [{}]},
                   "spec": {"containers": [{"name": "app", "env": env}]}}),
        )
    }

    /// Issue 18: a page is one `List` file whose items and manifest entries agree one to one
    /// (index = position in `items`), redacted inside, without managedFields.
    #[test]
    fn issue18_a_page_is_one_list_file_with_one_indexed_entry_per_item() {
        let dir = tempfile::tempdir().unwrap();
        let taken = BTreeSet::new();
        let mut pages = Pages::new(Some("shop"), "Pod", "Pod", &taken);
        let items = vec![
            pod("a", json!([{"name": "MODE", "value": "fast"}])),
            pod("b", json!([{"name": "DB_PASSWORD", "value": "hunter2"}])),
            pod("c", json!([])),
        ];
        let batch = pages.pages(items, 2);
        assert_eq!(batch.len(), 2, "3 objects in pages of 2");
        let manifest = write_files_blocking(dir.path(), batch).unwrap();
        assert!(manifest.failed.is_empty(), "{:?}", manifest.failed);
        let files = [
            "objects/shop/pod/page-0001.json",
            "objects/shop/pod/page-0002.json",
        ];
        let mut seen = 0;
        for file in files {
            let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
            assert!(
                !text.contains("hunter2") && !text.contains("managedFields"),
                "{text}"
            );
            let list: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(list["kind"], "List");
            assert_eq!(list["apiVersion"], "v1");
            let items = list["items"].as_array().unwrap();
            let entries: Vec<&Entry> = manifest
                .captured
                .iter()
                .filter(|e| e.file == file)
                .collect();
            assert_eq!(entries.len(), items.len(), "{file}");
            for entry in entries {
                let item = &items[entry.index.unwrap()];
                assert_eq!(
                    format!("shop/{}", item["metadata"]["name"].as_str().unwrap()),
                    entry.name
                );
                assert_eq!(entry.kind, "Pod");
                seen += 1;
            }
        }
        assert_eq!(seen, 3);
        assert_eq!(
            manifest.redacted,
            vec!["objects/shop/pod/page-0001.json: items[1].spec.containers[0].env DB_PASSWORD"]
        );
    }

    /// A page name a file of the bundle already has (a target named `page-0001`) is skipped;
    /// an empty page is no file.
    #[test]
    fn issue18_pages_never_take_a_name_the_bundle_has() {
        let taken: BTreeSet<String> = ["objects/shop/pod/page-0001.json".to_string()].into();
        let mut pages = Pages::new(Some("shop"), "Pod", "Pod", &taken);
        assert!(pages.page(Vec::new()).is_none());
        let files: Vec<PathBuf> = pages
            .pages(vec![pod("a", json!([])), pod("b", json!([]))], 1)
            .into_iter()
            .map(|c| match c {
                Captured::Page { file, .. } => file,
                _ => panic!("a page"),
            })
            .collect();
        assert_eq!(
            files,
            vec![
                PathBuf::from("objects/shop/pod/page-0001-2.json"),
                PathBuf::from("objects/shop/pod/page-0002.json")
            ]
        );
        let mut nodes = Pages::new(None, "NodeConditions", "Node", &taken);
        let Some(Captured::Page { file, .. }) = nodes.page(vec![("n1".into(), json!({}))]) else {
            panic!("a page");
        };
        assert_eq!(file, PathBuf::from("objects/_cluster/node/page-0001.json"));
    }

    /// A link planted at a page's name is replaced, never followed; a page that cannot be
    /// written is one `failed` entry and the other pages are written.
    #[test]
    fn issue18_a_planted_link_is_not_followed_and_an_unwritable_page_loses_only_itself() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("objects/shop/pod");
        std::fs::create_dir_all(pod_dir.join("page-0002.json/blocker")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, pod_dir.join("page-0001.json")).unwrap();
        let taken = BTreeSet::new();
        let mut pages = Pages::new(Some("shop"), "Pod", "Pod", &taken);
        let items = (0..5).map(|i| pod(&format!("p{i}"), json!([]))).collect();
        let manifest = write_files_blocking(dir.path(), pages.pages(items, 2)).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        let first = pod_dir.join("page-0001.json");
        let meta = std::fs::symlink_metadata(&first).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(manifest.failed.len(), 1, "{:?}", manifest.failed);
        assert!(
            manifest.failed[0].what.contains("page-0002.json")
                && manifest.failed[0].what.contains("2 pod"),
            "{:?}",
            manifest.failed
        );
        let names: Vec<&str> = manifest.captured.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["shop/p0", "shop/p1", "shop/p4"]);
        assert!(
            manifest
                .captured
                .iter()
                .all(|e| !e.file.contains("page-0002"))
        );
        let third: Value =
            serde_json::from_slice(&std::fs::read(pod_dir.join("page-0003.json")).unwrap())
                .unwrap();
        assert_eq!(third["items"][0]["metadata"]["name"], "p4");
    }

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
