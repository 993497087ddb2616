//! temporary measurement (deleted after use)
use ripcord::actions::ObjectRef;
use ripcord::playbook::SnapshotSpec;
use ripcord::sim::scenario::Scenario;
use ripcord::sim::{SimCluster, SimOptions};
use ripcord::snapshot::{self, SnapshotRequest};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure() {
    let sim = SimCluster::start(SimOptions { scenario: Scenario::demo(), addr: None }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.faults().set_latency(Duration::from_millis(5));
    let dir = tempfile::tempdir().unwrap();
    let request = SnapshotRequest {
        targets: vec![ObjectRef { api_version: "apps/v1".into(), kind: "Deployment".into(), namespace: Some("shop".into()), name: "checkout".into() }],
        namespaces: vec!["shop".into()],
        spec: SnapshotSpec::default(),
    };
    let client = sim.client();
    for i in 0..3 {
        let d = dir.path().join(format!("b{i}"));
        let n0 = sim.request_log().len();
        let t = Instant::now();
        let m = snapshot::capture_targets(&client, &request, &d).await.unwrap();
        let t1 = t.elapsed();
        let n1 = sim.request_log().len();
        let t = Instant::now();
        let r = snapshot::capture_rest(&client, &request, &d, None).await.unwrap();
        let t2 = t.elapsed();
        let n2 = sim.request_log().len();
        eprintln!("MEASURE targets {:?} ({} req, {} items) rest {:?} ({} req, {} items)", t1, n1 - n0, m.captured.len(), t2, n2 - n1, r.captured.len());
    }
}
