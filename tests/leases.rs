//! Per-target locks (`k8s::leases`) against the simulated cluster: transient API errors are
//! retried, and a refusal always names a real holder (regressions found by the fault campaign,
//! issue 8).

use ripcord::k8s::leases::{self, LeaseError};
use ripcord::sim::scenario::Scenario;
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
