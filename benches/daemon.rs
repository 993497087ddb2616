//! The daemon's footprint and reaction time, measured on the real binary
//! (`ripcord daemon`) against a simulated cluster over loopback:
//!
//! - idle memory: the daemon's resident set size (VmRSS) after it has been ready and idle for
//!   a few seconds;
//! - webhook-to-first-mutation latency over N alerts (default 200): for each of N Deployments
//!   with a bad release rolling out, one Alertmanager webhook is posted and the clock stops when
//!   the Deployment's template is rolled back in the sim's store (the rollback's PATCH). Alerts
//!   go one after the other; earlier runs keep executing (waiting for their rollouts), so later
//!   alerts are measured under load. Prints p50, p90, p99 and max.
//!
//! Every API request the daemon makes gets 5 ms of injected latency (as in `benches/compare.rs`;
//! `RIPCORD_BENCH_LATENCY_MS` overrides it). The harness does not poll: it waits on the sim
//! store's change feed (`Store::subscribe`) for the Deployment's new template, so that on this
//! machine's two cores the measurement does not take CPU from the daemon it measures.
//!
//! Run: `cargo bench --bench daemon` (add `--profile dev` to skip the release build).
//! `RIPCORD_BENCH_ALERTS` sets N.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";
const NAMESPACE: &str = "bench";
/// The API latency injected on every request, as in `benches/compare.rs`.
const LATENCY: Duration = Duration::from_millis(5);

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    let alerts: usize = std::env::var("RIPCORD_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(1);
    if let Err(err) = runtime.block_on(bench(alerts)) {
        eprintln!("benchmark failed: {err}");
        std::process::exit(1);
    }
}

fn scenario(deployments: usize) -> String {
    let mut yaml = String::from(
        "name: daemon-bench\nsettings:\n  timeFactor: 10\n  podReadyDelaySeconds: 2\n  podStartDelaySeconds: 1\nzones:\n  - {name: zone-a, nodes: 4, cpu: \"64\", memory: 256Gi}\nnamespaces: [bench]\ndeployments:\n",
    );
    for i in 0..deployments {
        let _ = write!(
            yaml,
            "  - namespace: bench\n    name: d{i}\n    replicas: 1\n    cpuRequest: 10m\n    memoryRequest: 16Mi\n    releases:\n      - image: registry.local/d{i}:1.0.0\n      - image: registry.local/d{i}:1.1.0\n        bad: notReady\n    rollout: inProgress\n"
        );
    }
    yaml
}

fn image(sim: &SimCluster, name: &str) -> String {
    sim.store()
        .get(&kinds::deployments(), Some(NAMESPACE), name)
        .and_then(|d| {
            d.pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn alert(name: &str) -> String {
    serde_json::json!({
        "version": "4", "status": "firing", "receiver": "ripcord", "groupKey": format!("{{}}:{{deployment=\"{name}\"}}"),
        "alerts": [{"status": "firing", "fingerprint": name,
            "labels": {"alertname": "HighErrorRate", "namespace": NAMESPACE, "deployment": name}}]
    })
    .to_string()
}

/// The requests the daemon made from the first alert to its mutation, in order: what a
/// webhook's latency is made of (each one pays the injected latency).
fn print_path_to_mutation(sim: &SimCluster, from: usize) {
    let log = sim.request_log();
    let Some(path) = log.get(from..) else { return };
    println!(
        "requests from the first alert to its mutation ({}):",
        path.len()
    );
    for r in path.iter().take(40) {
        println!(
            "  {} {} {}{}{} -> {}",
            r.verb,
            r.method,
            r.path,
            if r.query.is_empty() { "" } else { "?" },
            r.query,
            r.status
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn bench(alerts: usize) -> Result<(), String> {
    let sim = SimCluster::start(SimOptions {
        scenario: Scenario::from_yaml("daemon-bench", &scenario(alerts))
            .map_err(|e| e.to_string())?,
        addr: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = |name: &str| dir.path().join(name);
    sim.write_kubeconfig(&path("kubeconfig"))
        .map_err(|e| e.to_string())?;
    std::fs::write(path("tokens"), format!("{TOKEN}\n")).map_err(|e| e.to_string())?;
    std::fs::write(
        path("daemon.yaml"),
        "leaderElection: {enabled: false}\nalertmanager:\n  maxRunsPerMinute: 100000\n  rules:\n    - name: high-error-rate\n      match: {alertname: HighErrorRate}\n      playbook: rollback\n      params: {namespace: \"$(labels.namespace)\", name: \"$(labels.deployment)\"}\n",
    )
    .map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log = std::fs::File::create(path("daemon.log")).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .args(["daemon", "--config"])
        .arg(path("daemon.yaml"))
        .arg("--kubeconfig")
        .arg(path("kubeconfig"))
        .arg("--state-dir")
        .arg(path("state"))
        .arg("--tokens-file")
        .arg(path("tokens"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("RIPCORD_NAMESPACE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start ripcord daemon: {e}"))?;
    let pid = child.id().ok_or("the daemon exited at once")?;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        if Instant::now() > ready_by {
            return Err(format!(
                "the daemon did not become ready; see {}",
                path("daemon.log").display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = rss_kib(pid).ok_or("cannot read the daemon's RSS")?;
    println!(
        "idle memory (VmRSS after 5 s ready and idle): {:.1} MiB",
        idle as f64 / 1024.0
    );

    let latency = std::env::var("RIPCORD_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(LATENCY);
    sim.faults().set_latency(latency);
    println!(
        "injected API latency: {} ms per request",
        latency.as_millis()
    );
    let mut changes = sim.store().subscribe();
    let mut latencies = Vec::with_capacity(alerts);
    for i in 0..alerts {
        let name = format!("d{i}");
        let bad = image(&sim, &name);
        // Changes before this alert (earlier runs' rollouts) are not its mutation.
        changes = changes.resubscribe();
        let seen = sim.request_log().len();
        let started = Instant::now();
        let response = http
            .post(format!("{base}/v1/alertmanager"))
            .bearer_auth(TOKEN)
            .body(alert(&name))
            .header("content-type", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("webhook answered {}", response.status()));
        }
        let deadline = tokio::time::Instant::from_std(started + Duration::from_secs(60));
        let rolled_back = |object: &Value| {
            object
                .pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .is_some_and(|image| image != bad)
        };
        loop {
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Ok(Ok(event)) => {
                    if event.resource == kinds::deployments()
                        && event.namespace() == Some(NAMESPACE)
                        && event
                            .object
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            == Some(name.as_str())
                        && rolled_back(&event.object)
                    {
                        latencies.push(started.elapsed());
                        if i == 0 {
                            print_path_to_mutation(&sim, seen);
                        }
                        break;
                    }
                }
                // The feed overflowed while this harness was descheduled: read the store once.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    if image(&sim, &name) != bad {
                        latencies.push(started.elapsed());
                        break;
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return Err("the simulated cluster stopped".into());
                }
                Err(_) => {
                    return Err(format!(
                        "alert {i}: no rollback of {name} within 60 s; see {}",
                        path("daemon.log").display()
                    ));
                }
            }
        }
    }
    sim.faults().set_latency(Duration::ZERO);
    let busy = rss_kib(pid).unwrap_or(0);
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "webhook-to-first-mutation over {alerts} alerts: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );
    println!(
        "memory after {alerts} runs: {:.1} MiB",
        busy as f64 / 1024.0
    );
    let _ = child.kill().await;
    // `RIPCORD_BENCH_LOG=FILE` keeps the daemon's log (run with `RUST_LOG=ripcord=debug` for
    // each step's timestamps).
    if let Ok(keep) = std::env::var("RIPCORD_BENCH_LOG") {
        let _ = std::fs::copy(path("daemon.log"), keep);
    }
    sim.shutdown().await;
    Ok(())
}
