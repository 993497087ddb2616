//! The `Run` custom resource (`runs.ripcord.dev`): the in-cluster mirror of a run journal.
//!
//! The local journal is the write-ahead log; the `Run` resource is a bounded summary so that
//! `kubectl get runs.ripcord.dev` (or a teammate's ripcord, or the daemon) sees what a run did:
//! its steps, the mutations with their inverses, and the outcome. Long lists are truncated with
//! a count of what was left out; details stay in the journal and the snapshot.
//!
//! Writing the mirror never blocks mitigation: callers journal a failure and carry on.
//!
//! The status is versioned (`status.formatVersion`, [`Format::RunStatus`]). Version 3 (this
//! build) keeps each step's phase as a [`StepPhase`], each inverse as structured JSON (left out
//! with `inverseOmitted: true` when larger than [`MAX_INVERSE_CHARS`]) and, for a run a daemon
//! stopped itself, [`StoppedBy`] (`stoppedBy: {kind: daemon, reason: shutdown|lostLeadership}`),
//! which the daemon's `v2:` seal covers. Versions 1 and 2 (an inverse as a JSON string cut to
//! [`MAX_FIELD_CHARS`], a daemon's stop told only in the message) are still read:
//! [`MutationStatus::inverse`], [`RunStatus::daemon_stop`].

use crate::model::format::{Format, FormatVersion, UnsupportedFormat};
use crate::model::{FIELD_MANAGER, Inverse};
use kube::CustomResource;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most steps kept in `status.steps`.
pub const MAX_STEPS: usize = 50;
/// Most mutations kept per step.
pub const MAX_MUTATIONS_PER_STEP: usize = 20;
/// Longest string kept in a status field (longer ones are cut, marked with `…`).
pub const MAX_FIELD_CHARS: usize = 1024;
/// Longest inverse kept in a status, as compact JSON text: a longer one is left out
/// (`inverseOmitted: true`) and stays in the run's journal only. The bound versions 1 and 2 cut
/// their inverse strings at.
pub const MAX_INVERSE_CHARS: usize = MAX_FIELD_CHARS;
/// How versions 1 and 2 of the status told that a daemon stopped the run itself: the message
/// held `interrupted by ripcord daemon (shutdown)` or `… (lost leadership)`. Read for those
/// versions only; version 3 says it in [`RunStatus::stopped_by`].
pub const LEGACY_DAEMON_STOP_MARKER: &str = "ripcord daemon (";

/// What a run was asked to do.
// Each `printcolumn(type_ = "string", …)` is a separate column, not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "ripcord.dev",
    version = "v1alpha1",
    kind = "Run",
    namespaced,
    status = "RunStatus",
    shortname = "rrun",
    category = "ripcord",
    doc = "A ripcord run: the in-cluster mirror of a run journal (steps, mutations with their inverses, outcome).",
    printcolumn(name = "Playbook", type_ = "string", json_path = ".spec.playbook"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Outcome", type_ = "string", json_path = ".status.outcome"),
    printcolumn(name = "Who", type_ = "string", json_path = ".spec.who"),
    printcolumn(name = "Incident", type_ = "string", json_path = ".spec.incident"),
    printcolumn(name = "Started", type_ = "date", json_path = ".status.startedAt")
)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    /// The playbook's name.
    pub playbook: String,
    /// The parameters (secret-looking values redacted), rendered as strings.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// What started the run (`cli`, `api`, `alertmanager`, `schedule`).
    pub trigger: String,
    /// Who started it.
    pub who: String,
    /// The incident id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

/// Where a run is, as its `Run` resource says (`status.phase`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunPhase {
    /// Started and not finished (or its process died).
    Running,
    /// Ended (see `outcome`).
    Finished,
    /// A value this build does not know (or none: a `Run` without a status), kept as read.
    Other(String),
}

impl RunPhase {
    /// The spelling in the resource.
    pub fn as_str(&self) -> &str {
        match self {
            RunPhase::Running => "Running",
            RunPhase::Finished => "Finished",
            RunPhase::Other(other) => other,
        }
    }
}

impl Default for RunPhase {
    fn default() -> RunPhase {
        RunPhase::Other(String::new())
    }
}

impl From<&str> for RunPhase {
    fn from(s: &str) -> RunPhase {
        match s {
            "Running" => RunPhase::Running,
            "Finished" => RunPhase::Finished,
            other => RunPhase::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for RunPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunPhase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RunPhase {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RunPhase, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(RunPhase::from(s.as_str()))
    }
}

/// Where a step is, as its `Run` resource says (`status.steps[].phase`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum StepPhase {
    /// Not started yet (or not run: a later step after a failure or stop).
    #[default]
    Pending,
    /// Under way.
    Running,
    /// Done and verified (also: done by an earlier process of the run).
    Verified,
    /// Nothing to do: the desired state held already.
    AlreadySatisfied,
    /// Failed (see the step's `error`).
    Failed,
    /// Stopped at a safe point (a signal, a cancel, a stop condition, the daemon).
    Stopped,
    /// Refused before writing (see the step's `error`).
    Refused,
    /// A value this build does not know, kept as read.
    Other(String),
}

impl StepPhase {
    /// The spelling in the resource.
    pub fn as_str(&self) -> &str {
        match self {
            StepPhase::Pending => "Pending",
            StepPhase::Running => "Running",
            StepPhase::Verified => "Verified",
            StepPhase::AlreadySatisfied => "AlreadySatisfied",
            StepPhase::Failed => "Failed",
            StepPhase::Stopped => "Stopped",
            StepPhase::Refused => "Refused",
            StepPhase::Other(other) => other,
        }
    }
}

impl From<&str> for StepPhase {
    fn from(s: &str) -> StepPhase {
        match s {
            "Pending" => StepPhase::Pending,
            "Running" => StepPhase::Running,
            "Verified" => StepPhase::Verified,
            "AlreadySatisfied" => StepPhase::AlreadySatisfied,
            "Failed" => StepPhase::Failed,
            "Stopped" => StepPhase::Stopped,
            "Refused" => StepPhase::Refused,
            other => StepPhase::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for StepPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StepPhase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StepPhase {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<StepPhase, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(StepPhase::from(s.as_str()))
    }
}

/// Why a daemon stopped one of its own runs (the next leader takes such a run over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonStop {
    /// The daemon shut down.
    Shutdown,
    /// The daemon lost the leader Lease.
    LostLeadership,
}

impl DaemonStop {
    /// The spelling in the resource (`stoppedBy.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonStop::Shutdown => "shutdown",
            DaemonStop::LostLeadership => "lostLeadership",
        }
    }

    /// For people (the status message: `interrupted by ripcord daemon (lost leadership)`).
    pub fn describe(self) -> &'static str {
        match self {
            DaemonStop::Shutdown => "shutdown",
            DaemonStop::LostLeadership => "lost leadership",
        }
    }
}

/// Who stopped a run that ended `interrupted`, when a daemon did (`status.stoppedBy`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoppedBy {
    /// A ripcord daemon stopped its own run: `{kind: daemon, reason: shutdown|lostLeadership}`.
    Daemon(DaemonStop),
    /// A kind or reason this build does not know, kept as read (never taken over).
    Other {
        /// `stoppedBy.kind` as read.
        kind: String,
        /// `stoppedBy.reason` as read.
        reason: String,
    },
}

/// `status.stoppedBy` as written.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct StoppedByWire {
    /// Who stopped the run: `daemon` (a ripcord daemon stopped its own run).
    kind: String,
    /// Why: `shutdown`, `lostLeadership`.
    #[serde(default)]
    reason: String,
}

impl Serialize for StoppedBy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let wire = match self {
            StoppedBy::Daemon(stop) => StoppedByWire {
                kind: "daemon".into(),
                reason: stop.as_str().into(),
            },
            StoppedBy::Other { kind, reason } => StoppedByWire {
                kind: kind.clone(),
                reason: reason.clone(),
            },
        };
        wire.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoppedBy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<StoppedBy, D::Error> {
        let StoppedByWire { kind, reason } = StoppedByWire::deserialize(deserializer)?;
        Ok(match (kind.as_str(), reason.as_str()) {
            ("daemon", "shutdown") => StoppedBy::Daemon(DaemonStop::Shutdown),
            ("daemon", "lostLeadership") => StoppedBy::Daemon(DaemonStop::LostLeadership),
            _ => StoppedBy::Other { kind, reason },
        })
    }
}

/// What a run did so far.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// The status's format version: 3 today; absent means 1 (written before statuses carried
    /// one; 1 is 2 without this field). A ripcord reads its own version and the previous ones
    /// it knows (1 to 3) and refuses any other.
    #[serde(default)]
    pub format_version: FormatVersion,
    /// `Running`, `Finished`.
    // A string in the resource (the CRD's schema); a value this build does not know is kept.
    #[schemars(with = "String")]
    pub phase: RunPhase,
    /// The steps, in plan order (at most [`MAX_STEPS`]).
    #[serde(default)]
    pub steps: Vec<StepStatus>,
    /// Steps left out of `steps` because of the size bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_steps: u32,
    /// The outcome, once finished (`succeeded`, `failed`, `undone`, `stopped`, `refused`,
    /// `interrupted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who stopped the run, when a ripcord daemon stopped its own run (`kind: daemon`,
    /// `reason: shutdown` or `lostLeadership`): the next leader takes such a run over. Covered
    /// by the daemon's seal. Versions 1 and 2 said so only in `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<StoppedByWire>")]
    pub stopped_by: Option<StoppedBy>,
    /// RFC 3339 start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 end time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Where the local journal lives (`host:path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// The daemon's seal (`v2:` + HMAC-SHA256 of namespace, name, spec and `stoppedBy`, keyed
    /// with the daemon's run key; versions 1 and 2: `v1:`, without `stoppedBy`; see
    /// docs/security.md). Written only through the status subresource; a daemon takes over
    /// only runs whose seal verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One step of a run.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The step's name.
    pub name: String,
    /// `Pending`, `Running`, `Verified`, `AlreadySatisfied`, `Failed`, `Stopped`, `Refused`.
    // A string in the resource (the CRD's schema); a value this build does not know is kept.
    #[schemars(with = "String")]
    pub phase: StepPhase,
    /// The mutations applied (at most [`MAX_MUTATIONS_PER_STEP`]).
    #[serde(default)]
    pub mutations: Vec<MutationStatus>,
    /// Mutations left out because of the size bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_mutations: u32,
    /// The error, when the step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One applied mutation and how to revert it.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutationStatus {
    /// The mutation's id within the step.
    pub id: String,
    /// The object written (`deployment/shop/checkout`).
    pub target: String,
    /// The inverse as the journal has it (`{"type": "mergePatch", "patch": …}`); absent when
    /// it was larger than the status allows (`inverseOmitted`). Versions 1 and 2: the same as
    /// compact JSON text, cut to 1,024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub inverse: Option<serde_json::Value>,
    /// The inverse was too large for the status and left out: only the run's journal has it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inverse_omitted: bool,
}

/// The schema of a value of any JSON type, kept as written (`inverse`: an object in version
/// 3, a string in versions 1 and 2): structural, and not pruned by the API server.
fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Why a `Run` status cannot give a mutation's inverse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InverseUnavailable {
    /// Left out by the size bound (version 3: `inverseOmitted`).
    #[error(
        "the inverse was too large for the Run resource and left out (inverseOmitted); clean up \
         from the machine holding the run's journal"
    )]
    Omitted,
    /// Cut by the size bound (versions 1 and 2: JSON text that no longer parses).
    #[error(
        "the inverse in the Run resource is incomplete (cut by its size bound); clean up from \
         the machine holding the run's journal"
    )]
    Cut,
    /// No inverse, and no marker saying why.
    #[error("the Run resource records no inverse for this mutation")]
    Missing,
    /// A value that is not an inverse this build knows.
    #[error("the inverse in the Run resource is not readable: {0}")]
    Unreadable(String),
}

impl InverseUnavailable {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            InverseUnavailable::Omitted => "inverse-omitted",
            InverseUnavailable::Cut => "inverse-cut",
            InverseUnavailable::Missing => "inverse-missing",
            InverseUnavailable::Unreadable(_) => "inverse-unreadable",
        }
    }
}

// === impl MutationStatus ===

impl MutationStatus {
    /// The status of an applied mutation, its inverse as structured JSON (left out by
    /// [`RunStatus::bounded`] when too large).
    pub fn new(id: impl Into<String>, target: impl Into<String>, inverse: &Inverse) -> Self {
        let inverse = serde_json::to_value(inverse).ok();
        MutationStatus {
            id: id.into(),
            target: target.into(),
            inverse_omitted: inverse.is_none(),
            inverse,
        }
    }

    /// The inverse, whichever version wrote it: version 3's object, or versions 1 and 2's
    /// JSON text (cut text is [`InverseUnavailable::Cut`]).
    pub fn inverse(&self) -> Result<Inverse, InverseUnavailable> {
        match &self.inverse {
            None if self.inverse_omitted => Err(InverseUnavailable::Omitted),
            None => Err(InverseUnavailable::Missing),
            Some(serde_json::Value::String(text)) => {
                serde_json::from_str::<Inverse>(text).map_err(|err| {
                    if text.ends_with('…') || err.is_eof() {
                        InverseUnavailable::Cut
                    } else {
                        InverseUnavailable::Unreadable(err.to_string())
                    }
                })
            }
            Some(value) => serde_json::from_value::<Inverse>(value.clone())
                .map_err(|err| InverseUnavailable::Unreadable(err.to_string())),
        }
    }
}

// === impl RunStatus ===

impl RunStatus {
    /// Enforces the size bounds: at most [`MAX_STEPS`] steps, [`MAX_MUTATIONS_PER_STEP`]
    /// mutations per step and [`MAX_FIELD_CHARS`] per free-text field, counting what was
    /// left out.
    pub fn bounded(mut self) -> RunStatus {
        if self.steps.len() > MAX_STEPS {
            self.omitted_steps += (self.steps.len() - MAX_STEPS) as u32;
            self.steps.truncate(MAX_STEPS);
        }
        for step in &mut self.steps {
            if step.mutations.len() > MAX_MUTATIONS_PER_STEP {
                step.omitted_mutations += (step.mutations.len() - MAX_MUTATIONS_PER_STEP) as u32;
                step.mutations.truncate(MAX_MUTATIONS_PER_STEP);
            }
            for m in &mut step.mutations {
                let too_large =
                    m.inverse.as_ref().is_some_and(|inverse| {
                        match serde_json::to_string(inverse) {
                            Ok(text) => text.chars().count() > MAX_INVERSE_CHARS,
                            Err(_) => true,
                        }
                    });
                if too_large {
                    m.inverse = None;
                    m.inverse_omitted = true;
                }
            }
            step.error = step.error.as_deref().map(cut);
        }
        self.message = self.message.as_deref().map(cut);
        self
    }
}

impl RunStatus {
    /// The format version of this status when this build reads it; otherwise the error naming
    /// `resource` (`Run shop/r-…`) and the version.
    pub fn check_format(
        &self,
        resource: impl std::fmt::Display,
    ) -> Result<FormatVersion, UnsupportedFormat> {
        Format::RunStatus.check(self.format_version, resource)
    }

    /// Why a daemon stopped this run itself, if it did (then the next leader takes it over):
    /// version 3's [`RunStatus::stopped_by`]; versions 1 and 2 said it only in the message of
    /// an `interrupted` outcome ([`LEGACY_DAEMON_STOP_MARKER`]). A version 3 status is never
    /// judged by its message.
    pub fn daemon_stop(&self) -> Option<DaemonStop> {
        if self.format_version >= FormatVersion::V3 {
            return match &self.stopped_by {
                Some(StoppedBy::Daemon(stop)) => Some(*stop),
                _ => None,
            };
        }
        if self.outcome.as_deref() != Some("interrupted") {
            return None;
        }
        let message = self.message.as_deref()?;
        let at = message.find(LEGACY_DAEMON_STOP_MARKER)?;
        let rest = message.get(at + LEGACY_DAEMON_STOP_MARKER.len()..)?;
        if rest.starts_with("lost leadership)") {
            Some(DaemonStop::LostLeadership)
        } else {
            // `shutdown)`, or any other reason a daemon gave: version 2's leader resumed them
            // all.
            Some(DaemonStop::Shutdown)
        }
    }

    /// [`RunStatus::check_format`] on a status as JSON, before deserializing it (a status of
    /// another version need not deserialize at all).
    pub fn check_format_json(
        status: &serde_json::Value,
        resource: impl std::fmt::Display,
    ) -> Result<FormatVersion, UnsupportedFormat> {
        Format::RunStatus.check_json(status, STATUS_FORMAT_FIELD, resource)
    }
}

/// The field of a `Run` status that carries its format version.
pub const STATUS_FORMAT_FIELD: &str = "formatVersion";

/// Cuts a string to [`MAX_FIELD_CHARS`] characters, marking the cut with `…`.
pub fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_FIELD_CHARS {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_FIELD_CHARS - 1).collect();
        out.push('…');
        out
    }
}

/// The daemon's key for sealing its `Run` resources.
///
/// Anyone allowed to `create runs.ripcord.dev` can write a `Run`'s spec, so a spec is not a
/// command: a new leader takes over only a `Run` whose status carries a seal it can verify —
/// an HMAC-SHA256, keyed with a secret only the daemon holds (its Secret), over the run's
/// namespace, name, playbook, parameters, trigger, who and incident, and (seal `v2:`, status
/// format 3) the status's `stoppedBy`, which decides whether a stopped run is taken over. The
/// status is written through the status subresource, which the chart grants to the daemon
/// alone; the key makes a seal unforgeable even for someone who can write statuses, and binds
/// it to this exact run (a seal copied onto another spec or name does not verify) and stop
/// cause (a `stoppedBy` added to or changed in a sealed status does not verify).
///
/// Seals `v1:` (identity only, status formats 1 and 2) still verify on a status without
/// `stoppedBy`; those statuses tell a daemon's stop in their message.
pub struct RunSeal {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for RunSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("RunSeal").finish_non_exhaustive()
    }
}

/// Shortest accepted run key, in bytes.
pub const MIN_SEAL_KEY_BYTES: usize = 32;

/// What a seal check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealCheck {
    /// The seal verifies.
    Valid,
    /// No status or no seal (not written by a daemon holding the key).
    Missing,
    /// A seal that does not verify (forged, copied, or another key).
    Invalid,
}

impl SealCheck {
    /// A stable reason for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SealCheck::Valid => "valid",
            SealCheck::Missing => "unsealed",
            SealCheck::Invalid => "bad-seal",
        }
    }
}

/// Why the run key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RunSealError {
    /// The key file could not be read.
    #[error("cannot read the run key file {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key is too short.
    #[error("the run key in {path} is {len} bytes; at least {MIN_SEAL_KEY_BYTES} are needed")]
    TooShort {
        /// The file.
        path: std::path::PathBuf,
        /// Its length.
        len: usize,
    },
}

impl RunSealError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            RunSealError::Read { .. } => "run-key-read",
            RunSealError::TooShort { .. } => "run-key-short",
        }
    }
}

// === impl RunSeal ===

impl RunSeal {
    /// A seal keyed with `secret`.
    pub fn new(secret: &[u8]) -> RunSeal {
        RunSeal {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    /// The key from a file (surrounding whitespace ignored; at least
    /// [`MIN_SEAL_KEY_BYTES`]).
    pub fn from_file(path: &std::path::Path) -> Result<RunSeal, RunSealError> {
        let text = std::fs::read(path).map_err(|source| RunSealError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let key = text.trim_ascii();
        if key.len() < MIN_SEAL_KEY_BYTES {
            return Err(RunSealError::TooShort {
                path: path.to_path_buf(),
                len: key.len(),
            });
        }
        Ok(RunSeal::new(key))
    }

    fn message_v2(
        namespace: &str,
        name: &str,
        spec: &RunSpec,
        stopped_by: Option<&StoppedBy>,
    ) -> Vec<u8> {
        // serde_json writes struct fields in order and BTreeMap keys sorted: canonical.
        serde_json::to_vec(&serde_json::json!({
            "v": 2,
            "namespace": namespace,
            "name": name,
            "spec": spec,
            "stoppedBy": stopped_by,
        }))
        .unwrap_or_default()
    }

    fn sign(&self, version: &str, message: &[u8]) -> String {
        let tag = ring::hmac::sign(&self.key, message);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{version}:{hex}")
    }

    /// The seal of a status of the run `namespace/name` with `spec` (what the daemon writes):
    /// `v2:` + hex HMAC-SHA256 over the run's identity and `status.stoppedBy`.
    pub fn seal_status(
        &self,
        namespace: &str,
        name: &str,
        spec: &RunSpec,
        status: &RunStatus,
    ) -> String {
        self.sign(
            "v2",
            &RunSeal::message_v2(namespace, name, spec, status.stopped_by.as_ref()),
        )
    }

    fn message(namespace: &str, name: &str, spec: &RunSpec) -> Vec<u8> {
        // serde_json writes struct fields in order and BTreeMap keys sorted: canonical.
        serde_json::to_vec(&serde_json::json!({
            "v": 1,
            "namespace": namespace,
            "name": name,
            "spec": spec,
        }))
        .unwrap_or_default()
    }

    /// The identity seal of the run `namespace/name` with `spec`, as status formats 1 and 2
    /// carry it: `v1:` + hex HMAC-SHA256.
    pub fn seal(&self, namespace: &str, name: &str, spec: &RunSpec) -> String {
        self.sign("v1", &RunSeal::message(namespace, name, spec))
    }

    /// Checks the seal in `run`'s status against its namespace, name and spec, and for a `v2:`
    /// seal its `stoppedBy` (in constant time). A `v1:` seal does not cover `stoppedBy`: on a
    /// status that has one it does not verify.
    pub fn check(&self, run: &Run) -> SealCheck {
        let Some(status) = run.status.as_ref() else {
            return SealCheck::Missing;
        };
        let Some(seal) = status.seal.as_deref() else {
            return SealCheck::Missing;
        };
        let namespace = run.metadata.namespace.as_deref().unwrap_or_default();
        let name = run.metadata.name.as_deref().unwrap_or_default();
        let (tag, message) = if let Some(hex) = seal.strip_prefix("v2:") {
            (
                decode_hex(hex),
                RunSeal::message_v2(namespace, name, &run.spec, status.stopped_by.as_ref()),
            )
        } else if let Some(hex) = seal.strip_prefix("v1:")
            && status.stopped_by.is_none()
        {
            (
                decode_hex(hex),
                RunSeal::message(namespace, name, &run.spec),
            )
        } else {
            return SealCheck::Invalid;
        };
        let Some(tag) = tag else {
            return SealCheck::Invalid;
        };
        match ring::hmac::verify(&self.key, &message, &tag) {
            Ok(()) => SealCheck::Valid,
            Err(_) => SealCheck::Invalid,
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Why writing the mirror failed.
#[derive(Debug, thiserror::Error)]
pub enum RunMirrorError {
    /// The `runs.ripcord.dev` CRD is not installed (the API server answered 404).
    #[error(
        "the runs.ripcord.dev CRD is not installed (install it with `ripcord crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    /// Creating the `Run` failed.
    #[error("creating Run {namespace}/{name} failed")]
    Create {
        /// The namespace.
        namespace: String,
        /// The run id.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the `Run` status failed.
    #[error("updating the status of Run {namespace}/{name} failed")]
    PatchStatus {
        /// The namespace.
        namespace: String,
        /// The run id.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Installing the CRD failed.
    #[error("installing the runs.ripcord.dev CRD failed")]
    InstallCrd {
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A call did not answer within its timeout.
    #[error("{operation} Run {name} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The run id.
        name: String,
        /// The bound.
        after: Duration,
    },
    /// The CRD could not be rendered as YAML.
    #[error("cannot render the CRD as YAML: {message}")]
    Render {
        /// The serializer's message.
        message: String,
    },
}

impl RunMirrorError {
    /// A stable category for journal records and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            RunMirrorError::CrdMissing => "crd-missing",
            RunMirrorError::Create { .. } | RunMirrorError::PatchStatus { .. } => "api",
            RunMirrorError::InstallCrd { .. } => "install-crd",
            RunMirrorError::Timeout { .. } => "timeout",
            RunMirrorError::Render { .. } => "render",
        }
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Whether the cluster serves the `runs.ripcord.dev` CRD, learnt once and shared by every run
/// of an engine (issue 18): the first `Run` create answered 404, or a discovery probe said so.
/// While it is known to be absent, the mirror makes no request at all; the finding is
/// forgotten after [`RUN_CRD_RECHECK`] (a long-lived daemon notices a CRD installed later).
#[derive(Debug, Clone, Default)]
pub struct RunCrdPresence(std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>);

/// How long a "CRD absent" finding holds before the next run tries again.
pub const RUN_CRD_RECHECK: Duration = Duration::from_secs(600);

impl RunCrdPresence {
    /// Records that the CRD is not served (now).
    pub fn mark_absent(&self) {
        if let Ok(mut at) = self.0.lock() {
            *at = Some(std::time::Instant::now());
        }
    }

    /// True while a "not served" finding is fresh: skip the mirror.
    pub fn known_absent(&self) -> bool {
        self.0
            .lock()
            .map(|at| at.is_some_and(|t| t.elapsed() < RUN_CRD_RECHECK))
            .unwrap_or(false)
    }
}

/// Asks discovery whether the API server serves `runs` in `ripcord.dev/v1alpha1` (one GET of
/// the group version). An error answer from the server (404: the group is not served) is
/// `Ok(false)`; only a transport failure or a timeout is an error, so the call doubles as the
/// CLI's "is the cluster reachable" probe.
pub async fn crd_served(client: &kube::Client, timeout: Duration) -> Result<bool, RunProbeError> {
    let group_version = format!(
        "{}/{}",
        <Run as kube::Resource>::group(&()),
        <Run as kube::Resource>::version(&())
    );
    match tokio::time::timeout(timeout, client.list_api_group_resources(&group_version)).await {
        Err(_) => Err(RunProbeError::Timeout { after: timeout }),
        Ok(Ok(list)) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == <Run as kube::Resource>::plural(&()))),
        Ok(Err(kube::Error::Api(_))) => Ok(false),
        Ok(Err(source)) => Err(RunProbeError::Unreachable { source }),
    }
}

/// Why the discovery probe of [`crd_served`] got no answer from the API server.
#[derive(Debug, thiserror::Error)]
pub enum RunProbeError {
    /// The request did not reach the server (connection, TLS, auth plumbing).
    #[error("the API server could not be reached")]
    Unreachable {
        /// The transport error.
        #[source]
        source: kube::Error,
    },
    /// The server did not answer in time.
    #[error("the API server did not answer within {after:?}")]
    Timeout {
        /// The bound.
        after: Duration,
    },
}

/// Creates the `Run` (an existing one — a resumed run — is kept).
pub async fn create_run(
    client: &kube::Client,
    namespace: &str,
    run: &Run,
    timeout: Duration,
) -> Result<(), RunMirrorError> {
    let api: Api<Run> = Api::namespaced(client.clone(), namespace);
    let name = run.metadata.name.clone().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match tokio::time::timeout(timeout, api.create(&params, run)).await {
        Err(_) => Err(RunMirrorError::Timeout {
            operation: "create",
            name,
            after: timeout,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => Ok(()),
        Ok(Err(err)) if is_not_found(&err) => Err(RunMirrorError::CrdMissing),
        Ok(Err(source)) => Err(RunMirrorError::Create {
            namespace: namespace.to_string(),
            name,
            source,
        }),
    }
}

/// Replaces the `Run`'s status (bounded) through the status subresource.
pub async fn write_status(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: &RunStatus,
    timeout: Duration,
) -> Result<(), RunMirrorError> {
    let api: Api<Run> = Api::namespaced(client.clone(), namespace);
    let patch = status_patch(status);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match tokio::time::timeout(
        timeout,
        api.patch_status(name, &params, &Patch::Merge(&patch)),
    )
    .await
    {
        Err(_) => Err(RunMirrorError::Timeout {
            operation: "update status of",
            name: name.to_string(),
            after: timeout,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) if is_not_found(&err) => Err(RunMirrorError::CrdMissing),
        Ok(Err(source)) => Err(RunMirrorError::PatchStatus {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        }),
    }
}

/// The merge patch that writes `status` (bounded, in the current format version). A field
/// that must not outlive the status that set it is written as `null` (removed) when absent:
/// `stoppedBy` (a run taken over and then cancelled by a person must not still read as stopped
/// by a daemon).
pub fn status_patch(status: &RunStatus) -> serde_json::Value {
    let mut status = status.clone().bounded();
    status.format_version = Format::RunStatus.current();
    // Serializing a status cannot fail; were it to, `{}` changes nothing.
    let mut value = serde_json::to_value(&status).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(fields) = value.as_object_mut() {
        fields.entry("stoppedBy").or_insert(serde_json::Value::Null);
    }
    serde_json::json!({ "status": value })
}

/// Most `Run` resources asked for per list page.
pub const LIST_PAGE_SIZE: u32 = 500;

/// Why listing `Run` resources failed.
#[derive(Debug, thiserror::Error)]
pub enum RunListError {
    /// The `runs.ripcord.dev` CRD is not installed (the API server answered 404): the cluster
    /// holds no `Run` resources.
    #[error(
        "the runs.ripcord.dev CRD is not installed (install it with `ripcord crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    /// A list call failed.
    #[error("listing Run resources in {scope} failed")]
    List {
        /// `all namespaces` or `namespace NAME`.
        scope: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A list call did not answer within its timeout.
    #[error("listing Run resources in {scope} timed out after {after:?}")]
    Timeout {
        /// `all namespaces` or `namespace NAME`.
        scope: String,
        /// The bound (per page).
        after: Duration,
    },
}

impl RunListError {
    /// A stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            RunListError::CrdMissing => "crd-missing",
            RunListError::List { .. } => "api",
            RunListError::Timeout { .. } => "timeout",
        }
    }

    /// True when the API server could not be reached (transport failure or timeout), as
    /// opposed to an answer that refused the request.
    pub fn is_unreachable(&self) -> bool {
        match self {
            RunListError::Timeout { .. } => true,
            RunListError::List { source, .. } => {
                matches!(source, kube::Error::HyperError(_) | kube::Error::Service(_))
            }
            RunListError::CrdMissing => false,
        }
    }
}

/// Lists the `Run` resources of one namespace (`Some`) or of every namespace (`None`), page by
/// page ([`LIST_PAGE_SIZE`] per page), each call bounded by `timeout`.
pub async fn list_runs(
    client: &kube::Client,
    namespace: Option<&str>,
    timeout: Duration,
) -> Result<Vec<Run>, RunListError> {
    list_runs_paged(client, namespace, LIST_PAGE_SIZE, timeout).await
}

/// [`list_runs`] with a chosen page size (at least 1).
pub async fn list_runs_paged(
    client: &kube::Client,
    namespace: Option<&str>,
    page_size: u32,
    timeout: Duration,
) -> Result<Vec<Run>, RunListError> {
    let (api, scope): (Api<Run>, String) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            format!("namespace {ns}"),
        ),
        None => (Api::all(client.clone()), "all namespaces".to_string()),
    };
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(page_size.max(1));
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = match tokio::time::timeout(timeout, api.list(&params)).await {
            Err(_) => {
                return Err(RunListError::Timeout {
                    scope,
                    after: timeout,
                });
            }
            Ok(Ok(page)) => page,
            Ok(Err(err)) if is_not_found(&err) => return Err(RunListError::CrdMissing),
            Ok(Err(source)) => return Err(RunListError::List { scope, source }),
        };
        out.extend(page.items);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
            _ => break,
        }
    }
    Ok(out)
}

/// The CRD as YAML (what `ripcord crd` prints and the chart ships).
pub fn crd_yaml() -> Result<String, RunMirrorError> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&Run::crd()).map_err(|e| RunMirrorError::Render {
        message: e.to_string(),
    })
}

/// Installs (or replaces) the CRD through server-side apply — for the sim, `demo` and tests;
/// production clusters get it from the Helm chart.
pub async fn install_crd(client: &kube::Client, timeout: Duration) -> Result<(), RunMirrorError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Run::crd();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match tokio::time::timeout(timeout, api.create(&params, &crd)).await {
        Err(_) => Err(RunMirrorError::Timeout {
            operation: "install CRD for",
            name: "runs.ripcord.dev".into(),
            after: timeout,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => Ok(()),
        Ok(Err(source)) => Err(RunMirrorError::InstallCrd { source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_bounded_with_counts() {
        let step = StepStatus {
            name: "drain".into(),
            phase: "Verified".into(),
            mutations: (0..30)
                .map(|i| MutationStatus {
                    id: format!("m{i}"),
                    target: "node/a".into(),
                    inverse: Some(
                        serde_json::json!({"type": "none", "reason": "x".repeat(i * 100)}),
                    ),
                    inverse_omitted: false,
                })
                .collect(),
            omitted_mutations: 0,
            error: None,
        };
        let status = RunStatus {
            phase: "Running".into(),
            steps: vec![step; 60],
            ..RunStatus::default()
        }
        .bounded();
        assert_eq!(status.steps.len(), MAX_STEPS);
        assert_eq!(status.omitted_steps, 10);
        assert_eq!(status.steps[0].mutations.len(), MAX_MUTATIONS_PER_STEP);
        assert_eq!(status.steps[0].omitted_mutations, 10);
        // Small inverses are kept as they are; one too large is left out, and says so.
        let kept = &status.steps[0].mutations[9];
        assert!(kept.inverse.is_some() && !kept.inverse_omitted);
        assert!(kept.inverse().is_ok());
        let left_out = &status.steps[0].mutations[11];
        assert_eq!(left_out.inverse, None);
        assert!(left_out.inverse_omitted);
        assert_eq!(left_out.inverse(), Err(InverseUnavailable::Omitted));
    }

    fn run(namespace: &str, name: &str, zone: &str) -> Run {
        let mut run = Run::new(
            name,
            RunSpec {
                playbook: "failout-zone".into(),
                params: [("zone".to_string(), zone.to_string())].into(),
                trigger: "api".into(),
                who: "api/oncall".into(),
                incident: None,
            },
        );
        run.metadata.namespace = Some(namespace.into());
        run
    }

    #[test]
    fn issue13_seal_binds_the_run_identity() {
        let key = RunSeal::new(&[7u8; 32]);
        let mut sealed = run("shop", "r-20261202-100000-abcd", "zone-a");
        sealed.status = Some(RunStatus {
            phase: "Running".into(),
            seal: Some(key.seal("shop", "r-20261202-100000-abcd", &sealed.spec)),
            ..RunStatus::default()
        });
        assert_eq!(key.check(&sealed), SealCheck::Valid);
        // No status, no seal.
        assert_eq!(
            key.check(&run("shop", "r-20261202-100000-abcd", "zone-a")),
            SealCheck::Missing
        );
        // The seal copied onto other parameters, another name or namespace.
        let mut other = sealed.clone();
        other.spec.params.insert("zone".into(), "zone-b".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
        let mut other = sealed.clone();
        other.metadata.name = Some("r-20261202-100000-ffff".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
        let mut other = sealed.clone();
        other.metadata.namespace = Some("kube-system".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
        // Another key.
        assert_eq!(RunSeal::new(&[8u8; 32]).check(&sealed), SealCheck::Invalid);
        // Garbage.
        let mut other = sealed.clone();
        other.status.as_mut().unwrap().seal = Some("v1:zz".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
    }

    #[test]
    fn issue14_the_phase_is_an_enum_that_keeps_unknown_values_as_read() {
        for (text, phase) in [
            ("Running", RunPhase::Running),
            ("Finished", RunPhase::Finished),
            ("Paused", RunPhase::Other("Paused".into())),
        ] {
            let status: RunStatus =
                serde_json::from_value(serde_json::json!({"phase": text})).unwrap();
            assert_eq!(status.phase, phase);
            assert_eq!(serde_json::to_value(&status).unwrap()["phase"], text);
        }
        // The CRD still declares a string.
        let crd = serde_json::to_value(<Run as kube::CustomResourceExt>::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"]["phase"];
        assert_eq!(schema["type"], "string", "{schema}");
    }

    #[test]
    fn issue14_status_format_version_absent_is_v1_newer_is_refused() {
        let old: RunStatus =
            serde_json::from_value(serde_json::json!({"phase": "Running"})).unwrap();
        assert_eq!(old.check_format("Run shop/r"), Ok(FormatVersion::V1));
        let newer: RunStatus =
            serde_json::from_value(serde_json::json!({"phase": "Running", "formatVersion": 4}))
                .unwrap();
        let err = newer.check_format("Run shop/r").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Run shop/r: Run status format version 4"),
            "{err}"
        );
        assert!(
            RunStatus::check_format_json(&serde_json::json!({"formatVersion": 4}), "x").is_err()
        );
        for readable in [1, 2, 3] {
            assert!(
                RunStatus::check_format_json(&serde_json::json!({"formatVersion": readable}), "x")
                    .is_ok()
            );
        }
        // The seal covers namespace, name and spec, not the status: adding the version to the
        // status changes no seal, old or new.
        let key = RunSeal::new(&[7u8; 32]);
        let mut sealed = run("shop", "r-20261202-100000-abcd", "zone-a");
        let seal = key.seal("shop", "r-20261202-100000-abcd", &sealed.spec);
        sealed.status = Some(RunStatus {
            seal: Some(seal),
            ..old
        });
        assert_eq!(key.check(&sealed), SealCheck::Valid);
        sealed.status.as_mut().unwrap().format_version = Format::RunStatus.current();
        assert_eq!(key.check(&sealed), SealCheck::Valid);
    }

    #[test]
    fn issue14_step_phases_are_an_enum_that_keeps_unknown_values_as_read() {
        for (text, phase) in [
            ("Pending", StepPhase::Pending),
            ("Running", StepPhase::Running),
            ("Verified", StepPhase::Verified),
            ("AlreadySatisfied", StepPhase::AlreadySatisfied),
            ("Failed", StepPhase::Failed),
            ("Stopped", StepPhase::Stopped),
            ("Refused", StepPhase::Refused),
            ("Skipped", StepPhase::Other("Skipped".into())),
        ] {
            let step: StepStatus =
                serde_json::from_value(serde_json::json!({"name": "s", "phase": text})).unwrap();
            assert_eq!(step.phase, phase);
            assert_eq!(serde_json::to_value(&step).unwrap()["phase"], text);
        }
        let crd = serde_json::to_value(<Run as kube::CustomResourceExt>::crd()).unwrap();
        let step = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"]["steps"]["items"]["properties"];
        assert_eq!(step["phase"]["type"], "string", "{step}");
    }

    #[test]
    fn issue14_inverses_read_from_every_version() {
        let inverse = Inverse::MergePatch {
            patch: serde_json::json!({"spec": {"unschedulable": null}}),
            expected: serde_json::json!({"spec": {"unschedulable": true}}),
        };
        // Version 3: structured, as the journal has it.
        let v3 = MutationStatus::new("cordon/a", "node/a", &inverse);
        let written = serde_json::to_value(&v3).unwrap();
        assert_eq!(written["inverse"]["type"], "mergePatch", "{written}");
        assert!(written.get("inverseOmitted").is_none(), "{written}");
        assert_eq!(v3.inverse(), Ok(inverse.clone()));
        // Versions 1 and 2: JSON text, whole or cut.
        let text = serde_json::to_string(&inverse).unwrap();
        let v2: MutationStatus = serde_json::from_value(
            serde_json::json!({"id": "cordon/a", "target": "node/a", "inverse": text}),
        )
        .unwrap();
        assert_eq!(v2.inverse(), Ok(inverse.clone()));
        let long = serde_json::to_string(&Inverse::None {
            reason: "y".repeat(3000),
        })
        .unwrap();
        let v2_cut: MutationStatus = serde_json::from_value(
            serde_json::json!({"id": "x", "target": "node/a", "inverse": cut(&long)}),
        )
        .unwrap();
        assert_eq!(v2_cut.inverse(), Err(InverseUnavailable::Cut));
        // Version 3, left out; and neither an inverse nor a marker.
        let omitted: MutationStatus = serde_json::from_value(
            serde_json::json!({"id": "x", "target": "node/a", "inverseOmitted": true}),
        )
        .unwrap();
        assert_eq!(omitted.inverse(), Err(InverseUnavailable::Omitted));
        assert!(
            omitted
                .inverse()
                .unwrap_err()
                .to_string()
                .contains("journal")
        );
        let bare: MutationStatus =
            serde_json::from_value(serde_json::json!({"id": "x", "target": "node/a"})).unwrap();
        assert_eq!(bare.inverse(), Err(InverseUnavailable::Missing));
        let odd: MutationStatus = serde_json::from_value(
            serde_json::json!({"id": "x", "target": "node/a", "inverse": {"type": "teleport"}}),
        )
        .unwrap();
        assert!(matches!(
            odd.inverse(),
            Err(InverseUnavailable::Unreadable(_))
        ));
        // A large inverse is left out by the bound, not cut.
        let big = MutationStatus::new(
            "x",
            "node/a",
            &Inverse::None {
                reason: "z".repeat(2000),
            },
        );
        let status = RunStatus {
            steps: vec![StepStatus {
                name: "s".into(),
                mutations: vec![big, v3],
                ..StepStatus::default()
            }],
            ..RunStatus::default()
        }
        .bounded();
        assert!(status.steps[0].mutations[0].inverse_omitted);
        assert_eq!(status.steps[0].mutations[0].inverse, None);
        assert_eq!(status.steps[0].mutations[1].inverse(), Ok(inverse));
        // The CRD keeps the inverse as written (structural: no pruning).
        let crd = serde_json::to_value(<Run as kube::CustomResourceExt>::crd()).unwrap();
        let m = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
            ["steps"]["items"]["properties"]["mutations"]["items"]["properties"];
        assert_eq!(
            m["inverse"]["x-kubernetes-preserve-unknown-fields"], true,
            "{m}"
        );
        assert!(m["inverse"].get("type").is_none(), "{m}");
        assert_eq!(m["inverseOmitted"]["type"], "boolean", "{m}");
    }

    #[test]
    fn issue14_stopped_by_is_a_field_read_for_v3_and_the_message_for_v1_and_v2() {
        let daemon = |reason: &str| serde_json::json!({"kind": "daemon", "reason": reason});
        for (wire, parsed) in [
            (daemon("shutdown"), StoppedBy::Daemon(DaemonStop::Shutdown)),
            (
                daemon("lostLeadership"),
                StoppedBy::Daemon(DaemonStop::LostLeadership),
            ),
            (
                daemon("upgrade"),
                StoppedBy::Other {
                    kind: "daemon".into(),
                    reason: "upgrade".into(),
                },
            ),
            (
                serde_json::json!({"kind": "person", "reason": "cancel"}),
                StoppedBy::Other {
                    kind: "person".into(),
                    reason: "cancel".into(),
                },
            ),
        ] {
            let read: StoppedBy = serde_json::from_value(wire.clone()).unwrap();
            assert_eq!(read, parsed);
            assert_eq!(serde_json::to_value(&read).unwrap(), wire);
        }
        let status = |version: u32, outcome: &str, message: &str, stopped_by: Option<Value>| {
            let mut s = serde_json::json!({"formatVersion": version, "phase": "Finished",
                "outcome": outcome, "message": message});
            if let Some(by) = stopped_by {
                s["stoppedBy"] = by;
            }
            serde_json::from_value::<RunStatus>(s).unwrap()
        };
        use serde_json::Value;
        let lost = "interrupted by ripcord daemon (lost leadership); resume with: ripcord run --resume r-1";
        let shutdown =
            "interrupted by ripcord daemon (shutdown); resume with: ripcord run --resume r-1";
        let person = "interrupted by api/oncall; resume with: ripcord run --resume r-1";
        // Versions 1 and 2: the message.
        for v in [1, 2] {
            assert_eq!(
                status(v, "interrupted", lost, None).daemon_stop(),
                Some(DaemonStop::LostLeadership)
            );
            assert_eq!(
                status(v, "interrupted", shutdown, None).daemon_stop(),
                Some(DaemonStop::Shutdown)
            );
            assert_eq!(status(v, "interrupted", person, None).daemon_stop(), None);
            assert_eq!(status(v, "failed", lost, None).daemon_stop(), None);
        }
        // Version 3: the field only; the same message without it is a person's stop.
        assert_eq!(
            status(3, "interrupted", lost, Some(daemon("lostLeadership"))).daemon_stop(),
            Some(DaemonStop::LostLeadership)
        );
        assert_eq!(status(3, "interrupted", lost, None).daemon_stop(), None);
        assert_eq!(
            status(3, "interrupted", person, Some(daemon("upgrade"))).daemon_stop(),
            None
        );
        // The CRD declares it, so the API server keeps it.
        let crd = serde_json::to_value(<Run as kube::CustomResourceExt>::crd()).unwrap();
        let by = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
            ["stoppedBy"];
        assert_eq!(by["type"], "object", "{by}");
        assert_eq!(by["properties"]["kind"]["type"], "string", "{by}");
        assert_eq!(by["properties"]["reason"]["type"], "string", "{by}");
    }

    #[test]
    fn issue14_the_seal_covers_stopped_by() {
        let key = RunSeal::new(&[7u8; 32]);
        let name = "r-20261202-100000-abcd";
        let mut sealed = run("shop", name, "zone-a");
        let mut status = RunStatus {
            format_version: Format::RunStatus.current(),
            phase: RunPhase::Finished,
            outcome: Some("interrupted".into()),
            stopped_by: Some(StoppedBy::Daemon(DaemonStop::LostLeadership)),
            ..RunStatus::default()
        };
        status.seal = Some(key.seal_status("shop", name, &sealed.spec, &status));
        assert!(status.seal.as_deref().unwrap().starts_with("v2:"));
        sealed.status = Some(status);
        assert_eq!(key.check(&sealed), SealCheck::Valid);
        // The stop cause changed, added or removed after sealing: not ours.
        let mut other = sealed.clone();
        other.status.as_mut().unwrap().stopped_by = Some(StoppedBy::Daemon(DaemonStop::Shutdown));
        assert_eq!(key.check(&other), SealCheck::Invalid);
        let mut other = sealed.clone();
        other.status.as_mut().unwrap().stopped_by = None;
        assert_eq!(key.check(&other), SealCheck::Invalid);
        let mut unsealed_stop = sealed.clone();
        let s = unsealed_stop.status.as_mut().unwrap();
        s.stopped_by = None;
        s.seal = Some(key.seal_status("shop", name, &unsealed_stop.spec, s));
        assert_eq!(key.check(&unsealed_stop), SealCheck::Valid);
        unsealed_stop.status.as_mut().unwrap().stopped_by =
            Some(StoppedBy::Daemon(DaemonStop::Shutdown));
        assert_eq!(key.check(&unsealed_stop), SealCheck::Invalid);
        // An identity seal (`v1:`, formats 1 and 2) does not cover a stoppedBy.
        let mut v1 = sealed.clone();
        v1.status.as_mut().unwrap().seal = Some(key.seal("shop", name, &v1.spec));
        assert_eq!(key.check(&v1), SealCheck::Invalid);
        v1.status.as_mut().unwrap().stopped_by = None;
        assert_eq!(key.check(&v1), SealCheck::Valid);
        // Another run's identity, or another key.
        let mut other = sealed.clone();
        other.metadata.name = Some("r-20261202-100000-ffff".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
        assert_eq!(RunSeal::new(&[8u8; 32]).check(&sealed), SealCheck::Invalid);
    }

    #[test]
    fn issue14_the_status_patch_is_v3_and_clears_a_stale_stopped_by() {
        let status = RunStatus {
            format_version: FormatVersion::V1,
            phase: RunPhase::Running,
            steps: vec![StepStatus {
                name: "cordon".into(),
                phase: StepPhase::Running,
                mutations: vec![MutationStatus::new(
                    "cordon/a",
                    "node/a",
                    &Inverse::None {
                        reason: "n/a".into(),
                    },
                )],
                ..StepStatus::default()
            }],
            ..RunStatus::default()
        };
        let patch = status_patch(&status);
        let written = &patch["status"];
        assert_eq!(written["formatVersion"], 3, "{patch}");
        assert_eq!(written["steps"][0]["phase"], "Running", "{patch}");
        assert_eq!(
            written["steps"][0]["mutations"][0]["inverse"]["type"], "none",
            "{patch}"
        );
        // A merge patch removes what a taken-over run's earlier process wrote.
        assert!(
            written.get("stoppedBy").is_some_and(|v| v.is_null()),
            "{patch}"
        );
        let stopped = RunStatus {
            stopped_by: Some(StoppedBy::Daemon(DaemonStop::Shutdown)),
            ..status
        };
        assert_eq!(
            status_patch(&stopped)["status"]["stoppedBy"],
            serde_json::json!({"kind": "daemon", "reason": "shutdown"})
        );
    }

    #[test]
    fn crd_has_group_kind_and_status_subresource() {
        let yaml = crd_yaml().unwrap();
        assert!(yaml.contains("name: runs.ripcord.dev"), "{yaml}");
        assert!(yaml.contains("status: {}"), "{yaml}");
        assert!(yaml.contains("v1alpha1"), "{yaml}");
        assert!(yaml.contains("formatVersion:"), "{yaml}");
    }

    #[test]
    fn committed_crd_is_up_to_date() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/ripcord/crds/runs.ripcord.dev.yaml"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = crd_yaml().unwrap();
        assert!(
            committed == generated,
            "{path} is stale; regenerate it with `cargo run -- crd > charts/ripcord/crds/runs.ripcord.dev.yaml`"
        );
    }
}
