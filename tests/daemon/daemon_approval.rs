//! An ACK given through the daemon's API shows where people look (real engine, real
//! `kube::Client`, the simulated cluster over loopback HTTP): a playbook with a
//! `gate.approval` step is posted, waits for its ACK, is approved with
//! `POST /v1/runs/{id}/approvals/{step}`, and the run's view (`GET /v1/runs/{id}`) then holds
//! the engine's `Approved` event — in the timeline and on the step, with who and where the gate
//! found the ACK — and so does the status page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::daemon::config::AlertmanagerConfig;
use ripcord::daemon::server::{self, Settings, TokenSource};
use ripcord::sim::scenario::Scenario;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TOKEN: &str = "approval-test-token";
/// Another person's token: may approve nothing as ann.
const MALLORY_TOKEN: &str = "mallory-test-token";

const PLAYBOOK: &str = "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  \
    name: hand-off\nspec:\n  steps:\n    - name: ack\n      action: gate.approval\n      \
    with:\n        approvers: [ann, cho]\n        message: take over?\n      timeout: 2m\n";

async fn start_sim() -> SimCluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenarios/three-zones.yaml");
    let scenario = Scenario::load_file(&path).expect("scenario loads");
    SimCluster::start(SimOptions {
        scenario,
        addr: None,
    })
    .await
    .expect("sim starts")
}

/// The daemon's settings for these tests: tokens for ann (may do anything) and mallory (named
/// only), the given notification channels.
fn daemon_settings(
    dir: &Path,
    notify: Vec<ripcord::playbook::model::NotifyChannel>,
    notify_required: bool,
) -> Settings {
    Settings {
        state_dir: dir.join("state"),
        tokens: TokenSource::Fixed(vec![
            format!("ann {TOKEN}"),
            format!("mallory {MALLORY_TOKEN}"),
        ]),
        namespace: "shop".into(),
        playbooks_dir: None,
        body_limit: 1024 * 1024,
        who: "ripcord-daemon".into(),
        call_timeout: Duration::from_secs(5),
        prometheus_url: None,
        notify,
        notify_required,
        election: None,
        alertmanager: AlertmanagerConfig::default(),
        drills: Vec::new(),
        public_status_page: false,
        step_kubeconfig: None,
        trust: server::TrustSettings {
            token_scopes: vec![ripcord::daemon::auth::TokenScope::unrestricted("ann")],
            ..Default::default()
        },
    }
}

/// GETs `path` from the daemon as JSON, bounded.
async fn get_json(http: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = http
        .get(format!("http://{addr}{path}"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("GET answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `GET /v1/runs/{id}` (bounded) until `done` holds for the run's view; returns it.
async fn wait_for_run(
    http: &reqwest::Client,
    addr: SocketAddr,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let (status, view) = get_json(http, addr, &format!("/v1/runs/{id}")).await;
        if status == 200 {
            if done(&view["run"]) {
                return view["run"].clone();
            }
            last = view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id}: {what} did not happen in time; last view: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_ack_shows_in_the_run_timeline_step_and_status_page_issue13_as_the_token_name() {
    let sim = start_sim().await;
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .expect("Run CRD installed");
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = daemon_settings(dir.path(), Vec::new(), false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("address");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(settings, sim.client(), listener, rx));
    let http = reqwest::Client::new();

    // Post the playbook and wait until its gate asks for the ACK.
    let response = http
        .post(format!("http://{addr}/v1/runs"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .json(&serde_json::json!({"body": PLAYBOOK}))
        .send()
        .await
        .expect("POST /v1/runs");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 202, "{body}");
    let id = body["runId"].as_str().expect("run id").to_string();
    let waiting = wait_for_run(&http, addr, &id, "awaiting the ACK", |run| {
        run["pendingApprovals"][0]["step"] == "ack"
    })
    .await;
    assert_eq!(waiting["steps"][0]["state"], "awaiting-ack", "{waiting}");
    assert!(
        waiting["steps"][0].get("approval").is_none(),
        "no approval before the ACK: {waiting}"
    );

    // issue 13: mallory's token claiming to be ann is refused, and so is mallory herself (not
    // an approver); the step still waits.
    for body in [
        serde_json::json!({"by": "ann", "comment": "trust me"}),
        serde_json::json!({}),
    ] {
        let response = http
            .post(format!("http://{addr}/v1/runs/{id}/approvals/ack"))
            .bearer_auth(MALLORY_TOKEN)
            .timeout(Duration::from_secs(5))
            .json(&body)
            .send()
            .await
            .expect("POST approval");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("JSON answer");
        assert_eq!(status, 403, "{body} → {answer}");
    }
    let (_, still) = get_json(&http, addr, &format!("/v1/runs/{id}")).await;
    assert_eq!(still["run"]["steps"][0]["state"], "awaiting-ack", "{still}");

    // ACK through the API.
    let response = http
        .post(format!("http://{addr}/v1/runs/{id}/approvals/ack"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .json(&serde_json::json!({"by": "ann", "comment": "mine"}))
        .send()
        .await
        .expect("POST approval");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{body}");

    let run = wait_for_run(&http, addr, &id, "finishing", |run| {
        run["state"] == "finished"
    })
    .await;
    assert_eq!(run["outcome"], "succeeded", "{run}");
    // The engine's event: who, and where the gate found the ACK (the API writes the file).
    let texts: Vec<&str> = run["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"step ack: approved by ann (via file)"),
        "the timeline shows who approved: {texts:?}"
    );
    let approval = &run["steps"][0]["approval"];
    assert_eq!(approval["by"], "ann", "{run}");
    assert_eq!(approval["source"], "file", "{run}");
    assert!(
        approval["at"].as_str().is_some_and(|at| !at.is_empty()),
        "{run}"
    );
    assert_eq!(run["steps"][0]["state"], "verified", "{run}");

    // The status page lists it with the (finished) run's steps.
    let page = http
        .get(format!("http://{addr}/"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("page text");
    assert!(
        page.contains("approved by <b>ann</b>") && page.contains("(via file)"),
        "the status page shows who approved: {page}"
    );

    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
    sim.shutdown().await;
}

/// Issue 16: `notify.required` in the daemon's config holds for its runs too. The only channel
/// is a webhook nobody answers: the run is refused before its first mutation, says why, and
/// the node it would have cordoned stays schedulable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_the_daemon_refuses_a_run_nobody_was_told_about_when_notify_is_required() {
    let sim = start_sim().await;
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .expect("Run CRD installed");
    // A port that refuses connections: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/hook", closed.local_addr().expect("addr"));
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    let channel = ripcord::playbook::model::NotifyChannel {
        name: "oncall".into(),
        channel_type: ripcord::playbook::model::ChannelType::Webhook,
        url: Some(dead_url),
        url_from_env: None,
    };
    let settings = daemon_settings(dir.path(), vec![channel], true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("address");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(settings, sim.client(), listener, rx));
    let http = reqwest::Client::new();

    let playbook = "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  \
        name: cordon-one\nspec:\n  steps:\n    - name: cordon\n      action: node.cordon\n      \
        with: {names: [zone-c-node-1]}\n";
    let response = http
        .post(format!("http://{addr}/v1/runs"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .json(&serde_json::json!({"body": playbook}))
        .send()
        .await
        .expect("POST /v1/runs");
    assert_eq!(response.status().as_u16(), 202);
    let id = response.json::<Value>().await.expect("json")["runId"]
        .as_str()
        .expect("run id")
        .to_string();
    let run = wait_for_run(&http, addr, &id, "finished", |run| {
        run["state"] == "finished"
    })
    .await;
    assert_eq!(run["outcome"], "refused", "{run}");
    assert!(
        run["reason"].as_str().unwrap_or_default().contains("notif"),
        "the refusal says nobody was told: {run}"
    );
    let node = sim
        .store()
        .get(&ripcord::sim::store::kinds::nodes(), None, "zone-c-node-1")
        .expect("node exists");
    assert_ne!(node["spec"]["unschedulable"], Value::Bool(true), "{node}");

    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    sim.shutdown().await;
}
