//! Deployment actions against the simulated cluster over loopback with the real kube client:
//! rollback (previous, toRevision, known-good), idempotency (a second diff is empty and the
//! sim sees zero writes), the paused refusal, waitRolledOut, scale and pause/resume with their
//! inverses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::actions_support;

use actions_support::{Sim, args_ref, context, run_step};
use ripcord::actions::{self, Inverse};
use ripcord::k8s::deployments::{self, Deployments};
use ripcord::playbook::catalog::{self, Action};
use std::time::Duration;

fn rollback(to_revision: Option<i64>, known_good: bool) -> Action {
    Action::DeploymentRollback(catalog::DeploymentRollback {
        namespace: Some("shop".into()),
        name: "web".into(),
        to_revision,
        known_good,
    })
}

fn wait_rolled_out() -> Action {
    Action::DeploymentWaitRolledOut(args_ref("web"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_previous_restores_the_template_and_is_idempotent() {
    let sim = Sim::start().await;
    assert_eq!(sim.image("web"), "registry.local/web:3");
    let action = actions::build(&rollback(None, false)).expect("builds");
    let ctx = context(&sim, "r-1", "rollback");

    let diff = action.diff(&ctx).await.expect("diff");
    assert_eq!(diff.mutations.len(), 1, "{diff:?}");
    let m = &diff.mutations[0];
    assert!(
        m.description.contains("from revision 3 to revision 2"),
        "{}",
        m.description
    );
    assert!(
        m.diff.contains("registry.local/web:3") && m.diff.contains("registry.local/web:2"),
        "{}",
        m.diff
    );
    match &m.inverse {
        Inverse::NotReverted { roll_forward, .. } => {
            let forward = roll_forward.as_ref().expect("roll-forward patch");
            assert_eq!(
                forward[0]["value"]["spec"]["containers"][0]["image"],
                "registry.local/web:3"
            );
        }
        other => panic!("a rollback is not reverted automatically: {other:?}"),
    }
    assert_eq!(
        m.pre_image["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/web:3"
    );

    let writes_before = sim.cluster.write_request_count();
    let applied = run_step(action.as_ref(), &ctx)
        .await
        .expect("rollback applies");
    assert_eq!(applied.len(), 1);
    assert_eq!(
        sim.cluster.write_request_count() - writes_before,
        1,
        "exactly one write"
    );
    assert_eq!(sim.image("web"), "registry.local/web:2");

    // The rollout completes; kubectl's numbering: the restored ReplicaSet becomes revision 4.
    let wait = actions::build(&wait_rolled_out()).expect("builds");
    assert!(wait.verify_when_satisfied());
    let wait_ctx = context(&sim, "r-1", "wait");
    wait.verify(&wait_ctx, &[]).await.expect("rolled out");
    let deployments = Deployments::new(sim.cluster.client(), "shop", Duration::from_secs(5));
    let d = deployments.get("web").await.expect("get");
    let history = deployments.revision_history(&d).await.expect("history");
    let current = deployments::current_revision(&d, &history).expect("current revision");
    assert_eq!(
        current.revision, 4,
        "restored revision renumbered like kubectl"
    );
    assert_eq!(
        current.verified_healthy.as_deref(),
        Some("r-1"),
        "the verified rollout marks its ReplicaSet"
    );
    assert_eq!(
        current.template["spec"]["containers"][0]["image"],
        "registry.local/web:2"
    );

    // The same rollback again (resumed run, or a new run): nothing to do, zero writes.
    let writes = sim.cluster.write_request_count();
    for (run, step) in [("r-1", "rollback"), ("r-2", "rollback")] {
        let again = action
            .diff(&context(&sim, run, step))
            .await
            .expect("diff again");
        assert!(again.is_satisfied(), "{again:?}");
        assert!(
            again.summary.contains("to the template of revision 2"),
            "{}",
            again.summary
        );
    }
    // Verifying the rollout again writes nothing either (the known-good mark is in place).
    wait.verify(&wait_ctx, &[]).await.expect("still rolled out");
    assert_eq!(
        sim.cluster.write_request_count(),
        writes,
        "no write on the second run"
    );
    sim.cluster_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_revision_and_to_known_good() {
    let sim = Sim::start().await;
    let ctx = context(&sim, "r-10", "rollback");
    let to_one = actions::build(&rollback(Some(1), false)).expect("builds");
    run_step(to_one.as_ref(), &ctx)
        .await
        .expect("to revision 1");
    assert_eq!(sim.image("web"), "registry.local/web:1");
    let wait = actions::build(&wait_rolled_out()).expect("builds");
    wait.verify(&ctx, &[]).await.expect("rolled out");
    // Revision 1 was renumbered (to 4); the same request again is recognised by its marker.
    let again = to_one
        .diff(&context(&sim, "r-13", "rollback"))
        .await
        .expect("diff again");
    assert!(again.is_satisfied(), "{again:?}");

    // An unknown revision is refused with the known ones listed.
    let missing = actions::build(&rollback(Some(42), false)).expect("builds");
    let err = missing
        .diff(&ctx)
        .await
        .expect_err("revision 42 does not exist");
    assert_eq!(err.category(), "invalid");
    assert!(err.to_string().contains("42"), "{err}");

    // Mark revision 3 (web:3) known-good, then roll back to it.
    let deployments = Deployments::new(sim.cluster.client(), "shop", Duration::from_secs(5));
    let mark = deployments
        .mark_known_good("web", Some(3))
        .await
        .expect("mark");
    assert!(mark.changed);
    let again = deployments
        .mark_known_good("web", Some(3))
        .await
        .expect("mark again");
    assert!(!again.changed, "marking twice writes nothing");
    let known_good = actions::build(&rollback(None, true)).expect("builds");
    let ctx = context(&sim, "r-11", "rollback");
    let diff = known_good.diff(&ctx).await.expect("diff");
    assert_eq!(diff.mutations.len(), 1);
    run_step(known_good.as_ref(), &ctx)
        .await
        .expect("to known-good");
    assert_eq!(sim.image("web"), "registry.local/web:3");
    wait.verify(&ctx, &[]).await.expect("rolled out");
    // After renumbering, the known-good mark still resolves (by template hash): satisfied.
    assert!(
        known_good
            .diff(&context(&sim, "r-12", "rollback"))
            .await
            .expect("diff")
            .is_satisfied()
    );
    sim.cluster_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_is_refused_and_pause_resume_invert() {
    let sim = Sim::start().await;
    let ctx = context(&sim, "r-20", "pause");
    let pause = actions::build(&Action::DeploymentPause(args_ref("web"))).expect("builds");
    let diff = pause.diff(&ctx).await.expect("diff");
    let Inverse::MergePatch { patch, expected } = &diff.mutations[0].inverse else {
        panic!("pause inverts with a merge patch");
    };
    assert_eq!(patch, &serde_json::json!({"spec": {"paused": false}}));
    assert_eq!(expected, &serde_json::json!({"spec": {"paused": true}}));
    run_step(pause.as_ref(), &ctx).await.expect("paused");
    let writes = sim.cluster.write_request_count();
    assert!(
        pause.diff(&ctx).await.expect("diff").is_satisfied(),
        "pause is idempotent"
    );
    assert_eq!(sim.cluster.write_request_count(), writes);

    let rollback = actions::build(&rollback(None, false)).expect("builds");
    let writes = sim.cluster.write_request_count();
    let err = rollback
        .diff(&context(&sim, "r-20", "rollback"))
        .await
        .expect_err("paused");
    assert_eq!(err.category(), "refused");
    assert!(
        err.to_string().contains("paused") && err.to_string().contains("resume"),
        "{err}"
    );
    assert_eq!(
        sim.cluster.write_request_count(),
        writes,
        "a refusal writes nothing"
    );

    // The inverse (cleanup's merge patch) resumes it; resume is then already satisfied.
    sim.merge_patch_deployment("web", patch).await;
    let resume = actions::build(&Action::DeploymentResume(args_ref("web"))).expect("builds");
    assert!(resume.diff(&ctx).await.expect("diff").is_satisfied());
    sim.cluster_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_applies_verifies_and_inverts() {
    let sim = Sim::start().await;
    let ctx = context(&sim, "r-30", "scale");
    let scale = actions::build(&Action::DeploymentScale(catalog::DeploymentScale {
        namespace: Some("shop".into()),
        name: "web".into(),
        replicas: 5,
    }))
    .expect("builds");
    let diff = scale.diff(&ctx).await.expect("diff");
    assert_eq!(diff.mutations.len(), 1);
    let Inverse::MergePatch { patch, .. } = diff.mutations[0].inverse.clone() else {
        panic!("scale inverts with a merge patch");
    };
    assert_eq!(patch, serde_json::json!({"spec": {"replicas": 3}}));
    run_step(scale.as_ref(), &ctx)
        .await
        .expect("scaled and ready");
    let d = sim.deployment("web");
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["status"]["availableReplicas"], 5, "{}", d["status"]);
    let writes = sim.cluster.write_request_count();
    assert!(scale.diff(&ctx).await.expect("diff").is_satisfied());
    assert_eq!(sim.cluster.write_request_count(), writes);
    sim.merge_patch_deployment("web", &patch).await;
    assert_eq!(sim.deployment("web")["spec"]["replicas"], 3);
    sim.cluster_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_rolled_out_fails_on_a_bad_release_past_its_deadline() {
    let sim = Sim::start().await;
    // Deploy a bad release by hand (a template change), then wait: the progress deadline of
    // the scenario (short) expires and the wait fails with kubectl's message.
    sim.merge_patch_deployment(
        "web",
        &serde_json::json!({"spec": {"template": {
            "metadata": {"annotations": {"sim.ripcord.dev/bad-release": "true"}},
            "spec": {"containers": [{"name": "web", "image": "registry.local/web:bad"}]}}}}),
    )
    .await;
    let wait = actions::build(&wait_rolled_out()).expect("builds");
    let mut ctx = context(&sim, "r-40", "wait");
    ctx.verify_timeout = Duration::from_secs(60);
    let err = wait
        .verify(&ctx, &[])
        .await
        .expect_err("the bad release never completes");
    assert!(
        matches!(err.category(), "verify-failed" | "timeout"),
        "{err} ({})",
        err.category()
    );
    let text = err.to_string();
    assert!(
        text.contains("progress deadline") || text.contains("Waiting"),
        "{text}"
    );
    // It never marked the bad release verified-healthy (a known-good candidate).
    let deployments = Deployments::new(sim.cluster.client(), "shop", Duration::from_secs(5));
    let d = deployments.get("web").await.expect("get");
    let history = deployments.revision_history(&d).await.expect("history");
    let bad = history
        .iter()
        .find(|r| r.template["spec"]["containers"][0]["image"] == "registry.local/web:bad")
        .expect("the bad revision exists");
    assert_eq!(bad.verified_healthy, None);
    sim.cluster_shutdown().await;
}
