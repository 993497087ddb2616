//! The cleanup plan: which mutations are still in effect and the patches that revert them.
//!
//! For every object the selected runs touched, the mutations are replayed **newest first**
//! against the object as it is now (a simulated copy):
//!
//! - `Inverse::MergePatch { patch, expected }`: each leaf the patch touches is compared with the
//!   value ripcord left there (`expected`) and the value before ripcord (`patch`). All leaves as
//!   ripcord left them (or some already back) → **revert** (the patch is applied to the copy);
//!   all leaves back → **already reverted** (nothing to do: a second cleanup does nothing);
//!   any leaf neither → **drift**: someone changed the object since ripcord touched it — the
//!   three-way difference (before ripcord / as ripcord left it / now) is shown and the
//!   mutation is skipped unless forced.
//! - `Inverse::NotReverted` (a rollback): reported; with `roll_forward` the recorded
//!   roll-forward patch is applied on request.
//! - `Inverse::None` (evictions, notifications): nothing to revert.
//!
//! Replaying newest first on one copy gets sequences right: a zone failed out and failed back
//! by the same incident nets out to nothing. The object's revert is then one merge patch: the
//! difference between the copy and the object now, over the touched fields.

use super::fields::{self, FieldPath};
use super::source::{RunView, Touched};
use crate::actions::{Inverse, ObjectRef};
use crate::errors::error_chain;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// How to build the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Revert drifted objects too (overwriting the changes made after ripcord).
    pub force: bool,
    /// Apply the recorded roll-forward of rollbacks.
    pub roll_forward: bool,
    /// The pause between the ramp steps of a zone fail-back (default: the action's).
    pub ramp_pause: Option<std::time::Duration>,
}

/// One field that changed after ripcord touched it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDrift {
    /// The field (`spec.replicas`).
    pub path: String,
    /// Before ripcord.
    pub before: Value,
    /// As ripcord left it.
    pub ripcord: Value,
    /// Now.
    pub now: Value,
}

/// What cleanup does with one mutation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum ItemStatus {
    /// Still in effect: reverted.
    Revert,
    /// Drifted, reverted anyway (`--force`).
    ForcedRevert {
        /// The fields that changed since ripcord.
        drift: Vec<FieldDrift>,
    },
    /// Already back to the state before ripcord: nothing to do.
    AlreadyReverted,
    /// Changed by someone else since ripcord touched it: left alone.
    Drift {
        /// The three-way difference.
        drift: Vec<FieldDrift>,
    },
    /// A rollback, deliberately not reverted.
    NotReverted {
        /// Why.
        reason: String,
        /// True when `--roll-forward` would restore the rolled-back release.
        roll_forward_available: bool,
    },
    /// A rollback rolled forward on request.
    RollForward,
    /// Nothing to revert (an eviction, a notification).
    NoInverse {
        /// Why.
        reason: String,
    },
    /// The object no longer exists.
    ObjectGone,
    /// The inverse cannot be used (unreadable record, unknown kind, read error).
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The object carries no proof that ripcord made this change (its
    /// `ripcord.dev/last-mutation` marker names another run or none), or it is a Secret
    /// (never read, never written): left alone, whatever the record says.
    NotRipcords {
        /// Why.
        reason: String,
    },
}

impl ItemStatus {
    /// A short label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            ItemStatus::Revert => "revert",
            ItemStatus::ForcedRevert { .. } => "revert (forced)",
            ItemStatus::AlreadyReverted => "already reverted",
            ItemStatus::Drift { .. } => "DRIFT: skipped",
            ItemStatus::NotReverted { .. } => "rollback kept",
            ItemStatus::RollForward => "roll forward",
            ItemStatus::NoInverse { .. } => "nothing to revert",
            ItemStatus::ObjectGone => "object gone",
            ItemStatus::Unavailable { .. } => "UNAVAILABLE",
            ItemStatus::NotRipcords { .. } => "not ripcord's: left alone",
        }
    }

    /// True when the item leaves something ripcord did in place (verify will be dirty).
    pub fn leaves_residue(&self) -> bool {
        matches!(
            self,
            ItemStatus::Drift { .. } | ItemStatus::Unavailable { .. }
        )
    }
}

/// One mutation and what cleanup does with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanItem {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step: String,
    /// The mutation's id.
    pub mutation_id: String,
    /// The object.
    pub target: ObjectRef,
    /// One line for people.
    pub description: String,
    /// resourceVersion ripcord left, when journaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version_after: Option<String>,
    /// resourceVersion now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version_now: Option<String>,
    /// The decision.
    #[serde(flatten)]
    pub status: ItemStatus,
    /// How it is reverted when not by an object patch (`zone.failback zone-a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// The revert of one object: one merge patch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRevert {
    /// The object.
    pub target: ObjectRef,
    /// The merge patch that reverts it.
    pub patch: Value,
    /// The mutations it reverts (`run/step/mutation`).
    pub reverts: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CleanupPlan {
    /// The runs considered (oldest first).
    pub runs: Vec<String>,
    /// Every mutation, newest first.
    pub items: Vec<PlanItem>,
    /// The object patches to apply, newest first.
    pub reverts: Vec<ObjectRevert>,
    /// Zones failed out and still out: failed back with the slow ramp (after the patches).
    pub failbacks: Vec<ZoneFailbackStep>,
}

/// A zone failed back through the `zone.failback` action (uncordon, then ramp the traffic).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneFailbackStep {
    /// The run that failed the zone out.
    pub run_id: String,
    /// Its fail-out step.
    pub step: String,
    /// The action's arguments.
    pub args: crate::playbook::catalog::ZoneFailback,
    /// The objects it brings back.
    pub objects: Vec<ObjectRef>,
}

impl CleanupPlan {
    /// True when there is nothing to write.
    pub fn is_noop(&self) -> bool {
        self.reverts.is_empty() && self.failbacks.is_empty()
    }

    /// How many items have each label, in a stable order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        for item in &self.items {
            let label = item.status.label();
            match out.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => *n += 1,
                None => out.push((label, 1)),
            }
        }
        out
    }

    /// The items skipped because of drift.
    pub fn drifted(&self) -> impl Iterator<Item = &PlanItem> {
        self.items
            .iter()
            .filter(|i| matches!(i.status, ItemStatus::Drift { .. }))
    }
}

/// The state of one object as read before planning.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The object as JSON.
    Present(Value),
    /// It does not exist.
    Gone,
    /// It could not be read.
    Unreadable(String),
}

/// Reads every object the (non-cleanup) runs touched, as it is now.
pub async fn observe(
    objects: &crate::k8s::objects::Objects,
    runs: &[RunView],
) -> HashMap<ObjectRef, Observed> {
    let mut kinds: HashMap<(String, String), Result<crate::k8s::objects::ResolvedKind, String>> =
        HashMap::new();
    let mut out = HashMap::new();
    for t in runs
        .iter()
        .filter(|r| !r.is_cleanup())
        .flat_map(|r| r.touched.iter())
    {
        if out.contains_key(&t.target) || t.target.api_version.is_empty() {
            continue;
        }
        if super::is_secret(&t.target) {
            // Never read: a forged record must not make cleanup print a Secret's data.
            continue;
        }
        let key = (t.target.api_version.clone(), t.target.kind.clone());
        if !kinds.contains_key(&key) {
            let resolved = objects
                .resolve(&t.target.api_version, &t.target.kind)
                .await
                .map_err(|e| error_chain(&e));
            kinds.insert(key.clone(), resolved);
        }
        let observed = match kinds.get(&key) {
            Some(Ok(kind)) => {
                let namespace = if kind.namespaced {
                    t.target.namespace.as_deref()
                } else {
                    None
                };
                match objects.get(kind, namespace, &t.target.name).await {
                    Ok(value) => Observed::Present(value),
                    Err(crate::k8s::K8sError::NotFound { .. }) => Observed::Gone,
                    Err(err) => Observed::Unreadable(error_chain(&err)),
                }
            }
            Some(Err(reason)) => Observed::Unreadable(reason.clone()),
            None => Observed::Unreadable("kind not resolved".into()),
        };
        out.insert(t.target.clone(), observed);
    }
    out
}

/// Computes the plan for `runs` (cleanup runs are ignored), given every touched object as
/// observed now.
pub fn compute(
    runs: &[RunView],
    observed: &HashMap<ObjectRef, Observed>,
    opts: PlanOptions,
) -> CleanupPlan {
    let runs: Vec<&RunView> = runs.iter().filter(|r| !r.is_cleanup()).collect();
    let mut plan = CleanupPlan {
        runs: runs.iter().map(|r| r.run_id.clone()).collect(),
        ..CleanupPlan::default()
    };
    // Every mutation with its global order (run order, then journal order), newest first.
    let mut all: Vec<((usize, u64), &Touched)> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, run)| run.touched.iter().map(move |t| ((i, t.seq), t)))
        .collect();
    all.sort_by_key(|(key, _)| std::cmp::Reverse(*key));

    // Objects in the order of their newest mutation.
    let mut order: Vec<ObjectRef> = Vec::new();
    for (_, t) in &all {
        if !order.contains(&t.target) {
            order.push(t.target.clone());
        }
    }
    let mut items_by_key: Vec<((usize, u64), PlanItem)> = Vec::new();
    for target in order {
        let group: Vec<&((usize, u64), &Touched)> =
            all.iter().filter(|(_, t)| t.target == target).collect();
        let observed = observed
            .get(&target)
            .cloned()
            .unwrap_or_else(|| Observed::Unreadable("not read".into()));
        let (items, revert) = if super::is_secret(&target) {
            (secret_items(&group), None)
        } else {
            let (items, revert) = plan_object(&target, &group, &observed, opts);
            proof_of_write(&observed, items, revert)
        };
        items_by_key.extend(items);
        if let Some(revert) = revert {
            plan.reverts.push(revert);
        }
    }
    items_by_key.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
    plan.items = items_by_key.into_iter().map(|(_, item)| item).collect();
    use_failbacks(&runs, &mut plan, opts);
    plan
}

/// Items for mutations recorded against a Secret: ripcord never writes Secrets, so such a
/// record is forged or damaged; the Secret is neither read nor written.
fn secret_items(group: &[&(OrderKey, &Touched)]) -> Vec<(OrderKey, PlanItem)> {
    group
        .iter()
        .map(|(key, t)| {
            (
                *key,
                PlanItem {
                    run_id: t.run_id.clone(),
                    step: t.step.clone(),
                    mutation_id: t.mutation_id.clone(),
                    target: t.target.clone(),
                    description: t.mutation_id.clone(),
                    resource_version_after: None,
                    resource_version_now: None,
                    status: ItemStatus::NotRipcords {
                        reason: "ripcord never writes Secrets: the record is not ripcord's; \
                                 the Secret was not read"
                            .into(),
                    },
                    via: None,
                },
            )
        })
        .collect()
}

/// The proof-of-write filter: cleanup writes an object only when the object itself proves that
/// ripcord made the change being reverted. Every mutating write of a run step sets
/// [`crate::k8s::LAST_MUTATION_ANNOTATION`] (`RUN_ID/STEP`) in the same patch, and nobody who
/// can only create `Run` resources or write the state directory can set it on an object they
/// cannot write themselves. The newest mutation cleanup would revert on the object must belong
/// to the run the marker names (older ones of the same selection replay before it, as the
/// chain that led there); otherwise every write on the object is dropped and its items are
/// reported as [`ItemStatus::NotRipcords`]. Objects that need no write (already reverted,
/// drifted, gone, a net-zero sequence) need no proof. Evictions and deletions have no inverse
/// and are never written.
fn proof_of_write(
    observed: &Observed,
    mut items: Vec<(OrderKey, PlanItem)>,
    revert: Option<ObjectRevert>,
) -> (Vec<(OrderKey, PlanItem)>, Option<ObjectRevert>) {
    if revert.is_none() {
        return (items, revert);
    }
    let writes = |status: &ItemStatus| {
        matches!(
            status,
            ItemStatus::Revert | ItemStatus::ForcedRevert { .. } | ItemStatus::RollForward
        )
    };
    let marker = match observed {
        Observed::Present(object) => crate::k8s::last_mutation_run(object).map(str::to_string),
        _ => None,
    };
    let newest_writer = items
        .iter()
        .filter(|(_, item)| writes(&item.status))
        .max_by_key(|(key, _)| *key)
        .map(|(_, item)| item.run_id.clone());
    if newest_writer.is_some() && newest_writer == marker {
        return (items, revert);
    }
    let found = match &marker {
        Some(run) => format!("names run {run}"),
        None => "is absent".to_string(),
    };
    for (_, item) in items.iter_mut().filter(|(_, item)| writes(&item.status)) {
        item.status = ItemStatus::NotRipcords {
            reason: format!(
                "no proof that run {} made this change: the object's {} annotation {found}",
                item.run_id,
                crate::k8s::LAST_MUTATION_ANNOTATION
            ),
        };
    }
    (items, None)
}

/// The zone label of a traffic-only fail-back (no node carries it).
pub const TRAFFIC_ONLY_ZONE_LABEL: &str = "ripcord.dev/cleanup-traffic-only";

/// Replaces the object patches of a zone fail-out still fully in effect by a `zone.failback`
/// step (uncordon the marked nodes, then ramp the traffic back in steps, never all at once).
/// A fail-out with drift keeps the object patches of its clean nodes (the drifted objects are
/// left alone), and its route is still ramped back by a fail-back of the traffic only; objects
/// also touched by other steps keep their patches.
fn use_failbacks(runs: &[&RunView], plan: &mut CleanupPlan, opts: PlanOptions) {
    use crate::playbook::catalog::{self, Action};
    for run in runs {
        let Some(planned) = run.entries.iter().find_map(|e| match &e.record {
            crate::journal::Record::RunStarted { plan, .. } => {
                crate::plan::Plan::from_embedded(plan.clone(), &run.run_id).ok()
            }
            _ => None,
        }) else {
            continue;
        };
        for step in &planned.steps {
            let Action::ZoneFailout(failout) = &step.action else {
                continue;
            };
            let mine = |i: &PlanItem| i.run_id == run.run_id && i.step == step.name;
            let items: Vec<&PlanItem> = plan.items.iter().filter(|i| mine(i)).collect();
            let clean = items.iter().all(|i| {
                matches!(
                    i.status,
                    ItemStatus::Revert | ItemStatus::AlreadyReverted | ItemStatus::NoInverse { .. }
                )
            });
            let mut targets: Vec<ObjectRef> = items
                .iter()
                .filter(|i| i.status == ItemStatus::Revert)
                .map(|i| i.target.clone())
                .collect();
            // Drift on some of the zone's objects (a node changed by hand) leaves those alone
            // and reverts the clean nodes with their patches, but the traffic still comes back
            // through the ramp, never in one patch: a fail-back of the routes only.
            let traffic_only = !clean;
            if traffic_only {
                targets.retain(|t| t.kind == crate::k8s::http_routes::KIND);
            }
            if targets.is_empty() {
                continue;
            }
            let prefix = format!("{}/{}/", run.run_id, step.name);
            let exclusive = plan
                .reverts
                .iter()
                .filter(|r| targets.contains(&r.target))
                .all(|r| r.reverts.iter().all(|id| id.starts_with(&prefix)));
            if !exclusive {
                continue;
            }
            let mut args = serde_json::json!({
                "zone": failout.zone,
                // The ramp alone: a zone label no node carries, so the fail-back touches no
                // node (the drifted ones stay as they are, the clean ones get their patches).
                "zoneLabel": if traffic_only { TRAFFIC_ONLY_ZONE_LABEL } else { failout.zone_label.as_str() },
            });
            if let Some(traffic) = &failout.traffic {
                args["traffic"] = serde_json::to_value(traffic).unwrap_or(Value::Null);
            }
            let Ok(mut failback) = serde_json::from_value::<catalog::ZoneFailback>(args) else {
                continue;
            };
            if let Some(pause) = opts.ramp_pause {
                failback.ramp_pause = crate::playbook::Duration(pause);
            }
            plan.reverts.retain(|r| !targets.contains(&r.target));
            let via = if traffic_only {
                format!(
                    "zone.failback {} (traffic ramp only: drift on the zone's nodes)",
                    failout.zone
                )
            } else {
                format!("zone.failback {}", failout.zone)
            };
            for item in plan.items.iter_mut().filter(|i| mine(i)) {
                if item.status == ItemStatus::Revert && targets.contains(&item.target) {
                    item.via = Some(via.clone());
                }
            }
            plan.failbacks.push(ZoneFailbackStep {
                run_id: run.run_id.clone(),
                step: step.name.clone(),
                args: failback,
                objects: targets,
            });
        }
    }
}

/// The global order of a mutation: (run index, oldest first; journal sequence).
type OrderKey = (usize, u64);

fn plan_object(
    target: &ObjectRef,
    group: &[&(OrderKey, &Touched)],
    observed: &Observed,
    opts: PlanOptions,
) -> (Vec<(OrderKey, PlanItem)>, Option<ObjectRevert>) {
    let now = match observed {
        Observed::Present(v) => Some(v),
        _ => None,
    };
    let rv_now = now
        .and_then(|v| v.pointer("/metadata/resourceVersion"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut state = now.cloned().unwrap_or(Value::Null);
    let mut touched_paths: Vec<FieldPath> = Vec::new();
    let mut reverted: Vec<String> = Vec::new();
    let mut items = Vec::new();
    for (key, t) in group {
        let status = decide(t, observed, &mut state, &mut touched_paths, opts);
        if matches!(
            status,
            ItemStatus::Revert | ItemStatus::ForcedRevert { .. } | ItemStatus::RollForward
        ) {
            reverted.push(format!("{}/{}/{}", t.run_id, t.step, t.mutation_id));
        }
        items.push((
            *key,
            PlanItem {
                run_id: t.run_id.clone(),
                step: t.step.clone(),
                mutation_id: t.mutation_id.clone(),
                target: t.target.clone(),
                description: t.description.clone(),
                resource_version_after: t.resource_version_after.clone(),
                resource_version_now: rv_now.clone(),
                status,
                via: None,
            },
        ));
    }
    let revert = now.and_then(|now| {
        let leaves: Vec<(FieldPath, Value)> = touched_paths
            .iter()
            .filter_map(|path| {
                let want = fields::value_at(&state, path);
                let have = fields::value_at(now, path);
                if fields::same_at(path, &want, &have) {
                    return None;
                }
                // Objects (a whole template restored) are patched key by key so that keys
                // added since are removed, not merged.
                let value = fields::merge_diff(&have, &want)?;
                Some((path.clone(), value))
            })
            .collect();
        (!leaves.is_empty()).then(|| ObjectRevert {
            target: target.clone(),
            patch: fields::patch_from(&leaves),
            reverts: reverted.clone(),
        })
    });
    (items, revert)
}

fn decide(
    t: &Touched,
    observed: &Observed,
    state: &mut Value,
    touched_paths: &mut Vec<FieldPath>,
    opts: PlanOptions,
) -> ItemStatus {
    let Some(inverse) = &t.inverse else {
        return ItemStatus::Unavailable {
            reason: t
                .problem
                .clone()
                .unwrap_or_else(|| "no inverse recorded".into()),
        };
    };
    if let Some(problem) = &t.problem {
        return ItemStatus::Unavailable {
            reason: problem.clone(),
        };
    }
    let (patch, expected) = match inverse {
        Inverse::None { reason } => {
            return ItemStatus::NoInverse {
                reason: reason.clone(),
            };
        }
        Inverse::NotReverted {
            reason,
            roll_forward,
        } => {
            return match (opts.roll_forward, roll_forward, observed) {
                (true, Some(patch), Observed::Present(_)) => {
                    let mut next = state.clone();
                    match fields::apply_any_patch(&mut next, patch) {
                        Ok(paths) => {
                            *state = next;
                            for path in paths {
                                if !touched_paths.contains(&path) {
                                    touched_paths.push(path);
                                }
                            }
                            ItemStatus::RollForward
                        }
                        Err(reason) => ItemStatus::Unavailable { reason },
                    }
                }
                _ => ItemStatus::NotReverted {
                    reason: reason.clone(),
                    roll_forward_available: roll_forward.is_some(),
                },
            };
        }
        Inverse::MergePatch { patch, expected } => (patch, expected),
    };
    match observed {
        Observed::Gone => return ItemStatus::ObjectGone,
        Observed::Unreadable(reason) => {
            return ItemStatus::Unavailable {
                reason: reason.clone(),
            };
        }
        Observed::Present(_) => {}
    }
    let leaves = fields::leaves(patch);
    if leaves.is_empty() {
        return ItemStatus::AlreadyReverted;
    }
    let mut drift = Vec::new();
    let mut all_back = true;
    for (path, before) in &leaves {
        let now = fields::value_at(state, path);
        let ripcord = fields::value_at(expected, path);
        if !fields::same_at(path, &now, before) {
            all_back = false;
        }
        // As ripcord left it: the fields ripcord set hold (defaults the server filled into
        // a list ripcord set are not someone else's change).
        if !fields::same_at(path, &now, &ripcord)
            && !crate::actions::object_patch::holds(&now, &ripcord)
        {
            drift.push(FieldDrift {
                path: fields::display_path(path),
                before: before.clone(),
                ripcord,
                now,
            });
        }
    }
    if all_back {
        return ItemStatus::AlreadyReverted;
    }
    // Not as ripcord left it and not back either (a node uncordoned by hand keeps ripcord's
    // mark; a Deployment rescaled by hand): someone else changed it — drift.
    if !drift.is_empty() && !opts.force {
        return ItemStatus::Drift { drift };
    }
    json_patch::merge(state, patch);
    for (path, _) in leaves {
        if !touched_paths.contains(&path) {
            touched_paths.push(path);
        }
    }
    if drift.is_empty() {
        ItemStatus::Revert
    } else {
        ItemStatus::ForcedRevert { drift }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::source::RunOrigin;
    use serde_json::json;

    fn node(name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: None,
            name: name.into(),
        }
    }

    fn touched(run: &str, seq: u64, target: ObjectRef, inverse: Inverse) -> Touched {
        Touched {
            run_id: run.into(),
            seq,
            step: "s".into(),
            mutation_id: format!("m{seq}"),
            target,
            description: "d".into(),
            resource_version_before: None,
            resource_version_after: None,
            inverse: Some(inverse),
            problem: None,
            unconfirmed: false,
            at: None,
        }
    }

    fn run(id: &str, touched: Vec<Touched>) -> RunView {
        RunView {
            run_id: id.into(),
            playbook: "p".into(),
            who: "w".into(),
            trigger: "cli".into(),
            incident: None,
            started_at: None,
            finished_at: None,
            outcome: None,
            origin: RunOrigin::Cluster {
                namespace: "default".into(),
            },
            touched,
            params: Default::default(),
            entries: Vec::new(),
            problem: None,
            damaged: None,
        }
    }

    fn cordon_inverse(run: &str) -> Inverse {
        Inverse::MergePatch {
            patch: json!({"spec": {"unschedulable": null},
                          "metadata": {"labels": {"ripcord.dev/cordoned-by": null}}}),
            expected: json!({"spec": {"unschedulable": true},
                             "metadata": {"labels": {"ripcord.dev/cordoned-by": run}}}),
        }
    }

    fn cordoned(run: &str) -> Value {
        json!({"metadata": {"name": "a", "resourceVersion": "9",
                            "labels": {"zone": "a", "ripcord.dev/cordoned-by": run},
                            "annotations": {"ripcord.dev/last-mutation": format!("{run}/s")}},
               "spec": {"unschedulable": true}})
    }

    #[test]
    fn issue13_a_forged_record_without_proof_of_write_is_left_alone() {
        // A record claims r9 cordoned the node; the node's marker names r1 (or nothing).
        let runs = vec![run(
            "r9",
            vec![touched("r9", 1, node("a"), cordon_inverse("r1"))],
        )];
        for now in [cordoned("r1"), {
            let mut bare = cordoned("r1");
            bare["metadata"]["annotations"] = json!({});
            bare
        }] {
            let observed = HashMap::from([(node("a"), Observed::Present(now))]);
            for force in [false, true] {
                let plan = compute(
                    &runs,
                    &observed,
                    PlanOptions {
                        force,
                        ..PlanOptions::default()
                    },
                );
                assert!(
                    matches!(plan.items[0].status, ItemStatus::NotRipcords { .. }),
                    "{:?}",
                    plan.items[0].status
                );
                assert_eq!(plan.items[0].status.label(), "not ripcord's: left alone");
                assert!(plan.is_noop(), "nothing is written: {:?}", plan.reverts);
            }
        }
    }

    #[test]
    fn issue13_records_against_a_secret_are_never_judged_or_read() {
        let secret = ObjectRef {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some("shop".into()),
            name: "db".into(),
        };
        let inverse = Inverse::MergePatch {
            patch: json!({"data": {"password": "aGFja2Vk"}}),
            expected: json!({"data": {"password": "c2VjcmV0"}}),
        };
        let runs = vec![run("r1", vec![touched("r1", 1, secret.clone(), inverse)])];
        let leaked = json!({"metadata": {"annotations": {"ripcord.dev/last-mutation": "r1/s"}},
                            "data": {"password": "c2VjcmV0"}});
        let observed = HashMap::from([(secret, Observed::Present(leaked))]);
        let plan = compute(&runs, &observed, PlanOptions::default());
        assert!(matches!(
            plan.items[0].status,
            ItemStatus::NotRipcords { .. }
        ));
        assert!(plan.is_noop());
        let text = serde_json::to_string(&plan).unwrap();
        assert!(!text.contains("c2VjcmV0"), "{text}");
    }

    #[test]
    fn in_effect_mutation_is_reverted_with_one_patch() {
        let runs = vec![run(
            "r1",
            vec![touched("r1", 1, node("a"), cordon_inverse("r1"))],
        )];
        let observed = HashMap::from([(node("a"), Observed::Present(cordoned("r1")))]);
        let plan = compute(&runs, &observed, PlanOptions::default());
        assert_eq!(plan.items[0].status, ItemStatus::Revert);
        assert_eq!(plan.reverts.len(), 1);
        assert_eq!(
            plan.reverts[0].patch,
            json!({"spec": {"unschedulable": null},
                   "metadata": {"labels": {"ripcord.dev/cordoned-by": null}}})
        );
    }

    #[test]
    fn already_reverted_needs_nothing() {
        let runs = vec![run(
            "r1",
            vec![touched("r1", 1, node("a"), cordon_inverse("r1"))],
        )];
        let clean = json!({"metadata": {"name": "a", "labels": {"zone": "a"}},
                           "spec": {"unschedulable": false}});
        let observed = HashMap::from([(node("a"), Observed::Present(clean))]);
        let plan = compute(&runs, &observed, PlanOptions::default());
        assert_eq!(plan.items[0].status, ItemStatus::AlreadyReverted);
        assert!(plan.is_noop());
    }

    #[test]
    fn hand_uncordoned_node_is_drift_unless_forced() {
        let runs = vec![run(
            "r1",
            vec![touched("r1", 1, node("a"), cordon_inverse("r1"))],
        )];
        // `kubectl uncordon` by hand: unschedulable back to absent, ripcord's mark still there.
        let mut now = cordoned("r1");
        now["spec"]["unschedulable"] = json!(false);
        let observed = HashMap::from([(node("a"), Observed::Present(now))]);
        let plan = compute(&runs, &observed, PlanOptions::default());
        let ItemStatus::Drift { drift } = &plan.items[0].status else {
            panic!("expected drift, got {:?}", plan.items[0].status);
        };
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].path, "spec.unschedulable");
        assert_eq!(drift[0].before, Value::Null);
        assert_eq!(drift[0].ripcord, json!(true));
        assert_eq!(drift[0].now, json!(false));
        assert!(plan.is_noop());

        let forced = compute(
            &runs,
            &observed,
            PlanOptions {
                force: true,
                ..PlanOptions::default()
            },
        );
        assert!(matches!(
            forced.items[0].status,
            ItemStatus::ForcedRevert { .. }
        ));
        assert_eq!(forced.reverts.len(), 1);
    }

    #[test]
    fn failout_then_failback_nets_out() {
        // r1 cordoned (seq 1), r2 uncordoned later (seq 1 of a later run): nothing to do.
        let uncordon = Inverse::MergePatch {
            patch: json!({"spec": {"unschedulable": true},
                          "metadata": {"labels": {"ripcord.dev/cordoned-by": "r1"}}}),
            expected: json!({"spec": {"unschedulable": null},
                             "metadata": {"labels": {"ripcord.dev/cordoned-by": null}}}),
        };
        let runs = vec![
            run(
                "r1",
                vec![touched("r1", 1, node("a"), cordon_inverse("r1"))],
            ),
            run("r2", vec![touched("r2", 1, node("a"), uncordon)]),
        ];
        let clean = json!({"metadata": {"name": "a", "labels": {"zone": "a"}}, "spec": {}});
        let observed = HashMap::from([(node("a"), Observed::Present(clean))]);
        let plan = compute(&runs, &observed, PlanOptions::default());
        assert_eq!(plan.items.len(), 2);
        assert_eq!(plan.items[0].run_id, "r2", "newest first");
        assert!(plan.is_noop(), "{:?}", plan.reverts);
    }

    #[test]
    fn rollbacks_are_kept_unless_rolled_forward() {
        let deploy = ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        let inverse = Inverse::NotReverted {
            reason: "bad release".into(),
            roll_forward: Some(json!({"spec": {"template": {"spec": {"image": "v2"}}}})),
        };
        let runs = vec![run("r1", vec![touched("r1", 1, deploy.clone(), inverse)])];
        let now = json!({"metadata": {"annotations": {"ripcord.dev/last-mutation": "r1/s"}},
                         "spec": {"template": {"spec": {"image": "v1"}}}});
        let observed = HashMap::from([(deploy, Observed::Present(now))]);
        let plan = compute(&runs, &observed, PlanOptions::default());
        assert!(matches!(
            plan.items[0].status,
            ItemStatus::NotReverted {
                roll_forward_available: true,
                ..
            }
        ));
        assert!(plan.is_noop());
        let forward = compute(
            &runs,
            &observed,
            PlanOptions {
                roll_forward: true,
                ..PlanOptions::default()
            },
        );
        assert_eq!(forward.items[0].status, ItemStatus::RollForward);
        assert_eq!(
            forward.reverts[0].patch,
            json!({"spec": {"template": {"spec": {"image": "v2"}}}})
        );
    }

    #[test]
    fn cleanup_runs_and_missing_objects_are_handled() {
        let mut cleanup = run(
            "c1",
            vec![touched("c1", 1, node("a"), cordon_inverse("c1"))],
        );
        cleanup.playbook = crate::cleanup::CLEANUP_PLAYBOOK.into();
        let runs = vec![
            run(
                "r1",
                vec![touched("r1", 1, node("b"), cordon_inverse("r1"))],
            ),
            cleanup,
        ];
        let observed = HashMap::from([(node("b"), Observed::Gone)]);
        let plan = compute(&runs, &observed, PlanOptions::default());
        assert_eq!(plan.runs, vec!["r1".to_string()]);
        assert_eq!(plan.items.len(), 1);
        assert_eq!(plan.items[0].status, ItemStatus::ObjectGone);
    }
}
