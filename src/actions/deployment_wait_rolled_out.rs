//! `deployment.waitRolledOut`: wait, bounded by the step timeout, until a Deployment's rollout
//! completes by `kubectl rollout status` rules (observedGeneration, updated/available
//! counters, no old replicas; `ProgressDeadlineExceeded` fails at once).
//!
//! No mutation: `diff` only observes; the wait is `verify`. After a verified healthy rollout
//! the ReplicaSet running the verified template is annotated `ripcord.dev/verified-healthy`
//! (the run id), which makes it a known-good candidate for `rollback --known-good`. That
//! metadata write happens once per ReplicaSet (never to the Deployment), so verifying again
//! writes nothing. A failure to write the mark is logged, never fails the step.

use super::{
    Action, ActionContext, ActionError, Applied, Diff, Mutation, ObjectRef, deployment_ref,
};
use crate::k8s::deployments::{Deployments, RolloutWait, rollout_status};
use crate::playbook::catalog;
use futures::future::BoxFuture;

/// The `deployment.waitRolledOut` action.
#[derive(Debug, Clone)]
pub struct DeploymentWaitRolledOut {
    args: catalog::DeploymentRef,
}

// === impl DeploymentWaitRolledOut ===

impl DeploymentWaitRolledOut {
    /// The action for one Deployment.
    pub fn new(args: catalog::DeploymentRef) -> DeploymentWaitRolledOut {
        DeploymentWaitRolledOut { args }
    }

    fn deployments(&self, ctx: &ActionContext) -> Deployments {
        let namespace = ctx.namespace(self.args.namespace.as_deref());
        Deployments::new(ctx.client.clone(), &namespace, ctx.call_timeout)
    }

    async fn observe(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let deployments = self.deployments(ctx);
        let deployment = deployments.get(&self.args.name).await?;
        Ok(Diff {
            summary: format!(
                "wait for {} to finish rolling out (now: {})",
                deployments.describe(&self.args.name),
                rollout_status(&deployment).message()
            ),
            mutations: Vec::new(),
            progress: None,
        })
    }

    async fn wait(&self, ctx: &ActionContext) -> Result<(), ActionError> {
        let deployments = self.deployments(ctx);
        let object = deployments.describe(&self.args.name);
        let run = ctx.run_id.clone();
        let step = ctx.step.clone();
        let progress = move |message: &str| {
            tracing::info!(run = %run, step = %step, status = message, "rollout progress");
        };
        match deployments
            .wait_rolled_out(&self.args.name, ctx.verify_timeout, &progress)
            .await?
        {
            RolloutWait::Complete(deployment) => {
                match deployments
                    .mark_verified_healthy(&deployment, &ctx.run_id)
                    .await
                {
                    Ok(Some(revision)) => tracing::info!(
                        run = %ctx.run_id, step = %ctx.step, deployment = %object,
                        revision, "revision verified healthy (known-good candidate)"
                    ),
                    Ok(None) => {}
                    Err(err) => tracing::warn!(
                        run = %ctx.run_id, step = %ctx.step, deployment = %object,
                        error = %err, "could not mark the verified revision known-good"
                    ),
                }
                Ok(())
            }
            RolloutWait::Failed { message } => Err(ActionError::VerifyFailed {
                reason: format!(
                    "{message}; inspect `kubectl describe deployment/{} -n {}` and consider a rollback",
                    self.args.name,
                    deployments.namespace()
                ),
            }),
            RolloutWait::TimedOut { last } => Err(ActionError::Timeout {
                what: format!("the rollout of {object} (last status: {last})"),
                after: ctx.verify_timeout,
            }),
        }
    }
}

impl Action for DeploymentWaitRolledOut {
    fn kind(&self) -> &'static str {
        "deployment.waitRolledOut"
    }

    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef> {
        let ns = super::namespace_or(self.args.namespace.as_deref(), default_namespace);
        vec![deployment_ref(ns, &self.args.name)]
    }

    fn verify_when_satisfied(&self) -> bool {
        true
    }

    fn diff<'a>(&'a self, ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>> {
        Box::pin(self.observe(ctx))
    }

    fn apply<'a>(
        &'a self,
        _ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>> {
        Box::pin(async move {
            Err(ActionError::Invalid {
                object: mutation.target.to_string(),
                reason: "deployment.waitRolledOut makes no writes".into(),
            })
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(self.wait(ctx))
    }
}
