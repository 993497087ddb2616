//! The engine in process against the sim: a Prometheus stop condition that trips mid-run stops
//! the run at a safe point (with a tiny fake Prometheus that reads the sim), `onFailure: undo`
//! reverts the run's merge patches, and the `Run` mirror lands in the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod engine_support;

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
