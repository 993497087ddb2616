//! Deployments: reading, revision history, the `kubectl rollout undo` patch, rollout status by
//! kubectl's rules, scale, pause/resume, and ripcord's known-good marks.
//!
//! # Revisions
//!
//! The revision history of a Deployment is the set of ReplicaSets it controls (owner reference
//! with `controller: true` and the Deployment's uid), each carrying
//! `deployment.kubernetes.io/revision`. When a rollback reuses an old ReplicaSet, the Deployment
//! controller renumbers it to the next revision, exactly as `kubectl rollout history` shows.
//!
//! # Rollback
//!
//! [`rollback_patch`] builds the JSON patch `kubectl rollout undo` sends: replace
//! `/spec/template` with the target ReplicaSet's template minus the `pod-template-hash` label,
//! and replace `/metadata/annotations` with the Deployment's "skipped" annotations (revision,
//! last-applied…) plus the ReplicaSet's other annotations. Deviation from kubectl, documented:
//! ripcord's own `ripcord.dev/*` annotations are kept from the Deployment (never copied back
//! from a ReplicaSet) and a [`RollbackMarker`] is added in the same patch, so a resumed or
//! repeated rollback recognises its own work.
//!
//! # Known-good
//!
//! `ripcord mark-good deployment/X` annotates the Deployment with [`KNOWN_GOOD_REVISION`] and
//! [`KNOWN_GOOD_HASH`] (the hash survives the renumbering of a revision, so it is preferred).
//! A verified healthy rollout (`deployment.waitRolledOut`) annotates the *ReplicaSet* running
//! the verified template with [`VERIFIED_HEALTHY`] — once, never rewritten — so it adds no
//! write to the Deployment. The known-good revision is the operator's explicit mark when
//! there is one, else the newest ReplicaSet verified healthy.

use super::{K8sError, call, describe, marked_merge_patch, patch_params};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ListParams, Patch};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The annotation holding a ReplicaSet's (and a Deployment's) revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The label the Deployment controller adds to each ReplicaSet's pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision ripcord considers known-good (a decimal string).
pub const KNOWN_GOOD_REVISION: &str = "ripcord.dev/known-good-revision";
/// The `pod-template-hash` of the known-good revision (stable across renumbering).
pub const KNOWN_GOOD_HASH: &str = "ripcord.dev/known-good-template-hash";
/// On a ReplicaSet: the run that verified its rollout healthy (written once).
pub const VERIFIED_HEALTHY: &str = "ripcord.dev/verified-healthy";
/// The marker a rollback leaves on the Deployment (JSON of [`RollbackMarker`]).
pub const ROLLBACK_MARKER: &str = "ripcord.dev/rollback";
/// `kubectl rollout undo` keeps these Deployment annotations and never copies them from the
/// ReplicaSet (`annotationsToSkip` in kubectl's `rollback.go`).
pub const ANNOTATIONS_TO_SKIP: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// One revision of a Deployment: a ReplicaSet it controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// The revision number.
    pub revision: i64,
    /// The ReplicaSet's name.
    pub replica_set: String,
    /// The ReplicaSet's `pod-template-hash` label.
    pub template_hash: Option<String>,
    /// The pod template without the `pod-template-hash` label (JSON).
    pub template: Value,
    /// The ReplicaSet's annotations.
    pub annotations: BTreeMap<String, String>,
    /// `kubernetes.io/change-cause`, if set.
    pub change_cause: Option<String>,
    /// `status.replicas` of the ReplicaSet.
    pub replicas: i32,
    /// `status.readyReplicas` of the ReplicaSet.
    pub ready_replicas: i32,
    /// The run that verified this revision healthy, if any ([`VERIFIED_HEALTHY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_healthy: Option<String>,
}

/// Which revision a rollback restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevisionChoice {
    /// The revision before the newest one (`kubectl rollout undo`).
    Previous,
    /// A given revision number (`--to-revision N`).
    Number(i64),
    /// The revision ripcord marked known-good.
    KnownGood,
}

impl std::fmt::Display for RevisionChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevisionChoice::Previous => write!(f, "previous"),
            RevisionChoice::Number(n) => write!(f, "revision {n}"),
            RevisionChoice::KnownGood => write!(f, "known-good"),
        }
    }
}

/// What a rollback records on the Deployment (annotation [`ROLLBACK_MARKER`]), in the same
/// patch that changes the template. Derived from the run id and step, never the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackMarker {
    /// The run that rolled back.
    pub run: String,
    /// The step that rolled back.
    pub step: String,
    /// What was asked (`previous`, `revision 6`, `known-good`).
    pub choice: RevisionChoice,
    /// The revision rolled back from (the newest at the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<i64>,
    /// Its `pod-template-hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_hash: Option<String>,
    /// The revision restored (its number before the controller renumbers it).
    pub to_revision: i64,
    /// Its `pod-template-hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_hash: Option<String>,
}

/// Rollout state by `kubectl rollout status` rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    /// The rollout finished: all replicas updated and available, no old ones left.
    Complete {
        /// kubectl's message.
        message: String,
    },
    /// Still rolling out.
    Progressing {
        /// kubectl's "Waiting for…" message.
        message: String,
    },
    /// `ProgressDeadlineExceeded`.
    Failed {
        /// kubectl's message.
        message: String,
    },
}

impl RolloutStatus {
    /// The message, whatever the state.
    pub fn message(&self) -> &str {
        match self {
            RolloutStatus::Complete { message }
            | RolloutStatus::Progressing { message }
            | RolloutStatus::Failed { message } => message,
        }
    }
}

/// How a bounded rollout wait ended.
#[derive(Debug, Clone)]
pub enum RolloutWait {
    /// The rollout completed.
    Complete(Box<Deployment>),
    /// The rollout failed (progress deadline exceeded).
    Failed {
        /// kubectl's message.
        message: String,
    },
    /// The bound passed first.
    TimedOut {
        /// The last observed status message.
        last: String,
    },
}

/// The result of marking a revision known-good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownGoodMark {
    /// The revision marked.
    pub revision: i64,
    /// Its `pod-template-hash`.
    pub hash: Option<String>,
    /// False when the Deployment already carried this mark (nothing was written).
    pub changed: bool,
}

/// Deployment helpers bound to one namespace and one per-call timeout.
#[derive(Clone)]
pub struct Deployments {
    api: Api<Deployment>,
    replica_sets: Api<ReplicaSet>,
    namespace: String,
    timeout: Duration,
}

// === impl Deployments ===

impl Deployments {
    /// Helpers for the Deployments of `namespace`, each call bounded by `call_timeout`.
    pub fn new(client: Client, namespace: &str, call_timeout: Duration) -> Deployments {
        Deployments {
            api: Api::namespaced(client.clone(), namespace),
            replica_sets: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            timeout: call_timeout,
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `deployment/NS/NAME`, for messages.
    pub fn describe(&self, name: &str) -> String {
        describe("Deployment", Some(&self.namespace), name)
    }

    /// Reads a Deployment.
    pub async fn get(&self, name: &str) -> Result<Deployment, K8sError> {
        call(
            "get",
            &self.describe(name),
            self.timeout,
            self.api.get(name),
        )
        .await
    }

    /// The Deployment's revision history, oldest first (ReplicaSets it controls that carry a
    /// revision number).
    pub async fn revision_history(
        &self,
        deployment: &Deployment,
    ) -> Result<Vec<Revision>, K8sError> {
        self.revision_history_and_replica_sets(deployment)
            .await
            .map(|(history, _)| history)
    }

    /// [`Deployments::revision_history`], with the ReplicaSets the Deployment controls as
    /// read (one LIST for both).
    pub async fn revision_history_and_replica_sets(
        &self,
        deployment: &Deployment,
    ) -> Result<(Vec<Revision>, Vec<ReplicaSet>), K8sError> {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let uid = deployment.metadata.uid.clone().unwrap_or_default();
        let mut params = ListParams::default();
        if let Some(selector) = match_labels_selector(deployment) {
            params = params.labels(&selector);
        }
        let list = call(
            "list replicasets of",
            &self.describe(&name),
            self.timeout,
            self.replica_sets.list(&params),
        )
        .await?;
        let mut history = Vec::new();
        let mut owned = Vec::new();
        for rs in list.items {
            let controlled = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid && o.kind == "Deployment");
            if !controlled {
                continue;
            }
            if let Some(revision) = revision_from_rs(&rs)? {
                history.push(revision);
            }
            owned.push(rs);
        }
        history.sort_by_key(|r| r.revision);
        Ok((history, owned))
    }

    /// Applies a JSON patch (RFC 6902) to a Deployment.
    pub async fn patch_json(&self, name: &str, ops: &Value) -> Result<Deployment, K8sError> {
        let object = self.describe(name);
        let patch: json_patch::Patch = serde_json::from_value(super::marked_json_patch(ops))
            .map_err(|source| K8sError::Serde {
                object: object.clone(),
                source,
            })?;
        call(
            "patch",
            &object,
            self.timeout,
            self.api
                .patch(name, &patch_params(), &Patch::Json::<()>(patch)),
        )
        .await
    }

    /// Applies a JSON merge patch (RFC 7386) to a Deployment.
    pub async fn patch_merge(&self, name: &str, patch: &Value) -> Result<Deployment, K8sError> {
        call(
            "patch",
            &self.describe(name),
            self.timeout,
            self.api.patch(
                name,
                &patch_params(),
                &Patch::Merge(marked_merge_patch(patch)),
            ),
        )
        .await
    }

    /// Sets `spec.replicas` through the `scale` subresource (like `kubectl scale`). Returns the
    /// resourceVersion after the write. Inside a marked mutation the write is a merge patch of
    /// the Deployment instead, so that the marker annotation is set in the same write.
    pub async fn scale(&self, name: &str, replicas: i32) -> Result<Option<String>, K8sError> {
        let patch = json!({ "spec": { "replicas": replicas } });
        if super::mutation_marker().is_some() {
            let written = self.patch_merge(name, &patch).await?;
            return Ok(written.metadata.resource_version);
        }
        let scale = call(
            "scale",
            &self.describe(name),
            self.timeout,
            self.api
                .patch_scale(name, &patch_params(), &Patch::Merge(&patch)),
        )
        .await?;
        Ok(scale.metadata.resource_version)
    }

    /// Sets `spec.paused`.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<Deployment, K8sError> {
        self.patch_merge(name, &json!({ "spec": { "paused": paused } }))
            .await
    }

    /// Marks `revision` (or, when `None`, the revision matching the current template) as
    /// known-good. Writes nothing when the mark is already there.
    pub async fn mark_known_good(
        &self,
        name: &str,
        revision: Option<i64>,
    ) -> Result<KnownGoodMark, K8sError> {
        let deployment = self.get(name).await?;
        let history = self.revision_history(&deployment).await?;
        let object = self.describe(name);
        let target = match revision {
            Some(n) => {
                history
                    .iter()
                    .find(|r| r.revision == n)
                    .ok_or_else(|| K8sError::Invalid {
                        object: object.clone(),
                        reason: format!(
                            "revision {n} not found (known: {})",
                            list_revisions(&history)
                        ),
                    })?
            }
            None => current_revision(&deployment, &history).ok_or_else(|| K8sError::Invalid {
                object: object.clone(),
                reason: "no ReplicaSet matches the current template yet; wait for the rollout \
                         or name a revision"
                    .into(),
            })?,
        };
        let annotations = deployment.metadata.annotations.clone().unwrap_or_default();
        let revision_value = target.revision.to_string();
        let already = annotations.get(KNOWN_GOOD_REVISION) == Some(&revision_value)
            && annotations.get(KNOWN_GOOD_HASH) == target.template_hash.as_ref();
        if !already {
            let patch = json!({ "metadata": { "annotations": {
                KNOWN_GOOD_REVISION: revision_value,
                KNOWN_GOOD_HASH: target.template_hash,
            }}});
            self.patch_merge(name, &patch).await?;
            tracing::info!(deployment = %object, revision = target.revision, "marked known-good");
        }
        Ok(KnownGoodMark {
            revision: target.revision,
            hash: target.template_hash.clone(),
            changed: !already,
        })
    }

    /// Records that the revision running the Deployment's current template was verified
    /// healthy by `run` (annotation [`VERIFIED_HEALTHY`] on its ReplicaSet). Writes only when
    /// the ReplicaSet carries no such mark yet; returns the revision when it wrote.
    pub async fn mark_verified_healthy(
        &self,
        deployment: &Deployment,
        run: &str,
    ) -> Result<Option<i64>, K8sError> {
        let history = self.revision_history(deployment).await?;
        let Some(current) = current_revision(deployment, &history) else {
            return Ok(None);
        };
        if current.verified_healthy.is_some() {
            return Ok(None);
        }
        let patch = json!({ "metadata": { "annotations": { VERIFIED_HEALTHY: run } } });
        call(
            "patch",
            &describe("ReplicaSet", Some(&self.namespace), &current.replica_set),
            self.timeout,
            self.replica_sets
                .patch(&current.replica_set, &patch_params(), &Patch::Merge(&patch)),
        )
        .await?;
        Ok(Some(current.revision))
    }

    /// Waits until the rollout completes or fails (kubectl's rules), at most `bound`. Watches
    /// the Deployment (one list + one watch); `on_progress` sees every new status message.
    pub async fn wait_rolled_out(
        &self,
        name: &str,
        bound: Duration,
        on_progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<RolloutWait, K8sError> {
        let object = self.describe(name);
        let mut last = String::from("waiting for the first observation");
        let waited = tokio::time::timeout(bound, async {
            let mut stream =
                std::pin::pin!(watcher::watch_object(self.api.clone(), name).default_backoff());
            let mut last_message = String::new();
            while let Some(item) = stream.next().await {
                let deployment = match item {
                    Ok(Some(deployment)) => deployment,
                    Ok(None) => return Err(K8sError::NotFound { object: object.clone() }),
                    Err(err) => {
                        tracing::warn!(deployment = %object, error = %err, "rollout watch failed; re-reading");
                        self.get(name).await?
                    }
                };
                if deployment.metadata.name.as_deref() != Some(name) {
                    // A server ignoring the name field selector: not our object.
                    continue;
                }
                let status = rollout_status(&deployment);
                if status.message() != last_message {
                    last_message = status.message().to_string();
                    on_progress(&last_message);
                }
                match status {
                    RolloutStatus::Complete { .. } => {
                        return Ok(RolloutWait::Complete(Box::new(deployment)));
                    }
                    RolloutStatus::Failed { message } => return Ok(RolloutWait::Failed { message }),
                    RolloutStatus::Progressing { message } => last = message,
                }
            }
            Err(K8sError::Invalid {
                object: object.clone(),
                reason: "the watch ended unexpectedly".into(),
            })
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Ok(RolloutWait::TimedOut { last }),
        }
    }
}

// === free functions (pure) ===

/// The `matchLabels` of the Deployment's selector as a label selector string, when the
/// selector has no `matchExpressions` (then the caller lists everything and filters by owner).
fn match_labels_selector(deployment: &Deployment) -> Option<String> {
    let selector = deployment.spec.as_ref()?.selector.clone();
    if selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    let labels = selector.match_labels?;
    if labels.is_empty() {
        return None;
    }
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The revision number in an annotation map, if present and valid.
pub fn revision_of(annotations: Option<&BTreeMap<String, String>>) -> Option<i64> {
    annotations?.get(REVISION_ANNOTATION)?.trim().parse().ok()
}

fn revision_from_rs(rs: &ReplicaSet) -> Result<Option<Revision>, K8sError> {
    let Some(revision) = revision_of(rs.metadata.annotations.as_ref()) else {
        return Ok(None);
    };
    let name = rs.metadata.name.clone().unwrap_or_default();
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .map(serde_json::to_value)
        .transpose()
        .map_err(|source| K8sError::Serde {
            object: describe("ReplicaSet", rs.metadata.namespace.as_deref(), &name),
            source,
        })?
        .unwrap_or(Value::Null);
    let template_hash = rs
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_TEMPLATE_HASH))
        .cloned()
        .or_else(|| {
            template
                .pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let annotations = rs.metadata.annotations.clone().unwrap_or_default();
    let status = rs.status.as_ref();
    Ok(Some(Revision {
        revision,
        replica_set: name,
        template_hash,
        template: strip_hash_label(template),
        change_cause: annotations.get(CHANGE_CAUSE).cloned(),
        verified_healthy: annotations.get(VERIFIED_HEALTHY).cloned(),
        annotations,
        replicas: status.map(|s| s.replicas).unwrap_or(0),
        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
    }))
}

/// Removes the `pod-template-hash` label from a pod template (JSON).
pub fn strip_hash_label(mut template: Value) -> Value {
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    template
}

/// Drops nulls, empty objects and empty arrays recursively, the way
/// `apiequality.Semantic.DeepEqual` treats nil and empty as equal.
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let v = normalize(v);
                let empty = match &v {
                    Value::Null => true,
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), v);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// kubectl's `equalIgnoreHash`: two pod templates are equal once the `pod-template-hash` label
/// is removed from both (nil and empty treated alike).
pub fn templates_equal(a: &Value, b: &Value) -> bool {
    normalize(&strip_hash_label(a.clone())) == normalize(&strip_hash_label(b.clone()))
}

/// The Deployment's pod template as JSON (without the hash label).
pub fn deployment_template(deployment: &Deployment) -> Value {
    deployment
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.template).ok())
        .map(strip_hash_label)
        .unwrap_or(Value::Null)
}

/// The revision whose template equals the Deployment's current template (the newest such).
pub fn current_revision<'a>(
    deployment: &Deployment,
    history: &'a [Revision],
) -> Option<&'a Revision> {
    let template = deployment_template(deployment);
    history
        .iter()
        .filter(|r| templates_equal(&r.template, &template))
        .max_by_key(|r| r.revision)
}

/// The newest revision of the history.
pub fn latest_revision(history: &[Revision]) -> Option<&Revision> {
    history.iter().max_by_key(|r| r.revision)
}

/// "5, 6, 7" for messages.
pub fn list_revisions(history: &[Revision]) -> String {
    if history.is_empty() {
        return "none".into();
    }
    let mut numbers: Vec<i64> = history.iter().map(|r| r.revision).collect();
    numbers.sort_unstable();
    numbers
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rollback marker on a Deployment, if any (and parseable).
pub fn rollback_marker(deployment: &Deployment) -> Option<RollbackMarker> {
    let raw = deployment
        .metadata
        .annotations
        .as_ref()?
        .get(ROLLBACK_MARKER)?;
    serde_json::from_str(raw).ok()
}

/// The revision a rollback restores, and why when that is not kubectl's choice.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionSelection<'a> {
    /// The revision to restore.
    pub revision: &'a Revision,
    /// Newer revisions passed over, each with the reason (`Previous` only).
    pub skipped: Vec<(i64, String)>,
}

impl RevisionSelection<'_> {
    /// One clause for people when revisions were skipped ("skipped revision 6: …"), else
    /// `None`.
    pub fn explanation(&self) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        Some(format!(
            "revision {} is the newest earlier revision that was fully available; skipped {}",
            self.revision.revision,
            self.skipped
                .iter()
                .map(|(n, why)| format!("revision {n} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// True when ripcord has evidence that `r` was fully available once: it is marked known-good
/// on the Deployment or verified healthy by a run, or all its current pods are Ready.
fn known_available(deployment: &Deployment, r: &Revision) -> bool {
    let annotations = deployment.metadata.annotations.clone().unwrap_or_default();
    let known_good = annotations
        .get(KNOWN_GOOD_HASH)
        .is_some_and(|h| r.template_hash.as_ref() == Some(h))
        || annotations
            .get(KNOWN_GOOD_REVISION)
            .is_some_and(|n| n.trim() == r.revision.to_string());
    known_good || r.verified_healthy.is_some() || (r.replicas > 0 && r.ready_replicas >= r.replicas)
}

/// Chooses the revision to restore, like `kubectl rollout undo` (`deploymentRevision`):
/// `Previous` is the second-newest revision, `Number(n)` that revision, `KnownGood` the
/// revision named by the Deployment's known-good annotations (hash first, then number).
///
/// `Previous` skips a revision that never became fully available (two bad releases in a row):
/// one that ripcord has no evidence of availability for (a known-good or verified-healthy
/// mark, or all its current pods Ready) while an older revision still runs Ready pods — the
/// Deployment controller scales the older ReplicaSets to zero only once a newer one is
/// available, so that rollout never completed.
/// It takes the newest earlier revision without such evidence against it; the skipped ones
/// and why are in [`RevisionSelection::skipped`].
pub fn select_revision_explained<'a>(
    deployment: &Deployment,
    history: &'a [Revision],
    choice: RevisionChoice,
) -> Result<RevisionSelection<'a>, K8sError> {
    let plain = select_revision(deployment, history, choice)?;
    if choice != RevisionChoice::Previous {
        return Ok(RevisionSelection {
            revision: plain,
            skipped: Vec::new(),
        });
    }
    let mut older: Vec<&Revision> = history.iter().collect();
    older.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let mut skipped = Vec::new();
    for (i, candidate) in older.iter().enumerate().skip(1) {
        if known_available(deployment, candidate) {
            return Ok(RevisionSelection {
                revision: candidate,
                skipped,
            });
        }
        let serving = older[i + 1..].iter().find(|o| o.ready_replicas > 0);
        match serving {
            Some(o) => skipped.push((
                candidate.revision,
                format!(
                    "it never became available: the older revision {} still runs {} Ready \
                     pod(s), so the rollout to {} never completed",
                    o.revision, o.ready_replicas, candidate.revision
                ),
            )),
            None => {
                return Ok(RevisionSelection {
                    revision: candidate,
                    skipped,
                });
            }
        }
    }
    // Every candidate was passed over (cannot happen: the oldest has nothing older); keep
    // kubectl's choice.
    Ok(RevisionSelection {
        revision: plain,
        skipped: Vec::new(),
    })
}

/// Chooses the revision to restore, like `kubectl rollout undo` (`deploymentRevision`):
/// `Previous` is the second-newest revision, `Number(n)` that revision, `KnownGood` the
/// revision named by the Deployment's known-good annotations (hash first, then number).
/// (Rollbacks use [`select_revision_explained`], which skips revisions that never became
/// available.)
pub fn select_revision<'a>(
    deployment: &Deployment,
    history: &'a [Revision],
    choice: RevisionChoice,
) -> Result<&'a Revision, K8sError> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let object = describe(
        "Deployment",
        deployment.metadata.namespace.as_deref(),
        &name,
    );
    match choice {
        RevisionChoice::Number(n) if n <= 0 => Err(K8sError::Invalid {
            object,
            reason: format!("revision must be positive, got {n}"),
        }),
        RevisionChoice::Number(n) => {
            history
                .iter()
                .find(|r| r.revision == n)
                .ok_or_else(|| K8sError::Invalid {
                    object,
                    reason: format!(
                        "unable to find the specified revision {n} (known revisions: {})",
                        list_revisions(history)
                    ),
                })
        }
        RevisionChoice::Previous => {
            let mut sorted: Vec<&Revision> = history.iter().collect();
            sorted.sort_by_key(|r| std::cmp::Reverse(r.revision));
            sorted.get(1).copied().ok_or_else(|| K8sError::Invalid {
                object,
                reason: format!(
                    "no rollout history found for deployment {name:?}: nothing to roll back to"
                ),
            })
        }
        RevisionChoice::KnownGood => {
            let annotations = deployment.metadata.annotations.clone().unwrap_or_default();
            let by_hash = annotations
                .get(KNOWN_GOOD_HASH)
                .and_then(|h| history.iter().find(|r| r.template_hash.as_ref() == Some(h)));
            let by_number = annotations
                .get(KNOWN_GOOD_REVISION)
                .and_then(|n| n.trim().parse::<i64>().ok())
                .and_then(|n| history.iter().find(|r| r.revision == n));
            let by_verification = history
                .iter()
                .filter(|r| r.verified_healthy.is_some())
                .max_by_key(|r| r.revision);
            by_hash.or(by_number).or(by_verification).ok_or_else(|| K8sError::Invalid {
                object,
                reason: format!(
                    "no known-good revision is recorded or it is no longer in the history; mark \
                     one with `ripcord mark-good deployment/{name}` or pass --to-revision"
                ),
            })
        }
    }
}

/// The annotations `kubectl rollout undo` sets, plus ripcord's own (kept from the Deployment)
/// and the rollback marker.
pub fn rollback_annotations(
    deployment: &Deployment,
    target: &Revision,
    marker: &RollbackMarker,
) -> BTreeMap<String, String> {
    let current = deployment.metadata.annotations.clone().unwrap_or_default();
    let mut annotations = BTreeMap::new();
    for (k, v) in &current {
        if ANNOTATIONS_TO_SKIP.contains(&k.as_str()) || k.starts_with("ripcord.dev/") {
            annotations.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &target.annotations {
        if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) && !k.starts_with("ripcord.dev/") {
            annotations.insert(k.clone(), v.clone());
        }
    }
    if let Ok(raw) = serde_json::to_string(marker) {
        annotations.insert(ROLLBACK_MARKER.to_string(), raw);
    }
    annotations
}

/// The JSON patch (RFC 6902 operations) `kubectl rollout undo` sends, with ripcord's marker.
///
/// kubectl replaces `/metadata/annotations`; when the Deployment has none yet, `add` is used
/// (a `replace` of a missing member fails under RFC 6902). Unlike kubectl, the patch also sets
/// the `resourceVersion` the diff observed, which the API server takes as a precondition: if
/// another field manager changed the Deployment since (an annotation, the template), the write
/// fails with 409 and the engine diffs again instead of silently replacing their fields.
pub fn rollback_patch(
    deployment: &Deployment,
    target: &Revision,
    marker: &RollbackMarker,
) -> Value {
    let annotations_op = if deployment.metadata.annotations.is_some() {
        "replace"
    } else {
        "add"
    };
    let mut ops = vec![
        json!({ "op": "replace", "path": "/spec/template", "value": target.template }),
        json!({ "op": annotations_op, "path": "/metadata/annotations",
          "value": rollback_annotations(deployment, target, marker) }),
    ];
    if let Some(rv) = &deployment.metadata.resource_version {
        ops.push(json!({ "op": "replace", "path": "/metadata/resourceVersion", "value": rv }));
    }
    Value::Array(ops)
}

/// The JSON patch that would restore the Deployment as it is now (template and annotations):
/// a roll-forward on explicit request.
pub fn restore_patch(deployment: &Deployment) -> Value {
    json!([
        { "op": "replace", "path": "/spec/template", "value": deployment_template(deployment) },
        { "op": "add", "path": "/metadata/annotations",
          "value": deployment.metadata.annotations.clone().unwrap_or_default() },
    ])
}

/// The rollout status by `kubectl rollout status` rules (`DeploymentStatusViewer`).
pub fn rollout_status(deployment: &Deployment) -> RolloutStatus {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = deployment.status.as_ref() else {
        return RolloutStatus::Progressing {
            message: "Waiting for deployment spec update to be observed...".into(),
        };
    };
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutStatus::Progressing {
            message: "Waiting for deployment spec update to be observed...".into(),
        };
    }
    let timed_out = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if timed_out {
        return RolloutStatus::Failed {
            message: format!("deployment {name:?} exceeded its progress deadline"),
        };
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if let Some(desired) = deployment.spec.as_ref().and_then(|s| s.replicas)
        && updated < desired
    {
        return RolloutStatus::Progressing {
            message: format!(
                "Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new replicas have been updated..."
            ),
        };
    }
    if replicas > updated {
        return RolloutStatus::Progressing {
            message: format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
        };
    }
    if available < updated {
        return RolloutStatus::Progressing {
            message: format!(
                "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        };
    }
    RolloutStatus::Complete {
        message: format!("deployment {name:?} successfully rolled out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(value: Value) -> Deployment {
        serde_json::from_value(value).unwrap()
    }

    fn revision(n: i64, hash: &str, image: &str) -> Revision {
        Revision {
            revision: n,
            replica_set: format!("web-{hash}"),
            template_hash: Some(hash.into()),
            template: json!({"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": image}]}}),
            annotations: BTreeMap::from([
                (REVISION_ANNOTATION.to_string(), n.to_string()),
                (CHANGE_CAUSE.to_string(), format!("deploy {image}")),
            ]),
            change_cause: Some(format!("deploy {image}")),
            replicas: 0,
            ready_replicas: 0,
            verified_healthy: None,
        }
    }

    fn web(status: Value, generation: i64, annotations: Value) -> Deployment {
        deployment(json!({
            "metadata": {"name": "web", "namespace": "shop", "generation": generation,
                         "annotations": annotations},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:7"}]}}},
            "status": status,
        }))
    }

    #[test]
    fn rollout_status_follows_kubectl_rules() {
        let not_observed = web(json!({"observedGeneration": 1}), 2, json!({}));
        assert!(
            rollout_status(&not_observed)
                .message()
                .contains("spec update to be observed")
        );
        let updating = web(
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1}),
            2,
            json!({}),
        );
        assert!(
            rollout_status(&updating)
                .message()
                .contains("1 out of 3 new replicas")
        );
        let old_left = web(
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
            2,
            json!({}),
        );
        assert!(
            rollout_status(&old_left)
                .message()
                .contains("1 old replicas are pending")
        );
        let unavailable = web(
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
            2,
            json!({}),
        );
        assert!(
            rollout_status(&unavailable)
                .message()
                .contains("2 of 3 updated replicas")
        );
        let done = web(
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
            2,
            json!({}),
        );
        assert!(matches!(
            rollout_status(&done),
            RolloutStatus::Complete { .. }
        ));
        let deadline = web(
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                   "conditions": [{"type": "Progressing", "status": "False",
                                   "reason": "ProgressDeadlineExceeded"}]}),
            2,
            json!({}),
        );
        assert!(matches!(
            rollout_status(&deadline),
            RolloutStatus::Failed { .. }
        ));
    }

    #[test]
    fn previous_is_the_second_newest_like_kubectl() {
        let d = web(json!({}), 1, json!({}));
        let history = vec![
            revision(5, "a", "web:5"),
            revision(7, "c", "web:7"),
            revision(6, "b", "web:6"),
        ];
        assert_eq!(
            select_revision(&d, &history, RevisionChoice::Previous)
                .unwrap()
                .revision,
            6
        );
        assert_eq!(
            select_revision(&d, &history, RevisionChoice::Number(5))
                .unwrap()
                .revision,
            5
        );
        let err = select_revision(&d, &history, RevisionChoice::Number(9)).unwrap_err();
        assert!(err.to_string().contains("5, 6, 7"), "{err}");
        let err = select_revision(&d, &history[..1], RevisionChoice::Previous).unwrap_err();
        assert!(err.to_string().contains("no rollout history"), "{err}");
    }

    #[test]
    fn issue12_previous_skips_a_revision_that_never_became_available() {
        let d = web(json!({}), 1, json!({}));
        let with = |n: i64, hash: &str, replicas: i32, ready: i32| {
            let mut r = revision(n, hash, &format!("web:{n}"));
            r.replicas = replicas;
            r.ready_replicas = ready;
            r
        };
        // 5 good and still serving, 6 bad (scaled away), 7 bad (rolling out, nothing Ready).
        let history = vec![with(5, "a", 3, 3), with(6, "b", 0, 0), with(7, "c", 1, 0)];
        let chosen = select_revision_explained(&d, &history, RevisionChoice::Previous).unwrap();
        assert_eq!(chosen.revision.revision, 5);
        let why = chosen.explanation().unwrap_or_default();
        assert!(
            why.contains("skipped revision 6") && why.contains("never became available"),
            "{why}"
        );
        // A normal history (6 fully replaced 5): kubectl's choice, nothing skipped.
        let history = vec![with(5, "a", 0, 0), with(6, "b", 3, 3), with(7, "c", 1, 0)];
        let chosen = select_revision_explained(&d, &history, RevisionChoice::Previous).unwrap();
        assert_eq!((chosen.revision.revision, chosen.skipped.len()), (6, 0));
        // No evidence either way (all scaled down): kubectl's choice.
        let history = vec![with(5, "a", 0, 0), with(6, "b", 0, 0), with(7, "c", 3, 3)];
        let chosen = select_revision_explained(&d, &history, RevisionChoice::Previous).unwrap();
        assert_eq!(chosen.revision.revision, 6);
        // A revision verified healthy is taken even while an older one still serves.
        let mut verified = vec![with(5, "a", 1, 1), with(6, "b", 0, 0), with(7, "c", 1, 0)];
        verified[1].verified_healthy = Some("r-1".into());
        let chosen = select_revision_explained(&d, &verified, RevisionChoice::Previous).unwrap();
        assert_eq!(chosen.revision.revision, 6);
    }

    #[test]
    fn known_good_prefers_the_hash_over_a_renumbered_revision() {
        let d = web(
            json!({}),
            1,
            json!({KNOWN_GOOD_REVISION: "5", KNOWN_GOOD_HASH: "b"}),
        );
        let history = vec![revision(5, "a", "web:5"), revision(8, "b", "web:6")];
        let chosen = select_revision(&d, &history, RevisionChoice::KnownGood).unwrap();
        assert_eq!(chosen.template_hash.as_deref(), Some("b"));
        let unmarked = web(json!({}), 1, json!({}));
        let mut verified = history.clone();
        verified[0].verified_healthy = Some("r-1".into());
        let chosen = select_revision(&unmarked, &verified, RevisionChoice::KnownGood).unwrap();
        assert_eq!(
            chosen.revision, 5,
            "the newest verified revision without an explicit mark"
        );
        let err = select_revision(&unmarked, &history, RevisionChoice::KnownGood).unwrap_err();
        assert!(
            err.to_string().contains("ripcord mark-good deployment/web"),
            "{err}"
        );
    }

    #[test]
    fn rollback_patch_matches_kubectl_undo() {
        let mut d = web(
            json!({}),
            1,
            json!({REVISION_ANNOTATION: "7", "team": "shop", KNOWN_GOOD_HASH: "a",
                   CHANGE_CAUSE: "deploy web:7"}),
        );
        let mut target = revision(6, "b", "web:6");
        target
            .annotations
            .insert("ripcord.dev/rollback".into(), "stale".into());
        let marker = RollbackMarker {
            run: "r-1".into(),
            step: "rollback".into(),
            choice: RevisionChoice::Previous,
            from_revision: Some(7),
            from_hash: Some("c".into()),
            to_revision: 6,
            to_hash: Some("b".into()),
        };
        d.metadata.resource_version = Some("42".into());
        let patch = rollback_patch(&d, &target, &marker);
        assert_eq!(
            patch[2],
            json!({"op": "replace", "path": "/metadata/resourceVersion", "value": "42"}),
            "issue 15: the observed resourceVersion is a precondition"
        );
        assert_eq!(patch[0]["path"], "/spec/template");
        assert_eq!(patch[0]["value"]["spec"]["containers"][0]["image"], "web:6");
        let annotations = &patch[1]["value"];
        assert_eq!(
            annotations[REVISION_ANNOTATION], "7",
            "revision kept from the deployment"
        );
        assert_eq!(
            annotations[CHANGE_CAUSE], "deploy web:6",
            "copied from the replica set"
        );
        assert_eq!(annotations[KNOWN_GOOD_HASH], "a", "ripcord marks kept");
        assert!(
            annotations.get("team").is_none(),
            "like kubectl, other annotations are replaced"
        );
        let parsed: RollbackMarker =
            serde_json::from_str(annotations[ROLLBACK_MARKER].as_str().unwrap()).unwrap();
        assert_eq!(parsed, marker);
        let _: json_patch::Patch = serde_json::from_value(patch).unwrap();
    }

    #[test]
    fn templates_compare_ignoring_hash_and_empties() {
        let a = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}},
                       "spec": {"containers": [{"name": "w", "image": "i", "env": []}]}});
        let b = json!({"metadata": {"labels": {"app": "web"}, "annotations": {}},
                       "spec": {"containers": [{"name": "w", "image": "i"}]}});
        assert!(templates_equal(&a, &b));
        let c = json!({"metadata": {"labels": {"app": "web"}},
                       "spec": {"containers": [{"name": "w", "image": "j"}]}});
        assert!(!templates_equal(&a, &c));
    }
}
