//! The leaf types every layer shares: what a run writes ([`ObjectRef`], [`Mutation`],
//! [`Inverse`], [`Applied`], [`Progress`]), how it ended ([`Outcome`]), what started it
//! ([`Trigger`]), durations as people write them ([`Duration`]) and ripcord's field manager.
//!
//! This module imports nothing of ripcord: `actions`, `journal`, `engine`, `k8s`, `playbook`
//! and `cleanup` depend on it, never the other way round, so the layering is a compile error
//! rather than a habit. The old paths (`actions::ObjectRef`, `journal::Outcome`,
//! `engine::Trigger`, `playbook::Duration`) re-export these.

pub mod duration;
pub mod format;

pub use duration::Duration;

use serde::{Deserialize, Serialize};

/// The field manager of every write ripcord makes (`metadata.managedFields`).
pub const FIELD_MANAGER: &str = "ripcord";

/// A reference to one Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `group/version`, or `v1` for the core group.
    pub api_version: String,
    /// The object's kind.
    pub kind: String,
    /// The namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind.to_lowercase(), ns, self.name),
            None => write!(f, "{}/{}", self.kind.to_lowercase(), self.name),
        }
    }
}

/// One write an action wants to make. Journaled (write-ahead) before it is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mutation {
    /// Stable identity within the step (e.g. `cordon/node-a-1`, `batch-2/pod-x`), derived
    /// from the target and the phase, never from the clock. A resumed run uses it to recognise
    /// a mutation it already applied.
    pub id: String,
    /// The object written.
    pub target: ObjectRef,
    /// One line for people: "cordon node a-1", "roll back to revision 6".
    pub description: String,
    /// A readable diff of what changes (for `--dry-run` and `plan`).
    pub diff: String,
    /// The object as it was before (secrets never included; may be trimmed to the fields
    /// the mutation touches).
    pub pre_image: serde_json::Value,
    /// resourceVersion observed before the write, for drift detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Action-specific request payload, enough for `apply` to perform the write.
    pub request: serde_json::Value,
    /// How cleanup reverts this mutation.
    pub inverse: Inverse,
}

/// How to revert one mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Inverse {
    /// Apply this JSON merge patch to the target (uncordon, resume, restore replicas/weights,
    /// revert a generic patch). `expected` holds the fields as ripcord left them, so cleanup
    /// can tell whether someone changed them since.
    MergePatch {
        /// The patch that restores the pre-image.
        patch: serde_json::Value,
        /// The touched fields as ripcord set them (for drift detection).
        expected: serde_json::Value,
    },
    /// Deliberately not reverted automatically (a rollback: rolling forward to a bad release
    /// would be wrong). `roll_forward` holds what a roll-forward on request would apply.
    NotReverted {
        /// Why.
        reason: String,
        /// The patch a roll-forward on explicit request would apply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        roll_forward: Option<serde_json::Value>,
    },
    /// Nothing to revert (an eviction: the controller replaced the pod; a notification).
    None {
        /// Why nothing is needed.
        reason: String,
    },
}

/// The result of applying one mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The mutation's id.
    pub id: String,
    /// The object written.
    pub target: ObjectRef,
    /// resourceVersion after the write, if the write returned the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version_after: Option<String>,
}

/// Counts of one step's progress, as its action observed them in a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// What is counted, for people ("pods evicted", "batch 2 of 4: pods restarted").
    pub what: String,
    /// How many are done.
    pub done: u64,
    /// How many in all.
    pub total: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every step verified or was already satisfied.
    Succeeded,
    /// A step failed (after `onFailure` handling).
    Failed,
    /// A step failed and the run's applied mutations were reverted (`onFailure: undo`).
    Undone,
    /// A stop condition tripped; the run stopped at a safe point.
    Stopped,
    /// A guard, lock or the operator refused before the first mutation.
    Refused,
    /// Ctrl-C / SIGTERM: stopped at a safe point; resumable.
    Interrupted,
}

impl Outcome {
    /// The kebab-case name used in journals, the `Run` resource and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Undone => "undone",
            Outcome::Stopped => "stopped",
            Outcome::Refused => "refused",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// True when `--resume` may continue the run (it stopped before completing).
    pub fn is_resumable(self) -> bool {
        matches!(
            self,
            Outcome::Interrupted | Outcome::Stopped | Outcome::Failed
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The command line.
    Cli,
    /// The daemon's HTTP API.
    Api,
    /// An Alertmanager webhook.
    Alertmanager,
    /// A scheduled drill.
    Schedule,
}

impl Trigger {
    /// The journal spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Api => "api",
            Trigger::Alertmanager => "alertmanager",
            Trigger::Schedule => "schedule",
        }
    }
}
