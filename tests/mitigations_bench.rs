//! Measurement, not a test (ignored by default): fail out zone-a of `failout-100.yaml` (100
//! nodes, 1,000 PDB-protected pods, a DaemonSet) with 5 ms of injected API latency, once with
//! ripcord's built-in `failout-zone` playbook through the engine and once with a loop of
//! `kubectl drain --ignore-daemonsets --delete-emptydir-data` over the zone's nodes, each on a
//! fresh sim. Prints wall time and API requests of both and their ratios; asserts only
//! correctness (every zone pod moved, no PDB violation), never speed.
//!
//! Run: `cargo test --release --test mitigations_bench -- --ignored --nocapture`
//! (kubectl from the PATH, or `KUBECTL=/path/to/kubectl`). `BENCH_ONLY_RIPCORD=1` skips the
//! kubectl side; `BENCH_ACTION_ONLY=1` drives the `zone.failout` action directly (no engine,
//! journal or snapshot) and prints the time between eviction mutations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod mitigations_support;

use mitigations_support::*;
use ripcord::engine::{Engine, RunOptions};
use ripcord::journal::Outcome;
use ripcord::sim::SimCluster;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(5);

struct Sample {
    wall: Duration,
    requests: usize,
    evictions: usize,
    refused: usize,
}

async fn ready_sim() -> SimCluster {
    let sim = start_file("failout-100.yaml").await;
    wait_until("1,000 pods ready", || {
        (0..10).all(|i| all_ready(&sim, "shop", &format!("svc-{i}"), 100))
    })
    .await;
    sim.faults().set_latency(LATENCY);
    sim
}

fn zone_a_names(sim: &SimCluster) -> Vec<String> {
    let mut names: Vec<String> = zone_nodes(sim, "zone-a")
        .iter()
        .filter_map(|n| str_at(n, "/metadata/name").map(str::to_string))
        .collect();
    names.sort();
    names
}

fn check_moved(sim: &SimCluster, zone: &[String]) {
    for pod in list(sim, &ripcord::sim::store::kinds::pods()) {
        let node = str_at(&pod, "/spec/nodeName").unwrap_or_default();
        let daemon = str_at(&pod, "/metadata/ownerReferences/0/kind") == Some("DaemonSet");
        assert!(
            daemon || !zone.iter().any(|z| z == node),
            "pod left on {node}"
        );
    }
    assert!(
        sim.invariants().violations().is_empty(),
        "{:?}",
        sim.invariants().violations()
    );
}

fn sample(sim: &SimCluster, started: Instant, requests_before: usize) -> Sample {
    let log = sim.request_log();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in &log[requests_before..] {
        let resource: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
        let what = resource
            .iter()
            .rev()
            .find(|s| s.chars().all(|c| c.is_ascii_lowercase()) && s.len() > 3)
            .copied()
            .unwrap_or("?");
        *kinds.entry(format!("{} {what}", r.verb)).or_default() += 1;
    }
    println!("requests: {kinds:?}");
    let evictions: Vec<&ripcord::sim::faults::RequestRecord> = log
        .iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .collect();
    Sample {
        wall: started.elapsed(),
        requests: log.len() - requests_before,
        evictions: evictions.iter().filter(|r| r.status < 300).count(),
        refused: evictions.iter().filter(|r| r.status == 429).count(),
    }
}

async fn action_only_failout() -> Sample {
    let sim = ready_sim().await;
    let parsed: ripcord::playbook::catalog::Action = serde_json::from_value(
        serde_json::json!({"action": "zone.failout", "with": {"zone": "zone-a"}}),
    )
    .expect("parses");
    let action = ripcord::actions::build(&parsed).expect("builds");
    let ctx = context(&sim, "r-bench", "failout");
    let before = sim.request_log().len();
    let started = Instant::now();
    let mut last = Instant::now();
    let mut gaps: Vec<f64> = Vec::new();
    let driven = drive(action.as_ref(), &ctx, Vec::new(), None, |id| {
        let gap = last.elapsed().as_secs_f64();
        last = Instant::now();
        if id.starts_with("evict") {
            gaps.push(gap);
        }
    })
    .await
    .expect("drives");
    println!(
        "rounds: {:?}",
        driven.rounds.iter().map(Vec::len).collect::<Vec<_>>()
    );
    gaps.sort_by(f64::total_cmp);
    println!(
        "eviction gaps: median {:.3} s, max {:.3} s, sum {:.1} s",
        gaps.get(gaps.len() / 2).copied().unwrap_or(0.0),
        gaps.last().copied().unwrap_or(0.0),
        gaps.iter().sum::<f64>()
    );
    let s = sample(&sim, started, before);
    sim.shutdown().await;
    s
}

async fn ripcord_failout() -> Sample {
    if std::env::var("BENCH_ACTION_ONLY").is_ok() {
        return action_only_failout().await;
    }
    let sim = ready_sim().await;
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed");
    let zone = zone_a_names(&sim);
    let state = tempfile::tempdir().expect("tempdir");
    let valid = ripcord::playbook::load_builtin("failout-zone").expect("built-in is valid");
    let params = BTreeMap::from([("zone".to_string(), "zone-a".to_string())]);
    let plan = ripcord::plan::plan(&valid, &params, &ripcord::journal::new_run_id()).expect("plan");
    let mut opts = RunOptions::new("bench", state.path());
    opts.namespace = Some("shop".into());
    let before = sim.request_log().len();
    let started = Instant::now();
    let out = Engine::new(sim.client(), reqwest::Client::new())
        .run(plan, opts, None)
        .await
        .expect("run completes");
    let s = sample(&sim, started, before);
    assert_eq!(out.outcome, Outcome::Succeeded, "{out:?}");
    check_moved(&sim, &zone);
    sim.shutdown().await;
    s
}

async fn kubectl_drain_loop() -> Sample {
    let sim = ready_sim().await;
    let zone = zone_a_names(&sim);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let before = sim.request_log().len();
    let started = Instant::now();
    for node in &zone {
        let out = tokio::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "drain",
                node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=600s",
            ])
            .output()
            .await
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl drain {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = sample(&sim, started, before);
    check_moved(&sim, &zone);
    sim.shutdown().await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (minutes); run with --ignored --nocapture"]
async fn issue5_failout_versus_a_kubectl_drain_loop() {
    let ours = ripcord_failout().await;
    println!("ripcord done in {:.2} s", ours.wall.as_secs_f64());
    if std::env::var("BENCH_ONLY_RIPCORD").is_ok() {
        return;
    }
    let theirs = kubectl_drain_loop().await;
    let row = |name: &str, s: &Sample| {
        println!(
            "{name:8} wall {:>8.2} s  requests {:>6}  evictions {:>5}  PDB 429s {:>5}",
            s.wall.as_secs_f64(),
            s.requests,
            s.evictions,
            s.refused
        );
    };
    println!("fail out zone-a: 34 of 100 nodes, 1,000 pods, 5 ms API latency");
    row("ripcord", &ours);
    row("kubectl", &theirs);
    println!(
        "kubectl/ripcord: wall time x{:.1}, API requests x{:.2}",
        theirs.wall.as_secs_f64() / ours.wall.as_secs_f64().max(1e-9),
        theirs.requests as f64 / (ours.requests.max(1)) as f64
    );
}
