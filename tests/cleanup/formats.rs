//! Issue 14: versioned on-disk and in-cluster formats. The journals, `Run` resources and the
//! incident file checked in under `tests/data/formats/v1/` were written by ripcord before the
//! formats carried a version (see the README there); they must still load, resume and clean up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::cleanup_support;

use cleanup_support::*;
use ripcord::sim::store::kinds;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The key the fixture daemon sealed its `Run` with (its Secret, in the chart).
const RUN_KEY: &[u8] = b"formats-fixture-run-key-of-32-bytes-or-more";

const CORDON_PLAYBOOK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: cordon-one
spec:
  steps:
    - name: cordon
      action: node.cordon
      with: {names: [zone-b-node-1]}
"#;

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats")
}

// === writing the fixtures ===

/// The `Run` resource named `run_id` as the sim stores it (any namespace).
fn run_resource(h: &Harness, run_id: &str) -> Value {
    let rt = h
        .sim
        .store()
        .resource_types()
        .into_iter()
        .find(|rt| rt.group == "ripcord.dev" && rt.plural == "runs")
        .expect("runs.ripcord.dev registered");
    let (runs, _) = h.sim.store().list(&rt, None);
    runs.into_iter()
        .find(|r| r["metadata"]["name"] == run_id)
        .expect("Run mirrored")
}

fn save(out: &Path, name: &str, state_dir: &Path, run_id: &str, extra: &[(&str, Value)]) {
    let dir = out.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        ripcord::journal::journal_path(state_dir, run_id),
        dir.join("journal.jsonl"),
    )
    .unwrap();
    for (file, value) in extra {
        std::fs::write(
            dir.join(file),
            serde_json::to_string_pretty(value).unwrap() + "\n",
        )
        .unwrap();
    }
}

/// Writes the fixtures of the formats this build writes into `$RIPCORD_FIXTURES_OUT` (see
/// `tests/data/formats/README.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes fixtures; run by hand"]
async fn write_fixtures() {
    let out = PathBuf::from(std::env::var("RIPCORD_FIXTURES_OUT").expect("RIPCORD_FIXTURES_OUT"));
    std::fs::create_dir_all(&out).unwrap();
    let timeout = Duration::from_secs(5);

    // A finished rollback of the bad checkout release, with an incident.
    {
        let h = Harness::start().await;
        ripcord::k8s::runs::install_crd(&h.sim.client(), timeout)
            .await
            .unwrap();
        let o = h
            .ripcord(&[
                "rollback",
                "deployment/checkout",
                "-n",
                "shop",
                "--yes",
                "--incident",
                "INC-4242",
            ])
            .await;
        assert_eq!(o.status.code(), Some(0));
        let run_id = run_id_of(&o);
        for args in [
            vec![
                "incident",
                "update",
                "INC-4242",
                "--severity",
                "SEV2",
                "--service",
                "checkout",
                "--impact",
                "checkout errors for 12 minutes",
                "--root-cause",
                "release 1.5.0 never became ready",
            ],
            vec!["incident", "note", "INC-4242", "rolled back to 1.4.2"],
            vec![
                "incident",
                "action",
                "add",
                "INC-4242",
                "add a readiness gate to the pipeline",
                "--owner",
                "ann",
            ],
            vec!["incident", "handoff", "INC-4242", "--to", "bob"],
            vec!["incident", "ack", "INC-4242", "--as", "bob"],
            vec!["incident", "close", "INC-4242"],
        ] {
            let o = h.ripcord(&args).await;
            assert_eq!(o.status.code(), Some(0), "{args:?}");
        }
        let incident: Value = serde_json::from_slice(
            &std::fs::read(h.state_dir().join("incidents/INC-4242.json")).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(out.join("incidents")).unwrap();
        std::fs::write(
            out.join("incidents/INC-4242.json"),
            serde_json::to_string_pretty(&incident).unwrap() + "\n",
        )
        .unwrap();
        let run = run_resource(&h, &run_id);
        save(
            &out,
            "rollback-succeeded",
            &h.state_dir(),
            &run_id,
            &[("run.json", run)],
        );
        h.sim.shutdown().await;
    }

    // A zone fail-out and a rolling restart that died after their first write (resumable).
    for (name, args) in [
        (
            "failout-interrupted",
            vec!["failout", "zone/zone-b", "--yes"],
        ),
        (
            "restart-interrupted",
            vec!["restart", "deployment/api", "-n", "shop", "--yes"],
        ),
    ] {
        let h = Harness::start_calm().await;
        ripcord::k8s::runs::install_crd(&h.sim.client(), timeout)
            .await
            .unwrap();
        let o = h
            .ripcord_with(
                &args,
                &h.state_dir(),
                &[(ripcord::engine::CRASH_HOOK_ENV, "after-apply")],
            )
            .await;
        assert_eq!(o.status.code(), Some(137), "{name}");
        let runs = std::fs::read_dir(h.state_dir().join("runs")).unwrap();
        let run_id = runs
            .flatten()
            .next()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .to_string();
        let run = run_resource(&h, &run_id);
        save(&out, name, &h.state_dir(), &run_id, &[("run.json", run)]);
        h.sim.shutdown().await;
    }

    // A finished cordon that cleanup can revert, with the node as the run left it.
    {
        let h = Harness::start_calm().await;
        ripcord::k8s::runs::install_crd(&h.sim.client(), timeout)
            .await
            .unwrap();
        let playbook = h.write("cordon.yaml", CORDON_PLAYBOOK);
        let o = h
            .ripcord(&["run", playbook.to_str().unwrap(), "--yes", "-n", "shop"])
            .await;
        assert_eq!(o.status.code(), Some(0));
        let run_id = run_id_of(&o);
        let run = run_resource(&h, &run_id);
        let node = h
            .sim
            .store()
            .get(&kinds::nodes(), None, "zone-b-node-1")
            .unwrap();
        save(
            &out,
            "cordon-succeeded",
            &h.state_dir(),
            &run_id,
            &[("run.json", run), ("node-after.json", node)],
        );
        h.sim.shutdown().await;
    }

    // A daemon's rollback, stopped mid-run by the daemon's shutdown: a sealed, unfinished Run
    // another daemon takes over.
    daemon_fixture(&out).await;

    // A daemon's rollback, stopped mid-run because the daemon lost leadership (another
    // holder took the leader Lease): the next leader takes it over.
    daemon_lost_leadership_fixture(&out).await;
}

type DaemonTask = tokio::task::JoinHandle<Result<(), ripcord::daemon::server::DaemonError>>;

/// A leader-electing daemon holding [`RUN_KEY`], on the harness's sim.
async fn start_daemon(
    h: &Harness,
    state_dir: &Path,
    identity: &str,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    DaemonTask,
) {
    use ripcord::daemon::config::AlertmanagerConfig;
    use ripcord::daemon::server::{self, ElectionSettings, Settings, TokenSource};
    let settings = Settings {
        state_dir: state_dir.to_path_buf(),
        tokens: TokenSource::Fixed(vec!["fixture-token".to_string()]),
        namespace: "default".into(),
        playbooks_dir: None,
        body_limit: 1024 * 1024,
        who: identity.to_string(),
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
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server::serve(settings, h.sim.client(), listener, rx));
    (addr, stop, task)
}

async fn daemon_metrics(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    http.get(format!("http://{addr}/metrics"))
        .bearer_auth("fixture-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn wait_for_leader(http: &reqwest::Client, addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !daemon_metrics(http, addr)
        .await
        .lines()
        .any(|l| l.trim() == "ripcord_leader 1")
    {
        assert!(std::time::Instant::now() < deadline, "daemon never led");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo cluster (its bad checkout release rolling out), `podReadyDelaySeconds` changed.
async fn demo_harness(pod_ready_delay: u32) -> Harness {
    let text = include_str!("../data/scenarios/demo.yaml").replace(
        "podReadyDelaySeconds: 5",
        &format!("podReadyDelaySeconds: {pod_ready_delay}"),
    );
    let scenario = ripcord::sim::scenario::Scenario::from_yaml("demo-slow", &text).unwrap();
    let sim = ripcord::sim::SimCluster::start(ripcord::sim::SimOptions {
        scenario,
        addr: None,
    })
    .await
    .unwrap();
    let h = Harness {
        sim,
        dir: tempfile::tempdir().unwrap(),
    };
    h.wait_until("the bad release rolls out", Duration::from_secs(20), |h| {
        h.deployment("checkout")
            .pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str)
            .is_some_and(|i| i.ends_with(":1.5.0"))
    })
    .await;
    h
}

async fn daemon_fixture(out: &Path) {
    let h = demo_harness(40).await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .unwrap();
    let state_dir = h.dir.path().join("daemon-state");
    let (addr, stop, task) = start_daemon(&h, &state_dir, "daemon-a").await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, addr).await;
    let response = http
        .post(format!("http://{addr}/v1/runs"))
        .bearer_auth("fixture-token")
        .json(&serde_json::json!({"playbook": "rollback", "params": {"namespace": "shop", "name": "checkout"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let run: Value = response.json().await.unwrap();
    let run_id = run["runId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view: Value = http
            .get(format!("http://{addr}/v1/runs/{run_id}"))
            .bearer_auth("fixture-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["run"]["mutationsApplied"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(40), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let run = run_resource(&h, &run_id);
    save(
        out,
        "daemon-rollback-interrupted",
        &state_dir,
        &run_id,
        &[("run.json", run)],
    );
    h.sim.shutdown().await;
}

/// On a leading daemon `daemon-a` (state in `state_dir`), starts a rollback, waits for its
/// first write, then hands the leader Lease to another holder (for an hour): the daemon steps
/// down and stops its run (lost leadership). Returns the run id once its `Run` says
/// `interrupted`, the daemon shut down.
async fn stop_a_daemon_run_by_lost_leadership(h: &Harness, state_dir: &Path) -> String {
    let (addr, stop, task) = start_daemon(h, state_dir, "daemon-a").await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, addr).await;
    let response = http
        .post(format!("http://{addr}/v1/runs"))
        .bearer_auth("fixture-token")
        .json(&serde_json::json!({"playbook": "rollback", "params": {"namespace": "shop", "name": "checkout"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let run: Value = response.json().await.unwrap();
    let run_id = run["runId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view: Value = http
            .get(format!("http://{addr}/v1/runs/{run_id}"))
            .bearer_auth("fixture-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["run"]["mutationsApplied"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.by_hand(
        &kinds::leases(),
        Some("default"),
        "ripcord-leader",
        |lease| {
            lease["spec"]["holderIdentity"] = "daemon-elsewhere".into();
            lease["spec"]["leaseDurationSeconds"] = 3600.into();
            lease["spec"]["renewTime"] = jiff::Timestamp::now().to_string().into();
        },
    );
    h.wait_until(
        "the run stopped for lost leadership",
        Duration::from_secs(30),
        |h| run_resource(h, &run_id)["status"]["outcome"] == "interrupted",
    )
    .await;
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(40), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    run_id
}

/// Frees the leader Lease another holder took (as if that holder had gone).
fn free_leader_lease(h: &Harness) {
    h.by_hand(
        &kinds::leases(),
        Some("default"),
        "ripcord-leader",
        |lease| {
            if let Some(spec) = lease["spec"].as_object_mut() {
                spec.remove("holderIdentity");
                spec.remove("renewTime");
            }
        },
    );
}

/// A daemon's rollback stopped because the daemon lost leadership (the `v2/` fixture of it).
async fn daemon_lost_leadership_fixture(out: &Path) {
    let h = demo_harness(40).await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .unwrap();
    let state_dir = h.dir.path().join("daemon-state");
    let run_id = stop_a_daemon_run_by_lost_leadership(&h, &state_dir).await;
    let run = run_resource(&h, &run_id);
    save(
        out,
        "daemon-rollback-lost-leadership",
        &state_dir,
        &run_id,
        &[("run.json", run)],
    );
    h.sim.shutdown().await;
}

// === reading the v1 fixtures ===

/// A `Run` status format version newer than this build reads.
fn newer_run_status() -> u32 {
    ripcord::journal::Format::RunStatus.current().get() + 1
}

const V1: [&str; 5] = [
    "rollback-succeeded",
    "failout-interrupted",
    "restart-interrupted",
    "cordon-succeeded",
    "daemon-rollback-interrupted",
];

fn v1(name: &str) -> PathBuf {
    fixtures_root().join("v1").join(name)
}

/// A fixture folder: `v1/…` unless named with its version (`v2/cordon-succeeded`).
fn fixture(name: &str) -> PathBuf {
    if name.starts_with("v2/") {
        fixtures_root().join(name)
    } else {
        v1(name)
    }
}

fn fixture_json(name: &str, file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name).join(file)).unwrap()).unwrap()
}

/// Copies a fixture's journal into `state_dir`; returns its run id.
fn install_journal(name: &str, state_dir: &Path) -> String {
    let (entries, _) = ripcord::journal::read(&fixture(name).join("journal.jsonl")).unwrap();
    let run_id = match &entries[0].record {
        ripcord::journal::Record::RunStarted { run_id, .. } => run_id.clone(),
        other => panic!("first record {other:?}"),
    };
    let dir = ripcord::journal::run_dir(state_dir, &run_id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixture(name).join("journal.jsonl"),
        dir.join(ripcord::journal::JOURNAL_FILE),
    )
    .unwrap();
    run_id
}

/// Creates a fixture's `Run` resource in the sim (server-set metadata dropped), its status
/// written through the status subresource as the engine writes it; `status` overrides it.
async fn install_run(h: &Harness, name: &str, status: Option<Value>) -> (String, String) {
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let mut run = fixture_json(name, "run.json");
    let status = status.unwrap_or_else(|| run["status"].clone());
    let namespace = run["metadata"]["namespace"].as_str().unwrap().to_string();
    let run_id = run["metadata"]["name"].as_str().unwrap().to_string();
    let meta = run["metadata"].as_object_mut().unwrap();
    for server_set in [
        "uid",
        "resourceVersion",
        "managedFields",
        "creationTimestamp",
        "generation",
    ] {
        meta.remove(server_set);
    }
    run.as_object_mut().unwrap().remove("status");
    let typed: ripcord::k8s::runs::Run = serde_json::from_value(run).unwrap();
    let api: Api<ripcord::k8s::runs::Run> = Api::namespaced(h.sim.client(), &namespace);
    api.create(&PostParams::default(), &typed).await.unwrap();
    api.patch_status(
        &run_id,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({ "status": status })),
    )
    .await
    .unwrap();
    (namespace, run_id)
}

/// Puts a node back as the fixture's run left it (cordoned, with ripcord's marks).
fn restore_node(h: &Harness, name: &str) {
    let after = fixture_json(name, "node-after.json");
    let node = after["metadata"]["name"].as_str().unwrap().to_string();
    h.by_hand(&kinds::nodes(), None, &node, |n| {
        n["spec"] = after["spec"].clone();
        n["metadata"]["annotations"] = after["metadata"]["annotations"].clone();
        n["metadata"]["labels"] = after["metadata"]["labels"].clone();
    });
}

fn unschedulable(h: &Harness, node: &str) -> bool {
    h.sim
        .store()
        .get(&kinds::nodes(), None, node)
        .unwrap()
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[test]
fn issue14_v1_journals_plans_run_resources_and_incident_load() {
    use ripcord::journal::{Format, FormatVersion, Record};
    for name in V1 {
        let path = v1(name).join("journal.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(r#""v":"#), "{name} is a v1 journal");
        let (entries, torn) = ripcord::journal::read(&path).unwrap();
        assert!(torn.is_none(), "{name}");
        assert!(entries.len() >= 4, "{name}");
        let Record::RunStarted { plan, .. } = &entries[0].record else {
            panic!("{name}: no RunStarted first");
        };
        assert!(plan.get("formatVersion").is_none(), "{name}");
        let plan = ripcord::plan::Plan::from_embedded(plan.clone(), path.display()).unwrap();
        assert!(!plan.steps.is_empty(), "{name}");

        let object = fixture_json(name, "run.json");
        assert!(object["status"].get("formatVersion").is_none(), "{name}");
        let run: ripcord::k8s::runs::Run = serde_json::from_value(object.clone()).unwrap();
        let status = run.status.as_ref().unwrap();
        assert_eq!(status.format_version, FormatVersion::V1);
        assert_eq!(status.check_format(name), Ok(FormatVersion::V1));
        let view = ripcord::cleanup::source::from_run_resource(&object).unwrap();
        assert!(view.damaged.is_none(), "{name}: {:?}", view.damaged);
        assert!(!view.touched.is_empty(), "{name}: the mutations are read");
        assert_eq!(
            Format::RunStatus.check_json(&object["status"], "formatVersion", name),
            Ok(FormatVersion::V1)
        );
    }
    // The finished ones say so.
    let (entries, _) =
        ripcord::journal::read(&v1("rollback-succeeded").join("journal.jsonl")).unwrap();
    assert!(matches!(
        entries.last().unwrap().record,
        Record::RunFinished {
            outcome: ripcord::journal::Outcome::Succeeded,
            ..
        }
    ));
    // The incident file.
    let incident = ripcord::cleanup::incident::load(&fixtures_root().join("v1"), "INC-4242")
        .expect("the v1 incident file loads");
    assert_eq!(incident.owner.as_deref(), Some("bob"));
    assert_eq!(incident.action_items.len(), 1);
    assert!(!incident.is_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_v1_interrupted_failout_and_restart_resume_and_finish() {
    use ripcord::journal::{Outcome, Record};
    for name in ["failout-interrupted", "restart-interrupted"] {
        let h = Harness::start_calm().await;
        let run_id = install_journal(name, &h.state_dir());
        let out = h.ripcord(&["run", "--resume", &run_id]).await;
        assert_eq!(out.status.code(), Some(0), "{name} resumed and finished");
        let path = ripcord::journal::journal_path(&h.state_dir(), &run_id);
        // One file, two versions: the v1 lines as they were, the resumed process's lines v2.
        let text = std::fs::read_to_string(&path).unwrap();
        let (old, new): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| !l.starts_with(r#"{"v":2,"#));
        assert_eq!(old.len(), text.lines().count() - new.len());
        assert!(!old.is_empty() && !new.is_empty(), "{text}");
        let (entries, torn) = ripcord::journal::read(&path).unwrap();
        assert!(torn.is_none());
        assert!(
            entries
                .iter()
                .any(|e| matches!(e.record, Record::RunResumed { .. }))
        );
        assert!(matches!(
            entries.last().unwrap().record,
            Record::RunFinished {
                outcome: Outcome::Succeeded,
                ..
            }
        ));
        if name == "failout-interrupted" {
            assert!(unschedulable(&h, "zone-b-node-1"));
            assert!(unschedulable(&h, "zone-b-node-2"));
        }
        h.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_v1_cordon_is_cleaned_up_from_its_journal_and_from_its_run_resource() {
    // From the v1 journal.
    let h = Harness::start_calm().await;
    restore_node(&h, "cordon-succeeded");
    assert!(unschedulable(&h, "zone-b-node-1"));
    let run_id = install_journal("cordon-succeeded", &h.state_dir());
    let out = h.ripcord(&["cleanup", "--run", &run_id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!unschedulable(&h, "zone-b-node-1"), "reverted");
    let out = h.ripcord(&["verify", "--run", &run_id]).await;
    assert_eq!(out.status.code(), Some(0), "verified clean");
    h.sim.shutdown().await;

    // From the v1 Run resource, on a machine without the journal.
    let h = Harness::start_calm().await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .unwrap();
    restore_node(&h, "cordon-succeeded");
    let (_, run_id) = install_run(&h, "cordon-succeeded", None).await;
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = h
        .ripcord_with(&["cleanup", "--run", &run_id, "--yes"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!unschedulable(&h, "zone-b-node-1"), "reverted");

    // The same resource with a status of a newer version: refused, naming it, nothing done.
    restore_node(&h, "cordon-succeeded");
    let mut status = fixture_json("cordon-succeeded", "run.json")["status"].clone();
    status["formatVersion"] = newer_run_status().into();
    let api: kube::Api<ripcord::k8s::runs::Run> = kube::Api::namespaced(h.sim.client(), "shop");
    api.patch_status(
        &run_id,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&serde_json::json!({ "status": status })),
    )
    .await
    .unwrap();
    let out = h
        .ripcord_with(&["cleanup", "--run", &run_id, "--yes"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Run shop/{run_id}: Run status format version {} is not readable",
            newer_run_status()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("newer ripcord"), "{stderr}");
    assert!(unschedulable(&h, "zone-b-node-1"), "nothing reverted");
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_v1_sealed_daemon_run_is_taken_over_and_a_newer_one_is_not() {
    use ripcord::k8s::runs::{RunSeal, SealCheck};
    // The v1 status's seal still verifies.
    let run: ripcord::k8s::runs::Run =
        serde_json::from_value(fixture_json("daemon-rollback-interrupted", "run.json")).unwrap();
    let seal = RunSeal::new(RUN_KEY);
    assert_eq!(seal.check(&run), SealCheck::Valid);

    let h = demo_harness(5).await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .unwrap();
    let (_, run_id) = install_run(&h, "daemon-rollback-interrupted", None).await;
    // Another unfinished, sealed daemon run, its status written by a newer ripcord.
    let mut newer = fixture_json("daemon-rollback-interrupted", "run.json");
    let newer_id = "r-20261203-040000-0123456789ab";
    newer["metadata"]["name"] = newer_id.into();
    let newer_run: ripcord::k8s::runs::Run = serde_json::from_value(newer.clone()).unwrap();
    let mut status = newer["status"].clone();
    status["seal"] = seal.seal("shop", newer_id, &newer_run.spec).into();
    status["formatVersion"] = newer_run_status().into();
    {
        use kube::api::{Api, Patch, PatchParams, PostParams};
        let mut meta = newer_run.clone();
        meta.metadata.uid = None;
        meta.metadata.resource_version = None;
        meta.metadata.managed_fields = None;
        meta.metadata.creation_timestamp = None;
        meta.status = None;
        let api: Api<ripcord::k8s::runs::Run> = Api::namespaced(h.sim.client(), "shop");
        api.create(&PostParams::default(), &meta).await.unwrap();
        api.patch_status(
            newer_id,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "status": status })),
        )
        .await
        .unwrap();
    }

    let state_dir = h.dir.path().join("daemon-b");
    let (addr, stop, task) = start_daemon(&h, &state_dir, "daemon-b").await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, addr).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let response = http
            .get(format!("http://{addr}/v1/runs/{run_id}"))
            .bearer_auth("fixture-token")
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            let view: Value = response.json().await.unwrap();
            if view["run"]["state"] == "finished" {
                assert_eq!(view["run"]["outcome"], "succeeded", "{view}");
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the v1 run was never taken over and finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let image = h
        .deployment("checkout")
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    assert!(image.ends_with(":1.4.2"), "rolled back: {image}");
    let metrics = daemon_metrics(&http, addr).await;
    assert!(
        metrics.contains(r#"ripcord_takeovers_refused_total{reason="format-version"} 1"#),
        "{metrics}"
    );
    let response = http
        .get(format!("http://{addr}/v1/runs/{newer_id}"))
        .bearer_auth("fixture-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        404,
        "the newer run is not taken over"
    );
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
    h.sim.shutdown().await;
}

#[test]
fn issue14_newer_journal_lines_and_incident_files_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let run_id = install_journal("rollback-succeeded", dir.path());
    let path = ripcord::journal::journal_path(dir.path(), &run_id);
    let mut text = std::fs::read_to_string(&path).unwrap();
    let lines = text.lines().count();
    text.push_str(
        r#"{"v":3,"seq":99,"at":"2027-01-01T00:00:00Z","type":"RunResumed","who":"future"}"#,
    );
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    let err = ripcord::journal::read(&path).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains(&format!("journal.jsonl:{}:", lines + 1)),
        "{chain}"
    );
    assert!(chain.contains("journal line format version 3"), "{chain}");
    assert!(ripcord::journal::Journal::open(dir.path(), &run_id).is_err());

    let incidents = dir.path().join("incidents");
    std::fs::create_dir_all(&incidents).unwrap();
    let mut incident = serde_json::from_slice::<Value>(
        &std::fs::read(v1("incidents").join("INC-4242.json")).unwrap(),
    )
    .unwrap();
    incident["formatVersion"] = 3.into();
    std::fs::write(incidents.join("INC-4242.json"), incident.to_string()).unwrap();
    let err = ripcord::cleanup::incident::load(dir.path(), "INC-4242").unwrap_err();
    assert!(
        err.to_string()
            .contains("INC-4242.json: incident file format version 3"),
        "{err}"
    );
}

// === reading the v2 fixtures (Run status format 2, before structured inverses and stops) ===

const V2: [&str; 7] = [
    "v2/rollback-succeeded",
    "v2/failout-interrupted",
    "v2/restart-interrupted",
    "v2/cordon-succeeded",
    "v2/daemon-rollback-interrupted",
    "v2/daemon-rollback-lost-leadership",
    "v2/incidents",
];

#[test]
fn issue14_v2_journals_run_resources_and_incident_load() {
    use ripcord::journal::{Format, FormatVersion, Record};
    use ripcord::k8s::runs::{DaemonStop, InverseUnavailable, Run, RunSeal, SealCheck, StepPhase};
    for name in V2.iter().filter(|n| !n.ends_with("incidents")) {
        let path = fixture(name).join("journal.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().all(|l| l.starts_with(r#"{"v":2,"#)),
            "{name} is a v2 journal"
        );
        let (entries, torn) = ripcord::journal::read(&path).unwrap();
        assert!(torn.is_none(), "{name}");
        let Record::RunStarted { plan, .. } = &entries[0].record else {
            panic!("{name}: no RunStarted first");
        };
        ripcord::plan::Plan::from_embedded(plan.clone(), path.display()).unwrap();

        let object = fixture_json(name, "run.json");
        assert_eq!(object["status"]["formatVersion"], 2, "{name}");
        let run: Run = serde_json::from_value(object.clone()).unwrap();
        let status = run.status.as_ref().unwrap();
        assert_eq!(status.check_format(name), Ok(FormatVersion::V2));
        assert_eq!(
            Format::RunStatus.check_json(&object["status"], "formatVersion", name),
            Ok(FormatVersion::V2)
        );
        // Step phases written as strings read as the enum, none unknown.
        for step in &status.steps {
            assert!(
                !matches!(step.phase, StepPhase::Other(_)),
                "{name}: {:?}",
                step.phase
            );
            // Inverses written as JSON text read as inverses, or as cut by the size bound (a
            // rollback's inverse with its roll-forward patch is longer than 1,024 characters).
            for m in &step.mutations {
                assert!(m.inverse.as_ref().is_some_and(Value::is_string), "{name}");
                match m.inverse() {
                    Ok(_) => {}
                    Err(InverseUnavailable::Cut) => {
                        assert!(name.starts_with("v2/daemon-"), "{name}: cut")
                    }
                    Err(other) => panic!("{name}: {other}"),
                }
            }
        }
        let view = ripcord::cleanup::source::from_run_resource(&object).unwrap();
        assert!(view.damaged.is_none(), "{name}: {:?}", view.damaged);
        let mutations: usize = status.steps.iter().map(|s| s.mutations.len()).sum();
        assert_eq!(
            view.touched.len(),
            mutations,
            "{name}: the mutations are read"
        );
        for t in &view.touched {
            assert!(
                t.inverse.is_some()
                    || t.problem
                        .as_deref()
                        .is_some_and(|p| p.contains("cut by its size bound")),
                "{name}: {t:?}"
            );
        }
        // Who stopped it: told by the message in version 2.
        let expected = match *name {
            "v2/daemon-rollback-lost-leadership" => Some(DaemonStop::LostLeadership),
            "v2/daemon-rollback-interrupted" => Some(DaemonStop::Shutdown),
            _ => None,
        };
        assert_eq!(status.daemon_stop(), expected, "{name}");
        if expected.is_some() {
            assert_eq!(
                RunSeal::new(RUN_KEY).check(&run),
                SealCheck::Valid,
                "{name}"
            );
        }
    }
    let succeeded = fixture_json("v2/rollback-succeeded", "run.json");
    assert_eq!(succeeded["status"]["outcome"], "succeeded");
    let incident = ripcord::cleanup::incident::load(&fixtures_root().join("v2"), "INC-4242")
        .expect("the v2 incident file loads");
    assert_eq!(incident.owner.as_deref(), Some("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_v2_cordon_is_cleaned_up_from_its_journal_and_from_its_run_resource() {
    // From the v2 journal.
    let h = Harness::start_calm().await;
    restore_node(&h, "v2/cordon-succeeded");
    assert!(unschedulable(&h, "zone-b-node-1"));
    let run_id = install_journal("v2/cordon-succeeded", &h.state_dir());
    let out = h.ripcord(&["cleanup", "--run", &run_id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!unschedulable(&h, "zone-b-node-1"), "reverted");
    let out = h.ripcord(&["verify", "--run", &run_id]).await;
    assert_eq!(out.status.code(), Some(0), "verified clean");
    h.sim.shutdown().await;

    // From the v2 Run resource (its inverse a JSON string), on a machine without the journal.
    let h = Harness::start_calm().await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .unwrap();
    restore_node(&h, "v2/cordon-succeeded");
    let (_, run_id) = install_run(&h, "v2/cordon-succeeded", None).await;
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = h
        .ripcord_with(&["cleanup", "--run", &run_id, "--yes"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!unschedulable(&h, "zone-b-node-1"), "reverted");
    h.sim.shutdown().await;
}

/// Cleanup from a `Run` resource whose status is `status`, on a machine without the journal:
/// its output, and whether the node is still cordoned afterwards.
async fn cleanup_from_status(status: Value) -> (std::process::Output, bool) {
    let h = Harness::start_calm().await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .unwrap();
    restore_node(&h, "v2/cordon-succeeded");
    let (_, run_id) = install_run(&h, "v2/cordon-succeeded", Some(status)).await;
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = h
        .ripcord_with(&["cleanup", "--run", &run_id, "--yes"], &elsewhere, &[])
        .await;
    let cordoned = unschedulable(&h, "zone-b-node-1");
    h.sim.shutdown().await;
    (out, cordoned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_a_cut_v2_inverse_and_an_omitted_v3_one_are_refused_alike() {
    let v2 = fixture_json("v2/cordon-succeeded", "run.json")["status"].clone();
    let inverse = v2["steps"][0]["mutations"][0]["inverse"]
        .as_str()
        .unwrap()
        .to_string();
    let parsed: Value = serde_json::from_str(&inverse).unwrap();

    // Version 3, the same run: the inverse structured; cleaned up as before.
    let mut v3 = v2.clone();
    v3["formatVersion"] = 3.into();
    v3["steps"][0]["mutations"][0]["inverse"] = parsed;
    let (out, cordoned) = cleanup_from_status(v3.clone()).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!cordoned, "reverted from a v3 status");

    // Version 2, the inverse cut by the size bound: not judged, nothing written, exit 1.
    let mut cut = v2.clone();
    let half: String = inverse.chars().take(inverse.chars().count() / 2).collect();
    cut["steps"][0]["mutations"][0]["inverse"] = format!("{half}…").into();
    let (out, cordoned) = cleanup_from_status(cut).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("UNAVAILABLE"), "{text}");
    assert!(cordoned, "nothing reverted");

    // Version 3, the inverse left out (too large for the status): the same.
    let mut omitted = v3;
    let m = omitted["steps"][0]["mutations"][0].as_object_mut().unwrap();
    m.remove("inverse");
    m.insert("inverseOmitted".into(), true.into());
    let (out, cordoned) = cleanup_from_status(omitted).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("UNAVAILABLE"), "{text}");
    assert!(cordoned, "nothing reverted");
}

/// Waits until the daemon at `addr` ran `run_id` to the end; its outcome.
async fn wait_finished(http: &reqwest::Client, addr: std::net::SocketAddr, run_id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let response = http
            .get(format!("http://{addr}/v1/runs/{run_id}"))
            .bearer_auth("fixture-token")
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            let view: Value = response.json().await.unwrap();
            if view["run"]["state"] == "finished" {
                return view["run"]["outcome"].clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{run_id} was never taken over and finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_v2_daemon_runs_stopped_by_the_daemon_are_taken_over() {
    use ripcord::k8s::runs::{Run, RunSeal};
    for name in [
        "v2/daemon-rollback-lost-leadership",
        "v2/daemon-rollback-interrupted",
    ] {
        let h = demo_harness(5).await;
        ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
            .await
            .unwrap();
        let (_, run_id) = install_run(&h, name, None).await;
        // The same stop written as version 3 without `stoppedBy` (its seal valid): the message
        // alone no longer says a daemon stopped it, so it stays stopped.
        let mut by_message = fixture_json(name, "run.json");
        let by_message_id = "r-20261203-050000-0123456789ab";
        by_message["metadata"]["name"] = by_message_id.into();
        let mut typed: Run = serde_json::from_value(by_message.clone()).unwrap();
        let mut status = typed.status.clone().unwrap();
        status.format_version = ripcord::journal::Format::RunStatus.current();
        status.seal =
            Some(RunSeal::new(RUN_KEY).seal_status("shop", by_message_id, &typed.spec, &status));
        {
            use kube::api::{Api, Patch, PatchParams, PostParams};
            typed.metadata.uid = None;
            typed.metadata.resource_version = None;
            typed.metadata.managed_fields = None;
            typed.metadata.creation_timestamp = None;
            typed.status = None;
            let api: Api<Run> = Api::namespaced(h.sim.client(), "shop");
            api.create(&PostParams::default(), &typed).await.unwrap();
            api.patch_status(
                by_message_id,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "status": status })),
            )
            .await
            .unwrap();
        }

        let state_dir = h.dir.path().join("daemon-b");
        let (addr, stop, task) = start_daemon(&h, &state_dir, "daemon-b").await;
        let http = reqwest::Client::new();
        wait_for_leader(&http, addr).await;
        assert_eq!(
            wait_finished(&http, addr, &run_id).await,
            "succeeded",
            "{name}"
        );
        let image = h
            .deployment("checkout")
            .pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        assert!(image.ends_with(":1.4.2"), "{name}: rolled back: {image}");
        // Its Run now in version 3, the earlier stop no longer recorded.
        let object = run_resource(&h, &run_id);
        assert_eq!(object["status"]["formatVersion"], 3, "{object}");
        assert_eq!(object["status"]["outcome"], "succeeded", "{object}");
        assert!(object["status"].get("stoppedBy").is_none(), "{object}");
        assert!(
            object["status"]["seal"]
                .as_str()
                .unwrap()
                .starts_with("v2:"),
            "{object}"
        );
        let response = http
            .get(format!("http://{addr}/v1/runs/{by_message_id}"))
            .bearer_auth("fixture-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{name}: not taken over");
        stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
        h.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_v3_a_run_stopped_for_lost_leadership_says_so_in_a_sealed_field() {
    use ripcord::k8s::runs::{DaemonStop, Run, RunSeal, SealCheck, StoppedBy};
    let h = demo_harness(40).await;
    ripcord::k8s::runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .unwrap();
    let run_id = stop_a_daemon_run_by_lost_leadership(&h, &h.dir.path().join("daemon-a")).await;
    let object = run_resource(&h, &run_id);
    let status = &object["status"];
    assert_eq!(status["formatVersion"], 3, "{object}");
    assert_eq!(
        status["stoppedBy"],
        serde_json::json!({"kind": "daemon", "reason": "lostLeadership"}),
        "{object}"
    );
    // The message for people is as before.
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("interrupted by ripcord daemon (lost leadership)"),
        "{object}"
    );
    assert_eq!(status["steps"][0]["phase"], "Verified", "{object}");
    assert_eq!(status["steps"][1]["phase"], "Stopped", "{object}");
    // The rollback's inverse (with its roll-forward patch) is over the size bound: left out,
    // and said so, where version 2 cut it.
    let m = &status["steps"][0]["mutations"][0];
    assert!(m.get("inverse").is_none(), "{object}");
    assert_eq!(m["inverseOmitted"], true, "{object}");
    let run: Run = serde_json::from_value(object.clone()).unwrap();
    let key = RunSeal::new(RUN_KEY);
    assert_eq!(key.check(&run), SealCheck::Valid);
    assert_eq!(
        run.status.as_ref().unwrap().daemon_stop(),
        Some(DaemonStop::LostLeadership)
    );
    // Someone who can write statuses cannot change the stop cause under the seal.
    let mut forged = run.clone();
    forged.status.as_mut().unwrap().stopped_by = Some(StoppedBy::Daemon(DaemonStop::Shutdown));
    assert_eq!(key.check(&forged), SealCheck::Invalid);
    // Cleanup from the resource names the omitted inverse instead of judging it.
    let view = ripcord::cleanup::source::from_run_resource(&object).unwrap();
    let problem = view.touched[0].problem.as_deref().unwrap_or_default();
    assert!(problem.contains("inverseOmitted"), "{problem}");

    // The Lease free again, the next leader takes the run over and finishes it.
    free_leader_lease(&h);
    let (addr, stop, task) = start_daemon(&h, &h.dir.path().join("daemon-b"), "daemon-b").await;
    let http = reqwest::Client::new();
    wait_for_leader(&http, addr).await;
    // (The rollback was applied before the stop, so the taken-over run writes nothing and
    // starts no mirror: its `Run` keeps the stopped status. A status written after a takeover
    // drops `stoppedBy`: `issue14_v2_daemon_runs_stopped_by_the_daemon_are_taken_over`.)
    assert_eq!(wait_finished(&http, addr, &run_id).await, "succeeded");
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
    h.sim.shutdown().await;
}
