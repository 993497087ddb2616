//! Scheduled drills under `tokio::time::pause()` with a virtual clock: a drill fires at its
//! cron time and does fail-out → fail-back → verify; it is skipped when the error-budget gate
//! fails, outside its window and while the previous occurrence still runs; a failed fail-out
//! is still failed back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::daemon_support as support;

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
        hypothesis: None,
        hold: None,
        hold_interval: None,
        returned: None,
        budget_burn: None,
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

// === issue 17: drills as experiments ===

use ripcord::daemon::config::{HttpProbe, Hypothesis, PromProbe, ReturnCheck};
use ripcord::playbook::duration::Duration as PDuration;

fn experiment() -> DrillConfig {
    let mut d = drill(None);
    d.verify = None;
    d.hypothesis = Some(Hypothesis {
        probes: vec![PromProbe {
            name: "error-ratio".into(),
            query: "slo:error_ratio".into(),
            op: CompareOp::Lt,
            threshold: 0.01,
        }],
        http: Vec::new(),
    });
    d.hold = Some(PDuration(Duration::from_secs(600)));
    d.hold_interval = Some(PDuration(Duration::from_secs(60)));
    d.returned = Some(ReturnCheck {
        probes: vec![PromProbe {
            name: "zone-b-pods".into(),
            query: "zone_b_ready_pods".into(),
            op: CompareOp::Ge,
            threshold: 3.0,
        }],
        within: Some(PDuration(Duration::from_secs(120))),
    });
    d.budget_burn = Some(0.05);
    d
}

fn phases(report: &ripcord::daemon::drills::DrillReport, phase: &str) -> usize {
    report.events.iter().filter(|e| e.phase == phase).count()
}

#[tokio::test(start_paused = true)]
async fn issue17_drill_holds_the_zone_out_and_checks_the_hypothesis_before_during_and_after() {
    let (h, gate) = setup(FakeExecutor::default(), 0.5);
    gate.values.lock().unwrap().extend([
        ("slo:error_ratio".to_string(), 0.001),
        ("zone_b_ready_pods".to_string(), 3.0),
    ]);
    let tasks = start(&h, experiment(), gate.clone());
    tokio::time::sleep(Duration::from_secs(7 * 60 + 1)).await; // 10:10:01
    let log = h.state.drills.clone();
    assert!(log.recent().is_empty(), "the hold has only begun");
    tokio::time::sleep(Duration::from_secs(11 * 60)).await; // past the 10 min hold
    support::eventually("drill report", || !log.recent().is_empty()).await;
    let report = h.state.drills.recent()[0].clone();
    assert_eq!(report.outcome, "succeeded", "{report:?}");
    assert_eq!(report.held_seconds.map(|s| s.round()), Some(600.0));
    assert_eq!(phases(&report, "before"), 1, "{:?}", report.events);
    assert_eq!(phases(&report, "hold"), 10, "{:?}", report.events);
    assert_eq!(phases(&report, "after"), 1);
    assert_eq!(phases(&report, "returned"), 1);
    // The fail-back came only after the hold.
    let at = |phase: &str| report.events.iter().find(|e| e.phase == phase).unwrap().at;
    assert!(at("failback").duration_since(at("failout")).as_secs() >= 600);
    assert!(report.incident.is_none() && report.hypothesis_failed.is_none());
    // A drill is not an incident: its runs name none.
    for e in h.executor.executed() {
        assert_eq!(h.state.runs.get(&e.run_id).unwrap().incident, None);
    }
    // The journal (every check as it happened) and a report for people beside the JSON.
    let file = report.file.clone().unwrap();
    let journal = std::fs::read_to_string(file.with_extension("jsonl")).unwrap();
    assert_eq!(journal.lines().count(), report.events.len());
    let md = std::fs::read_to_string(file.with_extension("md")).unwrap();
    assert!(
        md.contains("outcome: **succeeded**") && md.contains("| hold |"),
        "{md}"
    );
    // The drill is a run of its own too: journaled, listed with the runs, finished.
    let drill_run = report.run_id.clone().expect("the drill's run");
    let view = h.state.runs.get(&drill_run).expect("listed");
    assert_eq!(view.playbook, "drill/zone-b");
    assert_eq!(
        view.outcome.map(|o| o.as_str()),
        Some("succeeded"),
        "{view:?}"
    );
    assert!(h.state.runs.list().iter().any(|r| r.run_id == drill_run));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .arg("--state-dir")
        .arg(h.dir.path())
        .args(["report", &drill_run])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && md.contains("drill/zone-b") && md.contains("error-ratio"),
        "ripcord report {drill_run}: {md}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = h.state.metrics.render();
    assert!(
        metrics.contains(r#"ripcord_drill_last_timestamp_seconds{drill="zone-b"}"#)
            && metrics.contains(r#"ripcord_drill_next_timestamp_seconds{drill="zone-b"}"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("drill_error_budget_burn_total{"),
        "{metrics}"
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn issue17_a_failed_hypothesis_ends_the_hold_fails_back_and_opens_an_incident() {
    let (h, gate) = setup(FakeExecutor::default(), 0.5);
    gate.values.lock().unwrap().extend([
        ("slo:error_ratio".to_string(), 0.001),
        ("zone_b_ready_pods".to_string(), 3.0),
    ]);
    let tasks = start(&h, experiment(), gate.clone());
    let executor = h.executor.clone();
    tokio::time::sleep(Duration::from_secs(7 * 60)).await;
    support::eventually("fail-out ran", || !executor.executed().is_empty()).await;
    // Three minutes into the hold the business suffers.
    tokio::time::sleep(Duration::from_secs(150)).await;
    gate.values
        .lock()
        .unwrap()
        .insert("slo:error_ratio".to_string(), 0.2);
    tokio::time::sleep(Duration::from_secs(60)).await; // the next check
    let log = h.state.drills.clone();
    support::eventually("drill report", || !log.recent().is_empty()).await;
    let report = h.state.drills.recent()[0].clone();
    assert_eq!(report.outcome, "failed", "{report:?}");
    let evidence = report.hypothesis_failed.clone().unwrap();
    assert!(
        evidence.contains("during the hold") && evidence.contains("slo:error_ratio = 0.2"),
        "{evidence}"
    );
    assert!(report.held_seconds.unwrap() < 600.0, "{report:?}");
    let drill_run = h.state.runs.get(report.run_id.as_deref().unwrap()).unwrap();
    assert_eq!(drill_run.outcome.map(|o| o.as_str()), Some("failed"));
    assert_eq!(drill_run.incident.as_deref(), report.incident.as_deref());
    assert_eq!(phases(&report, "hold"), 3, "{:?}", report.events);
    // Failed back all the same, under the incident that was opened with the evidence.
    let failback = report.failback.clone().unwrap();
    assert_eq!(failback.outcome, "succeeded");
    let incident = report.incident.clone().unwrap();
    assert_eq!(incident, "drill-zone-b-20261125T1010Z");
    let run = h
        .state
        .runs
        .get(failback.run_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(run.incident.as_deref(), Some(incident.as_str()));
    let opened = ripcord::cleanup::incident::load(h.dir.path(), &incident).unwrap();
    assert!(
        opened.impact.unwrap().contains("slo:error_ratio = 0.2"),
        "the incident carries the evidence"
    );
    assert!(
        h.state
            .metrics
            .render()
            .contains(r#"ripcord_drill_error_budget_burn_total{drill="zone-b"} 0.05"#)
    );
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
async fn issue17_a_drill_outside_steady_state_does_nothing() {
    let (h, gate) = setup(FakeExecutor::default(), 0.5);
    gate.values
        .lock()
        .unwrap()
        .insert("slo:error_ratio".to_string(), 0.5);
    let tasks = start(&h, experiment(), gate);
    tokio::time::sleep(Duration::from_secs(7 * 60 + 1)).await;
    let log = h.state.drills.clone();
    support::eventually("drill report", || !log.recent().is_empty()).await;
    let report = h.state.drills.recent()[0].clone();
    assert_eq!(report.outcome, "skipped-hypothesis", "{report:?}");
    assert!(report.reason.contains("error-ratio"), "{}", report.reason);
    assert!(h.executor.executed().is_empty());
    assert!(report.incident.is_none());
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn issue17_a_zone_that_does_not_get_its_pods_back_fails_the_drill() {
    let (h, gate) = setup(FakeExecutor::default(), 0.5);
    gate.values.lock().unwrap().extend([
        ("slo:error_ratio".to_string(), 0.001),
        ("zone_b_ready_pods".to_string(), 1.0),
    ]);
    let tasks = start(&h, experiment(), gate);
    // Fires at 10:10, holds 10 min, then waits up to 2 min for the zone to return.
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    let log = h.state.drills.clone();
    support::eventually("drill report", || !log.recent().is_empty()).await;
    let report = h.state.drills.recent()[0].clone();
    assert_eq!(report.outcome, "failed", "{report:?}");
    assert!(
        report.reason.contains("did not return") && report.reason.contains("zone-b-pods"),
        "{}",
        report.reason
    );
    assert!(report.incident.is_none(), "not a hypothesis failure");
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn issue17_http_probes_check_the_status() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/down",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let probe = |path: &str, expect: Option<u16>| HttpProbe {
        name: "shop".into(),
        url: format!("http://{addr}{path}"),
        expect_status: expect,
        timeout: Some(PDuration(Duration::from_secs(5))),
    };
    let http = ripcord::daemon::drills::http_probe;
    assert_eq!(http(&probe("/ok", None)).await.unwrap(), (true, 200));
    assert_eq!(http(&probe("/down", None)).await.unwrap(), (false, 503));
    assert_eq!(http(&probe("/down", Some(503))).await.unwrap(), (true, 503));
    let closed = HttpProbe {
        url: "http://127.0.0.1:9/".into(),
        ..probe("/", None)
    };
    assert!(http(&closed).await.is_err());
}
