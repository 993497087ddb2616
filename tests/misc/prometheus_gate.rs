//! `gate.prometheus` against a REAL Prometheus (Debian package `prometheus`) scraping the
//! simulated cluster's `/metrics` every second: during a bad release the error-ratio gate
//! fails with the observed value; after `deployment.rollback` and the rollout, it passes. The
//! snapshot's impact query (instant value and range) and the crash-looping pods' previous logs
//! are captured on the way.
//!
//! The binary must be installed (`apt-get install -y prometheus`, or `scripts/install-test-deps.sh`);
//! without it this test FAILS, unless `RIPCORD_SKIP_PROMETHEUS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::actions_support;

use actions_support::{Sim, context, run_step};
use ripcord::actions::{self, ActionContext};
use ripcord::metrics::prometheus::Prometheus;
use ripcord::playbook::catalog::{self, Action};
use ripcord::playbook::model::NamedQuery;
use ripcord::playbook::{CompareOp, PromCondition, SnapshotSpec};
use ripcord::snapshot::{self, SnapshotRequest};
use std::path::PathBuf;
use std::time::Duration;

const BAD_RELEASE: &str = r#"
name: prometheus-gate
settings:
  timeFactor: 10
  podReadyDelaySeconds: 2
  podStartDelaySeconds: 1
zones:
  - {name: zone-a, nodes: 2, cpu: "8", memory: 32Gi}
namespaces: [shop]
deployments:
  - namespace: shop
    name: web
    replicas: 3
    labels: {app: web}
    port: 8080
    strategy: {type: RollingUpdate, maxSurge: 1, maxUnavailable: 1}
    progressDeadlineSeconds: 600
    releases:
      - {image: "registry.local/web:1", changeCause: "release 1"}
      - {image: "registry.local/web:2", changeCause: "release 2 (bad)", bad: crashLoop}
    rollout: complete
"#;

const ERROR_RATIO: &str = r#"sum(rate(sim_http_errors_total{namespace="shop",deployment="web"}[5s])) / sum(rate(sim_http_requests_total{namespace="shop",deployment="web"}[5s]))"#;

fn prometheus_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A Prometheus child process scraping `target` every second; killed on drop.
struct RealPrometheus {
    _child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl RealPrometheus {
    async fn start(binary: &PathBuf, target: &str) -> RealPrometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: sim\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("config written");
        let port = free_port();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("{url}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        RealPrometheus {
            _child: child,
            url,
            _dir: dir,
        }
    }
}

fn gate(op: CompareOp, threshold: f64) -> Box<dyn actions::Action> {
    actions::build(&Action::GatePrometheus(PromCondition {
        query: ERROR_RATIO.into(),
        op,
        threshold,
    }))
    .expect("builds")
}

/// Polls the gate until it passes (bounded).
async fn until_passes(
    gate: &dyn actions::Action,
    ctx: &ActionContext,
    bound: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match gate.verify(ctx, &[]).await {
            Ok(()) => return Ok(()),
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_prometheus_on_the_bad_release_error_ratio() {
    let Some(binary) = prometheus_binary() else {
        if std::env::var("RIPCORD_SKIP_PROMETHEUS").as_deref() == Ok("1") {
            eprintln!("skipping: prometheus not installed and RIPCORD_SKIP_PROMETHEUS=1");
            return;
        }
        panic!(
            "the `prometheus` binary is not installed: install it with \
             `sudo apt-get update && sudo apt-get install -y prometheus` (or run \
             scripts/install-test-deps.sh), or set RIPCORD_SKIP_PROMETHEUS=1 to skip this test"
        );
    };
    let sim = Sim::start_raw(BAD_RELEASE).await;
    let target = sim.cluster.url().trim_start_matches("http://").to_string();
    let prometheus = RealPrometheus::start(&binary, &target).await;
    let mut ctx = context(&sim, "r-gate", "gate");
    ctx.prometheus_url = Some(prometheus.url.clone());
    ctx.call_timeout = Duration::from_secs(5);

    // The bad release serves errors: "ratio > 5%" passes, and the real gate "ratio < 5%"
    // fails with the observed value.
    until_passes(
        gate(CompareOp::Gt, 0.05).as_ref(),
        &ctx,
        Duration::from_secs(60),
    )
    .await
    .expect("the bad release's error ratio exceeds 5% within 60 s");
    let err = gate(CompareOp::Lt, 0.05)
        .verify(&ctx, &[])
        .await
        .expect_err("the gate fails during the bad release");
    assert_eq!(err.category(), "gate-failed", "{err}");
    assert!(
        err.to_string().contains("observed") && err.to_string().contains("< 0.05"),
        "{err}"
    );
    let client = Prometheus::new(prometheus.url.clone(), reqwest::Client::new());
    let observed = client.query_scalar(ERROR_RATIO).await.expect("ratio");
    assert!(observed > 0.05, "observed {observed}");

    // The snapshot records the impact query (instant value and the recent range).
    let bundle = tempfile::tempdir().expect("tempdir");
    let request = SnapshotRequest {
        targets: Vec::new(),
        namespaces: vec!["shop".into()],
        spec: SnapshotSpec {
            prometheus: vec![NamedQuery {
                name: "error-ratio".into(),
                query: ERROR_RATIO.into(),
            }],
            ..SnapshotSpec::default()
        },
    };
    let manifest = snapshot::capture_rest(
        &sim.cluster.client(),
        &request,
        bundle.path(),
        Some(client.clone()),
        Default::default(),
    )
    .await
    .expect("captured");
    // The crash-looping pods' previous containers' logs are captured too.
    assert!(
        manifest.captured.iter().any(|e| e.kind == "PreviousLog"),
        "{:?}",
        manifest.captured
    );
    let entry = manifest
        .captured
        .iter()
        .find(|e| e.kind == "Metric")
        .expect("the impact metric is captured");
    let metric: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join(&entry.file)).expect("file"))
            .expect("json");
    assert!(
        metric["value"].as_f64().is_some_and(|v| v > 0.05),
        "{metric}"
    );
    assert!(
        metric["range"]["values"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{metric}"
    );

    // Roll back to release 1 and wait for the rollout: the gate passes once the window clears.
    let rollback = actions::build(&Action::DeploymentRollback(catalog::DeploymentRollback {
        namespace: Some("shop".into()),
        name: "web".into(),
        to_revision: None,
        known_good: false,
    }))
    .expect("builds");
    run_step(rollback.as_ref(), &context(&sim, "r-gate", "rollback"))
        .await
        .expect("rolled back");
    let wait = actions::build(&Action::DeploymentWaitRolledOut(catalog::DeploymentRef {
        namespace: Some("shop".into()),
        name: "web".into(),
    }))
    .expect("builds");
    wait.verify(&context(&sim, "r-gate", "wait"), &[])
        .await
        .expect("rolled out");
    until_passes(
        gate(CompareOp::Lt, 0.05).as_ref(),
        &ctx,
        Duration::from_secs(60),
    )
    .await
    .expect("after the rollback the error ratio falls below 5% within 60 s");
    drop(prometheus);
    sim.cluster_shutdown().await;
}
