//! Issue 17: Alertmanager de-duplication and cooldowns survive a daemon restart (they are
//! claims on Leases in the cluster, not only memory), and alert-triggered runs attach to an
//! incident opened per alert group. The simulated cluster over loopback with the real
//! `kube::Client`; the daemon's runs go through the fake executor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::daemon_support as support;

use axum::http::StatusCode;
use ripcord::daemon::alerts::{AlertRouter, alert_lease_name};
use ripcord::daemon::clock::Clock;
use ripcord::daemon::config::{AlertRule, AlertmanagerConfig};
use ripcord::playbook::Duration as PbDuration;
use ripcord::sim::scenario::Scenario;
use ripcord::sim::{SimCluster, SimOptions};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::{FakeExecutor, Harness, TOKEN, alert_payload, call, eventually, harness};

fn rules() -> AlertmanagerConfig {
    AlertmanagerConfig {
        cooldown: PbDuration(Duration::from_secs(600)),
        max_runs_per_minute: 10,
        rules: vec![AlertRule {
            name: "high-error-rate".into(),
            matchers: BTreeMap::from([("alertname".to_string(), "HighErrorRate".to_string())]),
            playbook: "rollback".into(),
            params: BTreeMap::from([
                ("namespace".to_string(), "$(labels.namespace)".to_string()),
                ("name".to_string(), "$(labels.deployment)".to_string()),
            ]),
            cooldown: None,
        }],
    }
}

/// A daemon (fresh memory) whose alert claims live in the simulated cluster.
fn daemon(sim: &SimCluster) -> Harness {
    let mut h = harness(FakeExecutor::default(), rules(), Clock::System);
    h.state.alerts = Arc::new(AlertRouter::new(rules()).with_cluster(
        sim.client(),
        "default".into(),
        Duration::from_secs(5),
    ));
    h
}

async fn fire(h: &Harness, deployment: &str) -> serde_json::Value {
    let payload = alert_payload(
        "firing",
        &[
            ("alertname", "HighErrorRate"),
            ("deployment", deployment),
            ("namespace", "shop"),
            ("severity", "page"),
        ],
    );
    let (status, json) = call(
        &h.state,
        "POST",
        "/v1/alertmanager",
        Some(TOKEN),
        Some(payload),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["decisions"][0].clone()
}

async fn sim() -> SimCluster {
    SimCluster::start(SimOptions {
        scenario: Scenario::empty(),
        addr: None,
    })
    .await
    .expect("sim starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue17_alert_cooldown_survives_a_daemon_restart() {
    let sim = sim().await;
    let first = daemon(&sim);
    let decision = fire(&first, "checkout").await;
    assert_eq!(decision["decision"], "ran", "{decision}");
    let run = decision["runId"].as_str().unwrap().to_string();
    let runs = first.state.runs.clone();
    eventually("the run finished", || {
        runs.get(&run).is_some_and(|v| !v.state.is_active())
    })
    .await;
    // The claim is in the cluster, held by the run.
    let lease = alert_lease_name("rollback(name=checkout,namespace=shop)");
    let holder = ripcord::k8s::leases::current_holder(
        &sim.client(),
        "default",
        &lease,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(holder.as_deref(), Some(run.as_str()));

    // The daemon restarts (or another replica leads): its memory is empty, the cluster is not.
    drop(first);
    let second = daemon(&sim);
    let decision = fire(&second, "checkout").await;
    assert_eq!(decision["decision"], "deduplicated", "{decision}");
    assert_eq!(decision["runId"], run.as_str(), "{decision}");
    assert!(
        second.executor.executed().is_empty(),
        "nothing re-ran inside the cooldown"
    );
    // Another target is not held back.
    let decision = fire(&second, "cart").await;
    assert_eq!(decision["decision"], "ran", "{decision}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue17_alert_runs_attach_to_one_incident_per_alert_group() {
    let sim = sim().await;
    let h = daemon(&sim);
    let a = fire(&h, "checkout").await;
    let b = fire(&h, "cart").await;
    let incident_of = |d: &serde_json::Value| {
        h.state
            .runs
            .get(d["runId"].as_str().unwrap())
            .and_then(|v| v.incident)
            .expect("an incident")
    };
    let id = incident_of(&a);
    assert_eq!(id, incident_of(&b), "one incident per alert group");
    assert!(id.starts_with("am-HighErrorRate-"), "{id}");
    assert!(id.ends_with("-20261125T1000Z"), "{id}");
    let incident = ripcord::cleanup::incident::load(h.dir.path(), &id).unwrap();
    assert_eq!(incident.opened_at.to_string(), "2026-11-25T10:00:00Z");
    assert_eq!(incident.severity.as_deref(), Some("page"));
    let impact = incident.impact.unwrap();
    assert!(
        impact.contains("alertname=HighErrorRate") && impact.contains("deployment=checkout"),
        "{impact}"
    );
}

/// A failed delivery is counted once, where it happens (`notify`), and the daemon serves that
/// counter: `ripcord_notifications_total{channel, outcome="failed"}` (there is no second metric
/// derived from the engine's warning text).
#[tokio::test]
async fn notification_failures_are_counted_once_per_channel() {
    let h = harness(FakeExecutor::default(), rules(), Clock::System);
    // A port nobody listens on: the delivery fails with "connection refused".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let channel = "issue16-counted-once";
    let notifier = ripcord::notify::Notifier::new(
        vec![ripcord::notify::ChannelConfig {
            name: channel.into(),
            kind: ripcord::notify::ChannelKind::Webhook,
            url,
        }],
        reqwest::Client::new(),
    );
    let deliveries = notifier
        .send(&ripcord::notify::Notification {
            run_id: "r-test".into(),
            playbook: "rollback".into(),
            phase: ripcord::notify::Phase::Started,
            title: "about to roll back".into(),
            text: String::new(),
            fields: BTreeMap::new(),
        })
        .await;
    assert!(!deliveries[0].ok, "{deliveries:?}");
    let text = h.state.metrics.render();
    assert!(
        text.contains(&format!(
            r#"ripcord_notifications_total{{channel="{channel}",outcome="failed"}} 1"#
        )),
        "{text}"
    );
    assert!(!text.contains("notification_failures"), "{text}");
}

/// Issue 18: an alert's claim on its target is one request when the target is new (create
/// first, no GET before it); a claim inside the cooldown names the holder without a second
/// read; an expired claim is taken over with a conditional replace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_an_alert_claim_is_one_request_for_a_new_target() {
    use ripcord::k8s::leases::{Claim, claim};
    let sim = sim().await;
    let client = sim.client();
    let timeout = Duration::from_secs(5);
    let lease_requests = |from: usize| {
        sim.request_log()[from..]
            .iter()
            .filter(|r| r.path.contains("/leases"))
            .map(|r| format!("{} {}", r.method, r.status))
            .collect::<Vec<_>>()
    };

    let before = sim.request_log().len();
    let taken = claim(
        &client,
        "default",
        "claim-a",
        "r-1",
        Duration::from_secs(600),
        timeout,
    )
    .await
    .unwrap();
    assert_eq!(taken, Claim::Taken);
    assert_eq!(lease_requests(before), ["POST 201"]);

    let before = sim.request_log().len();
    let held = claim(
        &client,
        "default",
        "claim-a",
        "r-2",
        Duration::from_secs(600),
        timeout,
    )
    .await
    .unwrap();
    assert_eq!(held, Claim::Held(Some("r-1".into())));
    assert_eq!(lease_requests(before), ["POST 409", "GET 200"]);

    // A claim whose holder stopped renewing long ago is taken over.
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), "default");
    let stale: k8s_openapi::api::coordination::v1::Lease =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "claim-b", "namespace": "default"},
            "spec": {"holderIdentity": "r-old", "leaseDurationSeconds": 60,
                     "acquireTime": "2020-01-01T00:00:00.000000Z",
                     "renewTime": "2020-01-01T00:00:00.000000Z"}
        }))
        .unwrap();
    api.create(&Default::default(), &stale).await.unwrap();
    let before = sim.request_log().len();
    let taken = claim(
        &client,
        "default",
        "claim-b",
        "r-3",
        Duration::from_secs(600),
        timeout,
    )
    .await
    .unwrap();
    assert_eq!(taken, Claim::Taken);
    assert_eq!(lease_requests(before), ["POST 409", "GET 200", "PUT 200"]);
    let holder = ripcord::k8s::leases::current_holder(&client, "default", "claim-b", timeout)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("r-3"));
}
