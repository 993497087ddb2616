//! `wait`, `notify` and `gate.prometheus` without a cluster write: wait is bounded by the step
//! timeout, notify reaches a local receiver (a failing channel does not fail the step), and
//! the gate reports observed versus threshold, an empty result, and a missing Prometheus URL.
//! The gate against a real Prometheus is in `prometheus_gate.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use ripcord::actions::{self, ActionContext};
use ripcord::notify::{ChannelConfig, ChannelKind, Notifier};
use ripcord::playbook::catalog::{self, Action};
use ripcord::playbook::{CompareOp, Duration as PbDuration, PromCondition};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A context whose client points at a closed port: these actions must never call the API.
fn offline_context(
    prometheus_url: Option<String>,
    notifier: Option<Arc<Notifier>>,
) -> ActionContext {
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
    ActionContext {
        client: kube::Client::try_from(config).expect("client"),
        run_id: "r-misc".into(),
        step: "step".into(),
        default_namespace: "default".into(),
        http: reqwest::Client::new(),
        prometheus_url,
        call_timeout: Duration::from_secs(5),
        verify_timeout: Duration::from_secs(60),
        playbook: "misc".into(),
        notifier,
        state_dir: None,
        observed: Default::default(),
        notices: Default::default(),
    }
}

#[tokio::test(start_paused = true)]
async fn wait_sleeps_its_duration_bounded_by_the_step_timeout() {
    let wait = actions::build(&Action::Wait(catalog::Wait {
        duration: PbDuration(Duration::from_secs(30)),
    }))
    .expect("builds");
    let mut ctx = offline_context(None, None);
    assert!(wait.diff(&ctx).await.expect("diff").is_satisfied());
    assert!(wait.verify_when_satisfied());
    let start = tokio::time::Instant::now();
    wait.verify(&ctx, &[]).await.expect("waited");
    assert!(start.elapsed() >= Duration::from_secs(30));
    ctx.verify_timeout = Duration::from_secs(10);
    let err = wait
        .verify(&ctx, &[])
        .await
        .expect_err("longer than the step timeout");
    assert_eq!(err.category(), "timeout");
}

#[tokio::test]
async fn notify_step_reaches_the_receiver_and_a_failing_channel_does_not_fail() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    async fn hook(State(r): State<Arc<Mutex<Vec<Value>>>>, body: axum::Json<Value>) -> StatusCode {
        r.lock().expect("lock").push(body.0);
        StatusCode::NO_CONTENT
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let notifier = Notifier::new(
        vec![
            ChannelConfig {
                name: "hook".into(),
                kind: ChannelKind::Webhook,
                url: format!("http://{addr}/hook"),
            },
            ChannelConfig {
                name: "dead".into(),
                kind: ChannelKind::Slack,
                url: format!("http://{addr}/missing"),
            },
        ],
        reqwest::Client::new(),
    );
    let action = actions::build(&Action::Notify(catalog::NotifyMessage {
        message: "rolled back shop/web".into(),
        required: false,
    }))
    .expect("builds");
    let ctx = offline_context(None, Some(Arc::new(notifier)));
    assert!(action.diff(&ctx).await.expect("diff").is_satisfied());
    action
        .verify(&ctx, &[])
        .await
        .expect("a failing channel never fails the step");
    let got = received.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["title"], "rolled back shop/web");
    assert_eq!(got[0]["runId"], "r-misc");
    assert_eq!(got[0]["fields"]["step"], "step");
}

/// A fake Prometheus answering `/api/v1/query` from a table of query → JSON answer.
async fn fake_prometheus(answers: HashMap<String, Value>) -> String {
    async fn query(
        State(answers): State<Arc<HashMap<String, Value>>>,
        Query(params): Query<HashMap<String, String>>,
    ) -> (StatusCode, axum::Json<Value>) {
        let q = params.get("query").cloned().unwrap_or_default();
        match answers.get(&q) {
            Some(answer) => (StatusCode::OK, axum::Json(answer.clone())),
            None => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"status": "error", "errorType": "bad_data",
                                  "error": "parse error: unexpected character"})),
            ),
        }
    }
    let app = Router::new()
        .route("/api/v1/query", get(query))
        .with_state(Arc::new(answers));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn gate(query: &str, op: CompareOp, threshold: f64) -> Box<dyn actions::Action> {
    actions::build(&Action::GatePrometheus(PromCondition {
        query: query.into(),
        op,
        threshold,
    }))
    .expect("builds")
}

#[tokio::test]
async fn gate_reports_observed_versus_threshold_and_empty_results() {
    let answers = HashMap::from([
        (
            "error_ratio".to_string(),
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [1700000000.0, "0.31"]}]}}),
        ),
        (
            "absent_series".to_string(),
            json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
        ),
        (
            "scalar(1)".to_string(),
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000.0, "1"]}}),
        ),
    ]);
    let url = fake_prometheus(answers).await;
    let ctx = offline_context(Some(url), None);

    gate("error_ratio", CompareOp::Gt, 0.05)
        .verify(&ctx, &[])
        .await
        .expect("0.31 > 0.05 holds");
    gate("scalar(1)", CompareOp::Eq, 1.0)
        .verify(&ctx, &[])
        .await
        .expect("scalars work");
    let err = gate("error_ratio", CompareOp::Lt, 0.05)
        .verify(&ctx, &[])
        .await
        .expect_err("0.31 < 0.05 does not hold");
    assert_eq!(err.category(), "gate-failed");
    assert!(
        err.to_string().contains("0.31") && err.to_string().contains("0.05"),
        "{err}"
    );

    let err = gate("absent_series", CompareOp::Lt, 1.0)
        .verify(&ctx, &[])
        .await
        .expect_err("an empty result never passes");
    assert_eq!(err.category(), "prometheus-empty");
    let err = gate("bad(", CompareOp::Lt, 1.0)
        .verify(&ctx, &[])
        .await
        .expect_err("bad PromQL");
    assert_eq!(err.category(), "prometheus-query");
    assert!(anyhow_chain(&err).contains("parse error"), "{err}");

    let err = gate("error_ratio", CompareOp::Lt, 1.0)
        .verify(&offline_context(None, None), &[])
        .await
        .expect_err("no Prometheus URL");
    assert_eq!(err.category(), "refused");
}

fn anyhow_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
