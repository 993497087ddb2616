//! Shared machinery of the reliability campaigns (`tests/campaign_*.rs`, `tests/concurrency.rs`):
//! a simulated cluster per trial, the `ripcord` binary as a child that can be SIGKILLed,
//! "resume until done", and the checks every campaign makes — the run finished, the relevant
//! objects equal the uninterrupted run's, no mutation reached the API server twice (from the
//! sim's request log), and the journal reads back.
#![allow(dead_code)]

use ripcord::journal::{self, Entry, Outcome, Record};
use ripcord::sim::faults::RequestRecord;
use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on one `ripcord` process (a hang detector; runs take seconds).
pub const PROCESS_BOUND: Duration = Duration::from_secs(180);
/// Bound on polling the sim for a condition.
pub const WAIT_BOUND: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64), so campaigns reproduce from their seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next raw value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The seed of a campaign: `RIPCORD_CAMPAIGN_SEED` or the given default.
pub fn seed(default: u64) -> u64 {
    std::env::var("RIPCORD_CAMPAIGN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The number of random kill points per playbook: `RIPCORD_CAMPAIGN_N` or the given default.
pub fn kill_points(default: usize) -> usize {
    std::env::var("RIPCORD_CAMPAIGN_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The built-in playbooks under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playbook {
    /// `ripcord rollback deployment/checkout -n shop` on the demo scenario (bad release).
    Rollback,
    /// `builtin:failout-zone` for zone-a on the three-zones scenario.
    Failout,
    /// `builtin:failback-zone` for zone-a after an (uninterrupted) fail-out.
    Failback,
    /// `builtin:rolling-restart` of shop/frontend (12 replicas, batch 3) on restart-12.
    Restart,
    /// `ripcord cleanup --run FAILOUT` after an (uninterrupted) fail-out.
    Cleanup,
}

impl Playbook {
    /// Every playbook, in campaign order.
    pub const ALL: [Playbook; 5] = [
        Playbook::Rollback,
        Playbook::Failout,
        Playbook::Failback,
        Playbook::Restart,
        Playbook::Cleanup,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Playbook::Rollback => "rollback",
            Playbook::Failout => "failout",
            Playbook::Failback => "failback",
            Playbook::Restart => "restart",
            Playbook::Cleanup => "cleanup",
        }
    }

    fn scenario(self) -> Scenario {
        let file = match self {
            Playbook::Rollback => return Scenario::demo(),
            Playbook::Failout | Playbook::Failback | Playbook::Cleanup => "three-zones.yaml",
            Playbook::Restart => "restart-12.yaml",
        };
        Scenario::load_file(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/scenarios")
                .join(file),
        )
        .expect("scenario loads")
    }

    /// The command that starts the run (`setup_run` is the fail-out run a cleanup reverts).
    fn command(self, setup_run: Option<&str>) -> Vec<String> {
        let args: Vec<&str> = match self {
            Playbook::Rollback => vec!["rollback", "deployment/checkout", "-n", "shop", "--yes"],
            Playbook::Failout => vec!["run", "builtin:failout-zone", "-p", "zone=zone-a", "--yes"],
            Playbook::Failback => vec![
                "run",
                "builtin:failback-zone",
                "-p",
                "zone=zone-a",
                "-p",
                "rampPause=200ms",
                "--yes",
            ],
            Playbook::Restart => vec![
                "run",
                "builtin:rolling-restart",
                "-p",
                "namespace=shop",
                "-p",
                "name=frontend",
                "-p",
                "batch=3",
                "-p",
                "warmup=100ms",
                "--yes",
            ],
            Playbook::Cleanup => vec![
                "cleanup",
                "--run",
                setup_run.unwrap_or("missing-setup-run"),
                "--yes",
            ],
        };
        args.into_iter().map(str::to_string).collect()
    }

    /// Whether this playbook needs an uninterrupted fail-out first.
    fn needs_failout(self) -> bool {
        matches!(self, Playbook::Failback | Playbook::Cleanup)
    }
}

/// One simulated cluster with its temp dir (kubeconfig, state dirs, child output).
pub struct Trial {
    pub sim: Arc<SimCluster>,
    pub dir: tempfile::TempDir,
    pub playbook: Playbook,
    /// The fail-out run that a fail-back or cleanup follows.
    pub setup_run: Option<String>,
    /// Request-log sequence number where the measured part starts.
    pub log_start: u64,
    /// Pod names of the restarted Deployment before the run (restart only).
    pub original_pods: Vec<String>,
    /// Everything the child processes printed, for failure messages.
    pub transcript: String,
    /// One line per child process: command, exit, wall time.
    pub commands: Vec<String>,
}

/// The result of one process.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// True when this harness killed it.
    pub killed: bool,
    /// stdout + stderr.
    pub output: String,
}

impl Trial {
    /// Starts the playbook's scenario, waits until it is in its starting state and, for a
    /// fail-back or cleanup, fails zone-a out first.
    pub async fn start(playbook: Playbook) -> Trial {
        Trial::start_with(playbook, playbook.scenario()).await
    }

    /// As [`Trial::start`] with an explicit scenario.
    pub async fn start_with(playbook: Playbook, scenario: Scenario) -> Trial {
        let sim = SimCluster::start(SimOptions {
            scenario,
            addr: None,
        })
        .await
        .expect("sim starts");
        let dir = tempfile::tempdir().expect("tempdir");
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("kubeconfig written");
        std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
        let mut trial = Trial {
            sim: Arc::new(sim),
            dir,
            playbook,
            setup_run: None,
            log_start: 0,
            original_pods: Vec::new(),
            transcript: String::new(),
            commands: Vec::new(),
        };
        trial.wait_initial().await;
        if playbook.needs_failout() {
            let exit = trial
                .ripcord(&Playbook::Failout.command(None), &[], None)
                .await;
            assert_eq!(exit.code, Some(0), "setup fail-out: {}", exit.output);
            let runs = journal::list_runs(&trial.state_dir()).expect("runs listed");
            trial.setup_run = runs.first().map(|r| r.run_id.clone());
        }
        if playbook == Playbook::Restart {
            trial.original_pods = app_pods(&trial.sim, "shop", "frontend")
                .iter()
                .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            trial.original_pods.sort();
        }
        trial.log_start = trial.last_seq();
        trial
    }

    async fn wait_initial(&self) {
        let sim = self.sim.clone();
        match self.playbook {
            Playbook::Rollback => {
                wait_until("the bad release rolls out", || {
                    deployment(&sim, "shop", "checkout")
                        .pointer("/spec/template/spec/containers/0/image")
                        .and_then(Value::as_str)
                        .is_some_and(|i| i.ends_with(":1.5.0"))
                        && sim
                            .store()
                            .list(&kinds::replicasets(), Some("shop"))
                            .0
                            .len()
                            >= 2
                })
                .await
            }
            Playbook::Failout | Playbook::Failback | Playbook::Cleanup => {
                wait_until("web and api ready", || {
                    ready_pods(&sim, "shop", "web") == 6 && ready_pods(&sim, "shop", "api") == 3
                })
                .await
            }
            Playbook::Restart => {
                wait_until("frontend ready", || {
                    ready_pods(&sim, "shop", "frontend") == 12
                })
                .await
            }
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The highest request-log sequence number so far.
    pub fn last_seq(&self) -> u64 {
        self.sim
            .request_log()
            .iter()
            .map(|r| r.seq)
            .max()
            .unwrap_or(0)
    }

    /// Starts `ripcord ARGS` against the sim (state dir, kubeconfig, no config file).
    pub fn command(&self, args: &[String], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"));
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("RIPCORD_STATE_DIR", self.state_dir())
            .env("RIPCORD_CONFIG", "/dev/null")
            .env("RIPCORD_WHO", "campaign")
            .env_remove("RIPCORD_NAMESPACE")
            .env_remove("RIPCORD_CONTEXT")
            .env_remove(ripcord::engine::CRASH_HOOK_ENV)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `ripcord ARGS`; with `kill_after`, SIGKILLs it after that delay if it still runs.
    pub async fn ripcord(
        &mut self,
        args: &[String],
        env: &[(&str, &str)],
        kill_after: Option<Duration>,
    ) -> Exit {
        let started = Instant::now();
        // Output goes to a file, not a pipe: a child that is not read while we wait to kill
        // it must never block on a full pipe.
        let out_path = self.dir.path().join("child-output.txt");
        let out_file = std::fs::File::create(&out_path).expect("output file");
        let err_file = out_file.try_clone().expect("output file");
        let mut cmd = self.command(args, env);
        cmd.stdout(out_file).stderr(err_file);
        let mut child = cmd.spawn().expect("ripcord starts");
        let mut killed = false;
        if let Some(delay) = kill_after {
            tokio::select! {
                _ = child.wait() => {}
                _ = tokio::time::sleep(delay) => {
                    killed = child.start_kill().is_ok();
                }
            }
        }
        let status = tokio::time::timeout(PROCESS_BOUND, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "ripcord {args:?} did not finish within {PROCESS_BOUND:?}\n{}",
                    self.transcript
                )
            })
            .expect("ripcord exit status");
        let out = std::process::Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: Vec::new(),
        };
        let output = String::from_utf8_lossy(&out.stdout).into_owned();
        // A process that had exited on its own before the kill was not killed.
        let killed = killed && out.status.code().is_none();
        self.commands.push(format!(
            "ripcord {} -> {:?}{} in {:.1}s",
            args.join(" "),
            out.status.code(),
            if killed { " (killed)" } else { "" },
            started.elapsed().as_secs_f64()
        ));
        self.transcript.push_str(&format!(
            "\n$ ripcord {} {env:?} kill_after={kill_after:?} -> code {:?} killed {killed}\n{}",
            args.join(" "),
            out.status.code(),
            tail(&output, 4_000)
        ));
        Exit {
            code: out.status.code(),
            killed,
            output,
        }
    }

    /// The command that starts the trial's playbook.
    pub fn playbook_command(&self) -> Vec<String> {
        self.playbook.command(self.setup_run.as_deref())
    }

    /// The run this trial is about: the newest run in the state dir with a `RunStarted`
    /// record (a process killed before that left nothing to resume), other than the setup
    /// fail-out (a cleanup is a run of its own; a killed one is resumed like any run).
    pub fn current_run(&self) -> Option<String> {
        let runs = journal::list_runs(&self.state_dir()).ok()?;
        runs.into_iter()
            .filter(|r| Some(&r.run_id) != self.setup_run.as_ref())
            .filter(|r| {
                journal::read(&journal::journal_path(&self.state_dir(), &r.run_id))
                    .map(|(entries, _)| {
                        entries
                            .iter()
                            .any(|e| matches!(e.record, Record::RunStarted { .. }))
                    })
                    .unwrap_or(false)
            })
            .map(|r| r.run_id)
            .max()
    }

    /// Runs the playbook to completion, killing the process at the given points: the first
    /// process with `hook` set as the engine's crash hook, and one process per `delays`
    /// entry SIGKILLed after that delay; after each kill the run is resumed (or, when it was
    /// killed before its journal began, started again). Returns the final run id and the
    /// number of processes that were actually killed.
    pub async fn run_with_kills(
        &mut self,
        hook: Option<&str>,
        delays: &[Duration],
    ) -> (String, usize) {
        let mut kills = 0usize;
        let mut attempt = 0usize;
        loop {
            assert!(
                attempt < delays.len() + 8,
                "the run did not finish after {attempt} processes\n{}",
                self.transcript
            );
            let args = match self.current_run() {
                Some(run) if self.finished(&run) == Some(Outcome::Succeeded) => {
                    return (run, kills);
                }
                Some(run) => vec!["run".into(), "--resume".into(), run],
                None => self.playbook.command(self.setup_run.as_deref()),
            };
            let env: Vec<(&str, &str)> = match (attempt, hook) {
                (0, Some(point)) => vec![(ripcord::engine::CRASH_HOOK_ENV, point)],
                _ => Vec::new(),
            };
            let kill_after = delays.get(attempt).copied();
            let exit = self.ripcord(&args, &env, kill_after).await;
            attempt += 1;
            if exit.killed || (hook.is_some() && attempt == 1 && exit.code == Some(137)) {
                kills += 1;
                continue;
            }
            assert_eq!(
                exit.code,
                Some(0),
                "{} {args:?} failed\n{}",
                self.playbook.name(),
                self.transcript
            );
        }
    }

    /// The outcome of a run's last `RunFinished`, if any.
    pub fn finished(&self, run: &str) -> Option<Outcome> {
        let (entries, _) = journal::read(&journal::journal_path(&self.state_dir(), run)).ok()?;
        final_outcome(&entries)
    }

    /// The journal of a finished run (for a cleanup, the cleanup's own run): it must read
    /// back without a torn tail, and end with `RunFinished: succeeded`.
    pub fn check_journal(&self, run: &str) -> Vec<Entry> {
        let (entries, torn) = journal::read(&journal::journal_path(&self.state_dir(), run))
            .unwrap_or_else(|e| panic!("journal of {run} unreadable: {e}\n{}", self.transcript));
        assert!(torn.is_none(), "torn tail left in {run}: {torn:?}");
        assert_eq!(
            final_outcome(&entries),
            Some(Outcome::Succeeded),
            "{}",
            self.transcript
        );
        entries
    }

    /// Successful writes since the trial began, per `METHOD path`, leaving out coordination
    /// and book-keeping (Leases, the Run mirror, Events, CRDs).
    pub fn mutation_writes(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.sim.request_log() {
            if r.seq <= self.log_start || !r.is_write() || !(200..300).contains(&r.status) {
                continue;
            }
            if is_bookkeeping(&r) {
                continue;
            }
            *counts
                .entry(format!("{} {}", r.method, r.path))
                .or_insert(0) += 1;
        }
        counts
    }

    /// The state that must equal the uninterrupted run's, normalized (run ids and
    /// timestamps replaced).
    pub fn relevant_state(&self) -> Value {
        let sim = &self.sim;
        let state = match self.playbook {
            Playbook::Rollback => {
                let d = deployment(sim, "shop", "checkout");
                json!({
                    "spec": d["spec"],
                    "revision": d.pointer("/metadata/annotations/deployment.kubernetes.io~1revision"),
                    "rolledOut": rolled_out(&d),
                })
            }
            Playbook::Failout | Playbook::Failback | Playbook::Cleanup => {
                let nodes: BTreeMap<String, Value> = sim
                    .store()
                    .list(&kinds::nodes(), None)
                    .0
                    .iter()
                    .map(|n| {
                        (
                            n["metadata"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            json!({
                                "spec": n["spec"],
                                "labels": n["metadata"]["labels"],
                                "annotations": n["metadata"]["annotations"],
                            }),
                        )
                    })
                    .collect();
                let zone_a_pods = sim
                    .store()
                    .list(&kinds::pods(), Some("shop"))
                    .0
                    .iter()
                    .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
                    .filter(|p| {
                        p.pointer("/spec/nodeName")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.starts_with("zone-a"))
                    })
                    .count();
                let routes: Vec<Value> = sim
                    .store()
                    .list(&kinds::http_routes(), Some("shop"))
                    .0
                    .iter()
                    .map(
                        |r| json!({"spec": r["spec"], "annotations": r["metadata"]["annotations"]}),
                    )
                    .collect();
                let zone_a_pods = if self.playbook == Playbook::Failout {
                    json!(zone_a_pods)
                } else {
                    // After a fail-back or cleanup pods may come back to zone-a at any time.
                    Value::Null
                };
                json!({"nodes": nodes, "zoneAPods": zone_a_pods, "routes": routes})
            }
            Playbook::Restart => {
                let d = deployment(sim, "shop", "frontend");
                let current: Vec<String> = app_pods(sim, "shop", "frontend")
                    .iter()
                    .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect();
                let survivors = current
                    .iter()
                    .filter(|p| self.original_pods.contains(p))
                    .count();
                json!({
                    "spec": d["spec"],
                    "annotations": d["metadata"]["annotations"],
                    "ready": ready_pods(sim, "shop", "frontend"),
                    "originalPodsLeft": survivors,
                })
            }
        };
        normalize(state)
    }

    /// Pods evicted (successful eviction POSTs) since the trial began, with counts.
    pub fn evictions(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.sim.request_log() {
            if r.seq > self.log_start
                && r.method == "POST"
                && r.path.ends_with("/eviction")
                && (200..300).contains(&r.status)
            {
                let pod = r
                    .path
                    .trim_end_matches("/eviction")
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                *counts.entry(pod).or_insert(0) += 1;
            }
        }
        counts
    }

    /// `ripcord verify` for the trial's run: exit 0 (clean).
    pub async fn verify_clean(&mut self, run: &str) -> Exit {
        let args: Vec<String> = ["verify", "--run", run, "--wait", "60s"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        self.ripcord(&args, &[], None).await
    }

    /// Shuts the sim down.
    pub async fn finish(self) {
        if let Ok(sim) = Arc::try_unwrap(self.sim) {
            sim.shutdown().await;
        }
    }
}

/// Writes that are coordination or book-keeping, not mutations of the cluster's workloads.
pub fn is_bookkeeping(r: &RequestRecord) -> bool {
    r.path.starts_with("/apis/coordination.k8s.io/")
        || r.path.starts_with("/apis/ripcord.dev/")
        || r.path.starts_with("/apis/apiextensions.k8s.io/")
        || r.path.starts_with("/apis/events.k8s.io/")
        || r.path.contains("/events")
}

/// Checks that no mutation was applied more often than in the uninterrupted run, and that
/// no pod was evicted twice. Returns a description of each duplicate found.
pub fn duplicates(
    baseline: &BTreeMap<String, usize>,
    trial: &BTreeMap<String, usize>,
    evictions: &BTreeMap<String, usize>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (key, count) in trial {
        if key.ends_with("/eviction") {
            continue;
        }
        let allowed = baseline.get(key).copied().unwrap_or(0);
        if *count > allowed {
            found.push(format!(
                "{key}: {count} successful writes, uninterrupted run {allowed}"
            ));
        }
    }
    for (pod, count) in evictions {
        if *count > 1 {
            found.push(format!("pod {pod} evicted {count} times"));
        }
    }
    found
}

/// Replaces run ids and RFC 3339 timestamps in every string, recursively.
pub fn normalize(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(normalize_str(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (normalize_str(&k), normalize(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The length of a run id (`r-20261125-113000-0123456789ab`).
const RUN_ID_LEN: usize = 30;

fn normalize_str(s: &str) -> String {
    if s.parse::<jiff::Timestamp>().is_ok() {
        return "<time>".into();
    }
    // r-YYYYMMDD-HHMMSS-xxxxxxxxxxxx
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if s.get(i..i + RUN_ID_LEN).is_some_and(is_run_id) {
            out.push_str("<run>");
            i += RUN_ID_LEN;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_run_id(s: &str) -> bool {
    s.starts_with("r-") && journal::validate_run_id(s).is_ok()
}

/// The outcome of the last `RunFinished` record.
pub fn final_outcome(entries: &[Entry]) -> Option<Outcome> {
    entries.iter().rev().find_map(|e| match &e.record {
        Record::RunFinished { outcome, .. } => Some(*outcome),
        _ => None,
    })
}

/// The last `max` bytes of a text (on a char boundary).
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A Deployment from the store (`Null` when missing).
pub fn deployment(sim: &SimCluster, ns: &str, name: &str) -> Value {
    sim.store()
        .get(&kinds::deployments(), Some(ns), name)
        .unwrap_or(Value::Null)
}

/// kubectl rollout status rules: observed, updated, available.
pub fn rolled_out(d: &Value) -> bool {
    let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let replicas = int("/spec/replicas");
    int("/status/observedGeneration") >= int("/metadata/generation")
        && int("/status/updatedReplicas") == replicas
        && int("/status/replicas") == replicas
        && int("/status/availableReplicas") == replicas
}

/// Non-terminating pods whose `app` label is `app`.
pub fn app_pods(sim: &SimCluster, ns: &str, app: &str) -> Vec<Value> {
    sim.store()
        .list(&kinds::pods(), Some(ns))
        .0
        .into_iter()
        .filter(|p| p.pointer("/metadata/labels/app").and_then(Value::as_str) == Some(app))
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .collect()
}

/// How many of `app`'s pods are Ready.
pub fn ready_pods(sim: &SimCluster, ns: &str, app: &str) -> usize {
    app_pods(sim, ns, app)
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

/// Polls `cond` until true (bounded by [`WAIT_BOUND`]).
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT_BOUND;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What an uninterrupted run of a playbook leaves behind.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub state: Value,
    pub writes: BTreeMap<String, usize>,
    pub duration: Duration,
}

/// Runs the playbook once without interruption.
pub async fn baseline(playbook: Playbook) -> Baseline {
    let mut trial = Trial::start(playbook).await;
    let started = Instant::now();
    let (run, kills) = trial.run_with_kills(None, &[]).await;
    let duration = started.elapsed();
    assert_eq!(kills, 0);
    settle(&trial).await;
    trial.check_journal(&run);
    let base = Baseline {
        state: trial.relevant_state(),
        writes: trial.mutation_writes(),
        duration,
    };
    assert!(
        !base.writes.is_empty(),
        "the uninterrupted {} wrote nothing\n{}",
        playbook.name(),
        trial.transcript
    );
    trial.finish().await;
    base
}

/// Waits until the cluster has converged after a run (rollouts done, pods ready), so states
/// compare.
pub async fn settle(trial: &Trial) {
    let sim = trial.sim.clone();
    match trial.playbook {
        Playbook::Rollback => {
            wait_until("checkout rolled out", || {
                rolled_out(&deployment(&sim, "shop", "checkout"))
            })
            .await
        }
        Playbook::Restart => {
            wait_until("frontend ready", || {
                ready_pods(&sim, "shop", "frontend") == 12
            })
            .await
        }
        _ => {
            wait_until("web and api ready", || {
                ready_pods(&sim, "shop", "web") == 6 && ready_pods(&sim, "shop", "api") == 3
            })
            .await
        }
    }
}

/// What one trial of a campaign found.
#[derive(Debug, Clone)]
pub struct TrialReport {
    pub playbook: &'static str,
    pub kill: String,
    pub kills: usize,
    pub duplicates: Vec<String>,
    pub state_differs: Option<String>,
    pub violations: usize,
}

/// One crash trial: run with the kill plan, resume until done, then check everything.
pub async fn crash_trial(
    playbook: Playbook,
    base: &Baseline,
    hook: Option<&str>,
    delays: &[Duration],
) -> TrialReport {
    let mut trial = Trial::start(playbook).await;
    let (run, kills) = trial.run_with_kills(hook, delays).await;
    settle(&trial).await;
    trial.check_journal(&run);
    let state = trial.relevant_state();
    let state_differs = (state != base.state).then(|| {
        format!(
            "expected {}\n   found {}",
            serde_json::to_string(&base.state).unwrap_or_default(),
            serde_json::to_string(&state).unwrap_or_default()
        )
    });
    let duplicates = duplicates(&base.writes, &trial.mutation_writes(), &trial.evictions());
    if playbook == Playbook::Restart {
        let evicted: Vec<String> = trial.evictions().keys().cloned().collect();
        assert_eq!(
            evicted, trial.original_pods,
            "every original pod restarted exactly once\n{}",
            trial.transcript
        );
    }
    if let (Playbook::Cleanup, Some(failout)) = (playbook, trial.setup_run.clone()) {
        let verified = trial.verify_clean(&failout).await;
        assert_eq!(
            verified.code,
            Some(0),
            "verify after cleanup: {}",
            verified.output
        );
    }
    let violations = trial.sim.invariants().violations().len();
    let kill = match (hook, delays) {
        (Some(point), _) => format!("hook {point}"),
        (None, d) => format!(
            "SIGKILL after {:?} ms",
            d.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
        ),
    };
    let report = TrialReport {
        playbook: playbook.name(),
        kill,
        kills,
        duplicates,
        state_differs,
        violations,
    };
    if !report.duplicates.is_empty() || report.state_differs.is_some() || report.violations > 0 {
        eprintln!("{}", trial.transcript);
    }
    trial.finish().await;
    report
}
