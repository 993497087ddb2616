//! Scale benchmark of the simulated API server (no controllers): 1,000 nodes and 10,000 pods.
//!
//! Reports list latency (full list, and paged with `limit=500`, both over loopback HTTP with
//! JSON decoding), watch fan-out (N concurrent watchers each receiving M events) and the peak
//! resident memory (VmHWM). Run with `cargo bench --bench sim_scale`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use std::time::{Duration, Instant};

use ripcord::sim::clock::SimClock;
use ripcord::sim::faults::{Faults, RequestLog};
use ripcord::sim::server::{SimHooks, SimServer};
use ripcord::sim::store::{Store, kinds};
use serde_json::{Value, json};

const NODES: usize = 1_000;
const PODS: usize = 10_000;
const NAMESPACES: usize = 10;
const LIST_ROUNDS: usize = 5;
const WATCHERS: usize = 50;
const WATCH_EVENTS: usize = 1_000;

fn node(i: usize) -> Value {
    json!({
        "metadata": {"name": format!("node-{i:04}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i:04}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "spec": {"podCIDR": format!("10.{}.{}.0/24", i / 250, i % 250)},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                   "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                   "nodeInfo": {"kubeletVersion": "v1.34.0"}}
    })
}

fn pod(i: usize) -> Value {
    let app = format!("app-{}", i % 100);
    json!({
        "metadata": {"name": format!("{app}-{i:05}"), "namespace": format!("ns-{}", i % NAMESPACES),
            "labels": {"app": app, "pod-template-hash": "5d8f9c7b6"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-5d8f9c7b6"),
                                 "uid": "00000000-0000-4000-8000-000000000000", "controller": true}]},
        "spec": {"nodeName": format!("node-{:04}", i % NODES),
                 "containers": [{"name": "app", "image": format!("registry.local/{app}:1.0.0"),
                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
        "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i / 250 % 250, i % 250),
                   "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
                   "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                                          "image": format!("registry.local/{app}:1.0.0"),
                                          "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
    })
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    )
}

async fn list_all(http: &reqwest::Client, base: &str, limit: Option<usize>) -> usize {
    let mut count = 0;
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/pods");
        let mut params = Vec::new();
        if let Some(limit) = limit {
            params.push(format!("limit={limit}"));
        }
        if let Some(t) = &token {
            params.push(format!("continue={t}"));
        }
        if !params.is_empty() {
            url = format!("{url}?{}", params.join("&"));
        }
        let page: Value = http
            .get(&url)
            .send()
            .await
            .expect("list request")
            .json()
            .await
            .expect("list body");
        count += page["items"].as_array().map_or(0, Vec::len);
        token = page["metadata"]["continue"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return count;
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let started = Instant::now();
    let store = Store::new(SimClock::new(1.0));
    for n in 0..NAMESPACES {
        store
            .create(
                &kinds::namespaces(),
                json!({"metadata": {"name": format!("ns-{n}")}}),
            )
            .expect("namespace");
    }
    let load = Instant::now();
    for i in 0..NODES {
        store.create(&kinds::nodes(), node(i)).expect("node");
    }
    for i in 0..PODS {
        store.create(&kinds::pods(), pod(i)).expect("pod");
    }
    println!(
        "loaded {NODES} nodes and {PODS} pods into the store in {:.2} s (peak RSS {:.0} MiB)",
        load.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    let server = SimServer::start(
        store.clone(),
        Faults::new(1),
        RequestLog::default(),
        SimHooks::default(),
        None,
    )
    .await
    .expect("server");
    let base = server.url();
    let http = reqwest::Client::new();

    let mut full = Vec::new();
    for _ in 0..LIST_ROUNDS {
        let t = Instant::now();
        let n = list_all(&http, &base, None).await;
        full.push(t.elapsed());
        assert_eq!(n, PODS);
    }
    println!(
        "list {PODS} pods (one request):        {}",
        summary(&mut full)
    );
    let mut paged = Vec::new();
    for _ in 0..LIST_ROUNDS {
        let t = Instant::now();
        let n = list_all(&http, &base, Some(500)).await;
        paged.push(t.elapsed());
        assert_eq!(n, PODS);
    }
    println!(
        "list {PODS} pods (limit=500, 20 pages): {}",
        summary(&mut paged)
    );
    let mut labeled = Vec::new();
    for _ in 0..LIST_ROUNDS {
        let t = Instant::now();
        let page: Value = http
            .get(format!(
                "{base}/api/v1/namespaces/ns-3/pods?labelSelector=app%3Dapp-3"
            ))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("body");
        labeled.push(t.elapsed());
        assert_eq!(page["items"].as_array().map_or(0, Vec::len), PODS / 100);
    }
    println!(
        "list by label in one namespace (100):  {}",
        summary(&mut labeled)
    );

    // Watch fan-out: WATCHERS raw HTTP watches on all pods, WATCH_EVENTS modifications.
    let rv = store.current_rv();
    let mut tasks = Vec::new();
    for _ in 0..WATCHERS {
        let http = http.clone();
        let url = format!("{base}/api/v1/pods?watch=1&resourceVersion={rv}&timeoutSeconds=120");
        tasks.push(tokio::spawn(async move {
            let mut resp = http.get(&url).send().await.expect("watch");
            let mut seen = 0usize;
            let mut buf = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    if serde_json::from_slice::<Value>(&line).is_ok() {
                        seen += 1;
                    }
                }
                if seen >= WATCH_EVENTS {
                    break;
                }
            }
            (seen, Instant::now())
        }));
    }
    // Give the watchers time to connect before the changes start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    for i in 0..WATCH_EVENTS {
        let p = pod(i * (PODS / WATCH_EVENTS));
        let ns = p["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
        store
            .modify(&kinds::pods(), Some(&ns), &name, |o| {
                o["metadata"]["annotations"] = json!({"bench/seq": i.to_string()});
                Ok(())
            })
            .expect("modify");
    }
    let write_time = t.elapsed();
    let mut delivered = 0;
    let mut last = t;
    for task in tasks {
        let (seen, done) = task.await.expect("watcher");
        delivered += seen;
        last = last.max(done);
    }
    let fanout = last.duration_since(t);
    println!(
        "watch fan-out: {WATCHERS} watchers x {WATCH_EVENTS} events = {delivered} delivered in {:.2} s \
         ({:.0} events/s; writes took {:.2} s)",
        fanout.as_secs_f64(),
        delivered as f64 / fanout.as_secs_f64(),
        write_time.as_secs_f64()
    );
    assert_eq!(delivered, WATCHERS * WATCH_EVENTS);
    server.shutdown().await;
    println!(
        "peak RSS (VmHWM): {:.0} MiB; total bench time {:.1} s",
        peak_rss_mib(),
        started.elapsed().as_secs_f64()
    );
}
