//! Evidence capture against the simulated cluster: the target phase and the broad phase merge
//! into one manifest; objects, revision history, pods, logs, events and node conditions are
//! captured; kinds the server does not serve are recorded as failed; a Secret's data never
//! appears anywhere in the bundle (names only) and ConfigMaps keep keys only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::actions_support;

use actions_support::Sim;
use ripcord::actions::ObjectRef;
use ripcord::playbook::SnapshotSpec;
use ripcord::sim::store::kinds;
use ripcord::snapshot::{self, SnapshotRequest};
use serde_json::json;
use std::path::Path;

const SECRET_VALUE: &str = "hunter2-very-secret";
const CONFIG_VALUE: &str = "postgres://app:pa55word@db";

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_captures_evidence_and_never_secrets() {
    let sim = Sim::start().await;
    let store = sim.cluster.store();
    let b64 = "aHVudGVyMi12ZXJ5LXNlY3JldA=="; // base64 of SECRET_VALUE
    store
        .create(
            &kinds::secrets(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "db-credentials", "namespace": "shop"},
                   "type": "Opaque",
                   "data": {"password": b64},
                   "stringData": {"plain": SECRET_VALUE}}),
        )
        .expect("secret created");
    store
        .create(
            &kinds::configmaps(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "app-config", "namespace": "shop"},
                   "data": {"DATABASE_URL": CONFIG_VALUE}}),
        )
        .expect("configmap created");

    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("snapshot");
    let request = SnapshotRequest {
        targets: vec![
            ObjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: "web".into(),
            },
            ObjectRef {
                api_version: "v1".into(),
                kind: "Secret".into(),
                namespace: Some("shop".into()),
                name: "db-credentials".into(),
            },
        ],
        namespaces: vec!["shop".into()],
        spec: SnapshotSpec::default(),
    };
    let client = sim.cluster.client();
    let before = sim.cluster.request_log().len();
    let (targets, reads) =
        snapshot::capture_targets(&client, &request, &bundle, &Default::default())
            .await
            .expect("targets captured");
    // The fast phase costs one GET of the Deployment, one LIST of its ReplicaSets and one
    // LIST of its pods, plus a log read per container of each unready pod: no discovery, no
    // Secret read, no write.
    let requests: Vec<_> = sim.cluster.request_log()[before..]
        .iter()
        .map(|r| format!("{} {}", r.verb, r.path))
        .collect();
    let non_log: Vec<_> = requests.iter().filter(|r| !r.ends_with("/log")).collect();
    assert_eq!(non_log.len(), 3, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| !r.starts_with("create") && !r.starts_with("patch")),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|r| !r.contains("secrets")),
        "{requests:?}"
    );
    let kinds_of = |m: &snapshot::Manifest| -> Vec<String> {
        m.captured.iter().map(|e| e.kind.clone()).collect()
    };
    let target_kinds = kinds_of(&targets);
    assert!(
        target_kinds.contains(&"Deployment".to_string()),
        "{target_kinds:?}"
    );
    let replica_sets = targets
        .captured
        .iter()
        .filter(|e| e.kind == "ReplicaSet")
        .count();
    assert_eq!(replica_sets, 3, "the revision history: {target_kinds:?}");

    let before = sim.cluster.request_log().len();
    let rest = snapshot::capture_rest(&client, &request, &bundle, None, reads)
        .await
        .expect("rest captured");
    let log = sim.cluster.request_log();
    assert!(
        log[before..].iter().all(|r| !r.is_write()),
        "capture never writes"
    );
    assert!(
        log[before..].iter().all(|r| !r.path.contains("/secrets/")),
        "no single Secret is ever read"
    );
    let rest_kinds = kinds_of(&rest);
    for kind in [
        "Pod",
        "Service",
        "ConfigMap",
        "Events",
        "Log",
        "NodeConditions",
        "SecretNames",
    ] {
        assert!(
            rest_kinds.iter().any(|k| k == kind),
            "{kind} missing from {rest_kinds:?}; failed: {:?}",
            rest.failed
        );
    }
    assert_eq!(rest.captured.iter().filter(|e| e.kind == "Pod").count(), 3);

    // One merged manifest on disk, every listed file exists.
    let manifest = snapshot::load_manifest(&bundle).expect("manifest");
    assert_eq!(
        manifest.captured.len(),
        targets.captured.len() + rest.captured.len(),
        "both phases merged"
    );
    for entry in &manifest.captured {
        assert!(
            bundle.join(&entry.file).is_file(),
            "{} listed but missing",
            entry.file
        );
    }
    // Unserved kinds (if any) are failures in the manifest, not errors; nothing else fails.
    for failure in &manifest.failed {
        assert!(failure.error.contains("not served"), "{failure:?}");
    }

    // Secrets: the name is there, the data nowhere; ConfigMaps keep keys only.
    let mut files = Vec::new();
    all_files(&bundle, &mut files);
    let mut saw_secret_name = false;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(
            !text.contains(SECRET_VALUE) && !text.contains(b64),
            "secret data in {}",
            file.display()
        );
        assert!(
            !text.contains(CONFIG_VALUE),
            "configmap value in {}",
            file.display()
        );
        saw_secret_name |= text.contains("db-credentials");
        if text.contains("app-config") && text.contains("dataKeys") {
            assert!(text.contains("DATABASE_URL"), "configmap keys kept");
        }
    }
    assert!(saw_secret_name, "the secret's name is recorded");
    sim.cluster_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_long_names_credentials_in_env_and_unwritable_files_never_break_the_bundle() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start().await;
    let store = sim.cluster.store();
    let long = format!("{}-end", "a".repeat(249));
    assert_eq!(long.len(), 253);
    store
        .create(
            &kinds::configmaps(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": long, "namespace": "shop"}, "data": {"k": "v"}}),
        )
        .expect("configmap created");
    store
        .create(
            &kinds::pods(),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "tool", "namespace": "shop"},
                   "spec": {"nodeName": "zone-a-node-1", "containers": [{
                       "name": "tool", "image": "tool:1",
                       "env": [{"name": "DB_PASSWORD", "value": SECRET_VALUE},
                               {"name": "UPSTREAM", "value": CONFIG_VALUE}],
                       "args": [format!("--api-token={SECRET_VALUE}")]}]}}),
        )
        .expect("pod created");
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("snapshot");
    // One file cannot be written (a directory sits where it goes).
    std::fs::create_dir_all(bundle.join("objects/shop/pod/tool.json/blocker")).expect("dir");
    let target = |kind: &str, name: &str| ObjectRef {
        api_version: if kind == "Deployment" {
            "apps/v1"
        } else {
            "v1"
        }
        .into(),
        kind: kind.into(),
        namespace: Some("shop".into()),
        name: name.into(),
    };
    let request = SnapshotRequest {
        targets: vec![
            target("ConfigMap", &long),
            target("Pod", "tool"),
            target("Deployment", "web"),
        ],
        namespaces: vec!["shop".into()],
        spec: SnapshotSpec::default(),
    };
    let (manifest, _) = snapshot::capture_targets(
        &sim.cluster.client(),
        &request,
        &bundle,
        &Default::default(),
    )
    .await
    .expect("a failed file never fails the bundle");
    let kinds_of: Vec<&str> = manifest.captured.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds_of.contains(&"ConfigMap"), "{manifest:?}");
    assert!(kinds_of.contains(&"Deployment"), "{manifest:?}");
    assert!(
        manifest.failed.iter().any(|f| f.what.contains("tool")),
        "the unwritable file is a failure: {manifest:?}"
    );
    let on_disk = snapshot::load_manifest(&bundle).expect("manifest");
    assert_eq!(on_disk.captured, manifest.captured);
    for entry in &on_disk.captured {
        let path = bundle.join(&entry.file);
        assert!(path.is_file(), "{} listed but missing", entry.file);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.file);
        for part in Path::new(&entry.file).components() {
            assert!(part.as_os_str().len() <= 120, "bounded: {}", entry.file);
        }
    }
    let created = bundle.join("objects/shop/configmap");
    let mode = std::fs::metadata(created)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // The pod again, into a fresh bundle: env values and args redacted, names kept, and the
    // manifest says what.
    let fresh = dir.path().join("fresh");
    let request = SnapshotRequest {
        targets: vec![target("Pod", "tool")],
        ..request
    };
    let (manifest, _) =
        snapshot::capture_targets(&sim.cluster.client(), &request, &fresh, &Default::default())
            .await
            .expect("captured");
    let mut files = Vec::new();
    all_files(&fresh, &mut files);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(!text.contains(SECRET_VALUE), "{}: {text}", file.display());
        assert!(!text.contains("pa55word"), "{}: {text}", file.display());
    }
    let pod = std::fs::read_to_string(fresh.join("objects/shop/pod/tool.json")).expect("pod");
    assert!(
        pod.contains("DB_PASSWORD") && pod.contains("--api-token=<redacted>"),
        "{pod}"
    );
    assert!(
        manifest.redacted.iter().any(|r| r.contains("DB_PASSWORD")),
        "{:?}",
        manifest.redacted
    );
    sim.cluster_shutdown().await;
}

/// Every entry of the manifest, read back: its own file or its item in a page; and the pages'
/// items and the manifest's indexes agree one to one.
fn check_pages(bundle: &Path, manifest: &snapshot::Manifest) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut by_page: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for entry in manifest
        .captured
        .iter()
        .filter(|e| !e.file.ends_with(".log"))
    {
        let object = snapshot::load_object(bundle, entry).expect("entry readable");
        if let Some(index) = entry.index {
            assert!(
                by_page.entry(&entry.file).or_default().insert(index),
                "{entry:?} twice"
            );
            let name = object["metadata"]["name"].as_str().expect("name");
            assert!(
                entry.name == name || entry.name.ends_with(&format!("/{name}")),
                "{entry:?} points at {name}"
            );
        }
    }
    for (file, indexes) in by_page {
        let page: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join(file)).expect("page")).expect("json");
        assert_eq!(page["kind"], "List", "{file}");
        let items = page["items"].as_array().expect("items").len();
        assert_eq!(
            indexes,
            (0..items).collect::<std::collections::BTreeSet<_>>(),
            "{file}: every item has one entry"
        );
    }
}

/// A pod with a literal credential in its env, on a node.
/// Creates `bulk-0` … `bulk-{n-1}` (see [`bulk_pod`]) in the store.
fn create_bulk_pods(store: &ripcord::sim::store::Store, n: usize) {
    for i in 0..n {
        store
            .create(&kinds::pods(), bulk_pod(&format!("bulk-{i}")))
            .expect("pod created");
    }
}

fn bulk_pod(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "shop", "labels": {"app": "bulk"}},
           "spec": {"nodeName": "zone-a-node-1", "containers": [{
               "name": "app", "image": "bulk:1",
               "env": [{"name": "API_TOKEN", "value": SECRET_VALUE}]}]},
           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// Issue 18: the broad phase writes one `List` file per kind and list page. A namespace with
/// more pods than a page gives several pages whose items and manifest indexes agree one to
/// one; a target the targets phase captured is not duplicated in a page (its entry points at
/// its own file); credentials in env are redacted inside pages; the manifest is version 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_broad_phase_writes_one_list_per_kind_and_page() {
    let sim = Sim::start().await;
    let store = sim.cluster.store();
    create_bulk_pods(store, 7);
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("snapshot");
    let request = SnapshotRequest {
        targets: vec![ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some("shop".into()),
            name: "bulk-3".into(),
        }],
        namespaces: vec!["shop".into()],
        spec: SnapshotSpec::default(),
    };
    let client = sim.cluster.client();
    let (_, reads) = snapshot::capture_targets(&client, &request, &bundle, &Default::default())
        .await
        .expect("targets captured");
    let options = snapshot::RestOptions { page_size: 3 };
    let rest = snapshot::capture_rest_with(&client, &request, &bundle, None, reads, options)
        .await
        .expect("rest captured");
    // Unserved kinds, and the logs of pods the sim has not started, may fail; nothing else.
    assert!(
        rest.failed
            .iter()
            .all(|f| f.error.contains("not served") || f.what.starts_with("log of")),
        "{:?}",
        rest.failed
    );
    let manifest = snapshot::load_manifest(&bundle).expect("manifest");
    assert_eq!(manifest.format_version.get(), 2);
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(raw["formatVersion"], 2);
    check_pages(&bundle, &manifest);

    // Every pod once; the target in its own file, the rest in pages of 3.
    let pods_in_store = store.list(&kinds::pods(), Some("shop")).0.len();
    assert!(pods_in_store > 7, "{pods_in_store}");
    let pods: Vec<&snapshot::Entry> = manifest
        .captured
        .iter()
        .filter(|e| e.kind == "Pod")
        .collect();
    assert_eq!(pods.len(), pods_in_store, "{pods:?}");
    let names: std::collections::BTreeSet<&str> = pods.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), pods_in_store, "no pod twice");
    let target: Vec<_> = pods.iter().filter(|e| e.name == "shop/bulk-3").collect();
    assert_eq!(target.len(), 1);
    assert_eq!(target[0].file, "objects/shop/pod/bulk-3.json");
    assert_eq!(target[0].index, None);
    // One file per list page of 3 (the target leaves a hole in its page, not a page more).
    let page_count = pods_in_store.div_ceil(3);
    let mut paged = 0;
    for page in 1..=page_count {
        let file = format!("objects/shop/pod/page-{page:04}.json");
        let text = std::fs::read_to_string(bundle.join(&file)).expect("page written");
        assert!(!text.contains("\"bulk-3\""), "{file} duplicates the target");
        let list: serde_json::Value = serde_json::from_str(&text).expect("json");
        let items = list["items"].as_array().expect("items").len();
        assert!((1..=3).contains(&items), "{file}: {items}");
        paged += items;
    }
    assert_eq!(paged, pods_in_store - 1);
    assert!(
        !bundle
            .join(format!("objects/shop/pod/page-{:04}.json", page_count + 1))
            .exists()
    );
    assert!(
        pods.iter()
            .all(|e| e.name == "shop/bulk-3" || e.index.is_some())
    );
    // Other kinds and the nodes are pages too.
    for (kind, file) in [
        ("ReplicaSet", "objects/shop/replicaset/page-0001.json"),
        ("Deployment", "objects/shop/deployment/page-0001.json"),
        ("NodeConditions", "objects/_cluster/node/page-0001.json"),
    ] {
        assert!(
            manifest
                .captured
                .iter()
                .any(|e| e.kind == kind && e.file == file && e.index.is_some()),
            "{kind} in {file}"
        );
    }
    let rs = manifest
        .captured
        .iter()
        .filter(|e| e.kind == "ReplicaSet")
        .count();
    assert_eq!(rs, store.list(&kinds::replicasets(), Some("shop")).0.len());
    // Pages hold only 0600 files in 0700 directories.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&bundle.join("objects/shop/pod")), 0o700);
    assert_eq!(mode(&bundle.join("objects/shop/pod/page-0001.json")), 0o600);

    // The credential: redacted in every file, named in the manifest with page and item.
    let mut files = Vec::new();
    all_files(&bundle, &mut files);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(!text.contains(SECRET_VALUE), "{}", file.display());
    }
    assert!(
        manifest
            .redacted
            .iter()
            .any(|r| r.starts_with("objects/shop/pod/page-")
                && r.contains("items[")
                && r.contains("env API_TOKEN")),
        "{:?}",
        manifest.redacted
    );
    assert!(
        manifest
            .redacted
            .iter()
            .any(|r| r.starts_with("objects/shop/pod/bulk-3.json: ")),
        "{:?}",
        manifest.redacted
    );
    sim.cluster_shutdown().await;
}

/// Issue 18: a link planted at a page's path is replaced, never followed; a page that cannot
/// be written is one `failed` entry and the other pages are written and listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_a_planted_link_and_an_unwritable_page_never_break_the_bundle() {
    let sim = Sim::start().await;
    let store = sim.cluster.store();
    create_bulk_pods(store, 7);
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("snapshot");
    let pod_dir = bundle.join("objects/shop/pod");
    std::fs::create_dir_all(pod_dir.join("page-0002.json/blocker")).expect("dir");
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"keep").expect("outside");
    std::os::unix::fs::symlink(&outside, pod_dir.join("page-0001.json")).expect("link");
    let request = SnapshotRequest {
        targets: Vec::new(),
        namespaces: vec!["shop".into()],
        spec: SnapshotSpec::default(),
    };
    let client = sim.cluster.client();
    let options = snapshot::RestOptions { page_size: 3 };
    let rest = snapshot::capture_rest_with(
        &client,
        &request,
        &bundle,
        None,
        Default::default(),
        options,
    )
    .await
    .expect("a failed page never fails the bundle");
    assert_eq!(std::fs::read(&outside).expect("outside"), b"keep");
    let first = std::fs::symlink_metadata(pod_dir.join("page-0001.json")).expect("meta");
    assert!(first.file_type().is_file(), "the link is replaced");
    let failed: Vec<_> = rest
        .failed
        .iter()
        .filter(|f| f.what.contains("objects/shop/pod/page-0002.json"))
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", rest.failed);
    assert!(failed[0].what.contains("3 pod"), "{failed:?}");
    let manifest = snapshot::load_manifest(&bundle).expect("manifest");
    assert_eq!(manifest.failed, rest.failed);
    check_pages(&bundle, &manifest);
    let pods_in_store = store.list(&kinds::pods(), Some("shop")).0.len();
    let pods = manifest.captured.iter().filter(|e| e.kind == "Pod").count();
    assert_eq!(
        pods,
        pods_in_store - 3,
        "only the lost page's pods are missing"
    );
    assert!(
        manifest
            .captured
            .iter()
            .any(|e| e.file == "objects/shop/pod/page-0003.json")
    );
    sim.cluster_shutdown().await;
}

/// A version 1 manifest (no `formatVersion`, one file per object) still reads, and its
/// entries resolve; a newer version is refused, naming the file.
#[test]
fn issue18_manifest_versions_one_and_two_read_newer_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("objects/shop/pod")).expect("dir");
    std::fs::write(
        dir.path().join("objects/shop/pod/web-1.json"),
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"}}"#,
    )
    .expect("object");
    std::fs::write(
        dir.path().join("manifest.json"),
        r#"{"captured": [{"kind": "Pod", "name": "shop/web-1", "file": "objects/shop/pod/web-1.json"}], "failed": []}"#,
    )
    .expect("manifest");
    let manifest = snapshot::load_manifest(dir.path()).expect("version 1 reads");
    assert_eq!(manifest.format_version.get(), 1);
    assert_eq!(manifest.captured[0].index, None);
    let pod = snapshot::load_object(dir.path(), &manifest.captured[0]).expect("object");
    assert_eq!(pod["metadata"]["name"], "web-1");
    std::fs::write(
        dir.path().join("manifest.json"),
        r#"{"formatVersion": 3, "captured": [], "failed": []}"#,
    )
    .expect("manifest");
    let err = snapshot::load_manifest(dir.path()).expect_err("version 3 is refused");
    assert!(err.to_string().contains("manifest.json"), "{err}");
    assert!(err.to_string().contains("version 3"), "{err}");
}
