//! Shared helpers of the engine/rollback integration tests: a demo sim, the `ripcord` binary
//! as a child process pointed at it, a local webhook receiver and journal readers.
#![allow(dead_code)]

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use ripcord::journal::{self, Entry, Record};
use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A sim plus a temp dir holding its kubeconfig, a config file and the state dir.
pub struct Harness {
    pub sim: Arc<SimCluster>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// Starts the demo scenario and waits until the bad release is rolling out.
    pub async fn demo() -> Harness {
        let sim = SimCluster::start(SimOptions {
            scenario: Scenario::demo(),
            addr: None,
        })
        .await
        .expect("sim starts");
        let dir = tempfile::tempdir().expect("tempdir");
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("kubeconfig written");
        std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
        let harness = Harness {
            sim: Arc::new(sim),
            dir,
        };
        harness.wait_bad_release_started().await;
        harness
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Writes the ripcord config file.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.config_path(), yaml).expect("config written");
    }

    /// Runs the `ripcord` binary against the sim with extra env vars; returns its output.
    pub async fn ripcord(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"));
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("RIPCORD_STATE_DIR", self.state_dir())
            .env("RIPCORD_WHO", "test")
            .env_remove("RIPCORD_NAMESPACE")
            .env_remove("RIPCORD_CONTEXT")
            .env_remove(ripcord::engine::CRASH_HOOK_ENV)
            .stdin(std::process::Stdio::null());
        if self.config_path().exists() {
            cmd.env("RIPCORD_CONFIG", self.config_path());
        } else {
            cmd.env("RIPCORD_CONFIG", "/dev/null");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("ripcord finished within 120 s")
            .expect("ripcord runs");
        eprintln!(
            "ripcord {args:?} -> {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn deployment(&self) -> Value {
        self.sim
            .store()
            .get(&kinds::deployments(), Some("shop"), "checkout")
            .expect("shop/checkout exists")
    }

    pub fn image(&self) -> String {
        self.deployment()
            .pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// ReplicaSets of shop/checkout as (revision, image).
    pub fn revisions(&self) -> Vec<(i64, String)> {
        let (rs, _) = self.sim.store().list(&kinds::replicasets(), Some("shop"));
        let mut out: Vec<(i64, String)> = rs
            .iter()
            .filter(|r| {
                r.pointer("/metadata/ownerReferences/0/name")
                    .and_then(Value::as_str)
                    == Some("checkout")
            })
            .map(|r| {
                let rev = r
                    .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1);
                let image = r
                    .pointer("/spec/template/spec/containers/0/image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                (rev, image)
            })
            .collect();
        out.sort();
        out
    }

    async fn wait_bad_release_started(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.image().ends_with(":1.5.0") && self.revisions().len() >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the demo's bad release did not start: {:?}",
            self.revisions()
        );
    }

    /// True when the rollout of shop/checkout is complete (kubectl rollout status rules).
    pub fn rolled_out(&self) -> bool {
        let d = self.deployment();
        let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let replicas = int("/spec/replicas");
        int("/status/observedGeneration") >= int("/metadata/generation")
            && int("/status/updatedReplicas") == replicas
            && int("/status/replicas") == replicas
            && int("/status/availableReplicas") == replicas
    }

    /// PATCH requests to the checkout Deployment, in log order (seq).
    pub fn deployment_patches(&self) -> Vec<u64> {
        self.sim
            .request_log()
            .iter()
            .filter(|r| {
                r.method == "PATCH"
                    && r.path == "/apis/apps/v1/namespaces/shop/deployments/checkout"
            })
            .map(|r| r.seq)
            .collect()
    }
}

/// The run id printed by the one-line summary (`— run r-…`).
pub fn run_id_from(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-'))
        .find(|w| w.starts_with("r-") && journal::validate_run_id(w).is_ok() && w.len() == 30)
        .unwrap_or_else(|| panic!("no run id in output:\n{text}"))
        .to_string()
}

/// The only run in `state_dir`.
pub fn only_run(state_dir: &Path) -> String {
    let runs = journal::list_runs(state_dir).expect("runs listed");
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].run_id.clone()
}

/// The records of a run's journal (no torn tail allowed).
pub fn records(state_dir: &Path, run_id: &str) -> Vec<Entry> {
    let (entries, torn) =
        journal::read(&journal::journal_path(state_dir, run_id)).expect("journal readable");
    assert!(torn.is_none(), "unexpected torn tail: {torn:?}");
    entries
}

/// The record kinds of a journal, in order.
pub fn kinds_of(entries: &[Entry]) -> Vec<&'static str> {
    entries.iter().map(|e| e.record.kind()).collect()
}

/// Position of the first record of `kind`.
pub fn position(entries: &[Entry], kind: &str) -> Option<usize> {
    entries.iter().position(|e| e.record.kind() == kind)
}

/// The outcome of the last RunFinished record.
pub fn final_outcome(entries: &[Entry]) -> Option<journal::Outcome> {
    entries.iter().rev().find_map(|e| match &e.record {
        Record::RunFinished { outcome, .. } => Some(*outcome),
        _ => None,
    })
}

/// A webhook receiver on 127.0.0.1:0. For each notification it records the body and the
/// sim's deployment PATCHes seen at arrival time.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

/// One received notification.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    /// Highest request-log seq of the sim when the notification arrived.
    pub sim_seq_at_arrival: u64,
    /// Deployment PATCHes already in the sim's log when it arrived.
    pub patches_before: usize,
}

#[derive(Clone)]
struct ReceiverState {
    sim: Arc<SimCluster>,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn receive(State(state): State<ReceiverState>, body: axum::body::Bytes) -> &'static str {
    let log = state.sim.request_log();
    let seq = log.iter().map(|r| r.seq).max().unwrap_or(0);
    let patches_before = log
        .iter()
        .filter(|r| {
            r.method == "PATCH" && r.path == "/apis/apps/v1/namespaces/shop/deployments/checkout"
        })
        .count();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received {
            body,
            sim_seq_at_arrival: seq,
            patches_before,
        });
    "ok"
}

impl Receiver {
    pub async fn start(sim: Arc<SimCluster>) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(ReceiverState {
                sim,
                received: received.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            received,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
