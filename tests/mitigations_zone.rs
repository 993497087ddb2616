//! Zone fail-out and fail-back against the simulated cluster (issue 5): the three-zone scenario
//! with PodDisruptionBudgets, the ramp back, and the guards' refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod mitigations_support;

use mitigations_support::*;
use ripcord::actions::node_cordon::CORDONED_BY_LABEL;
use ripcord::actions::zone_failout::WEIGHT_BEFORE_PREFIX;
use ripcord::actions::{self, ActionError};
use ripcord::playbook::catalog;
use ripcord::sim::store::kinds;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const RUN: &str = "r-20261125-120000-test";

fn action(value: Value) -> Box<dyn actions::Action> {
    let parsed: catalog::Action = serde_json::from_value(value).expect("catalog action parses");
    actions::build(&parsed).expect("action builds")
}

/// A scenario of three zones of one node each (namespace `shop`, pods Ready 3 simulated
/// seconds after start, time factor 20), followed by `rest` (workloads, PDBs).
fn one_node_zones(name: &str, rest: &str) -> String {
    format!(
        "name: {name}\nsettings:\n  timeFactor: 20\n  podReadyDelaySeconds: 3\nzones:\n  - \
         {{name: zone-a, nodes: 1}}\n  - {{name: zone-b, nodes: 1}}\n  - {{name: zone-c, nodes: \
         1}}\nnamespaces: [shop]\n{rest}"
    )
}

fn route_weights(sim: &ripcord::sim::SimCluster) -> BTreeMap<String, u64> {
    let route = sim
        .store()
        .get(&kinds::http_routes(), Some("shop"), "web")
        .expect("route exists");
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or_default().to_string(),
                b["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn cleaned(node: &Value) -> Value {
    json!({
        "name": node["metadata"]["name"],
        "labels": node["metadata"]["labels"],
        "annotations": node["metadata"].get("annotations").cloned().unwrap_or(json!({})),
        "unschedulable": node["spec"].get("unschedulable").cloned().unwrap_or(json!(false)),
    })
}

async fn ready_three_zones() -> ripcord::sim::SimCluster {
    let sim = start_file("three-zones.yaml").await;
    wait_until("web and api ready", || {
        all_ready(&sim, "shop", "web", 6) && all_ready(&sim, "shop", "api", 3)
    })
    .await;
    sim
}

#[tokio::test]
async fn issue5_failout_zone_a_then_fail_back_with_a_ramp() {
    let sim = ready_three_zones().await;
    let nodes_before: Vec<Value> = list(&sim, &kinds::nodes()).iter().map(cleaned).collect();
    let weights_before = route_weights(&sim);

    // Fail out zone-a.
    let failout = action(json!({"action": "zone.failout", "with": {
        "zone": "zone-a",
        "traffic": {"httpRoute": {"namespace": "shop", "name": "web", "backend": "web-zone-a"}},
        "drainConcurrency": 10
    }}));
    let ctx = context(&sim, RUN, "failout");
    let driven = drive(failout.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("fail-out succeeds");
    let phases: Vec<&str> = driven
        .rounds
        .iter()
        .map(|ids| ids[0].split('/').next().unwrap_or_default())
        .collect();
    assert_eq!(
        &phases[..2],
        ["cordon", "traffic"],
        "rounds: {:?}",
        driven.rounds
    );
    assert!(
        phases[2..].iter().all(|p| *p == "evict"),
        "rounds: {:?}",
        driven.rounds
    );
    assert!(
        phases.len() >= 3,
        "nothing was evicted: {:?}",
        driven.rounds
    );

    let zone_a = zone_nodes(&sim, "zone-a");
    assert_eq!(zone_a.len(), 2);
    for node in &zone_a {
        assert_eq!(node["spec"]["unschedulable"], json!(true), "{node}");
        assert_eq!(
            node["metadata"]["labels"][CORDONED_BY_LABEL],
            json!(RUN),
            "node not marked: {node}"
        );
        assert_eq!(
            node["metadata"]["annotations"]["ripcord.dev/cordoned-step"],
            json!("failout")
        );
    }
    let zone_a_names: Vec<&str> = zone_a
        .iter()
        .filter_map(|n| str_at(n, "/metadata/name"))
        .collect();
    for pod in list(&sim, &kinds::pods()) {
        let node = str_at(&pod, "/spec/nodeName").unwrap_or_default();
        let daemon = str_at(&pod, "/metadata/ownerReferences/0/kind") == Some("DaemonSet");
        assert!(
            daemon || !zone_a_names.contains(&node),
            "pod {} still on {node}",
            str_at(&pod, "/metadata/name").unwrap_or_default()
        );
    }
    assert!(
        all_ready(&sim, "shop", "web", 6),
        "web not fully ready elsewhere"
    );
    assert!(
        all_ready(&sim, "shop", "api", 3),
        "api not fully ready elsewhere"
    );
    let weights = route_weights(&sim);
    assert_eq!(weights["web-zone-a"], 0);
    assert_eq!(weights["web-zone-b"], 100);
    let route = sim
        .store()
        .get(&kinds::http_routes(), Some("shop"), "web")
        .expect("route exists");
    assert_eq!(
        route["metadata"]["annotations"][format!("{WEIGHT_BEFORE_PREFIX}web-zone-a")],
        json!("100")
    );
    assert!(
        sim.invariants().violations().is_empty(),
        "invariant violations: {:?}",
        sim.invariants().violations()
    );

    // Idempotent: the same step again changes nothing.
    let writes = sim.write_request_count();
    let again = failout.diff(&ctx).await.expect("diff");
    assert!(again.is_satisfied(), "{:?}", again.mutations);
    assert!(again.summary.contains("failed out"), "{}", again.summary);
    assert_eq!(sim.write_request_count(), writes);

    // Fail back with a ramp; record the weight after every ramp step.
    let failback = action(json!({"action": "zone.failback", "with": {
        "zone": "zone-a",
        "traffic": {"httpRoute": {"namespace": "shop", "name": "web", "backend": "web-zone-a"}},
        "ramp": [10, 25, 50, 100],
        "rampPause": "50ms"
    }}));
    let ctx = context(&sim, "r-20261125-130000-back", "failback");
    let mut seen = Vec::new();
    let driven = drive(failback.as_ref(), &ctx, Vec::new(), None, |id| {
        if id.starts_with("ramp-") {
            seen.push((id.to_string(), route_weights(&sim)["web-zone-a"]));
        }
    })
    .await
    .expect("fail-back succeeds");
    assert!(
        driven.rounds[0]
            .iter()
            .all(|id| id.starts_with("uncordon/"))
    );
    assert_eq!(driven.rounds[0].len(), 2);
    assert_eq!(
        seen,
        [
            ("ramp-10".to_string(), 10),
            ("ramp-25".to_string(), 25),
            ("ramp-50".to_string(), 50),
            ("ramp-100".to_string(), 100)
        ]
    );
    // One ramp step per round: never all at once.
    assert!(driven.rounds[1..].iter().all(|ids| ids.len() == 1));

    // Back to the pre-failout state, apart from pod placement.
    let nodes_after: Vec<Value> = list(&sim, &kinds::nodes()).iter().map(cleaned).collect();
    assert_eq!(nodes_after, nodes_before);
    assert_eq!(route_weights(&sim), weights_before);
    let route = sim
        .store()
        .get(&kinds::http_routes(), Some("shop"), "web")
        .expect("route exists");
    let annotations = route["metadata"]
        .get("annotations")
        .cloned()
        .unwrap_or(json!({}));
    assert!(
        annotations
            .as_object()
            .is_none_or(|a| a.keys().all(|k| !k.starts_with("ripcord.dev/"))),
        "{annotations}"
    );
    assert!(sim.invariants().violations().is_empty());
    sim.shutdown().await;
}

async fn expect_refusal(
    sim: &ripcord::sim::SimCluster,
    with: Value,
    must_contain: &[&str],
) -> String {
    let failout = action(json!({"action": "zone.failout", "with": with}));
    let ctx = context(sim, RUN, "failout");
    let writes = sim.write_request_count();
    let err = match drive(failout.as_ref(), &ctx, Vec::new(), None, |_| {}).await {
        Err(err) => err,
        Ok(driven) => panic!("not refused: {driven:?}"),
    };
    assert_eq!(err.category(), "refused", "{err}");
    let ActionError::Refused { reason } = &err else {
        panic!("not a refusal: {err}");
    };
    for needle in must_contain {
        assert!(reason.contains(needle), "{needle:?} missing from: {reason}");
    }
    assert_eq!(
        sim.write_request_count(),
        writes,
        "a refused fail-out wrote something"
    );
    for node in zone_nodes(sim, "zone-a") {
        assert!(node["metadata"]["labels"].get(CORDONED_BY_LABEL).is_none());
    }
    reason.clone()
}

#[tokio::test]
async fn issue5_failout_refuses_the_last_healthy_zone() {
    let sim = ready_three_zones().await;
    // Zones b and c are already out (cordoned by someone).
    let cordon = action(json!({"action": "node.cordon", "with": {
        "selector": "topology.kubernetes.io/zone in (zone-b, zone-c)"
    }}));
    let ctx = context(&sim, "r-other", "cordon");
    let driven = drive(cordon.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("cordon works");
    assert_eq!(driven.applied.len(), 4);
    expect_refusal(
        &sim,
        json!({"zone": "zone-a", "overrideBlastRadius": true}),
        &["last healthy zone", "cannot be overridden", "failback"],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn issue5_failout_refuses_over_the_blast_radius_budget() {
    let sim = ready_three_zones().await;
    expect_refusal(
        &sim,
        json!({"zone": "zone-a", "maxNodes": 1}),
        &["blast-radius", "maxNodes=1", "overrideBlastRadius: true"],
    )
    .await;
    expect_refusal(
        &sim,
        json!({"zone": "zone-a", "maxPercent": 20}),
        &["2 of 6 nodes", "maxPercent=20", "overrideBlastRadius: true"],
    )
    .await;
    // With the override, the same budget lets the fail-out start (the cordon phase).
    let failout = action(json!({"action": "zone.failout", "with":
        {"zone": "zone-a", "maxNodes": 1, "overrideBlastRadius": true}}));
    let diff = failout
        .diff(&context(&sim, RUN, "failout"))
        .await
        .expect("overridden");
    assert_eq!(diff.mutations.len(), 2);
    sim.shutdown().await;
}

const TIGHT: &str = r#"
name: tight-capacity
settings:
  timeFactor: 20
  podReadyDelaySeconds: 2
zones:
  - {name: zone-a, nodes: 1, cpu: "1", memory: 4Gi}
  - {name: zone-b, nodes: 1, cpu: "1", memory: 4Gi}
  - {name: zone-c, nodes: 1, cpu: "1", memory: 4Gi}
namespaces: [shop]
deployments:
  - namespace: shop
    name: big
    replicas: 3
    cpuRequest: 600m
    memoryRequest: 256Mi
    releases:
      - image: registry.local/big:1.0.0
"#;

#[tokio::test]
async fn issue5_failout_refuses_without_capacity_elsewhere() {
    let sim = start_yaml(TIGHT).await;
    wait_until("big ready", || all_ready(&sim, "shop", "big", 3)).await;
    expect_refusal(
        &sim,
        json!({"zone": "zone-a"}),
        &[
            "lack the capacity",
            "600m CPU",
            "would fit on no node",
            "add nodes",
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn issue5_uncordon_leaves_nodes_of_others_alone() {
    let sim = ready_three_zones().await;
    let by_other = action(json!({"action": "node.cordon", "with": {"names": ["zone-b-node-1"]}}));
    drive(
        by_other.as_ref(),
        &context(&sim, "r-other", "c"),
        Vec::new(),
        None,
        |_| {},
    )
    .await
    .expect("cordon");
    let ours = action(json!({"action": "node.cordon", "with": {"names": ["zone-c-node-1"]}}));
    let ctx = context(&sim, RUN, "c");
    drive(ours.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("cordon");
    // Cordoning again is a no-op.
    assert!(ours.diff(&ctx).await.expect("diff").is_satisfied());

    let uncordon = action(json!({"action": "node.uncordon", "with": {
        "selector": "kubernetes.io/os=linux"
    }}));
    let driven = drive(uncordon.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("uncordon");
    assert_eq!(driven.applied.len(), 1, "{:?}", driven.rounds);
    assert!(
        driven.last_summary.contains("zone-b-node-1"),
        "{}",
        driven.last_summary
    );
    let node = |name: &str| {
        sim.store()
            .get(&kinds::nodes(), None, name)
            .expect("node exists")
    };
    assert_eq!(node("zone-c-node-1")["spec"].get("unschedulable"), None);
    assert_eq!(node("zone-b-node-1")["spec"]["unschedulable"], json!(true));
    sim.shutdown().await;
}

/// A traffic-manager webhook and a fake Prometheus on one local port. The webhook records
/// every `{"zone", "weight"}` it receives; `error_ratio` reads 0.9 once the zone has been sent
/// 50% or more (and `healed` is false), 0.1 otherwise.
struct TrafficManager {
    base: String,
    weights: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    healed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

async fn traffic_manager() -> TrafficManager {
    use axum::routing::{get, post};
    use std::sync::atomic::Ordering;
    let weights: std::sync::Arc<std::sync::Mutex<Vec<u64>>> = Default::default();
    let healed: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
    let (w1, w2, h2) = (weights.clone(), weights.clone(), healed.clone());
    let app = axum::Router::new()
        .route(
            "/hook",
            post(move |axum::Json(body): axum::Json<Value>| {
                let w1 = w1.clone();
                async move {
                    assert_eq!(body["zone"], json!("zone-a"));
                    if let Ok(mut w) = w1.lock() {
                        w.push(body["weight"].as_u64().unwrap_or(999));
                    }
                    "ok"
                }
            }),
        )
        .route(
            "/api/v1/query",
            get(move || {
                let (w2, h2) = (w2.clone(), h2.clone());
                async move {
                    let high = w2
                        .lock()
                        .map(|w| w.last().is_some_and(|v| *v >= 50))
                        .unwrap_or(false);
                    let value = if high && !h2.load(Ordering::SeqCst) {
                        "0.9"
                    } else {
                        "0.1"
                    };
                    axum::Json(json!({"status": "success", "data": {"resultType": "vector",
                        "result": [{"metric": {}, "value": [1.0, value]}]}}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TrafficManager {
        base: format!("http://{addr}"),
        weights,
        healed,
    }
}

#[tokio::test]
async fn issue5_webhook_traffic_and_a_failing_health_gate_holds_the_ramp() {
    use ripcord::actions::zone_failout::TRAFFIC_PERCENT_ANNOTATION;
    let sim = ready_three_zones().await;
    let tm = traffic_manager().await;
    let hook = format!("{}/hook?token=secret", tm.base);
    let weights = || tm.weights.lock().map(|w| w.clone()).unwrap_or_default();
    let percent = |sim: &ripcord::sim::SimCluster| -> Vec<Option<String>> {
        zone_nodes(sim, "zone-a")
            .iter()
            .map(|n| {
                n["metadata"]["annotations"][TRAFFIC_PERCENT_ANNOTATION]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };

    let failout = action(json!({"action": "zone.failout", "with": {
        "zone": "zone-a", "traffic": {"webhook": hook}
    }}));
    let ctx = context(&sim, RUN, "failout");
    let driven = drive(failout.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("fail-out succeeds");
    assert_eq!(driven.rounds[1], ["traffic/webhook"]);
    assert_eq!(weights(), [0]);
    assert_eq!(
        percent(&sim),
        [Some("0".to_string()), Some("0".to_string())]
    );
    // Journaled mutations never carry the webhook's query string (it may hold a token).
    let diff_text = format!("{:?}", driven);
    assert!(!diff_text.contains("token=secret"));

    let failback_args = json!({"action": "zone.failback", "with": {
        "zone": "zone-a", "traffic": {"webhook": hook}, "ramp": [10, 50, 100],
        "rampPause": "10ms",
        "healthGate": {"query": "error_ratio", "op": "lt", "threshold": 0.5}
    }});
    let mut ctx = context(&sim, "r-20261125-130000-back", "failback");
    ctx.prometheus_url = Some(tm.base.clone());
    let failback = action(failback_args.clone());
    let err = match drive(failback.as_ref(), &ctx, Vec::new(), None, |_| {}).await {
        Err(err) => err,
        Ok(driven) => panic!("the gate did not hold the ramp: {driven:?}"),
    };
    assert_eq!(err.category(), "gate-failed", "{err}");
    assert!(err.to_string().contains("stays at 50%"), "{err}");
    assert_eq!(weights(), [0, 10, 50]);
    assert_eq!(
        percent(&sim),
        [Some("50".to_string()), Some("50".to_string())]
    );

    // Healthy again: a new process of the same run continues with the remaining step only.
    tm.healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let failback = action(failback_args);
    let driven = drive(failback.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("the ramp finishes");
    assert_eq!(driven.rounds, [["ramp-100/webhook"]]);
    assert_eq!(weights(), [0, 10, 50, 100]);
    assert_eq!(percent(&sim), [None, None]);
    sim.shutdown().await;
}

#[tokio::test]
async fn issue5_failout_guards_stand_when_someone_else_cordoned_the_zone() {
    let sim = ready_three_zones().await;
    let cordon = action(json!({"action": "node.cordon", "with": {
        "selector": "topology.kubernetes.io/zone=zone-a"
    }}));
    drive(
        cordon.as_ref(),
        &context(&sim, "r-other", "cordon"),
        Vec::new(),
        None,
        |_| {},
    )
    .await
    .expect("cordon works");
    // Nothing left to cordon for this run, but the drain is still over the budget.
    let failout =
        action(json!({"action": "zone.failout", "with": {"zone": "zone-a", "maxNodes": 1}}));
    let writes = sim.write_request_count();
    let err = match failout.diff(&context(&sim, RUN, "failout")).await {
        Err(err) => err,
        Ok(diff) => panic!("not refused: {:?}", diff.summary),
    };
    assert_eq!(err.category(), "refused", "{err}");
    assert!(err.to_string().contains("maxNodes=1"), "{err}");
    assert_eq!(sim.write_request_count(), writes);
    sim.shutdown().await;
}

/// The engine's journal of `run_id` under `state` (empty until it exists).
fn journal_of(state: &std::path::Path, run_id: &str) -> Vec<ripcord::journal::Entry> {
    ripcord::journal::read(&ripcord::journal::journal_path(state, run_id))
        .map(|(entries, _)| entries)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_cancelling_a_drain_blocked_by_a_pdb_ends_interrupted() {
    use ripcord::engine::{Engine, RunOptions, StopHandle, StopReason};
    use ripcord::journal::{Outcome, Record};
    // No disruption allowed at all: every eviction is refused with 429 and retried.
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/scenarios/three-zones.yaml"),
    )
    .expect("scenario")
    .replace("minAvailable: 4", "minAvailable: 6")
    .replace("maxUnavailable: 1}", "maxUnavailable: 0}");
    let sim = start_yaml(&yaml).await;
    wait_until("web and api ready", || {
        all_ready(&sim, "shop", "web", 6) && all_ready(&sim, "shop", "api", 3)
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let valid = ripcord::playbook::parse::load_builtin("failout-zone").expect("builtin");
    let params = BTreeMap::from([("zone".to_string(), "zone-a".to_string())]);
    let plan = ripcord::plan::plan(&valid, &params, &ripcord::journal::new_run_id()).expect("plan");
    let run_id = plan.run_id.clone();
    let stop = StopHandle::new();
    let mut opts = RunOptions::new("test", dir.path());
    opts.namespace = Some("shop".into());
    opts.stop = Some(stop.clone());
    let engine = Engine::new(sim.client(), reqwest::Client::new());
    let run = tokio::spawn(async move { engine.run(plan, opts, None).await });

    let state = dir.path().to_path_buf();
    wait_until("an eviction under way", || {
        journal_of(&state, &run_id).iter().any(|e| {
            matches!(&e.record, Record::MutationIntended { mutation, .. }
                if mutation.id.starts_with("evict/"))
        })
    })
    .await;
    // The eviction is being refused by the PodDisruptionBudget and retried.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let asked = std::time::Instant::now();
    stop.stop(StopReason::Interrupted {
        by: "Ctrl-C".into(),
    });
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .expect("the run stopped (it used to fail when the eviction gave up)")
        .expect("task")
        .expect("run");
    eprintln!(
        "blocked drain: the run ended {:?} after the stop",
        asked.elapsed()
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(outcome.outcome, Outcome::Interrupted, "{outcome:?}");
    assert!(
        !journal_of(&state, &outcome.run_id)
            .iter()
            .any(|e| matches!(e.record, Record::StepFailed { .. })),
        "no step failed"
    );
    sim.shutdown().await;
}

/// The `ripcord` binary against `sim` (kubeconfig and state under `dir`); its output.
async fn ripcord_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
            .args(args)
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("RIPCORD_STATE_DIR", dir.join("state"))
            .env("RIPCORD_CONFIG", "/dev/null")
            .env("RIPCORD_WHO", "test")
            .env_remove("RIPCORD_NAMESPACE")
            .env_remove("RIPCORD_CONTEXT")
            .env_remove(ripcord::engine::CRASH_HOOK_ENV)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("ripcord finished within 180 s")
    .expect("ripcord runs");
    eprintln!(
        "ripcord {args:?} -> {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn route_annotation(sim: &ripcord::sim::SimCluster, key: &str) -> Option<String> {
    let route = sim
        .store()
        .get(&kinds::http_routes(), Some("shop"), "web")
        .expect("route exists");
    route["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// How many PATCHes of the route shop/web the sim saw since request `from`.
fn route_patches(sim: &ripcord::sim::SimCluster, from: usize) -> usize {
    sim.request_log()
        .iter()
        .skip(from)
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/httproutes/web"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_failback_without_route_ramps_back_what_the_failout_recorded() {
    let sim = ready_three_zones().await;
    let dir = tempfile::tempdir().expect("tempdir");
    sim.write_kubeconfig(&dir.path().join("kubeconfig"))
        .expect("kubeconfig");
    let out = ripcord_cli(
        dir.path(),
        &[
            "failout",
            "zone/zone-a",
            "--route",
            "shop/web",
            "--backend",
            "web-zone-a",
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(route_weights(&sim)["web-zone-a"], 0);
    let marker = "ripcord.dev/failed-out.zone-a";
    assert_eq!(
        route_annotation(&sim, marker).as_deref(),
        Some("web-zone-a")
    );

    // A fail-out that recorded nothing (an older ripcord): the fail-back refuses, writes
    // nothing and asks for --route.
    let unmark = |value: Option<&str>| {
        let rt = kinds::http_routes();
        let mut route = sim.store().get(&rt, Some("shop"), "web").expect("route");
        match value {
            Some(v) => route["metadata"]["annotations"][marker] = json!(v),
            None => {
                if let Some(a) = route["metadata"]["annotations"].as_object_mut() {
                    a.remove(marker);
                }
            }
        }
        sim.store().update(&rt, route).expect("route updated");
    };
    unmark(None);
    let writes = sim.write_request_count();
    let out = ripcord_cli(
        dir.path(),
        &["failback", "zone/zone-a", "--ramp-pause", "100ms", "--yes"],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        format!("{stdout}{stderr}").contains("--route"),
        "says what to do: {stdout}{stderr}"
    );
    assert!(
        zone_nodes(&sim, "zone-a")
            .iter()
            .all(|n| n["spec"]["unschedulable"] == json!(true)),
        "nothing uncordoned"
    );
    assert_eq!(route_weights(&sim)["web-zone-a"], 0);
    assert_eq!(
        sim.write_request_count(),
        writes,
        "the refusal wrote nothing"
    );

    // With the fail-out's record: found, ramped back in the steps asked for.
    unmark(Some("web-zone-a"));
    let from = sim.request_log().len();
    let out = ripcord_cli(
        dir.path(),
        &[
            "failback",
            "zone/zone-a",
            "--ramp",
            "50,100",
            "--ramp-pause",
            "200ms",
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(route_weights(&sim)["web-zone-a"], 100);
    assert_eq!(route_patches(&sim, from), 2, "50% then 100%: a ramp");
    assert!(
        zone_nodes(&sim, "zone-a")
            .iter()
            .all(|n| n["spec"]["unschedulable"] != json!(true))
    );
    assert_eq!(route_annotation(&sim, marker), None);
    assert_eq!(
        route_annotation(&sim, &format!("{WEIGHT_BEFORE_PREFIX}web-zone-a")),
        None
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_a_resumed_ramp_waits_out_the_rest_of_the_interrupted_pause() {
    use ripcord::engine::{Engine, RunOptions, StopHandle, StopReason};
    use ripcord::journal::{Outcome, Record};
    let sim = ready_three_zones().await;
    let failout = action(json!({"action": "zone.failout", "with": {
        "zone": "zone-a",
        "traffic": {"httpRoute": {"namespace": "shop", "name": "web", "backend": "web-zone-a"}}
    }}));
    drive(
        failout.as_ref(),
        &context(&sim, RUN, "failout"),
        Vec::new(),
        None,
        |_| {},
    )
    .await
    .expect("fail-out succeeds");
    assert_eq!(route_weights(&sim)["web-zone-a"], 0);

    let pause = std::time::Duration::from_secs(6);
    let yaml = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: failback-slow
spec:
  steps:
    - name: failback
      action: zone.failback
      with:
        zone: zone-a
        traffic: {httpRoute: {namespace: shop, name: web, backend: web-zone-a}}
        ramp: [50, 100]
        rampPause: 6s
"#;
    let valid = ripcord::playbook::parse_str("failback.yaml", yaml).expect("valid");
    let plan = ripcord::plan::plan(&valid, &BTreeMap::new(), &ripcord::journal::new_run_id())
        .expect("plan");
    let run_id = plan.run_id.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(sim.client(), reqwest::Client::new());
    let stop = StopHandle::new();
    let mut opts = RunOptions::new("test", dir.path());
    opts.namespace = Some("shop".into());
    opts.stop = Some(stop.clone());
    let first = {
        let (engine, plan, opts) = (engine.clone(), plan.clone(), opts.clone());
        tokio::spawn(async move { engine.run(plan, opts, None).await })
    };
    let state = dir.path().to_path_buf();
    let applied_at = |id: &str| {
        journal_of(&state, &run_id)
            .iter()
            .find_map(|e| match &e.record {
                Record::MutationApplied { mutation_id, .. } if mutation_id == id => Some(e.at),
                _ => None,
            })
    };
    wait_until("the 50% step written", || applied_at("ramp-50").is_some()).await;
    // Interrupted half-way through the 6 s pause.
    tokio::time::sleep(pause / 2).await;
    stop.stop(StopReason::Interrupted {
        by: "Ctrl-C".into(),
    });
    let outcome = first.await.expect("task").expect("run");
    assert_eq!(outcome.outcome, Outcome::Interrupted);
    assert_eq!(route_weights(&sim)["web-zone-a"], 50);

    let mut opts = RunOptions::new("test", dir.path());
    opts.namespace = Some("shop".into());
    opts.resume = Some(run_id.clone());
    let resumed = engine.run(plan, opts, None).await.expect("resumed");
    assert_eq!(resumed.outcome, Outcome::Succeeded, "{resumed:?}");
    assert_eq!(route_weights(&sim)["web-zone-a"], 100);
    let fifty = applied_at("ramp-50").expect("50%");
    let hundred = applied_at("ramp-100").expect("100%");
    let held = std::time::Duration::try_from(hundred.duration_since(fifty)).unwrap_or_default();
    assert!(
        held >= pause - std::time::Duration::from_millis(200),
        "the 50% step was held {held:?}, not the whole pause of {pause:?}"
    );
    assert!(
        resumed.duration < pause,
        "the resume waited the rest of the pause, not a new one: {:?}",
        resumed.duration
    );
    sim.shutdown().await;
}

/// Issue 15: a pod in the zone that is already Terminating (deleted by someone else with a
/// long grace period) is not evicted again, but the fail-out is not done until it is gone,
/// as `kubectl drain` waits for it.
#[tokio::test]
async fn issue15_failout_waits_for_pods_already_terminating_in_the_zone() {
    let sim = ready_three_zones().await;
    let zone_a: Vec<String> = zone_nodes(&sim, "zone-a")
        .iter()
        .filter_map(|n| str_at(n, "/metadata/name").map(str::to_string))
        .collect();
    let victim = app_pods(&sim, "shop", "web")
        .into_iter()
        .find(|p| str_at(p, "/spec/nodeName").is_some_and(|n| zone_a.iter().any(|z| z == n)))
        .expect("a web pod in zone-a");
    let victim = str_at(&victim, "/metadata/name").expect("name").to_string();
    // 60 simulated seconds: 3 s of real time at the scenario's factor 20.
    let deletion = sim
        .store()
        .delete_gracefully(&kinds::pods(), Some("shop"), &victim, Some(60), &[])
        .expect("graceful delete");
    assert!(!deletion.is_removed());

    let failout = action(json!({"action": "zone.failout", "with": {
        "zone": "zone-a",
        "traffic": {"httpRoute": {"namespace": "shop", "name": "web", "backend": "web-zone-a"}},
        "drainConcurrency": 10
    }}));
    let ctx = context(&sim, RUN, "failout");
    drive(failout.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("fail-out succeeds");
    assert!(
        sim.store()
            .get(&kinds::pods(), Some("shop"), &victim)
            .is_none(),
        "the fail-out finished while {victim} was still terminating in the zone"
    );
    let evicted_victim = sim
        .request_log()
        .iter()
        .any(|r| r.path.ends_with(&format!("/pods/{victim}/eviction")));
    assert!(!evicted_victim, "a terminating pod is not evicted again");
    sim.shutdown().await;
}

/// Issue 18: the drain plans its waves on, and its guards and waits read, a watched view of
/// the pods. The cluster's pods are listed in pages twice (the view's initial list, the read
/// confirming the drained zone), not once per diff, wave or 100 ms poll; the PDBs are not
/// listed once per wave; and a wait reads each ReplicaSet it needs once, not once per poll.
#[tokio::test]
async fn issue18_failout_waits_on_a_pod_watch_not_a_poll() {
    let sim = ready_three_zones().await;
    let from = sim.request_log().last().map(|r| r.seq).unwrap_or(0);
    let failout = action(json!({"action": "zone.failout", "with": {
        "zone": "zone-a",
        "drainConcurrency": 1
    }}));
    let ctx = context(&sim, RUN, "failout");
    let driven = drive(failout.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("fail-out succeeds");
    let waves = driven
        .rounds
        .iter()
        .filter(|ids| ids[0].starts_with("evict/"))
        .count();
    assert!(waves >= 2, "one node per wave: {:?}", driven.rounds);
    let log: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.seq > from)
        .collect();
    let pod_lists: Vec<_> = log
        .iter()
        .filter(|r| r.path == "/api/v1/pods" && r.verb == "list")
        .collect();
    for list in &pod_lists {
        assert!(
            list.query.contains("limit="),
            "an unpaginated cluster-wide pod list: {list:?}"
        );
    }
    // The view's initial list (the guards read it too) and the read confirming the drain.
    assert!(
        pod_lists.len() <= 2,
        "{} cluster-wide pod lists for {waves} waves",
        pod_lists.len()
    );
    // The PDBs: once per 2 s of drain at most, not once per wave.
    let pdb_lists = log
        .iter()
        .filter(|r| r.path.ends_with("/poddisruptionbudgets") && r.verb == "list")
        .count();
    assert!(
        (1..=2).contains(&pdb_lists),
        "{pdb_lists} PDB lists for {waves} waves"
    );
    assert!(
        log.iter()
            .any(|r| r.path == "/api/v1/pods" && r.verb == "watch"),
        "the drain watches the pods"
    );
    let replica_set_reads = log
        .iter()
        .filter(|r| r.verb == "get" && r.path.contains("/replicasets/"))
        .count();
    // web and api: at most both per wave (and per re-read after 2 s of waiting).
    assert!(
        replica_set_reads <= 2 * waves + 2,
        "{replica_set_reads} ReplicaSet reads for {waves} waves"
    );
    sim.shutdown().await;
}

/// Issue 18: the waves of a drain overlap as the PodDisruptionBudgets allow. While one
/// Deployment's replacement cannot go Ready (a readiness gate nobody releases), the other
/// Deployment's pods keep moving, one per freed budget; the drain ends only once every
/// replacement is Ready. Before, each wave waited for every ReplicaSet it touched, so the held
/// one stopped the whole drain after the first wave.
#[tokio::test]
async fn issue18_waves_overlap_while_one_replacement_is_held() {
    let sim = start_yaml(&one_node_zones(
        "overlapping-waves",
        r#"deployments:
  - namespace: shop
    name: fast
    replicas: 9
    releases: [{image: registry.local/fast:1.0.0}]
  - namespace: shop
    name: held
    replicas: 3
    readinessGates: [example.com/held]
    releases: [{image: registry.local/held:1.0.0}]
podDisruptionBudgets:
  - {namespace: shop, name: fast, selector: {app: fast}, maxUnavailable: 1}
  - {namespace: shop, name: held, selector: {app: held}, maxUnavailable: 1}
"#,
    ))
    .await;
    wait_until("fast and held ready", || {
        all_ready(&sim, "shop", "fast", 9) && all_ready(&sim, "shop", "held", 3)
    })
    .await;
    let zone_a: Vec<String> = zone_nodes(&sim, "zone-a")
        .iter()
        .filter_map(|n| str_at(n, "/metadata/name").map(str::to_string))
        .collect();
    let in_zone_a = |app: &str| {
        app_pods(&sim, "shop", app)
            .iter()
            .filter(|p| str_at(p, "/spec/nodeName").is_some_and(|n| zone_a.iter().any(|z| z == n)))
            .count()
    };
    let fast_before = in_zone_a("fast");
    assert!(
        fast_before >= 2 && in_zone_a("held") >= 1,
        "the scenario places several fast pods and a held pod in zone-a"
    );

    let failout = action(json!({"action": "zone.failout", "with": {"zone": "zone-a"}}));
    let ctx = context(&sim, RUN, "failout");
    let run_ctx = ctx.clone();
    let run =
        tokio::spawn(
            async move { drive(failout.as_ref(), &run_ctx, Vec::new(), None, |_| {}).await },
        );
    // Every fast pod leaves zone-a (one at a time: its budget is 1) while held's replacement
    // stays unready.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while in_zone_a("fast") > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {fast_before} fast pod(s) still in zone-a: the drain waits for the held \
             replacement before moving the others",
            in_zone_a("fast")
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let held_unready: Vec<String> = app_pods(&sim, "shop", "held")
        .iter()
        .filter(|p| !pod_ready(p))
        .filter_map(|p| str_at(p, "/metadata/name").map(str::to_string))
        .collect();
    assert!(!held_unready.is_empty(), "held's replacement is not Ready");
    // The drain is not done while a replacement is unready.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !run.is_finished(),
        "the fail-out ended before held's replacement was Ready"
    );

    let pods = ripcord::k8s::pods::Pods::new(ctx.client.clone(), ctx.call_timeout);
    for name in &held_unready {
        pods.set_condition(
            "shop",
            name,
            &json!({"type": "example.com/held", "status": "True"}),
        )
        .await
        .expect("gate released");
    }
    let driven = run.await.expect("task").expect("fail-out succeeds");
    assert!(
        driven.last_summary.contains("is failed out"),
        "{}",
        driven.last_summary
    );
    assert_eq!(in_zone_a("fast") + in_zone_a("held"), 0);
    assert!(all_ready(&sim, "shop", "fast", 9) && all_ready(&sim, "shop", "held", 3));
    assert!(
        sim.invariants().violations().is_empty(),
        "{:?}",
        sim.invariants().violations()
    );
    sim.shutdown().await;
}

/// A StatefulSet recreates an evicted pod under the same name: the drain tells the replacement
/// (another uid, on a node outside the zone) from the evicted pod by uid. Before, it matched
/// names only and ended only if its wait happened to look between the old pod's deletion and
/// the new pod's creation; the uid rule itself is unit-tested in `actions/node_drain.rs`. The
/// drain also ends only once the StatefulSet is fully Ready again, as for a ReplicaSet.
#[tokio::test]
async fn a_failout_moves_statefulset_pods_recreated_under_the_same_name() {
    let sim = start_yaml(&one_node_zones("statefulset-in-zone", "")).await;
    let client = sim.client();
    let sts: kube::Api<k8s_openapi::api::apps::v1::StatefulSet> =
        kube::Api::namespaced(client, "shop");
    let db: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {
            "serviceName": "db", "replicas": 3,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"terminationGracePeriodSeconds": 2,
                         "containers": [{"name": "db", "image": "registry.local/db:1"}]}
            }
        }
    }))
    .expect("a StatefulSet");
    sts.create(&Default::default(), &db).await.expect("created");
    wait_until("db ready", || all_ready(&sim, "shop", "db", 3)).await;
    let zone_a: Vec<String> = zone_nodes(&sim, "zone-a")
        .iter()
        .filter_map(|n| str_at(n, "/metadata/name").map(str::to_string))
        .collect();
    let in_zone_a = || {
        app_pods(&sim, "shop", "db")
            .iter()
            .filter(|p| str_at(p, "/spec/nodeName").is_some_and(|n| zone_a.iter().any(|z| z == n)))
            .filter_map(|p| str_at(p, "/metadata/name").map(str::to_string))
            .collect::<Vec<_>>()
    };
    let moving = in_zone_a();
    assert!(!moving.is_empty(), "a db pod runs in zone-a");

    let failout = action(json!({"action": "zone.failout", "with": {"zone": "zone-a"}}));
    let mut ctx = context(&sim, RUN, "failout");
    ctx.verify_timeout = std::time::Duration::from_secs(15);
    let driven = drive(failout.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("fail-out succeeds");
    assert!(
        driven.last_summary.contains("is failed out"),
        "{}",
        driven.last_summary
    );
    assert!(in_zone_a().is_empty(), "{:?}", in_zone_a());
    // The same names run again, elsewhere, and the drain waited for them.
    assert!(all_ready(&sim, "shop", "db", 3));
    sim.shutdown().await;
}
