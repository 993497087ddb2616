//! The runs cleanup, verify and report work on: local journals first, the cluster's `Run`
//! resources for runs whose journal is not on this machine.
//!
//! Each run becomes a [`RunView`] with the mutations it (maybe) made as [`Touched`] entries.
//! From a local journal every `MutationApplied` counts, and so does a `MutationIntended`
//! without its `MutationApplied` (the process may have died after the write reached the API
//! server; the in-effect check decides). From a `Run` resource the mutations come from
//! `status.steps[].mutations[]` (target and inverse; no resourceVersions, and an inverse cut by
//! the resource's size bound cannot be used — such entries are reported as unavailable).

use super::{CLEANUP_PLAYBOOK, CleanupError, Selection};
use crate::actions::{Inverse, ObjectRef};
use crate::journal::{self, Entry, Outcome, Record};
use crate::k8s::objects::Objects;
use crate::k8s::runs::{Run, RunSpec, RunStatus, StepStatus};
use kube::api::ListParams;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where a run's records came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum RunOrigin {
    /// A local journal.
    Journal {
        /// The journal file.
        path: PathBuf,
    },
    /// A `Run` resource in the cluster.
    Cluster {
        /// Its namespace.
        namespace: String,
    },
}

/// One mutation a run made (or may have made).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Touched {
    /// The run.
    pub run_id: String,
    /// Position in the run (journal sequence number, or index in the `Run` status).
    pub seq: u64,
    /// The step.
    pub step: String,
    /// The mutation's id within the step.
    pub mutation_id: String,
    /// The object written.
    pub target: ObjectRef,
    /// One line for people.
    pub description: String,
    /// resourceVersion before the write, when journaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version_before: Option<String>,
    /// resourceVersion after the write, when journaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version_after: Option<String>,
    /// How to revert it (`None` when the record could not be read).
    pub inverse: Option<Inverse>,
    /// Why the inverse is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// True when only the write-ahead record exists (the process died around the write).
    pub unconfirmed: bool,
    /// When it was journaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<jiff::Timestamp>,
}

/// A run as cleanup sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    /// The run id.
    pub run_id: String,
    /// The playbook's name.
    pub playbook: String,
    /// Who started it.
    pub who: String,
    /// What started it.
    pub trigger: String,
    /// The incident id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// When it started.
    pub started_at: Option<jiff::Timestamp>,
    /// When it finished.
    pub finished_at: Option<jiff::Timestamp>,
    /// How it finished (`None`: still running, or it crashed before journaling its finish).
    pub outcome: Option<Outcome>,
    /// Where the records came from.
    pub origin: RunOrigin,
    /// The mutations, in run order.
    pub touched: Vec<Touched>,
    /// The parameters (for a cleanup run: `cleanupOf` lists the runs it reverted).
    pub params: serde_json::Map<String, Value>,
    /// The journal's records (empty for a run read from the cluster).
    #[serde(skip)]
    pub entries: Vec<Entry>,
    /// A problem reading the run (torn tail, corruption, bad records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The local journal is damaged (a line other than a torn last one does not parse): the
    /// error, naming the line. Cleanup never reverts from such a journal: it uses the run's
    /// `Run` resource instead, or reports every mutation it could not judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

impl RunView {
    /// True for a `Run` resource this build refused to read (its status is in a format version
    /// it does not read): nothing of it is judged. [`from_run_resource`] records the refusal as
    /// both the problem and the damage.
    pub fn is_unreadable_resource(&self) -> bool {
        matches!(self.origin, RunOrigin::Cluster { .. })
            && self.damaged.is_some()
            && self.damaged == self.problem
    }

    /// True for a run `ripcord cleanup` started.
    pub fn is_cleanup(&self) -> bool {
        self.playbook == CLEANUP_PLAYBOOK
    }

    /// True when the run has no finish record.
    pub fn unfinished(&self) -> bool {
        self.outcome.is_none()
    }

    /// The runs a cleanup run reverted (its `cleanupOf` parameter).
    pub fn cleanup_of(&self) -> Vec<String> {
        match self.params.get("cleanupOf") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => s
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|p| p.trim().trim_matches('"').to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// True when the selection includes this run (for one run: also the cleanups of it).
    pub fn matches(&self, selection: &Selection) -> bool {
        match selection {
            Selection::Run(id) => self.run_id == *id || self.cleanup_of().contains(id),
            Selection::Incident(id) => self.incident.as_deref() == Some(id.as_str()),
            Selection::All => true,
        }
    }
}

/// Builds a [`RunView`] from a journal's entries.
pub fn from_entries(run_id: &str, path: &Path, entries: Vec<Entry>) -> RunView {
    let mut view = RunView {
        run_id: run_id.to_string(),
        playbook: String::new(),
        who: String::new(),
        trigger: String::new(),
        incident: None,
        started_at: None,
        finished_at: None,
        outcome: None,
        origin: RunOrigin::Journal {
            path: path.to_path_buf(),
        },
        touched: Vec::new(),
        params: serde_json::Map::new(),
        entries: Vec::new(),
        problem: None,
        damaged: None,
    };
    let mut intended: Vec<Touched> = Vec::new();
    let mut applied_ids: BTreeSet<(String, String)> = BTreeSet::new();
    for entry in &entries {
        match &entry.record {
            Record::RunStarted {
                run_id,
                playbook,
                trigger,
                who,
                incident,
                params,
                ..
            } => {
                view.run_id = run_id.clone();
                view.playbook = playbook.clone();
                view.trigger = trigger.clone();
                view.who = who.clone();
                view.incident = incident.clone();
                view.started_at = Some(entry.at);
                view.params = params.clone().into_iter().collect();
            }
            Record::RunResumed { .. } => {
                view.outcome = None;
                view.finished_at = None;
            }
            Record::RunFinished { outcome, .. } => {
                view.outcome = Some(*outcome);
                view.finished_at = Some(entry.at);
            }
            Record::MutationIntended { step, mutation } => intended.push(Touched {
                run_id: view.run_id.clone(),
                seq: entry.seq,
                step: step.clone(),
                mutation_id: mutation.id.clone(),
                target: mutation.target.clone(),
                description: mutation.description.clone(),
                resource_version_before: mutation.resource_version.clone(),
                resource_version_after: None,
                inverse: Some(mutation.inverse.clone()),
                problem: None,
                unconfirmed: true,
                at: Some(entry.at),
            }),
            Record::MutationApplied {
                step,
                mutation_id,
                applied,
                resource_version_before,
                inverse,
                ..
            } => {
                let description = intended
                    .iter()
                    .rev()
                    .find(|t| t.step == *step && t.mutation_id == *mutation_id)
                    .map(|t| t.description.clone())
                    .unwrap_or_else(|| mutation_id.clone());
                applied_ids.insert((step.clone(), mutation_id.clone()));
                view.touched.push(Touched {
                    run_id: view.run_id.clone(),
                    seq: entry.seq,
                    step: step.clone(),
                    mutation_id: mutation_id.clone(),
                    target: applied.target.clone(),
                    description,
                    resource_version_before: resource_version_before.clone(),
                    resource_version_after: applied.resource_version_after.clone(),
                    inverse: Some(inverse.clone()),
                    problem: None,
                    unconfirmed: false,
                    at: Some(entry.at),
                });
            }
            _ => {}
        }
    }
    // Write-ahead records never followed by their result: the write may have happened.
    for t in intended {
        if !applied_ids.contains(&(t.step.clone(), t.mutation_id.clone())) {
            view.touched.push(t);
        }
    }
    view.touched.sort_by_key(|t| t.seq);
    view.entries = entries;
    view
}

/// Reads every local run under `<state_dir>/runs`.
pub fn local_runs(state_dir: &Path) -> Result<Vec<RunView>, CleanupError> {
    let summaries = journal::list_runs(state_dir).map_err(|source| CleanupError::Journals {
        dir: state_dir.to_path_buf(),
        source: Box::new(source),
    })?;
    let mut out = Vec::new();
    for summary in summaries {
        match journal::read(&summary.journal) {
            Ok((entries, torn)) => {
                let mut view = from_entries(&summary.run_id, &summary.journal, entries);
                view.problem = torn.map(|t| t.to_string());
                out.push(view);
            }
            Err(err) => {
                // Damaged: the intact prefix says which run (and incident) it is; nothing in
                // it is trusted for reverting (see `mark_damaged`).
                let (prefix, _) = journal::read_prefix(&summary.journal);
                let mut view = from_entries(&summary.run_id, &summary.journal, prefix);
                let error = crate::errors::error_chain(&err);
                view.problem = Some(error.clone());
                view.damaged = Some(error);
                out.push(view);
            }
        }
    }
    Ok(out)
}

/// A damaged local journal with no `Run` resource to fall back on: every mutation its intact
/// prefix records is reported as not judged (nothing after the damage is known at all).
fn mark_damaged(run: &mut RunView) {
    let Some(damaged) = run.damaged.clone() else {
        return;
    };
    if !matches!(run.origin, RunOrigin::Journal { .. }) {
        return;
    }
    for t in &mut run.touched {
        t.problem = Some(format!(
            "not judged: the run's journal is damaged ({damaged}) and the cluster has no Run \
             resource for it"
        ));
    }
}

/// Builds a [`RunView`] from a `Run` resource (as JSON).
pub fn from_run_resource(object: &Value) -> Option<RunView> {
    let name = object.pointer("/metadata/name")?.as_str()?.to_string();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let spec: RunSpec = serde_json::from_value(object.get("spec")?.clone()).ok()?;
    // A status written by a newer ripcord is refused, never read as if it were ours: the run
    // is listed as damaged with nothing judged (issue 14).
    if let Some(status) = object.get("status")
        && let Err(err) =
            RunStatus::check_format_json(status, format_args!("Run {namespace}/{name}"))
    {
        let error = err.to_string();
        return Some(RunView {
            run_id: name,
            playbook: spec.playbook,
            who: spec.who,
            trigger: spec.trigger,
            incident: spec.incident,
            started_at: None,
            finished_at: None,
            outcome: None,
            origin: RunOrigin::Cluster { namespace },
            touched: Vec::new(),
            params: serde_json::Map::new(),
            entries: Vec::new(),
            problem: Some(error.clone()),
            damaged: Some(error),
        });
    }
    let status: RunStatus = object
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let parse_time =
        |s: &Option<String>| s.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let outcome = status
        .outcome
        .as_deref()
        .and_then(|o| serde_json::from_value::<Outcome>(Value::String(o.to_string())).ok());
    let mut touched = Vec::new();
    let mut seq = 0u64;
    for step in &status.steps {
        for m in &step.mutations {
            seq += 1;
            let (target, target_problem) = match parse_target(&m.target) {
                Some(t) => (t, None),
                None => (
                    ObjectRef {
                        api_version: String::new(),
                        kind: m.target.clone(),
                        namespace: None,
                        name: String::new(),
                    },
                    Some(format!("unknown kind in target {:?}", m.target)),
                ),
            };
            // Version 3: structured, or left out (`inverseOmitted`) when too large; versions 1
            // and 2: JSON text, perhaps cut. Either way a missing inverse is not judged here:
            // the machine holding the run's journal can clean it up.
            let (inverse, problem) = match m.inverse() {
                Ok(inv) => (Some(inv), target_problem),
                Err(unavailable) => (None, Some(unavailable.to_string())),
            };
            let description = describe_mutation(&m.id, inverse.as_ref());
            touched.push(Touched {
                run_id: name.clone(),
                seq,
                step: step.name.clone(),
                mutation_id: m.id.clone(),
                target,
                description,
                resource_version_before: None,
                resource_version_after: None,
                inverse,
                problem,
                unconfirmed: false,
                at: None,
            });
        }
    }
    let params = spec
        .params
        .iter()
        .map(|(k, v)| {
            let value =
                serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.clone()));
            (k.clone(), value)
        })
        .collect();
    Some(RunView {
        run_id: name,
        playbook: spec.playbook,
        who: spec.who,
        trigger: spec.trigger,
        incident: spec.incident,
        started_at: parse_time(&status.started_at),
        finished_at: parse_time(&status.finished_at),
        outcome,
        origin: RunOrigin::Cluster { namespace },
        touched,
        params,
        entries: Vec::new(),
        problem: None,
        damaged: None,
    })
}

/// A one-line description of a mutation known only from a `Run` resource (which keeps its id,
/// target and inverse, not the journal's description): the id, and for a merge-patch inverse
/// the fields as ripcord left them (`cordon/a-1: set spec.unschedulable=true`).
pub fn describe_mutation(id: &str, inverse: Option<&Inverse>) -> String {
    const MAX_FIELDS: usize = 3;
    let Some(Inverse::MergePatch { expected, .. }) = inverse else {
        return id.to_string();
    };
    let mut leaves = super::fields::leaves(expected);
    // The fields that change behaviour first; ripcord's marker labels and annotations last.
    leaves.sort_by_key(|(path, _)| path.first().is_some_and(|k| k == "metadata"));
    if leaves.is_empty() {
        return id.to_string();
    }
    let mut parts: Vec<String> = leaves
        .iter()
        .take(MAX_FIELDS)
        .map(|(path, value)| {
            format!(
                "{}={}",
                super::fields::display_path(path),
                super::fields::display_value(value)
            )
        })
        .collect();
    if leaves.len() > MAX_FIELDS {
        parts.push(format!("{} more", leaves.len() - MAX_FIELDS));
    }
    format!("{id}: set {}", parts.join(", "))
}

/// What a `Run` resource says about a run beyond its [`RunView`]: where its journal lives and
/// how far each step got. The report shows it for runs whose journal is not on this machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRunDetails {
    /// The run id (the resource's name).
    pub run_id: String,
    /// The resource's namespace.
    pub namespace: String,
    /// `Running` or `Finished` (empty when the resource has no status yet).
    pub phase: String,
    /// The status message (why the run ended as it did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the run's journal lives (`host:path`), when the status records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// The steps as the status has them (bounded by the resource's size limits).
    pub steps: Vec<StepStatus>,
    /// Steps left out of `steps` by the size bound.
    pub omitted_steps: u32,
}

/// The [`RunView`] and [`ClusterRunDetails`] of a typed `Run` resource (`None`: it has no
/// name).
pub fn from_typed_run(run: &Run) -> Option<(RunView, ClusterRunDetails)> {
    let value = serde_json::to_value(run).ok()?;
    let view = from_run_resource(&value)?;
    let status = run.status.clone().unwrap_or_default();
    let details = ClusterRunDetails {
        run_id: view.run_id.clone(),
        namespace: match &view.origin {
            RunOrigin::Cluster { namespace } => namespace.clone(),
            RunOrigin::Journal { .. } => String::new(),
        },
        phase: status.phase.to_string(),
        message: status.message,
        journal: status.journal.filter(|j| !j.is_empty()),
        steps: status.steps,
        omitted_steps: status.omitted_steps,
    };
    Some((view, details))
}

/// Parses the target string of a `Run` status (`deployment/shop/checkout`, `node/a-1`) into a
/// reference, for the kinds ripcord's actions write.
pub fn parse_target(target: &str) -> Option<ObjectRef> {
    let parts: Vec<&str> = target.split('/').collect();
    let (kind_lower, namespace, name) = match parts.as_slice() {
        [kind, name] => (*kind, None, *name),
        [kind, ns, name] => (*kind, Some(ns.to_string()), *name),
        _ => return None,
    };
    let (api_version, kind) = known_kind(kind_lower)?;
    Some(ObjectRef {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace,
        name: name.to_string(),
    })
}

/// The apiVersion and kind of a lower-cased kind name ripcord writes.
fn known_kind(lower: &str) -> Option<(&'static str, &'static str)> {
    Some(match lower {
        "deployment" => ("apps/v1", "Deployment"),
        "statefulset" => ("apps/v1", "StatefulSet"),
        "daemonset" => ("apps/v1", "DaemonSet"),
        "replicaset" => ("apps/v1", "ReplicaSet"),
        "node" => ("v1", "Node"),
        "pod" => ("v1", "Pod"),
        "service" => ("v1", "Service"),
        "configmap" => ("v1", "ConfigMap"),
        "namespace" => ("v1", "Namespace"),
        "httproute" => ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        "lease" => ("coordination.k8s.io/v1", "Lease"),
        "poddisruptionbudget" => ("policy/v1", "PodDisruptionBudget"),
        "horizontalpodautoscaler" => ("autoscaling/v2", "HorizontalPodAutoscaler"),
        _ => return None,
    })
}

/// Reads the cluster's `Run` resources (every namespace, page by page through
/// [`crate::k8s::runs::list_runs`]). A cluster without the CRD has none.
pub async fn cluster_runs(objects: &Objects) -> Result<Vec<RunView>, CleanupError> {
    use crate::k8s::K8sError;
    use crate::k8s::runs::RunListError;
    const SCOPE: &str = "runs.ripcord.dev in all namespaces";
    let runs = match crate::k8s::runs::list_runs(objects.client(), None, objects.timeout()).await {
        Ok(runs) => runs,
        // Not served: the CRD is not installed, so there are no Run resources. (A
        // transport failure is reported, not mistaken for a missing CRD.)
        Err(RunListError::CrdMissing) => return Ok(Vec::new()),
        Err(RunListError::List { source, .. }) => {
            return Err(CleanupError::Cluster {
                what: "Run resources".into(),
                source: Box::new(K8sError::Api {
                    operation: "list",
                    object: SCOPE.into(),
                    source,
                }),
            });
        }
        Err(RunListError::Timeout { after, .. }) => {
            return Err(CleanupError::Cluster {
                what: "Run resources".into(),
                source: Box::new(K8sError::Timeout {
                    operation: "list",
                    object: SCOPE.into(),
                    after,
                }),
            });
        }
    };
    Ok(runs
        .iter()
        .filter_map(|run: &Run| match serde_json::to_value(run) {
            Ok(value) => from_run_resource(&value),
            Err(err) => {
                tracing::warn!(error = %err, "cannot convert a Run resource to JSON; skipped");
                None
            }
        })
        .collect())
}

/// Every namespace's name.
pub async fn namespaces(objects: &Objects) -> Result<Vec<String>, CleanupError> {
    let kind =
        objects
            .resolve("v1", "Namespace")
            .await
            .map_err(|source| CleanupError::Cluster {
                what: "the Namespace kind".into(),
                source: Box::new(source),
            })?;
    let items = objects
        .list(&kind, None, &ListParams::default())
        .await
        .map_err(|source| CleanupError::Cluster {
            what: "namespaces".into(),
            source: Box::new(source),
        })?;
    Ok(items
        .iter()
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

/// The runs of a selection: local journals, plus the cluster's `Run` resources for runs with
/// no local journal (when `objects` is given). Sorted oldest first.
pub async fn load(
    state_dir: &Path,
    objects: Option<&Objects>,
    selection: &Selection,
) -> Result<Vec<RunView>, CleanupError> {
    // A damaged journal whose start record is lost cannot say which incident it belongs to:
    // it is kept (and reported) unless its Run resource says it is another incident's.
    let mut runs: Vec<RunView> = local_runs(state_dir)?
        .into_iter()
        .filter(|r| {
            r.matches(selection)
                || (r.damaged.is_some()
                    && r.playbook.is_empty()
                    && matches!(selection, Selection::Incident(_)))
        })
        .collect();
    if let Some(objects) = objects {
        let remote = match cluster_runs(objects).await {
            Ok(remote) => remote,
            Err(err) if runs.is_empty() => return Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read Run resources; using local journals only");
                Vec::new()
            }
        };
        for run in remote {
            match runs.iter().position(|r| r.run_id == run.run_id) {
                Some(pos) if runs[pos].damaged.is_some() => {
                    // The journal is damaged: the run's Run resource stands in for it.
                    let damaged = runs[pos].damaged.clone();
                    if run.matches(selection) {
                        let mut run = run;
                        run.problem = damaged
                            .as_ref()
                            .map(|d| format!("{d}; read from its Run resource instead"));
                        run.damaged = damaged;
                        runs[pos] = run;
                    } else {
                        runs.remove(pos);
                    }
                }
                Some(_) => {}
                None if run.matches(selection) => runs.push(run),
                None => {}
            }
        }
    }
    for run in &mut runs {
        mark_damaged(run);
    }
    sort_runs(&mut runs);
    Ok(runs)
}

/// Sorts runs oldest first (start time, then id).
pub fn sort_runs(runs: &mut [RunView]) {
    runs.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{Applied, Mutation};
    use serde_json::json;

    fn node(name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: None,
            name: name.into(),
        }
    }

    fn mutation(id: &str, target: ObjectRef) -> Mutation {
        Mutation {
            id: id.into(),
            target,
            description: format!("cordon {id}"),
            diff: String::new(),
            pre_image: json!({}),
            resource_version: Some("5".into()),
            request: json!({}),
            inverse: Inverse::MergePatch {
                patch: json!({"spec": {"unschedulable": null}}),
                expected: json!({"spec": {"unschedulable": true}}),
            },
        }
    }

    fn entry(seq: u64, record: Record) -> Entry {
        Entry {
            seq,
            at: jiff::Timestamp::UNIX_EPOCH,
            record,
        }
    }

    #[test]
    fn applied_and_unconfirmed_mutations_are_collected() {
        let a = mutation("cordon/a", node("a"));
        let b = mutation("cordon/b", node("b"));
        let entries = vec![
            entry(
                1,
                Record::RunStarted {
                    run_id: "r-20261125-110000-aaaa".into(),
                    playbook: "zone-failout".into(),
                    trigger: "cli".into(),
                    who: "alice".into(),
                    incident: Some("INC-7".into()),
                    params: Default::default(),
                    plan: json!({}),
                },
            ),
            entry(
                2,
                Record::MutationIntended {
                    step: "s".into(),
                    mutation: a.clone(),
                },
            ),
            entry(
                3,
                Record::MutationApplied {
                    step: "s".into(),
                    mutation_id: a.id.clone(),
                    applied: Applied {
                        id: a.id.clone(),
                        target: a.target.clone(),
                        resource_version_after: Some("6".into()),
                    },
                    resource_version_before: Some("5".into()),
                    inverse: a.inverse.clone(),
                    recovered: false,
                },
            ),
            entry(
                4,
                Record::MutationIntended {
                    step: "s".into(),
                    mutation: b.clone(),
                },
            ),
        ];
        let view = from_entries("x", Path::new("/j"), entries);
        assert_eq!(view.run_id, "r-20261125-110000-aaaa");
        assert_eq!(view.incident.as_deref(), Some("INC-7"));
        assert!(view.unfinished());
        assert_eq!(view.touched.len(), 2);
        assert_eq!(view.touched[0].description, "cordon cordon/a");
        assert_eq!(view.touched[0].resource_version_after.as_deref(), Some("6"));
        assert!(!view.touched[0].unconfirmed);
        assert!(view.touched[1].unconfirmed);
        assert!(view.matches(&Selection::Incident("INC-7".into())));
        assert!(!view.matches(&Selection::Incident("INC-8".into())));
    }

    #[test]
    fn run_resources_become_views() {
        let inverse = serde_json::to_string(&Inverse::MergePatch {
            patch: json!({"spec": {"replicas": 3}}),
            expected: json!({"spec": {"replicas": 6}}),
        })
        .unwrap();
        let object = json!({
            "metadata": {"name": "r-20261125-110000-bbbb", "namespace": "shop"},
            "spec": {"playbook": "p", "trigger": "cli", "who": "bob", "incident": "INC-1",
                     "params": {"cleanupOf": "[\"r-1\",\"r-2\"]"}},
            "status": {"phase": "Finished", "outcome": "succeeded",
                       "startedAt": "2026-11-25T11:00:00Z",
                       "steps": [{"name": "scale", "phase": "Verified", "mutations": [
                           {"id": "scale/web", "target": "deployment/shop/web", "inverse": inverse},
                           {"id": "cut", "target": "node/a", "inverse": "{\"type\":\"mergePa…"}]}]}
        });
        let view = from_run_resource(&object).unwrap();
        assert_eq!(view.outcome, Some(Outcome::Succeeded));
        assert_eq!(view.touched.len(), 2);
        assert_eq!(view.touched[0].target.api_version, "apps/v1");
        assert_eq!(view.touched[0].target.namespace.as_deref(), Some("shop"));
        assert!(view.touched[0].inverse.is_some());
        assert!(view.touched[1].inverse.is_none());
        assert!(view.touched[1].problem.is_some());
        assert_eq!(
            view.cleanup_of(),
            vec!["r-1".to_string(), "r-2".to_string()]
        );
    }

    #[test]
    fn descriptions_show_what_ripcord_set_behaviour_first() {
        let inverse = Inverse::MergePatch {
            patch: json!({}),
            expected: json!({"metadata": {"labels": {"ripcord.dev/cordoned-by": "r-1"}},
                             "spec": {"unschedulable": true}}),
        };
        assert_eq!(
            describe_mutation("cordon/a", Some(&inverse)),
            "cordon/a: set spec.unschedulable=true, metadata.labels[\"ripcord.dev/cordoned-by\"]=r-1"
        );
        let many = Inverse::MergePatch {
            patch: json!({}),
            expected: json!({"spec": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}}),
        };
        assert_eq!(
            describe_mutation("patch/x", Some(&many)),
            "patch/x: set spec.a=1, spec.b=2, spec.c=3, 2 more"
        );
        let rollback = Inverse::NotReverted {
            reason: "rolling forward would restore the bad release".into(),
            roll_forward: None,
        };
        assert_eq!(
            describe_mutation("rollback/shop/web", Some(&rollback)),
            "rollback/shop/web"
        );
        assert_eq!(describe_mutation("cut", None), "cut");
    }

    #[test]
    fn issue14_v3_run_resources_give_structured_inverses_and_name_omitted_ones() {
        let object = json!({
            "metadata": {"name": "r-20261203-060000-bbbb", "namespace": "shop"},
            "spec": {"playbook": "p", "trigger": "cli", "who": "bob"},
            "status": {"formatVersion": 3, "phase": "Finished", "outcome": "succeeded",
                       "steps": [{"name": "scale", "phase": "Verified", "mutations": [
                           {"id": "scale/web", "target": "deployment/shop/web",
                            "inverse": {"type": "mergePatch", "patch": {"spec": {"replicas": 3}},
                                        "expected": {"spec": {"replicas": 6}}}},
                           {"id": "big", "target": "node/a", "inverseOmitted": true}]}]}
        });
        let view = from_run_resource(&object).unwrap();
        assert!(view.damaged.is_none(), "{:?}", view.damaged);
        assert_eq!(view.touched.len(), 2);
        assert_eq!(
            view.touched[0].inverse,
            Some(Inverse::MergePatch {
                patch: json!({"spec": {"replicas": 3}}),
                expected: json!({"spec": {"replicas": 6}}),
            })
        );
        assert_eq!(
            view.touched[0].description,
            "scale/web: set spec.replicas=6"
        );
        assert!(view.touched[1].inverse.is_none());
        let problem = view.touched[1].problem.as_deref().unwrap();
        assert!(problem.contains("left out (inverseOmitted)"), "{problem}");
        assert!(
            problem.contains("the machine holding the run's journal"),
            "{problem}"
        );
        // A version this build does not read is refused, naming it.
        let mut newer = object.clone();
        newer["status"]["formatVersion"] = 4.into();
        let view = from_run_resource(&newer).unwrap();
        assert!(view.touched.is_empty());
        assert!(
            view.damaged
                .unwrap()
                .contains("Run status format version 4")
        );
    }

    #[test]
    fn typed_runs_keep_where_the_journal_lives_and_the_steps() {
        let mut run = Run::new(
            "r-20261125-110000-cccc",
            RunSpec {
                playbook: "p".into(),
                params: Default::default(),
                trigger: "api".into(),
                who: "carol".into(),
                incident: Some("INC-3".into()),
            },
        );
        run.metadata.namespace = Some("ops".into());
        run.status = Some(RunStatus {
            format_version: crate::journal::FormatVersion::V1,
            phase: "Finished".into(),
            steps: vec![StepStatus {
                name: "scale".into(),
                phase: "Failed".into(),
                mutations: vec![crate::k8s::runs::MutationStatus::new(
                    "scale/shop/web",
                    "deployment/shop/web",
                    &Inverse::MergePatch {
                        patch: json!({"spec": {"replicas": 3}}),
                        expected: json!({"spec": {"replicas": 6}}),
                    },
                )],
                omitted_mutations: 0,
                error: Some("rollout stuck".into()),
            }],
            omitted_steps: 2,
            outcome: Some("failed".into()),
            message: Some("step scale failed".into()),
            started_at: Some("2026-11-25T11:00:00Z".into()),
            finished_at: Some("2026-11-25T11:05:00Z".into()),
            journal: Some("laptop-7:/home/carol/.local/state/ripcord/runs/x/journal.jsonl".into()),
            stopped_by: None,
            seal: None,
        });
        let (view, details) = from_typed_run(&run).unwrap();
        assert_eq!(view.run_id, "r-20261125-110000-cccc");
        assert_eq!(view.outcome, Some(Outcome::Failed));
        assert_eq!(
            view.origin,
            RunOrigin::Cluster {
                namespace: "ops".into()
            }
        );
        assert_eq!(
            view.touched[0].description,
            "scale/shop/web: set spec.replicas=6"
        );
        assert_eq!(
            view.finished_at.map(|t| t.to_string()).as_deref(),
            Some("2026-11-25T11:05:00Z")
        );
        assert_eq!(details.namespace, "ops");
        assert_eq!(details.phase, "Finished");
        assert_eq!(details.steps[0].phase, crate::k8s::runs::StepPhase::Failed);
        assert_eq!(details.omitted_steps, 2);
        assert_eq!(details.steps[0].error.as_deref(), Some("rollout stuck"));
        assert!(details.journal.as_deref().unwrap().starts_with("laptop-7:"));
        assert!(view.matches(&Selection::Incident("INC-3".into())));
    }

    #[test]
    fn targets_parse_for_known_kinds_only() {
        let t = parse_target("httproute/shop/web").unwrap();
        assert_eq!(t.kind, "HTTPRoute");
        assert_eq!(parse_target("node/a-1").unwrap().namespace, None);
        assert!(parse_target("widget/x").is_none());
        assert!(parse_target("a/b/c/d").is_none());
    }
}
