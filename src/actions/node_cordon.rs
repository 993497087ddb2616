//! `node.cordon` and `node.uncordon`: mark nodes unschedulable (or schedulable again), by names
//! and/or a label selector.
//!
//! A cordon also marks each node it takes out with the label
//! `ripcord.dev/cordoned-by=<run-id>` and the annotation `ripcord.dev/cordoned-step=<step>`, so
//! fail-back and cleanup know exactly which nodes ripcord took out (and which run did). A node
//! that is already cordoned — by ripcord or by anyone else — is left alone (no mutation; a
//! node cordoned by someone else gets no mark, so ripcord will not uncordon it later). The
//! inverse of a cordon is a merge patch restoring `spec.unschedulable` and removing the marks.
//!
//! An uncordon touches only nodes that are safe to touch: nodes named explicitly in `names`,
//! nodes marked by this run, and — when the selector itself names the
//! `ripcord.dev/cordoned-by` label — the nodes it selects. Cordoned nodes selected otherwise are
//! reported and left alone. The inverse of an uncordon cordons again with the old marks.
//!
//! Both are single-phase: `apply` checks the node returned by the patch, so `verify` has nothing
//! left to wait for.

use super::{Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef};
use crate::k8s::nodes::{self, Nodes};
use crate::playbook::catalog::NodeSelection;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The label carrying the id of the run that cordoned a node.
pub const CORDONED_BY_LABEL: &str = "ripcord.dev/cordoned-by";
/// The annotation carrying the step that cordoned a node.
pub const CORDONED_STEP_ANNOTATION: &str = "ripcord.dev/cordoned-step";

/// The `node.cordon` / `node.uncordon` action.
#[derive(Debug, Clone)]
pub struct NodeCordon {
    selection: NodeSelection,
    cordon: bool,
}

// === impl NodeCordon ===

impl NodeCordon {
    /// `node.cordon` on the selected nodes.
    pub fn cordon(selection: NodeSelection) -> Result<NodeCordon, ActionError> {
        check_selection(&selection)?;
        Ok(NodeCordon {
            selection,
            cordon: true,
        })
    }

    /// `node.uncordon` on the selected nodes.
    pub fn uncordon(selection: NodeSelection) -> Result<NodeCordon, ActionError> {
        check_selection(&selection)?;
        Ok(NodeCordon {
            selection,
            cordon: false,
        })
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let nodes = select_nodes(
            ctx,
            &self.selection.names,
            self.selection.selector.as_deref(),
        )
        .await?;
        let mut mutations = Vec::new();
        let mut left_alone = Vec::new();
        for node in &nodes {
            if self.cordon {
                mutations.extend(cordon_mutation(node, &ctx.run_id, &ctx.step));
            } else if nodes::is_unschedulable(node) {
                let named = self.selection.names.iter().any(|n| n == nodes::name(node));
                let by_mark = self
                    .selection
                    .selector
                    .as_deref()
                    .is_some_and(|s| s.contains(CORDONED_BY_LABEL));
                let ours = nodes::label(node, CORDONED_BY_LABEL) == Some(ctx.run_id.as_str());
                if named || by_mark || ours {
                    mutations.extend(uncordon_mutation(node));
                } else {
                    left_alone.push(nodes::name(node).to_string());
                }
            }
        }
        let verb = if self.cordon { "cordon" } else { "uncordon" };
        let mut summary = format!(
            "{verb} {} of {} selected node(s)",
            mutations.len(),
            nodes.len()
        );
        if !left_alone.is_empty() {
            summary.push_str(&format!(
                "; left alone {} node(s) cordoned by someone else or another run ({}) — name \
                 them in `names` or select them with `{CORDONED_BY_LABEL}=<run-id>` to uncordon",
                left_alone.len(),
                left_alone.join(", ")
            ));
        }
        Ok(Diff {
            summary,
            mutations,
            progress: None,
        })
    }
}

impl Action for NodeCordon {
    fn kind(&self) -> &'static str {
        if self.cordon {
            "node.cordon"
        } else {
            "node.uncordon"
        }
    }

    fn targets(&self, _default_namespace: &str) -> Vec<ObjectRef> {
        self.selection.names.iter().map(|n| node_ref(n)).collect()
    }

    /// Cordons (uncordons) of different nodes are independent.
    fn parallel_mutations(&self) -> usize {
        super::node_drain::PARALLEL_MUTATIONS
    }

    fn diff<'a>(&'a self, ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>> {
        Box::pin(self.compute(ctx))
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>> {
        Box::pin(apply_node_patch(ctx, mutation))
    }

    fn verify<'a>(
        &'a self,
        _ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async { Ok(()) })
    }
}

fn check_selection(selection: &NodeSelection) -> Result<(), ActionError> {
    if selection.names.is_empty() && selection.selector.as_deref().is_none_or(str::is_empty) {
        return Err(ActionError::Invalid {
            object: "nodes".into(),
            reason: "give `names` or `selector` (or both)".into(),
        });
    }
    Ok(())
}

/// The reference of a node.
pub(crate) fn node_ref(name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Node".into(),
        namespace: None,
        name: name.to_string(),
    }
}

/// The nodes named in `names` plus the nodes matching `selector`, each once, sorted by name.
/// A named node that does not exist is an error.
pub(crate) async fn select_nodes(
    ctx: &ActionContext,
    names: &[String],
    selector: Option<&str>,
) -> Result<Vec<Node>, ActionError> {
    let api = Nodes::new(ctx.client.clone(), ctx.call_timeout);
    let mut found: Vec<Node> = Vec::new();
    if let Some(selector) = selector.filter(|s| !s.trim().is_empty()) {
        found = api.list(Some(selector)).await?;
    }
    let mut seen: BTreeSet<String> = found.iter().map(|n| nodes::name(n).to_string()).collect();
    for name in names {
        if seen.insert(name.clone()) {
            found.push(api.get(name).await?);
        }
    }
    found.sort_by(|a, b| nodes::name(a).cmp(nodes::name(b)));
    Ok(found)
}

/// The cordon (with marks) of one node; `None` when it is already cordoned.
pub(crate) fn cordon_mutation(node: &Node, run_id: &str, step: &str) -> Option<Mutation> {
    if nodes::is_unschedulable(node) {
        return None;
    }
    let name = nodes::name(node);
    let old_label = nodes::label(node, CORDONED_BY_LABEL);
    let old_step = nodes::annotation(node, CORDONED_STEP_ANNOTATION);
    let request = json!({
        "metadata": {
            "labels": { CORDONED_BY_LABEL: run_id },
            "annotations": { CORDONED_STEP_ANNOTATION: step },
        },
        "spec": { "unschedulable": true },
    });
    Some(Mutation {
        id: format!("cordon/{name}"),
        target: node_ref(name),
        description: format!("cordon node {name}"),
        diff: format!(
            "  spec:\n-   unschedulable: false\n+   unschedulable: true\n  metadata.labels:\n+   \
             {CORDONED_BY_LABEL}: {run_id}\n"
        ),
        pre_image: node_pre_image(node),
        resource_version: node.metadata.resource_version.clone(),
        inverse: Inverse::MergePatch {
            patch: json!({
                "metadata": {
                    "labels": { CORDONED_BY_LABEL: old_label },
                    "annotations": { CORDONED_STEP_ANNOTATION: old_step },
                },
                "spec": { "unschedulable": Value::Null },
            }),
            expected: request.clone(),
        },
        request,
    })
}

/// The uncordon (removing the marks) of one node; `None` when it is schedulable and unmarked.
pub(crate) fn uncordon_mutation(node: &Node) -> Option<Mutation> {
    let old_label = nodes::label(node, CORDONED_BY_LABEL);
    let old_step = nodes::annotation(node, CORDONED_STEP_ANNOTATION);
    if !nodes::is_unschedulable(node) && old_label.is_none() && old_step.is_none() {
        return None;
    }
    let name = nodes::name(node);
    let request = json!({
        "metadata": {
            "labels": { CORDONED_BY_LABEL: Value::Null },
            "annotations": { CORDONED_STEP_ANNOTATION: Value::Null },
        },
        "spec": { "unschedulable": Value::Null },
    });
    let was = nodes::is_unschedulable(node);
    Some(Mutation {
        id: format!("uncordon/{name}"),
        target: node_ref(name),
        description: format!("uncordon node {name}"),
        diff: format!(
            "  spec:\n-   unschedulable: {was}\n+   unschedulable: false\n  metadata.labels:\n-   \
             {CORDONED_BY_LABEL}: {}\n",
            old_label.unwrap_or("")
        ),
        pre_image: node_pre_image(node),
        resource_version: node.metadata.resource_version.clone(),
        inverse: Inverse::MergePatch {
            patch: json!({
                "metadata": {
                    "labels": { CORDONED_BY_LABEL: old_label },
                    "annotations": { CORDONED_STEP_ANNOTATION: old_step },
                },
                "spec": { "unschedulable": if was { Value::Bool(true) } else { Value::Null } },
            }),
            expected: request.clone(),
        },
        request,
    })
}

fn node_pre_image(node: &Node) -> Value {
    json!({
        "metadata": {
            "name": node.metadata.name,
            "resourceVersion": node.metadata.resource_version,
            "labels": { CORDONED_BY_LABEL: nodes::label(node, CORDONED_BY_LABEL) },
            "annotations": {
                CORDONED_STEP_ANNOTATION: nodes::annotation(node, CORDONED_STEP_ANNOTATION)
            },
        },
        "spec": { "unschedulable": nodes::is_unschedulable(node) },
    })
}

/// Applies a node mutation (its `request` is the merge patch) and checks the result.
pub(crate) async fn apply_node_patch(
    ctx: &ActionContext,
    mutation: &Mutation,
) -> Result<Applied, ActionError> {
    let api = Nodes::new(ctx.client.clone(), ctx.call_timeout);
    let name = &mutation.target.name;
    let written = api.patch_merge(name, &mutation.request).await?;
    let want = mutation
        .request
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if nodes::is_unschedulable(&written) != want {
        return Err(ActionError::VerifyFailed {
            reason: format!(
                "node {name} reports unschedulable={} after the patch",
                nodes::is_unschedulable(&written)
            ),
        });
    }
    tracing::info!(run = %ctx.run_id, step = %ctx.step, node = %name, unschedulable = want,
                   "node patched");
    Ok(Applied {
        id: mutation.id.clone(),
        target: mutation.target.clone(),
        resource_version_after: written.metadata.resource_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(unschedulable: bool, marked: Option<&str>) -> Node {
        let mut labels = serde_json::Map::new();
        if let Some(run) = marked {
            labels.insert(CORDONED_BY_LABEL.into(), json!(run));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "a-1", "resourceVersion": "7", "labels": labels},
            "spec": {"unschedulable": unschedulable}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn cordon_marks_and_inverse_restores() {
        let Some(m) = cordon_mutation(&node(false, None), "r-1", "failout") else {
            panic!("expected a cordon");
        };
        assert_eq!(m.id, "cordon/a-1");
        assert_eq!(m.request["metadata"]["labels"][CORDONED_BY_LABEL], "r-1");
        assert_eq!(m.request["spec"]["unschedulable"], true);
        let Inverse::MergePatch { patch, expected } = &m.inverse else {
            panic!("wrong inverse");
        };
        assert_eq!(patch["metadata"]["labels"][CORDONED_BY_LABEL], Value::Null);
        assert_eq!(patch["spec"]["unschedulable"], Value::Null);
        assert_eq!(expected, &m.request);
        assert!(cordon_mutation(&node(true, None), "r-1", "s").is_none());
        assert!(cordon_mutation(&node(true, Some("r-1")), "r-1", "s").is_none());
    }

    #[test]
    fn uncordon_removes_marks_and_is_idempotent() {
        let Some(m) = uncordon_mutation(&node(true, Some("r-1"))) else {
            panic!("expected an uncordon");
        };
        assert_eq!(
            m.request["metadata"]["labels"][CORDONED_BY_LABEL],
            Value::Null
        );
        let Inverse::MergePatch { patch, .. } = &m.inverse else {
            panic!("wrong inverse");
        };
        assert_eq!(patch["metadata"]["labels"][CORDONED_BY_LABEL], "r-1");
        assert_eq!(patch["spec"]["unschedulable"], true);
        assert!(uncordon_mutation(&node(false, None)).is_none());
    }
}
