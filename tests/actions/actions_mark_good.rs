//! `ripcord mark-good` (the binary) against the simulated cluster: marks a revision known-good
//! once (a second call writes nothing), an unknown revision is a usage error (exit 2), and
//! `deployment.rollback` with `knownGood` then returns to the marked revision.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::actions_support;

use actions_support::{Sim, context, ripcord, run_step};
use ripcord::actions;
use ripcord::k8s::deployments::{KNOWN_GOOD_HASH, KNOWN_GOOD_REVISION};
use ripcord::playbook::catalog::{self, Action};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_good_then_roll_back_to_it() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ripcord(
        &sim,
        dir.path(),
        &[
            "mark-good",
            "deployment/web",
            "-n",
            "shop",
            "--revision",
            "1",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(json["revision"], 1);
    assert_eq!(json["changed"], true);
    let annotations = sim.deployment("web")["metadata"]["annotations"].clone();
    assert_eq!(annotations[KNOWN_GOOD_REVISION], "1");
    assert!(annotations[KNOWN_GOOD_HASH].is_string(), "{annotations}");

    let writes = sim.cluster.write_request_count();
    let out = ripcord(
        &sim,
        dir.path(),
        &[
            "mark-good",
            "deployment/web",
            "-n",
            "shop",
            "--revision",
            "1",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already marked"));
    assert_eq!(
        sim.cluster.write_request_count(),
        writes,
        "marking twice writes nothing"
    );

    let out = ripcord(
        &sim,
        dir.path(),
        &[
            "mark-good",
            "deployment/web",
            "-n",
            "shop",
            "--revision",
            "9",
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown revision is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("revision 9"));
    let out = ripcord(&sim, dir.path(), &["mark-good", "pod/web", "-n", "shop"]).await;
    assert_eq!(out.status.code(), Some(2));

    let rollback = actions::build(&Action::DeploymentRollback(catalog::DeploymentRollback {
        namespace: Some("shop".into()),
        name: "web".into(),
        to_revision: None,
        known_good: true,
    }))
    .expect("builds");
    run_step(rollback.as_ref(), &context(&sim, "r-mg", "rollback"))
        .await
        .expect("rolled back to the known-good revision");
    assert_eq!(sim.image("web"), "registry.local/web:1");
    sim.cluster_shutdown().await;
}
