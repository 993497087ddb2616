//! Per-step kubeconfig contexts in the daemon (real engine, real `kube::Client`, loopback
//! HTTP): a daemon given a kubeconfig with two contexts runs a playbook posted to its API whose
//! step names the second context, and the mutation lands on the second cluster only; a daemon
//! without one refuses such a step before any write, saying how to enable it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::daemon::config::AlertmanagerConfig;
use ripcord::daemon::server::{self, Settings, TokenSource};
use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TOKEN: &str = "contexts-test-token";

const COLO_PLAYBOOK: &str = "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  \
    name: colo\nspec:\n  steps:\n    - name: cordon-colo\n      action: node.cordon\n      \
    context: colo-b\n      with:\n        names: [zone-c-node-1]\n";

struct Daemon {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), server::DaemonError>>,
}

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

async fn start_daemon(
    main: &SimCluster,
    state_dir: &Path,
    step_kubeconfig: Option<PathBuf>,
) -> Daemon {
    let settings = Settings {
        state_dir: state_dir.to_path_buf(),
        tokens: TokenSource::Fixed(vec![TOKEN.to_string()]),
        namespace: "default".into(),
        playbooks_dir: None,
        body_limit: 1024 * 1024,
        who: "ripcord-daemon".into(),
        call_timeout: Duration::from_secs(5),
        prometheus_url: None,
        notify: Vec::new(),
        notify_required: false,
        election: None,
        alertmanager: AlertmanagerConfig::default(),
        drills: Vec::new(),
        public_status_page: false,
        step_kubeconfig,
        trust: server::TrustSettings {
            token_scopes: vec![ripcord::daemon::auth::TokenScope::unrestricted("api")],
            ..Default::default()
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("address");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(settings, main.client(), listener, rx));
    Daemon { addr, stop, task }
}

/// Posts the colo playbook and waits (bounded) for the run to finish; returns its view.
async fn run_colo_playbook(d: &Daemon) -> Value {
    let http = reqwest::Client::new();
    let response = http
        .post(format!("http://{}/v1/runs", d.addr))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .json(&serde_json::json!({"body": COLO_PLAYBOOK}))
        .send()
        .await
        .expect("POST /v1/runs");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 202, "{body}");
    let id = body["runId"].as_str().expect("run id").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let response = http
            .get(format!("http://{}/v1/runs/{id}", d.addr))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("GET /v1/runs/{id}");
        if response.status().as_u16() == 200 {
            let view: Value = response.json().await.expect("JSON answer");
            if view["run"]["state"] == "finished" {
                return view["run"].clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not finish in time");
}

fn cordoned(sim: &SimCluster, node: &str) -> bool {
    sim.store()
        .get(&kinds::nodes(), None, node)
        .is_some_and(|n| n["spec"]["unschedulable"] == Value::Bool(true))
}

async fn stop(d: Daemon) {
    d.stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), d.task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue7_a_daemon_step_with_a_context_acts_on_that_cluster() {
    let main = start_sim().await;
    let colo = start_sim().await;
    ripcord::k8s::runs::install_crd(&main.client(), Duration::from_secs(5))
        .await
        .expect("Run CRD installed");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: main\n  cluster:\n    server: {}\n\
             - name: colo\n  cluster:\n    server: {}\ncontexts:\n- name: main\n  context:\n    \
             cluster: main\n    user: u\n    namespace: shop\n- name: colo-b\n  context:\n    \
             cluster: colo\n    user: u\n    namespace: shop\ncurrent-context: main\nusers:\n\
             - name: u\n  user: {{}}\n",
            main.url(),
            colo.url()
        ),
    )
    .expect("kubeconfig written");

    // Without a step kubeconfig the step is refused, nothing is written anywhere.
    let refusing = start_daemon(&main, &dir.path().join("state-a"), None).await;
    let view = run_colo_playbook(&refusing).await;
    stop(refusing).await;
    assert_eq!(view["outcome"], "failed", "{view}");
    assert!(
        view.to_string()
            .contains("per-step contexts are not enabled"),
        "says why: {view}"
    );
    assert!(
        view.to_string().contains("stepKubeconfig")
            && view.to_string().contains("--step-kubeconfig"),
        "says how to enable them in the daemon: {view}"
    );
    assert!(!cordoned(&colo, "zone-c-node-1") && !cordoned(&main, "zone-c-node-1"));

    // With it, the mutation lands on the colo's cluster only.
    let daemon = start_daemon(&main, &dir.path().join("state-b"), Some(kubeconfig)).await;
    let view = run_colo_playbook(&daemon).await;
    stop(daemon).await;
    assert_eq!(view["outcome"], "succeeded", "{view}");
    assert_eq!(view["mutationsApplied"], 1, "{view}");
    assert!(cordoned(&colo, "zone-c-node-1"), "cordoned in the colo");
    assert!(
        !cordoned(&main, "zone-c-node-1"),
        "the main cluster is untouched"
    );

    main.shutdown().await;
    colo.shutdown().await;
}
