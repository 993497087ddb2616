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
