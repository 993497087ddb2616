//! Issue 6: a node uncordoned by hand and a Deployment rescaled by hand after ripcord touched
//! them are reported as drift (three-way difference) and left alone without `--force`; with
//! `--force` they are reverted. The cleanup runs from "another machine": an empty state
//! directory, reading the run from its `Run` resource in the cluster.

mod cleanup_support;

use cleanup_support::*;
use ripcord::sim::store::kinds;
use serde_json::{Value, json};
use std::time::Duration;

const PLAYBOOK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: drift-test
spec:
  steps:
    - name: cordon
      action: node.cordon
      with: {names: [zone-b-node-1]}
    - name: scale-api
      action: deployment.scale
      with: {namespace: shop, name: api, replicas: 5}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue6_hand_changes_are_drift_and_left_alone_without_force() {
    let h = Harness::start_calm().await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed in the sim");
    let playbook = h.write("drift.yaml", PLAYBOOK);
    let out = h
        .ripcord(&[
            "run",
            playbook.to_str().expect("utf-8"),
            "--yes",
            "-n",
            "shop",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let run_id = run_id_of(&out);
    let node = h
        .sim
        .store()
        .get(&kinds::nodes(), None, "zone-b-node-1")
        .expect("node exists");
    assert_eq!(node["spec"]["unschedulable"], Value::Bool(true));
    assert_eq!(h.deployment("api")["spec"]["replicas"], 5);

    // By hand, after ripcord: `kubectl uncordon` (the mark stays) and `kubectl scale --replicas=4`.
    h.by_hand(&kinds::nodes(), None, "zone-b-node-1", |n| {
        n["spec"]["unschedulable"] = Value::Bool(false);
    });
    h.by_hand(&kinds::deployments(), Some("shop"), "api", |d| {
        d["spec"]["replicas"] = json!(4);
    });

    // Another machine: no local journal, the run comes from its Run resource.
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let writes = h.sim.write_request_count();
    let out = h
        .ripcord_with(&["cleanup", "--run", &run_id, "--yes"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.matches("\n  DRIFT: skipped").count(), 2, "{text}");
    assert!(
        text.contains("nothing to revert: 2 DRIFT: skipped"),
        "{text}"
    );
    assert!(
        text.contains(
            "spec.unschedulable: before ripcord (absent) | ripcord left true | now false"
        ),
        "three-way difference of the node: {text}"
    );
    assert!(
        text.contains("spec.replicas: before ripcord 3 | ripcord left 5 | now 4"),
        "three-way difference of the deployment: {text}"
    );
    assert!(text.contains("nothing to revert"), "{text}");
    assert_eq!(h.sim.write_request_count(), writes, "drift is left alone");
    let node = h
        .sim
        .store()
        .get(&kinds::nodes(), None, "zone-b-node-1")
        .expect("node exists");
    assert_eq!(
        node["metadata"]["labels"]["ripcord.dev/cordoned-by"],
        json!(run_id)
    );
    assert_eq!(h.deployment("api")["spec"]["replicas"], 4);

    // Verify says what is left.
    let out = h
        .ripcord_with(&["verify", "--run", &run_id, "-o", "json"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let found = findings(&json_out(&out));
    assert!(
        found.contains(&("marked-node".into(), "node/zone-b-node-1".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("not-restored".into(), "deployment/shop/api".into())),
        "{found:?}"
    );

    // --force reverts them.
    let out = h
        .ripcord_with(
            &["cleanup", "--run", &run_id, "--yes", "--force"],
            &elsewhere,
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.matches("\n  revert (forced)").count(), 2, "{text}");
    let node = h
        .sim
        .store()
        .get(&kinds::nodes(), None, "zone-b-node-1")
        .expect("node exists");
    assert!(
        node.pointer("/metadata/labels/ripcord.dev~1cordoned-by")
            .is_none(),
        "{node}"
    );
    assert_ne!(node["spec"]["unschedulable"], Value::Bool(true));
    assert_eq!(h.deployment("api")["spec"]["replicas"], 3);
    let out = h
        .ripcord_with(
            &["verify", "--run", &run_id, "--wait", "60s"],
            &elsewhere,
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "clean after --force");
}

/// `object.patch` setting a list (the api Deployment's containers): the server fills defaults
/// into the list's items.
fn list_patch_playbook(h: &Harness) -> std::path::PathBuf {
    let live = h.deployment("api");
    let container = &live["spec"]["template"]["spec"]["containers"][0];
    let patch = json!({"spec": {"template": {"spec": {"containers": [{
        "name": container["name"],
        "image": container["image"],
        "env": [{"name": "MODE", "value": "safe"}],
        "ports": [{"name": "http", "containerPort": container["ports"][0]["containerPort"]}],
    }]}}}});
    let playbook = format!(
        r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: list-patch
spec:
  steps:
    - name: set-containers
      action: object.patch
      with:
        apiVersion: apps/v1
        kind: Deployment
        namespace: shop
        name: api
        patch: {patch}
      retries: {{attempts: 1}}
"#
    );
    h.write("list-patch.yaml", &playbook)
}

fn api_patches(h: &Harness) -> usize {
    h.sim
        .request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/deployments/api"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_object_patch_of_a_list_verifies_resumes_without_writes_and_cleans_up() {
    let h = Harness::start_calm().await;
    let before = h.deployment("api")["spec"]["template"]["spec"]["containers"].clone();
    let playbook = list_patch_playbook(&h);
    let path = playbook.to_str().expect("utf-8");

    // Crash right after the PATCH was journaled as applied, before its verify.
    let out = h
        .ripcord_with(
            &["run", path, "--yes", "-n", "shop"],
            &h.state_dir(),
            &[(ripcord::engine::CRASH_HOOK_ENV, "after-apply")],
        )
        .await;
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(api_patches(&h), 1);
    let live = h.deployment("api");
    let container = &live["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["env"][0]["value"], "safe");
    assert_eq!(
        container["ports"][0]["protocol"], "TCP",
        "the server defaulted the list item"
    );
    let run_id = ripcord::journal::list_runs(&h.state_dir()).expect("runs")[0]
        .run_id
        .clone();

    // The resume verifies what the PATCH set and sends no write.
    let out = h.ripcord(&["run", "--resume", &run_id]).await;
    assert_eq!(out.status.code(), Some(0), "the step verifies");
    assert_eq!(api_patches(&h), 1, "the resume sent no PATCH");

    // Cleanup sees the change as ripcord left it (no drift) and reverts it.
    let out = h.ripcord(&["cleanup", "--run", &run_id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("DRIFT"), "{text}");
    let after = h.deployment("api")["spec"]["template"]["spec"]["containers"].clone();
    assert!(after[0].get("env").is_none(), "reverted: {after}");
    assert_eq!(after, before);
}

const FAILOUT: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: failout-with-traffic
spec:
  steps:
    - name: failout
      action: zone.failout
      with:
        zone: zone-a
        traffic: {httpRoute: {namespace: shop, name: checkout, backend: checkout-zone-a}}
      timeout: 3m
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_cleanup_with_a_drifted_node_still_ramps_the_traffic_back() {
    let h = Harness::start_calm().await;
    let playbook = h.write("failout.yaml", FAILOUT);
    let out = h
        .ripcord(&["run", playbook.to_str().expect("utf-8"), "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let run_id = run_id_of(&out);
    assert!(
        h.route_weights()
            .contains(&("checkout-zone-a".to_string(), 0))
    );
    let names: Vec<String> = h
        .zone_nodes("zone-a")
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names.len(), 2);
    // By hand: one node uncordoned (ripcord's mark stays) — drift on that node only.
    h.by_hand(&kinds::nodes(), None, &names[0], |n| {
        n["spec"]["unschedulable"] = Value::Bool(false);
    });

    let from = h.sim.request_log().len();
    let out = h
        .ripcord(&[
            "cleanup",
            "--run",
            &run_id,
            "--yes",
            "--ramp-pause",
            "100ms",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("DRIFT: skipped"), "{text}");
    assert!(
        text.contains("traffic ramp only"),
        "says what it did: {text}"
    );
    let route_patches: Vec<String> = h
        .sim
        .request_log()
        .iter()
        .skip(from)
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/httproutes/checkout"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        route_patches.len() >= 4,
        "ramped 10/25/50/100, never 0 -> 100 in one patch: {route_patches:?}"
    );
    assert!(
        h.route_weights().iter().all(|(_, w)| *w == 100),
        "{:?}",
        h.route_weights()
    );
    // The drifted node is left alone (its mark stays); the clean one is reverted.
    let nodes = h.zone_nodes("zone-a");
    let node = |name: &str| {
        nodes
            .iter()
            .find(|n| n["metadata"]["name"] == json!(name))
            .cloned()
            .expect("node")
    };
    assert!(
        node(&names[0])
            .pointer("/metadata/labels/ripcord.dev~1cordoned-by")
            .is_some(),
        "drifted node untouched"
    );
    let clean = node(&names[1]);
    assert_ne!(clean["spec"]["unschedulable"], Value::Bool(true), "{clean}");
    assert!(
        clean
            .pointer("/metadata/labels/ripcord.dev~1cordoned-by")
            .is_none(),
        "{clean}"
    );
}
