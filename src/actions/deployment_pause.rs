//! `deployment.pause` and `deployment.resume`: set `spec.paused` (like `kubectl rollout
//! pause|resume`).
//!
//! Already satisfied when `spec.paused` already has the value. The inverse is a merge patch
//! restoring the previous value. `verify` re-reads the Deployment and checks the field.

use super::{
    Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef, deployment_ref,
};
use crate::k8s::deployments::Deployments;
use crate::playbook::catalog;
use futures::future::BoxFuture;
use serde_json::json;

/// `deployment.pause` (`paused: true`) or `deployment.resume` (`paused: false`).
#[derive(Debug, Clone)]
pub struct DeploymentPause {
    args: catalog::DeploymentRef,
    paused: bool,
}

// === impl DeploymentPause ===

impl DeploymentPause {
    /// `deployment.pause`.
    pub fn pause(args: catalog::DeploymentRef) -> DeploymentPause {
        DeploymentPause { args, paused: true }
    }

    /// `deployment.resume`.
    pub fn resume(args: catalog::DeploymentRef) -> DeploymentPause {
        DeploymentPause {
            args,
            paused: false,
        }
    }

    fn verb(&self) -> &'static str {
        if self.paused { "pause" } else { "resume" }
    }

    fn deployments(&self, ctx: &ActionContext) -> Deployments {
        let namespace = ctx.namespace(self.args.namespace.as_deref());
        Deployments::new(ctx.client.clone(), &namespace, ctx.call_timeout)
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let deployments = self.deployments(ctx);
        let name = &self.args.name;
        let object = deployments.describe(name);
        let deployment = deployments.get(name).await?;
        let current = deployment
            .spec
            .as_ref()
            .and_then(|s| s.paused)
            .unwrap_or(false);
        if current == self.paused {
            return Ok(Diff {
                summary: format!(
                    "{object} is already {}",
                    if self.paused { "paused" } else { "not paused" }
                ),
                mutations: Vec::new(),
                progress: None,
            });
        }
        let namespace = deployments.namespace().to_string();
        let description = format!("{} {object}", self.verb());
        Ok(Diff {
            summary: description.clone(),
            mutations: vec![Mutation {
                id: format!("{}/{namespace}/{name}", self.verb()),
                target: deployment_ref(&namespace, name),
                description,
                diff: format!(
                    "  spec:\n-   paused: {current}\n+   paused: {}\n",
                    self.paused
                ),
                pre_image: json!({
                    "metadata": { "name": name, "namespace": namespace,
                                  "resourceVersion": deployment.metadata.resource_version },
                    "spec": { "paused": current },
                }),
                resource_version: deployment.metadata.resource_version.clone(),
                request: json!({ "spec": { "paused": self.paused } }),
                inverse: Inverse::MergePatch {
                    patch: json!({ "spec": { "paused": current } }),
                    expected: json!({ "spec": { "paused": self.paused } }),
                },
            }],
            progress: None,
        })
    }

    async fn apply_one(
        &self,
        ctx: &ActionContext,
        mutation: &Mutation,
    ) -> Result<Applied, ActionError> {
        let written = self
            .deployments(ctx)
            .set_paused(&self.args.name, self.paused)
            .await?;
        tracing::info!(run = %ctx.run_id, step = %ctx.step, target = %mutation.target,
                       paused = self.paused, "paused flag set");
        Ok(Applied {
            id: mutation.id.clone(),
            target: mutation.target.clone(),
            resource_version_after: written.metadata.resource_version,
        })
    }

    async fn check(&self, ctx: &ActionContext, applied: &[Applied]) -> Result<(), ActionError> {
        if applied.is_empty() {
            return Ok(());
        }
        let deployments = self.deployments(ctx);
        let deployment = deployments.get(&self.args.name).await?;
        let now = deployment
            .spec
            .as_ref()
            .and_then(|s| s.paused)
            .unwrap_or(false);
        if now == self.paused {
            Ok(())
        } else {
            Err(ActionError::VerifyFailed {
                reason: format!(
                    "{} has spec.paused={now} after the write; someone changed it since",
                    deployments.describe(&self.args.name)
                ),
            })
        }
    }
}

impl Action for DeploymentPause {
    fn kind(&self) -> &'static str {
        if self.paused {
            "deployment.pause"
        } else {
            "deployment.resume"
        }
    }

    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef> {
        let ns = super::namespace_or(self.args.namespace.as_deref(), default_namespace);
        vec![deployment_ref(ns, &self.args.name)]
    }

    fn diff<'a>(&'a self, ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>> {
        Box::pin(self.compute(ctx))
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>> {
        Box::pin(self.apply_one(ctx, mutation))
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(self.check(ctx, applied))
    }
}
