//! Scheduled drills under `tokio::time::pause()` with a virtual clock: a drill fires at its
//! cron time and does fail-out → fail-back → verify; it is skipped when the error-budget gate
//! fails, outside its window and while the previous occurrence still runs; a failed fail-out
//! is still failed back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[path = "daemon_support/mod.rs"]
mod support;

use futures::future::BoxFuture;
use ripcord::daemon::clock::Clock;
use ripcord::daemon::config::{AlertmanagerConfig, DrillConfig, DrillRun, TimeWindow};
use ripcord::daemon::drills::{ConditionGate, DrillScheduler};
use ripcord::playbook::model::{CompareOp, PromCondition};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{FakeExecutor, Harness, harness};

/// A gate answering from a table of query → value, recording what it was asked.
#[derive(Default)]
struct FakeGate {
    values: Mutex<BTreeMap<String, f64>>,
    asked: Mutex<Vec<String>>,
}

impl ConditionGate for FakeGate {
    fn evaluate(&self, c: &PromCondition) -> BoxFuture<'static, Result<(bool, f64), String>> {
        self.asked.lock().unwrap().push(c.query.clone());
        let value = self.values.lock().unwrap().get(&c.query).copied();
        let c = c.clone();
        Box::pin(async move {
            match value {
                Some(v) => Ok((c.holds(v), v)),
                None => Err(format!("no data for {}", c.query)),
            }
        })
    }
}

fn drill(window: Option<(&str, &str)>) -> DrillConfig {
    let zone = BTreeMap::from([("zone".to_string(), "zone-b".to_string())]);
    DrillConfig {
        name: "zone-b".into(),
        schedule: "*/10 * * * *".into(),
        timezone: Some("+01:00".into()),
        window: window.map(|(s, e)| TimeWindow {
            start: s.into(),
            end: e.into(),
        }),
        error_budget: Some(PromCondition {
            query: "slo:error_budget_remaining:ratio".into(),
            op: CompareOp::Gt,
            threshold: 0.2,
        }),
        failout: DrillRun {
            playbook: "failout-zone".into(),
            params: zone.clone(),
        },
        failback: DrillRun {
            playbook: "failback-zone".into(),
            params: zone,
        },
        verify: Some(PromCondition {
            query: "sum(up)".into(),
            op: CompareOp::Ge,
            threshold: 3.0,
        }),
    }
}

fn start(h: &Harness, drill: DrillConfig, gate: Arc<FakeGate>) -> Vec<tokio::task::JoinHandle<()>> {
    DrillScheduler {
        drills: vec![drill],
        runs: h.state.runs.clone(),
        gate: Some(gate as Arc<dyn ConditionGate>),
        leader: h.state.leader.clone(),
        metrics: h.state.metrics.clone(),
        log: h.state.drills.clone(),
    }
    .spawn()
}

fn setup(executor: FakeExecutor, budget: f64) -> (Harness, Arc<FakeGate>) {
    // 10:03 UTC; the drill fires at 10:10 UTC (= 11:10 at +01:00).
    let clock = Clock::starting_at("2026-11-25T10:03:00Z".parse().unwrap());
    let h = harness(executor, AlertmanagerConfig::default(), clock);
    let gate = Arc::new(FakeGate::default());
    gate.values.lock().unwrap().extend([
        ("slo:error_budget_remaining:ratio".to_string(), budget),
        ("sum(up)".to_string(), 3.0),
    ]);
    (h, gate)
}

#[tokio::test(start_paused = true)]
async fn drill_fires_at_its_cron_time_and_fails_out_back_and_verifies() {
    let (h, gate) = setup(FakeExecutor::default(), 0.5);
    let tasks = start(&h, drill(Some(("09:00", "17:00"))), gate.clone());
    tokio::time::sleep(Duration::from_secs(6 * 60 + 59)).await; // 10:09:59
    assert!(h.executor.executed().is_empty(), "fired early");
    assert!(gate.asked.lock().unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await; // 10:10:01
    let log = h.state.drills.clone();
    support::eventually("drill report", || !log.recent().is_empty()).await;
    let report = h.state.drills.recent()[0].clone();
    assert_eq!(report.scheduled_for.to_string(), "2026-11-25T10:10:00Z");
    assert_eq!(report.outcome, "succeeded", "{report:?}");
    assert_eq!(report.budget_value, Some(0.5));
    assert_eq!(report.verify_value, Some(3.0));
    let executed = h.executor.executed();
    let order: Vec<&str> = executed.iter().map(|e| e.playbook.as_str()).collect();
    assert_eq!(order, ["failout-zone", "failback-zone"]);
    assert!(
        executed
            .iter()
            .all(|e| e.trigger == "schedule" && e.params["zone"] == "zone-b")
    );
    assert_eq!(
        *gate.asked.lock().unwrap(),
        ["slo:error_budget_remaining:ratio", "sum(up)"]
    );
    let file = report.file.clone().expect("report written");
    assert!(
        file.starts_with(h.dir.path().join("drills/zone-b")),
        "{file:?}"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["outcome"], "succeeded");
    assert_eq!(written["failout"]["playbook"], "failout-zone");
    assert!(
        h.state
            .metrics
            .render()
            .contains(r#"ripcord_drills_total{drill="zone-b",outcome="succeeded"} 1"#)
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn drill_is_skipped_when_the_error_budget_gate_fails() {
    let (h, gate) = setup(FakeExecutor::default(), 0.1);
    let tasks = start(&h, drill(None), gate);
    tokio::time::sleep(Duration::from_secs(7 * 60 + 1)).await;
    let log = h.state.drills.clone();
    support::eventually("drill report", || !log.recent().is_empty()).await;
    let report = h.state.drills.recent()[0].clone();
    assert_eq!(report.outcome, "skipped-budget", "{report:?}");
    assert!(report.reason.contains("0.1"), "{}", report.reason);
    assert!(h.executor.executed().is_empty(), "nothing may run");
    assert!(
        h.state
            .metrics
            .render()
            .contains(r#"ripcord_drills_total{drill="zone-b",outcome="skipped-budget"} 1"#)
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn drill_is_skipped_outside_its_window() {
    let (h, gate) = setup(FakeExecutor::default(), 0.5);
    // 10:10 UTC is 11:10 at +01:00: outside 12:00–13:00.
    let tasks = start(&h, drill(Some(("12:00", "13:00"))), gate.clone());
    tokio::time::sleep(Duration::from_secs(7 * 60 + 1)).await;
    let log = h.state.drills.clone();
    support::eventually("drill report", || !log.recent().is_empty()).await;
    assert_eq!(h.state.drills.recent()[0].outcome, "skipped-window");
    assert!(
        gate.asked.lock().unwrap().is_empty(),
        "no budget query outside the window"
    );
    assert!(h.executor.executed().is_empty());
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn an_overlapping_occurrence_is_skipped_and_a_failed_failout_is_failed_back() {
    let (executor, permits) = FakeExecutor::gated();
    executor
        .fail
        .lock()
        .unwrap()
        .push("failout-zone".to_string());
    let (h, gate) = setup(executor, 0.5);
    let tasks = start(&h, drill(None), gate);
    // 10:10 fires; the fail-out blocks until a permit; 10:20 fires while it still runs.
    tokio::time::sleep(Duration::from_secs(17 * 60 + 1)).await;
    let log = h.state.drills.clone();
    support::eventually("overlap report", || !log.recent().is_empty()).await;
    let report = h.state.drills.recent()[0].clone();
    assert_eq!(report.outcome, "skipped-overlap", "{report:?}");
    assert_eq!(report.scheduled_for.to_string(), "2026-11-25T10:20:00Z");
    // Let the fail-out (which fails) and the fail-back finish.
    permits.add_permits(2);
    support::eventually("drill report", || log.recent().len() == 2).await;
    let report = h.state.drills.recent()[0].clone();
    assert_eq!(report.scheduled_for.to_string(), "2026-11-25T10:10:00Z");
    assert_eq!(report.outcome, "failed", "{report:?}");
    assert!(
        report.reason.contains("fail-out failed"),
        "{}",
        report.reason
    );
    assert_eq!(report.failback.as_ref().unwrap().outcome, "succeeded");
    let order: Vec<String> = h
        .executor
        .executed()
        .iter()
        .map(|e| e.playbook.clone())
        .collect();
    assert_eq!(order, ["failout-zone", "failback-zone"]);
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_runs_drills() {
    let (h, gate) = setup(FakeExecutor::default(), 0.5);
    h.leader.send_replace(false);
    let tasks = start(&h, drill(None), gate);
    tokio::time::sleep(Duration::from_secs(27 * 60)).await;
    assert!(h.state.drills.recent().is_empty());
    assert!(h.executor.executed().is_empty());
    for t in tasks {
        t.abort();
    }
}
