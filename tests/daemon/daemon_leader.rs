//! Two daemons against one simulated cluster (real engine, real `kube::Client`, loopback
//! HTTP): only the leader runs; stopping the leader mid-run lets the other take over and
//! finish the run (same run id, re-planned from its `Run` resource) without repeating a
//! mutation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::daemon::config::AlertmanagerConfig;
use ripcord::daemon::server::{self, ElectionSettings, Settings, TokenSource};
use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TOKEN: &str = "leader-test-token";
/// The daemons' shared run key (their Secret, in the chart).
const RUN_KEY: &[u8] = b"leader-test-run-key-of-32-bytes-or-more";

struct Daemon {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), server::DaemonError>>,
}

async fn start_daemon(sim: &SimCluster, identity: &str, state_dir: &Path) -> Daemon {
    let settings = Settings {
        state_dir: state_dir.to_path_buf(),
        tokens: TokenSource::Fixed(vec![TOKEN.to_string()]),
        namespace: "default".into(),
        playbooks_dir: None,
        body_limit: 1024 * 1024,
        who: format!("daemon-{identity}"),
        call_timeout: Duration::from_secs(5),
        prometheus_url: None,
        notify: Vec::new(),
        notify_required: false,
        election: Some(ElectionSettings {
            lease_name: "ripcord-leader".into(),
            lease_duration: Duration::from_secs(3),
            identity: identity.to_string(),
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
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(settings, sim.client(), listener, rx));
    Daemon { addr, stop, task }
}

async fn get(d: &Daemon, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", d.addr))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn leads(d: &Daemon) -> bool {
    get(d, "/metrics")
        .await
        .1
        .lines()
        .any(|l| l.trim() == "ripcord_leader 1")
}

/// How many election rounds of `d` ended with `result` (`standby`, `leading`, `error`).
async fn election_rounds(d: &Daemon, result: &str) -> u64 {
    let prefix = format!("ripcord_leader_election_rounds_total{{result=\"{result}\"}} ");
    get(d, "/metrics")
        .await
        .1
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn run_view(d: &Daemon, id: &str) -> Option<Value> {
    let (status, body) = get(d, &format!("/v1/runs/{id}")).await;
    (status == 200).then(|| serde_json::from_str::<Value>(&body).unwrap()["run"].clone())
}

async fn wait_until<F, Fut>(what: &str, bound: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {bound:?} waiting for: {what}");
}

fn image(sim: &SimCluster) -> String {
    sim.store()
        .get(&kinds::deployments(), Some("shop"), "checkout")
        .and_then(|d| {
            d.pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn checkout_writes(sim: &SimCluster) -> usize {
    sim.request_log()
        .iter()
        .filter(|r| r.is_write() && r.path.contains("/deployments/checkout"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_runs_and_the_next_leader_finishes_without_repeating_issue13_locks_in_own_namespace()
 {
    // The demo, with slow pod readiness so the rollback's rollout takes a while.
    let text = include_str!("../data/scenarios/demo.yaml")
        .replace("podReadyDelaySeconds: 5", "podReadyDelaySeconds: 40");
    let scenario = Scenario::from_yaml("demo-slow", &text).expect("scenario");
    let sim = SimCluster::start(SimOptions {
        scenario,
        addr: None,
    })
    .await
    .expect("sim starts");
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .expect("Run CRD installed");
    wait_until("the bad release rolls out", Duration::from_secs(20), || {
        let img = image(&sim);
        async move { img.ends_with(":1.5.0") }
    })
    .await;

    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = start_daemon(&sim, "daemon-a", dir_a.path()).await;
    wait_until("a leads", Duration::from_secs(10), || leads(&a)).await;
    let b = start_daemon(&sim, "daemon-b", dir_b.path()).await;
    // b has tried to take the Lease several times (observable rounds, not a sleep) and stayed
    // on standby each time while a renews.
    wait_until("b's election rounds", Duration::from_secs(20), || async {
        election_rounds(&b, "standby").await >= 3
    })
    .await;
    assert_eq!(election_rounds(&b, "leading").await, 0);
    assert!(
        !leads(&b).await,
        "b must not lead while a renews: {}",
        get(&b, "/metrics").await.1
    );

    // A run through the leader.
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/runs", a.addr))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"playbook": "rollback", "params": {"namespace": "shop", "name": "checkout"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let run: Value = response.json().await.unwrap();
    let id = run["runId"].as_str().unwrap().to_string();

    // Mid-run: the rollback applied, the rollout still in progress.
    wait_until("the rollback is applied", Duration::from_secs(30), || {
        let (a, id) = (&a, id.clone());
        async move {
            run_view(a, &id)
                .await
                .is_some_and(|r| r["mutationsApplied"].as_u64().unwrap_or(0) >= 1)
        }
    })
    .await;
    let view = run_view(&a, &id).await.unwrap();
    assert_eq!(view["state"], "running", "stopped mid-run: {view}");
    assert!(
        image(&sim).ends_with(":1.4.2"),
        "rolled back: {}",
        image(&sim)
    );
    let (_, b_runs) = get(&b, "/v1/runs").await;
    assert!(!b_runs.contains(&id), "the follower runs nothing: {b_runs}");

    // Stop the leader gracefully: the run stops at a safe point, the lease is released.
    let writes_before = checkout_writes(&sim);
    a.stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(40), a.task)
        .await
        .expect("a shuts down in time")
        .unwrap()
        .expect("a shut down cleanly");

    // b takes over and finishes the same run.
    wait_until("b leads", Duration::from_secs(15), || leads(&b)).await;
    wait_until("b finishes the run", Duration::from_secs(90), || {
        let (b, id) = (&b, id.clone());
        async move {
            run_view(b, &id)
                .await
                .is_some_and(|r| r["state"] == "finished")
        }
    })
    .await;
    let view = run_view(&b, &id).await.unwrap();
    assert_eq!(view["outcome"], "succeeded", "{view}");
    assert_eq!(view["mutationsApplied"], 0, "nothing applied twice: {view}");
    assert_eq!(
        checkout_writes(&sim),
        writes_before,
        "no write to the Deployment after the takeover"
    );
    assert!(image(&sim).ends_with(":1.4.2"));
    // issue 13: the run's lock Lease lives in the daemon's namespace (`default` here), not in
    // the target's (`shop`): the daemon needs Lease writes nowhere else.
    let lease_writes: Vec<String> = sim
        .request_log()
        .iter()
        .filter(|r| r.is_write() && r.path.contains("/leases"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        lease_writes
            .iter()
            .any(|p| p.contains("/namespaces/default/leases/ripcord-lock-")),
        "{lease_writes:?}"
    );
    assert!(
        lease_writes
            .iter()
            .all(|p| p.contains("/namespaces/default/")),
        "Lease writes outside the daemon's namespace: {lease_writes:?}"
    );

    b.stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), b.task).await;
    sim.shutdown().await;
}

/// issue 13: a `Run` resource is not a command. One created by hand (anyone with
/// `create runs.ripcord.dev`) with no status, and one whose status carries a forged seal, are
/// both refused by the next leader — logged and counted — and nothing is cordoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_run_resource_created_by_hand_is_not_taken_over() {
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use ripcord::k8s::runs::{Run, RunSpec};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/scenarios/three-zones.yaml");
    let scenario = Scenario::load_file(&path).expect("scenario loads");
    let sim = SimCluster::start(SimOptions {
        scenario,
        addr: None,
    })
    .await
    .expect("sim starts");
    ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
        .await
        .expect("Run CRD installed");
    let api: Api<Run> = Api::namespaced(sim.client(), "default");
    let forged = |name: &str| {
        Run::new(
            name,
            RunSpec {
                playbook: "failout-zone".into(),
                params: [("zone".to_string(), "zone-b".to_string())].into(),
                trigger: "api".into(),
                who: "mallory".into(),
                incident: None,
            },
        )
    };
    let unsealed = "r-20261202-100000-beef";
    let bad_seal = "r-20261202-100000-f00d";
    for name in [unsealed, bad_seal] {
        api.create(&PostParams::default(), &forged(name))
            .await
            .expect("Run created");
    }
    // Someone who may even write statuses cannot make a seal without the key.
    let status = serde_json::json!({"status": {"phase": "Running", "seal": format!("v1:{}", "0".repeat(64))}});
    api.patch_status(bad_seal, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status written");

    let dir = tempfile::tempdir().unwrap();
    let d = start_daemon(&sim, "daemon-a", dir.path()).await;
    wait_until("both Runs are refused", Duration::from_secs(30), || {
        let d = &d;
        async move {
            let metrics = get(d, "/metrics").await.1;
            metrics.contains(r#"ripcord_takeovers_refused_total{reason="unsealed"} 1"#)
                && metrics.contains(r#"ripcord_takeovers_refused_total{reason="bad-seal"} 1"#)
        }
    })
    .await;
    let (_, runs) = get(&d, "/v1/runs").await;
    assert!(
        !runs.contains(unsealed) && !runs.contains(bad_seal),
        "nothing queued: {runs}"
    );
    let node_writes: Vec<_> = sim
        .request_log()
        .iter()
        .filter(|r| r.is_write() && r.path.contains("/nodes"))
        .map(|r| r.path.clone())
        .collect();
    assert!(node_writes.is_empty(), "nothing cordoned: {node_writes:?}");

    d.stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), d.task).await;
    sim.shutdown().await;
}
