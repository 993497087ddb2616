//! kubectl conformance against the simulated cluster: every kubectl found (env
//! `RIPCORD_KUBECTL`, a `:`-separated list; else `kubectl` on PATH plus `.tools/**/kubectl`,
//! installed by `scripts/install-kubectl.sh`) runs the same commands against a fresh
//! `SimCluster`. Every kubectl invocation has a bounded timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::kinds;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Bound on one kubectl invocation.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(90);

/// Two zones of one node each; `web` has four replicas (two per node) behind a PDB allowing
/// one disruption, so draining a node must wait for a replacement before the second eviction.
const SCENARIO: &str = r#"
name: kubectl-conformance
settings:
  timeFactor: 20
  podReadyDelaySeconds: 2
  podStartDelaySeconds: 1
zones:
  - {name: zone-a, nodes: 1}
  - {name: zone-b, nodes: 1}
namespaces: [shop]
deployments:
  - namespace: shop
    name: web
    replicas: 4
    port: 8080
    strategy: {type: RollingUpdate, maxSurge: 1, maxUnavailable: 0}
    releases:
      - image: registry.local/web:1.0.0
        changeCause: "release 1.0.0"
      - image: registry.local/web:1.1.0
        changeCause: "release 1.1.0"
podDisruptionBudgets:
  - {namespace: shop, name: web, selector: {app: web}, maxUnavailable: 1}
daemonSets:
  - {namespace: kube-system, name: log-agent, image: registry.local/log-agent:2.1.0}
services:
  - {namespace: shop, name: web, selector: {app: web}, port: 80, targetPort: 8080}
"#;

/// Every kubectl binary to test with.
fn kubectls() -> Vec<PathBuf> {
    if let Some(list) = std::env::var_os("RIPCORD_KUBECTL").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).collect();
    }
    let mut found = Vec::new();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(k) = std::env::split_paths(&path)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    {
        found.push(k);
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools");
    find_named(&tools, "kubectl", 4, &mut found);
    assert!(
        !found.is_empty(),
        "no kubectl found: run scripts/install-kubectl.sh or set RIPCORD_KUBECTL"
    );
    found
}

fn find_named(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() && depth > 0 {
            find_named(&p, name, depth - 1, out);
        } else if p.file_name().is_some_and(|n| n == name) && p.is_file() {
            out.push(p);
        }
    }
}

/// A sim plus an isolated kubectl environment (kubeconfig, HOME for the discovery cache).
struct Env {
    sim: SimCluster,
    kubectl: PathBuf,
    dir: tempfile::TempDir,
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Env {
    async fn start(kubectl: &Path) -> Env {
        eprintln!("kubectl conformance with {}", kubectl.display());
        let scenario = Scenario::from_yaml("kubectl-conformance", SCENARIO).unwrap();
        let sim = SimCluster::start(SimOptions {
            scenario,
            addr: None,
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        let env = Env {
            sim,
            kubectl: kubectl.to_path_buf(),
            dir,
        };
        env.wait_ready("web", 4).await;
        env
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.kubectl);
        cmd.args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        let child = self.command(args).output();
        let out = tokio::time::timeout(KUBECTL_TIMEOUT, child)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap();
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and asserts success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "{} {args:?} failed:\nstdout: {}\nstderr: {}",
            self.kubectl.display(),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).unwrap()
    }

    /// Waits (bounded) until the Deployment reports `ready` ready replicas.
    async fn wait_ready(&self, name: &str, ready: i64) {
        for _ in 0..300 {
            if let Some(d) = self
                .sim
                .store()
                .get(&kinds::deployments(), Some("shop"), name)
                && d.pointer("/status/readyReplicas").and_then(Value::as_i64) == Some(ready)
                && d.pointer("/status/updatedReplicas").and_then(Value::as_i64) == Some(ready)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("deployment {name} never reached {ready} ready replicas");
    }

    fn template_image(&self) -> String {
        let d = self
            .sim
            .store()
            .get(&kinds::deployments(), Some("shop"), "web")
            .unwrap();
        d.pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_describe_every_kind() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        let all = env
            .ok(&["get", "nodes,namespaces,deployments,replicasets,pods,daemonsets,poddisruptionbudgets,services,endpoints,configmaps,events", "-A"])
            .await;
        for needle in [
            "node/zone-a-node-1",
            "deployment.apps/web",
            "poddisruptionbudget.policy/web",
            "daemonset.apps/log-agent",
            "service/web",
        ] {
            assert!(all.contains(needle), "{needle} missing in:\n{all}");
        }
        let deploys = env.ok(&["get", "deploy", "-n", "shop"]).await;
        let header = deploys.lines().next().unwrap();
        assert!(
            header.contains("READY") && header.contains("UP-TO-DATE"),
            "{deploys}"
        );
        assert!(deploys.contains("4/4"), "{deploys}");
        let short = env
            .ok(&["get", "po,rs,deploy,no,ns,svc,ep,cm,ds,pdb,ev", "-A"])
            .await;
        assert!(short.contains("pod/web-"), "{short}");

        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=web"])
            .await;
        assert_eq!(pods["items"].as_array().unwrap().len(), 4);
        let none = env
            .json(&["get", "pods", "-A", "-l", "app notin (web,log-agent)"])
            .await;
        assert_eq!(none["items"].as_array().unwrap().len(), 0);
        let on_a = env
            .json(&[
                "get",
                "pods",
                "-A",
                "--field-selector",
                "spec.nodeName=zone-a-node-1,status.phase=Running",
            ])
            .await;
        assert!(
            on_a["items"].as_array().unwrap().len() >= 3,
            "web x2 + log-agent"
        );
        let yaml = env
            .ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"])
            .await;
        assert!(
            yaml.contains("kind: Deployment") && yaml.contains("deployment.kubernetes.io/revision"),
            "{yaml}"
        );
        let schedulable = env
            .json(&[
                "get",
                "nodes",
                "--field-selector",
                "spec.unschedulable=false",
            ])
            .await;
        assert_eq!(schedulable["items"].as_array().unwrap().len(), 2);

        for target in ["deploy/web", "rs", "pods", "svc/web", "pdb/web", "ns/shop"] {
            let out = env.ok(&["describe", "-n", "shop", target]).await;
            assert!(out.contains("Name:"), "describe {target}:\n{out}");
        }
        let node = env.ok(&["describe", "node", "zone-a-node-1"]).await;
        assert!(node.contains("Non-terminated Pods"), "{node}");
        let ds = env
            .ok(&["describe", "ds", "-n", "kube-system", "log-agent"])
            .await;
        assert!(ds.contains("Desired Number of Nodes Scheduled"), "{ds}");

        let missing = env.run(&["get", "deploy", "nope", "-n", "shop"]).await;
        assert!(!missing.ok);
        assert!(
            missing
                .stderr
                .contains("deployments.apps \"nope\" not found"),
            "{}",
            missing.stderr
        );
        env.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_streams_a_change() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        let mut child = env
            .command(&[
                "get",
                "deploy",
                "web",
                "-n",
                "shop",
                "--watch",
                "--output-watch-events",
            ])
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(KUBECTL_TIMEOUT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(first.contains("EVENT") || first.contains("web"), "{first}");
        env.sim
            .store()
            .modify(&kinds::deployments(), Some("shop"), "web", |d| {
                d["metadata"]["labels"]["watched"] = json!("yes");
                d["spec"]["replicas"] = json!(5);
                Ok(())
            })
            .unwrap();
        let seen = tokio::time::timeout(KUBECTL_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("MODIFIED") && line.contains("/5") {
                    return line;
                }
            }
            String::new()
        })
        .await
        .expect("kubectl get --watch did not stream the change");
        assert!(seen.contains("web"), "{seen}");
        child.kill().await.unwrap();
        env.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_set_image_and_rollout_status() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        let out = env
            .ok(&["scale", "deploy/web", "-n", "shop", "--replicas=6"])
            .await;
        assert!(out.contains("scaled"), "{out}");
        env.wait_ready("web", 6).await;
        env.ok(&[
            "set",
            "image",
            "deploy/web",
            "-n",
            "shop",
            "web=registry.local/web:2.0.0",
        ])
        .await;
        assert_eq!(env.template_image(), "registry.local/web:2.0.0");
        let status = env
            .ok(&[
                "rollout",
                "status",
                "deploy/web",
                "-n",
                "shop",
                "--timeout=80s",
            ])
            .await;
        assert!(status.contains("successfully rolled out"), "{status}");
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=web"])
            .await;
        // `rollout status` does not wait for the old pods to finish terminating (upstream
        // neither): those still in their grace period are listed, Terminating.
        let live: Vec<&serde_json::Value> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
            .collect();
        assert!(!live.is_empty());
        assert!(
            live.iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "registry.local/web:2.0.0"),
            "{pods}"
        );
        assert!(env.sim.invariants().violations().is_empty());
        env.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_history_undo_and_restart() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        let history = env
            .ok(&["rollout", "history", "deploy/web", "-n", "shop"])
            .await;
        assert!(history.contains("1         release 1.0.0"), "{history}");
        assert!(history.contains("2         release 1.1.0"), "{history}");

        env.ok(&["rollout", "undo", "deploy/web", "-n", "shop"])
            .await;
        assert_eq!(env.template_image(), "registry.local/web:1.0.0");
        env.ok(&[
            "rollout",
            "status",
            "deploy/web",
            "-n",
            "shop",
            "--timeout=80s",
        ])
        .await;
        // The restored template becomes revision 3; revision 1 is gone, as on a real cluster.
        let history = env
            .ok(&["rollout", "history", "deploy/web", "-n", "shop"])
            .await;
        assert!(history.contains("3         release 1.0.0"), "{history}");
        assert!(!history.contains("1         release 1.0.0"), "{history}");

        env.ok(&[
            "rollout",
            "undo",
            "deploy/web",
            "-n",
            "shop",
            "--to-revision=2",
        ])
        .await;
        assert_eq!(env.template_image(), "registry.local/web:1.1.0");
        env.ok(&[
            "rollout",
            "status",
            "deploy/web",
            "-n",
            "shop",
            "--timeout=80s",
        ])
        .await;
        let history = env
            .ok(&["rollout", "history", "deploy/web", "-n", "shop"])
            .await;
        assert!(history.contains("4         release 1.1.0"), "{history}");

        env.ok(&["rollout", "restart", "deploy/web", "-n", "shop"])
            .await;
        let d = env.json(&["get", "deploy", "web", "-n", "shop"]).await;
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_string()
        );
        env.ok(&[
            "rollout",
            "status",
            "deploy/web",
            "-n",
            "shop",
            "--timeout=80s",
        ])
        .await;
        let history = env
            .ok(&["rollout", "history", "deploy/web", "-n", "shop"])
            .await;
        assert!(history.contains("5 "), "{history}");
        assert!(env.sim.invariants().violations().is_empty());
        env.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_uncordon_and_drain_respecting_the_pdb() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        env.ok(&["cordon", "zone-b-node-1"]).await;
        let node = env.json(&["get", "node", "zone-b-node-1"]).await;
        assert_eq!(node["spec"]["unschedulable"], true);
        let nodes = env.ok(&["get", "nodes"]).await;
        assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
        env.ok(&["uncordon", "zone-b-node-1"]).await;
        let node = env.json(&["get", "node", "zone-b-node-1"]).await;
        assert_ne!(node["spec"]["unschedulable"], true);

        // Drain the node with the most web pods (two of four, as the scheduler spreads them
        // over the zones): the PDB allows one disruption, so the second eviction must wait.
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=web"])
            .await;
        let mut per_node: std::collections::BTreeMap<String, usize> = Default::default();
        for p in pods["items"].as_array().unwrap() {
            *per_node
                .entry(p["spec"]["nodeName"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let (node, count) = per_node.iter().max_by_key(|(_, c)| **c).unwrap();
        assert!(*count >= 2, "{per_node:?}");
        let out = env
            .ok(&[
                "drain",
                node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=80s",
            ])
            .await;
        assert!(out.contains("drained"), "{out}");
        let field = format!("spec.nodeName={node}");
        let left = env
            .json(&["get", "pods", "-n", "shop", "--field-selector", &field])
            .await;
        assert_eq!(left["items"].as_array().unwrap().len(), 0);
        let evictions: Vec<u16> = env
            .sim
            .request_log()
            .iter()
            .filter(|r| r.path.ends_with("/eviction"))
            .map(|r| r.status)
            .collect();
        assert!(
            evictions.contains(&429),
            "the PDB should have held back an eviction: {evictions:?}"
        );
        assert!(
            evictions.iter().filter(|s| **s == 201).count() >= 2,
            "{evictions:?}"
        );
        env.wait_ready("web", 4).await;
        let violations = env.sim.invariants().violations();
        assert!(violations.is_empty(), "{violations:?}");
        env.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_and_stale_replace() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        let cm = env.dir.path().join("cm.yaml");
        std::fs::write(
            &cm,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  a: \"1\"\n  b: \"2\"\n",
        )
        .unwrap();
        let out = env
            .ok(&["apply", "--server-side", "-f", cm.to_str().unwrap()])
            .await;
        assert!(out.contains("serverside-applied"), "{out}");
        std::fs::write(
            &cm,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  a: \"3\"\n",
        )
        .unwrap();
        env.ok(&["apply", "--server-side", "-f", cm.to_str().unwrap()])
            .await;
        let got = env
            .json(&[
                "get",
                "cm",
                "settings",
                "-n",
                "shop",
                "--show-managed-fields",
            ])
            .await;
        assert_eq!(
            got["data"],
            json!({"a": "3"}),
            "field b is no longer applied"
        );
        assert_eq!(got["metadata"]["managedFields"][0]["manager"], "kubectl");

        let stale = env.dir.path().join("stale.yaml");
        let yaml = env
            .ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"])
            .await;
        std::fs::write(&stale, yaml).unwrap();
        env.ok(&["scale", "deploy/web", "-n", "shop", "--replicas=5"])
            .await;
        let out = env.run(&["replace", "-f", stale.to_str().unwrap()]).await;
        assert!(!out.ok, "a stale replace must fail");
        assert!(
            out.stderr.contains("Error from server (Conflict)")
                && out.stderr.contains("the object has been modified"),
            "{}",
            out.stderr
        );
        env.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_wait_and_delete() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=web"])
            .await;
        let pod = pods["items"][0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let logs = env.run(&["logs", "-n", "shop", &pod]).await;
        assert!(logs.ok, "{}", logs.stderr);
        let available = env
            .ok(&[
                "wait",
                "-n",
                "shop",
                "--for=condition=Available",
                "deploy/web",
                "--timeout=60s",
            ])
            .await;
        assert!(available.contains("condition met"), "{available}");
        let deleted = env
            .ok(&["delete", "pod", "-n", "shop", &pod, "--timeout=60s"])
            .await;
        assert!(deleted.contains("deleted"), "{deleted}");
        let gone = env.run(&["get", "pod", "-n", "shop", &pod]).await;
        assert!(
            !gone.ok && gone.stderr.contains("NotFound"),
            "{}",
            gone.stderr
        );
        env.wait_ready("web", 4).await;
        env.sim.shutdown().await;
    }
}

/// Issue 15: deletion like a real API server. Server dry-runs (`delete`, `drain`, `create` of
/// an existing name) change nothing; a deleted pod stays Terminating for its grace period and
/// `kubectl wait --for=delete` sees it go; `--cascade=orphan` keeps the dependents and
/// `--cascade=foreground` takes them first; a Terminating namespace refuses new content (403)
/// and goes once a finalizer holding its last object is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue15_graceful_deletion_dry_run_cascades_and_terminating_namespaces() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=web"])
            .await;
        let first = &pods["items"][0];
        let pod = first["metadata"]["name"].as_str().unwrap().to_string();
        let uid = first["metadata"]["uid"].clone();
        let node = first["spec"]["nodeName"].as_str().unwrap().to_string();

        // Server-side dry runs delete nothing.
        env.ok(&["delete", "pod", "-n", "shop", &pod, "--dry-run=server"])
            .await;
        env.ok(&[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--dry-run=server",
        ])
        .await;
        let still = env.json(&["get", "pod", "-n", "shop", &pod]).await;
        assert_eq!(still["metadata"]["uid"], uid);
        assert!(still["metadata"].get("deletionTimestamp").is_none());
        let evictions = env
            .sim
            .request_log()
            .iter()
            .filter(|r| r.path.ends_with("/eviction"))
            .count();
        assert!(evictions > 0, "the dry-run drain sends dry-run evictions");
        let web = env.dir.path().join("web.yaml");
        let yaml = env
            .ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"])
            .await;
        std::fs::write(&web, yaml).unwrap();
        let dup = env
            .run(&["create", "-f", web.to_str().unwrap(), "--dry-run=server"])
            .await;
        assert!(
            !dup.ok && dup.stderr.contains("AlreadyExists"),
            "{}",
            dup.stderr
        );

        // Graceful deletion: Terminating for the grace period, then gone.
        env.ok(&[
            "delete",
            "pod",
            "-n",
            "shop",
            &pod,
            "--grace-period=60",
            "--wait=false",
        ])
        .await;
        let terminating = env.json(&["get", "pod", "-n", "shop", &pod]).await;
        assert!(
            terminating["metadata"]["deletionTimestamp"].is_string(),
            "{terminating}"
        );
        assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 60);
        let table = env.ok(&["get", "pod", "-n", "shop", &pod]).await;
        assert!(table.contains("Terminating"), "{table}");
        let waited = env
            .ok(&[
                "wait",
                "--for=delete",
                &format!("pod/{pod}"),
                "-n",
                "shop",
                "--timeout=60s",
            ])
            .await;
        assert!(
            waited.contains("condition met") || waited.contains("deleted"),
            "{waited}"
        );
        env.wait_ready("web", 4).await;

        // --cascade=orphan keeps the ReplicaSets and pods, without owner references.
        env.ok(&[
            "delete",
            "deployment",
            "web",
            "-n",
            "shop",
            "--cascade=orphan",
        ])
        .await;
        let sets = env
            .json(&["get", "replicasets", "-n", "shop", "-l", "app=web"])
            .await;
        let sets = sets["items"].as_array().unwrap();
        assert!(!sets.is_empty());
        for rs in sets {
            assert!(
                rs["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(Vec::is_empty),
                "{rs}"
            );
        }
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=web"])
            .await;
        assert_eq!(pods["items"].as_array().unwrap().len(), 4);

        // --cascade=foreground: kubectl waits until the pods went first.
        env.ok(&[
            "delete",
            "replicasets",
            "-n",
            "shop",
            "-l",
            "app=web",
            "--cascade=foreground",
            "--timeout=60s",
        ])
        .await;
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=web"])
            .await;
        assert_eq!(pods["items"], json!([]), "{pods}");

        // A Terminating namespace: 403 for new content; a finalizer holds it.
        // (`-f` files: kubectl's typed `create` subcommands send protobuf.)
        let file = |name: &str, text: &str| {
            let path = env.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_string()
        };
        let ns_file = file(
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scratch\n",
        );
        let held_file = file(
            "held.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: scratch\n",
        );
        let new_file = file(
            "new.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: new\n  namespace: scratch\n",
        );
        env.ok(&["create", "-f", &ns_file]).await;
        env.ok(&["create", "-f", &held_file]).await;
        env.ok(&[
            "patch",
            "configmap",
            "held",
            "-n",
            "scratch",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        ])
        .await;
        env.ok(&["delete", "namespace", "scratch", "--wait=false"])
            .await;
        let ns = env.json(&["get", "namespace", "scratch"]).await;
        assert_eq!(ns["status"]["phase"], "Terminating", "{ns}");
        let refused = env.run(&["create", "-f", &new_file]).await;
        assert!(
            !refused.ok
                && refused.stderr.contains("Forbidden")
                && refused.stderr.contains("because it is being terminated"),
            "{}",
            refused.stderr
        );
        let held = env
            .json(&["get", "configmap", "held", "-n", "scratch"])
            .await;
        assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
        env.ok(&[
            "patch",
            "configmap",
            "held",
            "-n",
            "scratch",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ])
        .await;
        env.ok(&["wait", "--for=delete", "namespace/scratch", "--timeout=60s"])
            .await;
        env.sim.shutdown().await;
    }
}

/// Issue 15: kubectl's writes (`set image`, `rollout restart`, `taint`) record their field
/// managers, so `apply --server-side` of a different image conflicts with `kubectl-set` until
/// forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue15_kubectl_writes_own_fields_and_server_side_apply_conflicts() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        env.ok(&[
            "set",
            "image",
            "deploy/web",
            "-n",
            "shop",
            "web=registry.local/web:2.0.0",
        ])
        .await;
        env.ok(&["rollout", "restart", "deploy/web", "-n", "shop"])
            .await;
        env.ok(&[
            "taint",
            "nodes",
            "zone-a-node-1",
            "dedicated=ops:NoSchedule",
        ])
        .await;
        let d = env
            .json(&[
                "get",
                "deploy",
                "web",
                "-n",
                "shop",
                "--show-managed-fields",
            ])
            .await;
        let managers: Vec<&str> = d["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert!(
            managers.contains(&"kubectl-set") && managers.contains(&"kubectl-rollout"),
            "{managers:?}"
        );
        let node = env
            .json(&["get", "node", "zone-a-node-1", "--show-managed-fields"])
            .await;
        assert!(
            node["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["manager"] == "kubectl-taint"),
            "{node}"
        );
        let applied = env.dir.path().join("web-apply.yaml");
        std::fs::write(
            &applied,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: registry.local/web:3.0.0\n",
        )
        .unwrap();
        let out = env
            .run(&["apply", "--server-side", "-f", applied.to_str().unwrap()])
            .await;
        assert!(!out.ok, "the apply must conflict");
        assert!(
            out.stderr.contains("conflict with \"kubectl-set\""),
            "{}",
            out.stderr
        );
        env.ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            applied.to_str().unwrap(),
        ])
        .await;
        assert_eq!(env.template_image(), "registry.local/web:3.0.0");
        env.sim.shutdown().await;
    }
}

/// The revision numbers `kubectl rollout history` lists.
fn history_revisions(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// Issue 15: DaemonSets keep ControllerRevisions, and StatefulSets create ordered pods and
/// report `observedGeneration` and revisions, so `kubectl rollout status/history/undo/restart`
/// work on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue15_daemonset_and_statefulset_rollouts() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        let ds = ["-n", "kube-system"];
        let image_of = |v: &Value| {
            v["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        env.ok(&[
            "set",
            "image",
            "ds/log-agent",
            ds[0],
            ds[1],
            "log-agent=registry.local/log-agent:2.2.0",
        ])
        .await;
        env.ok(&[
            "rollout",
            "status",
            "ds/log-agent",
            ds[0],
            ds[1],
            "--timeout=60s",
        ])
        .await;
        let history = env
            .ok(&["rollout", "history", "ds/log-agent", ds[0], ds[1]])
            .await;
        assert_eq!(history_revisions(&history), ["1", "2"], "{history}");
        let undo = env
            .ok(&["rollout", "undo", "ds/log-agent", ds[0], ds[1]])
            .await;
        assert!(undo.contains("rolled back"), "{undo}");
        env.ok(&[
            "rollout",
            "status",
            "ds/log-agent",
            ds[0],
            ds[1],
            "--timeout=60s",
        ])
        .await;
        let got = env.json(&["get", "ds", "log-agent", ds[0], ds[1]]).await;
        assert_eq!(image_of(&got), "registry.local/log-agent:2.1.0");
        let history = env
            .ok(&["rollout", "history", "ds/log-agent", ds[0], ds[1]])
            .await;
        assert_eq!(history_revisions(&history), ["2", "3"], "{history}");

        // A StatefulSet: ordered pods, status, history, undo, restart.
        let file = env.dir.path().join("db.yaml");
        std::fs::write(
            &file,
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  serviceName: db\n  replicas: 3\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n        - name: db\n          image: registry.local/db:1\n",
        )
        .unwrap();
        env.ok(&["create", "-f", file.to_str().unwrap()]).await;
        let status = env
            .ok(&["rollout", "status", "sts/db", "-n", "shop", "--timeout=60s"])
            .await;
        assert!(status.contains("complete"), "{status}");
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=db"])
            .await;
        let mut names: Vec<&str> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str())
            .collect();
        names.sort();
        assert_eq!(names, ["db-0", "db-1", "db-2"]);
        let sts = env.json(&["get", "sts", "db", "-n", "shop"]).await;
        assert_eq!(
            sts["status"]["observedGeneration"],
            sts["metadata"]["generation"]
        );
        assert_eq!(sts["status"]["readyReplicas"], 3);

        env.ok(&[
            "set",
            "image",
            "sts/db",
            "-n",
            "shop",
            "db=registry.local/db:2",
        ])
        .await;
        env.ok(&["rollout", "status", "sts/db", "-n", "shop", "--timeout=60s"])
            .await;
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=db"])
            .await;
        for p in pods["items"].as_array().unwrap() {
            assert_eq!(
                p["spec"]["containers"][0]["image"], "registry.local/db:2",
                "{p}"
            );
        }
        let history = env
            .ok(&["rollout", "history", "sts/db", "-n", "shop"])
            .await;
        assert_eq!(history_revisions(&history), ["1", "2"], "{history}");
        env.ok(&["rollout", "undo", "sts/db", "-n", "shop"]).await;
        env.ok(&["rollout", "status", "sts/db", "-n", "shop", "--timeout=60s"])
            .await;
        let got = env.json(&["get", "sts", "db", "-n", "shop"]).await;
        assert_eq!(image_of(&got), "registry.local/db:1");
        env.ok(&["rollout", "restart", "sts/db", "-n", "shop"])
            .await;
        env.ok(&["rollout", "status", "sts/db", "-n", "shop", "--timeout=60s"])
            .await;
        let pods = env
            .json(&["get", "pods", "-n", "shop", "-l", "app=db"])
            .await;
        assert_eq!(pods["items"].as_array().unwrap().len(), 3);
        for p in pods["items"].as_array().unwrap() {
            assert_eq!(
                p["spec"]["containers"][0]["image"], "registry.local/db:1",
                "{p}"
            );
            assert!(
                p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
                "{p}"
            );
        }
        env.sim.shutdown().await;
    }
}

/// Issue 16: readiness gates as kubectl sees them. A template gaining a readiness gate rolls
/// out pods that stay not Ready (`READINESS GATES 0/1` in `-o wide`) until the condition is
/// written through `kubectl patch --subresource=status`; then `1/1` and Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_readiness_gate_column_and_status_patch() {
    for kubectl in kubectls() {
        let env = Env::start(&kubectl).await;
        env.ok(&[
            "patch", "deployment", "web", "-n", "shop", "--type=json", "-p",
            r#"[{"op":"add","path":"/spec/template/spec/readinessGates","value":[{"conditionType":"ripcord.dev/warmed"}]}]"#,
        ])
        .await;
        // The rollout's first surge pod: containers ready, held back by the gate.
        let mut gated = String::new();
        for _ in 0..300 {
            let pods = env
                .json(&["get", "pods", "-n", "shop", "-l", "app=web"])
                .await;
            let found = pods["items"].as_array().into_iter().flatten().find(|p| {
                p["spec"]["readinessGates"].is_array()
                    && p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "ContainersReady" && c["status"] == "True")
                    })
            });
            if let Some(p) = found {
                gated = p["metadata"]["name"].as_str().unwrap().to_string();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!gated.is_empty(), "no gated pod with ready containers");
        let wide = env
            .ok(&["get", "pod", &gated, "-n", "shop", "-o", "wide"])
            .await;
        let header = wide.lines().next().unwrap();
        assert!(header.contains("READINESS GATES"), "{wide}");
        let row = wide.lines().nth(1).unwrap();
        assert!(row.trim_end().ends_with("0/1"), "{wide}");
        let reason = env
            .ok(&[
                "get",
                "pod",
                &gated,
                "-n",
                "shop",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].reason}"#,
            ])
            .await;
        assert_eq!(reason, "ReadinessGatesNotReady");
        env.ok(&[
            "patch", "pod", &gated, "-n", "shop", "--subresource=status", "--type=strategic", "-p",
            r#"{"status":{"conditions":[{"type":"ripcord.dev/warmed","status":"True","reason":"Test"}]}}"#,
        ])
        .await;
        let mut ready = String::new();
        for _ in 0..100 {
            ready = env
                .ok(&[
                    "get",
                    "pod",
                    &gated,
                    "-n",
                    "shop",
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
                ])
                .await;
            if ready == "True" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ready, "True");
        let wide = env
            .ok(&["get", "pod", &gated, "-n", "shop", "-o", "wide"])
            .await;
        assert!(
            wide.lines().nth(1).unwrap().trim_end().ends_with("1/1"),
            "{wide}"
        );
        env.sim.shutdown().await;
    }
}
