//! Shared helpers of the mitigation tests (zone fail-out/fail-back, rolling restart): starting
//! a scenario, an action context pointed at the sim, reading the store, and a driver that runs
//! one step like the engine does (diff → apply each mutation → verify → re-diff until the diff
//! is empty), with a hook after every applied mutation and an optional interruption point.
#![allow(dead_code)]

use ripcord::actions::{Action, ActionContext, ActionError, Applied};
use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Starts a scenario file from `tests/data/scenarios/`.
pub async fn start_file(name: &str) -> SimCluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/scenarios")
        .join(name);
    let scenario = Scenario::load_file(&path).expect("scenario loads");
    start(scenario).await
}

/// Starts a scenario given as YAML.
pub async fn start_yaml(yaml: &str) -> SimCluster {
    let scenario = Scenario::from_yaml("mitigations-test", yaml).expect("scenario parses");
    start(scenario).await
}

async fn start(scenario: Scenario) -> SimCluster {
    SimCluster::start(SimOptions {
        scenario,
        addr: None,
    })
    .await
    .expect("sim starts")
}

/// Polls a condition (bounded: 60 s real time).
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An action context for one step of one run against the sim.
pub fn context(sim: &SimCluster, run: &str, step: &str) -> ActionContext {
    ActionContext {
        client: sim.client(),
        run_id: run.into(),
        step: step.into(),
        default_namespace: "shop".into(),
        http: reqwest::Client::new(),
        prometheus_url: None,
        call_timeout: Duration::from_secs(5),
        verify_timeout: Duration::from_secs(60),
        playbook: "mitigations-test".into(),
        notifier: None,
        state_dir: None,
        observed: Default::default(),
        notices: Default::default(),
    }
}

/// Every object of a kind (all namespaces).
pub fn list(sim: &SimCluster, rt: &ripcord::sim::store::ResourceType) -> Vec<Value> {
    sim.store().list(rt, None).0
}

/// Nodes whose zone label is `zone`.
pub fn zone_nodes(sim: &SimCluster, zone: &str) -> Vec<Value> {
    list(sim, &kinds::nodes())
        .into_iter()
        .filter(|n| {
            n.pointer("/metadata/labels/topology.kubernetes.io~1zone")
                .and_then(Value::as_str)
                == Some(zone)
        })
        .collect()
}

/// True when the pod's Ready condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Non-terminating pods of a namespace whose `app` label is `app`.
pub fn app_pods(sim: &SimCluster, namespace: &str, app: &str) -> Vec<Value> {
    sim.store()
        .list(&kinds::pods(), Some(namespace))
        .0
        .into_iter()
        .filter(|p| p.pointer("/metadata/labels/app").and_then(Value::as_str) == Some(app))
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .collect()
}

/// True when `app` has `n` pods, all Ready.
pub fn all_ready(sim: &SimCluster, namespace: &str, app: &str, n: usize) -> bool {
    let pods = app_pods(sim, namespace, app);
    pods.len() == n && pods.iter().all(pod_ready)
}

/// A string at a JSON pointer.
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// How a driven step ended.
#[derive(Debug)]
pub struct Driven {
    /// Mutation ids applied, per round.
    pub rounds: Vec<Vec<String>>,
    /// Every applied mutation.
    pub applied: Vec<Applied>,
    /// The summary of the last diff.
    pub last_summary: String,
    /// True when the drive stopped early at the interruption point.
    pub interrupted: bool,
}

/// Runs a step like the engine: diff, apply every mutation (calling `after_apply` with each
/// id), verify, and diff again until the diff is empty. `prior` are mutations applied by an
/// earlier (interrupted) process for this step. `stop_after` interrupts the drive after that
/// many applied mutations (before verify), like a killed process.
pub async fn drive(
    action: &dyn Action,
    ctx: &ActionContext,
    prior: Vec<Applied>,
    stop_after: Option<usize>,
    mut after_apply: impl FnMut(&str),
) -> Result<Driven, ActionError> {
    let mut driven = Driven {
        rounds: Vec::new(),
        applied: prior,
        last_summary: String::new(),
        interrupted: false,
    };
    let mut unverified = !driven.applied.is_empty();
    let mut count = 0usize;
    for _ in 0..500 {
        let diff = action.diff(ctx).await?;
        driven.last_summary = diff.summary.clone();
        if diff.mutations.is_empty() {
            if unverified {
                action.verify(ctx, &driven.applied).await?;
            }
            return Ok(driven);
        }
        let mut ids = Vec::new();
        for mutation in &diff.mutations {
            let applied = action.apply(ctx, mutation).await?;
            ids.push(applied.id.clone());
            after_apply(&applied.id);
            driven.applied.push(applied);
            count += 1;
            if stop_after.is_some_and(|n| count >= n) {
                driven.rounds.push(ids);
                driven.interrupted = true;
                return Ok(driven);
            }
        }
        driven.rounds.push(ids);
        action.verify(ctx, &driven.applied).await?;
        unverified = false;
    }
    panic!("the step did not converge in 500 rounds");
}
