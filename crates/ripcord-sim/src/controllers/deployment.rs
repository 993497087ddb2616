//! The Deployment controller, following kube-controller-manager's `deployment` package:
//! one ReplicaSet per pod-template hash, revision annotations (a re-used ReplicaSet gets
//! max(old)+1 and keeps `revision-history`), rolling updates honouring maxSurge /
//! maxUnavailable (counting available pods only), Recreate, `spec.paused`,
//! revisionHistoryLimit cleanup, and status with Progressing / Available conditions.

use serde_json::{Value, json};

use super::Controllers;
use super::events::{EventType, emit};
use super::util::{self, IntOrPercent, at, i64_at, str_at};
use crate::store::kinds;

/// The revision of a ReplicaSet (and the Deployment's current one).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions of a ReplicaSet that was rolled back to.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Longest revision-history annotation the real controller keeps.
const MAX_REV_HISTORY_CHARS: usize = 2000;
const CONTROLLER: &str = "deployment-controller";

/// Deployment annotations never copied onto ReplicaSets.
fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deprecated.deployment.rollback.to"
    )
}

/// Largest count the API accepts (replica counts are int32).
const MAX_COUNT: i64 = i32::MAX as i64;

fn replicas(obj: &Value) -> i64 {
    i64_at(obj, &["spec", "replicas"])
        .unwrap_or(1)
        .clamp(0, MAX_COUNT)
}

fn status_i64(obj: &Value, field: &str) -> i64 {
    i64_at(obj, &["status", field])
        .unwrap_or(0)
        .clamp(0, MAX_COUNT)
}

fn revision_of(obj: &Value) -> i64 {
    util::annotation(obj, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn is_rolling(d: &Value) -> bool {
    str_at(d, &["spec", "strategy", "type"]).unwrap_or("RollingUpdate") != "Recreate"
}

/// (maxSurge, maxUnavailable) resolved against spec.replicas.
pub fn fenceposts(d: &Value) -> (i64, i64) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let ru = at(d, &["spec", "strategy", "rollingUpdate"]);
    let get = |k: &str| {
        ru.and_then(|r| r.get(k))
            .and_then(IntOrPercent::from_value)
            .unwrap_or(IntOrPercent::Percent(25))
    };
    let (surge, unavailable) =
        util::resolve_fenceposts(get("maxSurge"), get("maxUnavailable"), replicas(d));
    (surge.clamp(0, MAX_COUNT), unavailable.clamp(0, MAX_COUNT))
}

/// The controller's `MaxUnavailable`: 0 for Recreate or zero replicas, capped at replicas.
pub fn max_unavailable(d: &Value) -> i64 {
    let r = replicas(d);
    if !is_rolling(d) || r == 0 {
        return 0;
    }
    fenceposts(d).1.min(r)
}

fn max_surge(d: &Value) -> i64 {
    if is_rolling(d) { fenceposts(d).0 } else { 0 }
}

/// Builds the ReplicaSet the controller creates for `template` (named `<deploy>-<hash>`,
/// labelled and selected with `pod-template-hash`, owned by the Deployment, carrying the
/// Deployment's annotations and the replicas annotations).
pub fn replica_set_for(deploy: &Value, template: &Value, hash: &str, replicas_count: i64) -> Value {
    let mut template = template.clone();
    util::object_at_mut(&mut template, &["metadata", "labels"])
        .insert(util::POD_TEMPLATE_HASH.to_string(), json!(hash));
    let mut selector = at(deploy, &["spec", "selector"])
        .cloned()
        .unwrap_or(json!({}));
    util::object_at_mut(&mut selector, &["matchLabels"])
        .insert(util::POD_TEMPLATE_HASH.to_string(), json!(hash));
    let mut labels = at(&template, &["metadata", "labels"])
        .cloned()
        .unwrap_or(json!({}));
    if let Some(m) = labels.as_object_mut() {
        m.insert(util::POD_TEMPLATE_HASH.to_string(), json!(hash));
    }
    let mut rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", util::name(deploy)),
            "namespace": util::namespace(deploy),
            "labels": labels,
            "ownerReferences": [util::owner_reference(deploy)],
        },
        "spec": {
            "replicas": replicas_count,
            "minReadySeconds": i64_at(deploy, &["spec", "minReadySeconds"]).unwrap_or(0),
            "selector": selector,
            "template": template,
        }
    });
    copy_annotations(deploy, &mut rs);
    let r = replicas(deploy);
    util::set_annotation(&mut rs, DESIRED_REPLICAS, &r.to_string());
    util::set_annotation(&mut rs, MAX_REPLICAS, &(r + max_surge(deploy)).to_string());
    rs
}

/// `copyDeploymentAnnotationsToReplicaSet`.
fn copy_annotations(deploy: &Value, rs: &mut Value) {
    let anns = util::string_map(at(deploy, &["metadata", "annotations"]));
    for (k, v) in anns {
        if !skip_copy(&k) {
            util::set_annotation(rs, &k, &v);
        }
    }
}

/// `SetNewReplicaSetAnnotations` for an existing ReplicaSet that became (or is) the new one.
fn set_new_rs_annotations(deploy: &Value, rs: &mut Value, new_revision: i64) {
    copy_annotations(deploy, rs);
    let old = util::annotation(rs, REVISION).map(str::to_string);
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(i) => i,
            Err(_) => return,
        },
    };
    if old_int < new_revision {
        util::set_annotation(rs, REVISION, &new_revision.to_string());
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = util::annotation(rs, REVISION_HISTORY)
                .unwrap_or("")
                .to_string();
            if history.is_empty() {
                util::set_annotation(rs, REVISION_HISTORY, &old);
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < parts.len() {
                    total -= parts[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    let mut kept: Vec<&str> = parts.split_off(start);
                    kept.push(&old);
                    util::set_annotation(rs, REVISION_HISTORY, &kept.join(","));
                }
            }
        }
    }
}

/// Runs the Deployment controller over every Deployment.
pub fn reconcile(c: &mut Controllers) {
    let deployments = c.cache.list(&kinds::deployments());
    if deployments.is_empty() {
        return;
    }
    let all_rs = c.cache.list(&kinds::replicasets());
    for d in deployments {
        if at(&d, &["metadata", "deletionTimestamp"]).is_some() {
            continue;
        }
        let owned: Vec<Value> = all_rs
            .iter()
            .map(|rs| rs.as_ref())
            .filter(|rs| {
                util::namespace(rs) == util::namespace(&d)
                    && util::is_controlled_by(rs, util::uid(&d))
            })
            .cloned()
            .collect();
        sync_deployment(c, (*d).clone(), owned);
    }
}

/// Splits owned ReplicaSets into the one matching the template (oldest first) and the rest.
fn split_new_old(d: &Value, mut owned: Vec<Value>) -> (Option<Value>, Vec<Value>) {
    owned.sort_by(|a, b| {
        let ka = (
            str_at(a, &["metadata", "creationTimestamp"]).unwrap_or(""),
            util::name(a),
        );
        let kb = (
            str_at(b, &["metadata", "creationTimestamp"]).unwrap_or(""),
            util::name(b),
        );
        ka.cmp(&kb)
    });
    let template = at(d, &["spec", "template"]).cloned().unwrap_or(json!({}));
    let pos = owned.iter().position(|rs| {
        at(rs, &["spec", "template"])
            .is_some_and(|t| util::templates_equal_ignoring_hash(t, &template))
    });
    match pos {
        Some(i) => {
            let new = owned.remove(i);
            (Some(new), owned)
        }
        None => (None, owned),
    }
}

fn sync_deployment(c: &mut Controllers, mut d: Value, owned: Vec<Value>) {
    let (mut new_rs, mut old_rs) = split_new_old(&d, owned);
    let paused = util::bool_at(&d, &["spec", "paused"]);
    // checkPausedConditions.
    if i64_at(&d, &["spec", "progressDeadlineSeconds"]).is_some() {
        let reason = util::pod_condition(&d, "Progressing")
            .and_then(|cond| cond.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if paused && reason != "DeploymentPaused" {
            set_progressing_unknown(c, &mut d, "DeploymentPaused", "Deployment is paused");
        } else if !paused && reason == "DeploymentPaused" {
            set_progressing_unknown(c, &mut d, "DeploymentResumed", "Deployment is resumed");
        }
    }

    let rolling = is_rolling(&d);
    let scaling = !paused && is_scaling_event(&d, new_rs.as_ref(), &old_rs);
    // Recreate creates the new ReplicaSet only once old pods are gone; `sync` (paused or a
    // scaling event) never creates it.
    let create = !paused && !scaling && rolling;
    new_rs = sync_revision(c, &mut d, new_rs, &old_rs, create);

    if paused || scaling {
        // `sync`: proportional scaling only, status without progress tracking.
        scale(c, &d, &mut new_rs, &mut old_rs);
        if paused {
            cleanup(c, &d, &old_rs);
        }
        sync_status(c, &d, new_rs.as_ref(), &old_rs, false);
        return;
    }
    if rolling {
        rollout_rolling(c, &d, new_rs, old_rs);
    } else {
        rollout_recreate(c, &mut d, new_rs, old_rs);
    }
}

fn set_progressing_unknown(c: &mut Controllers, d: &mut Value, reason: &str, message: &str) {
    let now = c.now_str();
    let cond = json!({"type": "Progressing", "status": "Unknown", "reason": reason, "message": message,
                      "lastUpdateTime": now, "lastTransitionTime": now});
    if let Some(updated) = c.modify(CONTROLLER, &kinds::deployments(), d, |v| {
        set_condition(v, cond);
    }) {
        *d = updated;
    }
}

/// `getNewReplicaSet` + revision sync: updates the new ReplicaSet's revision annotations and
/// the Deployment's revision, or creates the new ReplicaSet.
fn sync_revision(
    c: &mut Controllers,
    d: &mut Value,
    new_rs: Option<Value>,
    old_rs: &[Value],
    create: bool,
) -> Option<Value> {
    let max_old = old_rs.iter().map(revision_of).max().unwrap_or(0);
    let new_revision = max_old + 1;
    if let Some(rs) = new_rs {
        let min_ready = i64_at(d, &["spec", "minReadySeconds"]).unwrap_or(0);
        let dd = d.clone();
        let rs = c
            .modify(CONTROLLER, &kinds::replicasets(), &rs, |v| {
                set_new_rs_annotations(&dd, v, new_revision);
                if i64_at(v, &["spec", "minReadySeconds"]).unwrap_or(0) != min_ready {
                    util::set_at(v, &["spec", "minReadySeconds"], json!(min_ready));
                }
            })
            .unwrap_or(rs);
        let rev = util::annotation(&rs, REVISION).unwrap_or("").to_string();
        let has_progressing = util::pod_condition(d, "Progressing").is_some();
        let rs_name = util::name(&rs).to_string();
        let now = c.now_str();
        if let Some(updated) = c.modify(CONTROLLER, &kinds::deployments(), d, |v| {
            if util::annotation(v, REVISION) != Some(rev.as_str()) && !rev.is_empty() {
                util::set_annotation(v, REVISION, &rev);
            }
            if !has_progressing {
                set_condition(v, json!({"type": "Progressing", "status": "True", "reason": "FoundNewReplicaSet",
                    "message": format!("Found new replica set \"{rs_name}\""), "lastUpdateTime": now, "lastTransitionTime": now}));
            }
        }) {
            *d = updated;
        }
        return Some(rs);
    }
    if !create {
        return None;
    }
    let template = at(d, &["spec", "template"]).cloned().unwrap_or(json!({}));
    let collision = i64_at(d, &["status", "collisionCount"]);
    let hash = util::pod_template_hash(&template, collision);
    let all: Vec<&Value> = old_rs.iter().collect();
    let new_replicas = new_rs_new_replicas(d, &all, 0);
    let mut rs = replica_set_for(d, &template, &hash, new_replicas);
    util::set_annotation(&mut rs, REVISION, &new_revision.to_string());
    match c.create(CONTROLLER, &kinds::replicasets(), rs) {
        Ok(created) => {
            let name = util::name(&created).to_string();
            if new_replicas > 0 {
                emit(
                    c,
                    d,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {name} from 0 to {new_replicas}"),
                    CONTROLLER,
                );
            }
            let now = c.now_str();
            if let Some(updated) = c.modify(CONTROLLER, &kinds::deployments(), d, |v| {
                util::set_annotation(v, REVISION, &new_revision.to_string());
                if util::i64_at(v, &["spec", "progressDeadlineSeconds"]).is_some() {
                    set_condition(v, json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated",
                        "message": format!("Created new replica set \"{name}\""), "lastUpdateTime": now, "lastTransitionTime": now}));
                }
            }) {
                *d = updated;
            }
            Some(created)
        }
        Err(crate::store::StoreError::AlreadyExists { .. }) => {
            // A ReplicaSet with this name but another template or owner: hash collision.
            let next = collision.unwrap_or(0) + 1;
            if let Some(updated) = c.modify(CONTROLLER, &kinds::deployments(), d, |v| {
                util::set_at(v, &["status", "collisionCount"], json!(next));
            }) {
                *d = updated;
            }
            None
        }
        Err(_) => None,
    }
}

/// `NewRSNewReplicas` for RollingUpdate: how far the new ReplicaSet may grow now.
fn new_rs_new_replicas(d: &Value, all: &[&Value], new_rs_replicas: i64) -> i64 {
    let desired = replicas(d);
    if !is_rolling(d) {
        return desired;
    }
    let surge = max_surge(d);
    let current: i64 = all.iter().map(|rs| replicas(rs)).sum::<i64>() + new_rs_replicas;
    let max_total = desired + surge;
    if current >= max_total {
        return new_rs_replicas;
    }
    let scale_up = (max_total - current).min(desired - new_rs_replicas).max(0);
    new_rs_replicas + scale_up
}

/// Scales a ReplicaSet (updating its replicas annotations) and records the event.
fn scale_rs(c: &mut Controllers, d: &Value, rs: &mut Value, to: i64) {
    let from = replicas(rs);
    let desired = replicas(d);
    let max = desired + max_surge(d);
    if let Some(updated) = c.modify(CONTROLLER, &kinds::replicasets(), rs, |v| {
        util::set_at(v, &["spec", "replicas"], json!(to));
        util::set_annotation(v, DESIRED_REPLICAS, &desired.to_string());
        util::set_annotation(v, MAX_REPLICAS, &max.to_string());
    }) {
        *rs = updated;
    }
    if from != to {
        let op = if to > from { "up" } else { "down" };
        emit(
            c,
            d,
            EventType::Normal,
            "ScalingReplicaSet",
            &format!(
                "Scaled {op} replica set {} from {from} to {to}",
                util::name(rs)
            ),
            CONTROLLER,
        );
    }
}

fn rollout_rolling(c: &mut Controllers, d: &Value, new_rs: Option<Value>, mut old_rs: Vec<Value>) {
    let Some(mut new_rs) = new_rs else {
        sync_status(c, d, None, &old_rs, true);
        return;
    };
    // reconcileNewReplicaSet
    let desired = replicas(d);
    let new_replicas = replicas(&new_rs);
    if new_replicas != desired {
        let target = if new_replicas > desired {
            desired
        } else {
            let all: Vec<&Value> = old_rs.iter().collect();
            new_rs_new_replicas(d, &all, new_replicas)
        };
        if target != new_replicas {
            scale_rs(c, d, &mut new_rs, target);
            sync_status(c, d, Some(&new_rs), &old_rs, true);
            return;
        }
    }
    // reconcileOldReplicaSets
    if reconcile_old(c, d, &new_rs, &mut old_rs) {
        sync_status(c, d, Some(&new_rs), &old_rs, true);
        return;
    }
    if is_complete(d, &calculate_status(c, d, Some(&new_rs), &old_rs)) {
        cleanup(c, d, &old_rs);
    }
    sync_status(c, d, Some(&new_rs), &old_rs, true);
}

fn reconcile_old(c: &mut Controllers, d: &Value, new_rs: &Value, old_rs: &mut [Value]) -> bool {
    let old_pods: i64 = old_rs.iter().map(replicas).sum();
    if old_pods == 0 {
        return false;
    }
    let all_pods = old_pods + replicas(new_rs);
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = replicas(new_rs) - status_i64(new_rs, "availableReplicas");
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    // cleanupUnhealthyReplicas: oldest first.
    let mut total_cleaned = 0;
    for rs in old_rs.iter_mut() {
        if total_cleaned >= max_scaled_down {
            break;
        }
        let r = replicas(rs);
        let available = status_i64(rs, "availableReplicas");
        if r == 0 || r == available {
            continue;
        }
        let count = (max_scaled_down - total_cleaned).min(r - available);
        if count <= 0 {
            continue;
        }
        scale_rs(c, d, rs, r - count);
        total_cleaned += count;
    }
    // scaleDownOldReplicaSetsForRollingUpdate
    let available: i64 = old_rs
        .iter()
        .chain(std::iter::once(new_rs))
        .map(|rs| status_i64(rs, "availableReplicas"))
        .sum();
    let mut scaled = 0;
    if available > min_available {
        let total = available - min_available;
        for rs in old_rs.iter_mut() {
            if scaled >= total {
                break;
            }
            let r = replicas(rs);
            if r == 0 {
                continue;
            }
            let count = r.min(total - scaled);
            scale_rs(c, d, rs, r - count);
            scaled += count;
        }
    }
    total_cleaned + scaled > 0
}

fn rollout_recreate(
    c: &mut Controllers,
    d: &mut Value,
    new_rs: Option<Value>,
    mut old_rs: Vec<Value>,
) {
    let mut scaled = false;
    for rs in old_rs.iter_mut() {
        if replicas(rs) > 0 {
            scale_rs(c, d, rs, 0);
            scaled = true;
        }
    }
    if scaled {
        sync_status(c, d, new_rs.as_ref(), &old_rs, true);
        return;
    }
    // Wait until old pods are gone.
    if old_rs.iter().any(|rs| status_i64(rs, "replicas") > 0) {
        sync_status(c, d, new_rs.as_ref(), &old_rs, true);
        return;
    }
    let mut new_rs = match new_rs {
        Some(rs) => rs,
        None => match sync_revision(c, d, None, &old_rs, true) {
            Some(rs) => rs,
            None => {
                sync_status(c, d, None, &old_rs, true);
                return;
            }
        },
    };
    let desired = replicas(d);
    if replicas(&new_rs) != desired {
        scale_rs(c, d, &mut new_rs, desired);
    }
    if is_complete(d, &calculate_status(c, d, Some(&new_rs), &old_rs)) {
        cleanup(c, d, &old_rs);
    }
    sync_status(c, d, Some(&new_rs), &old_rs, true);
}

/// `isScalingEvent`: an active ReplicaSet was last scaled for another spec.replicas.
fn is_scaling_event(d: &Value, new_rs: Option<&Value>, old_rs: &[Value]) -> bool {
    let desired = replicas(d);
    old_rs
        .iter()
        .chain(new_rs)
        .filter(|rs| replicas(rs) > 0)
        .any(|rs| {
            util::annotation(rs, DESIRED_REPLICAS)
                .and_then(|a| a.parse::<i64>().ok())
                .is_some_and(|a| a != desired)
        })
}

/// `GetProportion` / `getReplicaSetFraction`.
fn proportion(rs: &Value, d: &Value, to_add: i64, added: i64) -> i64 {
    let r = replicas(rs);
    if r == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -r
    } else {
        let max_now = replicas(d) + max_surge(d);
        let before = util::annotation(rs, MAX_REPLICAS)
            .and_then(|a| a.parse::<i64>().ok())
            .filter(|b| *b != 0)
            .unwrap_or_else(|| status_i64(d, "replicas"));
        if before == 0 {
            0
        } else {
            ((r as f64) * (max_now as f64) / (before as f64)).round() as i64 - r
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `scale`: a single active (or the latest) ReplicaSet follows spec.replicas; a saturated new
/// ReplicaSet scales old ones to zero; otherwise rolling deployments scale every active
/// ReplicaSet proportionally (leftovers to the largest).
fn scale(c: &mut Controllers, d: &Value, new_rs: &mut Option<Value>, old_rs: &mut [Value]) {
    let desired = replicas(d);
    let active_old: Vec<usize> = (0..old_rs.len())
        .filter(|i| replicas(&old_rs[*i]) > 0)
        .collect();
    let new_active = new_rs.as_ref().is_some_and(|rs| replicas(rs) > 0);
    match (active_old.len(), new_active) {
        (0, _) | (1, false) => {
            // FindActiveOrLatest.
            let target: Option<&mut Value> =
                if new_active || active_old.is_empty() && new_rs.is_some() {
                    new_rs.as_mut()
                } else if let Some(i) = active_old.first() {
                    old_rs.get_mut(*i)
                } else {
                    old_rs.iter_mut().max_by(|a, b| {
                        str_at(a, &["metadata", "creationTimestamp"])
                            .cmp(&str_at(b, &["metadata", "creationTimestamp"]))
                    })
                };
            if let Some(rs) = target
                && replicas(rs) != desired
            {
                scale_rs(c, d, rs, desired);
            }
            return;
        }
        _ => {}
    }
    let saturated = new_rs.as_ref().is_some_and(|rs| {
        replicas(rs) == desired
            && util::annotation(rs, DESIRED_REPLICAS).and_then(|a| a.parse::<i64>().ok())
                == Some(desired)
            && status_i64(rs, "availableReplicas") == desired
    });
    if saturated {
        for i in active_old {
            scale_rs(c, d, &mut old_rs[i], 0);
        }
        return;
    }
    if !is_rolling(d) {
        return;
    }
    // Active ReplicaSets: indices into old_rs, and usize::MAX for the new one.
    let mut active: Vec<usize> = active_old;
    if new_active {
        active.push(usize::MAX);
    }
    let get = |i: usize, new_rs: &Option<Value>, old_rs: &[Value]| -> Value {
        if i == usize::MAX {
            new_rs.clone().unwrap_or(Value::Null)
        } else {
            old_rs[i].clone()
        }
    };
    let total: i64 = active
        .iter()
        .map(|i| replicas(&get(*i, new_rs, old_rs)))
        .sum();
    let allowed = if desired > 0 {
        desired + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - total;
    if to_add == 0 {
        return;
    }
    let created = |v: &Value| {
        str_at(v, &["metadata", "creationTimestamp"])
            .unwrap_or("")
            .to_string()
    };
    active.sort_by(|a, b| {
        let (ra, rb) = (get(*a, new_rs, old_rs), get(*b, new_rs, old_rs));
        let by_size = replicas(&rb).cmp(&replicas(&ra));
        if to_add > 0 {
            by_size.then(created(&rb).cmp(&created(&ra)))
        } else {
            by_size.then(created(&ra).cmp(&created(&rb)))
        }
    });
    let mut added = 0;
    let mut sizes: Vec<(usize, i64)> = Vec::new();
    for i in &active {
        let rs = get(*i, new_rs, old_rs);
        let p = proportion(&rs, d, to_add, added);
        added += p;
        sizes.push((*i, replicas(&rs) + p));
    }
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    for (i, size) in sizes {
        if i == usize::MAX {
            if let Some(rs) = new_rs.as_mut() {
                scale_rs(c, d, rs, size);
            }
        } else {
            scale_rs(c, d, &mut old_rs[i], size);
        }
    }
}

/// Deletes old ReplicaSets beyond revisionHistoryLimit (oldest revisions first), only those
/// scaled to zero with no pods.
fn cleanup(c: &mut Controllers, d: &Value, old_rs: &[Value]) {
    let limit = i64_at(d, &["spec", "revisionHistoryLimit"])
        .unwrap_or(10)
        .max(0);
    let mut cleanable: Vec<&Value> = old_rs
        .iter()
        .filter(|rs| at(rs, &["metadata", "deletionTimestamp"]).is_none())
        .collect();
    let diff = cleanable.len() as i64 - limit;
    if diff <= 0 {
        return;
    }
    cleanable.sort_by(|a, b| {
        revision_of(a)
            .cmp(&revision_of(b))
            .then(util::name(a).cmp(util::name(b)))
    });
    for rs in cleanable.into_iter().take(diff as usize) {
        if status_i64(rs, "replicas") != 0 || replicas(rs) != 0 {
            continue;
        }
        let rs = rs.clone();
        c.delete(CONTROLLER, &kinds::replicasets(), &rs);
    }
}

/// `calculateStatus` (conditions are carried over from the current status).
fn calculate_status(c: &Controllers, d: &Value, new_rs: Option<&Value>, old_rs: &[Value]) -> Value {
    let all: Vec<&Value> = old_rs.iter().chain(new_rs).collect();
    let available: i64 = all
        .iter()
        .map(|rs| status_i64(rs, "availableReplicas"))
        .sum();
    let total: i64 = all.iter().map(|rs| replicas(rs)).sum();
    let mut status = json!({
        "observedGeneration": i64_at(d, &["metadata", "generation"]).unwrap_or(1),
        "replicas": all.iter().map(|rs| status_i64(rs, "replicas")).sum::<i64>(),
        "updatedReplicas": new_rs.map_or(0, |rs| status_i64(rs, "replicas")),
        "readyReplicas": all.iter().map(|rs| status_i64(rs, "readyReplicas")).sum::<i64>(),
        "availableReplicas": available,
        "unavailableReplicas": (total - available).max(0),
    });
    if let Some(cc) = at(d, &["status", "collisionCount"]) {
        util::set_at(&mut status, &["collisionCount"], cc.clone());
    }
    if let Some(conds) = at(d, &["status", "conditions"]) {
        util::set_at(&mut status, &["conditions"], conds.clone());
    }
    let now = c.now_str();
    let mut wrapper = json!({"status": status});
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut wrapper,
            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
            "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now}),
        );
    } else {
        set_condition(
            &mut wrapper,
            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
            "message": "Deployment does not have minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now}),
        );
    }
    wrapper.get("status").cloned().unwrap_or(json!({}))
}

/// `DeploymentComplete`.
fn is_complete(d: &Value, status: &Value) -> bool {
    let r = replicas(d);
    let s = |k: &str| i64_at(status, &[k]).unwrap_or(0);
    s("updatedReplicas") == r
        && s("replicas") == r
        && s("availableReplicas") == r
        && s("observedGeneration") >= i64_at(d, &["metadata", "generation"]).unwrap_or(1)
}

/// `syncRolloutStatus`: status counters plus the Progressing condition and its deadline.
fn sync_status(
    c: &mut Controllers,
    d: &Value,
    new_rs: Option<&Value>,
    old_rs: &[Value],
    track_progress: bool,
) {
    let mut status = calculate_status(c, d, new_rs, old_rs);
    let deadline = i64_at(d, &["spec", "progressDeadlineSeconds"]);
    let paused = util::bool_at(d, &["spec", "paused"]);
    let current = util::pod_condition(d, "Progressing").cloned();
    let now = c.now_str();
    let complete_already = i64_at(&status, &["replicas"]) == i64_at(&status, &["updatedReplicas"])
        && current
            .as_ref()
            .and_then(|cond| cond.get("reason"))
            .and_then(Value::as_str)
            == Some("NewReplicaSetAvailable");
    let mut wrapper = json!({"status": status});
    if let Some(deadline) = deadline.filter(|_| track_progress && !paused && !complete_already) {
        let rs_name = new_rs.map(util::name).unwrap_or("").to_string();
        let s = |v: &Value, k: &str| i64_at(v, &[k]).unwrap_or(0);
        let old_status = at(d, &["status"]).cloned().unwrap_or(json!({}));
        let progressing = s(&status, "updatedReplicas") > s(&old_status, "updatedReplicas")
            || s(&status, "readyReplicas") > s(&old_status, "readyReplicas")
            || (s(&status, "replicas") - s(&status, "updatedReplicas"))
                < (s(&old_status, "replicas") - s(&old_status, "updatedReplicas"))
            || s(&status, "availableReplicas") > s(&old_status, "availableReplicas");
        if is_complete(d, &status) {
            set_condition(
                &mut wrapper,
                json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                "message": format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                "lastUpdateTime": now, "lastTransitionTime": now}),
            );
        } else if progressing {
            let message = if rs_name.is_empty() {
                format!("Deployment \"{}\" is progressing.", util::name(d))
            } else {
                format!("ReplicaSet \"{rs_name}\" is progressing.")
            };
            // Progress refreshes lastUpdateTime even with the same reason.
            let transition = current
                .as_ref()
                .filter(|cond| cond.get("status").and_then(Value::as_str) == Some("True"))
                .and_then(|cond| cond.get("lastTransitionTime").cloned())
                .unwrap_or(json!(now));
            if let Some(conds) = wrapper
                .pointer_mut("/status/conditions")
                .and_then(Value::as_array_mut)
            {
                conds
                    .retain(|cond| cond.get("type").and_then(Value::as_str) != Some("Progressing"));
            }
            let conds = util::object_at_mut(&mut wrapper, &["status"])
                .entry("conditions")
                .or_insert_with(|| json!([]));
            if let Some(list) = conds.as_array_mut() {
                list.push(
                    json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                    "message": message, "lastUpdateTime": now, "lastTransitionTime": transition}),
                );
            }
        } else if let Some(cond) = current.as_ref() {
            let reason = cond.get("reason").and_then(Value::as_str).unwrap_or("");
            let from = cond
                .get("lastUpdateTime")
                .and_then(Value::as_str)
                .and_then(util::parse_time);
            if reason != "ProgressDeadlineExceeded"
                && reason != "NewReplicaSetAvailable"
                && let Some(from) = from
            {
                let due = from
                    .checked_add(jiff::SignedDuration::from_secs(deadline))
                    .unwrap_or(jiff::Timestamp::MAX);
                if due < c.now {
                    set_condition(
                        &mut wrapper,
                        json!({"type": "Progressing", "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                            "message": format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                            "lastUpdateTime": now, "lastTransitionTime": now}),
                    );
                } else {
                    c.wake_at(
                        due.checked_add(jiff::SignedDuration::from_secs(1))
                            .unwrap_or(due),
                    );
                }
            }
        }
    } else if deadline.is_none()
        && let Some(conds) = wrapper
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
    {
        conds.retain(|cond| cond.get("type").and_then(Value::as_str) != Some("Progressing"));
    }
    status = wrapper.get("status").cloned().unwrap_or(json!({}));
    let status = util::normalize(&status).unwrap_or(json!({}));
    if at(d, &["status"]) != Some(&status) {
        c.modify(CONTROLLER, &kinds::deployments(), d, |v| {
            util::set_at(v, &["status"], status);
        });
    }
}

/// `SetDeploymentCondition`: no change when status and reason match; keeps
/// lastTransitionTime when only the reason changes; the changed condition goes last.
pub fn set_condition(obj: &mut Value, cond: Value) {
    let kind = cond
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let current = util::pod_condition(obj, &kind).cloned();
    let mut cond = cond;
    if let Some(cur) = &current {
        let same_status = cur.get("status") == cond.get("status");
        if same_status && cur.get("reason") == cond.get("reason") {
            return;
        }
        if same_status
            && let (Some(t), Some(m)) = (cur.get("lastTransitionTime"), cond.as_object_mut())
        {
            m.insert("lastTransitionTime".into(), t.clone());
        }
    }
    let status = util::object_at_mut(obj, &["status"]);
    let conds = status.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    if let Some(list) = conds.as_array_mut() {
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some(kind.as_str()));
        list.push(cond);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u1",
                            "annotations": {"kubernetes.io/change-cause": "v2", REVISION: "9"}},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:2"}]}}}})
    }

    #[test]
    fn new_rs_growth_respects_max_surge() {
        let d = deploy(4, json!("25%"), json!("25%"));
        let old = json!({"spec": {"replicas": 4}});
        assert_eq!(new_rs_new_replicas(&d, &[&old], 0), 1);
        let old3 = json!({"spec": {"replicas": 3}});
        assert_eq!(new_rs_new_replicas(&d, &[&old3], 1), 2);
        // Never beyond desired.
        let none = json!({"spec": {"replicas": 0}});
        assert_eq!(new_rs_new_replicas(&d, &[&none], 3), 4);
        assert_eq!(max_unavailable(&d), 1);
        let d0 = deploy(10, json!(0), json!("10%"));
        assert_eq!(fenceposts(&d0), (0, 1));
        let recreate = json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}});
        assert_eq!(max_unavailable(&recreate), 0);
    }

    #[test]
    fn replica_set_carries_hash_owner_and_annotations() {
        let d = deploy(4, json!(1), json!(0));
        let t = at(&d, &["spec", "template"]).cloned().unwrap_or_default();
        let rs = replica_set_for(&d, &t, "abc12", 2);
        assert_eq!(util::name(&rs), "web-abc12");
        assert_eq!(
            str_at(
                &rs,
                &["spec", "selector", "matchLabels", "pod-template-hash"]
            ),
            Some("abc12")
        );
        assert_eq!(
            str_at(
                &rs,
                &[
                    "spec",
                    "template",
                    "metadata",
                    "labels",
                    "pod-template-hash"
                ]
            ),
            Some("abc12")
        );
        assert_eq!(
            util::annotation(&rs, "kubernetes.io/change-cause"),
            Some("v2")
        );
        assert_eq!(
            util::annotation(&rs, REVISION),
            None,
            "revision is never copied"
        );
        assert_eq!(util::annotation(&rs, DESIRED_REPLICAS), Some("4"));
        assert_eq!(util::annotation(&rs, MAX_REPLICAS), Some("5"));
        assert!(util::is_controlled_by(&rs, "u1"));
    }

    #[test]
    fn reused_rs_gets_new_revision_and_history() {
        let d = deploy(1, json!(1), json!(0));
        let mut rs = json!({"metadata": {"annotations": {REVISION: "1"}}});
        set_new_rs_annotations(&d, &mut rs, 3);
        assert_eq!(util::annotation(&rs, REVISION), Some("3"));
        assert_eq!(util::annotation(&rs, REVISION_HISTORY), Some("1"));
        set_new_rs_annotations(&d, &mut rs, 5);
        assert_eq!(util::annotation(&rs, REVISION_HISTORY), Some("1,3"));
        // A lower computed revision never decreases it.
        set_new_rs_annotations(&d, &mut rs, 2);
        assert_eq!(util::annotation(&rs, REVISION), Some("5"));
        // A fresh RS gets its revision without history.
        let mut fresh = json!({"metadata": {}});
        set_new_rs_annotations(&d, &mut fresh, 2);
        assert_eq!(util::annotation(&fresh, REVISION), Some("2"));
        assert_eq!(util::annotation(&fresh, REVISION_HISTORY), None);
    }

    #[test]
    fn set_condition_keeps_transition_time_for_same_status() {
        let mut d = json!({"status": {"conditions": [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated", "lastTransitionTime": "t0", "lastUpdateTime": "t0"},
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "lastTransitionTime": "t0"}]}});
        set_condition(
            &mut d,
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "lastTransitionTime": "t1", "lastUpdateTime": "t1"}),
        );
        let p = util::pod_condition(&d, "Progressing")
            .cloned()
            .unwrap_or_default();
        assert_eq!(p["lastTransitionTime"], "t0");
        assert_eq!(p["lastUpdateTime"], "t1");
        let conds = d["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            conds.last().and_then(|c| c.get("type")),
            Some(&json!("Progressing"))
        );
        // Same status and reason: untouched.
        let before = d.clone();
        set_condition(
            &mut d,
            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "lastTransitionTime": "t9"}),
        );
        assert_eq!(d, before);
    }
}
