//! Shared helpers of the actions/snapshot/notify/prometheus tests: a small simulated cluster
//! (namespace `shop`, Deployment `web` with three good releases, fully rolled out), an action
//! context pointed at it, and a driver running one step like the engine does.
#![allow(dead_code)]

use ripcord::actions::{Action, ActionContext, ActionError, Applied};
use ripcord::playbook::catalog;
use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::Value;
use std::time::Duration;

/// The test scenario: fast simulated time, short readiness delay, a short progress deadline.
pub const SCENARIO: &str = r#"
name: actions
settings:
  timeFactor: 20
  podReadyDelaySeconds: 2
  podStartDelaySeconds: 1
zones:
  - {name: zone-a, nodes: 2, cpu: "8", memory: 32Gi}
namespaces: [shop]
deployments:
  - namespace: shop
    name: web
    replicas: 3
    labels: {app: web}
    port: 8080
    strategy: {type: RollingUpdate, maxSurge: 1, maxUnavailable: 0}
    progressDeadlineSeconds: 30
    releases:
      - {image: "registry.local/web:1", changeCause: "release 1"}
      - {image: "registry.local/web:2", changeCause: "release 2"}
      - {image: "registry.local/web:3", changeCause: "release 3"}
    rollout: complete
services:
  - {namespace: shop, name: web, selector: {app: web}, port: 80, targetPort: 8080}
"#;

/// A running sim with the test scenario.
pub struct Sim {
    pub cluster: SimCluster,
}

impl Sim {
    /// Starts the scenario and waits until `web` is fully rolled out.
    pub async fn start() -> Sim {
        Sim::start_with(SCENARIO).await
    }

    /// Starts a scenario from YAML and waits until `web` is rolled out.
    pub async fn start_with(yaml: &str) -> Sim {
        let sim = Sim::start_raw(yaml).await;
        sim.wait_until("web rolled out", |s| s.rolled_out("web"))
            .await;
        sim
    }

    /// Starts a scenario from YAML without waiting for anything.
    pub async fn start_raw(yaml: &str) -> Sim {
        let scenario = Scenario::from_yaml("actions-test", yaml).expect("scenario parses");
        let cluster = SimCluster::start(SimOptions {
            scenario,
            addr: None,
        })
        .await
        .expect("sim starts");
        Sim { cluster }
    }

    /// Polls a condition on the store (bounded: 60 s).
    pub async fn wait_until(&self, what: &str, cond: impl Fn(&Sim) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Deployment as stored.
    pub fn deployment(&self, name: &str) -> Value {
        self.cluster
            .store()
            .get(&kinds::deployments(), Some("shop"), name)
            .expect("deployment exists")
    }

    /// The first container's image of the Deployment's template.
    pub fn image(&self, name: &str) -> String {
        self.deployment(name)
            .pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// kubectl's rollout-complete rule on the stored object.
    pub fn rolled_out(&self, name: &str) -> bool {
        let d = self.deployment(name);
        let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(-1);
        n("/status/observedGeneration") >= n("/metadata/generation")
            && n("/status/updatedReplicas") == n("/spec/replicas")
            && n("/status/replicas") == n("/spec/replicas")
            && n("/status/availableReplicas") == n("/spec/replicas")
    }

    /// Applies a merge patch to a Deployment through the API (as cleanup would).
    pub async fn merge_patch_deployment(&self, name: &str, patch: &Value) {
        let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
            kube::Api::namespaced(self.cluster.client(), "shop");
        api.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .expect("merge patch applies");
    }

    /// Stops the sim.
    pub async fn cluster_shutdown(self) {
        self.cluster.shutdown().await;
    }
}

/// A `DeploymentRef` in `shop`.
pub fn args_ref(name: &str) -> catalog::DeploymentRef {
    catalog::DeploymentRef {
        namespace: Some("shop".into()),
        name: name.into(),
    }
}

/// An action context for one step of one run against the sim.
pub fn context(sim: &Sim, run: &str, step: &str) -> ActionContext {
    ActionContext {
        client: sim.cluster.client(),
        run_id: run.into(),
        step: step.into(),
        default_namespace: "shop".into(),
        http: reqwest::Client::new(),
        prometheus_url: None,
        call_timeout: Duration::from_secs(5),
        verify_timeout: Duration::from_secs(60),
        playbook: "actions-test".into(),
        notifier: None,
        state_dir: None,
        observed: Default::default(),
        notices: Default::default(),
    }
}

/// Runs one step like the engine: diff, apply every mutation, verify. Returns what was applied.
pub async fn run_step(
    action: &dyn Action,
    ctx: &ActionContext,
) -> Result<Vec<Applied>, ActionError> {
    let diff = action.diff(ctx).await?;
    let mut applied = Vec::new();
    for mutation in &diff.mutations {
        applied.push(action.apply(ctx, mutation).await?);
    }
    if !applied.is_empty() || action.verify_when_satisfied() {
        action.verify(ctx, &applied).await?;
    }
    Ok(applied)
}

/// Runs the `ripcord` binary against the sim (kubeconfig written into `dir`).
pub async fn ripcord(sim: &Sim, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let kubeconfig = dir.join("kubeconfig");
    sim.cluster
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"));
    cmd.args(args)
        .env("KUBECONFIG", &kubeconfig)
        .env("RIPCORD_STATE_DIR", dir.join("state"))
        .env("RIPCORD_CONFIG", "/dev/null")
        .env_remove("RIPCORD_NAMESPACE")
        .env_remove("RIPCORD_CONTEXT")
        .env_remove("RIPCORD_PROMETHEUS_URL")
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("ripcord finished within 60 s")
        .expect("ripcord runs");
    eprintln!(
        "ripcord {args:?} -> {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
