//! Rolling restart with warm-up against the simulated cluster (issue 5): 12 replicas in
//! batches of 3, a warm-up endpoint per new pod (a local axum receiver), interrupted mid-batch
//! and resumed by a fresh action object.
//!
//! The sim's pod IPs are not reachable, so warm-ups go to `RIPCORD_WARMUP_BASE_URL`, which the
//! action reads from the process environment. Rather than mutate this process's environment,
//! the test starts the receiver, then runs itself again as a child process (the test binary,
//! filtered to this one test) with that variable set from the start; the child drives the
//! restart and writes the names of the new pods to a file; the parent checks that every one of
//! them was warmed up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod mitigations_support;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use mitigations_support::*;
use ripcord::actions::deployment_restart::{WARMUP_BASE_URL_ENV, WARMUP_POD_HEADER};
use ripcord::actions::{self, Action};
use ripcord::playbook::catalog;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RUN: &str = "r-20261125-120500-rstr";
/// This test's name (the child runs the test binary filtered to it).
const TEST_NAME: &str = "issue5_rolling_restart_in_batches_with_warmup_survives_an_interruption";
/// Set in the child: the file it writes the new pods' names to (a JSON array).
const CHILD_REPORT_ENV: &str = "RIPCORD_TEST_RESTART_CHILD_REPORT";

fn restart_action() -> Box<dyn Action> {
    let parsed: catalog::Action = serde_json::from_value(json!({
        "action": "deployment.restart",
        "with": {
            "namespace": "shop", "name": "frontend", "batch": 3, "warmup": "100ms",
            "warmupRequest": {"port": 8080, "path": "/warm"}
        }
    }))
    .expect("catalog action parses");
    actions::build(&parsed).expect("action builds")
}

/// Starts the warm-up receiver; returns its base URL and the pod names it was called for.
async fn warmup_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorded = calls.clone();
    let app = Router::new().route(
        "/warm",
        get(move |headers: HeaderMap| {
            let recorded = recorded.clone();
            async move {
                let pod = headers
                    .get(WARMUP_POD_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if let Ok(mut calls) = recorded.lock() {
                    calls.push(pod);
                }
                "warm"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), calls)
}

fn pod_names(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| str_at(p, "/metadata/name"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn issue5_rolling_restart_in_batches_with_warmup_survives_an_interruption() {
    if let Some(report) = std::env::var_os(CHILD_REPORT_ENV) {
        // The child: warm-ups already go to the parent's receiver.
        assert!(
            std::env::var(WARMUP_BASE_URL_ENV).is_ok(),
            "the child needs {WARMUP_BASE_URL_ENV}"
        );
        let restarted = restart_with_an_interruption().await;
        let json = serde_json::to_vec(&restarted).expect("pod names serialize");
        std::fs::write(&report, json).expect("child report written");
        return;
    }

    let (base, calls) = warmup_receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("restarted.json");
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = tokio::process::Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(WARMUP_BASE_URL_ENV, &base)
        .env(CHILD_REPORT_ENV, &report)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the child test runs");
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the child test finished within 300 s")
        .expect("the child's output");
    let transcript = format!(
        "--- child stdout\n{}\n--- child stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the child test failed\n{transcript}");
    let restarted: BTreeSet<String> = std::fs::read(&report)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| panic!("the child did not report the restarted pods\n{transcript}"));
    assert_eq!(restarted.len(), 12, "{restarted:?}");

    // Every new pod's warm-up endpoint was called.
    let called: BTreeSet<String> = calls
        .lock()
        .map(|c| {
            c.iter()
                .filter_map(|p| p.strip_prefix("shop/"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<&String> = restarted.difference(&called).collect();
    assert!(missing.is_empty(), "not warmed: {missing:?}");
}

/// The scenario (in the child): restart, interrupt, resume, check the cluster; returns the
/// names of the pods that replaced the original ones.
async fn restart_with_an_interruption() -> BTreeSet<String> {
    let sim = start_file("restart-12.yaml").await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 12)).await;
    let original = pod_names(&app_pods(&sim, "shop", "frontend"));
    assert_eq!(original.len(), 12);
    let ctx = context(&sim, RUN, "restart");

    // First process: the marker, then two full batches, then killed after 2 evictions of the
    // third batch (before its verify).
    let first = restart_action();
    let driven = drive(
        first.as_ref(),
        &ctx,
        Vec::new(),
        Some(1 + 3 + 3 + 2),
        |_| {},
    )
    .await
    .expect("first part runs");
    assert!(driven.interrupted);
    assert_eq!(driven.rounds[0], ["restart/mark"]);
    assert!(driven.rounds[1].iter().all(|id| id.starts_with("batch-1/")));
    assert_eq!(driven.rounds[1].len(), 3);
    assert!(driven.rounds[2].iter().all(|id| id.starts_with("batch-2/")));
    assert!(driven.rounds[3].iter().all(|id| id.starts_with("batch-3/")));
    assert_eq!(driven.rounds[3].len(), 2);
    drop(first);

    // Second process: a fresh action object resumes from what the cluster says.
    let second = restart_action();
    let resumed = drive(second.as_ref(), &ctx, driven.applied.clone(), None, |_| {})
        .await
        .expect("resumed restart finishes");
    assert!(
        resumed
            .last_summary
            .contains("all 12 listed pod(s) restarted"),
        "{}",
        resumed.last_summary
    );
    // The interrupted batch is completed (at most 3 unready at once), never repeated.
    assert!(
        resumed.rounds[0].len() == 1 && resumed.rounds[0][0].starts_with("batch-3/"),
        "{:?}",
        resumed.rounds
    );

    // Every original pod was evicted exactly once; no new pod was evicted.
    let mut evictions: BTreeMap<String, usize> = BTreeMap::new();
    for record in sim.request_log() {
        if record.method == "POST"
            && let Some(rest) = record.path.strip_suffix("/eviction")
            && record.status < 300
        {
            let pod = rest.rsplit('/').next().unwrap_or_default().to_string();
            *evictions.entry(pod).or_default() += 1;
        }
    }
    assert_eq!(
        evictions.keys().cloned().collect::<BTreeSet<_>>(),
        original,
        "evicted: {evictions:?}"
    );
    assert!(evictions.values().all(|n| *n == 1), "{evictions:?}");

    // 12 new pods, all Ready, none of the originals.
    wait_until("frontend ready again", || {
        all_ready(&sim, "shop", "frontend", 12)
    })
    .await;
    let now = pod_names(&app_pods(&sim, "shop", "frontend"));
    assert!(now.is_disjoint(&original), "old pods survived: {now:?}");

    // Never more than one batch unready (the sim's readiness history).
    let max_unready = sim.invariants().max_unready("shop", "frontend");
    assert!(max_unready <= 3, "max unready was {max_unready}");
    assert!(max_unready >= 1, "the history saw no restart at all");
    assert!(sim.invariants().violations().is_empty());

    // Done means done: the same step again changes nothing.
    let third = restart_action();
    assert!(third.diff(&ctx).await.expect("diff").is_satisfied());
    sim.shutdown().await;
    now
}

// === issue 12: abort that aborts ===

/// Four replicas of a release whose pods never become Ready: a restart marks the Deployment,
/// then waits (in its diff) for room for its first batch — the wait that used to ignore
/// Ctrl-C, SIGTERM and tripped stop conditions.
const NEVER_READY: &str = r#"
name: restart-never-ready
settings: {timeFactor: 20, podReadyDelaySeconds: 1}
zones:
  - {name: zone-a, nodes: 2}
  - {name: zone-b, nodes: 2}
namespaces: [shop]
deployments:
  - namespace: shop
    name: frontend
    replicas: 4
    releases:
      - image: registry.local/frontend:5.0.3
        bad: notReady
"#;

/// The `ripcord` binary pointed at `sim`, journaling under `state`.
fn ripcord_command(dir: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"));
    cmd.args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("RIPCORD_STATE_DIR", dir.join("state"))
        .env("RIPCORD_CONFIG", "/dev/null")
        .env("RIPCORD_WHO", "test")
        .env_remove("RIPCORD_NAMESPACE")
        .env_remove("RIPCORD_CONTEXT")
        .env_remove(ripcord::engine::CRASH_HOOK_ENV)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The only run under `state` and its journal records (no torn tail), once it has a journal.
fn only_journal(state: &std::path::Path) -> Option<(String, Vec<ripcord::journal::Entry>)> {
    let runs = ripcord::journal::list_runs(state).ok()?;
    let run = runs.first()?;
    let (entries, torn) =
        ripcord::journal::read(&ripcord::journal::journal_path(state, &run.run_id)).ok()?;
    assert!(torn.is_none(), "torn journal tail: {torn:?}");
    Some((run.run_id.clone(), entries))
}

fn marker_applied(entries: &[ripcord::journal::Entry]) -> bool {
    entries.iter().any(|e| {
        matches!(&e.record, ripcord::journal::Record::MutationApplied { mutation_id, .. }
            if mutation_id == "restart/mark")
    })
}

fn kill(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// The operator takes the broken release out of service (scales it to zero): the restart
/// has nothing left to wait for.
fn scale_to_zero(sim: &ripcord::sim::SimCluster) {
    let rt = ripcord::sim::store::kinds::deployments();
    let mut deployment = sim
        .store()
        .get(&rt, Some("shop"), "frontend")
        .expect("frontend exists");
    deployment["spec"]["replicas"] = json!(0);
    sim.store().update(&rt, deployment).expect("scaled to zero");
}

async fn signal_stops_a_waiting_restart(signals: &[&str]) {
    let sim = start_yaml(NEVER_READY).await;
    wait_until("4 frontend pods", || {
        app_pods(&sim, "shop", "frontend").len() == 4
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    sim.write_kubeconfig(&dir.path().join("kubeconfig"))
        .expect("kubeconfig written");
    let state = dir.path().join("state");
    let args = [
        "restart",
        "deployment/frontend",
        "-n",
        "shop",
        "--batch",
        "1",
        "--warmup",
        "0s",
        "--yes",
    ];
    let child = ripcord_command(dir.path(), &args)
        .spawn()
        .expect("ripcord runs");
    let pid = child.id().expect("pid");
    wait_until("the restart marker journaled", || {
        only_journal(&state).is_some_and(|(_, e)| marker_applied(&e))
    })
    .await;
    // The run now waits for Ready pods that never come.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = std::time::Instant::now();
    for signal in signals {
        kill(signal, pid);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("ripcord ended after the signal (it used to wait out the step timeout)")
        .expect("output");
    let elapsed = sent.elapsed();
    eprintln!("{signals:?}: the process exited {elapsed:?} after the signal");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(130), "{signals:?}: {stderr}");
    assert!(
        elapsed < Duration::from_secs(2),
        "stopped after {elapsed:?}"
    );
    let (run_id, entries) = only_journal(&state).expect("journal");
    if signals.len() == 1 {
        let finished = entries.iter().rev().find_map(|e| match &e.record {
            ripcord::journal::Record::RunFinished { outcome, .. } => Some(*outcome),
            _ => None,
        });
        assert_eq!(finished, Some(ripcord::journal::Outcome::Interrupted));
    }

    // Resumable: once nothing blocks the restart any more, the resumed run completes.
    scale_to_zero(&sim);
    let resumed = ripcord_command(dir.path(), &["run", "--resume", &run_id])
        .spawn()
        .expect("ripcord runs")
        .wait_with_output();
    let out = tokio::time::timeout(Duration::from_secs(120), resumed)
        .await
        .expect("the resumed run finished")
        .expect("output");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_ctrl_c_stops_a_restart_waiting_for_readiness_within_2s() {
    signal_stops_a_waiting_restart(&["-INT"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_sigterm_stops_a_restart_waiting_for_readiness_within_2s() {
    signal_stops_a_waiting_restart(&["-TERM"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_a_second_ctrl_c_exits_at_once_with_a_whole_journal() {
    signal_stops_a_waiting_restart(&["-INT", "-INT"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_a_tripped_stop_condition_stops_a_restart_waiting_for_readiness() {
    use ripcord::engine::{Engine, RunOptions, StopHandle, StopReason};
    let sim = start_yaml(NEVER_READY).await;
    wait_until("4 frontend pods", || {
        app_pods(&sim, "shop", "frontend").len() == 4
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let valid = ripcord::playbook::parse::load_builtin("rolling-restart").expect("builtin loads");
    let params = BTreeMap::from([
        ("name".to_string(), "frontend".to_string()),
        ("namespace".to_string(), "shop".to_string()),
        ("batch".to_string(), "1".to_string()),
        ("warmup".to_string(), "0s".to_string()),
    ]);
    let plan = ripcord::plan::plan(&valid, &params, &ripcord::journal::new_run_id()).expect("plan");
    let run_id = plan.run_id.clone();
    let stop = StopHandle::new();
    let mut opts = RunOptions::new("test", dir.path());
    opts.namespace = Some("shop".into());
    opts.stop = Some(stop.clone());
    let engine = Engine::new(sim.client(), reqwest::Client::new());
    let run = tokio::spawn(async move { engine.run(plan, opts, None).await });
    let state = dir.path().to_path_buf();
    wait_until("the restart marker journaled", || {
        ripcord::journal::read(&ripcord::journal::journal_path(&state, &run_id))
            .is_ok_and(|(e, _)| marker_applied(&e))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tripped = std::time::Instant::now();
    stop.stop(StopReason::Guard {
        guard: "error-ratio".into(),
        reason: "0.07 > 0.05".into(),
    });
    let outcome = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run stopped (it used to wait on for the step timeout)")
        .expect("task")
        .expect("run");
    eprintln!(
        "stop condition: the run ended {:?} after the trip",
        tripped.elapsed()
    );
    assert!(
        tripped.elapsed() < Duration::from_secs(2),
        "{:?}",
        tripped.elapsed()
    );
    assert_eq!(outcome.outcome, ripcord::journal::Outcome::Stopped);
    assert_eq!(ripcord::cli::run::exit_for(outcome.outcome).code(), 1);
    assert!(outcome.outcome.is_resumable());
    sim.shutdown().await;
}

/// Issue 15: the restart counts Terminating pods. With batch 1 and a grace period longer than
/// a replacement takes to become Ready, the next pod is evicted only once the previous one is
/// gone: never two of the Deployment's pods terminating at once.
#[tokio::test]
async fn issue15_restart_never_has_more_than_a_batch_terminating() {
    let sim = start_yaml(
        "name: slow-stop
settings: {timeFactor: 20, podReadyDelaySeconds: 2, podStartDelaySeconds: 1}
zones:
  - {name: zone-a, nodes: 2}
namespaces: [shop]
deployments:
  - namespace: shop
    name: slow
    replicas: 3
    terminationGracePeriodSeconds: 20
    releases:
      - image: registry.local/slow:1
",
    )
    .await;
    wait_until("slow ready", || all_ready(&sim, "shop", "slow", 3)).await;
    // Follow every pod change and keep the most Terminating pods seen at once.
    let mut events = sim.store().subscribe();
    let max_terminating = Arc::new(Mutex::new(0usize));
    let seen = max_terminating.clone();
    let watcher = tokio::spawn(async move {
        let mut terminating: BTreeSet<String> = BTreeSet::new();
        while let Ok(event) = events.recv().await {
            if event.resource.plural != "pods" {
                continue;
            }
            let name = str_at(&event.object, "/metadata/name")
                .unwrap_or_default()
                .to_string();
            let deleting = event
                .object
                .pointer("/metadata/deletionTimestamp")
                .is_some();
            if deleting && event.kind != ripcord::sim::store::EventKind::Deleted {
                terminating.insert(name);
            } else {
                terminating.remove(&name);
            }
            let mut max = seen.lock().unwrap_or_else(|e| e.into_inner());
            *max = (*max).max(terminating.len());
        }
    });
    let parsed: catalog::Action = serde_json::from_value(json!({
        "action": "deployment.restart",
        "with": {"namespace": "shop", "name": "slow", "batch": 1}
    }))
    .expect("catalog action parses");
    let restart = actions::build(&parsed).expect("action builds");
    let ctx = context(&sim, "r-20261202-230000-slow", "restart");
    let driven = drive(restart.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("restart finishes");
    assert!(
        driven
            .last_summary
            .contains("all 3 listed pod(s) restarted"),
        "{}",
        driven.last_summary
    );
    watcher.abort();
    let max = *max_terminating.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(max, 1, "pods terminating at once during a batch-1 restart");
    sim.shutdown().await;
}

// === issue 16: no live traffic to a cold pod (readiness gate ripcord.dev/warmed) ===

const GATE: &str = "ripcord.dev/warmed";

/// Six replicas whose pod template declares the readiness gate, behind a Service.
const GATED: &str = r#"
name: restart-gated
settings: {timeFactor: 20, podReadyDelaySeconds: 2, podStartDelaySeconds: 1, terminationGracePeriodSeconds: 4}
zones:
  - {name: zone-a, nodes: 2}
  - {name: zone-b, nodes: 2}
namespaces: [shop]
deployments:
  - namespace: shop
    name: frontend
    replicas: 6
    readinessGates: [ripcord.dev/warmed]
    releases:
      - image: registry.local/frontend:1
services:
  - {namespace: shop, name: frontend, selector: {app: frontend}}
"#;

fn gated_restart(extra: Value) -> Box<dyn Action> {
    let mut with = json!({
        "namespace": "shop", "name": "frontend", "batch": 2, "warmup": "0s",
        "warmupRequest": {"port": 8080, "path": "/warm", "via": "proxy"}
    });
    if let (Some(with), Some(extra)) = (with.as_object_mut(), extra.as_object()) {
        with.extend(extra.clone());
    }
    let parsed: catalog::Action =
        serde_json::from_value(json!({"action": "deployment.restart", "with": with}))
            .expect("catalog action parses");
    actions::build(&parsed).expect("action builds")
}

fn gate_status(pod: &Value) -> Option<String> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == GATE)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

/// The `seq` of the first request-log record matching, per pod name.
fn first_seq(
    sim: &ripcord::sim::SimCluster,
    matches: impl Fn(&ripcord::sim::faults::RequestRecord) -> Option<String>,
) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in sim.request_log() {
        if let Some(pod) = matches(&record) {
            out.entry(pod).or_default().push(record.seq);
        }
    }
    out
}

/// Warm-up calls through the pod proxy that the sim answered 2xx, by pod.
fn warmups(sim: &ripcord::sim::SimCluster) -> BTreeMap<String, Vec<u64>> {
    first_seq(sim, |r| {
        let rest = r.path.strip_prefix("/api/v1/namespaces/shop/pods/")?;
        let (pod, tail) = rest.split_once(':')?;
        (tail.ends_with("/proxy/warm") && r.status < 300).then(|| pod.to_string())
    })
}

/// Successful `pods/NAME/status` patches, by pod.
fn status_patches(sim: &ripcord::sim::SimCluster) -> BTreeMap<String, Vec<u64>> {
    first_seq(sim, |r| {
        let rest = r.path.strip_prefix("/api/v1/namespaces/shop/pods/")?;
        let pod = rest.strip_suffix("/status")?;
        (r.method == "PATCH" && r.status < 300).then(|| pod.to_string())
    })
}

/// Follows the store: every time the Service's endpoints list a pod as ready, the pod's last
/// change seen before must have been Ready with the gate condition `True`. Returns the
/// violations and the pods ever listed.
/// The endpoints watcher: its task, the violations, the pods ever listed.
type EndpointsWatch = (
    tokio::task::JoinHandle<()>,
    Arc<Mutex<Vec<String>>>,
    Arc<Mutex<BTreeSet<String>>>,
);

fn watch_endpoints(sim: &ripcord::sim::SimCluster) -> EndpointsWatch {
    let mut events = sim.store().subscribe();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let listed: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let (v, l) = (violations.clone(), listed.clone());
    // The pods that exist now (subscribed after them), as they are now.
    let mut released: BTreeMap<String, bool> = app_pods(sim, "shop", "frontend")
        .iter()
        .map(|p| {
            let ok = pod_ready(p) && gate_status(p).as_deref() == Some("True");
            (
                str_at(p, "/metadata/name").unwrap_or_default().to_string(),
                ok,
            )
        })
        .collect();
    let task = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            let name = str_at(&event.object, "/metadata/name")
                .unwrap_or_default()
                .to_string();
            match event.resource.plural.as_str() {
                "pods" => {
                    let ok = pod_ready(&event.object)
                        && gate_status(&event.object).as_deref() == Some("True");
                    released.insert(name, ok);
                }
                "endpoints" if name == "frontend" => {
                    let addresses = event
                        .object
                        .pointer("/subsets/0/addresses")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for a in addresses {
                        let pod = a["targetRef"]["name"].as_str().unwrap_or_default();
                        if released.get(pod) != Some(&true) {
                            v.lock().unwrap().push(format!(
                                "endpoints rv {} list {pod} before it was warmed and released",
                                event.rv
                            ));
                        }
                        l.lock().unwrap().insert(pod.to_string());
                    }
                }
                _ => {}
            }
        }
    });
    (task, violations, listed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_gated_restart_sends_no_live_traffic_to_a_cold_pod() {
    let sim = start_yaml(GATED).await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 6)).await;
    let original = pod_names(&app_pods(&sim, "shop", "frontend"));
    let (watcher, violations, listed) = watch_endpoints(&sim);
    let state = tempfile::tempdir().expect("tempdir");
    let run = "r-20261203-061500-gate";
    std::fs::create_dir_all(ripcord::journal::run_dir(state.path(), run)).expect("run dir");
    let mut ctx = context(&sim, run, "restart");
    ctx.state_dir = Some(state.path().to_path_buf());
    let restart = gated_restart(json!({}));
    let driven = drive(restart.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("gated restart finishes");
    assert!(
        driven
            .last_summary
            .contains("all 6 listed pod(s) restarted"),
        "{}",
        driven.last_summary
    );
    wait_until("frontend ready again", || {
        all_ready(&sim, "shop", "frontend", 6)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    watcher.abort();
    let new = pod_names(&app_pods(&sim, "shop", "frontend"));
    assert!(new.is_disjoint(&original));
    for pod in app_pods(&sim, "shop", "frontend") {
        assert_eq!(gate_status(&pod).as_deref(), Some("True"), "{pod:#}");
    }
    // Endpoints listed a pod only once released (store order) …
    let violations = violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    let listed = listed.lock().unwrap().clone();
    assert!(
        new.is_subset(&listed),
        "new pods never served: {new:?} vs {listed:?}"
    );
    // … and a pod was released only after its warm-up call answered (request order).
    let (warm, released) = (warmups(&sim), status_patches(&sim));
    for pod in &new {
        let w = warm.get(pod).and_then(|s| s.first()).copied();
        let r = released.get(pod).cloned().unwrap_or_default();
        assert_eq!(r.len(), 1, "{pod}: status patches {r:?}");
        assert!(
            w.is_some_and(|w| w < r[0]),
            "{pod}: warm-up {w:?} not before its release {r:?}"
        );
    }
    // Never more than a batch out of service, nothing left for the invariants.
    assert!(sim.invariants().max_unready("shop", "frontend") <= 2);
    // Each release is in the warm-up log.
    let log = std::fs::read_to_string(
        ripcord::journal::run_dir(state.path(), run)
            .join(ripcord::actions::deployment_restart::WARMUP_LOG),
    )
    .expect("warm-up log");
    let releases = log
        .lines()
        .filter(|l| l.contains("\"event\":\"gate-released\""))
        .count();
    assert_eq!(releases, 6, "{log}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_failed_warmup_keeps_the_pod_out_of_endpoints_and_says_how_to_release_it() {
    let sim = start_yaml(GATED).await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 6)).await;
    let ctx = context(&sim, "r-20261203-062000-cold", "restart");
    // The sim's proxy answers 200; expecting 204 makes every warm-up fail.
    let restart = gated_restart(json!({
        "warmupRequest": {"port": 8080, "path": "/warm", "via": "proxy", "expectedStatus": 204}
    }));
    let err = drive(restart.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect_err("the warm-up fails the step");
    let message = err.to_string();
    assert!(message.contains("answered 200, expected 204"), "{message}");
    assert!(
        message.contains("stays out of its Services' endpoints"),
        "{message}"
    );
    assert!(message.contains("--subresource=status"), "{message}");
    // The new pods: containers ready, gate not released, not Ready, not in the endpoints.
    let held: Vec<Value> = app_pods(&sim, "shop", "frontend")
        .into_iter()
        .filter(|p| gate_status(p).is_none())
        .collect();
    assert_eq!(held.len(), 2, "one batch held");
    let endpoints = sim
        .store()
        .get(
            &ripcord::sim::store::kinds::endpoints(),
            Some("shop"),
            "frontend",
        )
        .expect("endpoints");
    let serving: BTreeSet<String> = endpoints
        .pointer("/subsets/0/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a["targetRef"]["name"].as_str().map(str::to_string))
        .collect();
    for pod in &held {
        let name = str_at(pod, "/metadata/name").unwrap_or_default();
        assert!(!pod_ready(pod));
        assert!(
            message.contains(name) || message.contains("shop/"),
            "{message}"
        );
        assert!(!serving.contains(name), "{name} serves traffic cold");
    }
    assert!(status_patches(&sim).is_empty(), "nothing released");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_require_refuses_before_any_write_with_the_yaml_to_add() {
    let sim = start_yaml(NEVER_READY.replace("bad: notReady", "").as_str()).await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 4)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    sim.write_kubeconfig(&dir.path().join("kubeconfig"))
        .expect("kubeconfig written");
    let writes_before = sim.write_request_count();
    let out = ripcord_command(
        dir.path(),
        &[
            "restart",
            "deployment/frontend",
            "-n",
            "shop",
            "--batch",
            "1",
            "--readiness-gate",
            "require",
            "--yes",
        ],
    )
    .output()
    .await
    .expect("ripcord runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    let all = format!("{stdout}\n{stderr}");
    assert!(all.contains("readinessGates:"), "{all}");
    assert!(all.contains("- conditionType: ripcord.dev/warmed"), "{all}");
    let deployment = sim
        .store()
        .get(
            &ripcord::sim::store::kinds::deployments(),
            Some("shop"),
            "frontend",
        )
        .expect("frontend");
    assert!(
        deployment
            .pointer("/metadata/annotations/ripcord.dev~1restart")
            .is_none(),
        "the restart marker was written"
    );
    let evictions = sim
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .count();
    assert_eq!(evictions, 0);
    // Only ripcord's own bookkeeping (lock Lease, Run resource) may have been written.
    let pod_or_deploy_writes = sim
        .request_log()
        .iter()
        .filter(|r| r.seq as usize > writes_before)
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
        .filter(|r| r.path.contains("/deployments/") || r.path.contains("/pods/"))
        .count();
    assert_eq!(pod_or_deploy_writes, 0);
    sim.shutdown().await;
}

/// A crash after a batch's gates were released: the resumed run (a fresh action, verify first
/// as the engine resumes) warms those pods again (idempotent warm-ups) but never patches a
/// released pod's status a second time, and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_resume_after_a_crash_does_not_release_twice() {
    let sim = start_yaml(GATED).await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 6)).await;
    let ctx = context(&sim, "r-20261203-062500-crsh", "restart");
    let first = gated_restart(json!({}));
    // Marker, batch 1 (2 evictions) → verify releases them, then batch 2's 2 evictions,
    // killed before their verify.
    let driven = drive(first.as_ref(), &ctx, Vec::new(), Some(1 + 2 + 2), |_| {})
        .await
        .expect("first part");
    assert!(driven.interrupted);
    drop(first);
    let second = gated_restart(json!({}));
    // The engine resumes an unverified round with its verify.
    second
        .verify(&ctx, &driven.applied)
        .await
        .expect("resumed verify");
    let resumed = drive(second.as_ref(), &ctx, driven.applied.clone(), None, |_| {})
        .await
        .expect("resumed restart finishes");
    assert!(
        resumed
            .last_summary
            .contains("all 6 listed pod(s) restarted"),
        "{}",
        resumed.last_summary
    );
    wait_until("frontend ready again", || {
        all_ready(&sim, "shop", "frontend", 6)
    })
    .await;
    let patches = status_patches(&sim);
    assert_eq!(patches.len(), 6, "{patches:?}");
    assert!(patches.values().all(|s| s.len() == 1), "{patches:?}");
    sim.shutdown().await;
}

// === issue 16: the daemon releases gated pods of rollouts nobody warms ===

async fn kubectl_rollout_restart(sim: &ripcord::sim::SimCluster, stamp: &str) {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(sim.client(), "shop");
    api.patch(
        "frontend",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": stamp}}}}})),
    )
    .await
    .expect("rollout restart");
}

fn start_warm_gate(
    sim: &ripcord::sim::SimCluster,
    lock_namespace: &str,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<ripcord::daemon::metrics::DaemonMetrics>,
    tokio::sync::watch::Sender<bool>,
) {
    let metrics = Arc::new(ripcord::daemon::metrics::DaemonMetrics::new());
    let (leader_tx, leader) = tokio::sync::watch::channel(true);
    let task = ripcord::daemon::warm_gate::WarmGate {
        client: sim.client(),
        http: reqwest::Client::new(),
        leader,
        metrics: metrics.clone(),
        lock_namespace: Some(lock_namespace.into()),
        call_timeout: Duration::from_secs(5),
        concurrency: 2,
        recheck: Duration::from_millis(200),
    }
    .spawn();
    (task, metrics, leader_tx)
}

fn rolled(sim: &ripcord::sim::SimCluster, before: &BTreeSet<String>) -> bool {
    let pods = app_pods(sim, "shop", "frontend");
    pods.len() == 6 && pods.iter().all(pod_ready) && pod_names(&pods).is_disjoint(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_daemon_releases_gated_pods_of_a_kubectl_rollout() {
    let sim = start_yaml(GATED).await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 6)).await;
    let (task, metrics, _leader) = start_warm_gate(&sim, "shop");

    // Without the warm-up annotation: released once the containers are ready.
    let before = pod_names(&app_pods(&sim, "shop", "frontend"));
    kubectl_rollout_restart(&sim, "2026-12-03T06:00:00Z").await;
    wait_until("the rollout completed", || rolled(&sim, &before)).await;
    for pod in app_pods(&sim, "shop", "frontend") {
        assert_eq!(gate_status(&pod).as_deref(), Some("True"));
    }
    assert!(
        warmups(&sim).is_empty(),
        "nothing to warm without the annotation"
    );
    let text = metrics.render();
    assert!(
        text.contains("ripcord_warm_gate_releases_total{outcome=\"released\"} 6"),
        "{text}"
    );

    // With it: each pod warmed (through the proxy) before its release.
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(sim.client(), "shop");
    api.patch(
        "frontend",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
            "ripcord.dev/warmup": r#"{"port": 8080, "path": "/warm", "via": "proxy"}"#}}})),
    )
    .await
    .expect("annotated");
    let before = pod_names(&app_pods(&sim, "shop", "frontend"));
    kubectl_rollout_restart(&sim, "2026-12-03T06:10:00Z").await;
    wait_until("the second rollout completed", || rolled(&sim, &before)).await;
    let (warm, released) = (warmups(&sim), status_patches(&sim));
    for pod in pod_names(&app_pods(&sim, "shop", "frontend")) {
        let w = warm.get(&pod).and_then(|s| s.first()).copied();
        let r = released.get(&pod).cloned().unwrap_or_default();
        assert_eq!(r.len(), 1, "{pod}: {r:?}");
        assert!(
            w.is_some_and(|w| w < r[0]),
            "{pod}: warm-up {w:?}, release {r:?}"
        );
    }
    let text = metrics.render();
    assert!(
        text.contains("ripcord_warm_gate_releases_total{outcome=\"warmed\"} 6"),
        "{text}"
    );
    task.abort();
    sim.shutdown().await;
}

/// A live lock Lease on the Deployment (a running ripcord restart, here a CLI run's, in the
/// Deployment's namespace while the daemon locks in its own) keeps the controller's hands off
/// its pods; once the Lease expires (the run crashed) the controller releases them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_daemon_leaves_a_running_restarts_pods_alone() {
    let sim = start_yaml(GATED).await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 6)).await;
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(sim.client(), "shop");
    let name = ripcord::k8s::leases::lease_name("deployment/shop/frontend");
    let now = jiff::Timestamp::now();
    leases
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"holderIdentity": "r-20261203-063000-held", "leaseDurationSeconds": 3,
                         "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
            }))
            .expect("lease"),
        )
        .await
        .expect("lease created");
    // The daemon locks in its own namespace; this Lease is where a CLI restart locks (the
    // Deployment's namespace): the controller must see it there too.
    let (task, _metrics, _leader) = start_warm_gate(&sim, "ripcord");
    let before = pod_names(&app_pods(&sim, "shop", "frontend"));
    kubectl_rollout_restart(&sim, "2026-12-03T06:30:00Z").await;
    wait_until("a held pod", || {
        app_pods(&sim, "shop", "frontend").iter().any(|p| {
            gate_status(p).is_none()
                && p.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "ContainersReady" && c["status"] == "True")
                    })
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        status_patches(&sim).is_empty(),
        "released under a live lock"
    );
    // The Lease runs out (3 s): the pods are released and the rollout completes.
    wait_until("the rollout completed", || rolled(&sim, &before)).await;
    task.abort();
    sim.shutdown().await;
}

// === issue 18: readiness from a watch ===

/// A restart's verify follows the pods through a watch instead of re-reading the Deployment
/// and its pods every 100 ms, and the next diff reuses the state the verify ended with. The
/// watch is the step's, not the batch's: one watch and its list for the four batches, plus the
/// first diff's list; per batch one read of the Deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_restart_waits_on_a_watch_not_a_poll() {
    let sim = start_file("restart-12.yaml").await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 12)).await;
    let seq_before = sim.request_log().last().map(|r| r.seq).unwrap_or(0);
    let parsed: catalog::Action = serde_json::from_value(json!({
        "action": "deployment.restart",
        "with": {"namespace": "shop", "name": "frontend", "batch": 3}
    }))
    .expect("catalog action parses");
    let restart = actions::build(&parsed).expect("action builds");
    let ctx = context(&sim, "r-20261203-064500-wtch", "restart");
    let driven = drive(restart.as_ref(), &ctx, Vec::new(), None, |_| {})
        .await
        .expect("restart finishes");
    assert!(
        driven
            .last_summary
            .contains("all 12 listed pod(s) restarted"),
        "{}",
        driven.last_summary
    );
    let log: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.seq > seq_before)
        .collect();
    let pod_lists = log
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/shop/pods" && r.verb == "list")
        .count();
    let pod_watches = log
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/shop/pods" && r.verb == "watch")
        .count();
    let deployment_gets = log
        .iter()
        .filter(|r| {
            r.path == "/apis/apps/v1/namespaces/shop/deployments/frontend" && r.verb == "get"
        })
        .count();
    eprintln!(
        "4 batches: {pod_lists} pod lists, {pod_watches} pod watches, {deployment_gets} Deployment reads"
    );
    assert_eq!(pod_watches, 1, "one watch for the step");
    assert!(
        pod_lists <= 2,
        "pod lists: {pod_lists} (one per batch, or polling?)"
    );
    assert!(
        deployment_gets <= 10,
        "Deployment reads: {deployment_gets} (polling?)"
    );
    sim.shutdown().await;
}

/// Without leader election the daemon drops the leadership channel's sender (the value stays
/// `true`): the controller must keep one pod watch, not wake on the closed channel and restart
/// its watch in a loop (which it did: a million restarts in a few seconds, each a new LIST).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_warm_gate_without_leader_election_keeps_one_watch() {
    let sim = start_yaml(GATED).await;
    wait_until("frontend ready", || all_ready(&sim, "shop", "frontend", 6)).await;
    let (task, metrics, leader) = start_warm_gate(&sim, "shop");
    drop(leader);
    let before = pod_names(&app_pods(&sim, "shop", "frontend"));
    kubectl_rollout_restart(&sim, "2026-12-03T07:00:00Z").await;
    wait_until("the rollout completed", || rolled(&sim, &before)).await;
    let text = metrics.render();
    assert!(
        text.contains("ripcord_warm_gate_releases_total{outcome=\"released\"} 6"),
        "{text}"
    );
    let pod_lists: Vec<String> = sim
        .request_log()
        .iter()
        .filter(|r| r.path == "/api/v1/pods")
        .map(|r| format!("{} {}?{}", r.verb, r.path, r.query))
        .collect();
    assert!(
        !task.is_finished() && pod_lists.len() <= 3,
        "one list and one watch of the cluster's pods, not {}: {:?}",
        pod_lists.len(),
        pod_lists.iter().take(5).collect::<Vec<_>>()
    );
    task.abort();
    sim.shutdown().await;
}
