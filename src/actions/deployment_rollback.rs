//! `deployment.rollback`: restore an earlier revision of a Deployment like
//! `kubectl rollout undo` — the previous revision, `toRevision: N`, or the last known-good.
//!
//! - A paused Deployment is refused, as kubectl does.
//! - Already satisfied when the template equals the target revision's (kubectl's "skipped"),
//!   or when this Deployment carries a rollback marker for the same request whose restored
//!   template is still in place — so a resumed run, or the same rollback run again, writes
//!   nothing (a second "undo" would otherwise flip back to the bad release).
//! - The write is kubectl's JSON patch (template + annotations) plus ripcord's marker
//!   (see [`crate::k8s::deployments`]).
//! - The inverse is [`Inverse::NotReverted`]: cleanup never rolls forward to the release that
//!   was rolled back; `roll_forward` holds the patch restoring the pre-image on request.
//! - `verify` confirms the patch landed (the marker of this run and step is on the object);
//!   waiting for the rollout is the job of `deployment.waitRolledOut`.

use super::text_diff;
use super::{
    Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef, ObservedRead,
    deployment_ref,
};
use crate::k8s::deployments::{
    self, Deployments, RevisionChoice, RollbackMarker, current_revision, deployment_template,
    latest_revision, rollback_marker, rollback_patch, select_revision_explained, templates_equal,
};
use crate::playbook::catalog;
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// The `deployment.rollback` action.
#[derive(Debug, Clone)]
pub struct DeploymentRollback {
    args: catalog::DeploymentRollback,
    choice: RevisionChoice,
}

// === impl DeploymentRollback ===

impl DeploymentRollback {
    /// Checks the arguments: `toRevision` (0 or absent: previous) and `knownGood` exclude each
    /// other; a negative revision is invalid.
    pub fn new(args: catalog::DeploymentRollback) -> Result<DeploymentRollback, ActionError> {
        let choice = match (args.to_revision, args.known_good) {
            (Some(n), _) if n < 0 => {
                return Err(ActionError::Invalid {
                    object: format!("deployment/{}", args.name),
                    reason: format!("toRevision must be a positive revision number, got {n}"),
                });
            }
            (Some(n), true) if n > 0 => {
                return Err(ActionError::Invalid {
                    object: format!("deployment/{}", args.name),
                    reason: "toRevision and knownGood exclude each other; choose one".into(),
                });
            }
            (Some(n), false) if n > 0 => RevisionChoice::Number(n),
            (_, true) => RevisionChoice::KnownGood,
            _ => RevisionChoice::Previous,
        };
        Ok(DeploymentRollback { args, choice })
    }

    /// Which revision this rollback restores.
    pub fn choice(&self) -> RevisionChoice {
        self.choice
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let namespace = ctx.namespace(self.args.namespace.as_deref());
        let name = &self.args.name;
        let deployments = Deployments::new(ctx.client.clone(), &namespace, ctx.call_timeout);
        let object = deployments.describe(name);
        let deployment = deployments.get(name).await?;
        if deployment.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            return Err(ActionError::Refused {
                reason: format!(
                    "{object} is paused: you cannot roll back a paused deployment; resume it \
                     first (`kubectl rollout resume deployment/{name} -n {namespace}` or a \
                     deployment.resume step) and try again"
                ),
            });
        }
        let (history, replica_sets) = deployments
            .revision_history_and_replica_sets(&deployment)
            .await?;
        // The pre-mutation snapshot takes these reads instead of making them again.
        ctx.observed.record(
            deployment_ref(&namespace, name),
            ObservedRead {
                object: serde_json::to_value(&deployment).unwrap_or(Value::Null),
                related: replica_sets
                    .iter()
                    .filter_map(|rs| serde_json::to_value(rs).ok())
                    .collect(),
            },
        );
        let current = deployment_template(&deployment);
        let current_rev = current_revision(&deployment, &history);

        if let Some(marker) = rollback_marker(&deployment)
            && marker.choice == self.choice
            && let Some(hash) = marker.to_hash.as_ref()
            && let Some(restored) = history
                .iter()
                .find(|r| r.template_hash.as_ref() == Some(hash))
            && templates_equal(&restored.template, &current)
        {
            let summary = if marker.run == ctx.run_id && marker.step == ctx.step {
                format!(
                    "{object} is rolled back to the template of revision {} (this step's write \
                     is in place)",
                    marker.to_revision
                )
            } else {
                format!(
                    "{object} is already rolled back ({}) to the template of revision {} by \
                     run {} step {}; nothing to do",
                    self.choice, marker.to_revision, marker.run, marker.step
                )
            };
            return Ok(Diff {
                summary,
                mutations: Vec::new(),
                progress: None,
            });
        }

        let selection = select_revision_explained(&deployment, &history, self.choice)?;
        let target = selection.revision;
        // Said in the diff summary and the mutation: which revision and why, when it is not
        // kubectl's (the previous one never became available).
        let why = selection
            .explanation()
            .map(|e| {
                format!(
                    "; {e}; to choose yourself: --to-revision N, or --known-good after \
                     `ripcord mark-good deployment/{name}`"
                )
            })
            .unwrap_or_default();
        if templates_equal(&target.template, &current) {
            return Ok(Diff {
                summary: format!(
                    "{object}: current template already matches revision {}; skipped",
                    target.revision
                ),
                mutations: Vec::new(),
                progress: None,
            });
        }
        let from = current_rev.or_else(|| latest_revision(&history));
        let marker = RollbackMarker {
            run: ctx.run_id.clone(),
            step: ctx.step.clone(),
            choice: self.choice,
            from_revision: from.map(|r| r.revision),
            from_hash: from.and_then(|r| r.template_hash.clone()),
            to_revision: target.revision,
            to_hash: target.template_hash.clone(),
        };
        let patch = rollback_patch(&deployment, target, &marker);
        let from_text = from
            .map(|r| format!("revision {}", r.revision))
            .unwrap_or_else(|| "the current template".into());
        let cause = target
            .change_cause
            .as_ref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let description = format!(
            "roll back {object} from {from_text} to revision {}{cause}{why}",
            target.revision
        );
        let diff = format!(
            "--- {object} spec.template ({from_text})\n+++ revision {} (ReplicaSet {})\n{}",
            target.revision,
            target.replica_set,
            text_diff::diff_values(&current, &target.template)
        );
        let annotations = deployment.metadata.annotations.clone().unwrap_or_default();
        let pre_image = json!({
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": deployment.metadata.resource_version,
                "generation": deployment.metadata.generation,
                "annotations": annotations,
            },
            "spec": { "template": current },
        });
        let mutation = Mutation {
            id: format!("rollback/{namespace}/{name}"),
            target: deployment_ref(&namespace, name),
            description: description.clone(),
            diff,
            pre_image,
            resource_version: deployment.metadata.resource_version.clone(),
            request: json!({
                "jsonPatch": patch,
                "toRevision": target.revision,
                "toHash": target.template_hash,
            }),
            inverse: Inverse::NotReverted {
                reason: "a rollback is not reverted automatically: that would roll forward to \
                         the release that was rolled back; roll_forward restores the \
                         pre-image on explicit request"
                    .into(),
                roll_forward: Some(deployments::restore_patch(&deployment)),
            },
        };
        Ok(Diff {
            summary: description,
            mutations: vec![mutation],
            progress: None,
        })
    }

    async fn apply_one(
        &self,
        ctx: &ActionContext,
        mutation: &Mutation,
    ) -> Result<Applied, ActionError> {
        let namespace = ctx.namespace(self.args.namespace.as_deref());
        let deployments = Deployments::new(ctx.client.clone(), &namespace, ctx.call_timeout);
        let patch = mutation
            .request
            .get("jsonPatch")
            .cloned()
            .unwrap_or(Value::Null);
        if !patch.is_array() {
            return Err(ActionError::Invalid {
                object: mutation.target.to_string(),
                reason: "the mutation's request holds no JSON patch".into(),
            });
        }
        let written = deployments.patch_json(&self.args.name, &patch).await?;
        tracing::info!(run = %ctx.run_id, step = %ctx.step, target = %mutation.target, "rollback patch applied");
        Ok(Applied {
            id: mutation.id.clone(),
            target: mutation.target.clone(),
            resource_version_after: written.metadata.resource_version,
        })
    }

    async fn verify_landed(
        &self,
        ctx: &ActionContext,
        applied: &[Applied],
    ) -> Result<(), ActionError> {
        if applied.is_empty() {
            return Ok(());
        }
        let namespace = ctx.namespace(self.args.namespace.as_deref());
        let deployments = Deployments::new(ctx.client.clone(), &namespace, ctx.call_timeout);
        let deployment = deployments.get(&self.args.name).await?;
        match rollback_marker(&deployment) {
            Some(m) if m.run == ctx.run_id && m.step == ctx.step => Ok(()),
            _ => Err(ActionError::VerifyFailed {
                reason: format!(
                    "{} does not carry this run's rollback marker: someone changed it since",
                    deployments.describe(&self.args.name)
                ),
            }),
        }
    }
}

impl Action for DeploymentRollback {
    fn kind(&self) -> &'static str {
        "deployment.rollback"
    }

    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef> {
        let ns = super::namespace_or(self.args.namespace.as_deref(), default_namespace);
        vec![deployment_ref(ns, &self.args.name)]
    }

    /// The JSON patch replaces `metadata.resourceVersion` with the one the diff read: a
    /// Deployment changed since is a 409, never overwritten.
    fn writes_are_conditional(&self) -> bool {
        true
    }

    /// `verify` checks that this run's marker is on the Deployment, i.e. the restored
    /// template is in place: the step is done.
    fn settled_by_verify(&self) -> bool {
        true
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
        Box::pin(self.verify_landed(ctx, applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(to_revision: Option<i64>, known_good: bool) -> catalog::DeploymentRollback {
        catalog::DeploymentRollback {
            namespace: None,
            name: "web".into(),
            to_revision,
            known_good,
        }
    }

    #[test]
    fn arguments_choose_the_revision() {
        let choice = |t, k| DeploymentRollback::new(args(t, k)).map(|a| a.choice());
        assert_eq!(choice(None, false).unwrap(), RevisionChoice::Previous);
        assert_eq!(choice(Some(0), false).unwrap(), RevisionChoice::Previous);
        assert_eq!(choice(Some(4), false).unwrap(), RevisionChoice::Number(4));
        assert_eq!(choice(None, true).unwrap(), RevisionChoice::KnownGood);
        assert_eq!(choice(Some(4), true).unwrap_err().category(), "invalid");
        assert_eq!(choice(Some(-1), false).unwrap_err().category(), "invalid");
    }
}
