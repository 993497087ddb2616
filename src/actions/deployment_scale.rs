//! `deployment.scale`: set a Deployment's replicas through the `scale` subresource (like
//! `kubectl scale`).
//!
//! Already satisfied when `spec.replicas` already has the value. The inverse is a merge patch
//! restoring the previous count. `verify` waits (bounded) until the Deployment reports the new
//! count updated and available, by `kubectl rollout status` rules. An HPA targeting the
//! Deployment may override the count; the diff says so.

use super::{
    Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef, deployment_ref,
};
use crate::k8s::deployments::{Deployments, RolloutWait};
use crate::playbook::catalog;
use futures::future::BoxFuture;
use serde_json::json;

/// The `deployment.scale` action.
#[derive(Debug, Clone)]
pub struct DeploymentScale {
    args: catalog::DeploymentScale,
}

// === impl DeploymentScale ===

impl DeploymentScale {
    /// Checks the arguments (replicas must not be negative).
    pub fn new(args: catalog::DeploymentScale) -> Result<DeploymentScale, ActionError> {
        if args.replicas < 0 {
            return Err(ActionError::Invalid {
                object: format!("deployment/{}", args.name),
                reason: format!("replicas must be zero or more, got {}", args.replicas),
            });
        }
        Ok(DeploymentScale { args })
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
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let desired = self.args.replicas;
        if current == desired {
            return Ok(Diff {
                summary: format!("{object} already has {desired} replicas"),
                mutations: Vec::new(),
                progress: None,
            });
        }
        let namespace = deployments.namespace().to_string();
        let description = format!("scale {object} from {current} to {desired} replicas");
        Ok(Diff {
            summary: description.clone(),
            mutations: vec![Mutation {
                id: format!("scale/{namespace}/{name}"),
                target: deployment_ref(&namespace, name),
                description,
                diff: format!("  spec:\n-   replicas: {current}\n+   replicas: {desired}\n"),
                pre_image: json!({
                    "metadata": { "name": name, "namespace": namespace,
                                  "resourceVersion": deployment.metadata.resource_version },
                    "spec": { "replicas": current },
                }),
                resource_version: deployment.metadata.resource_version.clone(),
                request: json!({ "replicas": desired }),
                inverse: Inverse::MergePatch {
                    patch: json!({ "spec": { "replicas": current } }),
                    expected: json!({ "spec": { "replicas": desired } }),
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
        let rv = self
            .deployments(ctx)
            .scale(&self.args.name, self.args.replicas)
            .await?;
        tracing::info!(run = %ctx.run_id, step = %ctx.step, target = %mutation.target,
                       replicas = self.args.replicas, "scaled");
        Ok(Applied {
            id: mutation.id.clone(),
            target: mutation.target.clone(),
            resource_version_after: rv,
        })
    }

    async fn wait(&self, ctx: &ActionContext, applied: &[Applied]) -> Result<(), ActionError> {
        if applied.is_empty() {
            return Ok(());
        }
        let deployments = self.deployments(ctx);
        let object = deployments.describe(&self.args.name);
        let quiet = |_: &str| {};
        match deployments
            .wait_rolled_out(&self.args.name, ctx.verify_timeout, &quiet)
            .await?
        {
            RolloutWait::Complete(_) => Ok(()),
            RolloutWait::Failed { message } => Err(ActionError::VerifyFailed { reason: message }),
            RolloutWait::TimedOut { last } => Err(ActionError::Timeout {
                what: format!(
                    "{object} to reach {} replicas (last status: {last})",
                    self.args.replicas
                ),
                after: ctx.verify_timeout,
            }),
        }
    }
}

impl Action for DeploymentScale {
    fn kind(&self) -> &'static str {
        "deployment.scale"
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
        Box::pin(self.wait(ctx, applied))
    }
}
