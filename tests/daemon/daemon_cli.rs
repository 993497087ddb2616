//! `ripcord daemon` as a process against the simulated cluster: it serves, refuses requests
//! without a token, shuts down cleanly on SIGTERM (exit 0, leader Lease cleared), and a bad
//! config file is a usage error naming the line. It logs at info, in JSON when asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_process_serves_and_stops_on_sigterm() {
    let sim = SimCluster::start(SimOptions {
        scenario: Scenario::empty(),
        addr: None,
    })
    .await
    .expect("sim starts");
    let dir = tempfile::tempdir().unwrap();
    sim.write_kubeconfig(&dir.path().join("kubeconfig"))
        .unwrap();
    std::fs::write(dir.path().join("tokens"), "t0ken\n").unwrap();
    std::fs::write(
        dir.path().join("daemon.yaml"),
        "leaderElection: {leaseDuration: 3s}\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .arg("daemon")
        .arg("--config")
        .arg(dir.path().join("daemon.yaml"))
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RIPCORD_TOKENS_FILE", dir.path().join("tokens"))
        .env("RIPCORD_LISTEN", format!("127.0.0.1:{port}"))
        .env("RIPCORD_IDENTITY", "cli-test")
        .env("RIPCORD_NAMESPACE", "default")
        .env("RIPCORD_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the daemon did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = http.get(format!("{base}/v1/runs")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(format!("{base}/v1/runs"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let lease_holder = || {
        sim.store()
            .get(&kinds::leases(), Some("default"), "ripcord-leader")
            .and_then(|l| {
                l.pointer("/spec/holderIdentity")
                    .and_then(|h| h.as_str())
                    .map(str::to_string)
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while lease_holder().as_deref() != Some("cli-test") {
        assert!(
            Instant::now() < deadline,
            "the daemon did not take the leader lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .expect("the daemon exits after SIGTERM")
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    // Issue 17: info by default, one JSON object per line with `--log-format json`.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["message"] == "ripcord daemon serving"),
        "{stderr}"
    );
    assert_eq!(
        lease_holder(),
        None,
        "the leader lease is released on shutdown"
    );
    sim.shutdown().await;
}

#[test]
fn bad_config_is_a_usage_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nalertmanager:\n  rulez: []\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .args(["daemon", "--config"])
        .arg(&config)
        .env("RIPCORD_TOKENS_FILE", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("daemon.yaml:3:"), "{stderr}");
}
