//! `object.patch`: a JSON merge patch (RFC 7386) on any object, with an automatic inverse.
//!
//! - The kind is resolved through discovery; a kind the cluster does not serve is an error.
//! - Already satisfied when merging the patch into the current object changes nothing.
//! - The inverse touches exactly the paths the patch touches: each leaf gets its pre-image
//!   value back, and keys the patch added get `null` (removed). `expected` holds the touched
//!   paths as ripcord left them, for drift detection. The pre-image is trimmed to those paths.
//! - Secrets are refused: their pre-image would land in the journal.
//! - `verify` re-reads the object and checks the patch is still reflected.
//!
//! "Reflected" compares only the fields the patch sets, the way server-side apply compares a
//! field set ([`holds`]): a list the patch sets (containers, tolerations, ports) holds when the
//! object's list has as many items and each carries the fields the patch gave it — the API
//! server fills defaults into list items (`imagePullPolicy`, `protocol: TCP`), which a merge
//! of the patch into the live object would wipe out again, so "merge and compare" never
//! matched, the step never verified and every resume sent the PATCH again.

use super::text_diff;
use super::{Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef};
use crate::k8s::objects::{Objects, ResolvedKind};
use crate::playbook::catalog;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

/// The `object.patch` action.
#[derive(Debug, Clone)]
pub struct ObjectPatch {
    args: catalog::ObjectPatch,
}

// === impl ObjectPatch ===

impl ObjectPatch {
    /// Checks the arguments: the patch must be a JSON object; Secrets are refused.
    pub fn new(args: catalog::ObjectPatch) -> Result<ObjectPatch, ActionError> {
        if !args.patch.is_object() {
            return Err(ActionError::Invalid {
                object: format!("{}/{}", args.kind.to_lowercase(), args.name),
                reason: "patch must be a JSON object (a JSON merge patch)".into(),
            });
        }
        if args.kind == "Secret" && (args.api_version == "v1" || args.api_version.is_empty()) {
            return Err(ActionError::Refused {
                reason: "object.patch does not modify Secrets: their pre-image would be \
                         journaled"
                    .into(),
            });
        }
        Ok(ObjectPatch { args })
    }

    async fn resolve(
        &self,
        ctx: &ActionContext,
    ) -> Result<(Objects, ResolvedKind, Option<String>), ActionError> {
        let objects = Objects::new(ctx.client.clone(), ctx.call_timeout);
        let kind = objects
            .resolve(&self.args.api_version, &self.args.kind)
            .await?;
        let namespace = kind
            .namespaced
            .then(|| ctx.namespace(self.args.namespace.as_deref()));
        Ok((objects, kind, namespace))
    }

    fn object_ref(&self, namespace: Option<String>) -> ObjectRef {
        ObjectRef {
            api_version: self.args.api_version.clone(),
            kind: self.args.kind.clone(),
            namespace,
            name: self.args.name.clone(),
        }
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let (objects, kind, namespace) = self.resolve(ctx).await?;
        let target = self.object_ref(namespace.clone());
        let before = objects
            .get(&kind, namespace.as_deref(), &self.args.name)
            .await?;
        let mut after = before.clone();
        json_patch::merge(&mut after, &self.args.patch);
        if after == before || holds(&before, &self.args.patch) {
            return Ok(Diff {
                summary: format!("{target}: the patch changes nothing"),
                mutations: Vec::new(),
                progress: None,
            });
        }
        let inverse = inverse_merge_patch(&before, &self.args.patch);
        let expected = project(&after, &self.args.patch);
        let mut pre_image = project(&before, &self.args.patch);
        if let Some(map) = pre_image.as_object_mut() {
            let meta = map.entry("metadata").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert("name".into(), json!(self.args.name));
                if let Some(ns) = &namespace {
                    meta.insert("namespace".into(), json!(ns));
                }
                meta.insert(
                    "resourceVersion".into(),
                    before
                        .pointer("/metadata/resourceVersion")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
            }
        }
        let description = format!("patch {target}");
        Ok(Diff {
            summary: description.clone(),
            mutations: vec![Mutation {
                id: format!("patch/{target}"),
                target: target.clone(),
                description,
                diff: text_diff::diff_values(&project(&before, &self.args.patch), &expected),
                pre_image,
                resource_version: before
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                request: json!({ "mergePatch": self.args.patch }),
                inverse: Inverse::MergePatch {
                    patch: inverse,
                    expected,
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
        let (objects, kind, namespace) = self.resolve(ctx).await?;
        let patch = mutation
            .request
            .get("mergePatch")
            .cloned()
            .unwrap_or_else(|| self.args.patch.clone());
        let written = objects
            .patch_merge(&kind, namespace.as_deref(), &self.args.name, &patch)
            .await?;
        tracing::info!(run = %ctx.run_id, step = %ctx.step, target = %mutation.target, "object patched");
        Ok(Applied {
            id: mutation.id.clone(),
            target: mutation.target.clone(),
            resource_version_after: written
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    async fn check(&self, ctx: &ActionContext, applied: &[Applied]) -> Result<(), ActionError> {
        if applied.is_empty() {
            return Ok(());
        }
        let (objects, kind, namespace) = self.resolve(ctx).await?;
        let now = objects
            .get(&kind, namespace.as_deref(), &self.args.name)
            .await?;
        if holds(&now, &self.args.patch) {
            Ok(())
        } else {
            Err(ActionError::VerifyFailed {
                reason: format!(
                    "{} no longer reflects the patch (changed by someone else or reverted by a \
                     controller)",
                    self.object_ref(namespace)
                ),
            })
        }
    }
}

/// True when `live` carries every field `want` sets (a merge patch, or the values ripcord left
/// at a patch's leaves): objects key by key (`null` means absent), lists item by item (same
/// length, each item holding the fields given for it), anything else equal. Fields the server
/// or a controller filled in beside them (defaults in list items) do not matter.
pub fn holds(live: &Value, want: &Value) -> bool {
    match want {
        Value::Object(wanted) => {
            let empty = Map::new();
            let fields = match live {
                Value::Object(fields) => fields,
                // A merge patch of nothing but removals holds for an absent object.
                Value::Null => &empty,
                _ => return false,
            };
            if wanted.is_empty() {
                return live.is_object();
            }
            wanted
                .iter()
                .all(|(key, value)| match (value, fields.get(key)) {
                    (Value::Null, None | Some(Value::Null)) => true,
                    (Value::Null, Some(_)) | (_, None) => false,
                    (value, Some(have)) => holds(have, value),
                })
        }
        Value::Array(items) => match live {
            Value::Array(have) => {
                have.len() == items.len() && have.iter().zip(items).all(|(h, w)| holds(h, w))
            }
            _ => false,
        },
        scalar => live == scalar,
    }
}

/// The merge patch that reverts `patch` applied to `before`, for exactly the paths `patch`
/// touches: pre-image values where they existed, `null` where the patch added keys.
pub fn inverse_merge_patch(before: &Value, patch: &Value) -> Value {
    let Some(patch_map) = patch.as_object() else {
        return before.clone();
    };
    let mut out = Map::new();
    for (key, patch_value) in patch_map {
        let old = before.as_object().and_then(|m| m.get(key));
        match (patch_value, old) {
            // Removing a key that is not there: nothing to revert.
            (Value::Null, None) => {}
            (Value::Object(_), Some(old @ Value::Object(_))) => {
                let nested = inverse_merge_patch(old, patch_value);
                if nested.as_object().is_some_and(|m| !m.is_empty()) {
                    out.insert(key.clone(), nested);
                }
            }
            // The patch adds a whole subtree: null out each key it adds.
            (Value::Object(_), None) => {
                let nested = inverse_merge_patch(&Value::Null, patch_value);
                if nested.as_object().is_some_and(|m| !m.is_empty()) {
                    out.insert(key.clone(), nested);
                }
            }
            (_, Some(old)) => {
                out.insert(key.clone(), old.clone());
            }
            (_, None) => {
                out.insert(key.clone(), Value::Null);
            }
        }
    }
    Value::Object(out)
}

/// The values of `value` at exactly the paths `patch` touches (`null` where absent).
pub fn project(value: &Value, patch: &Value) -> Value {
    let Some(patch_map) = patch.as_object() else {
        return value.clone();
    };
    let mut out = Map::new();
    for (key, patch_value) in patch_map {
        let current = value.as_object().and_then(|m| m.get(key));
        let projected = match (patch_value, current) {
            (Value::Object(_), Some(current @ Value::Object(_))) => project(current, patch_value),
            (Value::Object(_), None) => project(&Value::Null, patch_value),
            (_, Some(current)) => current.clone(),
            (_, None) => Value::Null,
        };
        out.insert(key.clone(), projected);
    }
    Value::Object(out)
}

impl Action for ObjectPatch {
    fn kind(&self) -> &'static str {
        "object.patch"
    }

    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef> {
        // Namespaced or not is only known after discovery; cluster-scoped kinds ignore it.
        let ns = self
            .args
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default_namespace.to_string());
        vec![self.object_ref(Some(ns))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue12_a_patched_list_holds_despite_server_defaults() {
        let live = json!({"spec": {"containers": [{"name": "web", "image": "web:2",
            "imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]},
            "metadata": {"labels": {"a": "b"}}});
        let patch = json!({"spec": {"containers": [{"name": "web", "image": "web:2",
            "ports": [{"containerPort": 80}]}], "tolerations": [{"key": "k", "operator": "Exists",
            "effect": "NoSchedule"}]}, "metadata": {"labels": {"gone": null}}});
        assert!(holds(&live, &patch));
        // The old check: merging the patch wipes the defaults out, so it never matched.
        let mut merged = live.clone();
        json_patch::merge(&mut merged, &patch);
        assert_ne!(merged, live);
        // A different image, a missing item, an extra item, a key that should be gone: no.
        let other = json!({"spec": {"containers": [{"name": "web", "image": "web:3"}]}});
        assert!(!holds(&live, &other));
        assert!(!holds(&live, &json!({"spec": {"tolerations": []}})));
        assert!(!holds(
            &live,
            &json!({"spec": {"tolerations": [{"key": "k"}, {"key": "j"}]}})
        ));
        assert!(!holds(&live, &json!({"metadata": {"labels": {"a": null}}})));
        assert!(holds(&Value::Null, &json!({"x": null})));
    }

    fn round_trip(before: Value, patch: Value) {
        let mut after = before.clone();
        json_patch::merge(&mut after, &patch);
        let inverse = inverse_merge_patch(&before, &patch);
        let mut restored = after.clone();
        json_patch::merge(&mut restored, &inverse);
        // Merge patches leave emptied maps behind; compare semantically.
        assert_eq!(
            crate::k8s::deployments::normalize(&restored),
            crate::k8s::deployments::normalize(&before),
            "inverse {inverse}"
        );
    }

    #[test]
    fn inverse_restores_changed_added_and_removed_keys() {
        let before = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}},
                            "spec": {"replicas": 3, "list": [1, 2]}});
        let patch = json!({"metadata": {"labels": {"a": "9", "c": "3", "b": null}},
                           "spec": {"list": [3], "new": {"deep": true}}});
        let inverse = inverse_merge_patch(&before, &patch);
        assert_eq!(
            inverse,
            json!({"metadata": {"labels": {"a": "1", "c": null, "b": "2"}},
                   "spec": {"list": [1, 2], "new": {"deep": null}}})
        );
        round_trip(before, patch);
    }

    #[test]
    fn inverse_touches_only_patched_paths() {
        let before = json!({"spec": {"a": 1, "b": 2}});
        let inverse = inverse_merge_patch(&before, &json!({"spec": {"a": 5}}));
        assert_eq!(inverse, json!({"spec": {"a": 1}}));
        assert_eq!(
            project(&before, &json!({"spec": {"z": 5}})),
            json!({"spec": {"z": null}})
        );
    }

    #[test]
    fn scalar_replaced_by_object_round_trips() {
        round_trip(json!({"a": "scalar"}), json!({"a": {"b": 1}}));
        round_trip(json!({"a": {"b": 1}}), json!({"a": "scalar"}));
        round_trip(json!({}), json!({"gone": null}));
    }

    #[test]
    fn secrets_and_non_object_patches_are_refused() {
        let args = |kind: &str, patch: Value| catalog::ObjectPatch {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: None,
            name: "x".into(),
            patch,
        };
        assert_eq!(
            ObjectPatch::new(args("Secret", json!({})))
                .unwrap_err()
                .category(),
            "refused"
        );
        assert_eq!(
            ObjectPatch::new(args("ConfigMap", json!([1])))
                .unwrap_err()
                .category(),
            "invalid"
        );
        assert!(ObjectPatch::new(args("ConfigMap", json!({"data": {"k": "v"}}))).is_ok());
    }
}
