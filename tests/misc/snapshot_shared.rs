//! Issue 18: under an alert storm the daemon's runs share one broad capture per namespace
//! (`snapshot::SharedCaptures`) instead of each reading the whole namespace again; a run's own
//! targets phase is never replaced, and a capture that was abandoned is not shared.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::actions_support::Sim;
use ripcord::actions::ObjectRef;
use ripcord::playbook::SnapshotSpec;
use ripcord::snapshot::{self, SharedCaptures, SnapshotRequest};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

fn request() -> SnapshotRequest {
    SnapshotRequest {
        targets: vec![ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        }],
        namespaces: vec!["shop".into()],
        spec: SnapshotSpec {
            previous_logs: false,
            ..SnapshotSpec::default()
        },
    }
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_runs_of_one_namespace_share_a_broad_capture_within_the_window() {
    let sim = Sim::start().await;
    let client = sim.cluster.client();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let request = request();
    let (_, reads_a) = snapshot::capture_targets(&client, &request, &a, &Default::default())
        .await
        .expect("a's targets");
    let (targets_b, reads_b) =
        snapshot::capture_targets(&client, &request, &b, &Default::default())
            .await
            .expect("b's targets");
    let own_file = targets_b
        .captured
        .iter()
        .find(|e| e.kind == "Deployment" && e.name == "shop/web")
        .map(|e| e.file.clone())
        .expect("b's target in its manifest");
    let own = std::fs::read(b.join(&own_file)).expect("b's target");

    let shared = SharedCaptures::new(Duration::from_secs(60));
    let before = sim.cluster.request_log().len();
    let first = shared
        .capture_rest(&client, &request, &a, None, reads_a)
        .await
        .expect("a's capture");
    let read_by_a = sim.cluster.request_log().len() - before;
    assert!(read_by_a > 3, "a read the namespace ({read_by_a} requests)");
    assert!(first.shared_from.is_none());

    let before = sim.cluster.request_log().len();
    let second = shared
        .capture_rest(&client, &request, &b, None, reads_b)
        .await
        .expect("b's capture");
    let read_by_b: Vec<String> = sim.cluster.request_log()[before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(read_by_b.is_empty(), "b read again: {read_by_b:?}");
    assert_eq!(
        second.shared_from.as_deref(),
        Some(&*a.display().to_string())
    );
    // b's manifest on disk names the source and lists files b holds; what b's targets phase
    // wrote (its pre-mutation image) is b's own, the rest is a's, linked.
    let manifest = snapshot::load_manifest(&b).expect("b's manifest");
    assert_eq!(manifest.shared_from, second.shared_from);
    assert_eq!(std::fs::read(b.join(&own_file)).unwrap(), own);
    assert_ne!(inode(&b.join(&own_file)), inode(&a.join(&own_file)));
    let mut linked = 0;
    for entry in &manifest.captured {
        let path = b.join(&entry.file);
        assert!(path.exists(), "{} listed but missing", entry.file);
        if entry.file != own_file && first.captured.iter().any(|e| e.file == entry.file) {
            assert_eq!(inode(&path), inode(&a.join(&entry.file)), "{}", entry.file);
            linked += 1;
        }
    }
    assert!(linked > 0, "nothing was linked: {:?}", manifest.captured);
    assert!(
        manifest.captured.iter().any(|e| e.kind == "Pod"),
        "the namespace's pods are in b's bundle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_an_abandoned_or_old_capture_is_not_shared() {
    let sim = Sim::start().await;
    let client = sim.cluster.client();
    let root = tempfile::tempdir().unwrap();
    let request = request();

    // Abandoned: the leading run's capture is dropped half-way (its run was cancelled).
    let shared = std::sync::Arc::new(SharedCaptures::new(Duration::from_secs(60)));
    sim.cluster.faults().set_latency(Duration::from_millis(200));
    let leader = {
        let (shared, client, request) = (shared.clone(), client.clone(), request.clone());
        let dir = root.path().join("a");
        tokio::spawn(async move {
            shared
                .capture_rest(&client, &request, &dir, None, Default::default())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let _ = leader.await;
    sim.cluster.faults().clear();
    let b = root.path().join("b");
    let before = sim.cluster.request_log().len();
    let own = shared
        .capture_rest(&client, &request, &b, None, Default::default())
        .await
        .expect("b's capture");
    assert!(own.shared_from.is_none(), "shared an abandoned capture");
    assert!(sim.cluster.request_log().len() > before, "b read nothing");

    // Old: past the window, a run reads the namespace itself.
    let never = SharedCaptures::new(Duration::ZERO);
    for name in ["c", "d"] {
        let before = sim.cluster.request_log().len();
        let manifest = never
            .capture_rest(
                &client,
                &request,
                &root.path().join(name),
                None,
                Default::default(),
            )
            .await
            .expect("capture");
        assert!(manifest.shared_from.is_none());
        assert!(
            sim.cluster.request_log().len() > before,
            "{name} read nothing"
        );
    }
}
