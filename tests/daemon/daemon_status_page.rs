//! The status page rendered by a real browser: headless Chromium loads `/` from the daemon's
//! router over loopback, its DOM shows the runs, the pending approval, the incident, the
//! impact graph (from a fake Prometheus), the drill and a CLI run known from its `Run`
//! resource; phone- and desktop-sized screenshots are written to `target/status-page.png` and
//! `target/status-page-desktop.png` for review. Issue 17: the login exchanges a token for an
//! HttpOnly, SameSite session cookie that opens only the read-only pages; the live feed
//! (server-sent events) says when something changed; one record per drill.
//!
//! Needs the Debian package `chromium` (or `RIPCORD_CHROMIUM=/path`); set
//! `RIPCORD_SKIP_CHROMIUM=1` to skip where no browser can be installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::daemon_support as support;

use ripcord::daemon::clock::Clock;
use ripcord::daemon::config::AlertmanagerConfig;
use ripcord::daemon::drills::DrillReport;
use ripcord::daemon::status::ClusterRun;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{FakeExecutor, TOKEN, call, eventually, harness};

/// A finished CLI run as its `Run` resource describes it.
fn cli_run(id: &str) -> ClusterRun {
    ClusterRun {
        run_id: id.into(),
        namespace: "shop".into(),
        playbook: "restart".into(),
        trigger: "cli".into(),
        who: "cli/dana".into(),
        incident: Some("INC-4242".into()),
        phase: "Finished".into(),
        outcome: Some("succeeded".into()),
        message: None,
        started_at: Some("2026-11-24T10:15:00Z".into()),
        steps: vec![("restart-in-batches".into(), "Verified".into())],
        daemon_stop: None,
    }
}

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
        held_seconds: Some(600.0),
        hypothesis_failed: None,
        incident: None,
        events: Vec::new(),
        run_id: None,
        file: None,
    });
    // A CLI run another engineer started, known from its Run resource only.
    h.state
        .feed
        .set_cluster_runs(vec![cli_run("r-20261124-101500-cafe")]);

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
        "r-20261124-101500-cafe",
        "Locks",
    ] {
        assert!(
            dom_text.contains(expected),
            "the rendered page lacks {expected:?}:\n{dom_text}"
        );
    }

    // Phone and desktop widths.
    for (name, size) in [
        ("status-page.png", "412,1600"),
        ("status-page-desktop.png", "1280,1000"),
    ] {
        let shot = target_dir().join(name);
        let _ = std::fs::remove_file(&shot);
        let out = browser(
            &binary,
            profile.path(),
            &[
                format!("--screenshot={}", shot.display()),
                format!("--window-size={size}"),
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
    }

    gate.add_permits(1);
    server.abort();
}

// === issue 17: login, live feed, one record per drill, cluster runs ===

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;

async fn send(
    state: &ripcord::daemon::DaemonState,
    request: Request<Body>,
) -> axum::http::Response<Body> {
    ripcord::daemon::router(state.clone())
        .oneshot(request)
        .await
        .unwrap()
}

async fn text(response: axum::http::Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn get_with(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path).header(header::ACCEPT, "text/html");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn issue17_login_exchanges_the_token_for_a_read_only_session_cookie() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    // A browser without a session is sent to the login page.
    let r = send(&h.state, get_with("/", None)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login");
    let form = text(send(&h.state, get_with("/login", None)).await).await;
    assert!(form.contains("name=\"token\"") && form.contains("type=\"password\""));
    // A wrong token: no cookie.
    let login = |token: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let r = send(&h.state, login("wrong")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    // The right one: an HttpOnly, SameSite=Strict session cookie.
    let r = send(&h.state, login(TOKEN)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set_cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict")
            && set_cookie.contains("Path=/"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains(TOKEN), "the cookie is not the token");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let r = send(&h.state, get_with("/", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains("Pending approvals"));
    // Read-only: the API still wants the bearer token.
    let r = send(
        &h.state,
        Request::post("/v1/runs")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"playbook":"rollback","params":{"name":"x"}}"#,
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Log out: the session is gone.
    let r = send(
        &h.state,
        Request::post("/logout")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = send(&h.state, get_with("/", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Scripts (no text/html) get a 401, and the bearer token still works.
    let r = send(&h.state, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = call(&h.state, "GET", "/", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn next_chunk(s: &mut axum::body::BodyDataStream) -> String {
    use futures::StreamExt as _;
    let chunk = tokio::time::timeout(Duration::from_secs(30), s.next())
        .await
        .expect("a feed event within 30 s")
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&chunk).into_owned()
}

#[tokio::test]
async fn issue17_the_live_feed_says_when_the_page_changed() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    let r = send(
        &h.state,
        Request::get("/events")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut stream = r.into_body().into_data_stream();
    assert!(next_chunk(&mut stream).await.contains("connected"));
    // A run starts: the feed says so.
    let body = json!({"playbook": "rollback", "params": {"namespace": "shop", "name": "checkout"}})
        .to_string();
    let (status, _) = call(&h.state, "POST", "/v1/runs", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    loop {
        let chunk = next_chunk(&mut stream).await;
        if chunk.contains("event: changed") {
            break;
        }
        assert!(chunk.starts_with(':'), "{chunk}");
    }
}

#[tokio::test]
async fn issue17_one_record_per_drill_and_cluster_runs_with_their_own_page() {
    let mut h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    h.state.public_status_page = true;
    let report = |drill: &str, at: &str, outcome: &str| DrillReport {
        drill: drill.into(),
        scheduled_for: at.parse().unwrap(),
        finished_at: at.parse().unwrap(),
        outcome: outcome.into(),
        reason: format!("{drill} {outcome}"),
        budget_value: None,
        failout: None,
        failback: None,
        verify_value: None,
        held_seconds: None,
        hypothesis_failed: None,
        incident: None,
        events: Vec::new(),
        run_id: None,
        file: None,
    };
    for at in [
        "2026-11-10T10:00:00Z",
        "2026-11-17T10:00:00Z",
        "2026-11-24T10:00:00Z",
    ] {
        h.state
            .drills
            .push(report("zone-b-weekly", at, "succeeded"));
    }
    h.state
        .drills
        .push(report("zone-c-weekly", "2026-11-24T11:00:00Z", "failed"));
    h.state
        .feed
        .set_cluster_runs(vec![cli_run("r-20261124-101500-cafe")]);
    let page = text(send(&h.state, get_with("/", None)).await).await;
    let drills = &page[page.find("<h2>Drills</h2>").unwrap()..];
    let drills = &drills[..drills.find("</section>").unwrap()];
    assert_eq!(
        drills.matches("<td>zone-b-weekly<br>").count(),
        1,
        "{drills}"
    );
    assert!(drills.contains("3 occurrences kept"), "{drills}");
    assert!(drills.contains("zone-c-weekly"), "{drills}");
    // The CLI run is listed, under its incident too, and links to its own page.
    assert!(
        page.contains("href=\"/runs/r-20261124-101500-cafe\""),
        "{page}"
    );
    let incidents = &page[page.find("<h2>Incidents</h2>").unwrap()..];
    assert!(incidents[..incidents.find("</section>").unwrap()].contains("INC-4242"));
    let run = text(send(&h.state, get_with("/runs/r-20261124-101500-cafe", None)).await).await;
    assert!(
        run.contains("restart-in-batches") && run.contains("cli/dana"),
        "{run}"
    );
    let r = send(&h.state, get_with("/runs/r-nope", None)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn issue17_the_live_feed_ends_when_the_daemon_shuts_down() {
    let h = harness(
        FakeExecutor::default(),
        AlertmanagerConfig::default(),
        Clock::System,
    );
    let r = send(
        &h.state,
        Request::get("/events")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let mut stream = r.into_body().into_data_stream();
    assert!(next_chunk(&mut stream).await.contains("connected"));
    // Graceful shutdown marks the daemon not ready: the feed ends instead of holding the
    // server open.
    h.state.set_ready(false);
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        use futures::StreamExt as _;
        while stream.next().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the feed ended within 30 s");
}
