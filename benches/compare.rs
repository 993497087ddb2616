//! ripcord versus the kubectl way, on the same simulated cluster with 5 ms of injected API
//! latency, printed as one table of ratios (issue 8):
//!
//! | mitigation | ripcord | kubectl |
//! |---|---|---|
//! | rollback (demo: bad release rolling out) | `ripcord rollback --yes` | `kubectl rollout undo` + `rollout status` |
//! | zone fail-out (100 nodes, 1,000 pods, 3 zones, PDBs) | `ripcord run builtin:failout-zone` | `kubectl drain` loop over the zone's nodes |
//! | rolling restart (12 replicas) | `ripcord run builtin:rolling-restart` (batch 3, no warm-up) | `kubectl rollout restart` + `rollout status` |
//! | snapshot of 10,000 pods | `ripcord snapshot bulk` | `kubectl get -A -o yaml` of the same kinds |
//!
//! Per tool: wall time, API requests (the sim's request log), and peak memory of the process
//! tree (`/usr/bin/time -f %M`, i.e. `getrusage` children maxrss; "-" without it). Each pair
//! runs on fresh clusters of the same scenario. A fail-out also reports PDB violations (the
//! sim's invariant monitor).
//!
//! Run: `cargo bench --bench compare` (release build). `RIPCORD_BENCH_ONLY=rollback,failout`
//! selects rows (rollback, failout, failout-cordoned, restart, snapshot); kubectl is `$KUBECTL`, else `.tools/kubectl-v34/kubectl`, else `kubectl` on
//! the PATH.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(5);
const BOUND: Duration = Duration::from_secs(1800);
const SNAPSHOT_PODS: usize = 10_000;
/// What kubectl dumps in the snapshot row: the kinds a ripcord namespace snapshot captures
/// (Secrets aside: ripcord records their names only).
const SNAPSHOT_KINDS: &str = "pods,deployments,replicasets,services,configmaps,\
     poddisruptionbudgets,horizontalpodautoscalers,endpointslices,events";

/// One tool's run.
#[derive(Debug, Clone, Default)]
struct Sample {
    wall: Duration,
    requests: usize,
    writes: usize,
    max_rss_kb: Option<u64>,
    pdb_violations: usize,
    /// Fail-out only: pods still on the zone's nodes when the tool returned.
    left_in_zone: usize,
}

/// One row of the table.
struct Row {
    name: &'static str,
    ripcord: Sample,
    kubectl: Sample,
    note: String,
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
    let only: Option<Vec<String>> = std::env::var("RIPCORD_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let result = runtime.block_on(async {
        let mut rows = Vec::new();
        if wanted("rollback") {
            rows.push(rollback().await?);
            print_table(&rows[rows.len() - 1..]);
        }
        if wanted("failout") {
            rows.push(failout(false).await?);
        }
        if wanted("failout-cordoned") {
            rows.push(failout(true).await?);
            print_table(&rows[rows.len() - 1..]);
        }
        if wanted("restart") {
            rows.push(restart().await?);
            print_table(&rows[rows.len() - 1..]);
        }
        if wanted("snapshot") {
            rows.push(snapshot().await?);
            print_table(&rows[rows.len() - 1..]);
        }
        Ok::<_, String>(rows)
    });
    match result {
        Ok(rows) => print_table(&rows),
        Err(err) => {
            eprintln!("benchmark failed: {err}");
            std::process::exit(1);
        }
    }
}

// === the four comparisons ===

async fn rollback() -> Result<Row, String> {
    let mut samples = Vec::new();
    let mut first_mutation = Vec::new();
    for tool in [Tool::Ripcord, Tool::Kubectl] {
        let bench = Bench::start(Scenario::demo()).await?;
        bench
            .wait("the bad release rolls out", |sim| {
                image(sim, "checkout").ends_with(":1.5.0")
                    && sim
                        .store()
                        .list(&kinds::replicasets(), Some("shop"))
                        .0
                        .len()
                        >= 2
            })
            .await?;
        let argv = match tool {
            Tool::Ripcord => ripcord(&["rollback", "deployment/checkout", "-n", "shop", "--yes"]),
            Tool::Kubectl => shell(&format!(
                "{k} -n shop rollout undo deployment/checkout && \
                 {k} -n shop rollout status deployment/checkout --timeout=10m",
                k = bench.kubectl()
            )),
        };
        // Time to the first mutation: the moment the sim holds the restored template.
        let store = bench.sim.store().clone();
        let started = Instant::now();
        let first_write = tokio::spawn(async move {
            while !store_image(&store, "checkout").ends_with(":1.4.2") {
                if started.elapsed() > BOUND {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Some(started.elapsed())
        });
        let sample = bench.measure(&argv).await?;
        let first = first_write.await.ok().flatten();
        first_mutation.push(
            first
                .map(|d| format!("{} ms", d.as_millis()))
                .unwrap_or_else(|| "-".into()),
        );
        let img = image(&bench.sim, "checkout");
        if !img.ends_with(":1.4.2") {
            return Err(format!("{tool:?}: not rolled back (image {img})"));
        }
        samples.push(sample);
        bench.shutdown().await;
    }
    Ok(row(
        "rollback",
        samples,
        format!(
            "demo scenario, 4 replicas; time to the first mutation (the restored template in \
             the sim, from the command's start) ripcord/kubectl: {}",
            first_mutation.join("/")
        ),
    ))
}

/// 100 nodes in 3 zones, 10 Deployments of 100 replicas with PDBs (maxUnavailable 10%).
fn big_scenario() -> Result<Scenario, String> {
    let mut yaml = String::from(
        "name: bench-100-nodes\nsettings: {timeFactor: 50, podReadyDelaySeconds: 2, podStartDelaySeconds: 0.5}\n\
         zones:\n  - {name: zone-a, nodes: 34}\n  - {name: zone-b, nodes: 33}\n  - {name: zone-c, nodes: 33}\n\
         namespaces: [shop]\ndeployments:\n",
    );
    for i in 0..10 {
        yaml.push_str(&format!(
            "  - {{namespace: shop, name: svc-{i}, replicas: 100, releases: [{{image: registry.local/svc-{i}:1.0.0}}]}}\n"
        ));
    }
    yaml.push_str("podDisruptionBudgets:\n");
    for i in 0..10 {
        yaml.push_str(&format!(
            "  - {{namespace: shop, name: svc-{i}, selector: {{app: svc-{i}}}, maxUnavailable: 10%}}\n"
        ));
    }
    Scenario::from_yaml("bench-100-nodes", &yaml).map_err(|e| format!("scenario: {e}"))
}

/// The zone fail-out. `cordon_first`: the kubectl side cordons the whole zone before its drain
/// loop (what a careful operator types), so evicted pods cannot land on the zone's nodes not yet
/// drained; without it, the plain loop of the issue.
async fn failout(cordon_first: bool) -> Result<Row, String> {
    let mut samples = Vec::new();
    for tool in [Tool::Ripcord, Tool::Kubectl] {
        let bench = Bench::start(big_scenario()?).await?;
        bench
            .wait("1,000 pods ready", |sim| ready_pods(sim, "shop") >= 1000)
            .await?;
        let argv = match tool {
            Tool::Ripcord => {
                ripcord(&["run", "builtin:failout-zone", "-p", "zone=zone-a", "--yes"])
            }
            Tool::Kubectl => shell(&format!(
                "{cordon}for n in $({k} get nodes -l topology.kubernetes.io/zone=zone-a -o name); do \
                   {k} drain \"$n\" --ignore-daemonsets --delete-emptydir-data --timeout=30m || exit 1; \
                 done",
                k = bench.kubectl(),
                cordon = if cordon_first {
                    format!(
                        "{} cordon -l topology.kubernetes.io/zone=zone-a >/dev/null && ",
                        bench.kubectl()
                    )
                } else {
                    String::new()
                }
            )),
        };
        let mut sample = bench.measure(&argv).await?;
        sample.left_in_zone = pods_in_zone_a(&bench.sim);
        sample.pdb_violations = bench.sim.invariants().violations().len();
        samples.push(sample);
        bench.shutdown().await;
    }
    let left: Vec<String> = samples.iter().map(|s| s.left_in_zone.to_string()).collect();
    Ok(row(
        if cordon_first {
            "zone fail-out, kubectl cordons first"
        } else {
            "zone fail-out"
        },
        samples,
        format!(
            "100 nodes / 1,000 pods / 3 zones, PDB maxUnavailable 10%; ripcord also waits until \
             the replacements are Ready, kubectl drain only until the pods are evicted; pods \
             left on zone-a nodes when the tool returned (ripcord/kubectl): {}",
            left.join("/")
        ),
    ))
}

async fn restart() -> Result<Row, String> {
    let scenario = Scenario::load_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenarios/restart-12.yaml"),
    )
    .map_err(|e| format!("scenario: {e}"))?;
    let mut samples = Vec::new();
    for tool in [Tool::Ripcord, Tool::Kubectl] {
        let bench = Bench::start(scenario.clone()).await?;
        bench
            .wait("frontend ready", |sim| ready_pods(sim, "shop") >= 12)
            .await?;
        let before = pod_names(&bench.sim);
        let argv = match tool {
            Tool::Ripcord => ripcord(&[
                "run",
                "builtin:rolling-restart",
                "-p",
                "namespace=shop",
                "-p",
                "name=frontend",
                "-p",
                "batch=3",
                "-p",
                "warmup=0s",
                "--yes",
            ]),
            Tool::Kubectl => shell(&format!(
                "{k} -n shop rollout restart deployment/frontend && \
                 {k} -n shop rollout status deployment/frontend --timeout=10m",
                k = bench.kubectl()
            )),
        };
        let sample = bench.measure(&argv).await?;
        let after = pod_names(&bench.sim);
        if after.iter().any(|p| before.contains(p)) {
            return Err(format!("{tool:?}: not every pod was restarted"));
        }
        samples.push(sample);
        bench.shutdown().await;
    }
    Ok(row(
        "rolling restart",
        samples,
        "12 replicas; ripcord batches of 3 (evictions), kubectl via the Deployment (maxSurge 25%)"
            .into(),
    ))
}

async fn snapshot() -> Result<Row, String> {
    let mut samples = Vec::new();
    let mut captured = 0usize;
    for tool in [Tool::Ripcord, Tool::Kubectl] {
        let bench = Bench::start(snapshot_scenario()?).await?;
        load_bulk_pods(&bench.sim)?;
        let out = bench.dir.path().join("out");
        let argv = match tool {
            Tool::Ripcord => {
                let dir = out.display().to_string();
                ripcord(&[
                    "snapshot",
                    "bulk",
                    "-d",
                    &dir,
                    "--no-previous-logs",
                    "--no-events",
                ])
            }
            Tool::Kubectl => shell(&format!(
                "{k} get -A -o yaml {SNAPSHOT_KINDS} > {o}",
                k = bench.kubectl(),
                o = out.display()
            )),
        };
        let sample = bench.measure(&argv).await?;
        if let Tool::Ripcord = tool {
            captured = captured_pods(&out);
        }
        samples.push(sample);
        bench.shutdown().await;
    }
    Ok(row(
        "snapshot 10k pods",
        samples,
        format!(
            "ripcord captured {captured} pod object(s) of {SNAPSHOT_PODS} (its manifest), with \
             log tails of up to 200 pods and node conditions; kubectl dumps every object"
        ),
    ))
}

/// Pod objects listed in a snapshot bundle's `manifest.json`.
fn captured_pods(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|m| {
            m["captured"]
                .as_array()
                .map(|c| c.iter().filter(|e| e["kind"] == "Pod").count())
        })
        .unwrap_or(0)
}

fn snapshot_scenario() -> Result<Scenario, String> {
    Scenario::from_yaml(
        "bench-snapshot",
        "name: bench-snapshot\nzones:\n  - {name: zone-a, nodes: 34, maxPods: 400}\n  - {name: zone-b, nodes: 33, maxPods: 400}\n  - {name: zone-c, nodes: 33, maxPods: 400}\nnamespaces: [bulk]\n",
    )
    .map_err(|e| format!("scenario: {e}"))
}

/// Creates 10,000 running, ready pods in namespace `bulk`, spread over the nodes.
fn load_bulk_pods(sim: &SimCluster) -> Result<(), String> {
    let nodes: Vec<String> = sim
        .store()
        .list(&kinds::nodes(), None)
        .0
        .iter()
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    if nodes.is_empty() {
        return Err("no nodes".into());
    }
    for i in 0..SNAPSHOT_PODS {
        let app = format!("app-{}", i % 100);
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{app}-{i:05}"), "namespace": "bulk", "labels": {"app": app}},
            "spec": {"nodeName": nodes[i % nodes.len()],
                     "containers": [{"name": "app", "image": format!("registry.local/{app}:1.0.0"),
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i / 250 % 250, i % 250),
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                                              "image": format!("registry.local/{app}:1.0.0"),
                                              "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
        });
        sim.store()
            .create(&kinds::pods(), pod)
            .map_err(|e| format!("pod {i}: {e}"))?;
    }
    Ok(())
}

// === harness ===

#[derive(Debug, Clone, Copy)]
enum Tool {
    Ripcord,
    Kubectl,
}

struct Bench {
    sim: SimCluster,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn start(scenario: Scenario) -> Result<Bench, String> {
        let sim = SimCluster::start(SimOptions {
            scenario,
            addr: None,
        })
        .await
        .map_err(|e| format!("sim: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .map_err(|e| e.to_string())?;
        Ok(Bench { sim, dir })
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl(&self) -> String {
        format!(
            "{} --kubeconfig {}",
            kubectl_path(),
            self.kubeconfig().display()
        )
    }

    async fn wait(&self, what: &str, cond: impl Fn(&SimCluster) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !cond(&self.sim) {
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Runs `argv` (under `/usr/bin/time` when present) with 5 ms of API latency.
    async fn measure(&self, argv: &[String]) -> Result<Sample, String> {
        self.sim.faults().set_latency(LATENCY);
        let before = self.sim.request_log().last().map(|r| r.seq).unwrap_or(0);
        let rss_file = self.dir.path().join("maxrss");
        let time = Path::new("/usr/bin/time");
        let mut cmd = if time.exists() {
            let mut c = tokio::process::Command::new(time);
            c.arg("-f").arg("%M").arg("-o").arg(&rss_file).args(argv);
            c
        } else {
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        };
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("RIPCORD_STATE_DIR", self.dir.path().join("state"))
            .env("RIPCORD_CONFIG", "/dev/null")
            .env("RIPCORD_WHO", "bench")
            .env_remove("RIPCORD_NAMESPACE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let start = Instant::now();
        let out = tokio::time::timeout(BOUND, cmd.output())
            .await
            .map_err(|_| format!("{argv:?} did not finish within {BOUND:?}"))?
            .map_err(|e| format!("cannot run {argv:?}: {e}"))?;
        let wall = start.elapsed();
        self.sim.faults().set_latency(Duration::ZERO);
        if !out.status.success() {
            return Err(format!(
                "{argv:?} failed ({}):\n{}\n{}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stdout)),
                tail(&String::from_utf8_lossy(&out.stderr))
            ));
        }
        let log: Vec<_> = self
            .sim
            .request_log()
            .into_iter()
            .filter(|r| r.seq > before)
            .collect();
        let max_rss_kb = std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
        Ok(Sample {
            wall,
            requests: log.len(),
            writes: log.iter().filter(|r| r.is_write()).count(),
            max_rss_kb,
            pdb_violations: 0,
            left_in_zone: 0,
        })
    }

    async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}

fn ripcord(args: &[&str]) -> Vec<String> {
    std::iter::once(env!("CARGO_BIN_EXE_ripcord").to_string())
        .chain(args.iter().map(|s| s.to_string()))
        .collect()
}

fn shell(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn kubectl_path() -> String {
    if let Ok(k) = std::env::var("KUBECTL") {
        return k;
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/kubectl-v34/kubectl");
    if local.exists() {
        return local.display().to_string();
    }
    "kubectl".into()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn image(sim: &SimCluster, name: &str) -> String {
    store_image(sim.store(), name)
}

fn store_image(store: &ripcord::sim::store::Store, name: &str) -> String {
    store
        .get(&kinds::deployments(), Some("shop"), name)
        .and_then(|d| {
            d.pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn live_pods(sim: &SimCluster, ns: &str) -> Vec<Value> {
    sim.store()
        .list(&kinds::pods(), Some(ns))
        .0
        .into_iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .collect()
}

fn ready_pods(sim: &SimCluster, ns: &str) -> usize {
    live_pods(sim, ns)
        .iter()
        .filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .count()
}

fn pod_names(sim: &SimCluster) -> Vec<String> {
    live_pods(sim, "shop")
        .iter()
        .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

fn pods_in_zone_a(sim: &SimCluster) -> usize {
    live_pods(sim, "shop")
        .iter()
        .filter(|p| {
            p.pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with("zone-a"))
        })
        .count()
}

fn row(name: &'static str, mut samples: Vec<Sample>, note: String) -> Row {
    let kubectl = samples.pop().unwrap_or_default();
    let ripcord = samples.pop().unwrap_or_default();
    Row {
        name,
        ripcord,
        kubectl,
        note,
    }
}

// === output ===

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn rss(kb: Option<u64>) -> String {
    kb.map(|k| format!("{:.0} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "-".into())
}

fn print_table(rows: &[Row]) {
    println!(
        "\nripcord vs kubectl, {} ms injected API latency (ratio = ripcord / kubectl; < 1 favours ripcord)\n",
        LATENCY.as_millis()
    );
    println!(
        "| mitigation | wall ripcord | wall kubectl | ratio | requests ripcord | requests kubectl | ratio | writes r/k | peak RSS ripcord | peak RSS kubectl | ratio | PDB violations r/k |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (a, b) = (&r.ripcord, &r.kubectl);
        println!(
            "| {} | {:.2} s | {:.2} s | {} | {} | {} | {} | {}/{} | {} | {} | {} | {}/{} |",
            r.name,
            a.wall.as_secs_f64(),
            b.wall.as_secs_f64(),
            ratio(a.wall.as_secs_f64(), b.wall.as_secs_f64()),
            a.requests,
            b.requests,
            ratio(a.requests as f64, b.requests as f64),
            a.writes,
            b.writes,
            rss(a.max_rss_kb),
            rss(b.max_rss_kb),
            ratio(
                a.max_rss_kb.unwrap_or(0) as f64,
                b.max_rss_kb.unwrap_or(0) as f64
            ),
            a.pdb_violations,
            b.pdb_violations,
        );
    }
    println!();
    for r in rows {
        println!("- {}: {}", r.name, r.note);
    }
}
