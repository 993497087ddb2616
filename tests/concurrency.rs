//! Concurrency (issue 8): two `ripcord` CLIs rolling back the same Deployment at the same
//! moment. Exactly one acts — the sim sees exactly one PATCH of the Deployment — and the other
//! either refuses with exit 4 naming the run id that holds the lock, or (when it looks after
//! the first one finished) finds nothing to do. Rounds start the second process with
//! different offsets to meet different interleavings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod campaign_support;

use campaign_support::{Playbook, Trial, deployment, rolled_out, settle};
use ripcord::journal::{self, Outcome};
use serde_json::Value;
use std::time::Duration;

const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout";

/// The run ids (`r-YYYYMMDD-HHMMSS-xxxx`) mentioned in a text.
fn run_ids(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("r-") && journal::validate_run_id(w).is_ok())
        .map(str::to_string)
        .collect()
}

async fn race(offset: Duration) -> &'static str {
    let trial = Trial::start(Playbook::Rollback).await;
    let args: Vec<String> = ["rollback", "deployment/checkout", "-n", "shop", "--yes"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let first = trial
        .command(&args, &[])
        .spawn()
        .expect("first ripcord starts");
    tokio::time::sleep(offset).await;
    let second = trial
        .command(&args, &[])
        .spawn()
        .expect("second ripcord starts");
    let bound = campaign_support::PROCESS_BOUND;
    let (a, b) = tokio::join!(
        tokio::time::timeout(bound, first.wait_with_output()),
        tokio::time::timeout(bound, second.wait_with_output())
    );
    let outputs: Vec<(Option<i32>, String)> = [a, b]
        .into_iter()
        .map(|r| {
            let out = r.expect("finished in time").expect("output");
            (
                out.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        })
        .collect();
    let shown = format!("{outputs:#?}");
    settle(&trial).await;

    let patches = trial
        .sim
        .request_log()
        .iter()
        .filter(|r| {
            r.seq > trial.log_start
                && r.method == "PATCH"
                && r.path == DEPLOYMENT_PATH
                && (200..300).contains(&r.status)
        })
        .count();
    assert_eq!(patches, 1, "exactly one process rolled back: {shown}");
    let d = deployment(&trial.sim, "shop", "checkout");
    let image = d
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(image.ends_with(":1.4.2"), "rolled back once: {image}");
    assert!(rolled_out(&d));

    let runs = journal::list_runs(&trial.state_dir()).expect("runs listed");
    let succeeded: Vec<String> = runs
        .iter()
        .filter(|r| {
            let path = journal::journal_path(&trial.state_dir(), &r.run_id);
            journal::read(&path)
                .map(|(entries, _)| {
                    campaign_support::final_outcome(&entries) == Some(Outcome::Succeeded)
                })
                .unwrap_or(false)
        })
        .map(|r| r.run_id.clone())
        .collect();
    let codes: Vec<Option<i32>> = outputs.iter().map(|(c, _)| *c).collect();
    let kind = match codes.as_slice() {
        [Some(0), Some(4)] | [Some(4), Some(0)] => {
            let (_, refused) = outputs
                .iter()
                .find(|(c, _)| *c == Some(4))
                .expect("a refusal");
            let (_, winner) = outputs
                .iter()
                .find(|(c, _)| *c == Some(0))
                .expect("a success");
            let holder = run_ids(winner)
                .into_iter()
                .find(|id| succeeded.contains(id))
                .unwrap_or_else(|| panic!("the winner's run id: {shown}"));
            assert!(
                refused.contains(&holder),
                "the refusal names the holder {holder}: {shown}"
            );
            "one acted, the other refused naming the holder"
        }
        [Some(0), Some(0)] => {
            // The later one found the rollback done: nothing written twice (checked above).
            "one acted, the other found it already satisfied"
        }
        other => panic!("unexpected exit codes {other:?}: {shown}"),
    };
    eprintln!(
        "offset {offset:?}: {kind}; runs {runs:?}",
        runs = runs.len()
    );
    trial.finish().await;
    kind
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clis_rolling_back_the_same_deployment_exactly_one_acts() {
    let mut kinds = Vec::new();
    for offset_ms in [0u64, 40, 150] {
        kinds.push(race(Duration::from_millis(offset_ms)).await);
    }
    eprintln!("{kinds:?}");
}
