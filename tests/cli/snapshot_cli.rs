//! `ripcord snapshot` (the binary) against the simulated cluster: writes a bundle with a
//! manifest, prints it as JSON with `-o json`, and never captures Secret data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::actions_support;

use actions_support::{Sim, ripcord};
use ripcord::sim::store::kinds;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_command_writes_a_bundle() {
    let sim = Sim::start().await;
    sim.cluster
        .store()
        .create(
            &kinds::secrets(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "api-token", "namespace": "shop"},
                   "data": {"token": "c3VwZXItc2VjcmV0LXRva2Vu"}}),
        )
        .expect("secret created");
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle");
    let bundle_arg = bundle.display().to_string();
    let out = ripcord(
        &sim,
        dir.path(),
        &[
            "snapshot",
            "shop",
            "-d",
            &bundle_arg,
            "--target",
            "deployment/web",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json output");
    let captured = json["manifest"]["captured"]
        .as_array()
        .expect("captured list");
    assert!(captured.iter().any(|e| e["kind"] == "Deployment"), "{json}");
    assert!(captured.iter().any(|e| e["kind"] == "ReplicaSet"), "{json}");
    assert!(captured.iter().any(|e| e["kind"] == "Log"), "{json}");
    assert!(bundle.join("manifest.json").is_file());
    let names = std::fs::read_to_string(bundle.join("objects/shop/secret-names.json"))
        .expect("secret names recorded");
    assert!(names.contains("api-token"));
    assert!(!names.contains("c3VwZXItc2VjcmV0LXRva2Vu"));

    let out = ripcord(
        &sim,
        dir.path(),
        &["snapshot", "shop", "--target", "secret/api-token"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "secrets are not a capture target"
    );
    sim.cluster_shutdown().await;
}

/// Issue 18: a namespace snapshot without targets captures every Deployment and ReplicaSet of
/// the namespace (besides the pods and the other kinds), and a paged list of more pods than a
/// page holds is captured whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_namespace_snapshot_captures_deployments_replicasets_and_every_page() {
    let sim = Sim::start().await;
    // More pods than one page (2,000) of the broad phase.
    for i in 0..2_100 {
        sim.cluster
            .store()
            .create(
                &kinds::pods(),
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": format!("bulk-{i:04}"), "namespace": "shop",
                                    "labels": {"app": "bulk"}},
                       "spec": {"containers": [{"name": "app", "image": "registry.local/bulk:1"}]},
                       "status": {"phase": "Running",
                                  "conditions": [{"type": "Ready", "status": "True"}]}}),
            )
            .expect("pod created");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle");
    let bundle_arg = bundle.display().to_string();
    let out = ripcord(
        &sim,
        dir.path(),
        &[
            "snapshot",
            "shop",
            "-d",
            &bundle_arg,
            "--no-previous-logs",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json output");
    let captured = json["manifest"]["captured"]
        .as_array()
        .expect("captured list");
    let count = |kind: &str| captured.iter().filter(|e| e["kind"] == kind).count();
    let deployments = sim
        .cluster
        .store()
        .list(&kinds::deployments(), Some("shop"))
        .0;
    let replica_sets = sim
        .cluster
        .store()
        .list(&kinds::replicasets(), Some("shop"))
        .0;
    let pods = sim.cluster.store().list(&kinds::pods(), Some("shop")).0;
    assert!(!deployments.is_empty() && !replica_sets.is_empty());
    assert_eq!(
        count("Deployment"),
        deployments.len(),
        "{:?}",
        json["manifest"]["failed"]
    );
    assert_eq!(count("ReplicaSet"), replica_sets.len());
    assert_eq!(count("Pod"), pods.len(), "every page of pods");
    // Issue 18: one `List` file per kind and page of 2,000, the manifest naming each object's
    // page and index.
    let name = deployments[0]["metadata"]["name"].as_str().expect("name");
    let entry = captured
        .iter()
        .find(|e| e["kind"] == "Deployment" && e["name"] == format!("shop/{name}"))
        .expect("the deployment's entry");
    assert_eq!(entry["file"], "objects/shop/deployment/page-0001.json");
    let read = |file: &str| -> Value {
        serde_json::from_slice(&std::fs::read(bundle.join(file)).expect(file)).expect("json")
    };
    let page = read("objects/shop/deployment/page-0001.json");
    assert_eq!(page["kind"], "List");
    let index = entry["index"].as_u64().expect("index") as usize;
    assert_eq!(page["items"][index]["metadata"]["name"], name);
    let first = read("objects/shop/pod/page-0001.json");
    let second = read("objects/shop/pod/page-0002.json");
    let in_pages = first["items"].as_array().expect("items").len()
        + second["items"].as_array().expect("items").len();
    assert_eq!(first["items"].as_array().expect("items").len(), 2_000);
    assert_eq!(in_pages, pods.len(), "two pages hold every pod");
    assert!(!bundle.join("objects/shop/pod/page-0003.json").exists());
    assert_eq!(json["manifest"]["formatVersion"], 2);
    sim.cluster_shutdown().await;
}
