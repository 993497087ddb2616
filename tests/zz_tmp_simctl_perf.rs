use std::time::Instant;
use ripcord::sim::clock::SimClock;
use ripcord::sim::controllers::Controllers;
use ripcord::sim::invariants::InvariantMonitor;
use ripcord::sim::scenario::Scenario;
use ripcord::sim::store::{Store, kinds};

#[tokio::test]
async fn perf() {
    let mut yaml = String::from("settings: {timeFactor: 10}\nzones:\n");
    for z in 0..10 { yaml.push_str(&format!("  - {{name: z{z}, nodes: 100, cpu: \"64\", memory: 256Gi}}\n")); }
    yaml.push_str("namespaces: [shop]\ndeployments:\n");
    for d in 0..100 { yaml.push_str(&format!("  - {{namespace: shop, name: d{d}, replicas: 100, releases: [{{image: x:1}}]}}\n")); }
    yaml.push_str("services:\n");
    for d in 0..20 { yaml.push_str(&format!("  - {{namespace: shop, name: s{d}, selector: {{app: d{d}}}}}\n")); }
    let s = Scenario::from_yaml("perf", &yaml).unwrap();
    let store = Store::new(SimClock::new(10.0));
    let t = Instant::now();
    s.load_into(&store).unwrap();
    println!("load_into: {:?} pods={}", t.elapsed(), store.count(&kinds::pods()));
    let mut c = Controllers::new(store.clone(), s.settings().clone(), InvariantMonitor::new());
    let t = Instant::now();
    let n = c.settle(20);
    println!("settle: {:?} passes={n}", t.elapsed());
    let t = Instant::now();
    c.pass();
    println!("idle pass: {:?}", t.elapsed());
    use ripcord::sim::controllers::*;
    let t = Instant::now(); nodes::reconcile(&mut c); println!("nodes {:?}", t.elapsed());
    let t = Instant::now(); gc::reconcile(&mut c); println!("gc {:?}", t.elapsed());
    let t = Instant::now(); deployment::reconcile(&mut c); println!("deploy {:?}", t.elapsed());
    let t = Instant::now(); replicaset::reconcile(&mut c); println!("rs {:?}", t.elapsed());
    let t = Instant::now(); daemonset::reconcile(&mut c); println!("ds {:?}", t.elapsed());
    let t = Instant::now(); pods::reconcile(&mut c); println!("pods {:?}", t.elapsed());
    let t = Instant::now(); disruption::reconcile(&mut c); println!("pdb {:?}", t.elapsed());
    let t = Instant::now(); endpoints::reconcile(&mut c); println!("ep {:?}", t.elapsed());
    let t = Instant::now(); store.list(&kinds::pods(), None); println!("list pods {:?}", t.elapsed());
}

#[test]
fn pick() {
    use ripcord::sim::controllers::scheduler::*;
    use serde_json::json;
    let nodes: Vec<NodeInfo> = (0..1000).map(|i| NodeInfo::from_node(&json!({"metadata": {"name": format!("n{i}"), "labels": {ZONE_LABEL: format!("z{}", i % 10)}}, "status": {"allocatable": {"cpu": "64", "memory": "256Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}}))).collect();
    let req = PodRequest::from_pod(&json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}}));
    let mut same = std::collections::BTreeMap::new();
    for i in 0..100 { same.insert(format!("n{i}"), 1i64); }
    let t = Instant::now();
    for _ in 0..1000 { pick_node(&nodes, &req, &same); }
    println!("1000 picks: {:?}", t.elapsed());
    let store = Store::new(SimClock::new(10.0));
    let t = Instant::now();
    for i in 0..2000 { store.create(&kinds::pods(), json!({"metadata": {"name": format!("p{i}"), "namespace": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap(); }
    println!("2000 creates: {:?}", t.elapsed());
}
