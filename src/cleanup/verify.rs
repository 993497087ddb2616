//! Verification: is the cluster back to a clean, consistent, convergent state?
//!
//! Three checks, each producing [`Finding`]s (dirty) and notes (informational):
//!
//! - **restored** (runs/incident only): every field ripcord touched holds its value from
//!   before the first mutation that touched it, or a recorded intended state (a rollback's
//!   target: rollbacks are kept, so they are noted, not dirty).
//! - **residue** (always, cluster-wide): nodes cordoned or marked by ripcord
//!   (`ripcord.dev/cordoned-by`), paused Deployments, HTTPRoute backends with weight 0, lock
//!   Leases (`ripcord-lock-*`) still held, Deployments with fewer ready replicas than desired,
//!   approvals still pending and runs that never journaled their finish (a crash).
//! - **convergence**: the rollout of every touched Deployment (every Deployment, for
//!   `--cluster`) is complete by `kubectl rollout status` rules; and (`--cluster`) the fleet
//!   is not lopsided: no Deployment with at least as many Ready pods as there are zones with
//!   Ready, schedulable nodes (and at least two of each) runs all its Ready pods in one zone —
//!   what is left after zones were failed out and back in and the pods never returned
//!   (`lopsided-workload`).
//!
//! The result is clean when there is no finding.

use super::fields;
use super::source::RunView;
use super::{CleanupError, Selection};
use crate::actions::{Inverse, ObjectRef};
use crate::errors::error_chain;
use crate::journal::Record;
use crate::k8s::K8sError;
use crate::k8s::deployments::{RolloutStatus, rollout_status};
use crate::k8s::objects::{Objects, ResolvedKind};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The label (and annotation) prefix ripcord's node marks use.
pub const NODE_MARK_PREFIX: &str = "ripcord.dev/cordoned-";
/// The annotation prefix where a fail-out records a backend's weight before it.
pub const WEIGHT_BEFORE_PREFIX: &str = "ripcord.dev/weight-before.";
/// The name prefix of ripcord's lock Leases.
pub const LOCK_PREFIX: &str = "ripcord-lock-";

/// One problem found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// `restored`, `residue`, `convergence`.
    pub check: String,
    /// What kind of problem (`cordoned-node`, `paused-deployment`, `zero-weight`, `lock-held`,
    /// `unready-workload`, `approval-pending`, `unfinished-run`, `not-restored`,
    /// `rollout-incomplete`, `rollout-failed`, `unverifiable`…).
    pub kind: String,
    /// The object (`node/zone-a-1`, `deployment/shop/web`) or run.
    pub object: String,
    /// What was seen, for people.
    pub detail: String,
    /// The run responsible, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// How much was looked at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checked {
    /// Touched objects compared with their state before ripcord.
    pub touched_objects: usize,
    /// Nodes scanned.
    pub nodes: usize,
    /// Deployments scanned.
    pub deployments: usize,
    /// HTTPRoutes scanned.
    pub http_routes: usize,
    /// Leases scanned.
    pub leases: usize,
    /// Runs considered.
    pub runs: usize,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// `run r-…`, `incident INC-1`, `cluster`.
    pub scope: String,
    /// No findings.
    pub clean: bool,
    /// When it was checked.
    pub at: jiff::Timestamp,
    /// The runs considered.
    pub runs: Vec<String>,
    /// How much was looked at.
    pub checked: Checked,
    /// The problems (dirty when not empty).
    pub findings: Vec<Finding>,
    /// Things worth knowing that do not make the cluster dirty.
    pub notes: Vec<Finding>,
}

fn finding(
    check: &str,
    kind: &str,
    object: impl Into<String>,
    detail: impl Into<String>,
) -> Finding {
    Finding {
        check: check.into(),
        kind: kind.into(),
        object: object.into(),
        detail: detail.into(),
        run: None,
    }
}

fn cluster_err(what: impl Into<String>) -> impl FnOnce(K8sError) -> CleanupError {
    let what = what.into();
    move |source| CleanupError::Cluster {
        what,
        source: Box::new(source),
    }
}

/// Verifies once. `runs` are the runs of `selection` (for [`Selection::All`], every run known:
/// only their finish records are checked).
pub async fn verify(
    objects: &Objects,
    selection: &Selection,
    runs: &[RunView],
) -> Result<VerifyReport, CleanupError> {
    let mut report = VerifyReport {
        scope: match selection {
            Selection::All => "cluster".to_string(),
            other => other.to_string(),
        },
        clean: false,
        at: jiff::Timestamp::now(),
        runs: runs.iter().map(|r| r.run_id.clone()).collect(),
        checked: Checked {
            runs: runs.len(),
            ..Checked::default()
        },
        findings: Vec::new(),
        notes: Vec::new(),
    };
    let cluster_mode = *selection == Selection::All;
    if !cluster_mode {
        check_restored(objects, runs, &mut report).await?;
    }
    check_runs(runs, &mut report);
    check_nodes(objects, &mut report).await?;
    if cluster_mode {
        check_balance(objects, &mut report).await?;
    }
    let touched_deployments: Vec<ObjectRef> = runs
        .iter()
        .filter(|r| !r.is_cleanup())
        .flat_map(|r| r.touched.iter())
        .map(|t| t.target.clone())
        .filter(|t| t.kind == "Deployment")
        .collect();
    // Kinds resolved once (one discovery call each), then listed namespace by namespace.
    let deployments = objects
        .resolve("apps/v1", "Deployment")
        .await
        .map_err(cluster_err("the Deployment kind"))?;
    let routes = match objects
        .resolve("gateway.networking.k8s.io/v1", "HTTPRoute")
        .await
    {
        Ok(kind) => Some(kind),
        // The Gateway API is not installed: no route to check.
        Err(K8sError::UnknownKind { .. }) => None,
        Err(source) => return Err(cluster_err("the HTTPRoute kind")(source)),
    };
    let leases = objects
        .resolve("coordination.k8s.io/v1", "Lease")
        .await
        .map_err(cluster_err("the Lease kind"))?;
    for namespace in super::source::namespaces(objects).await? {
        check_deployments(
            objects,
            &deployments,
            &namespace,
            cluster_mode,
            &touched_deployments,
            &mut report,
        )
        .await?;
        if let Some(routes) = &routes {
            check_routes(objects, routes, &namespace, &mut report).await?;
        }
        check_leases(objects, &leases, &namespace, &mut report).await?;
    }
    report.clean = report.findings.is_empty();
    Ok(report)
}

/// Verifies until clean, until `wait` has passed, or until nothing left can clear by itself
/// ([`can_settle`]), polling every `interval`; returns the last report.
pub async fn verify_until(
    objects: &Objects,
    selection: &Selection,
    runs: &[RunView],
    wait: Duration,
    interval: Duration,
) -> Result<VerifyReport, CleanupError> {
    let started = Instant::now();
    loop {
        let report = verify(objects, selection, runs).await?;
        // Waiting only helps while something may still settle by itself.
        if report.clean || started.elapsed() >= wait || !can_settle(&report) {
            return Ok(report);
        }
        tokio::time::sleep(interval.min(wait.saturating_sub(started.elapsed()))).await;
    }
}

/// True when some finding may clear by itself with time (a rollout in progress, pods not
/// Ready yet, a lock lease that will expire, a check that could not be made this time). A
/// cordoned node, a zero weight, a paused Deployment or a field not restored stays until
/// someone acts: `verify --wait` stops early on those.
pub fn can_settle(report: &VerifyReport) -> bool {
    report.findings.iter().any(|f| {
        matches!(
            f.kind.as_str(),
            "unready-workload" | "rollout-incomplete" | "lock-held" | "unverifiable"
        )
    })
}

/// A touched field, its value before ripcord and the run that first touched it.
type FieldBefore = (fields::FieldPath, Value, String);

/// (a): touched fields back at their value before ripcord.
async fn check_restored(
    objects: &Objects,
    runs: &[RunView],
    report: &mut VerifyReport,
) -> Result<(), CleanupError> {
    // Oldest first: the first mutation touching a field knows its value before ripcord.
    let mut before: Vec<(ObjectRef, Vec<FieldBefore>)> = Vec::new();
    for run in runs.iter().filter(|r| !r.is_cleanup()) {
        for t in &run.touched {
            if super::is_secret(&t.target) {
                // Never read: ripcord does not write Secrets, so the record is not ripcord's.
                let mut note = finding(
                    "restored",
                    "not-ripcords",
                    t.target.to_string(),
                    "a record names a Secret; ripcord never writes Secrets: not read, left alone",
                );
                note.run = Some(t.run_id.clone());
                report.notes.push(note);
                continue;
            }
            match (&t.inverse, &t.problem) {
                (Some(Inverse::MergePatch { patch, .. }), None) => {
                    let entry = match before.iter_mut().find(|(target, _)| *target == t.target) {
                        Some(entry) => entry,
                        None => {
                            before.push((t.target.clone(), Vec::new()));
                            let last = before.len() - 1;
                            &mut before[last]
                        }
                    };
                    for (path, value) in fields::leaves(patch) {
                        if !entry.1.iter().any(|(p, _, _)| *p == path) {
                            entry.1.push((path, value, t.run_id.clone()));
                        }
                    }
                }
                (Some(Inverse::NotReverted { .. }), _) => {
                    let mut note = finding(
                        "restored",
                        "rollback-kept",
                        t.target.to_string(),
                        format!(
                            "{}: the rollback target is the intended state",
                            t.description
                        ),
                    );
                    note.run = Some(t.run_id.clone());
                    report.notes.push(note);
                }
                (Some(Inverse::None { .. }), _) => {}
                (_, problem) => {
                    let mut f = finding(
                        "restored",
                        "unverifiable",
                        t.target.to_string(),
                        problem
                            .clone()
                            .unwrap_or_else(|| "no inverse recorded".to_string()),
                    );
                    f.run = Some(t.run_id.clone());
                    report.findings.push(f);
                }
            }
        }
    }
    let mut kinds = HashMap::new();
    for (target, leaves) in before {
        report.checked.touched_objects += 1;
        let now = match read_object(objects, &mut kinds, &target).await {
            Ok(Some(now)) => now,
            Ok(None) => {
                report.notes.push(finding(
                    "restored",
                    "object-gone",
                    target.to_string(),
                    "the object ripcord touched no longer exists",
                ));
                continue;
            }
            Err(err) => {
                report.findings.push(finding(
                    "restored",
                    "unverifiable",
                    target.to_string(),
                    format!("cannot read it: {}", error_chain(&err)),
                ));
                continue;
            }
        };
        for (path, value, run) in leaves {
            let current = fields::value_at(&now, &path);
            if !fields::same_at(&path, &current, &value) {
                let mut f = finding(
                    "restored",
                    "not-restored",
                    target.to_string(),
                    format!(
                        "{} is {} (before ripcord: {})",
                        fields::display_path(&path),
                        fields::display_value(&current),
                        fields::display_value(&value)
                    ),
                );
                f.run = Some(run);
                report.findings.push(f);
            }
        }
    }
    Ok(())
}

async fn read_object(
    objects: &Objects,
    kinds: &mut HashMap<(String, String), ResolvedKind>,
    target: &ObjectRef,
) -> Result<Option<Value>, K8sError> {
    let key = (target.api_version.clone(), target.kind.clone());
    let kind = match kinds.get(&key) {
        Some(kind) => kind.clone(),
        None => {
            let kind = objects.resolve(&target.api_version, &target.kind).await?;
            kinds.insert(key, kind.clone());
            kind
        }
    };
    let namespace = if kind.namespaced {
        target.namespace.as_deref()
    } else {
        None
    };
    match objects.get(&kind, namespace, &target.name).await {
        Ok(v) => Ok(Some(v)),
        Err(K8sError::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Unfinished runs and approvals still pending.
fn check_runs(runs: &[RunView], report: &mut VerifyReport) {
    for run in runs {
        if !run.unfinished() {
            continue;
        }
        let cleaned_by = runs.iter().find(|c| {
            c.is_cleanup()
                && c.outcome == Some(crate::journal::Outcome::Succeeded)
                && c.cleanup_of().contains(&run.run_id)
        });
        if let Some(cleanup) = cleaned_by {
            let mut note = finding(
                "residue",
                "unfinished-run",
                format!("run/{}", run.run_id),
                format!(
                    "run {} has no finish record; cleanup run {} reverted it",
                    run.run_id, cleanup.run_id
                ),
            );
            note.run = Some(run.run_id.clone());
            report.notes.push(note);
            continue;
        }
        let mut f = finding(
            "residue",
            "unfinished-run",
            format!("run/{}", run.run_id),
            format!(
                "run {} ({}) has no finish record: it crashed or is still running; resume it \
                 with `ripcord run --resume {}` or revert it with `ripcord cleanup --run {}`",
                run.run_id,
                if run.playbook.is_empty() {
                    "unknown playbook"
                } else {
                    &run.playbook
                },
                run.run_id,
                run.run_id
            ),
        );
        f.run = Some(run.run_id.clone());
        report.findings.push(f);
        for step in pending_approvals(run) {
            let mut f = finding(
                "residue",
                "approval-pending",
                format!("run/{}/{}", run.run_id, step),
                format!(
                    "approval step {step} of run {} is still waiting",
                    run.run_id
                ),
            );
            f.run = Some(run.run_id.clone());
            report.findings.push(f);
        }
    }
}

/// The `gate.approval` steps of a run that were planned but never ended.
pub fn pending_approvals(run: &RunView) -> Vec<String> {
    let mut pending: Vec<String> = Vec::new();
    for entry in &run.entries {
        match &entry.record {
            Record::StepPlanned { step, action, .. }
                if action == "gate.approval" && !pending.contains(step) =>
            {
                pending.push(step.clone());
            }
            Record::StepVerified { step }
            | Record::StepFailed { step, .. }
            | Record::StepAlreadySatisfied { step, .. } => pending.retain(|s| s != step),
            _ => {}
        }
    }
    pending
}

fn marks(object: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for field in ["labels", "annotations"] {
        if let Some(map) = object
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
        {
            for (k, v) in map {
                if k.starts_with(NODE_MARK_PREFIX) {
                    out.push((k.clone(), v.as_str().unwrap_or_default().to_string()));
                }
            }
        }
    }
    out
}

async fn check_nodes(objects: &Objects, report: &mut VerifyReport) -> Result<(), CleanupError> {
    let kind = objects
        .resolve("v1", "Node")
        .await
        .map_err(cluster_err("the Node kind"))?;
    let nodes = objects
        .list(&kind, None, &ListParams::default())
        .await
        .map_err(cluster_err("nodes"))?;
    report.checked.nodes = nodes.len();
    for node in &nodes {
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let cordoned = node
            .pointer("/spec/unschedulable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let marks = marks(node);
        let by = marks
            .iter()
            .find(|(k, _)| k == "ripcord.dev/cordoned-by")
            .map(|(_, v)| v.clone());
        let object = format!("node/{name}");
        match (cordoned, marks.is_empty()) {
            (true, false) => {
                let mut f = finding(
                    "residue",
                    "cordoned-node",
                    object,
                    format!(
                        "cordoned by ripcord run {}",
                        by.as_deref().unwrap_or("(unknown)")
                    ),
                );
                f.run = by;
                report.findings.push(f);
            }
            (false, false) => {
                let keys: Vec<&str> = marks.iter().map(|(k, _)| k.as_str()).collect();
                let mut f = finding(
                    "residue",
                    "marked-node",
                    object,
                    format!(
                        "schedulable but still carries ripcord's marks: {}",
                        keys.join(", ")
                    ),
                );
                f.run = by;
                report.findings.push(f);
            }
            (true, true) => report.notes.push(finding(
                "residue",
                "cordoned-node",
                object,
                "cordoned, but not by ripcord (no ripcord mark)",
            )),
            (false, true) => {}
        }
    }
    Ok(())
}

/// The node label that carries the zone (as `zone.failout`'s default).
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

async fn check_balance(objects: &Objects, report: &mut VerifyReport) -> Result<(), CleanupError> {
    let node_kind = objects
        .resolve("v1", "Node")
        .await
        .map_err(cluster_err("the Node kind"))?;
    let pod_kind = objects
        .resolve("v1", "Pod")
        .await
        .map_err(cluster_err("the Pod kind"))?;
    let nodes = objects
        .list(&node_kind, None, &ListParams::default())
        .await
        .map_err(cluster_err("nodes"))?;
    let mut pods = Vec::new();
    for namespace in super::source::namespaces(objects).await? {
        pods.extend(
            objects
                .list(&pod_kind, Some(&namespace), &ListParams::default())
                .await
                .map_err(cluster_err(format!("pods in {namespace}")))?,
        );
    }
    report.findings.extend(lopsided(&nodes, &pods));
    Ok(())
}

/// The `lopsided-workload` findings (see the module docs): Deployments whose Ready pods all
/// run in one zone while other zones have Ready, schedulable nodes.
fn lopsided(nodes: &[Value], pods: &[Value]) -> Vec<Finding> {
    use std::collections::{BTreeMap, BTreeSet};
    let str_at = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let condition_true = |v: &Value, kind: &str| {
        v.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
    };
    let mut zone_of: HashMap<String, String> = HashMap::new();
    let mut healthy_zones: BTreeSet<String> = BTreeSet::new();
    for node in nodes {
        let (Some(name), Some(zone)) = (
            str_at(node, "/metadata/name"),
            node.pointer("/metadata/labels")
                .and_then(|l| l.get(ZONE_LABEL))
                .and_then(Value::as_str)
                .map(str::to_string),
        ) else {
            continue;
        };
        let schedulable =
            node.pointer("/spec/unschedulable").and_then(Value::as_bool) != Some(true);
        if schedulable && condition_true(node, "Ready") {
            healthy_zones.insert(zone.clone());
        }
        zone_of.insert(name, zone);
    }
    if healthy_zones.len() < 2 {
        return Vec::new();
    }
    // (NS, NAME) of a Deployment -> zone -> Ready pods (pods of ReplicaSets named NAME-<hash>).
    let mut spread: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for pod in pods {
        if pod.pointer("/metadata/deletionTimestamp").is_some() || !condition_true(pod, "Ready") {
            continue;
        }
        let Some(owner) = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|o| o.iter().find(|o| o["controller"] == true))
        else {
            continue;
        };
        if owner["kind"] != "ReplicaSet" {
            continue;
        }
        let (Some(rs), Some(hash), Some(ns), Some(node)) = (
            owner["name"].as_str(),
            pod.pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str),
            str_at(pod, "/metadata/namespace"),
            str_at(pod, "/spec/nodeName"),
        ) else {
            continue;
        };
        let Some(deployment) = rs.strip_suffix(&format!("-{hash}")) else {
            continue;
        };
        let Some(zone) = zone_of.get(&node) else {
            continue;
        };
        *spread
            .entry((ns, deployment.to_string()))
            .or_default()
            .entry(zone.clone())
            .or_default() += 1;
    }
    spread
        .into_iter()
        .filter_map(|((ns, name), zones)| {
            let ready: usize = zones.values().sum();
            let (only, _) = zones.iter().next()?;
            (zones.len() == 1 && ready >= healthy_zones.len()).then(|| {
                let others: Vec<&str> = healthy_zones
                    .iter()
                    .filter(|z| *z != only)
                    .map(String::as_str)
                    .collect();
                finding(
                    "convergence",
                    "lopsided-workload",
                    format!("deployment/{ns}/{name}"),
                    format!(
                        "all {ready} Ready pods run in zone {only} while zone(s) {} have Ready, \
                         schedulable nodes: the pods did not return after a fail-back; restart \
                         it (ripcord restart deployment/{name} -n {ns}) to spread it again",
                        others.join(", "),
                    ),
                )
            })
        })
        .collect()
}

async fn check_deployments(
    objects: &Objects,
    kind: &ResolvedKind,
    namespace: &str,
    all_rollouts: bool,
    touched: &[ObjectRef],
    report: &mut VerifyReport,
) -> Result<(), CleanupError> {
    let items = objects
        .list(kind, Some(namespace), &ListParams::default())
        .await
        .map_err(cluster_err(format!("deployments in {namespace}")))?;
    report.checked.deployments += items.len();
    for item in items {
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object = format!("deployment/{namespace}/{name}");
        if item.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
            report.findings.push(finding(
                "residue",
                "paused-deployment",
                &object,
                "rollouts are paused (spec.paused: true)",
            ));
        }
        let desired = item
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let ready = item
            .pointer("/status/readyReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if ready < desired {
            report.findings.push(finding(
                "residue",
                "unready-workload",
                &object,
                format!("{ready} of {desired} replicas ready"),
            ));
        }
        let is_touched = touched
            .iter()
            .any(|t| t.name == name && t.namespace.as_deref() == Some(namespace));
        if !(all_rollouts || is_touched) {
            continue;
        }
        let Ok(deployment) = serde_json::from_value::<Deployment>(item) else {
            report.findings.push(finding(
                "convergence",
                "unverifiable",
                &object,
                "the Deployment does not parse",
            ));
            continue;
        };
        match rollout_status(&deployment) {
            RolloutStatus::Complete { .. } => {}
            RolloutStatus::Progressing { message } => report.findings.push(finding(
                "convergence",
                "rollout-incomplete",
                &object,
                message,
            )),
            RolloutStatus::Failed { message } => {
                report
                    .findings
                    .push(finding("convergence", "rollout-failed", &object, message))
            }
        }
    }
    Ok(())
}

async fn check_routes(
    objects: &Objects,
    kind: &ResolvedKind,
    namespace: &str,
    report: &mut VerifyReport,
) -> Result<(), CleanupError> {
    let items = objects
        .list(kind, Some(namespace), &ListParams::default())
        .await
        .map_err(cluster_err(format!("HTTPRoutes in {namespace}")))?;
    report.checked.http_routes += items.len();
    for route in items {
        let name = route
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let object = format!("httproute/{namespace}/{name}");
        let rules = route
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for rule in &rules {
            for backend in rule
                .get("backendRefs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if backend.get("weight").and_then(Value::as_i64) == Some(0) {
                    let backend_name = backend
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    report.findings.push(finding(
                        "residue",
                        "zero-weight",
                        &object,
                        format!("backend {backend_name} has weight 0 (its zone takes no traffic)"),
                    ));
                }
            }
        }
        if let Some(annotations) = route
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        {
            for key in annotations
                .keys()
                .filter(|k| k.starts_with(WEIGHT_BEFORE_PREFIX))
            {
                report.notes.push(finding(
                    "residue",
                    "weight-record",
                    &object,
                    format!("annotation {key} (a fail-out's record of the weight before it)"),
                ));
            }
        }
    }
    Ok(())
}

async fn check_leases(
    objects: &Objects,
    kind: &ResolvedKind,
    namespace: &str,
    report: &mut VerifyReport,
) -> Result<(), CleanupError> {
    let items = objects
        .list(kind, Some(namespace), &ListParams::default())
        .await
        .map_err(cluster_err(format!("leases in {namespace}")))?;
    let now = jiff::Timestamp::now();
    for lease in items {
        let name = lease
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !name.starts_with(LOCK_PREFIX) {
            continue;
        }
        report.checked.leases += 1;
        let holder = lease
            .pointer("/spec/holderIdentity")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if holder.is_empty() {
            continue;
        }
        let duration = lease
            .pointer("/spec/leaseDurationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let renewed = lease
            .pointer("/spec/renewTime")
            .or_else(|| lease.pointer("/spec/acquireTime"))
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let remaining = renewed.map(|r| r.as_second() + duration - now.as_second());
        let lock = lease
            .pointer("/metadata/annotations/ripcord.dev~1lock")
            .and_then(Value::as_str)
            .unwrap_or(name);
        let object = format!("lease/{namespace}/{name}");
        match remaining {
            Some(left) if left > 0 => {
                let mut f = finding(
                    "residue",
                    "lock-held",
                    object,
                    format!("lock {lock} held by run {holder} (expires in {left}s unless renewed)"),
                );
                f.run = Some(holder.to_string());
                report.findings.push(f);
            }
            _ => {
                let mut note = finding(
                    "residue",
                    "lock-expired",
                    object,
                    format!("lock {lock} of run {holder} expired (free for the next run)"),
                );
                note.run = Some(holder.to_string());
                report.notes.push(note);
            }
        }
    }
    Ok(())
}

/// Where a verify result is kept for the report: the run directory (`verify.json`) or
/// `<state-dir>/incidents/<ID>.verify.json`; `None` for `--cluster`.
pub fn result_path(state_dir: &Path, selection: &Selection) -> Option<PathBuf> {
    match selection {
        Selection::Run(id) => Some(crate::journal::run_dir(state_dir, id).join("verify.json")),
        Selection::Incident(id) => Some(
            state_dir
                .join("incidents")
                .join(format!("{id}.verify.json")),
        ),
        Selection::All => None,
    }
}

/// Saves a verify result for the report (see [`result_path`]).
pub fn save(
    state_dir: &Path,
    selection: &Selection,
    report: &VerifyReport,
) -> Result<(), CleanupError> {
    let Some(path) = result_path(state_dir, selection) else {
        return Ok(());
    };
    let write = || -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
        crate::journal::files::write_private(&path, &bytes)
    };
    write().map_err(|source| CleanupError::Write {
        path: path.clone(),
        source,
    })
}

/// The last saved verify result of a selection, if any.
pub fn load_saved(state_dir: &Path, selection: &Selection) -> Option<VerifyReport> {
    let path = result_path(state_dir, selection)?;
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Entry;
    use serde_json::json;

    #[test]
    fn issue12_a_workload_left_in_one_zone_is_lopsided() {
        let node = |name: &str, zone: &str, cordoned: bool| {
            serde_json::json!({"metadata": {"name": name, "labels": {ZONE_LABEL: zone}},
                "spec": {"unschedulable": cordoned},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        };
        let pod = |name: &str, node: &str| {
            serde_json::json!({"metadata": {"name": name, "namespace": "shop",
                "labels": {"pod-template-hash": "abc"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "controller": true}]},
                "spec": {"nodeName": node},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        };
        let nodes = vec![
            node("a1", "zone-a", false),
            node("b1", "zone-b", false),
            node("c1", "zone-c", false),
        ];
        let all_in_c: Vec<Value> = (0..6).map(|i| pod(&format!("web-{i}"), "c1")).collect();
        let found = lopsided(&nodes, &all_in_c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "lopsided-workload");
        assert_eq!(found[0].object, "deployment/shop/web");
        assert!(
            found[0].detail.contains("zone zone-c") && found[0].detail.contains("zone-a, zone-b"),
            "{found:?}"
        );
        // Spread, or the other zones still failed out: not lopsided.
        let spread: Vec<Value> = ["a1", "b1", "c1"]
            .iter()
            .enumerate()
            .map(|(i, n)| pod(&format!("web-{i}"), n))
            .collect();
        assert!(lopsided(&nodes, &spread).is_empty());
        let out = vec![
            node("a1", "zone-a", true),
            node("b1", "zone-b", true),
            node("c1", "zone-c", false),
        ];
        assert!(lopsided(&out, &all_in_c).is_empty());
        // Fewer Ready pods than healthy zones: cannot spread anyway.
        assert!(lopsided(&nodes, &all_in_c[..2]).is_empty());
    }

    #[test]
    fn node_marks_are_found_in_labels_and_annotations() {
        let node = json!({"metadata": {"labels": {"ripcord.dev/cordoned-by": "r1", "zone": "a"},
                                       "annotations": {"ripcord.dev/cordoned-step": "failout"}}});
        let mut got = marks(&node);
        got.sort();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "ripcord.dev/cordoned-by");
        assert!(marks(&json!({"metadata": {}})).is_empty());
    }

    #[test]
    fn approvals_pending_until_the_step_ends() {
        let mut run = crate::cleanup::source::from_entries(
            "r",
            Path::new("/j"),
            vec![Entry {
                seq: 1,
                at: jiff::Timestamp::UNIX_EPOCH,
                record: Record::StepPlanned {
                    step: "ack".into(),
                    action: "gate.approval".into(),
                    summary: String::new(),
                    diff: String::new(),
                },
            }],
        );
        assert_eq!(pending_approvals(&run), vec!["ack".to_string()]);
        run.entries.push(Entry {
            seq: 2,
            at: jiff::Timestamp::UNIX_EPOCH,
            record: Record::StepVerified { step: "ack".into() },
        });
        assert!(pending_approvals(&run).is_empty());
    }

    #[test]
    fn results_are_kept_per_run_and_incident() {
        let dir = Path::new("/state");
        assert_eq!(
            result_path(dir, &Selection::Run("r-1".into())).unwrap(),
            Path::new("/state/runs/r-1/verify.json")
        );
        assert_eq!(
            result_path(dir, &Selection::Incident("INC-1".into())).unwrap(),
            Path::new("/state/incidents/INC-1.verify.json")
        );
        assert!(result_path(dir, &Selection::All).is_none());
    }
}
