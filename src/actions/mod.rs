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
//!
//! Actions that mutate nothing (`wait`, `gate.prometheus`, `notify`,
//! `deployment.waitRolledOut`) do their work in `verify`: their `diff` is always empty and
//! [`Action::verify_when_satisfied`] returns true, so the engine calls `verify` (with no
//! applied mutations) even though the step is already satisfied.
//!
//! [`build`] turns a catalog entry into its implementation.

pub mod deployment_pause;
pub mod deployment_restart;
pub mod deployment_rollback;
pub mod deployment_scale;
pub mod deployment_wait_rolled_out;
pub mod gate_approval;
pub mod gate_prometheus;
pub mod http_request;
pub mod node_cordon;
pub mod node_drain;
pub mod notify;
pub mod object_patch;
pub mod text_diff;
pub mod traffic_set_weights;
pub mod wait;
pub mod zone_failback;
pub mod zone_failout;

use crate::k8s::K8sError;
use crate::metrics::prometheus::PromError;
use crate::notify::Notifier;
use crate::playbook::catalog;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub use crate::model::{Applied, Inverse, Mutation, ObjectRef, Progress};

/// The field manager ripcord names on every write.
pub const FIELD_MANAGER: &str = crate::model::FIELD_MANAGER;

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
    /// The playbook's name (for notifications).
    pub playbook: String,
    /// The run's notification channels (used by the `notify` action); `None`: no channels.
    pub notifier: Option<Arc<Notifier>>,
    /// The state directory of the run (approval files of `gate.approval`); `None`: only the
    /// `Run` custom resource is consulted.
    pub state_dir: Option<std::path::PathBuf>,
    /// Where a diff leaves the target objects it read, for the engine's pre-mutation snapshot
    /// (which then does not read them again). Recording is optional.
    pub observed: Observed,
    /// Where the action tells the people watching the run what it saw while it works (a
    /// rejected ACK): the engine turns each [`Notice`] into an event. Nowhere by default.
    pub notices: Notices,
}

/// Something an action saw while it works that people watching the run should know (not a
/// result, not an error): the engine reports it as an [`crate::engine::EngineEvent`].
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// `gate.approval` saw an ACK by someone who is not among the step's approvers; the gate
    /// keeps waiting.
    AckRejected {
        /// Who acknowledged.
        by: String,
        /// Why it does not count.
        reason: String,
    },
}

/// Where an action sends its [`Notice`]s; the default sends them nowhere. Cheap to clone.
#[derive(Clone, Default)]
pub struct Notices(Option<Arc<dyn Fn(Notice) + Send + Sync>>);

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notices(listened to)"
        } else {
            "Notices(nowhere)"
        })
    }
}

// === impl Notices ===

impl Notices {
    /// Notices handed to `listener` (which must not block).
    pub fn new(listener: impl Fn(Notice) + Send + Sync + 'static) -> Notices {
        Notices(Some(Arc::new(listener)))
    }

    /// Tells the listener, if any.
    pub fn send(&self, notice: Notice) {
        if let Some(listener) = &self.0 {
            listener(notice);
        }
    }
}

/// Target objects as a diff last read them (with what it read alongside: a Deployment's
/// ReplicaSets), shared between a run's diffs and its pre-mutation snapshot so the snapshot
/// reuses the diff's reads (issue 18). The newest read of a target replaces the older one.
/// Cheap to clone: every clone sees the same objects.
#[derive(Debug, Clone, Default)]
pub struct Observed(Arc<std::sync::Mutex<std::collections::HashMap<ObjectRef, ObservedRead>>>);

/// One target as a diff read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRead {
    /// The object (with `apiVersion` and `kind`).
    pub object: serde_json::Value,
    /// Objects read with it (a Deployment's ReplicaSets), each with `apiVersion` and `kind`.
    pub related: Vec<serde_json::Value>,
}

// === impl Observed ===

impl Observed {
    /// Records `target` as just read.
    pub fn record(&self, target: ObjectRef, read: ObservedRead) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(target, read);
        }
    }

    /// The last read of `target`, if a diff recorded one.
    pub fn get(&self, target: &ObjectRef) -> Option<ObservedRead> {
        self.0.lock().ok().and_then(|map| map.get(target).cloned())
    }
}

impl ActionContext {
    /// The namespace to use: the argument's, else the context's default.
    pub fn namespace(&self, from_args: Option<&str>) -> String {
        namespace_or(from_args, &self.default_namespace).to_string()
    }
}

/// An action argument's namespace, unless it is absent or empty: then `default`.
pub fn namespace_or<'a>(from_args: Option<&'a str>, default: &'a str) -> &'a str {
    from_args.filter(|ns| !ns.is_empty()).unwrap_or(default)
}

/// What `diff` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// One line for people describing the observed state and what is needed.
    pub summary: String,
    /// The writes needed now. Empty: the desired state holds.
    pub mutations: Vec<Mutation>,
    /// Counts for a progress bar, from actions that work through many items (drains evict
    /// pods, restarts restart them in batches). `None`: nothing to count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
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
    /// A single API call did not finish within the call timeout (retryable).
    #[error("{operation} {object} timed out after {after:?}")]
    CallTimeout {
        /// What was being done.
        operation: &'static str,
        /// The object.
        object: String,
        /// The bound.
        after: Duration,
    },
    /// The arguments or the cluster's data cannot be used as asked (unknown revision, no
    /// history, a kind the cluster does not serve, a malformed patch…).
    #[error("{object}: {reason}")]
    Invalid {
        /// The object or argument.
        object: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A Prometheus query failed (unreachable, bad PromQL, empty result).
    #[error("Prometheus query failed")]
    Prometheus {
        /// The query error.
        #[source]
        source: PromError,
    },
}

impl From<K8sError> for ActionError {
    fn from(err: K8sError) -> Self {
        match err {
            K8sError::Api {
                operation,
                object,
                source,
            } => ActionError::Api {
                operation,
                object,
                source,
            },
            K8sError::NotFound { object } => ActionError::NotFound { object },
            K8sError::Timeout {
                operation,
                object,
                after,
            } => ActionError::CallTimeout {
                operation,
                object,
                after,
            },
            K8sError::Invalid { object, reason } => ActionError::Invalid { object, reason },
            K8sError::UnknownKind {
                api_version,
                kind,
                source,
            } => ActionError::Api {
                operation: "discover",
                object: format!("{api_version} {kind}"),
                source,
            },
            K8sError::Serde { object, source } => ActionError::Invalid {
                object,
                reason: format!("cannot convert to or from JSON: {source}"),
            },
        }
    }
}

impl From<PromError> for ActionError {
    fn from(source: PromError) -> Self {
        ActionError::Prometheus { source }
    }
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
            ActionError::CallTimeout { .. } => "call-timeout",
            ActionError::Invalid { .. } => "invalid",
            ActionError::Prometheus { source } => source.category(),
        }
    }

    /// True when the engine may retry the step (429, 5xx, 409 conflict, timeouts of a call).
    pub fn is_retryable(&self) -> bool {
        match self {
            ActionError::Api { source, .. } => crate::k8s::is_retryable_kube(source),
            ActionError::Http { .. } | ActionError::CallTimeout { .. } => true,
            ActionError::Prometheus { source } => source.is_retryable(),
            _ => false,
        }
    }
}

/// One action kind. See the module docs for the idempotency contract every implementation
/// must honour.
pub trait Action: Send + Sync {
    /// The catalog name (`deployment.rollback`).
    fn kind(&self) -> &'static str;

    /// The objects this action touches or reads, for the snapshot taken before the first
    /// mutation (empty for `wait`, gates, `notify`).
    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef>;

    /// True when the action's work happens in `verify` (waits, gates, notifications): the
    /// engine then calls `verify` even when `diff` is empty. False by default: an already
    /// satisfied step needs no verification.
    fn verify_when_satisfied(&self) -> bool {
        false
    }

    /// How many mutations of one diff the engine may apply at once. 1 by default: one after
    /// the other, in order. Actions whose diffs hold independent writes (cordons of different
    /// nodes, evictions of different pods) return more; the engine then journals the intents of
    /// a chunk together (one `fsync`) before sending any of its writes, and each `Applied` as
    /// its write returns. Such an action bounds its own requests in flight across concurrent
    /// `apply` calls.
    fn parallel_mutations(&self) -> usize {
        1
    }

    /// True when the writes of `diff` take capacity out of the fleet behind guards that looked
    /// at the whole fleet (the cordons of `zone.failout`). The engine then applies them only
    /// while it holds the cluster-wide fleet lock, and only from a diff computed after it took
    /// that lock, so two runs cannot each pass a guard that the pair of them breaks. False by
    /// default.
    fn fleet_guarded(&self, _diff: &Diff) -> bool {
        false
    }

    /// True when every write of this action is conditional on the `resourceVersion` its diff
    /// read (`Mutation::resource_version` sent as a precondition): a change since the diff
    /// makes the write fail with a 409 conflict, which the engine answers with a fresh diff.
    /// The engine then applies the diff it already has after taking the run's lock, instead
    /// of diffing a second time (the precondition covers whatever changed while it waited).
    /// False by default: the engine diffs again after the first-mutation gate.
    fn writes_are_conditional(&self) -> bool {
        false
    }

    /// True when a successful `verify` of the writes of a diff means the desired state holds
    /// (a one-shot write whose `verify` checks that very write is in place): the engine then
    /// ends the step after `verify` without diffing again. False by default: the engine
    /// re-diffs until the diff is empty.
    fn settled_by_verify(&self) -> bool {
        false
    }

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

    /// The ACK the last successful `verify` accepted (`gate.approval`), for the engine to
    /// journal as a [`crate::journal::Record::Approved`] before the step's `StepVerified`.
    /// `None` by default: other actions are not acknowledged by people.
    fn acknowledgement(&self) -> Option<crate::journal::approval::Acknowledgement> {
        None
    }
}

/// Builds the implementation of a catalog action (every catalog action has one).
pub fn build(action: &catalog::Action) -> Result<Box<dyn Action>, ActionError> {
    use catalog::Action as A;
    Ok(match action {
        A::DeploymentRollback(args) => {
            Box::new(deployment_rollback::DeploymentRollback::new(args.clone())?)
        }
        A::DeploymentWaitRolledOut(args) => Box::new(
            deployment_wait_rolled_out::DeploymentWaitRolledOut::new(args.clone()),
        ),
        A::DeploymentScale(args) => Box::new(deployment_scale::DeploymentScale::new(args.clone())?),
        A::DeploymentPause(args) => {
            Box::new(deployment_pause::DeploymentPause::pause(args.clone()))
        }
        A::DeploymentResume(args) => {
            Box::new(deployment_pause::DeploymentPause::resume(args.clone()))
        }
        A::ObjectPatch(args) => Box::new(object_patch::ObjectPatch::new(args.clone())?),
        A::Wait(args) => Box::new(wait::Wait::new(args.duration.0)),
        A::GatePrometheus(condition) => {
            Box::new(gate_prometheus::GatePrometheus::new(condition.clone()))
        }
        A::GateApproval(args) => Box::new(gate_approval::GateApproval::new(args.clone())?),
        A::Notify(args) => {
            Box::new(notify::Notify::new(args.message.clone()).required(args.required))
        }
        A::NodeCordon(args) => Box::new(node_cordon::NodeCordon::cordon(args.clone())?),
        A::NodeUncordon(args) => Box::new(node_cordon::NodeCordon::uncordon(args.clone())?),
        A::NodeDrain(args) => Box::new(node_drain::NodeDrain::new(args.clone())?),
        A::ZoneFailout(args) => Box::new(zone_failout::ZoneFailout::new(args.clone())?),
        A::ZoneFailback(args) => Box::new(zone_failback::ZoneFailback::new(args.clone())?),
        A::TrafficSetWeights(args) => {
            Box::new(traffic_set_weights::TrafficSetWeights::new(args.clone())?)
        }
        A::HttpRequest(args) => Box::new(http_request::HttpRequest::new(args.clone())?),
        A::DeploymentRestart(args) => {
            Box::new(deployment_restart::DeploymentRestart::new(args.clone())?)
        }
    })
}

/// The reference of a Deployment.
pub(crate) fn deployment_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    }
}
