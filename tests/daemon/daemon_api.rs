//! The daemon's HTTP API driven in process (`Router::oneshot`) with a fake executor: auth,
//! body handling, runs, the per-target queue, cancel, approvals, Alertmanager decisions,
//! metrics, the status page, and that no input makes it panic or answer 500.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::daemon_support as support;

use axum::http::StatusCode;
use ripcord::daemon::clock::Clock;
use ripcord::daemon::config::{AlertRule, AlertmanagerConfig};
use ripcord::playbook::Duration as PbDuration;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{FakeExecutor, TOKEN, alert_payload, call, call_text, eventually, harness};

const APPROVAL_PLAYBOOK: &str = r#"apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: approve-then-scale
spec:
  params:
    name:
      type: string
      required: true
  lock: deployment/default/$(params.name)
  steps:
    - name: ack
      action: gate.approval
      with:
        approvers: [alice]
        message: Scale $(params.name) to zero?
    - name: scale
      action: deployment.scale
      with:
        name: $(params.name)
        replicas: 0
"#;

fn rules(cooldown_s: u64, per_minute: u32) -> AlertmanagerConfig {
    AlertmanagerConfig {
        cooldown: PbDuration(Duration::from_secs(cooldown_s)),
        max_runs_per_minute: per_minute,
        rules: vec![AlertRule {
            name: "high-error-rate".into(),
            matchers: BTreeMap::from([("alertname".to_string(), "HighErrorRate".to_string())]),
            playbook: "rollback".into(),
            params: BTreeMap::from([
                ("namespace".to_string(), "$(labels.namespace)".to_string()),
                ("name".to_string(), "$(labels.deployment)".to_string()),
            ]),
            cooldown: None,
        }],
    }
}

fn rollback_body(name: &str) -> String {
    json!({"playbook": "rollback", "params": {"name": name, "namespace": "shop"}, "incident": "INC-7"})
        .to_string()
}

#[tokio::test]
async fn health_is_open_everything_else_needs_a_valid_token() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    for path in ["/healthz", "/readyz"] {
        let (status, _) = call(&h.state, "GET", path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let protected = [
        ("GET", "/"),
        ("GET", "/metrics"),
        ("GET", "/v1/runs"),
        ("POST", "/v1/runs"),
        ("GET", "/v1/runs/r-20261125-100000-abcd"),
        ("POST", "/v1/runs/r-20261125-100000-abcd/cancel"),
        ("POST", "/v1/runs/r-20261125-100000-abcd/approvals/ack"),
        ("POST", "/v1/alertmanager"),
    ];
    for (method, path) in protected {
        for token in [
            None,
            Some("wrong"),
            Some(""),
            Some("s3cret-toke"),
            Some("s3cret-token-x"),
        ] {
            let (status, body) = call(&h.state, method, path, token, Some("{}".into())).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(body["category"], "unauthorized", "{body}");
        }
    }
    let (status, _) = call(&h.state, "GET", "/v1/runs", Some("second-token"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.executor.executed().is_empty());
    let (_, metrics) = call_text(&h.state, "GET", "/metrics", Some(TOKEN), None).await;
    assert!(
        metrics.contains("ripcord_api_errors_total{route=\"runs\",status=\"401\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_json_errors() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    let cases = [
        ("/v1/runs", "{not json", "malformed-json"),
        ("/v1/runs", "", "malformed-json"),
        ("/v1/runs", "[]", "bad-request"),
        ("/v1/runs", r#"{"playbook": 7}"#, "malformed-json"),
        (
            "/v1/runs",
            r#"{"playbook": "rollback", "extra": 1}"#,
            "malformed-json",
        ),
        ("/v1/runs", r#"{"params": {}}"#, "bad-request"),
        (
            "/v1/runs",
            r#"{"playbook": "rollback", "body": "x"}"#,
            "bad-request",
        ),
        (
            "/v1/runs",
            r#"{"playbook": "rollback", "params": {"name": ["a"]}}"#,
            "bad-request",
        ),
        (
            "/v1/alertmanager",
            r#"{"alerts": "nope"}"#,
            "malformed-json",
        ),
        ("/v1/alertmanager", "\u{0}\u{1}", "malformed-json"),
    ];
    for (path, body, category) in cases {
        let (status, json) = call(&h.state, "POST", path, Some(TOKEN), Some(body.into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body:?}: {json}");
        assert_eq!(json["category"], category, "{path} {body:?}: {json}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    }
    let huge = format!(
        r#"{{"playbook": "rollback", "incident": "{}"}}"#,
        "x".repeat(100_000)
    );
    let (status, json) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert_eq!(json["category"], "too-large");
    assert!(h.executor.executed().is_empty());
}

#[tokio::test]
async fn bad_playbooks_and_params_are_refused_before_anything_runs() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some(r#"{"playbook": "rolback"}"#.into()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    assert_eq!(json["category"], "unknown-playbook");
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some(r#"{"playbook": "../../etc/passwd"}"#.into()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    // `name` is required by the rollback playbook.
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some(r#"{"playbook": "rollback"}"#.into()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(json["error"].as_str().unwrap().contains("name"), "{json}");
    let body = json!({"body": "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata: {name: x}\nspec:\n  steps:\n    - name: a\n      action: deployment.rolback\n"}).to_string();
    let (status, json) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["category"], "invalid-playbook");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("deployment.rollback"),
        "did-you-mean expected: {json}"
    );
    // Refused requests queue nothing: no run exists that could ever execute.
    assert!(h.state.runs.list().is_empty());
    assert!(h.executor.executed().is_empty());
}

#[tokio::test]
async fn a_run_is_queued_executed_and_reported() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some(rollback_body("checkout")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let run_id = json["runId"].as_str().unwrap().to_string();
    assert!(run_id.starts_with("r-"), "{run_id}");
    assert_eq!(json["lock"], "deployment/shop/checkout");
    let runs = h.state.runs.clone();
    let id = run_id.clone();
    eventually("run finished", || {
        runs.get(&id).is_some_and(|r| r.outcome.is_some())
    })
    .await;
    let (status, json) = call(
        &h.state,
        "GET",
        &format!("/v1/runs/{run_id}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["run"]["outcome"], "succeeded", "{json}");
    assert_eq!(json["run"]["incident"], "INC-7");
    assert_eq!(json["run"]["trigger"], "api");
    let steps: Vec<&str> = json["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["verified", "verified"], "{json}");
    let executed = h.executor.executed();
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0].params["name"], "checkout");
    let (_, list) = call(&h.state, "GET", "/v1/runs", Some(TOKEN), None).await;
    assert_eq!(list["runs"][0]["runId"], run_id.as_str());
    let (status, _) = call(
        &h.state,
        "GET",
        "/v1/runs/r-20990101-000000-ffff",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&h.state, "GET", "/v1/runs/..%2F..%2Fetc", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, metrics) = call_text(&h.state, "GET", "/metrics", Some(TOKEN), None).await;
    assert!(
        metrics.contains(
            r#"ripcord_runs_total{playbook="rollback",trigger="api",outcome="succeeded"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("ripcord_step_duration_seconds_count{playbook=\"rollback\",action=\"deployment.rollback\",result=\"verified\"} 1"), "{metrics}");
}

#[tokio::test]
async fn runs_on_one_target_queue_runs_on_other_targets_do_not() {
    let (executor, gate) = FakeExecutor::gated();
    let h = harness(executor, AlertmanagerConfig::default(), Clock::System);
    let mut ids = Vec::new();
    for name in ["checkout", "checkout", "cart"] {
        let (status, json) = call(
            &h.state,
            "POST",
            "/v1/runs",
            Some(TOKEN),
            Some(rollback_body(name)),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        ids.push(json["runId"].as_str().unwrap().to_string());
    }
    let ex = h.executor.clone();
    eventually("two runs executing", || ex.running().len() == 2).await;
    // The second run on checkout reached the per-target wait (an observable event, not a sleep).
    let runs = h.state.runs.clone();
    let second = ids[1].clone();
    eventually("the second checkout run waits for the first", || {
        runs.get(&second).is_some_and(|v| {
            v.timeline.iter().any(|t| {
                t.text
                    .contains("another run on deployment/shop/checkout goes first")
            })
        })
    })
    .await;
    let running = h.executor.running();
    assert!(
        running.contains(&ids[0]) && running.contains(&ids[2]),
        "{running:?}"
    );
    assert_eq!(h.state.runs.get(&ids[1]).unwrap().state.as_str(), "queued");
    let (_, metrics) = call_text(&h.state, "GET", "/metrics", Some(TOKEN), None).await;
    assert!(metrics.contains("ripcord_queue_depth 1"), "{metrics}");
    // Two permits: whichever runs take them (the two running ones, or the queued one once
    // the first checkout run has ended), the queued run gets to start.
    gate.add_permits(2);
    let ex = h.executor.clone();
    let second = ids[1].clone();
    eventually("the queued run starts", || ex.running().contains(&second)).await;
    gate.add_permits(3);
    let runs = h.state.runs.clone();
    eventually("all finished", || ids.iter().all(|id| !runs.is_active(id))).await;
    assert_eq!(h.executor.executed().len(), 3);
    // It started only after the first checkout run had finished.
    let view = |id: &str| h.state.runs.get(id).unwrap();
    assert!(
        view(&ids[1]).started_at.unwrap() >= view(&ids[0]).finished_at.unwrap(),
        "the queued run started before the first one on its target finished"
    );
}

#[tokio::test]
async fn cancel_dequeues_a_queued_run_and_stops_a_running_one() {
    let (executor, _gate) = FakeExecutor::gated();
    let h = harness(executor, AlertmanagerConfig::default(), Clock::System);
    let (_, first) = call(
        &h.state,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some(rollback_body("checkout")),
    )
    .await;
    let (_, second) = call(
        &h.state,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some(rollback_body("checkout")),
    )
    .await;
    let first = first["runId"].as_str().unwrap().to_string();
    let second = second["runId"].as_str().unwrap().to_string();
    let ex = h.executor.clone();
    let f = first.clone();
    eventually("first running", || ex.running().contains(&f)).await;
    let (status, _) = call(
        &h.state,
        "POST",
        &format!("/v1/runs/{second}/cancel"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, json) = call(
        &h.state,
        "POST",
        &format!("/v1/runs/{first}/cancel"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let runs = h.state.runs.clone();
    let (a, b) = (first.clone(), second.clone());
    eventually("both ended", || !runs.is_active(&a) && !runs.is_active(&b)).await;
    assert_eq!(
        h.state.runs.get(&second).unwrap().state.as_str(),
        "cancelled"
    );
    let first_view = h.state.runs.get(&first).unwrap();
    assert_eq!(first_view.outcome.map(|o| o.as_str()), Some("interrupted"));
    let executed = h.executor.executed();
    assert_eq!(executed.len(), 1, "the cancelled queued run never executed");
    assert!(
        executed[0].stopped_by.as_deref().unwrap().contains("api"),
        "{executed:?}"
    );
    let (status, json) = call(
        &h.state,
        "POST",
        &format!("/v1/runs/{first}/cancel"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
}

#[tokio::test]
async fn issue13_approvals_are_recorded_for_the_authenticated_approver_only() {
    let (executor, gate) = FakeExecutor::gated();
    let h = harness(executor, AlertmanagerConfig::default(), Clock::System);
    let body = json!({"body": APPROVAL_PLAYBOOK, "params": {"name": "checkout"}}).to_string();
    let (status, json) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    let id = json["runId"].as_str().unwrap().to_string();
    let runs = h.state.runs.clone();
    eventually("approval pending", || !runs.pending_approvals().is_empty()).await;
    let pending = h.state.runs.pending_approvals();
    assert_eq!(pending[0].approvers, ["alice"]);
    assert_eq!(pending[0].message, "Scale checkout to zero?");
    let (_, page) = call_text(&h.state, "GET", "/", Some(TOKEN), None).await;
    assert!(
        page.contains("Scale checkout to zero?") && page.contains("alice"),
        "{page}"
    );

    let path = format!("/v1/runs/{id}/approvals/ack");
    // issue 13: the approver is the token's name, not a name in the body. Mallory's token
    // claiming alice is refused; so is mallory as herself (not an approver), and the shared
    // ops token (named ops) claiming alice.
    for (token, body, expected) in [
        ("mallory-token", r#"{"by": "alice"}"#, StatusCode::FORBIDDEN),
        ("mallory-token", r#"{}"#, StatusCode::FORBIDDEN),
        (TOKEN, r#"{"by": "alice"}"#, StatusCode::FORBIDDEN),
        ("alice-token", r#"{"by": "mallory"}"#, StatusCode::FORBIDDEN),
    ] {
        let (status, json) = call(&h.state, "POST", &path, Some(token), Some(body.into())).await;
        assert_eq!(status, expected, "{token} {body}: {json}");
    }
    assert!(
        !h.state.runs.pending_approvals().is_empty(),
        "still waiting for alice"
    );
    let (status, _) = call(
        &h.state,
        "POST",
        &format!("/v1/runs/{id}/approvals/scale"),
        Some("alice-token"),
        Some(r#"{}"#.into()),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "scale is not an approval step"
    );
    let (status, json) = call(
        &h.state,
        "POST",
        &path,
        Some("alice-token"),
        Some(r#"{"comment": "go"}"#.into()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["approvedBy"], "alice", "{json}");
    let file = h
        .dir
        .path()
        .join("runs")
        .join(&id)
        .join("approvals")
        .join("ack.json");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(recorded["by"], "alice");
    assert_eq!(recorded["comment"], "go");
    assert!(h.state.runs.pending_approvals().is_empty());
    gate.add_permits(1);
    let runs = h.state.runs.clone();
    eventually("finished", || !runs.is_active(&id)).await;
}

#[tokio::test(start_paused = true)]
async fn alertmanager_firing_runs_duplicates_and_resolved_do_not() {
    let (executor, gate) = FakeExecutor::gated();
    let clock = Clock::starting_at("2026-11-25T10:00:00Z".parse().unwrap());
    let h = harness(executor, rules(600, 10), clock);
    let firing = alert_payload(
        "firing",
        &[
            ("alertname", "HighErrorRate"),
            ("deployment", "checkout"),
            ("namespace", "shop"),
        ],
    );
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(firing.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["decisions"][0]["decision"], "ran", "{json}");
    let first = json["decisions"][0]["runId"].as_str().unwrap().to_string();

    // While the run is active: de-duplicated.
    let (_, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(firing.clone()),
    )
    .await;
    assert_eq!(json["decisions"][0]["decision"], "deduplicated", "{json}");
    assert_eq!(json["decisions"][0]["runId"], first.as_str());
    // Resolved: ignored. Other alerts: ignored. Missing label: ignored.
    let resolved = alert_payload(
        "resolved",
        &[
            ("alertname", "HighErrorRate"),
            ("deployment", "checkout"),
            ("namespace", "shop"),
        ],
    );
    let (_, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(resolved.clone()),
    )
    .await;
    assert_eq!(json["decisions"][0]["decision"], "ignored", "{json}");
    let other = alert_payload("firing", &[("alertname", "DiskFull")]);
    let (_, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(other),
    )
    .await;
    assert_eq!(json["decisions"][0]["decision"], "ignored");
    let unlabelled = alert_payload(
        "firing",
        &[("alertname", "HighErrorRate"), ("namespace", "shop")],
    );
    let (_, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(unlabelled),
    )
    .await;
    assert_eq!(json["decisions"][0]["decision"], "ignored");
    assert!(
        json["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("deployment"),
        "{json}"
    );

    // Finished, but inside the cooldown: still de-duplicated.
    gate.add_permits(1);
    let runs = h.state.runs.clone();
    let id = first.clone();
    eventually("first run finished", || !runs.is_active(&id)).await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    let (_, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(firing.clone()),
    )
    .await;
    assert_eq!(json["decisions"][0]["decision"], "deduplicated", "{json}");
    assert!(
        json["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cooldown"),
        "{json}"
    );
    // After the cooldown: runs again.
    tokio::time::sleep(Duration::from_secs(301)).await;
    let (_, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(firing),
    )
    .await;
    assert_eq!(json["decisions"][0]["decision"], "ran", "{json}");
    assert_ne!(json["decisions"][0]["runId"], first.as_str());
    gate.add_permits(1);

    // The resolved notification never started anything: exactly two alert-triggered runs.
    let ex = h.executor.clone();
    eventually("two runs executed", || ex.executed().len() == 2).await;
    assert!(
        h.executor
            .executed()
            .iter()
            .all(|e| e.trigger == "alertmanager" && e.params["name"] == "checkout")
    );
    let (_, metrics) = call_text(&h.state, "GET", "/metrics", Some(TOKEN), None).await;
    for line in [
        r#"ripcord_alert_decisions_total{rule="high-error-rate",decision="ran"} 2"#,
        r#"ripcord_alert_decisions_total{rule="high-error-rate",decision="deduplicated"} 2"#,
        r#"ripcord_alert_decisions_total{rule="none",decision="ignored"} 2"#,
        r#"ripcord_alert_decisions_total{rule="high-error-rate",decision="ignored"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

#[tokio::test(start_paused = true)]
async fn alertmanager_rate_limits_runs_across_targets() {
    let executor = FakeExecutor::default();
    let clock = Clock::starting_at("2026-11-25T10:00:00Z".parse().unwrap());
    let h = harness(executor, rules(600, 2), clock);
    let mut decisions = Vec::new();
    for name in ["a", "b", "c"] {
        let payload = alert_payload(
            "firing",
            &[
                ("alertname", "HighErrorRate"),
                ("deployment", name),
                ("namespace", "shop"),
            ],
        );
        let (_, json) = call(
            &h.state,
            "POST",
            "/v1/alertmanager",
            Some(TOKEN),
            Some(payload),
        )
        .await;
        decisions.push(
            json["decisions"][0]["decision"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(decisions, ["ran", "ran", "rate-limited"]);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let payload = alert_payload(
        "firing",
        &[
            ("alertname", "HighErrorRate"),
            ("deployment", "c"),
            ("namespace", "shop"),
        ],
    );
    let (_, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(payload),
    )
    .await;
    assert_eq!(json["decisions"][0]["decision"], "ran", "{json}");
}

#[tokio::test]
async fn a_follower_queues_but_does_not_run_until_it_leads() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    h.leader.send_replace(false);
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some(rollback_body("checkout")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = json["runId"].as_str().unwrap().to_string();
    // The run reached the leadership wait (observable in its timeline), and did not run.
    let runs = h.state.runs.clone();
    let waiting = id.clone();
    eventually("the run waits for leadership", || {
        runs.get(&waiting)
            .is_some_and(|v| v.timeline.iter().any(|t| t.text.contains("on standby")))
    })
    .await;
    assert!(h.executor.executed().is_empty());
    assert!(h.executor.running().is_empty());
    assert_eq!(h.state.runs.get(&id).unwrap().state.as_str(), "queued");
    let (_, page) = call_text(&h.state, "GET", "/", Some(TOKEN), None).await;
    assert!(page.contains("standby"), "{page}");
    h.leader.send_replace(true);
    let runs = h.state.runs.clone();
    eventually("ran once leading", || !runs.is_active(&id)).await;
    assert_eq!(h.executor.executed().len(), 1);
}

#[tokio::test]
async fn status_page_shows_runs_escaped_and_refreshes() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    // Markup never reaches the page as an incident id: it is not a valid one (issue 13).
    let body = json!({"playbook": "rollback", "params": {"name": "checkout"}, "incident": "<script>alert(1)</script>"}).to_string();
    let (status, _) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = json!({"playbook": "rollback", "params": {"name": "checkout"}, "incident": "INC-1"})
        .to_string();
    let (_, json) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
    let id = json["runId"].as_str().unwrap().to_string();
    let runs = h.state.runs.clone();
    eventually("finished", || !runs.is_active(&id)).await;
    let (status, page) = call_text(&h.state, "GET", "/", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"<meta http-equiv="refresh""#));
    assert!(page.contains(r#"name="viewport""#));
    assert!(page.contains(&id));
    assert!(page.contains("INC-1"));
    // The page's only script is its own live-refresh listener; input never becomes markup.
    assert!(!page.contains("<script>alert"), "unescaped markup");
    assert_eq!(page.matches("<script>").count(), 1, "{page}");
}

#[tokio::test]
async fn no_input_panics_or_answers_500() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let fragments = [
        "{",
        "}",
        "[",
        "]",
        "\"playbook\"",
        ":",
        "\"rollback\"",
        ",",
        "\"params\"",
        "{\"name\":1}",
        "null",
        "\"body\"",
        "\"alerts\"",
        "[{\"status\":\"firing\"}]",
        "\u{ffff}",
        "\\",
        "1e999",
        "-",
        "\"by\"",
        "\"alice\"",
    ];
    let paths = [
        "/v1/runs",
        "/v1/alertmanager",
        "/v1/runs/r-1/approvals/x",
        "/v1/runs/%00/cancel",
        "/v1/runs/r-20261125-100000-abcd/approvals/..%2f..",
    ];
    for i in 0..300 {
        let len = (next() % 12) as usize;
        let body: String = (0..len)
            .map(|_| fragments[(next() % fragments.len() as u64) as usize])
            .collect();
        let path = paths[i % paths.len()];
        let (status, _) = call(&h.state, "POST", path, Some(TOKEN), Some(body.clone())).await;
        assert!(
            status.is_client_error() || status.is_success(),
            "{path} {body:?} → {status}"
        );
    }
}

/// An inline playbook that patches `kind` `namespace/name` (`object.patch`).
fn patch_playbook(kind: &str, namespace: &str) -> String {
    let api_version = match kind {
        "Deployment" => "apps/v1",
        "Lease" => "coordination.k8s.io/v1",
        _ => "v1",
    };
    format!(
        "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  name: patch-it\nspec:\n  steps:\n    - name: patch\n      action: object.patch\n      with:\n        apiVersion: {api_version}\n        kind: {kind}\n        namespace: {namespace}\n        name: target\n        patch: {{metadata: {{labels: {{x: y}}}}}}\n"
    )
}

#[tokio::test]
async fn issue13_tokens_are_scoped_inline_playbooks_and_object_patch_targets() {
    use ripcord::daemon::auth::{Endpoint, ObjectPatchScope, TokenScope, Tokens};
    let mut h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    h.state.tokens = std::sync::Arc::new(
        Tokens::fixed([
            "plain plain-token",
            "rollbacks rollbacks-token",
            "patcher patcher-token",
            "am am-token",
            "scraper scraper-token",
        ])
        .with_scopes([
            TokenScope {
                playbooks: vec!["rollback".into()],
                ..TokenScope::named("rollbacks")
            },
            TokenScope {
                inline_playbooks: true,
                object_patch: ObjectPatchScope {
                    namespaces: vec!["shop".into()],
                    kinds: vec!["*".into()],
                },
                ..TokenScope::named("patcher")
            },
            TokenScope {
                endpoints: vec![Endpoint::Alertmanager],
                ..TokenScope::named("am")
            },
            TokenScope {
                endpoints: vec![Endpoint::Metrics],
                ..TokenScope::named("scraper")
            },
        ]),
    );
    let post = |token: &'static str, body: String| {
        let state = h.state.clone();
        async move { call(&state, "POST", "/v1/runs", Some(token), Some(body)).await }
    };
    // Inline playbooks are off by default: the sim's privileged-kube-system patch is refused
    // for a token that was never allowed inline playbooks.
    let inline = json!({"body": patch_playbook("Deployment", "kube-system")}).to_string();
    let (status, json) = post("plain-token", inline.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert_eq!(json["category"], "forbidden", "{json}");
    // With inline playbooks allowed, object.patch stays inside its allowlist.
    for (kind, namespace) in [
        ("Deployment", "kube-system"),
        ("Deployment", "other"),
        ("Secret", "shop"),
        ("Lease", "shop"),
    ] {
        let body = json!({"body": patch_playbook(kind, namespace)}).to_string();
        let (status, json) = post("patcher-token", body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{kind} {namespace}: {json}");
    }
    let body = json!({"body": patch_playbook("ConfigMap", "shop")}).to_string();
    let (status, json) = post("patcher-token", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    // Named playbooks: only the listed ones.
    let (status, json) = post(
        "rollbacks-token",
        json!({"playbook": "failout-zone", "params": {"zone": "zone-b"}}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    let (status, json) = post("rollbacks-token", rollback_body("checkout")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    assert_eq!(json["who"], "api/rollbacks", "{json}");
    // The Alertmanager and scrape tokens reach their endpoint only.
    let (status, _) = post("am-token", rollback_body("cart")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&h.state, "GET", "/metrics", Some("am-token"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some("am-token"),
        Some(alert_payload("resolved", &[("alertname", "X")])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, _) = call(&h.state, "GET", "/metrics", Some("scraper-token"), None).await;
    assert_eq!(status, StatusCode::OK);
    for (method, path) in [
        ("GET", "/v1/runs"),
        ("GET", "/"),
        ("POST", "/v1/alertmanager"),
    ] {
        let (status, _) = call(
            &h.state,
            method,
            path,
            Some("scraper-token"),
            Some("{}".into()),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // Nor does it open a status page session.
    let login = axum::http::Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("token=scraper-token"))
        .unwrap();
    let response = tower::ServiceExt::oneshot(ripcord::daemon::api::router(h.state.clone()), login)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn issue13_a_run_too_large_to_journal_is_refused() {
    let mut h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    h.state.body_limit = 2 * 1024 * 1024;
    // A 1 MiB parameter fits the body limit but not the journal bound.
    let body = json!({"playbook": "rollback", "params": {"namespace": "shop", "name": "x".repeat(1024 * 1024)}})
        .to_string();
    let (status, json) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert_eq!(json["category"], "run-too-large", "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too large to journal"),
        "{json}"
    );
    assert!(
        h.state.runs.list().is_empty(),
        "nothing queued or journaled"
    );
    assert!(
        !h.dir.path().join("runs").exists()
            || std::fs::read_dir(h.dir.path().join("runs"))
                .unwrap()
                .next()
                .is_none(),
        "no run directory"
    );
}

#[tokio::test]
async fn issue13_incident_ids_are_validated_from_bodies_and_alert_labels() {
    let h = harness(FakeExecutor::default(), rules(600, 10), Clock::System);
    for incident in [
        "../../etc/cron.d/x",
        "INC 1",
        ".hidden",
        "a/b",
        &"x".repeat(65),
    ] {
        let body = json!({"playbook": "rollback", "params": {"namespace": "shop", "name": "checkout"}, "incident": incident})
            .to_string();
        let (status, json) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{incident}: {json}");
        assert_eq!(json["category"], "invalid-incident", "{json}");
    }
    // An alert's label: the mitigation still runs, without the bad incident id.
    let payload = alert_payload(
        "firing",
        &[
            ("alertname", "HighErrorRate"),
            ("namespace", "shop"),
            ("deployment", "checkout"),
            ("incident", "../../../tmp/evil"),
        ],
    );
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(payload),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["decisions"][0]["decision"], "ran", "{json}");
    let id = json["decisions"][0]["runId"].as_str().unwrap().to_string();
    let view = h.state.runs.get(&id).unwrap();
    // The bad id is dropped; the run joins the incident opened for its alert group instead.
    let incident = view.incident.clone().unwrap_or_default();
    assert!(!incident.contains("evil"), "{view:?}");
    assert!(
        incident.is_empty() || incident.starts_with("am-HighErrorRate-"),
        "{view:?}"
    );
    assert!(ripcord::journal::validate_incident_id(&incident).is_ok() || incident.is_empty());
}

#[tokio::test]
async fn issue13_an_over_limit_content_length_is_refused_before_the_body_is_read() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    // A body that never arrives: reading it would hang.
    let never = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let request = Request::builder()
        .method("POST")
        .uri("/v1/runs")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .header("content-length", (100 * 1024 * 1024).to_string())
        .body(Body::from_stream(never))
        .unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        ripcord::daemon::router(h.state.clone()).oneshot(request),
    )
    .await
    .expect("answered without reading the body")
    .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
}

/// Reads until the server closes the connection (bounded); returns what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, bound: Duration) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open for {bound:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_idle_partial_and_slow_clients_are_cut_off_and_healthz_survives() {
    use ripcord::daemon::http::{HttpLimits, serve};
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpStream;
    let mut h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        max_connections: 8,
    };
    h.state.body_read_timeout = limits.body_read_timeout;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(
        listener,
        ripcord::daemon::router(h.state.clone()),
        limits,
        h.state.metrics.clone(),
        stop_rx,
    ));
    let bound = Duration::from_secs(10);

    // Idle sockets, more than the limit: every one is closed (the extra ones at once, the
    // others when the header timeout passes); none stays open.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    for stream in &mut idle {
        read_until_closed(stream, bound).await;
    }
    drop(idle);

    // A partial request head.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut partial, bound).await;
    assert!(!got.contains("200 OK"), "{got}");

    // A keep-alive connection that goes idle after its request.
    let mut keep = TcpStream::connect(addr).await.unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut keep, bound).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    // A body that trickles: 408 and closed.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut slow, bound).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");

    // An over-limit Content-Length: 413 without sending the body.
    let mut big = TcpStream::connect(addr).await.unwrap();
    big.write_all(
        format!(
            "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut big, bound).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");

    // Still healthy, and the refused connections were counted.
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(response.status().as_u16(), 200);
    let metrics = h.state.metrics.render();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ripcord_http_connections_refused_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused > 0, "{metrics}");
    assert!(h.executor.executed().is_empty());

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}
