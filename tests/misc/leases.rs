//! Per-target locks (`k8s::leases`) against the simulated cluster: transient API errors are
//! retried, and a refusal always names a real holder (regressions found by the fault campaign,
//! issue 8); renewal is conditional and stops when another holder took the Lease; the leader
//! election rounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use ripcord::k8s::leases::{self, LeaseError};
use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use std::time::Duration;

async fn sim() -> SimCluster {
    SimCluster::start(SimOptions {
        scenario: Scenario::empty(),
        addr: None,
    })
    .await
    .expect("sim starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_lock_is_taken_despite_transient_server_errors() {
    let sim = sim().await;
    let client = sim.client();
    // Every request fails with 500 for a while, then the API server recovers.
    sim.faults().set_error_rate(500, 1.0);
    let faults = sim.faults().clone();
    let recover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        faults.clear();
    });
    let guard = leases::acquire(
        &client,
        "default",
        "deployment/default/web",
        "r-test-1",
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await;
    recover.await.expect("recovery task");
    let guard = guard.expect("the lock is taken once the server recovers");
    guard.release().await.expect("released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_a_held_lock_names_its_holder_and_persistent_errors_are_not_called_held() {
    let sim = sim().await;
    let client = sim.client();
    let first = leases::acquire(
        &client,
        "default",
        "deployment/default/web",
        "r-holder",
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await
    .expect("first taker gets the lock");
    let second = leases::acquire(
        &client,
        "default",
        "deployment/default/web",
        "r-second",
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await;
    match second {
        Err(LeaseError::Held { holder, .. }) => assert_eq!(holder, "r-holder"),
        Err(other) => panic!("expected Held, got {other}"),
        Ok(_) => panic!("two holders of one lock"),
    }
    first.release().await.expect("released");

    // A server that keeps failing is reported as the failure it is, not as a held lock.
    sim.faults().set_error_rate(500, 1.0);
    let failing = leases::acquire(
        &client,
        "default",
        "deployment/default/other",
        "r-third",
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await;
    sim.faults().clear();
    match failing {
        Err(err) => assert!(
            !matches!(err, LeaseError::Held { .. }) && err.is_transient(),
            "{err}"
        ),
        Ok(_) => panic!("the lock cannot be taken while every call fails"),
    }
}

/// The Lease as stored in the sim: (holderIdentity, renewTime).
fn stored_lease(sim: &SimCluster, name: &str) -> Option<(String, String)> {
    let lease = sim.store().get(&kinds::leases(), Some("default"), name)?;
    let field = |p: &str| {
        lease
            .pointer(p)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some((field("/spec/holderIdentity"), field("/spec/renewTime")))
}

fn lease_requests(sim: &SimCluster, name: &str) -> Vec<(String, u64)> {
    sim.request_log()
        .into_iter()
        .filter(|r| r.path.ends_with(&format!("/leases/{name}")))
        .map(|r| (r.verb, r.seq))
        .collect()
}

async fn wait_until(what: &str, bound: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + bound;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {bound:?} waiting for: {what}");
}

/// `lock` taken by `r-owner` in `default` with a 1 s lease (renewed every ~333 ms).
async fn owner_lock(client: &kube::Client, lock: &str) -> leases::LockGuard {
    leases::acquire(
        client,
        "default",
        lock,
        "r-owner",
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .await
    .expect("lock taken")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_lease_stops_renewal_reports_the_thief_and_is_not_overwritten() {
    let sim = sim().await;
    let client = sim.client();
    let lock = "deployment/default/stolen";
    let name = leases::lease_name(lock);
    let guard = owner_lock(&client, lock).await;
    assert_eq!(guard.lost(), None);
    let first = stored_lease(&sim, &name).expect("lease exists");
    wait_until("the owner renews", Duration::from_secs(10), || {
        stored_lease(&sim, &name).is_some_and(|(_, renewed)| renewed != first.1)
    })
    .await;
    assert_eq!(guard.lost(), None, "still ours while we renew");

    // Another holder takes the Lease (ours expired, someone acquired it), through the API.
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    let mut lease = api.get(&name).await.expect("lease read");
    let spec = lease.spec.as_mut().expect("lease spec");
    spec.holder_identity = Some("r-thief".to_string());
    spec.lease_duration_seconds = Some(3600);
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    api.replace(&name, &PostParams::default(), &lease)
        .await
        .expect("the thief writes the lease");
    let stolen = stored_lease(&sim, &name).expect("lease exists");
    let stolen_at = sim.request_log().last().map(|r| r.seq).unwrap_or(0);

    let mut lost = guard.lost_signal();
    tokio::time::timeout(
        Duration::from_secs(10),
        lost.wait_for(|holder| holder.is_some()),
    )
    .await
    .expect("the loss is noticed in time")
    .expect("the guard is alive");
    assert_eq!(guard.lost().as_deref(), Some("r-thief"), "names the thief");

    // Renewal stopped: the renewal task ended (its end drops the sender of the loss signal,
    // so `changed()` answers an error), so nothing can touch the Lease any more. Its last
    // request was the read that found the thief, and it is the thief's exactly as written.
    tokio::time::timeout(Duration::from_secs(10), async {
        while lost.changed().await.is_ok() {}
    })
    .await
    .expect("the renewal task ends after the loss");
    let seen = lease_requests(&sim, &name);
    assert_eq!(
        seen.last().map(|(verb, _)| verb.as_str()),
        Some("get"),
        "the last request of the renewal found the thief: {seen:?}"
    );
    let writes_after_steal: Vec<_> = seen
        .iter()
        .filter(|(verb, seq)| *seq > stolen_at && verb != "get")
        .collect();
    assert!(
        writes_after_steal.is_empty(),
        "the stolen Lease was written: {writes_after_steal:?}"
    );
    assert_eq!(stored_lease(&sim, &name), Some(stolen));

    // Releasing a lost lock leaves the thief's Lease alone.
    guard.release().await.expect("release is a no-op");
    assert_eq!(
        stored_lease(&sim, &name)
            .map(|(holder, _)| holder)
            .as_deref(),
        Some("r-thief")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_during_renewal_do_not_lose_the_lock() {
    let sim = sim().await;
    let client = sim.client();
    let lock = "deployment/default/conflicts";
    let name = leases::lease_name(lock);
    let guard = owner_lock(&client, lock).await;
    // Every call answers 409 for a few renewal periods: at least three rounds (each reads up
    // to three times, `retry::conflict_reread`), seen in the sim's request log.
    let before = sim.request_log().last().map(|r| r.seq).unwrap_or(0);
    sim.faults().set_error_rate(409, 1.0);
    wait_until(
        "three renewal rounds answered 409",
        Duration::from_secs(10),
        || {
            sim.request_log()
                .iter()
                .filter(|r| r.seq > before && r.status == 409)
                .filter(|r| r.path.ends_with(&format!("/leases/{name}")))
                .count()
                >= 7
        },
    )
    .await;
    sim.faults().clear();
    let after_faults = stored_lease(&sim, &name).expect("lease exists");
    assert_eq!(after_faults.0, "r-owner");
    wait_until("renewal resumes", Duration::from_secs(10), || {
        stored_lease(&sim, &name).is_some_and(|(_, renewed)| renewed != after_faults.1)
    })
    .await;
    assert_eq!(guard.lost(), None, "conflicts are not a loss");
    guard.release().await.expect("released");
    assert_eq!(
        stored_lease(&sim, &name),
        None,
        "released deletes the Lease"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_rounds_are_exclusive_and_release_hands_over() {
    let sim = sim().await;
    let client = sim.client();
    let round = |identity: &'static str| {
        let client = client.clone();
        async move {
            leases::try_acquire_or_renew(
                &client,
                "default",
                "ripcord-leader",
                identity,
                Duration::from_secs(30),
                Duration::from_secs(5),
            )
            .await
            .expect("election round")
        }
    };
    assert!(round("daemon-a").await, "the first contender leads");
    assert!(!round("daemon-b").await, "a live lease is not taken over");
    assert!(round("daemon-a").await, "the holder renews");
    // Clearing by a non-holder does nothing.
    leases::clear_holder(
        &client,
        "default",
        "ripcord-leader",
        "daemon-b",
        Duration::from_secs(5),
    )
    .await
    .expect("no-op");
    assert!(!round("daemon-b").await);
    leases::clear_holder(
        &client,
        "default",
        "ripcord-leader",
        "daemon-a",
        Duration::from_secs(5),
    )
    .await
    .expect("released");
    assert!(
        round("daemon-b").await,
        "the next contender takes over at once"
    );
    assert_eq!(
        stored_lease(&sim, "ripcord-leader")
            .map(|(holder, _)| holder)
            .as_deref(),
        Some("daemon-b")
    );
    sim.shutdown().await;
}

/// Annotates the Deployment (the first write takes the lock), then soaks for a minute.
const PATCH_THEN_SOAK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: patch-then-soak
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
      with: {duration: 60s}
"#;

async fn demo_sim() -> SimCluster {
    SimCluster::start(SimOptions {
        scenario: Scenario::demo(),
        addr: None,
    })
    .await
    .expect("sim starts")
}

/// Runs [`PATCH_THEN_SOAK`] through the engine with a 1 s lock lease.
async fn run_patch_then_soak(
    client: kube::Client,
    state: std::path::PathBuf,
) -> Result<ripcord::engine::RunOutcome, ripcord::engine::EngineError> {
    let playbook = ripcord::playbook::parse::parse_str("patch-then-soak.yaml", PATCH_THEN_SOAK)
        .expect("valid");
    let run_id = ripcord::journal::new_run_id();
    let plan = ripcord::plan::plan(&playbook, &Default::default(), &run_id).expect("plan");
    let mut opts = ripcord::engine::RunOptions::new("test", state);
    opts.namespace = Some("shop".into());
    ripcord::engine::Engine::new(client, reqwest::Client::new())
        .with_lock_ttl(Duration::from_secs(1))
        .run(plan, opts, None)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loses_its_lock_stops_at_the_next_safe_point() {
    let sim = demo_sim().await;
    let state = tempfile::tempdir().expect("tempdir");
    let run = tokio::spawn(run_patch_then_soak(
        sim.client(),
        state.path().to_path_buf(),
    ));

    // Once the run holds the lock (its Lease exists) and soaks, another holder takes it.
    let name = leases::lease_name("deployment/shop/checkout");
    let api: Api<Lease> = Api::namespaced(sim.client(), "shop");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut lease = loop {
        if let Ok(Some(lease)) = api.get_opt(&name).await {
            break lease;
        }
        assert!(std::time::Instant::now() < deadline, "the run took no lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spec = lease.spec.as_mut().expect("lease spec");
    spec.holder_identity = Some("r-thief".to_string());
    spec.lease_duration_seconds = Some(3600);
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    api.replace(&name, &PostParams::default(), &lease)
        .await
        .expect("the thief writes the lease");

    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run stops long before its 60 s soak ends")
        .expect("joined")
        .expect("the run ends without an engine error");
    assert_eq!(
        out.outcome,
        ripcord::journal::Outcome::Interrupted,
        "{out:?}"
    );
    let reason = out.reason.unwrap_or_default();
    assert!(reason.contains("lock was lost to r-thief"), "{reason}");
    // The thief's Lease is left as it wrote it.
    let after = api.get(&name).await.expect("lease read");
    assert_eq!(
        after.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("r-thief")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_the_api_cannot_give_fails_the_run_instead_of_calling_it_refused() {
    let sim = demo_sim().await;
    // Every Lease request fails with 500 (and only those): the lock can never be taken.
    sim.faults().set_error_resources(&["leases"]);
    sim.faults().set_error_rate(500, 1.0);
    let state = tempfile::tempdir().expect("tempdir");
    let out = run_patch_then_soak(sim.client(), state.path().to_path_buf())
        .await
        .expect("the run ends without an engine error");
    assert_eq!(out.outcome, ripcord::journal::Outcome::Failed, "{out:?}");
    let reason = out.reason.unwrap_or_default();
    assert!(reason.contains("cannot take the run's lock"), "{reason}");
    // Nothing was written to the Deployment.
    let writes: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.path.contains("/deployments/") && r.verb != "get" && r.verb != "list")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    sim.shutdown().await;
}

/// Issue 12: `--wait-lock` waits for a held lock to be released (long before it would
/// expire) and, without a wait, the refusal says who holds it and how long it has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_acquire_waiting_takes_the_lock_once_its_holder_releases_it() {
    let sim = sim().await;
    let client = sim.client();
    // Held for ten minutes unless released: only a release can let the waiter in.
    let holder = leases::acquire(
        &client,
        "default",
        "fleet",
        "r-first",
        Duration::from_secs(600),
        Duration::from_secs(5),
    )
    .await
    .expect("first holder");
    let refused = leases::acquire_waiting(
        &client,
        "default",
        "fleet",
        "r-second",
        Duration::from_secs(30),
        Duration::from_secs(5),
        Duration::ZERO,
    )
    .await;
    match refused {
        Err(LeaseError::Held {
            holder,
            expires_in_s,
            ..
        }) => {
            assert_eq!(holder, "r-first");
            assert!(expires_in_s > 500, "{expires_in_s}");
        }
        other => panic!("expected a refusal naming the holder: {:?}", other.err()),
    }
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            leases::acquire_waiting(
                &client,
                "default",
                "fleet",
                "r-second",
                Duration::from_secs(30),
                Duration::from_secs(5),
                Duration::from_secs(120),
            )
            .await
        })
    };
    holder.release().await.expect("released");
    let taken = tokio::time::timeout(Duration::from_secs(120), waiter)
        .await
        .expect("the waiter returned within its bound")
        .expect("task")
        .expect("the waiter took the lock");
    let lease = Api::<Lease>::namespaced(client.clone(), "default")
        .get(taken.lease())
        .await
        .expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("r-second")
    );
    taken.release().await.expect("released");
}

/// Every request on Leases of the `default` namespace after `from`: (method, path tail).
fn lease_traffic(sim: &SimCluster, from: u64) -> Vec<String> {
    sim.request_log()
        .into_iter()
        .filter(|r| r.seq > from && r.path.contains("/namespaces/default/leases"))
        .map(|r| format!("{} {}", r.method, r.status))
        .collect()
}

/// Issue 18: taking a free lock is one create (no GET first) and releasing it one delete
/// conditional on the resourceVersion this run wrote (no GET first); a held lock still
/// refuses (its create's 409 reads the Lease and names the holder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_acquire_and_release_make_one_request_each() {
    let sim = sim().await;
    let client = sim.client();
    let from = sim.request_log().last().map(|r| r.seq).unwrap_or(0);
    let guard = leases::acquire(
        &client,
        "default",
        "deployment/default/web",
        "r-first",
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await
    .expect("lock taken");
    assert_eq!(lease_traffic(&sim, from), ["POST 201"], "acquire");

    let from = sim.request_log().last().map(|r| r.seq).unwrap_or(0);
    let refused = leases::acquire(
        &client,
        "default",
        "deployment/default/web",
        "r-second",
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await;
    match refused {
        Err(LeaseError::Held { holder, .. }) => assert_eq!(holder, "r-first"),
        Err(other) => panic!("expected Held, got {other}"),
        Ok(_) => panic!("a held lock was taken"),
    }
    assert_eq!(
        lease_traffic(&sim, from),
        ["POST 409", "GET 200"],
        "a held lock: the create's conflict reads the holder"
    );

    let from = sim.request_log().last().map(|r| r.seq).unwrap_or(0);
    guard.release().await.expect("released");
    assert_eq!(lease_traffic(&sim, from), ["DELETE 200"], "release");
    assert!(stored_lease(&sim, &leases::lease_name("deployment/default/web")).is_none());
}

/// Issue 18: a release never deletes a Lease another run took over (the conditional delete
/// answers 409; the fallback reads it and leaves it to its new holder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_release_leaves_a_lease_another_run_took_over() {
    let sim = sim().await;
    let client = sim.client();
    let lock = "deployment/default/cart";
    let name = leases::lease_name(lock);
    let guard = leases::acquire(
        &client,
        "default",
        lock,
        "r-old",
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await
    .expect("lock taken");
    // Another run takes the Lease over (as after an expiry): a new holder and resourceVersion.
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    let mut lease = api.get(&name).await.expect("lease");
    let spec = lease.spec.as_mut().expect("spec");
    spec.holder_identity = Some("r-new".into());
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    api.replace(&name, &PostParams::default(), &lease)
        .await
        .expect("taken over");
    guard.release().await.expect("release answers");
    assert_eq!(
        stored_lease(&sim, &name).map(|(holder, _)| holder),
        Some("r-new".to_string()),
        "the new holder's Lease is still there"
    );
}

/// A CLI run locks its target in the target's namespace, a daemon run in the daemon's: the
/// two Leases differ, yet the second run must not overlap the first. It writes its own Lease,
/// finds the live one elsewhere, gives its own back and refuses (or waits), naming the holder;
/// once the first is released it takes the lock. Either order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_target_locked_in_two_namespaces_excludes_either_way() {
    let sim = sim().await;
    let client = sim.client();
    sim.store()
        .create(
            &kinds::namespaces(),
            serde_json::json!({"metadata": {"name": "ripcord"}}),
        )
        .expect("namespace");
    let lock = "deployment/default/web";
    let name = leases::lease_name(lock);
    for (first_ns, second_ns) in [("default", "ripcord"), ("ripcord", "default")] {
        let first = leases::acquire_waiting(
            &client,
            first_ns,
            lock,
            "r-first",
            Duration::from_secs(600),
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .await
        .expect("the first run locks");
        let refused = leases::acquire_waiting(
            &client,
            second_ns,
            lock,
            "r-second",
            Duration::from_secs(30),
            Duration::from_secs(5),
            Duration::from_millis(500),
        )
        .await;
        match refused {
            Err(LeaseError::Held {
                holder, namespace, ..
            }) => {
                assert_eq!(holder, "r-first");
                assert_eq!(namespace, first_ns);
            }
            Err(other) => panic!("expected Held, got {other}"),
            Ok(_) => panic!("{second_ns}: the lock held in {first_ns} was taken"),
        }
        // The second run's own Lease was given back, not left to block the first.
        let mine = Api::<Lease>::namespaced(client.clone(), second_ns)
            .get_opt(&name)
            .await
            .expect("read");
        assert!(
            mine.and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .is_none(),
            "the refused run still holds its own Lease"
        );
        first.release().await.expect("released");
        let second = leases::acquire_waiting(
            &client,
            second_ns,
            lock,
            "r-second",
            Duration::from_secs(30),
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .await
        .expect("taken once the first released it");
        second.release().await.expect("released");
    }
}
