//! Issue 6 (session 2): `ripcord report` of a run whose journal is not on this machine is built
//! from the cluster's `Run` resource (steps, mutations with target and description, outcome,
//! times) and says so, naming where the journal lives. A report of local runs still works
//! offline; a report that needs the cluster exits 3 when it is unreachable. Also the paged,
//! bounded `k8s::runs::list_runs` the report and the daemon's takeover use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::cleanup_support;

use cleanup_support::*;
use ripcord::k8s::runs::{self, Run, RunListError, RunSpec};
use std::time::Duration;

const PLAYBOOK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: report-cluster-test
spec:
  steps:
    - name: cordon
      action: node.cordon
      with: {names: [zone-b-node-1]}
    - name: scale-api
      action: deployment.scale
      with: {namespace: shop, name: api, replicas: 5}
"#;

/// A kubeconfig whose API server port is closed (nothing listens there).
fn unreachable_kubeconfig(h: &Harness) -> std::path::PathBuf {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let yaml = h
        .sim
        .kubeconfig_yaml()
        .replace(&h.sim.url(), &format!("http://127.0.0.1:{port}"));
    assert!(yaml.contains(&format!("127.0.0.1:{port}")), "{yaml}");
    h.write("unreachable-kubeconfig", &yaml)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_of_a_run_without_local_journal_comes_from_its_run_resource() {
    let h = Harness::start_calm().await;
    runs::install_crd(&h.sim.client(), Duration::from_secs(5))
        .await
        .expect("CRD installed in the sim");
    let playbook = h.write("report.yaml", PLAYBOOK);
    let out = h
        .ripcord(&[
            "run",
            playbook.to_str().expect("utf-8"),
            "--yes",
            "-n",
            "shop",
            "--incident",
            "INC-42",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let run_id = run_id_of(&out);

    // On the machine that ran it, offline: the local journal is enough, the cluster is not
    // asked (the kubeconfig points at a closed port).
    let offline = unreachable_kubeconfig(&h);
    let offline = offline.to_str().expect("utf-8");
    let out = h
        .ripcord_with(
            &["report", &run_id],
            &h.state_dir(),
            &[("KUBECONFIG", offline)],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "local report works offline");
    let md = stdout(&out);
    assert!(md.contains("| local journal |"), "{md}");
    assert!(!md.contains("Runs read from the cluster"), "{md}");

    // Another machine (an empty state directory): the run comes from its Run resource.
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let writes = h.sim.write_request_count();
    let out = h.ripcord_with(&["report", &run_id], &elsewhere, &[]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        h.sim.write_request_count(),
        writes,
        "a report writes nothing"
    );
    let md = stdout(&out);
    assert!(md.contains(&format!("# Run {run_id}")), "{md}");
    assert!(md.contains("## Runs read from the cluster"), "{md}");
    assert!(
        md.contains(&format!("| cluster: Run shop/{run_id} |")),
        "the runs table names the source: {md}"
    );
    // Where the journal lives: `host:<laptop state dir>/runs/<id>/journal.jsonl`.
    let laptop = h.state_dir().display().to_string();
    assert!(
        md.contains("the Run resource records it at ") && md.contains(&laptop),
        "the report names where the journal lives: {md}"
    );
    // The mutations with target and description.
    assert!(
        md.contains(
            "| cordon | node/zone-b-node-1 | cordon/zone-b-node-1: set spec.unschedulable=true"
        ),
        "{md}"
    );
    assert!(
        md.contains("| scale-api | deployment/shop/api | scale/shop/api: set spec.replicas=5"),
        "{md}"
    );
    // Steps and outcome as the status has them.
    assert!(md.contains("| cordon | Verified | 1 |"), "{md}");
    assert!(md.contains("| scale-api | Verified | 1 |"), "{md}");
    assert!(md.contains("| outcome | succeeded |"), "{md}");
    assert!(md.contains("run finished: succeeded"), "timeline: {md}");

    // The incident report from the other machine finds the run through its Run resource too.
    let out = h
        .ripcord_with(&["report", "--incident", "INC-42"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let md = stdout(&out);
    assert!(md.contains("# Incident INC-42"), "{md}");
    assert!(
        md.contains("Note: no record of incident INC-42 on this machine"),
        "{md}"
    );
    assert!(md.contains(&format!("### Run {run_id}")), "{md}");
    assert!(md.contains("scale/shop/api: set spec.replicas=5"), "{md}");

    // HTML too, escaped, with the same source statement.
    let out = h
        .ripcord_with(&["report", &run_id, "--format", "html"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let html = stdout(&out);
    assert!(
        html.contains("<h2>Runs read from the cluster</h2>"),
        "{html}"
    );
    assert!(html.contains("spec.replicas=5"), "{html}");

    // A cleanup made from the other machine; a third machine's report shows it from its Run
    // resource too, and the other machine's from its local plan.
    let out = h
        .ripcord_with(&["cleanup", "--run", &run_id, "--yes"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let third = h.dir.path().join("third");
    std::fs::create_dir_all(&third).expect("dir");
    let out = h.ripcord_with(&["report", &run_id], &third, &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let md = stdout(&out);
    let cleanup_id = md
        .lines()
        .find_map(|l| l.strip_prefix("### Cleanup run "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("a cleanup run in the report: {md}"));
    assert!(
        md.contains("Ran on another machine by test: 2 revert(s), outcome succeeded"),
        "{md}"
    );
    assert!(md.contains(&format!("### Run {cleanup_id}")), "{md}");
    assert!(!md.contains("No cleanup has run yet"), "{md}");
    let out = h.ripcord_with(&["report", &run_id], &elsewhere, &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let md = stdout(&out);
    assert!(
        md.contains(&format!("### Cleanup run {cleanup_id}")),
        "{md}"
    );
    assert!(
        md.contains("| local journal |"),
        "the cleanup's own journal: {md}"
    );

    // The laptop's journal deleted: same result on the machine that ran it.
    let run_dir = h.state_dir().join("runs").join(&run_id);
    assert!(run_dir.is_dir(), "{}", run_dir.display());
    std::fs::remove_dir_all(&run_dir).expect("journal removed");
    let out = h.ripcord(&["report", &run_id]).await;
    assert_eq!(out.status.code(), Some(0));
    let md = stdout(&out);
    assert!(md.contains("## Runs read from the cluster"), "{md}");
    assert!(
        md.contains("cordon/zone-b-node-1: set spec.unschedulable=true"),
        "{md}"
    );

    // Now the cluster is needed and unreachable: a clear error, exit 3.
    let out = h
        .ripcord_with(
            &["report", &run_id],
            &h.state_dir(),
            &[("KUBECONFIG", offline)],
        )
        .await;
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("cannot reach the cluster"), "{err}");

    // A run that exists nowhere: usage error naming both places looked in.
    let out = h
        .ripcord_with(&["report", "r-20991231-000000-zzzz"], &elsewhere, &[])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("the cluster's Run resources"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_report_with_local_runs_works_offline_and_says_what_may_be_missing() {
    let h = Harness::start_calm().await;
    let playbook = h.write("report.yaml", PLAYBOOK);
    let out = h
        .ripcord(&[
            "run",
            playbook.to_str().expect("utf-8"),
            "--yes",
            "-n",
            "shop",
            "--incident",
            "INC-43",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let run_id = run_id_of(&out);
    let offline = unreachable_kubeconfig(&h);
    let out = h
        .ripcord_with(
            &["report", "--incident", "INC-43"],
            &h.state_dir(),
            &[("KUBECONFIG", offline.to_str().expect("utf-8"))],
        )
        .await;
    assert_eq!(out.status.code(), Some(0));
    let md = stdout(&out);
    assert!(md.contains(&run_id), "{md}");
    assert!(
        md.contains("Note: the cluster's Run resources could not be read"),
        "{md}"
    );
    // An incident with no local run needs the cluster: unreachable → exit 3.
    let out = h
        .ripcord_with(
            &["report", "--incident", "INC-44"],
            &h.state_dir(),
            &[("KUBECONFIG", offline.to_str().expect("utf-8"))],
        )
        .await;
    assert_eq!(out.status.code(), Some(3));
}

fn run_object(name: &str, namespace: &str) -> Run {
    let mut run = Run::new(
        name,
        RunSpec {
            playbook: "p".into(),
            params: Default::default(),
            trigger: "api".into(),
            who: "test".into(),
            incident: None,
        },
    );
    run.metadata.namespace = Some(namespace.to_string());
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_runs_pages_through_every_namespace_and_reports_missing_crd() {
    let h = Harness::start_calm().await;
    let client = h.sim.client();
    let timeout = Duration::from_secs(5);
    match runs::list_runs(&client, None, timeout).await {
        Err(RunListError::CrdMissing) => {}
        other => panic!("expected CrdMissing without the CRD, got {other:?}"),
    }
    runs::install_crd(&client, timeout)
        .await
        .expect("CRD installed");
    for (i, ns) in ["shop", "shop", "shop", "default", "default"]
        .iter()
        .enumerate()
    {
        let name = format!("r-20261125-1200{i:02}-page");
        runs::create_run(&client, ns, &run_object(&name, ns), timeout)
            .await
            .expect("Run created");
    }
    let all = runs::list_runs_paged(&client, None, 2, timeout)
        .await
        .expect("listed");
    let mut names: Vec<String> = all.iter().filter_map(|r| r.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    names.dedup();
    assert_eq!(names.len(), 5, "no duplicates across pages");
    let shop = runs::list_runs(&client, Some("shop"), timeout)
        .await
        .expect("listed");
    assert_eq!(shop.len(), 3);

    // Unreachable: a transport error, classified as such.
    let offline = unreachable_kubeconfig(&h);
    let kubeconfig = kube::config::Kubeconfig::read_from(&offline).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let dead = kube::Client::try_from(config).expect("client");
    let err = runs::list_runs(&dead, None, timeout)
        .await
        .expect_err("nothing listens there");
    assert!(err.is_unreachable(), "{err:?}");
}
