//! The status page rendered by a real browser: headless Chromium loads `/` from the daemon's
//! router over loopback, its DOM shows the runs, the pending approval, the incident, the
//! impact graph (from a fake Prometheus) and the drill, and a phone-sized screenshot is written to `target/status-page.png` for review.
//!
//! Needs the Debian package `chromium` (or `RIPCORD_CHROMIUM=/path`); set
//! `RIPCORD_SKIP_CHROMIUM=1` to skip where no browser can be installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[path = "daemon_support/mod.rs"]
mod support;

use ripcord::daemon::clock::Clock;
use ripcord::daemon::config::AlertmanagerConfig;
use ripcord::daemon::drills::DrillReport;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{FakeExecutor, TOKEN, call, eventually, harness};

const APPROVAL_PLAYBOOK: &str = r#"apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: failover-with-ack
spec:
  params:
    name:
      type: string
      required: true
  lock: deployment/shop/$(params.name)
  snapshot:
    prometheus:
      - name: checkout error ratio
        query: sum(rate(sim_http_errors_total[1m])) / sum(rate(sim_http_requests_total[1m]))
  steps:
    - name: incident-commander-ack
      action: gate.approval
      with:
        approvers: [alice, bob]
        message: Scale $(params.name) down in zone-b?
    - name: scale
      action: deployment.scale
      with:
        namespace: shop
        name: $(params.name)
        replicas: 2
"#;

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RIPCORD_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser", "google-chrome"].map(|b| d.join(b)))
        .find(|p| p.is_file())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

async fn browser(
    binary: &Path,
    profile: &Path,
    extra: &[String],
    url: &str,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium runs")
}

/// A Prometheus answering every range query with a bad-release error ratio that drops
/// after a rollback: 0.5 for the first half of the range, 0.001 after.
async fn fake_prometheus() -> String {
    async fn query_range(
        axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    ) -> axum::Json<serde_json::Value> {
        let num = |k: &str| q.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let (start, end, step) = (num("start"), num("end"), num("step").max(1.0));
        let mut values = Vec::new();
        let mut t = start;
        while t <= end {
            let v = if t < (start + end) / 2.0 { 0.5 } else { 0.001 };
            values.push(json!([t, v.to_string()]));
            t += step;
        }
        axum::Json(json!({"status": "success", "data": {"resultType": "matrix",
            "result": [{"metric": {}, "values": values}]}}))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/api/v1/query_range", axum::routing::get(query_range));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium_with_a_screenshot() {
    let Some(binary) = chromium() else {
        if std::env::var("RIPCORD_SKIP_CHROMIUM").is_ok_and(|v| v == "1") {
            eprintln!("chromium missing; skipped because RIPCORD_SKIP_CHROMIUM=1");
            return;
        }
        panic!(
            "headless Chromium is needed for the status page test: install it with \
             `sudo apt-get install -y chromium` (Debian) or point RIPCORD_CHROMIUM at a browser; \
             RIPCORD_SKIP_CHROMIUM=1 skips this test"
        );
    };

    // A daemon with history: a finished rollback for an incident, a run waiting for an ACK,
    // a drill report.
    let (executor, gate) = FakeExecutor::gated();
    let mut h = harness(executor, AlertmanagerConfig::default(), Clock::System);
    h.state.public_status_page = true;
    h.state.prometheus = Some(ripcord::metrics::prometheus::Prometheus::new(
        fake_prometheus().await,
        reqwest::Client::new(),
    ));
    let body = json!({"playbook": "rollback", "params": {"namespace": "shop", "name": "checkout"}, "incident": "INC-4242"}).to_string();
    let (_, first) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
    let first = first["runId"].as_str().unwrap().to_string();
    gate.add_permits(1);
    let runs = h.state.runs.clone();
    eventually("rollback finished", || !runs.is_active(&first)).await;
    let body =
        json!({"body": APPROVAL_PLAYBOOK, "params": {"name": "cart"}, "incident": "INC-4242"})
            .to_string();
    let (_, second) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
    let second = second["runId"].as_str().unwrap().to_string();
    let runs = h.state.runs.clone();
    eventually("approval pending", || !runs.pending_approvals().is_empty()).await;
    h.state.drills.push(DrillReport {
        drill: "zone-b-weekly".into(),
        scheduled_for: "2026-11-24T10:00:00Z".parse().unwrap(),
        finished_at: "2026-11-24T10:07:12Z".parse().unwrap(),
        outcome: "succeeded".into(),
        reason: "fail-out, fail-back and verify succeeded".into(),
        budget_value: Some(0.64),
        failout: None,
        failback: None,
        verify_value: Some(6.0),
        file: None,
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = ripcord::daemon::router(h.state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/");

    let profile = tempfile::tempdir().unwrap();
    let dom = browser(&binary, profile.path(), &["--dump-dom".to_string()], &url).await;
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    for expected in [
        first.as_str(),
        second.as_str(),
        "INC-4242",
        "Scale cart down in zone-b?",
        "alice, bob",
        "zone-b-weekly",
        "Pending approvals",
        "impact: checkout error ratio",
    ] {
        assert!(
            dom_text.contains(expected),
            "the rendered page lacks {expected:?}:\n{dom_text}"
        );
    }

    let shot = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = browser(
        &binary,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=412,1600".to_string(),
        ],
        &url,
    )
    .await;
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 10_000,
        "suspiciously small screenshot: {} bytes",
        png.len()
    );
    eprintln!("status page screenshot: {}", shot.display());

    gate.add_permits(1);
    server.abort();
}
