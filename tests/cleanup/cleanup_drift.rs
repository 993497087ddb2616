//! Issue 6: a node uncordoned by hand and a Deployment rescaled by hand after ripcord touched
//! them are reported as drift (three-way difference) and left alone without `--force`; with
//! `--force` they are reverted. The cleanup runs from "another machine": an empty state
//! directory, reading the run from its `Run` resource in the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::cleanup_support;

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

const CORDON_TWO: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: cordon-two
spec:
  steps:
    - name: cordon
      action: node.cordon
      with: {names: [zone-c-node-1, zone-c-node-2]}
"#;

fn unschedulable(h: &Harness, node: &str) -> bool {
    h.sim
        .store()
        .get(&kinds::nodes(), None, node)
        .expect("node exists")["spec"]["unschedulable"]
        == Value::Bool(true)
}

/// Replaces line `line` (1-based) of a run's journal by garbage.
fn garble_journal(h: &Harness, run_id: &str, line: usize) {
    let path = ripcord::journal::journal_path(&h.state_dir(), run_id);
    let text = std::fs::read_to_string(&path).expect("journal read");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() > line + 1, "the damaged line is in the middle");
    lines[line - 1] = "{\"seq\": 3, garbage".to_string();
    std::fs::write(&path, lines.join("\n") + "\n").expect("journal written");
}

fn runs_type() -> ripcord::sim::store::ResourceType {
    ripcord::sim::store::ResourceType::new("ripcord.dev", "v1alpha1", "runs", "Run", true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_a_damaged_journal_is_an_error_and_cleanup_falls_back_to_the_run_resource() {
    let h = Harness::start_calm().await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed in the sim");
    let playbook = h.write("cordon-two.yaml", CORDON_TWO);
    let playbook = playbook.to_str().expect("utf-8");

    // 1. The journal is damaged, its Run resource is there: cleanup reverts from the Run
    //    resource and still fails, naming the line.
    let out = h.ripcord(&["run", playbook, "--yes", "-n", "shop"]).await;
    assert_eq!(out.status.code(), Some(0));
    let run_id = run_id_of(&out);
    assert!(unschedulable(&h, "zone-c-node-1") && unschedulable(&h, "zone-c-node-2"));
    garble_journal(&h, &run_id, 3);
    let out = h.ripcord(&["cleanup", "--run", &run_id, "--yes"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("journal.jsonl:3:"),
        "names the line: {stderr}"
    );
    assert!(stderr.contains("Run resource"), "{stderr}");
    assert!(!unschedulable(&h, "zone-c-node-1") && !unschedulable(&h, "zone-c-node-2"));

    // 2. Damaged and no Run resource: nothing is judged silently.
    let out = h.ripcord(&["run", playbook, "--yes", "-n", "shop"]).await;
    assert_eq!(out.status.code(), Some(0));
    let run_id = run_id_of(&out);
    garble_journal(&h, &run_id, 3);
    let run = h
        .sim
        .store()
        .list(&runs_type(), None)
        .0
        .into_iter()
        .find(|r| r["metadata"]["name"] == json!(run_id))
        .expect("the run's Run resource");
    let namespace = run["metadata"]["namespace"].as_str().map(str::to_string);
    h.sim
        .store()
        .delete(&runs_type(), namespace.as_deref(), &run_id)
        .expect("Run resource deleted");
    let writes = h.sim.write_request_count();
    let out = h.ripcord(&["cleanup", "--run", &run_id, "--yes"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("nothing to revert"), "{stdout}");
    assert!(stderr.contains("journal.jsonl:3:"), "{stderr}");
    assert!(stderr.contains("could not judge"), "{stderr}");
    assert_eq!(h.sim.write_request_count(), writes, "nothing was written");
    assert!(unschedulable(&h, "zone-c-node-1") && unschedulable(&h, "zone-c-node-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_forged_run_resources_and_journal_records_are_never_acted_on() {
    use ripcord::actions::{Applied, Inverse, ObjectRef};
    use ripcord::journal::{Journal, Record};
    let h = Harness::start_calm().await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed in the sim");

    // A forged Run resource: "ripcord scaled shop/api from 0 to 3" (the live value), incident
    // INC-EVIL. ripcord never touched api.
    let inverse = serde_json::to_string(&Inverse::MergePatch {
        patch: json!({"spec": {"replicas": 0}}),
        expected: json!({"spec": {"replicas": 3}}),
    })
    .expect("inverse");
    let forged = json!({
        "apiVersion": "ripcord.dev/v1alpha1", "kind": "Run",
        "metadata": {"name": "r-20261125-110000-e011", "namespace": "shop"},
        "spec": {"playbook": "evil", "trigger": "cli", "who": "mallory", "incident": "INC-EVIL",
                 "params": {}},
    });
    let created = h
        .sim
        .store()
        .create(&runs_type(), forged)
        .expect("Run created");
    let mut with_status = created.clone();
    with_status["status"] = json!({
        "phase": "Finished", "outcome": "succeeded", "startedAt": "2026-11-25T11:00:00Z",
        "steps": [{"name": "scale", "phase": "Verified", "mutations": [
            {"id": "scale/shop/api", "target": "deployment/shop/api", "inverse": inverse}]}]
    });
    h.sim
        .store()
        .update_status(&runs_type(), with_status)
        .expect("status written");
    let writes = h.sim.write_request_count();
    let out = h
        .ripcord(&["cleanup", "--incident", "INC-EVIL", "--yes"])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("not ripcord's: left alone"), "{stdout}");
    assert_eq!(h.sim.write_request_count(), writes, "nothing was written");
    assert_eq!(h.deployment("api")["spec"]["replicas"], 3);

    // A forged local journal entry against a Secret.
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "data": {"password": "aHVudGVyMi1zM2NyM3Q="}});
    h.sim
        .store()
        .create(&kinds::secrets(), secret)
        .expect("Secret created");
    let run_id = "r-20261125-120000-e012";
    let mut journal = Journal::create(&h.state_dir(), run_id).expect("journal");
    let target = ObjectRef {
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: Some("shop".into()),
        name: "db".into(),
    };
    let inverse = Inverse::MergePatch {
        patch: json!({"data": {"password": "b3duZWQ="}}),
        expected: json!({"data": {"password": "eA=="}}),
    };
    for record in [
        Record::RunStarted {
            run_id: run_id.into(),
            playbook: "evil".into(),
            trigger: "cli".into(),
            who: "mallory".into(),
            incident: Some("INC-LEAK".into()),
            params: Default::default(),
            plan: json!({}),
        },
        Record::MutationApplied {
            step: "s".into(),
            mutation_id: "patch/db".into(),
            applied: Applied {
                id: "patch/db".into(),
                target: target.clone(),
                resource_version_after: Some("1".into()),
            },
            resource_version_before: Some("1".into()),
            inverse,
            recovered: false,
        },
    ] {
        journal.append(record).expect("appended");
    }
    let writes = h.sim.write_request_count();
    for args in [
        vec!["cleanup", "--run", run_id, "--dry-run"],
        vec!["cleanup", "--run", run_id, "--yes"],
        vec!["verify", "--run", run_id],
        vec!["verify", "--incident", "INC-LEAK", "-o", "json"],
    ] {
        let out = h.ripcord(&args).await;
        let all = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            !all.contains("aHVudGVyMi1zM2NyM3Q="),
            "{args:?} leaked: {all}"
        );
        assert!(!all.contains("hunter2"), "{args:?} leaked: {all}");
    }
    assert_eq!(h.sim.write_request_count(), writes, "nothing was written");
    let saved = h.state_dir().join("incidents").join("INC-LEAK.verify.json");
    if let Ok(text) = std::fs::read_to_string(&saved) {
        assert!(!text.contains("aHVudGVyMi1zM2NyM3Q="), "{text}");
    }
}

const SECRET_PLAYBOOK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: secret-ping
spec:
  params:
    apiToken: {type: string, required: true}
  steps:
    - name: ping
      action: http.request
      with:
        method: POST
        url: http://127.0.0.1:9/hook
        headers:
          Authorization: Bearer $(params.apiToken)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_secret_parameters_never_reach_the_journal_or_what_reads_it() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start_calm().await;
    let playbook = h.write("secret.yaml", SECRET_PLAYBOOK);
    let token = "tok-9f8e7d6c5b4a";
    let out = h
        .ripcord(&[
            "run",
            playbook.to_str().expect("utf-8"),
            "-p",
            &format!("apiToken={token}"),
            "--yes",
            "-n",
            "shop",
        ])
        .await;
    let run_id = run_id_of(&out);
    let journal = ripcord::journal::journal_path(&h.state_dir(), &run_id);
    let text = std::fs::read_to_string(&journal).expect("journal");
    assert!(!text.contains(token), "journal: {text}");
    assert!(text.contains("<redacted>"), "{text}");
    let mode = std::fs::metadata(&journal)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(journal.parent().expect("dir"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let out = h.ripcord(&["runs", "show", &run_id, "-o", "json"]).await;
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains(&run_id), "{shown}");
    assert!(!shown.contains(token), "runs show: {shown}");
    let out = h.ripcord(&["report", &run_id]).await;
    assert!(!String::from_utf8_lossy(&out.stdout).contains(token));

    // Resuming without the secret is refused; the journal never supplies it.
    let out = h.ripcord(&["run", "--resume", &run_id, "--yes"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.code() == Some(2) {
        assert!(stderr.contains("RIPCORD_PARAM_API_TOKEN"), "{stderr}");
    }
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
