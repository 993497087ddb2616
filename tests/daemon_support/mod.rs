//! Shared helpers of the daemon tests, included as `#[path = "daemon_support/mod.rs"] mod
//! support;` by `tests/daemon_*.rs` and `tests/misc/fuzz_inputs.rs` (a directory module, so cargo
//! does not build it as a test target of its own).
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::future::BoxFuture;
use ripcord::daemon::DaemonState;
use ripcord::daemon::alerts::AlertRouter;
use ripcord::daemon::auth::{TokenScope, Tokens};
use ripcord::daemon::clock::Clock;
use ripcord::daemon::config::AlertmanagerConfig;
use ripcord::daemon::metrics::DaemonMetrics;
use ripcord::daemon::runs::{Executor, Playbooks, RunDefaults, RunManager};
use ripcord::engine::{EngineError, EngineEvent, RunOptions, RunOutcome, StepReport, StepResult};
use ripcord::journal::Outcome;
use ripcord::plan::Plan;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tower::ServiceExt as _;

/// The token the tests use.
pub const TOKEN: &str = "s3cret-token";

/// What the fake executor saw.
#[derive(Debug, Clone)]
pub struct Executed {
    pub run_id: String,
    pub playbook: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub trigger: String,
    pub resume: Option<String>,
    pub stopped_by: Option<String>,
}

/// A fake engine: each run reports its steps and succeeds, after taking a permit from
/// `gate` when gated (so tests control when runs end). A playbook named in `fail` fails.
#[derive(Clone, Default)]
pub struct FakeExecutor {
    pub executed: Arc<Mutex<Vec<Executed>>>,
    pub running: Arc<Mutex<Vec<String>>>,
    pub gate: Option<Arc<Semaphore>>,
    pub fail: Arc<Mutex<Vec<String>>>,
}

impl FakeExecutor {
    pub fn gated() -> (FakeExecutor, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        (
            FakeExecutor {
                gate: Some(gate.clone()),
                ..FakeExecutor::default()
            },
            gate,
        )
    }

    pub fn executed(&self) -> Vec<Executed> {
        self.executed.lock().unwrap().clone()
    }

    pub fn running(&self) -> Vec<String> {
        self.running.lock().unwrap().clone()
    }
}

impl Executor for FakeExecutor {
    fn execute(
        &self,
        plan: Plan,
        opts: RunOptions,
        events: mpsc::Sender<EngineEvent>,
    ) -> BoxFuture<'static, Result<RunOutcome, EngineError>> {
        let me = self.clone();
        Box::pin(async move {
            me.running.lock().unwrap().push(plan.run_id.clone());
            let _ = events
                .send(EngineEvent::RunStarted {
                    run_id: plan.run_id.clone(),
                    journal: None,
                    steps: plan.steps.len(),
                    resumed: opts.resume.is_some(),
                })
                .await;
            let mut reports = Vec::new();
            let mut stopped_by = None;
            for (index, step) in plan.steps.iter().enumerate() {
                let _ = events
                    .send(EngineEvent::StepStarted {
                        index,
                        total: plan.steps.len(),
                        step: step.name.clone(),
                        action: step.action.name().to_string(),
                    })
                    .await;
                if index == 0
                    && let Some(gate) = &me.gate
                {
                    // Wait for a permit or a stop request.
                    let stop = opts.stop.clone();
                    loop {
                        if let Ok(permit) = gate.try_acquire() {
                            permit.forget();
                            break;
                        }
                        if let Some(reason) = stop.as_ref().and_then(|s| s.reason()) {
                            stopped_by = Some(reason.to_string());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                if stopped_by.is_some() {
                    break;
                }
                let _ = events
                    .send(EngineEvent::StepFinished {
                        step: step.name.clone(),
                        result: StepResult::Verified,
                    })
                    .await;
                reports.push(StepReport {
                    name: step.name.clone(),
                    action: step.action.name().to_string(),
                    result: StepResult::Verified,
                    summary: String::new(),
                    mutations: Vec::new(),
                });
            }
            me.running.lock().unwrap().retain(|r| *r != plan.run_id);
            me.executed.lock().unwrap().push(Executed {
                run_id: plan.run_id.clone(),
                playbook: plan.playbook.clone(),
                params: plan.params.clone(),
                trigger: opts.trigger.as_str().to_string(),
                resume: opts.resume.clone(),
                stopped_by: stopped_by.clone(),
            });
            let failed = me.fail.lock().unwrap().contains(&plan.playbook);
            let outcome = match (&stopped_by, failed) {
                (Some(_), _) => Outcome::Interrupted,
                (None, true) => Outcome::Failed,
                (None, false) => Outcome::Succeeded,
            };
            Ok(RunOutcome {
                run_id: plan.run_id.clone(),
                outcome,
                reason: stopped_by,
                dry_run: false,
                duration: Duration::from_millis(1),
                dir: PathBuf::new(),
                journal: None,
                mutations_applied: reports.len(),
                steps: reports,
            })
        })
    }
}

/// A daemon state with the fake executor, leading unless `leader` says otherwise.
pub struct Harness {
    pub state: DaemonState,
    pub executor: FakeExecutor,
    pub leader: watch::Sender<bool>,
    pub dir: tempfile::TempDir,
}

pub fn harness(executor: FakeExecutor, alerts: AlertmanagerConfig, clock: Clock) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (leader, leader_rx) = watch::channel(true);
    let metrics = Arc::new(DaemonMetrics::new());
    let runs = RunManager::new(
        Arc::new(executor.clone()),
        Playbooks::default(),
        RunDefaults {
            state_dir: dir.path().to_path_buf(),
            prometheus_url: None,
            notify: Vec::new(),
            notify_required: false,
            call_timeout: Duration::from_secs(5),
            lock_namespace: None,
            seal: None,
        },
        metrics.clone(),
        clock,
        leader_rx.clone(),
    );
    let mut state = DaemonState::new(
        runs,
        AlertRouter::new(alerts),
        metrics,
        Tokens::fixed([
            format!("ops {TOKEN}"),
            "second-token".to_string(),
            "alice alice-token".to_string(),
            "mallory mallory-token".to_string(),
        ])
        .with_scopes([TokenScope::unrestricted("ops")]),
        leader_rx,
    );
    state.body_limit = 64 * 1024;
    state.set_ready(true);
    Harness {
        state,
        executor,
        leader,
        dir,
    }
}

/// Sends one request through the router; returns status and body (JSON when it parses,
/// else a JSON string).
pub async fn call(
    state: &DaemonState,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, serde_json::Value) {
    let (status, text) = call_text(state, method, path, token, body).await;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// As [`call`], the body as text.
pub async fn call_text(
    state: &DaemonState,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Body::from(body.unwrap_or_default())).unwrap();
    let response = ripcord::daemon::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Polls `f` (bounded) until it is true.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// An Alertmanager webhook payload with one alert.
pub fn alert_payload(status: &str, labels: &[(&str, &str)]) -> String {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "ripcord",
        "groupLabels": {},
        "commonLabels": labels.clone(),
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": {"summary": "errors"},
            "startsAt": "2026-11-25T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "f00d"
        }]
    })
    .to_string()
}
