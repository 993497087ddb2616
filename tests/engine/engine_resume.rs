//! Crash and resume: the `ripcord` binary is killed (test hook `RIPCORD_TEST_CRASH_AT`)
//! between the write-ahead record and the API call, and between the applied record and
//! verification; `ripcord run --resume RUN` then finishes with exactly one mutation. Also: a
//! held lock refuses a second run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::engine_support;

use engine_support::{Harness, final_outcome, kinds_of, only_run, records};
use ripcord::journal::{Outcome, Record};
use serde_json::json;

async fn crash_then_resume(point: &str) -> (Harness, String) {
    let h = Harness::demo().await;
    let crashed = h
        .ripcord(
            &["rollback", "deployment/checkout", "-n", "shop", "--yes"],
            &[("RIPCORD_TEST_CRASH_AT", point)],
        )
        .await;
    assert_eq!(
        crashed.status.code(),
        Some(137),
        "the crash hook fired at {point}"
    );
    let run_id = only_run(&h.state_dir());
    let entries = records(&h.state_dir(), &run_id);
    assert_eq!(
        final_outcome(&entries),
        None,
        "a crashed run has no RunFinished"
    );
    let patches_after_crash = h.deployment_patches().len();
    let kinds = kinds_of(&entries);
    assert!(kinds.contains(&"MutationIntended"), "{kinds:?}");
    assert!(!kinds.contains(&"StepVerified"), "{kinds:?}");
    match point {
        "after-intent" => {
            assert_eq!(patches_after_crash, 0, "crashed before the API call");
            assert!(!kinds.contains(&"MutationApplied"), "{kinds:?}");
        }
        _ => {
            assert_eq!(patches_after_crash, 1, "crashed after the API call");
            assert!(kinds.contains(&"MutationApplied"), "{kinds:?}");
        }
    }

    let resumed = h.ripcord(&["run", "--resume", &run_id], &[]).await;
    assert_eq!(resumed.status.code(), Some(0), "resume finished the run");
    assert_eq!(
        h.deployment_patches().len(),
        1,
        "exactly one mutation over both processes"
    );
    assert!(h.image().ends_with(":1.4.2"), "rolled back: {}", h.image());
    assert!(h.rolled_out());
    let entries = records(&h.state_dir(), &run_id);
    assert!(kinds_of(&entries).contains(&"RunResumed"));
    assert_eq!(final_outcome(&entries), Some(Outcome::Succeeded));
    let verified: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.record {
            Record::StepVerified { step } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(verified, vec!["rollback", "wait-rolled-out"]);
    (h, run_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_write_ahead_and_apply_resumes_with_one_mutation() {
    let (h, run_id) = crash_then_resume("after-intent").await;
    let entries = records(&h.state_dir(), &run_id);
    let applied: Vec<bool> = entries
        .iter()
        .filter_map(|e| match &e.record {
            Record::MutationApplied { recovered, .. } => Some(*recovered),
            _ => None,
        })
        .collect();
    assert_eq!(applied, vec![false], "applied once, by the resumed process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_apply_and_verify_resumes_without_reapplying() {
    let (h, run_id) = crash_then_resume("after-apply").await;
    let entries = records(&h.state_dir(), &run_id);
    let intents = kinds_of(&entries)
        .iter()
        .filter(|k| **k == "MutationIntended")
        .count();
    assert_eq!(intents, 1, "the resumed run intended nothing new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_refuses_the_run_with_the_holder() {
    let h = Harness::demo().await;
    let lease = ripcord::k8s::leases::lease_name("deployment/shop/checkout");
    let now = jiff::Timestamp::now();
    h.sim
        .store()
        .create(
            &ripcord::sim::store::kinds::leases(),
            json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": lease, "namespace": "shop"},
                "spec": {
                    "holderIdentity": "r-20261125-090000-beef",
                    "leaseDurationSeconds": 300,
                    "acquireTime": now.to_string(),
                    "renewTime": now.to_string(),
                }
            }),
        )
        .expect("lease created");
    let out = h
        .ripcord(
            &["rollback", "deployment/checkout", "-n", "shop", "--yes"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(4), "refused");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("r-20261125-090000-beef"),
        "names the holder: {text}"
    );
    assert!(h.deployment_patches().is_empty());
    assert!(h.image().ends_with(":1.5.0"));
    let run_id = only_run(&h.state_dir());
    let entries = records(&h.state_dir(), &run_id);
    assert_eq!(final_outcome(&entries), Some(Outcome::Refused));
    assert!(!kinds_of(&entries).contains(&"MutationIntended"));
}

const PATCH_THEN_WAIT: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: patch-then-wait
spec:
  lock: deployment/shop/checkout
  steps:
    - name: annotate
      action: object.patch
      with:
        apiVersion: apps/v1
        kind: Deployment
        namespace: shop
        name: checkout
        patch: {metadata: {annotations: {ripcord.dev/soak: "yes"}}}
    - name: soak
      action: wait
      with: {duration: 3s}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_at_a_safe_point_with_exit_130_and_the_run_resumes() {
    let h = Harness::demo().await;
    let playbook = h.dir.path().join("patch-then-wait.yaml");
    std::fs::write(&playbook, PATCH_THEN_WAIT).unwrap();
    let playbook = playbook.display().to_string();

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"));
    cmd.args(["run", &playbook, "--yes", "-n", "shop"])
        .env("KUBECONFIG", h.kubeconfig())
        .env("RIPCORD_STATE_DIR", h.state_dir())
        .env("RIPCORD_CONFIG", "/dev/null")
        .env_remove(ripcord::engine::CRASH_HOOK_ENV)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("ripcord starts");
    let pid = child.id().expect("pid");

    // Wait for the first step to verify, then SIGTERM during the soak.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let run_id = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the first step never verified"
        );
        if let Ok(runs) = ripcord::journal::list_runs(&h.state_dir())
            && let Some(run) = runs.first()
        {
            // The child is writing: a torn tail is possible here, so read leniently.
            let path = ripcord::journal::journal_path(&h.state_dir(), &run.run_id);
            let entries = ripcord::journal::read(&path)
                .map(|(e, _)| e)
                .unwrap_or_default();
            if entries
                .iter()
                .any(|e| matches!(&e.record, Record::StepVerified { step } if step == "annotate"))
            {
                break run.run_id.clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().await.expect("ripcord ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "interrupted: {stdout}");
    assert!(
        stdout.contains(&format!("--resume {run_id}")),
        "says how to resume: {stdout}"
    );
    let entries = records(&h.state_dir(), &run_id);
    assert_eq!(final_outcome(&entries), Some(Outcome::Interrupted));
    let lease = ripcord::k8s::leases::lease_name("deployment/shop/checkout");
    assert!(
        h.sim
            .store()
            .get(&ripcord::sim::store::kinds::leases(), Some("shop"), &lease)
            .is_none(),
        "the lock was released"
    );

    let resumed = h.ripcord(&["run", "--resume", &run_id], &[]).await;
    assert_eq!(resumed.status.code(), Some(0));
    let entries = records(&h.state_dir(), &run_id);
    assert_eq!(final_outcome(&entries), Some(Outcome::Succeeded));
    let intents = kinds_of(&entries)
        .iter()
        .filter(|k| **k == "MutationIntended")
        .count();
    assert_eq!(intents, 1, "the verified step was skipped on resume");
}
