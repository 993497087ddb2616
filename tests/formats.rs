//! Issue 14: versioned on-disk and in-cluster formats. The journals, `Run` resources and the
//! incident file checked in under `tests/data/formats/v1/` were written by ripcord before the
//! formats carried a version (see the README there); they must still load, resume and clean up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod cleanup_support;

use cleanup_support::*;
use ripcord::sim::store::kinds;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The key the fixture daemon sealed its `Run` with (its Secret, in the chart).
const RUN_KEY: &[u8] = b"formats-fixture-run-key-of-32-bytes-or-more";

const CORDON_PLAYBOOK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: cordon-one
spec:
  steps:
    - name: cordon
      action: node.cordon
      with: {names: [zone-b-node-1]}
"#;

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats")
}

// === writing the fixtures ===

/// The `Run` resource named `run_id` as the sim stores it (any namespace).
fn run_resource(h: &Harness, run_id: &str) -> Value {
    let rt = h
        .sim
        .store()
        .resource_types()
        .into_iter()
        .find(|rt| rt.group == "ripcord.dev" && rt.plural == "runs")
        .expect("runs.ripcord.dev registered");
    let (runs, _) = h.sim.store().list(&rt, None);
    runs.into_iter()
        .find(|r| r["metadata"]["name"] == run_id)
        .expect("Run mirrored")
}

fn save(out: &Path, name: &str, state_dir: &Path, run_id: &str, extra: &[(&str, Value)]) {
    let dir = out.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        ripcord::journal::journal_path(state_dir, run_id),
        dir.join("journal.jsonl"),
    )
    .unwrap();
    for (file, value) in extra {
        std::fs::write(
            dir.join(file),
            serde_json::to_string_pretty(value).unwrap() + "\n",
        )
        .unwrap();
    }
}

/// Writes the fixtures of the formats this build writes into `$RIPCORD_FIXTURES_OUT` (see
/// `tests/data/formats/README.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes fixtures; run by hand"]
async fn write_fixtures() {
    let out = PathBuf::from(std::env::var("RIPCORD_FIXTURES_OUT").expect("RIPCORD_FIXTURES_OUT"));
    std::fs::create_dir_all(&out).unwrap();
    let timeout = Duration::from_secs(5);

    // A finished rollback of the bad checkout release, with an incident.
    {
        let h = Harness::start().await;
        ripcord::k8s::runs::install_crd(&h.sim.client(), timeout)
            .await
            .unwrap();
        let o = h
            .ripcord(&[
                "rollback",
                "deployment/checkout",
                "-n",
                "shop",
                "--yes",
                "--incident",
                "INC-4242",
            ])
            .await;
        assert_eq!(o.status.code(), Some(0));
        let run_id = run_id_of(&o);
        for args in [
            vec![
                "incident",
                "update",
                "INC-4242",
                "--severity",
                "SEV2",
                "--service",
                "checkout",
                "--impact",
                "checkout errors for 12 minutes",
                "--root-cause",
                "release 1.5.0 never became ready",
            ],
            vec!["incident", "note", "INC-4242", "rolled back to 1.4.2"],
            vec![
                "incident",
                "action",
                "add",
                "INC-4242",
                "add a readiness gate to the pipeline",
                "--owner",
                "ann",
            ],
            vec!["incident", "handoff", "INC-4242", "--to", "bob"],
            vec!["incident", "ack", "INC-4242", "--as", "bob"],
            vec!["incident", "close", "INC-4242"],
        ] {
            let o = h.ripcord(&args).await;
            assert_eq!(o.status.code(), Some(0), "{args:?}");
        }
        let incident: Value = serde_json::from_slice(
            &std::fs::read(h.state_dir().join("incidents/INC-4242.json")).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(out.join("incidents")).unwrap();
        std::fs::write(
            out.join("incidents/INC-4242.json"),
            serde_json::to_string_pretty(&incident).unwrap() + "\n",
        )
        .unwrap();
        let run = run_resource(&h, &run_id);
        save(
            &out,
            "rollback-succeeded",
            &h.state_dir(),
            &run_id,
            &[("run.json", run)],
        );
        h.sim.shutdown().await;
    }

    // A zone fail-out and a rolling restart that died after their first write (resumable).
    for (name, args) in [
        (
            "failout-interrupted",
            vec!["failout", "zone/zone-b", "--yes"],
        ),
        (
            "restart-interrupted",
            vec!["restart", "deployment/api", "-n", "shop", "--yes"],
        ),
    ] {
        let h = Harness::start_calm().await;
        ripcord::k8s::runs::install_crd(&h.sim.client(), timeout)
            .await
            .unwrap();
        let o = h
            .ripcord_with(
                &args,
                &h.state_dir(),
                &[(ripcord::engine::CRASH_HOOK_ENV, "after-apply")],
            )
            .await;
        assert_eq!(o.status.code(), Some(137), "{name}");
        let runs = std::fs::read_dir(h.state_dir().join("runs")).unwrap();
        let run_id = runs
            .flatten()
            .next()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .to_string();
        let run = run_resource(&h, &run_id);
        save(&out, name, &h.state_dir(), &run_id, &[("run.json", run)]);
        h.sim.shutdown().await;
    }

    // A finished cordon that cleanup can revert, with the node as the run left it.
    {
        let h = Harness::start_calm().await;
        ripcord::k8s::runs::install_crd(&h.sim.client(), timeout)
            .await
            .unwrap();
        let playbook = h.write("cordon.yaml", CORDON_PLAYBOOK);
        let o = h
            .ripcord(&["run", playbook.to_str().unwrap(), "--yes", "-n", "shop"])
            .await;
        assert_eq!(o.status.code(), Some(0));
        let run_id = run_id_of(&o);
        let run = run_resource(&h, &run_id);
        let node = h
            .sim
            .store()
            .get(&kinds::nodes(), None, "zone-b-node-1")
            .unwrap();
        save(
            &out,
            "cordon-succeeded",
            &h.state_dir(),
            &run_id,
            &[("run.json", run), ("node-after.json", node)],
        );
        h.sim.shutdown().await;
    }

    // A daemon's rollback, stopped mid-run by the daemon's shutdown: a sealed, unfinished Run
    // another daemon takes over.
    daemon_fixture(&out).await;
}

async fn daemon_fixture(out: &Path) {
    use ripcord::daemon::config::AlertmanagerConfig;
    use ripcord::daemon::server::{self, ElectionSettings, Settings, TokenSource};
    let text = include_str!("data/scenarios/demo.yaml")
        .replace("podReadyDelaySeconds: 5", "podReadyDelaySeconds: 40");
    let scenario = ripcord::sim::scenario::Scenario::from_yaml("demo-slow", &text).unwrap();
    let sim = ripcord::sim::SimCluster::start(ripcord::sim::SimOptions {
        scenario,
        addr: None,
    })
    .await
    .unwrap();
    let h = Harness {
        sim,
        dir: tempfile::tempdir().unwrap(),
    };
    h.wait_until("the bad release rolls out", Duration::from_secs(20), |h| {
        h.deployment("checkout")
            .pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str)
            .is_some_and(|i| i.ends_with(":1.5.0"))
    })
    .await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .unwrap();
    let state_dir = h.dir.path().join("daemon-state");
    let settings = Settings {
        state_dir: state_dir.clone(),
        tokens: TokenSource::Fixed(vec!["fixture-token".to_string()]),
        namespace: "default".into(),
        playbooks_dir: None,
        body_limit: 1024 * 1024,
        who: "daemon-a".into(),
        call_timeout: Duration::from_secs(5),
        prometheus_url: None,
        notify: Vec::new(),
        election: Some(ElectionSettings {
            lease_name: "ripcord-leader".into(),
            lease_duration: Duration::from_secs(3),
            identity: "daemon-a".into(),
        }),
        alertmanager: AlertmanagerConfig::default(),
        drills: Vec::new(),
        public_status_page: false,
        step_kubeconfig: None,
        trust: server::TrustSettings {
            run_key: Some(std::sync::Arc::new(ripcord::k8s::runs::RunSeal::new(
                RUN_KEY,
            ))),
            ..Default::default()
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server::serve(settings, h.sim.client(), listener, rx));
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = http
            .get(format!("http://{addr}/metrics"))
            .bearer_auth("fixture-token")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.lines().any(|l| l.trim() == "ripcord_leader 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "daemon never led");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = http
        .post(format!("http://{addr}/v1/runs"))
        .bearer_auth("fixture-token")
        .json(&serde_json::json!({"playbook": "rollback", "params": {"namespace": "shop", "name": "checkout"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let run: Value = response.json().await.unwrap();
    let run_id = run["runId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view: Value = http
            .get(format!("http://{addr}/v1/runs/{run_id}"))
            .bearer_auth("fixture-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["run"]["mutationsApplied"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(40), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let run = run_resource(&h, &run_id);
    save(
        out,
        "daemon-rollback-interrupted",
        &state_dir,
        &run_id,
        &[("run.json", run)],
    );
    h.sim.shutdown().await;
}
