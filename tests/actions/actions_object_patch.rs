//! `object.patch` against the simulated cluster: diff/apply/verify, idempotency (second diff
//! empty, zero writes), and the automatic inverse restoring exactly the touched paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::actions_support;

use actions_support::{Sim, context, run_step};
use ripcord::actions::{self, Inverse};
use ripcord::k8s::objects::Objects;
use ripcord::playbook::catalog::{self, Action};
use ripcord::sim::store::kinds;
use serde_json::{Value, json};
use std::time::Duration;

fn patch_action(api_version: &str, kind: &str, name: &str, patch: Value) -> Action {
    Action::ObjectPatch(catalog::ObjectPatch {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: Some("shop".into()),
        name: name.into(),
        patch,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_patch_round_trips_through_its_inverse() {
    let sim = Sim::start().await;
    sim.cluster
        .store()
        .create(
            &kinds::configmaps(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "flags", "namespace": "shop", "labels": {"app": "web"}},
                   "data": {"mode": "fast", "gone": "soon", "keep": "me"}}),
        )
        .expect("configmap created");
    let patch = json!({"metadata": {"labels": {"owner": "sre"}},
                       "data": {"mode": "safe", "added": "yes", "gone": null}});
    let action = actions::build(&patch_action("v1", "ConfigMap", "flags", patch)).expect("builds");
    let ctx = context(&sim, "r-p1", "patch");

    let diff = action.diff(&ctx).await.expect("diff");
    assert_eq!(diff.mutations.len(), 1);
    let m = &diff.mutations[0];
    assert!(
        m.diff.contains("safe") && m.diff.contains("fast"),
        "{}",
        m.diff
    );
    let Inverse::MergePatch {
        patch: inverse,
        expected,
    } = m.inverse.clone()
    else {
        panic!("object.patch inverts with a merge patch");
    };
    assert_eq!(
        inverse,
        json!({"metadata": {"labels": {"owner": null}},
               "data": {"mode": "fast", "added": null, "gone": "soon"}})
    );
    assert_eq!(expected["data"]["mode"], "safe");
    assert!(
        m.pre_image
            .get("data")
            .and_then(|d| d.get("keep"))
            .is_none(),
        "pre-image trimmed"
    );

    run_step(action.as_ref(), &ctx).await.expect("patched");
    let stored = sim
        .cluster
        .store()
        .get(&kinds::configmaps(), Some("shop"), "flags")
        .expect("exists");
    assert_eq!(
        stored["data"],
        json!({"mode": "safe", "added": "yes", "keep": "me"})
    );

    // Idempotent: the second diff is empty and nothing is written.
    let writes = sim.cluster.write_request_count();
    assert!(action.diff(&ctx).await.expect("diff").is_satisfied());
    assert_eq!(sim.cluster.write_request_count(), writes);

    // The inverse, applied as cleanup would, restores the touched paths.
    let objects = Objects::new(sim.cluster.client(), Duration::from_secs(5));
    let kind = objects.resolve("v1", "ConfigMap").await.expect("resolves");
    objects
        .patch_merge(&kind, Some("shop"), "flags", &inverse)
        .await
        .expect("inverse applies");
    let restored = sim
        .cluster
        .store()
        .get(&kinds::configmaps(), Some("shop"), "flags")
        .expect("exists");
    assert_eq!(
        restored["data"],
        json!({"mode": "fast", "gone": "soon", "keep": "me"})
    );
    assert_eq!(restored["metadata"]["labels"].get("owner"), None);
    assert_eq!(restored["metadata"]["labels"]["app"], "web");
    sim.cluster_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_patch_on_a_deployment_and_unknown_kinds() {
    let sim = Sim::start().await;
    let ctx = context(&sim, "r-p2", "patch");
    let action = actions::build(&patch_action(
        "apps/v1",
        "Deployment",
        "web",
        json!({"metadata": {"annotations": {"example.com/paged": "yes"}}}),
    ))
    .expect("builds");
    run_step(action.as_ref(), &ctx).await.expect("patched");
    assert_eq!(
        sim.deployment("web")["metadata"]["annotations"]["example.com/paged"],
        "yes"
    );
    assert!(action.diff(&ctx).await.expect("diff").is_satisfied());

    let unknown = actions::build(&patch_action(
        "example.com/v1",
        "Widget",
        "w",
        json!({"a": 1}),
    ))
    .expect("builds");
    let err = unknown
        .diff(&ctx)
        .await
        .expect_err("the sim does not serve widgets");
    assert!(err.to_string().contains("Widget"), "{err}");
    let missing = actions::build(&patch_action(
        "v1",
        "ConfigMap",
        "nope",
        json!({"data": {}}),
    ))
    .expect("builds");
    assert_eq!(
        missing.diff(&ctx).await.expect_err("absent").category(),
        "not-found"
    );
    sim.cluster_shutdown().await;
}
