//! Evidence capture against the simulated cluster: the target phase and the broad phase merge
//! into one manifest; objects, revision history, pods, logs, events and node conditions are
//! captured; kinds the server does not serve are recorded as failed; a Secret's data never
//! appears anywhere in the bundle (names only) and ConfigMaps keep keys only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod actions_support;

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
    let targets = snapshot::capture_targets(&client, &request, &bundle)
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
    let rest = snapshot::capture_rest(&client, &request, &bundle, None)
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
