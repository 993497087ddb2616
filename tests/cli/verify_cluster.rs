//! Issue 6: `verify --cluster` finds the residue of a run that crashed before it journaled its
//! finish (the engine's crash hook kills the process right after its first applied mutation).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::cleanup_support;

use cleanup_support::*;
use ripcord::sim::store::kinds;
use serde_json::Value;

const PLAYBOOK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: cordon-zone-c
spec:
  lock: zone/zone-c
  steps:
    - name: cordon
      action: node.cordon
      with: {selector: topology.kubernetes.io/zone=zone-c}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue6_verify_cluster_finds_the_residue_of_a_crashed_run() {
    let h = Harness::start_calm().await;

    // Clean to begin with.
    let out = h.ripcord(&["verify", "--cluster"]).await;
    assert_eq!(out.status.code(), Some(0), "a healthy cluster is clean");

    let playbook = h.write("cordon.yaml", PLAYBOOK);
    let out = h
        .ripcord_with(
            &["run", playbook.to_str().expect("utf-8"), "--yes"],
            &h.state_dir(),
            &[(ripcord::engine::CRASH_HOOK_ENV, "after-apply")],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(137),
        "the crash hook killed the run"
    );
    // The run id from the state directory (the process died; its output may be cut short).
    let runs = ripcord::journal::list_runs(&h.state_dir()).expect("runs listed");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run_id = runs[0].run_id.clone();
    assert!(runs[0].outcome.is_none(), "no finish record: {:?}", runs[0]);
    let cordoned: Vec<String> = h
        .zone_nodes("zone-c")
        .iter()
        .filter(|n| n["spec"]["unschedulable"] == Value::Bool(true))
        .map(|n| {
            n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // The cordons of one diff go out together; the crash came after the first was journaled
    // as applied, so the other may have only its write-ahead intent.
    assert!(
        !cordoned.is_empty(),
        "at least one node cordoned before the crash"
    );

    let out = h.ripcord(&["verify", "--cluster", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "dirty");
    let report = json_out(&out);
    let found = findings(&report);
    for node in &cordoned {
        assert!(
            found.contains(&("cordoned-node".into(), format!("node/{node}"))),
            "{found:?}"
        );
    }
    assert!(
        found.contains(&("unfinished-run".into(), format!("run/{run_id}"))),
        "{found:?}"
    );
    let by_run = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["kind"] == "cordoned-node")
        .map(|f| f["run"].clone());
    assert_eq!(
        by_run,
        Some(Value::String(run_id.clone())),
        "the residue names its run"
    );
    let lock_holder = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["kind"] == "lock-held")
        .map(|f| f["run"].clone());
    assert_eq!(
        lock_holder,
        Some(Value::String(run_id.clone())),
        "the crashed run's lock Lease is residue: {found:?}"
    );
    let text =
        String::from_utf8_lossy(&h.ripcord(&["verify", "--cluster"]).await.stdout).to_string();
    assert!(text.contains("DIRTY"), "{text}");
    assert!(
        text.contains(&format!("ripcord cleanup --run {run_id}")),
        "{text}"
    );

    // The crashed run is cleaned up like any other.
    let out = h.ripcord(&["cleanup", "--run", &run_id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0));
    for name in &cordoned {
        let node = h
            .sim
            .store()
            .get(&kinds::nodes(), None, name)
            .expect("node exists");
        assert_ne!(node["spec"]["unschedulable"], Value::Bool(true), "{node}");
    }

    // Once reverted (and its lock Lease expired: 30 s without renewal), the crashed run is no
    // longer residue.
    let out = h.ripcord(&["verify", "--cluster", "--wait", "60s"]).await;
    assert_eq!(out.status.code(), Some(0), "clean after the cleanup");
}
