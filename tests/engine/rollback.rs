//! `ripcord rollback` against the simulated cluster (the binary, over loopback): a bad release
//! is rolled back, journaled, snapshotted, announced before the first write, and a second run
//! changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::engine_support;

use engine_support::{Harness, Receiver, final_outcome, kinds_of, position, records, run_id_from};
use ripcord::journal::{Outcome, Record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_previous_template_and_journals_everything() {
    let h = Harness::demo().await;
    let receiver = Receiver::start(h.sim.clone()).await;
    h.write_config(
        "notify:\n  channels:\n    - name: oncall\n      type: webhook\n      urlFromEnv: TEST_HOOK_URL\n",
    );
    assert!(h.image().ends_with(":1.5.0"));
    // Wait (bounded) until the bad release's pods run: only a started container has a log.
    let running_bad_pods = || {
        let (pods, _) = h
            .sim
            .store()
            .list(&ripcord::sim::store::kinds::pods(), Some("shop"));
        pods.iter()
            .filter(|p| p.to_string().contains("checkout:1.5.0"))
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect::<Vec<String>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut bad_pods = running_bad_pods();
    while bad_pods.len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        bad_pods = running_bad_pods();
    }
    assert!(!bad_pods.is_empty(), "the bad release has running pods");

    let out = h
        .ripcord(
            &[
                "rollback",
                "deployment/checkout",
                "-n",
                "shop",
                "--yes",
                "--incident",
                "INC-42",
            ],
            &[("TEST_HOOK_URL", receiver.url.as_str())],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "rollback succeeded");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains("succeeded") && last.contains("journal"),
        "one final line: {last}"
    );
    let run_id = run_id_from(&out);

    // The previous template is back and the rollout completed.
    assert!(h.image().ends_with(":1.4.2"), "image is {}", h.image());
    assert!(
        h.rolled_out(),
        "rollout complete: {}",
        h.deployment()["status"]
    );
    // kubectl's numbering: the restored ReplicaSet takes the next revision (3); the bad one
    // keeps 2; the Deployment's annotation follows.
    let revisions = h.revisions();
    assert_eq!(
        revisions,
        vec![
            (2, "registry.local/checkout:1.5.0".into()),
            (3, "registry.local/checkout:1.4.2".into())
        ],
        "revision history"
    );
    assert_eq!(
        h.deployment()
            .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
            .and_then(|v| v.as_str()),
        Some("3")
    );
    assert_eq!(
        h.deployment_patches().len(),
        1,
        "exactly one PATCH of the deployment"
    );

    // The journal holds the documented records, write-ahead before applied.
    let entries = records(&h.state_dir(), &run_id);
    let kinds = kinds_of(&entries);
    for kind in [
        "RunStarted",
        "Notified",
        "SnapshotTaken",
        "StepPlanned",
        "MutationIntended",
        "MutationApplied",
        "StepVerified",
        "RunFinished",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let intended = position(&entries, "MutationIntended").unwrap_or(usize::MAX);
    let applied = position(&entries, "MutationApplied").unwrap_or(0);
    assert!(position(&entries, "Notified").unwrap_or(usize::MAX) < intended);
    assert!(position(&entries, "SnapshotTaken").unwrap_or(usize::MAX) < intended);
    assert!(intended < applied);
    assert_eq!(final_outcome(&entries), Some(Outcome::Succeeded));
    match &entries[0].record {
        Record::RunStarted {
            incident,
            who,
            trigger,
            ..
        } => {
            assert_eq!(incident.as_deref(), Some("INC-42"));
            assert_eq!(who, "test");
            assert_eq!(trigger, "cli");
        }
        other => panic!("first record is {other:?}"),
    }
    let journal_text =
        std::fs::read_to_string(ripcord::journal::journal_path(&h.state_dir(), &run_id)).unwrap();
    assert!(
        !journal_text.contains(&receiver.url),
        "webhook URL leaked into the journal"
    );

    // The snapshot exists with its manifest.
    let manifest =
        ripcord::journal::run_dir(&h.state_dir(), &run_id).join("snapshot/manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).expect("manifest written"))
            .unwrap();
    let captured = manifest["captured"].as_array().cloned().unwrap_or_default();
    assert!(
        captured.iter().any(|e| e["kind"] == "Deployment"),
        "the Deployment is in the snapshot: {manifest}"
    );
    // The bad release's pods are replaced by the rollback, so their logs must be read before
    // the first mutation: they are in the bundle.
    let bad_pod_logs = captured
        .iter()
        .filter(|e| e["kind"] == "Log")
        .filter(|e| {
            e["name"]
                .as_str()
                .and_then(|n| n.split('/').nth(1))
                .is_some_and(|pod| bad_pods.iter().any(|b| b == pod))
        })
        .count();
    assert!(
        bad_pod_logs > 0 && bad_pod_logs == bad_pods.len(),
        "logs of the bad release's pods {bad_pods:?} are in the snapshot: {manifest}"
    );

    // The webhook heard "about to …" before the PATCH reached the API server.
    let received = receiver.received();
    let about = received
        .iter()
        .find(|r| r.body.to_string().contains("about to"))
        .unwrap_or_else(|| panic!("no 'about to' notification in {received:?}"));
    let patch_seq = h.deployment_patches()[0];
    assert_eq!(
        about.patches_before, 0,
        "notification arrived after the PATCH"
    );
    assert!(about.sim_seq_at_arrival < patch_seq);
    assert!(
        received
            .iter()
            .any(|r| r.body.to_string().contains("succeeded")),
        "a final notification with the outcome: {received:?}"
    );

    // The same rollback again: already satisfied, zero write requests.
    let writes_before = h.sim.write_request_count();
    let again = h
        .ripcord(
            &["rollback", "deployment/checkout", "-n", "shop", "--yes"],
            &[],
        )
        .await;
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        h.sim.write_request_count(),
        writes_before,
        "a satisfied rollback writes nothing"
    );
    let second = run_id_from(&again);
    assert_ne!(second, run_id);
    let entries = records(&h.state_dir(), &second);
    assert!(
        entries.iter().any(
            |e| matches!(&e.record, Record::StepAlreadySatisfied { step, .. } if step == "rollback")
        ),
        "{:?}",
        kinds_of(&entries)
    );
    assert!(position(&entries, "MutationIntended").is_none());
    assert!(h.image().ends_with(":1.4.2"), "still the good release");

    // `runs list` / `runs show` see both runs.
    let list = h.ripcord(&["runs", "list"], &[]).await;
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains(&run_id) && list.contains(&second), "{list}");
    let show = h.ripcord(&["runs", "show", &run_id], &[]).await;
    assert!(String::from_utf8_lossy(&show.stdout).contains("intend:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_without_tty_or_yes_is_refused_and_dry_run_writes_nothing() {
    let h = Harness::demo().await;
    let writes = h.sim.write_request_count();
    let dry = h
        .ripcord(
            &["rollback", "deployment/checkout", "-n", "shop", "--dry-run"],
            &[],
        )
        .await;
    assert_eq!(dry.status.code(), Some(0));
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("1.4.2"),
        "the dry run shows the template diff: {text}"
    );
    let refused = h
        .ripcord(&["rollback", "deployment/checkout", "-n", "shop"], &[])
        .await;
    assert_eq!(
        refused.status.code(),
        Some(4),
        "no TTY and no --yes: refused"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(h.sim.write_request_count(), writes, "nothing written");
    assert!(h.image().ends_with(":1.5.0"));
    assert!(
        ripcord::journal::list_runs(&h.state_dir())
            .unwrap()
            .is_empty(),
        "no journal for a dry run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_plan_shows_the_diff_and_inverse_and_writes_nothing() {
    let h = Harness::demo().await;
    let writes = h.sim.write_request_count();
    let out = h
        .ripcord(
            &[
                "plan",
                "builtin:rollback",
                "-p",
                "name=checkout",
                "-p",
                "namespace=shop",
            ],
            &[],
        )
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1.4.2"),
        "the live plan shows the target: {text}"
    );
    assert_eq!(h.sim.write_request_count(), writes, "a plan writes nothing");
    assert!(h.image().ends_with(":1.5.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_against_an_unreachable_cluster_exits_3_and_journals_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:1\n\
         contexts:\n- name: gone\n  context:\n    cluster: gone\n    user: nobody\n\
         current-context: gone\nusers:\n- name: nobody\n  user: {}\n",
    )
    .expect("kubeconfig written");
    let state = dir.path().join("state");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .args(["rollback", "deployment/checkout", "-n", "shop", "--yes"])
        .env("KUBECONFIG", &kubeconfig)
        .env("RIPCORD_STATE_DIR", &state)
        .env("RIPCORD_CONFIG", "/dev/null")
        .output()
        .await
        .expect("ripcord runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot reach the cluster"), "{stderr}");
    assert!(
        ripcord::journal::list_runs(&state)
            .unwrap_or_default()
            .is_empty(),
        "no run is journaled when the cluster is unreachable"
    );
}

/// Issue 12: two bad releases in a row. A plain rollback used to restore the previous revision
/// — the first bad release, which never became available; it now skips it, restores the last
/// revision that was fully available, and says which and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_plain_rollback_skips_a_previous_release_that_never_became_available() {
    use k8s_openapi::api::apps::v1::Deployment;
    let h = Harness::demo().await;
    // The second bad release (1.5.1) on top of the first (1.5.0, still rolling out).
    let api: kube::Api<Deployment> = kube::Api::namespaced(h.sim.client(), "shop");
    let patch = serde_json::json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image",
         "value": "registry.local/checkout:1.5.1"},
        {"op": "add", "path": "/spec/template/metadata/annotations",
         "value": {"sim.ripcord.dev/bad-release": "true"}},
    ]);
    api.patch(
        "checkout",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::<()>::Json(serde_json::from_value(patch).expect("json patch")),
    )
    .await
    .expect("second bad release");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while h.revisions().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "{:?}", h.revisions());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(h.image().ends_with(":1.5.1"), "{}", h.image());

    let out = h
        .ripcord(
            &["rollback", "deployment/checkout", "-n", "shop", "--yes"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "rollback succeeded");
    assert!(
        h.image().ends_with(":1.4.2"),
        "restored the last available release, not the first bad one: {}",
        h.image()
    );
    let run_id = run_id_from(&out);
    let planned: String = records(&h.state_dir(), &run_id)
        .iter()
        .filter_map(|e| match &e.record {
            Record::StepPlanned { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .collect();
    assert!(
        planned.contains("to revision 1")
            && planned.contains("skipped revision 2")
            && planned.contains("never became available")
            && planned.contains("--known-good"),
        "says which revision and why: {planned}"
    );
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("skipped revision 2"),
        "the operator sees it: {shown}"
    );
}

/// Issue 18: one `ripcord rollback --yes` makes at most twice the requests of `kubectl rollout
/// undo` + `kubectl rollout status` (9 in `benches/compare.rs`) for the mitigation itself — no
/// re-read of an object just read, no Lease GET before create or delete, no Run mirror POST
/// when the CRD is absent (the discovery probe said so), no second read of the target after the
/// lock, a target snapshot reusing the diff's reads — plus the evidence capture kubectl does not
/// make (namespace lists, log tails, node conditions), which runs concurrently. 41 requests
/// before issue 18; 28–31 after (13 of them the rollback's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_rollback_makes_at_most_twice_kubectls_requests() {
    let h = Harness::demo().await;
    let before = h.sim.request_log().last().map(|r| r.seq).unwrap_or(0);
    let out = h
        .ripcord(
            &["rollback", "deployment/checkout", "-n", "shop", "--yes"],
            &[],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "rollback succeeded: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h.image().ends_with(":1.4.2"), "image is {}", h.image());
    let log: Vec<_> = h
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.seq > before)
        .collect();
    let listing: Vec<String> = log
        .iter()
        .map(|r| {
            format!(
                "{:>3} {:<9} {} {}?{}",
                r.status, r.verb, r.method, r.path, r.query
            )
        })
        .collect();
    let listing = listing.join("\n");
    println!("{} requests:\n{listing}", log.len());
    // The evidence capture: log tails and whole-namespace (or node) lists.
    let evidence = |r: &&ripcord::sim::faults::RequestRecord| {
        r.path.ends_with("/log")
            || (r.verb == "list"
                && !r.query.contains("labelSelector")
                && !r.query.contains("fieldSelector"))
    };
    let own = log.iter().filter(|r| !evidence(r)).count();
    assert!(
        own <= 18,
        "{own} requests of the rollback itself, at most 2 × kubectl's 9 (10 in the bench):\n{listing}"
    );
    // One log tail per pod of the Deployment: 5 or 6 on the demo, depending on timing (and
    // on a loaded machine the unready pods' tails are sometimes read twice, see
    // docs/performance.md).
    assert!(
        log.len() <= 34,
        "{} requests in all, at most 34:\n{listing}",
        log.len()
    );
    // What the issue named, one by one.
    let leases: Vec<&str> = log
        .iter()
        .filter(|r| r.path.contains("/leases"))
        .map(|r| r.verb.as_str())
        .collect();
    assert_eq!(
        leases,
        ["create", "list", "delete"],
        "no Lease GET; one list by name (the same lock held in another namespace):\n{listing}"
    );
    assert!(
        !log.iter().any(|r| r.path.contains("/runs")),
        "no Run mirror request when the CRD is absent:\n{listing}"
    );
    let patch = log
        .iter()
        .position(|r| r.method == "PATCH" && r.path.contains("/deployments/checkout"))
        .expect("the rollback patch");
    let reads_before_patch = log[..patch]
        .iter()
        .filter(|r| {
            r.path.ends_with("/deployments/checkout")
                || (r.path.ends_with("/replicasets") && r.query.contains("labelSelector"))
        })
        .count();
    assert_eq!(
        reads_before_patch, 2,
        "one read of the Deployment and its ReplicaSets (the diff), reused by the lock and the \
         snapshot:\n{listing}"
    );
}

/// Issue 18: without a second read after the lock, a Deployment changed between the diff and
/// the write is still never written blind: the patch carries the diff's resourceVersion, the
/// API answers 409, and the engine reads and diffs again before writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_a_deployment_changed_after_the_diff_is_re_diffed_not_overwritten() {
    let h = Harness::demo().await;
    let sim = h.sim.clone();
    let before = sim.request_log().last().map(|r| r.seq).unwrap_or(0);
    // Slow requests leave room to change the Deployment once the lock is taken.
    sim.faults()
        .set_latency(std::time::Duration::from_millis(150));
    let meddler = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let locked = sim
                .request_log()
                .iter()
                .any(|r| r.seq > before && r.method == "POST" && r.path.contains("/leases"));
            if locked {
                let kind = ripcord::sim::store::kinds::deployments();
                let mut d = sim.store().get(&kind, Some("shop"), "checkout").expect("d");
                d["metadata"]["annotations"]["team/meddled"] = "yes".into();
                sim.store().update(&kind, d).expect("changed under the run");
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        false
    });
    let out = h
        .ripcord(
            &["rollback", "deployment/checkout", "-n", "shop", "--yes"],
            &[],
        )
        .await;
    assert!(
        meddler.await.expect("meddler"),
        "the Deployment was changed"
    );
    h.sim.faults().set_latency(std::time::Duration::ZERO);
    assert_eq!(out.status.code(), Some(0), "rollback succeeded");
    assert!(h.image().ends_with(":1.4.2"), "image is {}", h.image());
    let patches: Vec<u16> = h
        .sim
        .request_log()
        .iter()
        .filter(|r| r.seq > before && r.method == "PATCH" && r.path.ends_with("/checkout"))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        patches,
        [409, 200],
        "the stale write was refused, then re-diffed"
    );
    let log = h.sim.request_log();
    let at = |status: u16| {
        log.iter()
            .position(|r| {
                r.seq > before
                    && r.method == "PATCH"
                    && r.path.ends_with("/checkout")
                    && r.status == status
            })
            .expect("patch")
    };
    assert!(
        log[at(409)..at(200)]
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/deployments/checkout")),
        "a fresh read between the refused and the accepted write"
    );
}

/// Issue 18: the "about to" notification and the snapshot of the targets go out together (the
/// run waits for the slower of the two before its first write, not for their sum). The webhook
/// here answers only once the snapshot's read of the target's pods has reached the cluster (or
/// after 4 s): were the two sequential, that read could only come after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_the_notification_and_the_target_snapshot_go_out_together() {
    use axum::routing::post;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let h = Harness::demo().await;
    let saw_snapshot = Arc::new(AtomicBool::new(false));
    let app = axum::Router::new().route(
        "/hook",
        post({
            let sim = h.sim.clone();
            let saw_snapshot = saw_snapshot.clone();
            move |body: axum::body::Bytes| async move {
                let started = String::from_utf8_lossy(&body).contains("about to");
                let deadline = Instant::now() + Duration::from_secs(4);
                while started && Instant::now() < deadline {
                    let read = sim.request_log().iter().any(|r| {
                        r.method == "GET" && r.path.starts_with("/api/v1/namespaces/shop/pods")
                    });
                    if read {
                        saw_snapshot.store(true, Ordering::SeqCst);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    h.write_config(
        "notify:\n  channels:\n    - name: oncall\n      type: webhook\n      urlFromEnv: TEST_HOOK_URL\n",
    );

    let out = h
        .ripcord(
            &["rollback", "deployment/checkout", "-n", "shop", "--yes"],
            &[("TEST_HOOK_URL", url.as_str())],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        saw_snapshot.load(Ordering::SeqCst),
        "the target snapshot's reads reached the cluster while the notification was in flight"
    );
    // The journal still says both happened before the first write.
    let entries = records(&h.state_dir(), &run_id_from(&out));
    let kinds = kinds_of(&entries);
    let notified = position(&entries, "Notified").unwrap();
    let snapshot = position(&entries, "SnapshotTaken").unwrap();
    let intended = position(&entries, "MutationIntended").unwrap();
    assert!(notified < intended && snapshot < intended, "{kinds:?}");
}
