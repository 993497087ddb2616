//! ripcord versus the kubectl way, on the same simulated cluster with 5 ms of injected API
//! latency, printed as one table of ratios (issue 8):
//!
//! | mitigation | ripcord | kubectl |
//! |---|---|---|
//! | rollback (demo: bad release rolling out) | `ripcord rollback --yes` | `kubectl rollout undo` + `rollout status` |
//! | zone fail-out (`failout-100`: 100 nodes, 1,000 pods, 3 zones, PDBs) | `ripcord run builtin:failout-zone` | `kubectl drain` loop over the zone's nodes |
//! | rolling restart (12 replicas) | `ripcord run builtin:rolling-restart` (batch 3, no warm-up) | `kubectl rollout restart` + `rollout status` |
//! | snapshot of 10,000 pods | `ripcord snapshot bulk` | `kubectl get -A -o yaml` of the same kinds |
//!
//! Per tool: wall time, API requests (the sim's request log), and peak memory of the process
//! tree (`/usr/bin/time -f %M`, i.e. `getrusage` children maxrss; "-" without it). Each pair
//! runs on fresh clusters of the same scenario. A fail-out also reports PDB violations (the
//! sim's invariant monitor) and each tool's ratio to the fail-out's *PDB bound* (issue 18):
//! the least time any tool that respects the PodDisruptionBudgets and the zone's
//! `drainConcurrency` needs, `waves × max(termination grace, pod start + ready delay)` in real
//! time, derived from the scenario's settings and the pods' placement (see [`PdbBound`]). The
//! rolling restart's bound is the same product for its batches: `⌈replicas / batch⌉ ×
//! max(termination grace, pod start + ready delay)`.
//!
//! Run: `cargo bench --bench compare` (release build). `RIPCORD_BENCH_ONLY=rollback,failout`
//! selects rows (rollback, failout, failout-cordoned, restart, snapshot). kubectl: the first
//! of `$KUBECTL`, `.tools/kubectl-v34/kubectl` (scripts/install-kubectl.sh) and `kubectl` on
//! the PATH whose `kubectl version --client` is 1.34, else the first that runs.
//! `RIPCORD_BENCH_BIN` replaces the ripcord binary under test (to measure an older build with
//! this harness); `RIPCORD_BENCH_TOOLS=ripcord` runs the fail-out rows' ripcord side alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use std::sync::OnceLock;

use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(5);
const BOUND: Duration = Duration::from_secs(1800);
/// The zone the fail-out rows take out, and the playbook's default `drainConcurrency`.
const FAILOUT_ZONE: &str = "zone-a";
const DRAIN_CONCURRENCY: usize = 10;
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

/// The least time a PDB-respecting fail-out of the zone can take on the scenario, in real
/// time: `waves × per_wave`.
///
/// - `waves`: the larger of `ceil(nodes with evictable pods / drainConcurrency)` and, per
///   PodDisruptionBudget, `ceil(its pods in the zone / disruptionsAllowed at full health)`;
/// - `per_wave`: after a wave's evictions, the replacements must be Ready before the budget
///   allows the next wave (pod start + ready delay), and the evicted pods must be gone (their
///   termination grace) — the two run at the same time (the ReplicaSet controller replaces a
///   pod as soon as it is terminating), so the larger of the two. Simulated seconds divided
///   by the scenario's time factor.
///
/// API latency, process start-up and the cordons are not in the bound: they are the tools'
/// cost.
#[derive(Debug, Clone, Copy)]
struct PdbBound {
    waves: usize,
    per_wave: Duration,
    termination: Duration,
    start_ready: Duration,
}

impl PdbBound {
    /// `waves` of the scenario's per-wave time: the larger of the termination grace and pod
    /// start + ready delay, in real time (simulated seconds / the time factor).
    fn of_waves(scenario: &Scenario, waves: usize) -> PdbBound {
        let settings = scenario.settings();
        let real = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / settings.time_factor);
        let termination = real(Duration::from_secs(
            scenario
                .file
                .settings
                .termination_grace_period_seconds
                .max(0) as u64,
        ));
        let start_ready = real(settings.pod_start_delay + settings.pod_ready_delay);
        PdbBound {
            waves,
            per_wave: termination.max(start_ready),
            termination,
            start_ready,
        }
    }

    fn total(&self) -> Duration {
        self.per_wave * self.waves as u32
    }
}

/// One row of the table.
struct Row {
    name: &'static str,
    ripcord: Sample,
    kubectl: Sample,
    bound: Option<PdbBound>,
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
            print_table(&rows[rows.len() - 1..]);
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

/// `failout-100` (tests/data/scenarios): 100 nodes in 3 zones, 10 Deployments of 100
/// replicas with PDBs (maxUnavailable 10%), a DaemonSet.
fn failout_scenario() -> Result<Scenario, String> {
    Scenario::load_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenarios/failout-100.yaml"),
    )
    .map_err(|e| format!("scenario: {e}"))
}

/// The PDB bound of failing out [`FAILOUT_ZONE`] on `sim` as it is now (see [`PdbBound`]).
fn pdb_bound(sim: &SimCluster, scenario: &Scenario) -> PdbBound {
    let store = sim.store();
    let zone_nodes: std::collections::BTreeSet<String> = store
        .list(&kinds::nodes(), None)
        .0
        .iter()
        .filter(|n| {
            n.pointer("/metadata/labels/topology.kubernetes.io~1zone")
                .and_then(Value::as_str)
                == Some(FAILOUT_ZONE)
        })
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let evictable: Vec<Value> = store
        .list(&kinds::pods(), None)
        .0
        .into_iter()
        .filter(|p| {
            p.pointer("/metadata/deletionTimestamp").is_none()
                && p.pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| zone_nodes.contains(n))
                && p.pointer("/metadata/ownerReferences/0/kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k != "DaemonSet")
        })
        .collect();
    let busy_nodes: std::collections::BTreeSet<&str> = evictable
        .iter()
        .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
        .collect();
    let mut waves = busy_nodes.len().div_ceil(DRAIN_CONCURRENCY);
    for pdb in store.list(&kinds::pod_disruption_budgets(), None).0 {
        let ns = pdb.pointer("/metadata/namespace").and_then(Value::as_str);
        let Some(labels) = pdb
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
        else {
            continue;
        };
        let selected = evictable
            .iter()
            .filter(|p| p.pointer("/metadata/namespace").and_then(Value::as_str) == ns)
            .filter(|p| {
                labels
                    .iter()
                    .all(|(k, v)| p.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
            })
            .count();
        let allowed = pdb
            .pointer("/status/disruptionsAllowed")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        if selected > 0 && allowed > 0 {
            waves = waves.max(selected.div_ceil(allowed));
        }
    }
    PdbBound::of_waves(scenario, waves)
}

/// The zone fail-out. `cordon_first`: the kubectl side cordons the whole zone before its drain
/// loop (what a careful operator types), so evicted pods cannot land on the zone's nodes not yet
/// drained; without it, the plain loop of the issue.
async fn failout(cordon_first: bool) -> Result<Row, String> {
    let mut samples = Vec::new();
    let scenario = failout_scenario()?;
    let mut bound = None;
    let mut firsts = Vec::new();
    for tool in failout_tools() {
        let bench = Bench::start(scenario.clone()).await?;
        bench
            .wait("1,000 pods ready and the PDBs' status current", |sim| {
                ready_pods(sim, "shop") >= 1000 && pdbs_at_full_budget(sim)
            })
            .await?;
        // The same for both tools: the scenario places pods deterministically.
        let this = pdb_bound(&bench.sim, &scenario);
        bound.get_or_insert(this);
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
        // Time to the first eviction: the moment a zone pod is terminating, from the start.
        // Read from the store's change stream: no polling load on the shared machine.
        let mut changes = bench.sim.store().subscribe();
        let started = Instant::now();
        let first_eviction = tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(event) if zone_pod_terminating(&event) => return Some(started.elapsed()),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let mut sample = bench.measure(&argv).await?;
        first_eviction.abort();
        let first = first_eviction.await.ok().flatten();
        sample.left_in_zone = pods_in_zone_a(&bench.sim);
        sample.pdb_violations = bench.sim.invariants().violations().len();
        firsts.push(first.map_or_else(
            || "-".to_string(),
            |f| {
                format!(
                    "{} ms, then {:.2} s to the end",
                    f.as_millis(),
                    sample.wall.saturating_sub(f).as_secs_f64()
                )
            },
        ));
        samples.push(sample);
        bench.shutdown().await;
    }
    if samples.len() == 1 {
        // kubectl not measured (RIPCORD_BENCH_TOOLS=ripcord).
        samples.push(Sample::default());
    }
    let left: Vec<String> = samples.iter().map(|s| s.left_in_zone.to_string()).collect();
    let mut row = row(
        if cordon_first {
            "zone fail-out, kubectl cordons first"
        } else {
            "zone fail-out"
        },
        samples,
        format!(
            "failout-100: 100 nodes / 1,000 pods / 3 zones, PDB maxUnavailable 10%; ripcord also \
             waits until the replacements are Ready, kubectl drain only until the pods are \
             evicted; pods left on zone-a nodes when the tool returned (ripcord/kubectl): {}; \
             time to the first eviction (ripcord; kubectl): {}{}",
            left.join("/"),
            firsts.join("; "),
            bound
                .map(|b| format!(
                    "; PDB bound {:.2} s = {} wave(s) × {} ms (max of termination {} ms and pod \
                     start + ready {} ms, real time)",
                    b.total().as_secs_f64(),
                    b.waves,
                    b.per_wave.as_millis(),
                    b.termination.as_millis(),
                    b.start_ready.as_millis()
                ))
                .unwrap_or_default()
        ),
    );
    row.bound = bound;
    Ok(row)
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
    // The restart's bound: ⌈replicas / batch⌉ batches, each waiting for its replacements to
    // start and be Ready (and the evicted pods to be gone: the larger of the two; no warm-up
    // here), in real time. kubectl's surges of 25 % (3 of 12) give it the same 4 waves.
    let bound = PdbBound::of_waves(&scenario, 12_usize.div_ceil(3));
    let mut row = row(
        "rolling restart",
        samples,
        format!(
            "12 replicas; ripcord batches of 3 (evictions), kubectl via the Deployment (maxSurge \
             25%); bound {:.2} s = {} batch(es) × {} ms (max of termination {} ms and pod start + \
             ready {} ms, real time)",
            bound.total().as_secs_f64(),
            bound.waves,
            bound.per_wave.as_millis(),
            bound.termination.as_millis(),
            bound.start_ready.as_millis()
        ),
    );
    row.bound = Some(bound);
    Ok(row)
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
    let bin = std::env::var("RIPCORD_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ripcord").to_string());
    std::iter::once(bin)
        .chain(args.iter().map(|s| s.to_string()))
        .collect()
}

fn shell(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn kubectl_path() -> String {
    kubectl_choice().0.clone()
}

/// The kubectl the bench runs and its client version: the first of `$KUBECTL`,
/// `.tools/kubectl-v34/kubectl` and `kubectl` on the PATH that reports 1.34, else the first
/// that runs at all.
fn kubectl_choice() -> &'static (String, String) {
    static CHOICE: OnceLock<(String, String)> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/kubectl-v34/kubectl");
        let candidates: Vec<String> = std::env::var("KUBECTL")
            .ok()
            .into_iter()
            .chain([local.display().to_string(), "kubectl".to_string()])
            .collect();
        let versioned: Vec<(String, String)> = candidates
            .into_iter()
            .filter_map(|k| client_version(&k).map(|v| (k, v)))
            .collect();
        versioned
            .iter()
            .find(|(_, v)| v.starts_with("v1.34"))
            .or(versioned.first())
            .cloned()
            .unwrap_or_else(|| ("kubectl".into(), "unknown".into()))
    })
}

/// `gitVersion` of `kubectl version --client`, `None` when it does not run.
fn client_version(kubectl: &str) -> Option<String> {
    let out = std::process::Command::new(kubectl)
        .args(["version", "--client", "-o", "json"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()?
        .pointer("/clientVersion/gitVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
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

/// True when the change makes a pod on a zone-a node terminating (or removes one): an
/// eviction.
fn zone_pod_terminating(event: &ripcord::sim::store::StoreEvent) -> bool {
    let p = &event.object;
    event.resource == kinds::pods()
        && (p.pointer("/metadata/deletionTimestamp").is_some()
            || event.kind == ripcord::sim::store::EventKind::Deleted)
        && p.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| n.starts_with(FAILOUT_ZONE))
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
        bound: None,
        note,
    }
}

/// The tools a fail-out row measures: both, or ripcord alone with `RIPCORD_BENCH_TOOLS=ripcord`
/// (to compare two ripcord builds without waiting twice for the kubectl loop).
fn failout_tools() -> Vec<Tool> {
    if std::env::var("RIPCORD_BENCH_TOOLS").is_ok_and(|t| t.trim() == "ripcord") {
        vec![Tool::Ripcord]
    } else {
        vec![Tool::Ripcord, Tool::Kubectl]
    }
}

/// True when every PDB's status counts every pod it selects as healthy (the sim's disruption
/// controller has caught up with the scenario's start).
fn pdbs_at_full_budget(sim: &SimCluster) -> bool {
    let pdbs = sim.store().list(&kinds::pod_disruption_budgets(), None).0;
    !pdbs.is_empty()
        && pdbs.iter().all(|p| {
            let n = |f: &str| p.pointer(&format!("/status/{f}")).and_then(Value::as_u64);
            n("currentHealthy").is_some() && n("currentHealthy") == n("expectedPods")
        })
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
    let (kubectl, version) = kubectl_choice();
    println!(
        "\nripcord vs kubectl {version} ({kubectl}), {} ms injected API latency (ratio = ripcord / kubectl; < 1 favours ripcord; bound: the PDB bound of a fail-out, the batches' bound of a restart)\n",
        LATENCY.as_millis()
    );
    println!(
        "| mitigation | wall ripcord | wall kubectl | ratio | bound | ripcord / bound | kubectl / bound | requests ripcord | requests kubectl | ratio | writes r/k | peak RSS ripcord | peak RSS kubectl | ratio | PDB violations r/k |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (a, b) = (&r.ripcord, &r.kubectl);
        let bound = r.bound.map(|b| b.total().as_secs_f64());
        println!(
            "| {} | {:.2} s | {:.2} s | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {}/{} |",
            r.name,
            a.wall.as_secs_f64(),
            b.wall.as_secs_f64(),
            ratio(a.wall.as_secs_f64(), b.wall.as_secs_f64()),
            bound.map_or_else(|| "-".into(), |t| format!("{t:.2} s")),
            bound.map_or_else(|| "-".into(), |t| ratio(a.wall.as_secs_f64(), t)),
            bound.map_or_else(|| "-".into(), |t| ratio(b.wall.as_secs_f64(), t)),
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
