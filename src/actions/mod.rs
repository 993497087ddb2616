//! Actions: one file per action kind, each implementing the idempotent
//! observe → diff → apply → verify contract and reporting its inverse.
//!
//! # The contract
//!
//! Every action must be **idempotent** and must tolerate being executed several times, even if
//! a previous execution was cancelled at any point: the process may be killed between any two
//! lines, and every `.await` is a cancellation point. The engine drives an action like this:
//!
//! 1. [`Action::diff`] observes the current state of the target objects and computes the
//!    [`Mutation`]s needed to reach the desired state. An empty list means the step is
//!    *already satisfied*; nothing is written.
//! 2. For each mutation the engine journals a write-ahead *intent* record, then calls
//!    [`Action::apply`], then journals the [`Applied`] result. Every write names the field
//!    manager [`FIELD_MANAGER`] and has a bounded timeout. Markers that identify a change (a
//!    label, an annotation, a restart stamp) derive from the run id and step name, never from
//!    the wall clock, so a resumed run recognises its own earlier work and `diff` returns
//!    nothing for it.
//! 3. [`Action::verify`] waits, with a bound, until the change has taken effect.
//! 4. The engine calls `diff` again: multi-phase actions (batches of a restart, waves of a
//!    drain) return their next mutations; the step is done when `diff` returns none and the
//!    last `verify` passed.
//!
//! Each mutation carries its [`Inverse`] — the pre-image and resourceVersion needed by cleanup
//! to revert it and to detect that someone else changed the object since.
//!
//! Actions never write the journal and never schedule anything; they build no retries of their
//! own beyond waiting in `verify`. Retries, timeouts and `onFailure` belong to the engine.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The field manager ripcord names on every write.
pub const FIELD_MANAGER: &str = "ripcord";

/// Everything an action may use while it runs. Built by the engine per step.
#[derive(Clone)]
pub struct ActionContext {
    /// The Kubernetes client (the only way to reach the cluster).
    pub client: kube::Client,
    /// The run this step belongs to; markers derive from it.
    pub run_id: String,
    /// The step's name; markers derive from it too.
    pub step: String,
    /// The namespace used when an action's arguments name none.
    pub default_namespace: String,
    /// Outbound HTTP (Prometheus, webhooks, warm-up calls).
    pub http: reqwest::Client,
    /// Base URL of the Prometheus HTTP API, if configured.
    pub prometheus_url: Option<String>,
    /// Timeout for each single API call.
    pub call_timeout: Duration,
    /// Upper bound for `verify` waits (the step's timeout).
    pub verify_timeout: Duration,
}

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

/// What `diff` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// One line for people describing the observed state and what is needed.
    pub summary: String,
    /// The writes needed now. Empty: the desired state holds.
    pub mutations: Vec<Mutation>,
}

impl Diff {
    /// True when nothing needs to be written.
    pub fn is_satisfied(&self) -> bool {
        self.mutations.is_empty()
    }
}

/// Why an action failed. `category()` is stable and low-cardinality (metrics, journal, events).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A Kubernetes API call failed.
    #[error("{operation} {object} failed")]
    Api {
        /// What was being done ("get", "patch", "evict"…).
        operation: &'static str,
        /// The object.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The target object does not exist.
    #[error("{object} not found")]
    NotFound {
        /// The object.
        object: String,
    },
    /// The action refuses to act, for a reason a person must resolve.
    #[error("refused: {reason}")]
    Refused {
        /// Why, and how to proceed.
        reason: String,
    },
    /// A wait did not finish within its bound.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// Verification saw the change fail (e.g. ProgressDeadlineExceeded).
    #[error("verification failed: {reason}")]
    VerifyFailed {
        /// What was observed.
        reason: String,
    },
    /// An outbound HTTP call (Prometheus, webhook, warm-up) failed.
    #[error("HTTP request to {url} failed: {reason}")]
    Http {
        /// The URL, with any credentials removed.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A gate's condition did not hold.
    #[error("gate not passed: {reason}")]
    GateFailed {
        /// The observed value versus the threshold.
        reason: String,
    },
}

impl ActionError {
    /// A stable category for metrics labels, journal records and events.
    pub fn category(&self) -> &'static str {
        match self {
            ActionError::Api { .. } => "api",
            ActionError::NotFound { .. } => "not-found",
            ActionError::Refused { .. } => "refused",
            ActionError::Timeout { .. } => "timeout",
            ActionError::VerifyFailed { .. } => "verify-failed",
            ActionError::Http { .. } => "http",
            ActionError::GateFailed { .. } => "gate-failed",
        }
    }

    /// True when the engine may retry the step (429, 5xx, 409 conflict, timeouts of a call).
    pub fn is_retryable(&self) -> bool {
        match self {
            ActionError::Api { source, .. } => match source {
                kube::Error::Api(status) => {
                    status.code == 429 || status.code == 409 || status.code >= 500
                }
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                _ => false,
            },
            ActionError::Http { .. } => true,
            _ => false,
        }
    }
}

/// One action kind. See the module docs for the idempotency contract every implementation
/// must honour.
pub trait Action: Send + Sync {
    /// The catalog name (`deployment.rollback`).
    fn kind(&self) -> &'static str;

    /// Observe the targets and compute the writes needed now. Must not write.
    fn diff<'a>(&'a self, ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>>;

    /// Perform one write from the last `diff`, with field manager [`FIELD_MANAGER`] and the
    /// context's call timeout. Must be safe to call again for the same mutation after a crash
    /// (the diff of a resumed run normally no longer contains it).
    fn apply<'a>(
        &'a self,
        ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>>;

    /// Wait, bounded by `ctx.verify_timeout`, until the applied writes have taken effect.
    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>>;
}
