//! Shared helpers of the cleanup, verify and report tests: a simulated cluster with a kubeconfig
//! and a state directory, and the `ripcord` binary run against it.
#![allow(dead_code)]

use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// Three zones of two nodes; `checkout` with a bad release rolling out (rolled back by the
/// incident), `api` (scaled, restarted and paused by the incident), a zone-weighted route.
pub const SCENARIO: &str = r#"
name: cleanup-incident
settings:
  timeFactor: 20
  podReadyDelaySeconds: 2
  podStartDelaySeconds: 1
zones:
  - {name: zone-a, nodes: 2, cpu: "8", memory: 32Gi}
  - {name: zone-b, nodes: 2, cpu: "8", memory: 32Gi}
  - {name: zone-c, nodes: 2, cpu: "8", memory: 32Gi}
namespaces: [shop]
deployments:
  - namespace: shop
    name: checkout
    replicas: 3
    labels: {app: checkout}
    port: 8080
    strategy: {type: RollingUpdate, maxSurge: 25%, maxUnavailable: 25%}
    progressDeadlineSeconds: 120
    releases:
      - image: registry.local/checkout:1.4.2
      - image: registry.local/checkout:1.5.0
        bad: notReady
    rollout: inProgress
  - namespace: shop
    name: api
    replicas: 3
    labels: {app: api}
    port: 8080
    releases:
      - image: registry.local/api:7.0.1
podDisruptionBudgets:
  - {namespace: shop, name: checkout, selector: {app: checkout}, maxUnavailable: 1}
services:
  - {namespace: shop, name: checkout, selector: {app: checkout}, port: 80, targetPort: 8080}
  - {namespace: shop, name: checkout-zone-a, selector: {app: checkout}, zone: zone-a}
  - {namespace: shop, name: checkout-zone-b, selector: {app: checkout}, zone: zone-b}
  - {namespace: shop, name: checkout-zone-c, selector: {app: checkout}, zone: zone-c}
httpRoutes:
  - namespace: shop
    name: checkout
    hostnames: [checkout.shop.example]
    backends:
      - {service: checkout-zone-a, port: 80, weight: 100}
      - {service: checkout-zone-b, port: 80, weight: 100}
      - {service: checkout-zone-c, port: 80, weight: 100}
"#;

/// A running sim, a kubeconfig for it and a state directory.
pub struct Harness {
    /// The simulated cluster.
    pub sim: SimCluster,
    /// Holds the kubeconfig, the state directories and playbooks.
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// Starts [`SCENARIO`] (the bad `checkout` release rolling out) and waits until `api` is
    /// ready.
    pub async fn start() -> Harness {
        Harness::start_yaml(SCENARIO).await
    }

    /// Starts [`SCENARIO`] without the bad release (every workload healthy) and waits until
    /// `checkout` and `api` are ready.
    pub async fn start_calm() -> Harness {
        let calm = SCENARIO
            .replace(
                "      - image: registry.local/checkout:1.5.0\n        bad: notReady\n",
                "",
            )
            .replace("    rollout: inProgress\n", "");
        assert_ne!(calm, SCENARIO, "the bad release was removed");
        let h = Harness::start_yaml(&calm).await;
        h.wait_until("checkout ready", Duration::from_secs(60), |h| {
            h.ready_replicas("checkout") == 3
        })
        .await;
        h
    }

    /// Starts a scenario and waits until `api` is ready.
    pub async fn start_yaml(yaml: &str) -> Harness {
        let scenario = Scenario::from_yaml("cleanup-test", yaml).expect("scenario parses");
        let sim = SimCluster::start(SimOptions {
            scenario,
            addr: None,
        })
        .await
        .expect("sim starts");
        let dir = tempfile::tempdir().expect("tempdir");
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("kubeconfig written");
        let h = Harness { sim, dir };
        h.wait_until("api ready", Duration::from_secs(60), |h| {
            h.ready_replicas("api") == 3
        })
        .await;
        h
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The default state directory ("the laptop of the person who mitigated").
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes a file under the temporary directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("file written");
        path
    }

    /// Runs the `ripcord` binary against the sim with the default state directory.
    pub async fn ripcord(&self, args: &[&str]) -> Output {
        self.ripcord_with(args, &self.state_dir(), &[]).await
    }

    /// Runs the `ripcord` binary with a given state directory and extra environment.
    pub async fn ripcord_with(
        &self,
        args: &[&str],
        state_dir: &Path,
        env: &[(&str, &str)],
    ) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"));
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("RIPCORD_STATE_DIR", state_dir)
            .env("RIPCORD_CONFIG", "/dev/null")
            .env("RIPCORD_WHO", "test")
            .env_remove("RIPCORD_NAMESPACE")
            .env_remove("RIPCORD_CONTEXT")
            .env_remove("RIPCORD_PROMETHEUS_URL")
            .env_remove(ripcord::engine::CRASH_HOOK_ENV)
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
            .await
            .expect("ripcord finished within 180 s")
            .expect("ripcord runs");
        eprintln!(
            "ripcord {args:?} -> {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Polls `cond` until it holds (bounded by `limit`).
    pub async fn wait_until(&self, what: &str, limit: Duration, cond: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A Deployment in `shop`.
    pub fn deployment(&self, name: &str) -> Value {
        self.sim
            .store()
            .get(&kinds::deployments(), Some("shop"), name)
            .expect("deployment exists")
    }

    /// Ready replicas of a Deployment in `shop`.
    pub fn ready_replicas(&self, name: &str) -> i64 {
        self.deployment(name)
            .pointer("/status/readyReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// The nodes of a zone.
    pub fn zone_nodes(&self, zone: &str) -> Vec<Value> {
        let (nodes, _) = self.sim.store().list(&kinds::nodes(), None);
        nodes
            .into_iter()
            .filter(|n| {
                n.pointer("/metadata/labels/topology.kubernetes.io~1zone")
                    .and_then(Value::as_str)
                    == Some(zone)
            })
            .collect()
    }

    /// The backend weights of the `shop/checkout` route.
    pub fn route_weights(&self) -> Vec<(String, i64)> {
        let route = self
            .sim
            .store()
            .get(&kinds::http_routes(), Some("shop"), "checkout")
            .expect("route exists");
        route
            .pointer("/spec/rules/0/backendRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["name"].as_str().unwrap_or_default().to_string(),
                    b["weight"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }

    /// Changes an object in the store "by hand" (as someone with kubectl would).
    pub fn by_hand(
        &self,
        rt: &ripcord::sim::store::ResourceType,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) {
        self.sim
            .store()
            .modify(rt, namespace, name, |obj| {
                f(obj);
                Ok(())
            })
            .expect("object modified");
    }
}

/// The run id the engine printed on stderr ("starting run r-…").
pub fn run_id_of(out: &Output) -> String {
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("r-") && w.len() >= "r-20261125-113000-abcd".len())
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .to_string()
        })
        .expect("a run id in the output")
}

/// The stdout as JSON.
pub fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// The `kind` of every finding of a verify JSON report, with its object.
pub fn findings(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_string(),
                f["object"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
