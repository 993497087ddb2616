//! Issue 6: after a fail-out + rolling restart + rollback incident, `verify --incident` reports
//! dirty and lists each residue; `cleanup --incident` brings every item back (the zone with the
//! slow ramp); `verify` then reports clean, and a second `cleanup` does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::cleanup_support;

use cleanup_support::*;
use serde_json::Value;

const INCIDENT_PLAYBOOK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: checkout-outage
spec:
  steps:
    - name: rollback
      action: deployment.rollback
      with: {namespace: shop, name: checkout}
    - name: wait-checkout
      action: deployment.waitRolledOut
      with: {namespace: shop, name: checkout}
      timeout: 3m
    - name: failout
      action: zone.failout
      with:
        zone: zone-a
        traffic: {httpRoute: {namespace: shop, name: checkout, backend: checkout-zone-a}}
      timeout: 3m
    - name: scale-api
      action: deployment.scale
      with: {namespace: shop, name: api, replicas: 4}
    - name: restart-api
      action: deployment.restart
      with: {namespace: shop, name: api, batch: 1}
      timeout: 3m
    - name: pause-api
      action: deployment.pause
      with: {namespace: shop, name: api}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue6_incident_cleanup_brings_everything_back_and_verifies_clean() {
    let h = Harness::start().await;
    let playbook = h.write("incident.yaml", INCIDENT_PLAYBOOK);
    let playbook = playbook.to_str().expect("utf-8 path");

    let out = h
        .ripcord(&[
            "incident",
            "open",
            "INC-7",
            "--severity",
            "SEV2",
            "--service",
            "checkout",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));

    // The mitigation.
    let out = h
        .ripcord(&["run", playbook, "--incident", "INC-7", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(0), "the incident run succeeds");
    let run_id = run_id_of(&out);
    assert!(
        h.zone_nodes("zone-a")
            .iter()
            .all(|n| n["spec"]["unschedulable"] == Value::Bool(true))
    );
    assert!(
        h.route_weights()
            .contains(&("checkout-zone-a".to_string(), 0))
    );
    assert_eq!(h.deployment("api")["spec"]["paused"], Value::Bool(true));
    let rolled_back_image =
        h.deployment("checkout")["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(rolled_back_image, "registry.local/checkout:1.4.2");

    // Verify: dirty, every residue listed.
    let out = h
        .ripcord(&["verify", "--incident", "INC-7", "-o", "json"])
        .await;
    assert_eq!(out.status.code(), Some(1), "dirty exits 1");
    let report = json_out(&out);
    assert_eq!(report["clean"], Value::Bool(false));
    let found = findings(&report);
    for node in h.zone_nodes("zone-a") {
        let name = format!(
            "node/{}",
            node["metadata"]["name"].as_str().unwrap_or_default()
        );
        assert!(
            found.contains(&("cordoned-node".to_string(), name.clone())),
            "{name} not listed: {found:?}"
        );
        assert!(
            found.contains(&("not-restored".to_string(), name.clone())),
            "{name} not listed as touched: {found:?}"
        );
    }
    assert!(
        found.contains(&("zero-weight".into(), "httproute/shop/checkout".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("paused-deployment".into(), "deployment/shop/api".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("not-restored".into(), "deployment/shop/api".into())),
        "{found:?}"
    );
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("rollback-kept"),
        "the rollback is an intended state: {notes}"
    );
    assert!(
        !found.iter().any(|(_, o)| o == "deployment/shop/checkout"),
        "the rollback target is not residue: {found:?}"
    );
    // The run itself is attached to the incident.
    let out = h.ripcord(&["incident", "show", "INC-7"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains(&run_id));

    // Dry run first: a plan, no writes.
    let writes = h.sim.write_request_count();
    let out = h
        .ripcord(&["cleanup", "--incident", "INC-7", "--dry-run"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("rollback kept"), "{text}");
    assert!(text.contains("via zone.failback zone-a"), "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert_eq!(
        h.sim.write_request_count(),
        writes,
        "a dry run writes nothing"
    );

    // Cleanup.
    let out = h
        .ripcord(&[
            "cleanup",
            "--incident",
            "INC-7",
            "--yes",
            "--ramp-pause",
            "200ms",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "cleanup succeeds");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("cleanup succeeded"), "{text}");
    for node in h.zone_nodes("zone-a") {
        assert_ne!(node["spec"]["unschedulable"], Value::Bool(true), "{node}");
        assert!(
            node.pointer("/metadata/labels/ripcord.dev~1cordoned-by")
                .is_none(),
            "mark left: {node}"
        );
    }
    assert!(
        h.route_weights().iter().all(|(_, w)| *w == 100),
        "{:?}",
        h.route_weights()
    );
    let api = h.deployment("api");
    assert_eq!(api["spec"]["replicas"], 3);
    assert_ne!(api["spec"]["paused"], Value::Bool(true));
    assert!(
        api.pointer("/metadata/annotations/ripcord.dev~1restart")
            .is_none(),
        "{api}"
    );
    // The rollback was kept.
    assert_eq!(
        h.deployment("checkout")["spec"]["template"]["spec"]["containers"][0]["image"],
        rolled_back_image
    );
    // The ramp went in steps: the route was written once per ramp step (10, 25, 50, 100).
    let route_patches = h
        .sim
        .request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/httproutes/checkout"))
        .count();
    assert!(
        route_patches >= 5,
        "fail-out + 4 ramp steps, got {route_patches} route patches"
    );

    // Verify: clean (waiting for the workloads to settle).
    let out = h
        .ripcord(&["verify", "--incident", "INC-7", "--wait", "90s"])
        .await;
    assert_eq!(out.status.code(), Some(0), "clean exits 0");
    assert!(String::from_utf8_lossy(&out.stdout).contains("CLEAN"));

    // A second cleanup does nothing: no write request at all.
    let writes = h.sim.write_request_count();
    let out = h
        .ripcord(&["cleanup", "--incident", "INC-7", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("nothing to revert"), "{text}");
    assert!(!text.contains("  revert "), "{text}");
    assert_eq!(
        h.sim.write_request_count(),
        writes,
        "the second cleanup wrote something"
    );

    // The incident report shows the timeline, what cleanup did and the verdict.
    let out = h
        .ripcord(&[
            "incident",
            "close",
            "INC-7",
            "--root-cause",
            "bad release 1.5.0",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let out = h.ripcord(&["report", "--incident", "INC-7"]).await;
    assert_eq!(out.status.code(), Some(0));
    let md = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(md.contains("# Incident INC-7"), "{md}");
    assert!(md.contains("bad release 1.5.0"), "{md}");
    assert!(md.contains("ripcord-cleanup"), "{md}");
    assert!(md.contains("zone.failout"), "{md}");
    assert!(md.contains("**CLEAN**"), "{md}");
}
