//! Concurrency.
//!
//! - Issue 8: two `ripcord` CLIs rolling back the same Deployment at the same moment. Exactly
//!   one acts — the sim sees exactly one PATCH of the Deployment — and the other either refuses
//!   with exit 4 naming the run id that holds the lock, or (when it looks after the first one
//!   finished) finds nothing to do. Rounds start the second process with different offsets to
//!   meet different interleavings.
//! - Issue 12: three fail-outs of the three zones of `three-zones` started at the same moment
//!   (separate state dirs: three operators), by three CLIs or through one daemon's run queue in
//!   process. Exactly one zone is failed out; the other two runs are refused (exit 4) before
//!   any write — by the fleet lock, or, with `--wait-lock`, by the guards checked again under
//!   it. `scripts/campaign concurrency --n N` repeats each kind N times and writes one JSON
//!   line per trial (`RIPCORD_CAMPAIGN_REPORT`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod campaign_support;
#[path = "daemon_support/mod.rs"]
mod daemon_support;

use campaign_support::{Playbook, Trial, deployment, rolled_out, settle};
use ripcord::journal::{self, Outcome};
use ripcord::sim::store::kinds;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout";

/// The run ids (`r-YYYYMMDD-HHMMSS-xxxxxxxxxxxx`) mentioned in a text.
fn run_ids(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("r-") && journal::validate_run_id(w).is_ok())
        .map(str::to_string)
        .collect()
}

async fn race(offset: Duration) -> &'static str {
    let trial = Trial::start(Playbook::Rollback).await;
    let args: Vec<String> = ["rollback", "deployment/checkout", "-n", "shop", "--yes"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let first = trial
        .command(&args, &[])
        .spawn()
        .expect("first ripcord starts");
    tokio::time::sleep(offset).await;
    let second = trial
        .command(&args, &[])
        .spawn()
        .expect("second ripcord starts");
    let bound = campaign_support::PROCESS_BOUND;
    let (a, b) = tokio::join!(
        tokio::time::timeout(bound, first.wait_with_output()),
        tokio::time::timeout(bound, second.wait_with_output())
    );
    let outputs: Vec<(Option<i32>, String)> = [a, b]
        .into_iter()
        .map(|r| {
            let out = r.expect("finished in time").expect("output");
            (
                out.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        })
        .collect();
    let shown = format!("{outputs:#?}");
    settle(&trial).await;

    let patches = trial
        .sim
        .request_log()
        .iter()
        .filter(|r| {
            r.seq > trial.log_start
                && r.method == "PATCH"
                && r.path == DEPLOYMENT_PATH
                && (200..300).contains(&r.status)
        })
        .count();
    assert_eq!(patches, 1, "exactly one process rolled back: {shown}");
    let d = deployment(&trial.sim, "shop", "checkout");
    let image = d
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(image.ends_with(":1.4.2"), "rolled back once: {image}");
    assert!(rolled_out(&d));

    let runs = journal::list_runs(&trial.state_dir()).expect("runs listed");
    let succeeded: Vec<String> = runs
        .iter()
        .filter(|r| {
            let path = journal::journal_path(&trial.state_dir(), &r.run_id);
            journal::read(&path)
                .map(|(entries, _)| {
                    campaign_support::final_outcome(&entries) == Some(Outcome::Succeeded)
                })
                .unwrap_or(false)
        })
        .map(|r| r.run_id.clone())
        .collect();
    let codes: Vec<Option<i32>> = outputs.iter().map(|(c, _)| *c).collect();
    let kind = match codes.as_slice() {
        [Some(0), Some(4)] | [Some(4), Some(0)] => {
            let (_, refused) = outputs
                .iter()
                .find(|(c, _)| *c == Some(4))
                .expect("a refusal");
            let (_, winner) = outputs
                .iter()
                .find(|(c, _)| *c == Some(0))
                .expect("a success");
            let holder = run_ids(winner)
                .into_iter()
                .find(|id| succeeded.contains(id))
                .unwrap_or_else(|| panic!("the winner's run id: {shown}"));
            assert!(
                refused.contains(&holder),
                "the refusal names the holder {holder}: {shown}"
            );
            "one acted, the other refused naming the holder"
        }
        [Some(0), Some(0)] => {
            // The later one found the rollback done: nothing written twice (checked above).
            "one acted, the other found it already satisfied"
        }
        other => panic!("unexpected exit codes {other:?}: {shown}"),
    };
    eprintln!(
        "offset {offset:?}: {kind}; runs {runs:?}",
        runs = runs.len()
    );
    trial.finish().await;
    kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clis_rolling_back_the_same_deployment_exactly_one_acts() {
    let mut kinds = Vec::new();
    for offset_ms in [0u64, 40, 150] {
        kinds.push(race(Duration::from_millis(offset_ms)).await);
    }
    eprintln!("{kinds:?}");
}

// === issue 12: three zones, three starters ===

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// Who starts the three fail-outs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Starter {
    /// Three `ripcord failout zone/Z --yes` processes, one state dir each.
    Cli,
    /// Three submissions to one daemon's run queue (the engine in process), as three
    /// `POST /v1/runs` would make.
    Daemon,
}

/// What one trial saw.
#[derive(Debug)]
struct FleetTrial {
    /// Per zone: exit code (CLI) or outcome (daemon), and the output or reason.
    results: Vec<(String, String, String)>,
    succeeded: usize,
    refused: usize,
    /// Cordoned nodes per zone at the end.
    cordoned: BTreeMap<String, usize>,
    millis: u128,
}

fn cordoned_by_zone(sim: &ripcord::sim::SimCluster) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for node in sim.store().list(&kinds::nodes(), None).0 {
        if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
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

async fn failout_race(starter: Starter, wait_lock: Option<&str>) -> FleetTrial {
    let trial = Trial::start(Playbook::Failout).await;
    let started = std::time::Instant::now();
    let mut results = Vec::new();
    match starter {
        Starter::Cli => {
            let children: Vec<_> = ZONES
                .iter()
                .map(|zone| {
                    let mut args: Vec<String> = ["failout", &format!("zone/{zone}"), "--yes"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    if let Some(wait) = wait_lock {
                        args.extend(["--wait-lock".to_string(), wait.to_string()]);
                    }
                    let state = trial.dir.path().join(format!("state-{zone}"));
                    trial
                        .command(
                            &args,
                            &[("RIPCORD_STATE_DIR", state.to_str().unwrap_or(""))],
                        )
                        .spawn()
                        .expect("ripcord starts")
                })
                .collect();
            let outputs = futures::future::join_all(children.into_iter().map(|c| {
                tokio::time::timeout(campaign_support::PROCESS_BOUND, c.wait_with_output())
            }))
            .await;
            for (zone, out) in ZONES.iter().zip(outputs) {
                let out = out.expect("finished in time").expect("output");
                results.push((
                    zone.to_string(),
                    format!("exit {:?}", out.status.code()),
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                ));
            }
        }
        Starter::Daemon => {
            use ripcord::daemon::runs::{
                EngineExecutor, PlaybookSource, Playbooks, RunDefaults, RunError, RunManager,
                RunRequest,
            };
            let (_leader, leader_rx) = tokio::sync::watch::channel(true);
            let engine = ripcord::engine::Engine::new(trial.sim.client(), reqwest::Client::new());
            let manager = RunManager::new(
                std::sync::Arc::new(EngineExecutor::new(engine, None)),
                Playbooks::default(),
                RunDefaults {
                    state_dir: trial.state_dir(),
                    prometheus_url: None,
                    notify: Vec::new(),
                    notify_required: false,
                    call_timeout: Duration::from_secs(5),
                    lock_namespace: None,
                    seal: None,
                },
                std::sync::Arc::new(ripcord::daemon::metrics::DaemonMetrics::new()),
                ripcord::daemon::clock::Clock::default(),
                leader_rx,
            );
            let request = |zone: &str, run_id: Option<String>| RunRequest {
                playbook: PlaybookSource::Name("failout-zone".into()),
                params: BTreeMap::from([("zone".to_string(), zone.to_string())]),
                incident: None,
                trigger: ripcord::engine::Trigger::Api,
                who: format!("operator-{zone}"),
                run_id,
            };
            let ids: Vec<String> = ZONES
                .iter()
                .map(|zone| manager.submit(request(zone, None)).expect("queued").run_id)
                .collect();
            for (zone, id) in ZONES.iter().zip(&ids) {
                let view = tokio::time::timeout(campaign_support::PROCESS_BOUND, manager.wait(id))
                    .await
                    .expect("finished in time")
                    .expect("the run is known");
                results.push((
                    zone.to_string(),
                    view.outcome
                        .map(|o| o.as_str().to_string())
                        .unwrap_or_else(|| view.state.as_str().to_string()),
                    view.reason.unwrap_or_default(),
                ));
            }
            // A run id in use is refused, never run a second time under the same id.
            let again = manager.submit(request("zone-a", Some(ids[0].clone())));
            assert!(
                matches!(&again, Err(RunError::DuplicateRunId { run_id }) if *run_id == ids[0]),
                "{again:?}"
            );
        }
    }
    let millis = started.elapsed().as_millis();
    let ok = |r: &str| r == "exit Some(0)" || r == "succeeded";
    let no = |r: &str| r == "exit Some(4)" || r == "refused";
    let succeeded = results.iter().filter(|(_, r, _)| ok(r)).count();
    let refused = results.iter().filter(|(_, r, _)| no(r)).count();
    settle(&trial).await;
    let cordoned = cordoned_by_zone(&trial.sim);
    trial.finish().await;
    FleetTrial {
        results,
        succeeded,
        refused,
        cordoned,
        millis,
    }
}

/// Runs `n` trials of each kind, asserts the invariant of each, appends them to the report.
async fn fleet_trials(starter: Starter, wait_lock: Option<&str>, n: usize) {
    for round in 0..n {
        let t = failout_race(starter, wait_lock).await;
        let shown = format!("{starter:?} wait {wait_lock:?} round {round}: {t:#?}");
        eprintln!(
            "concurrency {starter:?} wait={wait_lock:?} round {round}: {} succeeded, {} refused, \
             cordoned {:?} in {} ms",
            t.succeeded, t.refused, t.cordoned, t.millis
        );
        if let Some((zone, code, text)) = t
            .results
            .iter()
            .find(|(_, r, _)| !r.ends_with("(0)") && r != "succeeded")
        {
            eprintln!(
                "  refused {zone} ({code}): {}",
                text.lines().find(|l| l.contains("refused")).unwrap_or(text)
            );
        }
        if let Some(path) = std::env::var_os("RIPCORD_CAMPAIGN_REPORT") {
            let line = serde_json::json!({
                "campaign": "concurrency",
                "starter": format!("{starter:?}").to_lowercase(),
                "waitLock": wait_lock,
                "round": round,
                "succeeded": t.succeeded,
                "refused": t.refused,
                "cordonedNodes": t.cordoned.values().sum::<usize>(),
                "zonesOut": t.cordoned.len(),
                "ms": t.millis,
            });
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                let _ = writeln!(f, "{line}");
            }
        }
        assert_eq!(t.succeeded, 1, "exactly one fail-out went ahead: {shown}");
        assert_eq!(t.refused, 2, "the other two were refused: {shown}");
        assert_eq!(t.cordoned.len(), 1, "one zone out, two healthy: {shown}");
        assert_eq!(t.cordoned.values().sum::<usize>(), 2, "{shown}");
        for (_, _, text) in t
            .results
            .iter()
            .filter(|(_, r, _)| r.contains('4') || r == "refused")
        {
            assert!(
                text.contains("is locked by run") || text.contains("blast-radius budget"),
                "the refusal says why: {shown}"
            );
            if text.contains("is locked by run") {
                assert!(
                    text.contains("--wait-lock") && text.contains("expire"),
                    "and how long the lock has left, and how to wait for it: {shown}"
                );
            }
        }
    }
}

fn trials() -> usize {
    campaign_support::kill_points(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_three_cli_failouts_at_once_fail_out_one_zone() {
    fleet_trials(Starter::Cli, None, trials()).await;
    fleet_trials(Starter::Cli, Some("60s"), trials()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_three_daemon_failouts_at_once_fail_out_one_zone() {
    fleet_trials(Starter::Daemon, None, trials()).await;
}

/// Issue 12: 2,000 API submissions in a burst produced 15 duplicate run ids, and the second run
/// of each pair was never executed yet reported "succeeded". Every submission now gets its own
/// id and runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_two_thousand_api_submissions_get_distinct_ids_and_each_runs_once() {
    use daemon_support::{FakeExecutor, TOKEN, call, harness};
    let h = harness(
        FakeExecutor::default(),
        ripcord::daemon::config::AlertmanagerConfig::default(),
        ripcord::daemon::clock::Clock::System,
    );
    let started = std::time::Instant::now();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..2_000 {
        let body = serde_json::json!({"playbook": "rollback",
            "params": {"name": format!("svc-{}", i % 50), "namespace": "shop"}})
        .to_string();
        let (status, json) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
        assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{json}");
        let id = json["runId"].as_str().unwrap_or_default().to_string();
        assert!(ids.insert(id.clone()), "duplicate run id {id}");
    }
    eprintln!("2000 submissions in {} ms", started.elapsed().as_millis());
    let executor = h.executor.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while executor.executed().len() < ids.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} executed",
            executor.executed().len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let executed: Vec<String> = executor.executed().into_iter().map(|e| e.run_id).collect();
    let once: std::collections::BTreeSet<&String> = executed.iter().collect();
    assert_eq!(executed.len(), 2_000, "each run executed once");
    assert_eq!(once.len(), 2_000);
    assert!(ids.iter().all(|id| once.contains(id)));
}
