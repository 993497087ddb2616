//! The engine in process against the sim: a Prometheus stop condition that trips mid-run stops
//! the run at a safe point (with a tiny fake Prometheus that reads the sim), `onFailure: undo`
//! reverts the run's merge patches, and the `Run` mirror lands in the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::engine_support;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use engine_support::{Harness, kinds_of, records};
use ripcord::engine::{Engine, RunOptions, StepResult};
use ripcord::journal::{Outcome, Record};
use ripcord::sim::SimCluster;
use ripcord::sim::store::kinds;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A fake Prometheus: `checkout_error_ratio` is 1 once the checkout Deployment carries the
/// annotation `ripcord.dev/test-step`, 0 before.
async fn fake_prometheus(sim: Arc<SimCluster>) -> String {
    async fn query(State(sim): State<Arc<SimCluster>>) -> axum::Json<Value> {
        let tripped = sim
            .store()
            .get(&kinds::deployments(), Some("shop"), "checkout")
            .and_then(|d| {
                d.pointer("/metadata/annotations/ripcord.dev~1test-step")
                    .cloned()
            })
            .is_some();
        let value = if tripped { "1" } else { "0" };
        axum::Json(json!({
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, value]}]}
        }))
    }
    let app = Router::new()
        .route("/api/v1/query", get(query).post(query))
        .with_state(sim);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn plan(yaml: &str) -> ripcord::plan::Plan {
    let valid = ripcord::playbook::parse_str("test.yaml", yaml)
        .unwrap_or_else(|d| panic!("playbook invalid:\n{d}"));
    ripcord::plan::plan(&valid, &BTreeMap::new(), &ripcord::journal::new_run_id())
        .unwrap_or_else(|e| panic!("plan failed: {e}"))
}

fn annotations(h: &Harness) -> Value {
    h.deployment()
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(Value::Null)
}

const GUARDED: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: guarded
spec:
  guards:
    stopConditions:
      - name: error-ratio
        prometheus: {query: checkout_error_ratio, op: gt, threshold: 0.5}
        interval: 100ms
  steps:
    - name: annotate
      action: object.patch
      with:
        apiVersion: apps/v1
        kind: Deployment
        namespace: shop
        name: checkout
        patch: {metadata: {annotations: {ripcord.dev/test-step: "one"}}}
    - name: soak
      action: wait
      with: {duration: 5m}
      timeout: 10m
    - name: annotate-again
      action: object.patch
      with:
        apiVersion: apps/v1
        kind: Deployment
        namespace: shop
        name: checkout
        patch: {metadata: {annotations: {ripcord.dev/test-again: "two"}}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tripped_stop_condition_stops_the_run_and_says_why() {
    let h = Harness::demo().await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed in the sim");
    let prometheus = fake_prometheus(h.sim.clone()).await;
    let plan = plan(GUARDED);
    let run_id = plan.run_id.clone();
    let mut opts = RunOptions::new("test", h.state_dir());
    opts.prometheus_url = Some(prometheus);
    opts.namespace = Some("shop".into());
    let engine = Engine::new(h.sim.client(), reqwest::Client::new());
    let outcome = tokio::time::timeout(Duration::from_secs(60), engine.run(plan, opts, None))
        .await
        .expect("the stop condition ended the 5-minute wait")
        .expect("run completes");

    assert_eq!(outcome.outcome, Outcome::Stopped, "{outcome:?}");
    let reason = outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains("error-ratio"), "says which guard: {reason}");
    assert_eq!(outcome.steps[0].result, StepResult::Verified);
    assert_eq!(outcome.steps[2].result, StepResult::NotRun);
    assert!(
        annotations(&h).get("ripcord.dev/test-again").is_none(),
        "the step after the trip did not run"
    );
    let entries = records(&h.state_dir(), &run_id);
    let tripped = entries.iter().find_map(|e| match &e.record {
        Record::GuardTripped {
            guard, kind, value, ..
        } => Some((guard.clone(), kind.clone(), *value)),
        _ => None,
    });
    assert_eq!(
        tripped,
        Some((
            "error-ratio".to_string(),
            "stopCondition".to_string(),
            Some(1.0)
        ))
    );
    assert!(
        !kinds_of(&entries).contains(&"MirrorFailed"),
        "{:?}",
        kinds_of(&entries)
    );

    // The Run mirror shows the outcome in the cluster.
    let rt = h
        .sim
        .store()
        .resource_types()
        .into_iter()
        .find(|rt| rt.group == "ripcord.dev" && rt.plural == "runs")
        .expect("runs.ripcord.dev registered");
    let run = h
        .sim
        .store()
        .get(&rt, Some("shop"), &run_id)
        .expect("Run mirrored");
    assert_eq!(
        run.pointer("/status/outcome"),
        Some(&json!("stopped")),
        "{run}"
    );
    assert_eq!(run.pointer("/spec/playbook"), Some(&json!("guarded")));
    assert_eq!(
        run.pointer("/status/steps/0/mutations/0/target"),
        Some(&json!("deployment/shop/checkout"))
    );
}

const UNDO: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: undo-on-failure
spec:
  steps:
    - name: annotate
      action: object.patch
      with:
        apiVersion: apps/v1
        kind: Deployment
        namespace: shop
        name: checkout
        patch: {metadata: {annotations: {ripcord.dev/undo-me: "x"}}}
    - name: broken
      action: deployment.scale
      with: {namespace: shop, name: does-not-exist, replicas: 2}
      retries: {attempts: 1}
      onFailure: undo
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_undo_reverts_this_runs_merge_patches_newest_first() {
    let h = Harness::demo().await;
    let plan = plan(UNDO);
    let run_id = plan.run_id.clone();
    let mut opts = RunOptions::new("test", h.state_dir());
    opts.namespace = Some("shop".into());
    let engine = Engine::new(h.sim.client(), reqwest::Client::new());
    let outcome = engine.run(plan, opts, None).await.expect("run completes");
    assert_eq!(outcome.outcome, Outcome::Undone, "{outcome:?}");
    assert!(
        annotations(&h).get("ripcord.dev/undo-me").is_none(),
        "the annotation was reverted: {}",
        annotations(&h)
    );
    let entries = records(&h.state_dir(), &run_id);
    let undo: Vec<bool> = entries
        .iter()
        .filter_map(|e| match &e.record {
            Record::UndoApplied { ok, .. } => Some(*ok),
            _ => None,
        })
        .collect();
    assert_eq!(undo, vec![true]);
    // Without the CRD the mirror failure is journaled once and the run went on.
    assert_eq!(
        kinds_of(&entries)
            .iter()
            .filter(|k| **k == "MirrorFailed")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_diff_and_inverse_and_writes_nothing() {
    let h = Harness::demo().await;
    let plan = plan(UNDO);
    let writes = h.sim.write_request_count();
    let mut opts = RunOptions::new("test", h.state_dir());
    opts.dry_run = true;
    opts.namespace = Some("shop".into());
    let engine = Engine::new(h.sim.client(), reqwest::Client::new());
    let outcome = engine.run(plan, opts, None).await.expect("dry run");
    assert!(outcome.dry_run);
    assert_eq!(outcome.steps[0].result, StepResult::WouldApply);
    let m = &outcome.steps[0].mutations[0];
    assert!(m.diff.contains("undo-me"), "{m:?}");
    assert!(
        matches!(&m.inverse, ripcord::actions::Inverse::MergePatch { patch, .. } if patch.to_string().contains("null")),
        "{m:?}"
    );
    assert_eq!(h.sim.write_request_count(), writes);
    assert!(
        ripcord::journal::list_runs(&h.state_dir())
            .unwrap()
            .is_empty()
    );
}

// === issue 12: guards that hold across concurrent runs ===

/// The three-zones scenario (two nodes per zone, web x6 and api x3 behind PDBs), ready.
async fn three_zones() -> Arc<SimCluster> {
    let scenario = ripcord::sim::scenario::Scenario::load_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/scenarios/three-zones.yaml"),
    )
    .expect("scenario loads");
    let sim = Arc::new(
        SimCluster::start(ripcord::sim::SimOptions {
            scenario,
            addr: None,
        })
        .await
        .expect("sim starts"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = |app: &str| {
            sim.store()
                .list(&kinds::pods(), Some("shop"))
                .0
                .iter()
                .filter(|p| {
                    p.pointer("/metadata/labels/app").and_then(Value::as_str) == Some(app)
                        && p.pointer("/status/conditions")
                            .and_then(Value::as_array)
                            .is_some_and(|c| {
                                c.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                })
                .count()
        };
        if ready("web") == 6 && ready("api") == 3 {
            return sim;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "web and api never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The built-in fail-out plan for `zone`.
fn failout_plan(zone: &str, extra: &[(&str, &str)]) -> ripcord::plan::Plan {
    let valid = ripcord::playbook::load_builtin("failout-zone").expect("builtin");
    let mut params = BTreeMap::from([("zone".to_string(), zone.to_string())]);
    for (k, v) in extra {
        params.insert(k.to_string(), v.to_string());
    }
    ripcord::plan::plan(&valid, &params, &ripcord::journal::new_run_id()).expect("planned")
}

/// Names of the cordoned nodes, by zone.
fn cordoned(sim: &SimCluster) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for node in sim.store().list(&kinds::nodes(), None).0 {
        if node.pointer("/spec/unschedulable") == Some(&json!(true)) {
            let zone = node
                .pointer("/metadata/labels/topology.kubernetes.io~1zone")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            *out.entry(zone).or_default() += 1;
        }
    }
    out
}

/// Fails out the three zones at the same moment, each run with its own state dir (three
/// operators); returns the outcomes in zone order.
async fn three_failouts_at_once(
    sim: &Arc<SimCluster>,
    dir: &std::path::Path,
    wait_lock: Duration,
    extra: &[(&str, &str)],
) -> Vec<ripcord::engine::RunOutcome> {
    let runs = ["zone-a", "zone-b", "zone-c"].map(|zone| {
        let engine = Engine::new(sim.client(), reqwest::Client::new());
        let plan = failout_plan(zone, extra);
        let mut opts = RunOptions::new(format!("operator-{zone}"), dir.join(zone));
        opts.wait_lock = wait_lock;
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(120), engine.run(plan, opts, None)).await
        })
    });
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(
            run.await
                .expect("task")
                .expect("finished in time")
                .expect("run completes"),
        );
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_three_concurrent_failouts_fail_out_exactly_one_zone() {
    let sim = three_zones().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let outcomes = three_failouts_at_once(&sim, dir.path(), Duration::ZERO, &[]).await;
    let shown: Vec<(Outcome, Option<String>)> = outcomes
        .iter()
        .map(|o| (o.outcome, o.reason.clone()))
        .collect();
    let succeeded = outcomes
        .iter()
        .filter(|o| o.outcome == Outcome::Succeeded)
        .count();
    let refused: Vec<&ripcord::engine::RunOutcome> = outcomes
        .iter()
        .filter(|o| o.outcome == Outcome::Refused)
        .collect();
    assert_eq!(succeeded, 1, "{shown:#?}");
    assert_eq!(refused.len(), 2, "{shown:#?}");
    for r in &refused {
        assert_eq!(r.mutations_applied, 0, "refused before any write: {r:?}");
    }
    let out = cordoned(&sim);
    assert_eq!(out.values().sum::<usize>(), 2, "one zone cordoned: {out:?}");
    assert_eq!(out.len(), 1, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_concurrent_failouts_that_wait_for_the_lock_are_refused_by_the_guards() {
    let sim = three_zones().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Waiting for the fleet lock, each later run checks the guards again under it and sees
    // the cordons of the first: the cumulative blast-radius budget (50%) refuses it.
    let outcomes = three_failouts_at_once(&sim, dir.path(), Duration::from_secs(60), &[]).await;
    let shown: Vec<(Outcome, Option<String>)> = outcomes
        .iter()
        .map(|o| (o.outcome, o.reason.clone()))
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.outcome == Outcome::Succeeded)
            .count(),
        1,
        "{shown:#?}"
    );
    for o in outcomes.iter().filter(|o| o.outcome != Outcome::Succeeded) {
        assert_eq!(o.outcome, Outcome::Refused, "{shown:#?}");
        let reason = o.reason.clone().unwrap_or_default();
        assert!(
            reason.contains("maxPercent=50") && reason.contains("already cordoned"),
            "the cumulative budget refused it: {reason}"
        );
    }
    assert_eq!(
        cordoned(&sim).values().sum::<usize>(),
        2,
        "{:?}",
        cordoned(&sim)
    );

    // With the budget overridden, the last healthy zone still stands: never all three.
    let outcomes = three_failouts_at_once(
        &sim,
        &dir.path().join("override"),
        Duration::from_secs(60),
        &[("overrideBlastRadius", "true")],
    )
    .await;
    let shown: Vec<(Outcome, Option<String>)> = outcomes
        .iter()
        .map(|o| (o.outcome, o.reason.clone()))
        .collect();
    let out = cordoned(&sim);
    assert!(out.len() <= 2, "a healthy zone remains: {out:?} {shown:#?}");
    assert!(
        shown.iter().any(|(o, r)| *o == Outcome::Refused
            && r.as_deref().is_some_and(
                |r| r.contains("last healthy zone") || r.contains("lack the capacity")
            )),
        "{shown:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_blast_radius_counts_a_zone_failed_out_earlier() {
    let sim = three_zones().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(sim.client(), reqwest::Client::new());
    let first = engine
        .run(
            failout_plan("zone-b", &[]),
            RunOptions::new("test", dir.path()),
            None,
        )
        .await
        .expect("run completes");
    assert_eq!(first.outcome, Outcome::Succeeded, "{first:?}");
    let second = engine
        .run(
            failout_plan("zone-a", &[]),
            RunOptions::new("test", dir.path()),
            None,
        )
        .await
        .expect("run completes");
    assert_eq!(second.outcome, Outcome::Refused, "{second:?}");
    let reason = second.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("4 of 6 nodes") && reason.contains("zone-b: 2"),
        "counts zone-b as out: {reason}"
    );
    assert_eq!(
        cordoned(&sim),
        BTreeMap::from([("zone-b".to_string(), 2)]),
        "zone-a untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_a_fleet_lock_left_by_a_killed_run_refuses_then_wait_lock_waits_it_out() {
    use k8s_openapi::api::coordination::v1::Lease;
    let sim = three_zones().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The Lease of a run that was SIGKILLed while it held the fleet lock: nobody renews it.
    let dead = "r-20261202-000000-dead0000beef";
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": ripcord::k8s::leases::lease_name("fleet"), "namespace": "default"},
        "spec": {"holderIdentity": dead, "leaseDurationSeconds": 4,
                 "acquireTime": now, "renewTime": now}
    }))
    .expect("lease");
    kube::Api::<Lease>::namespaced(sim.client(), "default")
        .create(&kube::api::PostParams::default(), &lease)
        .await
        .expect("lease created");
    let engine = Engine::new(sim.client(), reqwest::Client::new());

    let refused = engine
        .run(
            failout_plan("zone-a", &[]),
            RunOptions::new("test", dir.path()),
            None,
        )
        .await
        .expect("run completes");
    assert_eq!(refused.outcome, Outcome::Refused, "{refused:?}");
    let reason = refused.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(dead) && reason.contains("expires in") && reason.contains("--wait-lock"),
        "names the holder, the time left and the way out: {reason}"
    );
    assert!(cordoned(&sim).is_empty());

    let mut opts = RunOptions::new("test", dir.path());
    opts.wait_lock = Duration::from_secs(60);
    let waited = engine
        .run(failout_plan("zone-a", &[]), opts, None)
        .await
        .expect("run completes");
    assert_eq!(waited.outcome, Outcome::Succeeded, "{waited:?}");
    assert_eq!(cordoned(&sim), BTreeMap::from([("zone-a".to_string(), 2)]));
    // Released at the end: the next run does not wait.
    let lease = kube::Api::<Lease>::namespaced(sim.client(), "default")
        .get_opt(&ripcord::k8s::leases::lease_name("fleet"))
        .await
        .expect("get");
    assert!(lease.is_none(), "the fleet lock was released: {lease:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_verify_cluster_reports_a_fleet_left_in_one_zone() {
    use ripcord::cleanup::{Selection, verify};
    let sim = three_zones().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(sim.client(), reqwest::Client::new());
    let objects = ripcord::k8s::objects::Objects::new(sim.client(), Duration::from_secs(5));
    let clean = verify::verify(&objects, &Selection::All, &[])
        .await
        .expect("verify");
    assert!(clean.clean, "{:?}", clean.findings);
    // zone-b, then zone-a (over the budget, on purpose): every pod moves to zone-c.
    for zone in ["zone-b", "zone-a"] {
        let outcome = engine
            .run(
                failout_plan(zone, &[("overrideBlastRadius", "true")]),
                RunOptions::new("test", dir.path()),
                None,
            )
            .await
            .expect("run completes");
        assert_eq!(outcome.outcome, Outcome::Succeeded, "{outcome:?}");
    }
    // Both zones back in service (uncordoned, ripcord's marks gone), the pods still in zone-c.
    let nodes = kube::Api::<k8s_openapi::api::core::v1::Node>::all(sim.client());
    for node in sim.store().list(&kinds::nodes(), None).0 {
        let name = node["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut marks = serde_json::Map::new();
        for section in ["labels", "annotations"] {
            let keys: serde_json::Map<String, Value> = node["metadata"][section]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.starts_with("ripcord.dev/"))
                .map(|(k, _)| (k.clone(), Value::Null))
                .collect();
            marks.insert(section.to_string(), Value::Object(keys));
        }
        let patch = json!({"metadata": marks, "spec": {"unschedulable": null}});
        nodes
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("uncordoned");
    }
    assert!(cordoned(&sim).is_empty());
    let report = verify::verify(&objects, &Selection::All, &[])
        .await
        .expect("verify");
    let lopsided: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.kind == "lopsided-workload")
        .map(|f| f.object.as_str())
        .collect();
    assert!(!report.clean, "not CLEAN: {:?}", report.findings);
    assert!(
        lopsided.contains(&"deployment/shop/web"),
        "{:?}",
        report.findings
    );
}

/// Issue 12: `run --resume` of a run that already succeeded exited 1 ("cannot be resumed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_resuming_a_run_that_succeeded_exits_0_and_says_so() {
    let h = Harness::demo().await;
    let playbook = h.dir.path().join("annotate.yaml");
    std::fs::write(
        &playbook,
        r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: annotate
spec:
  steps:
    - name: annotate
      action: object.patch
      with:
        apiVersion: apps/v1
        kind: Deployment
        namespace: shop
        name: checkout
        patch: {metadata: {annotations: {ripcord.dev/resume-test: "x"}}}
"#,
    )
    .expect("playbook written");
    let out = h
        .ripcord(
            &[
                "run",
                playbook.to_str().expect("utf-8"),
                "--yes",
                "-n",
                "shop",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0));
    let run_id = engine_support::run_id_from(&out);
    let writes = h.sim.write_request_count();
    let out = h.ripcord(&["run", "--resume", &run_id], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "a finished success is not an error"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&run_id) && stdout.contains("already succeeded"),
        "{stdout}"
    );
    assert_eq!(h.sim.write_request_count(), writes, "nothing written");
    let out = h
        .ripcord(&["run", "--resume", &run_id, "-o", "json"], &[])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(json["outcome"], "succeeded", "{json}");
}

/// Issue 18: an engine learns once that the `Run` CRD is not served: its first run's mirror
/// create answers 404, later runs make no mirror request at all (each still journals the
/// mirror failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_an_engine_posts_the_run_mirror_once_when_the_crd_is_absent() {
    let h = Harness::demo().await;
    let engine = Engine::new(h.sim.client(), reqwest::Client::new());
    for _ in 0..2 {
        let plan = plan(UNDO);
        let run_id = plan.run_id.clone();
        let mut opts = RunOptions::new("test", h.state_dir());
        opts.namespace = Some("shop".into());
        engine.run(plan, opts, None).await.expect("run completes");
        let entries = records(&h.state_dir(), &run_id);
        assert_eq!(
            kinds_of(&entries)
                .iter()
                .filter(|k| **k == "MirrorFailed")
                .count(),
            1,
            "the missing CRD is journaled in every run"
        );
    }
    let posts = h
        .sim
        .request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/runs"))
        .count();
    assert_eq!(posts, 1, "one create found the CRD missing");
}
