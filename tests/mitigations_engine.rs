//! The built-in fail-out / fail-back / rolling-restart playbooks run through the engine
//! against the simulated cluster (issue 5): journaled, verified, idempotent on a second run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod mitigations_support;

use mitigations_support::*;
use ripcord::actions::node_cordon::CORDONED_BY_LABEL;
use ripcord::engine::{Engine, RunOptions};
use ripcord::journal::Outcome;
use ripcord::sim::SimCluster;
use ripcord::sim::store::kinds;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

async fn run_builtin(
    sim: &SimCluster,
    state: &std::path::Path,
    name: &str,
    params: &[(&str, &str)],
) -> ripcord::engine::RunOutcome {
    let valid = ripcord::playbook::load_builtin(name)
        .unwrap_or_else(|d| panic!("built-in {name} invalid:\n{d}"));
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let plan = ripcord::plan::plan(&valid, &params, &ripcord::journal::new_run_id())
        .unwrap_or_else(|e| panic!("plan failed: {e}"));
    let mut opts = RunOptions::new("test", state);
    opts.namespace = Some("shop".into());
    let engine = Engine::new(sim.client(), reqwest::Client::new());
    tokio::time::timeout(Duration::from_secs(120), engine.run(plan, opts, None))
        .await
        .expect("the run ends in time")
        .expect("the run completes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_builtin_failout_and_failback_through_the_engine() {
    let sim = start_file("three-zones.yaml").await;
    wait_until("web and api ready", || {
        all_ready(&sim, "shop", "web", 6) && all_ready(&sim, "shop", "api", 3)
    })
    .await;
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed in the sim");
    let state = tempfile::tempdir().expect("tempdir");

    let out = run_builtin(&sim, state.path(), "failout-zone", &[("zone", "zone-a")]).await;
    assert_eq!(out.outcome, Outcome::Succeeded, "{out:?}");
    assert!(out.mutations_applied >= 3, "{out:?}");
    for node in zone_nodes(&sim, "zone-a") {
        assert_eq!(node["spec"]["unschedulable"], json!(true));
        assert_eq!(
            node["metadata"]["labels"][CORDONED_BY_LABEL],
            json!(out.run_id)
        );
    }
    assert!(all_ready(&sim, "shop", "web", 6) && all_ready(&sim, "shop", "api", 3));
    assert!(sim.invariants().violations().is_empty());

    // The same fail-out again: nothing to do.
    let again = run_builtin(&sim, state.path(), "failout-zone", &[("zone", "zone-a")]).await;
    assert_eq!(again.outcome, Outcome::Succeeded, "{again:?}");
    assert_eq!(again.mutations_applied, 0, "{again:?}");

    let back = run_builtin(
        &sim,
        state.path(),
        "failback-zone",
        &[("zone", "zone-a"), ("rampPause", "10ms")],
    )
    .await;
    assert_eq!(back.outcome, Outcome::Succeeded, "{back:?}");
    assert_eq!(back.mutations_applied, 2, "{back:?}");
    for node in list(&sim, &kinds::nodes()) {
        assert!(node["spec"].get("unschedulable").is_none(), "{node}");
        assert!(node["metadata"]["labels"].get(CORDONED_BY_LABEL).is_none());
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_builtin_rolling_restart_through_the_engine() {
    let sim = start_file("restart-12.yaml").await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 12)).await;
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed in the sim");
    let state = tempfile::tempdir().expect("tempdir");
    let before: Vec<String> = app_pods(&sim, "shop", "frontend")
        .iter()
        .filter_map(|p| str_at(p, "/metadata/name").map(str::to_string))
        .collect();

    let out = run_builtin(
        &sim,
        state.path(),
        "rolling-restart",
        &[
            ("namespace", "shop"),
            ("name", "frontend"),
            ("batch", "25%"),
            ("warmup", "10ms"),
        ],
    )
    .await;
    assert_eq!(out.outcome, Outcome::Succeeded, "{out:?}");
    // The marker plus one eviction per pod.
    assert_eq!(out.mutations_applied, 13, "{out:?}");
    wait_until("frontend ready again", || {
        all_ready(&sim, "shop", "frontend", 12)
    })
    .await;
    let after = app_pods(&sim, "shop", "frontend");
    assert!(
        after
            .iter()
            .filter_map(|p| str_at(p, "/metadata/name"))
            .all(|n| !before.iter().any(|b| b == n)),
        "an old pod survived"
    );
    assert!(sim.invariants().max_unready("shop", "frontend") <= 3);
    sim.shutdown().await;
}
