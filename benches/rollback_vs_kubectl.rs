//! `ripcord rollback --yes` versus `kubectl rollout undo && kubectl rollout status` on the same
//! simulated cluster (the demo scenario: a bad release of shop/checkout rolling out) with 5 ms
//! of injected API latency. Measures, per tool: wall time to the first mutation (the PATCH of
//! the Deployment appearing in the sim's request log), total wall time, and API requests (the
//! sim's request log); prints medians and ripcord/kubectl ratios.
//!
//! Run: `cargo bench --bench rollback_vs_kubectl` (add `--profile dev` to skip the release
//! build). `RIPCORD_BENCH_TRIALS` sets the trials per tool (default 3). kubectl must be on the
//! PATH (or `KUBECTL=/path/to/kubectl`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(5);
const PATCH_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout";

#[derive(Debug, Clone, Copy)]
struct Sample {
    first_mutation: Duration,
    total: Duration,
    requests: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Ripcord,
    Kubectl,
}

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
    let trials: usize = std::env::var("RIPCORD_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    runtime.block_on(async move {
        let mut ripcord = Vec::new();
        let mut kubectl = Vec::new();
        for trial in 0..trials {
            for tool in [Tool::Ripcord, Tool::Kubectl] {
                match measure(tool).await {
                    Ok(sample) => {
                        let name = if tool == Tool::Ripcord { "ripcord" } else { "kubectl" };
                        println!(
                            "trial {trial} {name:<8} first mutation {:>7.1} ms  total {:>8.1} ms  requests {:>4}",
                            ms(sample.first_mutation),
                            ms(sample.total),
                            sample.requests
                        );
                        if tool == Tool::Ripcord {
                            ripcord.push(sample);
                        } else {
                            kubectl.push(sample);
                        }
                    }
                    Err(err) => {
                        eprintln!("trial {trial} failed: {err}");
                        std::process::exit(1);
                    }
                }
            }
        }
        let r = median(&ripcord);
        let k = median(&kubectl);
        println!("\nmedians over {trials} trial(s), {} ms injected API latency:", LATENCY.as_millis());
        println!("{:<28} {:>12} {:>12} {:>10}", "", "ripcord", "kubectl", "ratio");
        println!(
            "{:<28} {:>9.1} ms {:>9.1} ms {:>10.2}",
            "time to first mutation",
            ms(r.first_mutation),
            ms(k.first_mutation),
            ms(r.first_mutation) / ms(k.first_mutation)
        );
        println!(
            "{:<28} {:>9.1} ms {:>9.1} ms {:>10.2}",
            "total (rolled out)",
            ms(r.total),
            ms(k.total),
            ms(r.total) / ms(k.total)
        );
        println!(
            "{:<28} {:>12} {:>12} {:>10.2}",
            "API requests",
            r.requests,
            k.requests,
            r.requests as f64 / k.requests.max(1) as f64
        );
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(samples: &[Sample]) -> Sample {
    let mut first: Vec<Duration> = samples.iter().map(|s| s.first_mutation).collect();
    let mut total: Vec<Duration> = samples.iter().map(|s| s.total).collect();
    let mut requests: Vec<usize> = samples.iter().map(|s| s.requests).collect();
    first.sort();
    total.sort();
    requests.sort();
    let mid = samples.len() / 2;
    Sample {
        first_mutation: first[mid],
        total: total[mid],
        requests: requests[mid],
    }
}

async fn measure(tool: Tool) -> Result<Sample, String> {
    let sim = SimCluster::start(SimOptions {
        scenario: Scenario::demo(),
        addr: None,
    })
    .await
    .map_err(|e| format!("sim: {e}"))?;
    let sim = Arc::new(sim);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)
        .map_err(|e| e.to_string())?;
    wait_bad_release(&sim).await?;
    sim.faults().set_latency(LATENCY);
    let before = sim.request_log().iter().map(|r| r.seq).max().unwrap_or(0);

    // Watch the request log for the first PATCH of the Deployment.
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let watcher = {
        let sim = sim.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if sim
                    .request_log()
                    .iter()
                    .any(|r| r.seq > before && r.method == "PATCH" && r.path == PATCH_PATH)
                {
                    return Some(start.elapsed());
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            None
        })
    };

    let status = match tool {
        Tool::Ripcord => {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
                .args(["rollback", "deployment/checkout", "-n", "shop", "--yes"])
                .env("KUBECONFIG", &kubeconfig)
                .env("RIPCORD_STATE_DIR", dir.path().join("state"))
                .env("RIPCORD_CONFIG", "/dev/null")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await
        }
        Tool::Kubectl => {
            let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
            let script = format!(
                "{kubectl} --kubeconfig {k} -n shop rollout undo deployment/checkout && \
                 {kubectl} --kubeconfig {k} -n shop rollout status deployment/checkout --timeout=5m",
                k = kubeconfig.display()
            );
            tokio::process::Command::new("sh")
                .args(["-c", &script])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await
        }
    }
    .map_err(|e| format!("cannot run the tool: {e}"))?;
    let total = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let first_mutation = watcher
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the Deployment was never patched")?;
    if !status.success() {
        return Err(format!("the tool failed: {status}"));
    }
    let image = sim
        .store()
        .get(&kinds::deployments(), Some("shop"), "checkout")
        .and_then(|d| {
            d.pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    if !image.ends_with(":1.4.2") {
        return Err(format!("not rolled back: image {image}"));
    }
    let log: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.seq > before)
        .collect();
    let requests = log.len();
    if std::env::var_os("RIPCORD_BENCH_BREAKDOWN").is_some() {
        let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
        for r in &log {
            let resource = r
                .path
                .rsplit('/')
                .find(|seg| {
                    !seg.is_empty()
                        && !seg.starts_with("checkout")
                        && !seg.starts_with("ripcord-lock")
                        && !seg.starts_with("r-")
                })
                .unwrap_or("?");
            *by_kind
                .entry(format!("{} {resource}", r.method))
                .or_default() += 1;
        }
        let name = if tool == Tool::Ripcord {
            "ripcord"
        } else {
            "kubectl"
        };
        println!("  {name} requests: {by_kind:?}");
    }
    Ok(Sample {
        first_mutation,
        total,
        requests,
    })
}

async fn wait_bad_release(sim: &SimCluster) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let (rs, _) = sim.store().list(&kinds::replicasets(), Some("shop"));
        if rs.len() >= 2 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the bad release did not start".into())
}
