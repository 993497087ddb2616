//! Issue 6: the HTML incident report renders in headless Chromium (Debian package `chromium`)
//! without errors, and a screenshot of it is produced for review at
//! `target/report-screenshot.png`.
//!
//! The state directory is built from journal records (a fail-out run with a recorded impact
//! metric, a cleanup run with a drift, a saved verify result): the report reads only local
//! files. Without Chromium the test fails with install instructions, unless
//! `RIPCORD_SKIP_CHROMIUM=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::actions::{Applied, Inverse, Mutation, ObjectRef};
use ripcord::journal::{DeliveryRecord, Journal, Outcome, Record};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const RUN: &str = "r-20261125-110000-a1b2";
const CLEANUP: &str = "r-20261125-113000-c3d4";

fn node(name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Node".into(),
        namespace: None,
        name: name.into(),
    }
}

fn write_state(state: &Path) {
    // The mitigation run, with an impact metric recorded by its snapshot.
    let snapshot = state.join("runs").join(RUN).join("snapshot");
    std::fs::create_dir_all(snapshot.join("metrics")).expect("snapshot dir");
    let now = jiff::Timestamp::now().as_second() as f64;
    let values: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            let t = now - 600.0 + 15.0 * f64::from(i);
            let v = if (10..25).contains(&i) {
                0.4 - 0.02 * f64::from(i - 10)
            } else {
                0.01
            };
            json!([t, v])
        })
        .collect();
    std::fs::write(
        snapshot.join("metrics/error-ratio.json"),
        serde_json::to_vec(&json!({
            "name": "error ratio <checkout>",
            "query": "sum(rate(errors[1m])) / sum(rate(requests[1m])) > 0 & \"x\"",
            "at": now, "value": 0.01,
            "range": {"start": now - 600.0, "end": now, "stepSeconds": 15, "values": values}
        }))
        .expect("json"),
    )
    .expect("metric written");

    let mut journal = Journal::create(state, RUN).expect("journal");
    let cordon = Mutation {
        id: "cordon/zone-a-node-1".into(),
        target: node("zone-a-node-1"),
        description: "cordon node zone-a-node-1 <script>alert(1)</script>".into(),
        diff: String::new(),
        pre_image: json!({}),
        resource_version: Some("10".into()),
        request: json!({}),
        inverse: Inverse::MergePatch {
            patch: json!({"spec": {"unschedulable": null}}),
            expected: json!({"spec": {"unschedulable": true}}),
        },
    };
    for record in [
        Record::RunStarted {
            run_id: RUN.into(),
            playbook: "failout-zone".into(),
            trigger: "cli".into(),
            who: "alice & <bob>".into(),
            incident: Some("INC-9".into()),
            params: Default::default(),
            plan: json!({}),
        },
        Record::Notified {
            phase: "started".into(),
            deliveries: vec![DeliveryRecord {
                channel: "oncall".into(),
                ok: true,
                error: None,
            }],
        },
        Record::SnapshotTaken {
            dir: snapshot.display().to_string(),
            phase: "targets".into(),
            captured: 3,
            failed: vec![],
        },
        Record::StepPlanned {
            step: "failout".into(),
            action: "zone.failout".into(),
            summary: "cordon 1 node".into(),
            diff: String::new(),
        },
        Record::MutationIntended {
            step: "failout".into(),
            mutation: cordon.clone(),
        },
        Record::MutationApplied {
            step: "failout".into(),
            mutation_id: cordon.id.clone(),
            applied: Applied {
                id: cordon.id.clone(),
                target: cordon.target.clone(),
                resource_version_after: Some("11".into()),
            },
            resource_version_before: Some("10".into()),
            inverse: cordon.inverse.clone(),
            recovered: false,
        },
        Record::StepVerified {
            step: "failout".into(),
        },
        Record::RunFinished {
            outcome: Outcome::Succeeded,
            duration_ms: 4200,
            reason: None,
        },
    ] {
        journal.append(record).expect("append");
        std::thread::sleep(Duration::from_millis(5));
    }

    // The cleanup run and its plan (one drift).
    let plan = json!({
        "runs": [RUN],
        "items": [{
            "runId": RUN, "step": "failout", "mutationId": "cordon/zone-a-node-1",
            "target": {"apiVersion": "v1", "kind": "Node", "name": "zone-a-node-1"},
            "description": "cordon node zone-a-node-1", "status": "drift",
            "drift": [{"path": "spec.unschedulable", "before": null, "ripcord": true, "now": false}]
        }],
        "reverts": [], "failbacks": []
    });
    let dir = state.join("runs").join(CLEANUP);
    std::fs::create_dir_all(&dir).expect("cleanup dir");
    std::fs::write(dir.join("cleanup-plan.json"), plan.to_string()).expect("plan written");
    let mut journal = Journal::create(state, CLEANUP).expect("journal");
    journal
        .append(Record::RunStarted {
            run_id: CLEANUP.into(),
            playbook: "ripcord-cleanup".into(),
            trigger: "cli".into(),
            who: "carol".into(),
            incident: Some("INC-9".into()),
            params: [("cleanupOf".to_string(), json!([RUN]))]
                .into_iter()
                .collect(),
            plan: json!({}),
        })
        .expect("append");
    journal
        .append(Record::RunFinished {
            outcome: Outcome::Succeeded,
            duration_ms: 300,
            reason: None,
        })
        .expect("append");

    // The last verify result.
    std::fs::create_dir_all(state.join("incidents")).expect("incidents dir");
    std::fs::write(
        state.join("incidents/INC-9.verify.json"),
        serde_json::to_vec(&json!({
            "scope": "incident INC-9", "clean": false, "at": jiff::Timestamp::now(),
            "runs": [RUN, CLEANUP], "checked": {"touchedObjects": 1, "nodes": 6,
            "deployments": 2, "httpRoutes": 1, "leases": 0, "runs": 2},
            "findings": [{"check": "residue", "kind": "marked-node", "object": "node/zone-a-node-1",
                          "detail": "schedulable but still carries ripcord's marks", "run": RUN}],
            "notes": []
        }))
        .expect("json"),
    )
    .expect("verify written");
}

async fn ripcord(state: &Path, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .args(args)
        .env("RIPCORD_STATE_DIR", state)
        .env("RIPCORD_CONFIG", "/dev/null")
        .env("RIPCORD_WHO", "test")
        .env("KUBECONFIG", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("ripcord finished")
        .expect("ripcord runs");
    eprintln!(
        "ripcord {args:?} -> {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

async fn chromium(binary: &Path, profile: &Path, extra: &[String], url: &str) -> Output {
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
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue6_html_report_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    write_state(&state);
    ripcord(
        &state,
        &[
            "incident",
            "open",
            "INC-9",
            "--severity",
            "SEV1",
            "--service",
            "checkout",
        ],
    )
    .await;
    ripcord(
        &state,
        &[
            "incident",
            "update",
            "INC-9",
            "--root-cause",
            "config push <oops>",
        ],
    )
    .await;

    let html_path = dir.path().join("report.html");
    let out = ripcord(
        &state,
        &[
            "report",
            "--incident",
            "INC-9",
            "--format",
            "html",
            "--out",
            html_path.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let html = std::fs::read_to_string(&html_path).expect("report written");
    // Self-contained and escaped.
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("<script"),
        "no script, and the journal's text is escaped"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("alice &amp; &lt;bob&gt;"));
    assert!(html.contains("config push &lt;oops&gt;"));
    assert!(
        !html.contains(" src=") && !html.contains(" href="),
        "no external resources"
    );
    assert!(
        html.contains("<svg") && html.contains("<polyline"),
        "the impact graph"
    );
    assert!(
        html.contains("before ripcord"),
        "the drift's three-way difference"
    );
    assert!(html.contains("DIRTY"));

    let Some(binary) = find_chromium() else {
        if std::env::var("RIPCORD_SKIP_CHROMIUM").is_ok_and(|v| v == "1") {
            eprintln!("chromium not installed; skipped (RIPCORD_SKIP_CHROMIUM=1)");
            return;
        }
        panic!(
            "headless Chromium is needed to render the HTML report: install it with \
             `apt-get update && apt-get install -y chromium` (Debian package `chromium`), or set \
             RIPCORD_SKIP_CHROMIUM=1 to skip this check"
        );
    };
    let url = format!("file://{}", html_path.display());

    // The DOM Chromium built: the document parsed, with the graph and the tables.
    let profile = tempfile::tempdir().expect("profile dir");
    let dom = chromium(&binary, profile.path(), &["--dump-dom".to_string()], &url).await;
    assert!(
        dom.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(dom_text.contains("<svg"), "no SVG in the rendered DOM");
    assert!(dom_text.contains("Incident INC-9"));
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(
        !stderr.contains("CONSOLE") && !stderr.contains("Uncaught"),
        "errors while rendering: {stderr}"
    );

    // The screenshot for review.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).expect("target dir");
    let shot = target.join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().expect("profile dir");
    let out = chromium(
        &binary,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,1800".to_string(),
            "--hide-scrollbars".to_string(),
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
    eprintln!("screenshot: {}", shot.display());
}
