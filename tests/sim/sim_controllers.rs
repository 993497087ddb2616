//! The simulated controllers driven directly through the store (no HTTP): scaling, rolling
//! updates within maxSurge/maxUnavailable, revision numbering across update and undo, a bad
//! release hitting its progress deadline, PDB-checked evictions, scheduling around cordoned
//! nodes, garbage collection, crash loops, pause, history limits, endpoints and metrics.
//!
//! Time is tokio's paused clock, so simulated minutes pass instantly and deterministically.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use std::time::Duration;

use serde_json::{Value, json};

use ripcord::sim::clock::SimClock;
use ripcord::sim::controllers::{self, util};
use ripcord::sim::eviction::{self, EvictionError};
use ripcord::sim::invariants::{InvariantMonitor, ViolationKind};
use ripcord::sim::scenario::Scenario;
use ripcord::sim::service_metrics;
use ripcord::sim::store::{Store, kinds};

struct Sim {
    store: Store,
    monitor: InvariantMonitor,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn start(yaml: &str) -> Sim {
    let scenario = Scenario::from_yaml("test", yaml).expect("valid scenario");
    start_scenario(&scenario)
}

fn start_scenario(scenario: &Scenario) -> Sim {
    let store = Store::new(SimClock::new(scenario.settings().time_factor));
    scenario.load_into(&store).expect("scenario loads");
    let monitor = InvariantMonitor::new();
    let handle = controllers::spawn(store.clone(), scenario.settings().clone(), monitor.clone());
    Sim {
        store,
        monitor,
        handle,
    }
}

impl Sim {
    async fn wait_for(&self, what: &str, simulated: Duration, f: impl Fn(&Store) -> bool) {
        let clock = self.store.clock().clone();
        let deadline = clock.now() + jiff::SignedDuration::try_from(simulated).expect("duration");
        loop {
            if f(&self.store) {
                return;
            }
            if clock.now() > deadline {
                let (pods, _) = self.store.list(&kinds::pods(), Some("shop"));
                let summary: Vec<String> = pods
                    .iter()
                    .map(|p| {
                        format!(
                            "{} {} ready={}",
                            util::name(p),
                            util::str_at(p, &["status", "phase"]).unwrap_or("?"),
                            util::is_pod_ready(p)
                        )
                    })
                    .collect();
                panic!("timed out waiting for {what}; pods: {summary:#?}");
            }
            clock.sleep(Duration::from_secs(1)).await;
        }
    }

    async fn advance(&self, simulated: Duration) {
        self.store.clock().sleep(simulated).await;
    }

    fn deployment(&self, name: &str) -> Value {
        self.store
            .get(&kinds::deployments(), Some("shop"), name)
            .expect("deployment exists")
    }

    fn replica_sets(&self, deployment: &str) -> Vec<Value> {
        let d = self.deployment(deployment);
        let (all, _) = self.store.list(&kinds::replicasets(), Some("shop"));
        all.into_iter()
            .filter(|rs| util::is_controlled_by(rs, util::uid(&d)))
            .collect()
    }

    fn pods_of(&self, app: &str) -> Vec<Value> {
        let (pods, _) = self.store.list(&kinds::pods(), Some("shop"));
        pods.into_iter()
            .filter(|p| util::str_at(p, &["metadata", "labels", "app"]) == Some(app))
            .collect()
    }

    fn set_image(&self, deployment: &str, image: &str) {
        self.store
            .modify(&kinds::deployments(), Some("shop"), deployment, |d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
                Ok(())
            })
            .expect("set image");
    }

    fn scale(&self, deployment: &str, replicas: i64) {
        self.store
            .modify(&kinds::deployments(), Some("shop"), deployment, |d| {
                d["spec"]["replicas"] = json!(replicas);
                Ok(())
            })
            .expect("scale");
    }
}

/// What `kubectl rollout status` checks.
fn rolled_out(d: &Value) -> bool {
    let i = |p: &[&str]| util::i64_at(d, p).unwrap_or(0);
    let replicas = i(&["spec", "replicas"]);
    i(&["metadata", "generation"]) <= i(&["status", "observedGeneration"])
        && i(&["status", "updatedReplicas"]) == replicas
        && i(&["status", "replicas"]) == replicas
        && i(&["status", "availableReplicas"]) == replicas
}

fn progressing_reason(d: &Value) -> String {
    util::pod_condition(d, "Progressing")
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn revision(obj: &Value) -> Option<String> {
    util::annotation(obj, "deployment.kubernetes.io/revision").map(str::to_string)
}

fn scenario_yaml(replicas: i64, strategy: &str, extra: &str) -> String {
    format!(
        "settings: {{timeFactor: 10, podReadyDelaySeconds: 5, podStartDelaySeconds: 1}}
zones:
  - {{name: zone-a, nodes: 2}}
  - {{name: zone-b, nodes: 2}}
  - {{name: zone-c, nodes: 2}}
namespaces: [shop]
deployments:
  - namespace: shop
    name: web
    replicas: {replicas}
    strategy: {strategy}
    releases:
      - image: registry.local/web:1
{extra}"
    )
}

#[tokio::test(start_paused = true)]
async fn scale_up_spreads_over_zones_and_scale_down_removes_pods() {
    let sim = start(&scenario_yaml(3, "{type: RollingUpdate}", ""));
    sim.advance(Duration::from_secs(10)).await;
    assert!(
        rolled_out(&sim.deployment("web")),
        "{:#}",
        sim.deployment("web")
    );
    sim.scale("web", 6);
    sim.wait_for("6 ready replicas", Duration::from_secs(120), |s| {
        s.get(&kinds::deployments(), Some("shop"), "web")
            .is_some_and(|d| {
                rolled_out(&d) && util::i64_at(&d, &["status", "readyReplicas"]) == Some(6)
            })
    })
    .await;
    let pods = sim.pods_of("web");
    assert_eq!(pods.len(), 6);
    let mut per_zone = std::collections::BTreeMap::new();
    for p in &pods {
        let node = util::str_at(p, &["spec", "nodeName"]).expect("scheduled");
        let zone = node.split("-node-").next().unwrap_or("").to_string();
        *per_zone.entry(zone).or_insert(0) += 1;
        assert!(util::str_at(p, &["status", "podIP"]).is_some_and(|ip| ip.starts_with("10.244.")));
        assert!(
            util::name(p).starts_with(&format!("{}-", util::name(&sim.replica_sets("web")[0])))
        );
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<i32>>(),
        vec![2, 2, 2],
        "{per_zone:?}"
    );
    sim.scale("web", 2);
    sim.wait_for("2 pods", Duration::from_secs(60), |_| {
        sim.pods_of("web").len() == 2
    })
    .await;
    let d = sim.deployment("web");
    assert!(rolled_out(&d));
    assert_eq!(util::i64_at(&d, &["status", "replicas"]), Some(2));
    assert!(sim.monitor.is_clean(), "{:?}", sim.monitor.violations());
}

async fn rolling_update_bounds(surge: i64, unavailable: i64) {
    let strategy =
        format!("{{type: RollingUpdate, maxSurge: {surge}, maxUnavailable: {unavailable}}}");
    let sim = start(&scenario_yaml(4, &strategy, ""));
    sim.advance(Duration::from_secs(10)).await;
    let since = sim.store.clock().now();
    sim.set_image("web", "registry.local/web:2");
    sim.wait_for("rollout complete", Duration::from_secs(600), |s| {
        s.get(&kinds::deployments(), Some("shop"), "web")
            .is_some_and(|d| {
                rolled_out(&d)
                    && util::i64_at(&d, &["status", "readyReplicas"]) == Some(4)
                    && progressing_reason(&d) == "NewReplicaSetAvailable"
            })
    })
    .await;
    let history = sim.monitor.history_of("shop", "web");
    let during: Vec<_> = history.iter().filter(|s| s.time >= since).collect();
    assert!(during.len() >= 4, "the rollout was sampled: {during:?}");
    let min_ready = sim
        .monitor
        .min_ready_since("shop", "web", since)
        .expect("samples");
    assert!(
        min_ready >= (4 - unavailable) as u32,
        "ready dipped to {min_ready}: {during:?}"
    );
    let max_total = during
        .iter()
        .map(|s| s.ready + s.unready)
        .max()
        .unwrap_or(0);
    assert!(
        max_total <= (4 + surge) as u32,
        "{max_total} pods at once: {during:?}"
    );
    // Every live pod runs the new image (old ones may still be Terminating).
    for p in sim.pods_of("web").iter().filter(|p| util::is_pod_active(p)) {
        assert_eq!(p["spec"]["containers"][0]["image"], "registry.local/web:2");
    }
    assert!(sim.monitor.is_clean());
}

#[tokio::test(start_paused = true)]
async fn rolling_update_with_surge_never_drops_below_desired() {
    rolling_update_bounds(1, 0).await;
}

#[tokio::test(start_paused = true)]
async fn rolling_update_with_max_unavailable_never_exceeds_it() {
    rolling_update_bounds(0, 1).await;
}

#[tokio::test(start_paused = true)]
async fn revisions_follow_update_then_undo_like_kubectl_shows() {
    let sim = start(&scenario_yaml(
        2,
        "{type: RollingUpdate, maxSurge: 1, maxUnavailable: 0}",
        "",
    ));
    sim.advance(Duration::from_secs(10)).await;
    assert_eq!(revision(&sim.deployment("web")).as_deref(), Some("1"));
    let first_rs = sim.replica_sets("web").pop().expect("one RS");
    assert_eq!(revision(&first_rs).as_deref(), Some("1"));
    let hash = util::str_at(&first_rs, &["metadata", "labels", "pod-template-hash"])
        .expect("hash")
        .to_string();
    assert_eq!(util::name(&first_rs), format!("web-{hash}"));

    sim.set_image("web", "registry.local/web:2");
    sim.wait_for("rev 2 rolled out", Duration::from_secs(300), |s| {
        s.get(&kinds::deployments(), Some("shop"), "web")
            .is_some_and(|d| rolled_out(&d) && revision(&d).as_deref() == Some("2"))
    })
    .await;
    let second = sim
        .replica_sets("web")
        .into_iter()
        .find(|rs| util::name(rs) != util::name(&first_rs))
        .expect("a second RS");
    assert_eq!(revision(&second).as_deref(), Some("2"));
    assert_eq!(
        util::annotation(&second, "deployment.kubernetes.io/desired-replicas"),
        Some("2")
    );
    assert_eq!(
        util::annotation(&second, "deployment.kubernetes.io/max-replicas"),
        Some("3")
    );

    // `kubectl rollout undo`: the previous revision's template, without its hash label.
    let mut template = first_rs["spec"]["template"].clone();
    template["metadata"]["labels"]
        .as_object_mut()
        .expect("labels")
        .remove("pod-template-hash");
    sim.store
        .modify(&kinds::deployments(), Some("shop"), "web", |d| {
            d["spec"]["template"] = template;
            Ok(())
        })
        .expect("undo");
    sim.wait_for("undo rolled out", Duration::from_secs(300), |s| {
        s.get(&kinds::deployments(), Some("shop"), "web")
            .is_some_and(|d| rolled_out(&d) && revision(&d).as_deref() == Some("3"))
    })
    .await;
    let sets = sim.replica_sets("web");
    assert_eq!(sets.len(), 2, "undo re-uses the old ReplicaSet");
    let reused = sets
        .iter()
        .find(|rs| util::name(rs) == util::name(&first_rs))
        .expect("old RS kept");
    assert_eq!(revision(reused).as_deref(), Some("3"));
    assert_eq!(
        util::annotation(reused, "deployment.kubernetes.io/revision-history"),
        Some("1")
    );
    assert_eq!(util::i64_at(reused, &["spec", "replicas"]), Some(2));
    let other = sets
        .iter()
        .find(|rs| util::name(rs) == util::name(&second))
        .expect("rev 2 kept");
    assert_eq!(revision(other).as_deref(), Some("2"));
    assert_eq!(util::i64_at(other, &["spec", "replicas"]), Some(0));
    // `kubectl rollout history` would list revisions 2 and 3.
    let mut revisions: Vec<String> = sets.iter().filter_map(revision).collect();
    revisions.sort();
    assert_eq!(revisions, ["2", "3"]);
    for p in sim.pods_of("web").iter().filter(|p| util::is_pod_active(p)) {
        assert_eq!(p["spec"]["containers"][0]["image"], "registry.local/web:1");
    }
}

#[tokio::test(start_paused = true)]
async fn bad_release_never_completes_and_exceeds_its_progress_deadline() {
    let sim = start_scenario(&Scenario::demo());
    sim.wait_for("ProgressDeadlineExceeded", Duration::from_secs(600), |s| {
        s.get(&kinds::deployments(), Some("shop"), "checkout")
            .is_some_and(|d| progressing_reason(&d) == "ProgressDeadlineExceeded")
    })
    .await;
    let d = sim.deployment("checkout");
    assert!(!rolled_out(&d));
    assert_eq!(revision(&d).as_deref(), Some("2"));
    let status = |k: &str| util::i64_at(&d, &["status", k]).unwrap_or(-1);
    // maxSurge 25% of 4 = 1, maxUnavailable 25% = 1: the rollout stalls at 3 old + 2 new.
    assert_eq!(status("readyReplicas"), 3, "{d:#}");
    assert_eq!(status("updatedReplicas"), 2, "{d:#}");
    assert_eq!(status("replicas"), 5, "{d:#}");
    assert_eq!(status("unavailableReplicas"), 2, "{d:#}");
    let cond = util::pod_condition(&d, "Progressing").expect("condition");
    assert_eq!(cond["status"], "False");
    assert!(
        cond["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("has timed out progressing.")),
        "{cond}"
    );
    let available = util::pod_condition(&d, "Available").expect("condition");
    assert_eq!(available["reason"], "MinimumReplicasAvailable");
    // The bad pods run but are never ready.
    let bad: Vec<Value> = sim
        .pods_of("checkout")
        .into_iter()
        .filter(|p| p["spec"]["containers"][0]["image"] == "registry.local/checkout:1.5.0")
        .collect();
    assert_eq!(bad.len(), 2);
    assert!(
        bad.iter()
            .all(|p| !util::is_pod_ready(p) && p["status"]["phase"] == "Running")
    );
    let (events, _) = sim.store.list(&kinds::events(), Some("shop"));
    assert!(events.iter().any(|e| {
        e["reason"] == "Unhealthy"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Readiness probe failed"))
    }));
    assert!(events.iter().any(|e| e["reason"] == "ScalingReplicaSet"));
    // Service metrics: the bad release drives the error ratio up.
    let metrics = service_metrics::render(&sim.store, &sim.monitor);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "{name}{{namespace=\"shop\",deployment=\"checkout\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (requests, errors) = (
        value("sim_http_requests_total"),
        value("sim_http_errors_total"),
    );
    assert!(requests > 0.0, "{metrics}");
    assert!(errors / requests > 0.3, "{metrics}");
}

#[tokio::test(start_paused = true)]
async fn eviction_is_refused_by_the_pdb_with_the_real_message() {
    let extra = "podDisruptionBudgets:\n  - {namespace: shop, name: web, selector: {app: web}, minAvailable: 4}\n";
    let sim = start(&scenario_yaml(6, "{type: RollingUpdate}", extra));
    sim.wait_for("pdb status", Duration::from_secs(30), |s| {
        s.get(&kinds::pod_disruption_budgets(), Some("shop"), "web")
            .is_some_and(|p| util::i64_at(&p, &["status", "disruptionsAllowed"]) == Some(2))
    })
    .await;
    let pods = sim.pods_of("web");
    eviction::evict(&sim.store, &sim.monitor, "shop", util::name(&pods[0])).expect("1st allowed");
    eviction::evict(&sim.store, &sim.monitor, "shop", util::name(&pods[1])).expect("2nd allowed");
    let err = eviction::evict(&sim.store, &sim.monitor, "shop", util::name(&pods[2]))
        .expect_err("3rd refused");
    assert!(
        matches!(err, EvictionError::DisruptionNotAllowed { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), 429);
    assert_eq!(
        err.to_string(),
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert!(matches!(
        eviction::evict(&sim.store, &sim.monitor, "shop", "no-such-pod"),
        Err(EvictionError::NotFound { .. })
    ));
    sim.advance(Duration::from_secs(1)).await;
    assert!(sim.monitor.is_clean(), "{:?}", sim.monitor.violations());
    // Deleting a healthy pod behind the budget's back is recorded.
    sim.store
        .delete(&kinds::pods(), Some("shop"), util::name(&pods[3]))
        .expect("delete");
    sim.wait_for("violation recorded", Duration::from_secs(5), |_| {
        !sim.monitor.is_clean()
    })
    .await;
    let v = sim.monitor.violations();
    assert_eq!(v[0].kind, ViolationKind::PdbViolated);
    assert_eq!(v[0].name, "web");
    // Once replacements are ready, evictions are allowed again.
    sim.wait_for("budget restored", Duration::from_secs(120), |s| {
        s.get(&kinds::pod_disruption_budgets(), Some("shop"), "web")
            .is_some_and(|p| util::i64_at(&p, &["status", "disruptionsAllowed"]) == Some(2))
    })
    .await;
    let pods = sim.pods_of("web");
    eviction::evict(&sim.store, &sim.monitor, "shop", util::name(&pods[0])).expect("allowed again");
}

#[tokio::test(start_paused = true)]
async fn scheduling_never_uses_cordoned_nodes_but_daemonsets_do() {
    let extra = "daemonSets:\n  - {namespace: shop, name: agent, image: registry.local/agent:1}\n";
    let sim = start(&scenario_yaml(3, "{type: RollingUpdate}", extra));
    for node in ["zone-a-node-1", "zone-a-node-2"] {
        sim.store
            .modify(&kinds::nodes(), None, node, |n| {
                n["spec"]["unschedulable"] = json!(true);
                Ok(())
            })
            .expect("cordon");
    }
    sim.scale("web", 9);
    sim.wait_for("9 ready", Duration::from_secs(120), |s| {
        s.get(&kinds::deployments(), Some("shop"), "web")
            .is_some_and(|d| util::i64_at(&d, &["status", "readyReplicas"]) == Some(9))
    })
    .await;
    let new_on_cordoned = sim
        .pods_of("web")
        .into_iter()
        .filter(|p| util::str_at(p, &["spec", "nodeName"]).is_some_and(|n| n.starts_with("zone-a")))
        .count();
    assert!(
        new_on_cordoned <= 1,
        "at most the one pod placed before cordoning: {new_on_cordoned}"
    );
    let node = sim
        .store
        .get(&kinds::nodes(), None, "zone-a-node-1")
        .expect("node");
    assert_eq!(
        node["spec"]["taints"][0]["key"],
        "node.kubernetes.io/unschedulable"
    );
    // One agent per node, cordoned ones included.
    sim.wait_for("agents", Duration::from_secs(60), |s| {
        s.get(&kinds::daemonsets(), Some("shop"), "agent")
            .is_some_and(|d| util::i64_at(&d, &["status", "numberReady"]) == Some(6))
    })
    .await;
    assert!(sim.monitor.is_clean(), "{:?}", sim.monitor.violations());
    // A pod bound to a cordoned node through the API is a violation.
    sim.store
        .create(
            &kinds::pods(),
            json!({"metadata": {"name": "rogue", "namespace": "shop"},
            "spec": {"nodeName": "zone-a-node-1", "containers": [{"name": "c", "image": "x:1"}]}}),
        )
        .expect("create");
    sim.wait_for("violation", Duration::from_secs(5), |_| {
        !sim.monitor.is_clean()
    })
    .await;
    assert_eq!(
        sim.monitor.violations()[0].kind,
        ViolationKind::ScheduledOnCordonedNode
    );
}

#[tokio::test(start_paused = true)]
async fn deleting_an_owner_collects_its_dependents_and_node_loss_moves_pods() {
    let sim = start(&scenario_yaml(6, "{type: RollingUpdate}", ""));
    sim.advance(Duration::from_secs(10)).await;
    let on_b1 = sim
        .pods_of("web")
        .into_iter()
        .filter(|p| util::str_at(p, &["spec", "nodeName"]) == Some("zone-b-node-1"))
        .count();
    assert!(on_b1 > 0);
    sim.store
        .delete(&kinds::nodes(), None, "zone-b-node-1")
        .expect("delete node");
    sim.wait_for("pods rescheduled", Duration::from_secs(120), |s| {
        let (pods, _) = s.list(&kinds::pods(), Some("shop"));
        pods.len() == 6
            && pods.iter().all(|p| {
                util::is_pod_ready(p)
                    && util::str_at(p, &["spec", "nodeName"]) != Some("zone-b-node-1")
            })
    })
    .await;
    sim.store
        .delete(&kinds::deployments(), Some("shop"), "web")
        .expect("delete");
    sim.wait_for("everything collected", Duration::from_secs(30), |s| {
        s.list(&kinds::replicasets(), Some("shop")).0.is_empty()
            && s.list(&kinds::pods(), Some("shop")).0.is_empty()
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn crash_looping_release_restarts_with_growing_count() {
    let extra =
        "      - image: registry.local/web:2\n        bad: crashLoop\n    rollout: inProgress\n";
    let sim = start(&scenario_yaml(
        1,
        "{type: RollingUpdate, maxSurge: 1, maxUnavailable: 0}",
        extra,
    ));
    sim.wait_for("restarts", Duration::from_secs(300), |s| {
        let (pods, _) = s.list(&kinds::pods(), Some("shop"));
        pods.iter().any(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 3
        })
    })
    .await;
    let crashing = sim
        .pods_of("web")
        .into_iter()
        .find(|p| p["spec"]["containers"][0]["image"] == "registry.local/web:2")
        .expect("new pod");
    assert!(!util::is_pod_ready(&crashing));
    let log = ripcord::sim::pod_logs::pod_log(
        &sim.store,
        "shop",
        util::name(&crashing),
        None,
        true,
        None,
    )
    .expect("previous log");
    assert!(log.contains("panic"), "{log}");
    // The old pod keeps serving.
    let d = sim.deployment("web");
    assert_eq!(util::i64_at(&d, &["status", "availableReplicas"]), Some(1));
}

#[tokio::test(start_paused = true)]
async fn paused_deployment_does_not_roll_out_until_resumed() {
    let sim = start(&scenario_yaml(2, "{type: RollingUpdate}", ""));
    sim.store
        .modify(&kinds::deployments(), Some("shop"), "web", |d| {
            d["spec"]["paused"] = json!(true);
            Ok(())
        })
        .expect("pause");
    sim.set_image("web", "registry.local/web:2");
    sim.advance(Duration::from_secs(60)).await;
    assert_eq!(
        sim.replica_sets("web").len(),
        1,
        "no new ReplicaSet while paused"
    );
    assert_eq!(
        progressing_reason(&sim.deployment("web")),
        "DeploymentPaused"
    );
    sim.store
        .modify(&kinds::deployments(), Some("shop"), "web", |d| {
            d["spec"]["paused"] = json!(false);
            Ok(())
        })
        .expect("resume");
    sim.wait_for("resumed rollout", Duration::from_secs(300), |s| {
        s.get(&kinds::deployments(), Some("shop"), "web")
            .is_some_and(|d| rolled_out(&d) && revision(&d).as_deref() == Some("2"))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn revision_history_limit_prunes_old_replica_sets() {
    let yaml = scenario_yaml(1, "{type: RollingUpdate}", "").replace(
        "    releases:",
        "    revisionHistoryLimit: 1\n    releases:",
    );
    let sim = start(&yaml);
    for v in 2..=4 {
        sim.set_image("web", &format!("registry.local/web:{v}"));
        sim.wait_for("rollout", Duration::from_secs(300), |s| {
            s.get(&kinds::deployments(), Some("shop"), "web")
                .is_some_and(|d| rolled_out(&d) && revision(&d) == Some(v.to_string()))
        })
        .await;
    }
    sim.wait_for("pruned", Duration::from_secs(30), |_| {
        sim.replica_sets("web").len() == 2
    })
    .await;
    let mut revisions: Vec<String> = sim
        .replica_sets("web")
        .iter()
        .filter_map(revision)
        .collect();
    revisions.sort();
    assert_eq!(revisions, ["3", "4"]);
}

#[tokio::test(start_paused = true)]
async fn recreate_strategy_stops_old_pods_before_starting_new_ones() {
    let sim = start(&scenario_yaml(3, "{type: Recreate}", ""));
    sim.advance(Duration::from_secs(5)).await;
    let since = sim.store.clock().now();
    sim.set_image("web", "registry.local/web:2");
    sim.wait_for("recreated", Duration::from_secs(300), |s| {
        s.get(&kinds::deployments(), Some("shop"), "web")
            .is_some_and(|d| rolled_out(&d) && revision(&d).as_deref() == Some("2"))
    })
    .await;
    let during: Vec<_> = sim
        .monitor
        .history_of("shop", "web")
        .into_iter()
        .filter(|s| s.time >= since)
        .collect();
    assert!(
        during.iter().any(|s| s.ready + s.unready == 0),
        "all old pods went first: {during:?}"
    );
    assert!(
        during.iter().all(|s| s.ready + s.unready <= 3),
        "{during:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn endpoints_list_ready_pods_per_zone() {
    let extra = "services:\n  - {namespace: shop, name: web, selector: {app: web}}\n  - {namespace: shop, name: web-zone-a, selector: {app: web}, zone: zone-a}\n";
    let sim = start(&scenario_yaml(6, "{type: RollingUpdate}", extra));
    sim.wait_for("endpoints", Duration::from_secs(30), |s| {
        s.get(&kinds::endpoints(), Some("shop"), "web")
            .is_some_and(|e| {
                e["subsets"][0]["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() == 6)
            })
    })
    .await;
    let zonal = sim
        .store
        .get(&kinds::endpoints(), Some("shop"), "web-zone-a")
        .expect("zonal endpoints");
    let addrs = zonal["subsets"][0]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(addrs.len(), 2);
    assert!(addrs.iter().all(|a| {
        a["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("zone-a"))
    }));
    assert_eq!(zonal["subsets"][0]["ports"][0]["port"], 8080);
    sim.store
        .delete(&kinds::services(), Some("shop"), "web-zone-a")
        .expect("delete svc");
    sim.wait_for("endpoints removed", Duration::from_secs(10), |s| {
        s.get(&kinds::endpoints(), Some("shop"), "web-zone-a")
            .is_none()
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn scaling_during_a_stalled_rollout_is_proportional() {
    let sim = start_scenario(&Scenario::demo());
    sim.wait_for("stalled at 3 old + 2 new", Duration::from_secs(60), |s| {
        s.get(&kinds::deployments(), Some("shop"), "checkout")
            .is_some_and(|d| {
                util::i64_at(&d, &["status", "replicas"]) == Some(5)
                    && util::i64_at(&d, &["status", "updatedReplicas"]) == Some(2)
            })
    })
    .await;
    let rs_sizes = |sim: &Sim| -> Vec<(String, i64)> {
        let d = sim.deployment("checkout");
        let mut sizes: Vec<(String, i64)> = sim
            .replica_sets("checkout")
            .iter()
            .map(|rs| {
                (
                    revision(rs).unwrap_or_default(),
                    util::i64_at(rs, &["spec", "replicas"]).unwrap_or(-1),
                )
            })
            .collect();
        sizes.sort();
        assert!(util::i64_at(&d, &["spec", "replicas"]).is_some());
        sizes
    };
    assert_eq!(rs_sizes(&sim), [("1".to_string(), 3), ("2".to_string(), 2)]);
    // 8 replicas, maxSurge 25% = 2: 10 allowed, 5 to add, split 3:2 like the real controller.
    sim.scale("checkout", 8);
    sim.wait_for("scaled", Duration::from_secs(30), |_| {
        sim.replica_sets("checkout").iter().all(|rs| {
            util::annotation(rs, "deployment.kubernetes.io/desired-replicas") == Some("8")
        })
    })
    .await;
    assert_eq!(rs_sizes(&sim), [("1".to_string(), 6), ("2".to_string(), 4)]);
    let d = sim.deployment("checkout");
    assert_eq!(
        util::annotation(&d, "deployment.kubernetes.io/revision"),
        Some("2")
    );
}

/// Issue 15: an evicted pod stays Terminating (deletionTimestamp, still on its node) for its
/// `terminationGracePeriodSeconds` in simulated time, while its ReplicaSet already replaces it;
/// then the kubelet removes it. A graceful API deletion behind a PDB's back is a violation as
/// soon as the pod starts terminating.
#[tokio::test(start_paused = true)]
async fn issue15_evicted_pods_terminate_for_their_grace_period_then_go() {
    let yaml = "settings: {timeFactor: 10, podReadyDelaySeconds: 5, podStartDelaySeconds: 1}
zones:
  - {name: zone-a, nodes: 2}
namespaces: [shop]
deployments:
  - namespace: shop
    name: web
    replicas: 3
    terminationGracePeriodSeconds: 30
    releases:
      - image: registry.local/web:1
podDisruptionBudgets:
  - {namespace: shop, name: web, selector: {app: web}, minAvailable: 2}
";
    let sim = start(yaml);
    sim.wait_for("pdb status", Duration::from_secs(60), |s| {
        s.get(&kinds::pod_disruption_budgets(), Some("shop"), "web")
            .is_some_and(|p| util::i64_at(&p, &["status", "disruptionsAllowed"]) == Some(1))
    })
    .await;
    let pods = sim.pods_of("web");
    let evicted = util::name(&pods[0]).to_string();
    let node = util::str_at(&pods[0], &["spec", "nodeName"])
        .expect("bound")
        .to_string();
    let started = sim.store.clock().now();
    eviction::evict(&sim.store, &sim.monitor, "shop", &evicted).expect("allowed");
    let terminating = sim
        .store
        .get(&kinds::pods(), Some("shop"), &evicted)
        .expect("still there while terminating");
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(terminating["spec"]["nodeName"], json!(node));
    // The budget no longer counts the terminating pod: no second eviction.
    let err = eviction::evict(&sim.store, &sim.monitor, "shop", util::name(&pods[1]))
        .expect_err("budget used up by the terminating pod");
    assert_eq!(err.code(), 429);
    sim.wait_for(
        "a replacement while the old pod terminates",
        Duration::from_secs(20),
        |s| {
            let (all, _) = s.list(&kinds::pods(), Some("shop"));
            all.iter().filter(|p| util::is_pod_active(p)).count() == 3
                && s.get(&kinds::pods(), Some("shop"), &evicted).is_some()
        },
    )
    .await;
    sim.wait_for("the evicted pod to go", Duration::from_secs(60), |s| {
        s.get(&kinds::pods(), Some("shop"), &evicted).is_none()
    })
    .await;
    let took = sim.store.clock().now().duration_since(started);
    assert!(
        took >= jiff::SignedDuration::from_secs(29),
        "gone after {took:?}, before its grace period"
    );
    assert!(sim.monitor.is_clean(), "{:?}", sim.monitor.violations());

    // A graceful delete through the API (not an eviction) of a healthy pod the budget needs.
    sim.wait_for("3 ready", Duration::from_secs(60), |s| {
        s.get(&kinds::pod_disruption_budgets(), Some("shop"), "web")
            .is_some_and(|p| util::i64_at(&p, &["status", "disruptionsAllowed"]) == Some(1))
    })
    .await;
    let live: Vec<Value> = sim
        .pods_of("web")
        .into_iter()
        .filter(util::is_pod_ready)
        .collect();
    for p in &live[..2] {
        sim.store
            .delete_gracefully(&kinds::pods(), Some("shop"), util::name(p), None, &[])
            .expect("delete");
    }
    sim.wait_for("violation recorded", Duration::from_secs(5), |_| {
        !sim.monitor.is_clean()
    })
    .await;
    assert!(
        sim.store
            .get(&kinds::pods(), Some("shop"), util::name(&live[1]))
            .is_some(),
        "recorded while the pod is still terminating"
    );
}

/// Issue 16: a pod with a readiness gate is Ready — and in its Service's endpoints — only once
/// its containers are ready AND the gate's condition is `True` (the kubelet's rule, with its
/// reason and message); the kubelet keeps the gate condition when it rewrites the conditions,
/// and a gate turning `False` takes the pod out again.
#[tokio::test(start_paused = true)]
async fn readiness_gate_keeps_a_pod_out_of_endpoints_until_its_condition_is_true() {
    const GATE: &str = "ripcord.dev/warmed";
    let sim = start(
        "settings: {timeFactor: 10, podReadyDelaySeconds: 5, podStartDelaySeconds: 1}
zones:
  - {name: zone-a, nodes: 2}
namespaces: [shop]
deployments:
  - namespace: shop
    name: web
    replicas: 1
    readinessGates: [ripcord.dev/warmed]
    releases:
      - image: registry.local/web:1
services:
  - {namespace: shop, name: web, selector: {app: web}}
",
    );
    let addresses = |s: &Store, key: &str| -> Vec<String> {
        s.get(&kinds::endpoints(), Some("shop"), "web")
            .and_then(|e| e["subsets"][0][key].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a["targetRef"]["name"].as_str().map(str::to_string))
            .collect()
    };
    // The scenario's own pod starts released (steady state).
    sim.wait_for("the first pod in endpoints", Duration::from_secs(30), |s| {
        addresses(s, "addresses").len() == 1
    })
    .await;
    let first = sim.pods_of("web").remove(0);
    assert_eq!(
        util::pod_condition(&first, GATE).and_then(|c| c["status"].as_str()),
        Some("True")
    );

    sim.scale("web", 2);
    let new_pod = |s: &Store| -> Option<Value> {
        let (pods, _) = s.list(&kinds::pods(), Some("shop"));
        pods.into_iter().find(|p| {
            util::name(p) != util::name(&first)
                && util::str_at(p, &["metadata", "labels", "app"]) == Some("web")
        })
    };
    sim.wait_for(
        "the new pod's containers ready",
        Duration::from_secs(60),
        |s| {
            new_pod(s).is_some_and(|p| {
                util::pod_condition(&p, "ContainersReady").and_then(|c| c["status"].as_str())
                    == Some("True")
            })
        },
    )
    .await;
    // Well past the ready delay: still held back by the gate.
    sim.advance(Duration::from_secs(30)).await;
    let pod = new_pod(&sim.store).expect("new pod");
    let name = util::name(&pod).to_string();
    let ready = util::pod_condition(&pod, "Ready")
        .cloned()
        .expect("Ready condition");
    assert_eq!(ready["status"], "False", "{pod:#}");
    assert_eq!(ready["reason"], "ReadinessGatesNotReady");
    assert_eq!(
        ready["message"],
        "corresponding condition of pod readiness gate \"ripcord.dev/warmed\" does not exist."
    );
    assert!(!addresses(&sim.store, "addresses").contains(&name));
    assert!(addresses(&sim.store, "notReadyAddresses").contains(&name));

    // Someone writes the gate condition (as through pods/status): Ready, in endpoints.
    let set_gate = |status: &str| {
        let status = status.to_string();
        sim.store
            .modify(&kinds::pods(), Some("shop"), &name, move |p| {
                let conds = p["status"]["conditions"]
                    .as_array_mut()
                    .expect("conditions");
                conds.retain(|c| c["type"] != GATE);
                conds.push(json!({"type": GATE, "status": status, "reason": "Test",
                                  "lastTransitionTime": "2026-01-01T00:00:00Z"}));
                Ok(())
            })
            .expect("gate condition written");
    };
    set_gate("True");
    sim.wait_for("the new pod in endpoints", Duration::from_secs(10), |s| {
        addresses(s, "addresses").contains(&name)
    })
    .await;
    let pod = new_pod(&sim.store).expect("new pod");
    assert!(util::is_pod_ready(&pod));
    assert_eq!(
        util::pod_condition(&pod, GATE).and_then(|c| c["reason"].as_str()),
        Some("Test"),
        "the kubelet kept the gate condition"
    );

    // The gate turns False: out again, with the kubelet's message.
    set_gate("False");
    sim.wait_for(
        "the new pod out of endpoints",
        Duration::from_secs(10),
        |s| !addresses(s, "addresses").contains(&name),
    )
    .await;
    let pod = new_pod(&sim.store).expect("new pod");
    assert_eq!(
        util::pod_condition(&pod, "Ready").and_then(|c| c["message"].as_str()),
        Some("the status of pod readiness gate \"ripcord.dev/warmed\" is not \"True\", but False")
    );
}
