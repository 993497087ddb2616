//! `ripcord run` reports an accepted ACK on stderr (the engine's `Approved` event): a playbook
//! with a `gate.approval` step runs through the binary against the simulated cluster, is
//! approved with `ripcord approve`, and its progress output names the approver and where the
//! gate found the ACK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::sim::scenario::Scenario;
use ripcord::sim::{SimCluster, SimOptions};
use std::path::Path;
use std::time::{Duration, Instant};

const PLAYBOOK: &str = "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  \
    name: hand-off\nspec:\n  steps:\n    - name: ack\n      action: gate.approval\n      \
    with:\n        approvers: [ann, cho]\n        message: take over?\n      timeout: 2m\n";

fn command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"));
    cmd.args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("RIPCORD_STATE_DIR", dir.join("state"))
        .env("RIPCORD_CONFIG", "/dev/null")
        .env("RIPCORD_WHO", "test")
        .env_remove("RIPCORD_NAMESPACE")
        .env_remove("RIPCORD_CONTEXT")
        .env_remove(ripcord::engine::CRASH_HOOK_ENV)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn output(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("ripcord finished within 180 s")
        .expect("ripcord output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_who_approved_a_gate() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenarios/three-zones.yaml");
    let scenario = Scenario::load_file(&path).expect("scenario loads");
    let sim = SimCluster::start(SimOptions {
        scenario,
        addr: None,
    })
    .await
    .expect("sim starts");
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed in the sim");
    let dir = tempfile::tempdir().expect("tempdir");
    sim.write_kubeconfig(&dir.path().join("kubeconfig"))
        .expect("kubeconfig written");
    let playbook = dir.path().join("hand-off.yaml");
    std::fs::write(&playbook, PLAYBOOK).expect("playbook written");
    let playbook = playbook.to_string_lossy().to_string();

    let run = command(dir.path(), &["run", &playbook, "-n", "shop", "--yes"])
        .spawn()
        .expect("run starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        if let Ok(runs) = ripcord::journal::list_runs(&dir.path().join("state"))
            && let Some(run) = runs.first()
        {
            break run.run_id.clone();
        }
        assert!(Instant::now() < deadline, "no run started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let approve = command(dir.path(), &["approve", &run_id, "ack", "--as", "cho"])
        .spawn()
        .expect("approve starts");
    let approved = output(approve).await;
    assert_eq!(
        approved.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );

    let out = output(run).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the gate passed: {stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "  ack: approved by cho (via file)"),
        "the progress output names the approver: {stderr}"
    );
    sim.shutdown().await;
}
