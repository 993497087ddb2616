//! The typed records of a run journal.
//!
//! Every line of `journal.jsonl` is one [`Entry`]: a sequence number, a timestamp and a
//! [`Record`] whose serde tag `type` names the record kind, preceded on disk by the line's
//! format version `v` (written and checked by [`crate::journal`], see
//! [`crate::journal::format`]). The journal stores facts only; it
//! never interprets them (the engine and cleanup do).

use crate::journal::approval::ApprovalSource;
pub use crate::model::Outcome;
use crate::model::{Applied, Inverse, Mutation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// 1-based position in the journal; strictly increasing.
    pub seq: u64,
    /// When the record was appended.
    pub at: jiff::Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub record: Record,
}

/// The result of one notification delivery, without the channel's URL (a secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The channel's name.
    pub channel: String,
    /// Whether the receiver accepted it.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One journal record. The serde tag `type` names the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Record {
    /// The run began. `params` has secret-looking values redacted; `plan` is the full
    /// [`crate::plan::Plan`] (as JSON) that `--resume` reloads.
    RunStarted {
        /// The run id (`r-YYYYMMDD-HHMMSS-xxxxxxxxxxxx`).
        run_id: String,
        /// The playbook's name.
        playbook: String,
        /// What started it (`cli`, `api`, `alertmanager`, `schedule`).
        trigger: String,
        /// Who started it.
        who: String,
        /// The incident id, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<String>,
        /// The parameters, secrets redacted.
        params: BTreeMap<String, serde_json::Value>,
        /// The plan executed.
        plan: serde_json::Value,
    },
    /// A resumed process continues the run.
    RunResumed {
        /// Who resumed it.
        who: String,
    },
    /// Notifications were sent (channel names and results only, never URLs).
    Notified {
        /// `started`, `step`, `finished`.
        phase: String,
        /// One result per channel.
        deliveries: Vec<DeliveryRecord>,
    },
    /// An evidence snapshot was written.
    SnapshotTaken {
        /// The snapshot directory.
        dir: String,
        /// `targets` (fast, before the first mutation) or `rest` (broad, concurrent).
        phase: String,
        /// How many objects/files were captured.
        captured: usize,
        /// What could not be captured, with the reason.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<String>,
    },
    /// The snapshot failed as a whole (the run continues).
    SnapshotFailed {
        /// `targets` or `rest`.
        phase: String,
        /// Why.
        error: String,
    },
    /// A step's diff, computed before its mutations.
    StepPlanned {
        /// The step's name.
        step: String,
        /// The catalog action.
        action: String,
        /// One line for people.
        summary: String,
        /// A readable diff of the mutations needed now.
        diff: String,
    },
    /// Write-ahead: a mutation is about to be sent to the API server.
    MutationIntended {
        /// The step's name.
        step: String,
        /// The mutation, with its pre-image and inverse.
        mutation: Mutation,
    },
    /// A mutation reached the API server.
    MutationApplied {
        /// The step's name.
        step: String,
        /// The mutation's id.
        mutation_id: String,
        /// The result.
        applied: Applied,
        /// resourceVersion observed before the write.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_version_before: Option<String>,
        /// How cleanup reverts it.
        inverse: Inverse,
        /// True when a resumed run found the write already in effect (the process died after
        /// sending it but before journaling the result).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recovered: bool,
    },
    /// A step's change took effect (verify passed, the diff is empty).
    StepVerified {
        /// The step's name.
        step: String,
    },
    /// A `gate.approval` step was acknowledged by one of its approvers (journaled once per
    /// step, after the gate's verify passed and before its `StepVerified`).
    Approved {
        /// The step's name.
        step: String,
        /// Who acknowledged.
        by: String,
        /// When they acknowledged (RFC 3339, as written in the ACK; the entry's own `at` is
        /// when the engine journaled it).
        acked_at: String,
        /// Where the engine found the ACK.
        source: ApprovalSource,
        /// The approver's comment, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// A step needed no change.
    StepAlreadySatisfied {
        /// The step's name.
        step: String,
        /// What was observed.
        summary: String,
    },
    /// A step failed.
    StepFailed {
        /// The step's name.
        step: String,
        /// The error chain, for people.
        error: String,
        /// The stable error category.
        category: String,
    },
    /// A guard stopped or refused the run.
    GuardTripped {
        /// The guard's name.
        guard: String,
        /// `preCheck` or `stopCondition`.
        kind: String,
        /// The observed value, if the query succeeded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        /// Why, for people.
        reason: String,
    },
    /// A guard could not be evaluated (Prometheus unreachable, empty result).
    GuardUnavailable {
        /// The guard's name.
        guard: String,
        /// Why.
        error: String,
    },
    /// An inverse was applied by `onFailure: undo`.
    UndoApplied {
        /// The step whose mutation was reverted.
        step: String,
        /// The reverted mutation's id.
        mutation_id: String,
        /// Whether the revert succeeded.
        ok: bool,
        /// Why not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Writing the `Run` resource in the cluster failed (journaled once; the run continues).
    MirrorFailed {
        /// Why.
        error: String,
    },
    /// The run ended.
    RunFinished {
        /// How.
        outcome: Outcome,
        /// Wall time of this process's part of the run, in milliseconds.
        duration_ms: u64,
        /// Why, for people (the failing step, the tripped guard…).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Record {
    /// Whether [`crate::journal::Journal::append`] must `fsync` this record before returning:
    /// the write-ahead intent of a mutation, an undo, an approval, a failure, a guard and the
    /// run's end. The others are informational and made durable by the next of these (see the
    /// module docs of [`crate::journal`]).
    pub fn must_be_durable(&self) -> bool {
        match self {
            Record::MutationIntended { .. }
            | Record::UndoApplied { .. }
            | Record::Approved { .. }
            | Record::StepFailed { .. }
            | Record::GuardTripped { .. }
            | Record::GuardUnavailable { .. }
            | Record::RunFinished { .. } => true,
            Record::RunStarted { .. }
            | Record::RunResumed { .. }
            | Record::Notified { .. }
            | Record::SnapshotTaken { .. }
            | Record::SnapshotFailed { .. }
            | Record::StepPlanned { .. }
            | Record::MutationApplied { .. }
            | Record::StepVerified { .. }
            | Record::StepAlreadySatisfied { .. }
            | Record::MirrorFailed { .. } => false,
        }
    }

    /// The serde tag of this record (`RunStarted`, `MutationIntended`…).
    pub fn kind(&self) -> &'static str {
        match self {
            Record::RunStarted { .. } => "RunStarted",
            Record::RunResumed { .. } => "RunResumed",
            Record::Notified { .. } => "Notified",
            Record::SnapshotTaken { .. } => "SnapshotTaken",
            Record::SnapshotFailed { .. } => "SnapshotFailed",
            Record::StepPlanned { .. } => "StepPlanned",
            Record::MutationIntended { .. } => "MutationIntended",
            Record::MutationApplied { .. } => "MutationApplied",
            Record::StepVerified { .. } => "StepVerified",
            Record::Approved { .. } => "Approved",
            Record::StepAlreadySatisfied { .. } => "StepAlreadySatisfied",
            Record::StepFailed { .. } => "StepFailed",
            Record::GuardTripped { .. } => "GuardTripped",
            Record::GuardUnavailable { .. } => "GuardUnavailable",
            Record::UndoApplied { .. } => "UndoApplied",
            Record::MirrorFailed { .. } => "MirrorFailed",
            Record::RunFinished { .. } => "RunFinished",
        }
    }

    /// One line for people, used by `ripcord runs show`.
    pub fn describe(&self) -> String {
        match self {
            Record::RunStarted {
                playbook,
                who,
                trigger,
                incident,
                ..
            } => {
                let incident = incident
                    .as_deref()
                    .map(|i| format!(", incident {i}"))
                    .unwrap_or_default();
                format!("run started: playbook {playbook} by {who} via {trigger}{incident}")
            }
            Record::RunResumed { who } => format!("run resumed by {who}"),
            Record::Notified { phase, deliveries } => {
                let parts: Vec<String> = deliveries
                    .iter()
                    .map(|d| match (&d.ok, &d.error) {
                        (true, _) => format!("{} ok", d.channel),
                        (false, Some(e)) => format!("{} failed ({e})", d.channel),
                        (false, None) => format!("{} failed", d.channel),
                    })
                    .collect();
                format!("notified ({phase}): {}", parts.join(", "))
            }
            Record::SnapshotTaken {
                dir,
                phase,
                captured,
                failed,
            } => format!(
                "snapshot ({phase}): {captured} captured, {} failed, in {dir}",
                failed.len()
            ),
            Record::SnapshotFailed { phase, error } => {
                format!("snapshot ({phase}) failed: {error}")
            }
            Record::StepPlanned {
                step,
                action,
                summary,
                ..
            } => format!("[{step}] {action}: {summary}"),
            Record::MutationIntended { step, mutation } => {
                format!(
                    "[{step}] intend: {} ({})",
                    mutation.description, mutation.target
                )
            }
            Record::MutationApplied {
                step,
                mutation_id,
                applied,
                recovered,
                ..
            } => {
                let rv = applied
                    .resource_version_after
                    .as_deref()
                    .map(|rv| format!(", resourceVersion {rv}"))
                    .unwrap_or_default();
                let recovered = if *recovered {
                    " (recovered on resume)"
                } else {
                    ""
                };
                format!(
                    "[{step}] applied {mutation_id} to {}{rv}{recovered}",
                    applied.target
                )
            }
            Record::StepVerified { step } => format!("[{step}] verified"),
            Record::Approved {
                step,
                by,
                acked_at,
                source,
                comment,
            } => {
                let comment = comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                format!("[{step}] approved by {by} at {acked_at} (via {source}){comment}")
            }
            Record::StepAlreadySatisfied { step, summary } => {
                format!("[{step}] already satisfied: {summary}")
            }
            Record::StepFailed {
                step,
                error,
                category,
            } => format!("[{step}] failed ({category}): {error}"),
            Record::GuardTripped {
                guard,
                kind,
                reason,
                ..
            } => format!("guard {guard} ({kind}) tripped: {reason}"),
            Record::GuardUnavailable { guard, error } => {
                format!("guard {guard} could not be evaluated: {error}")
            }
            Record::UndoApplied {
                step,
                mutation_id,
                ok,
                error,
            } => match (ok, error) {
                (true, _) => format!("[{step}] undone {mutation_id}"),
                (false, e) => format!(
                    "[{step}] undo of {mutation_id} failed: {}",
                    e.as_deref().unwrap_or("unknown error")
                ),
            },
            Record::MirrorFailed { error } => format!("Run resource mirror failed: {error}"),
            Record::RunFinished {
                outcome,
                duration_ms,
                reason,
            } => {
                let reason = reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                format!(
                    "run finished: {outcome} after {:.1}s{reason}",
                    *duration_ms as f64 / 1000.0
                )
            }
        }
    }
}

/// Parameter names that look like secrets: their values are journaled as `"<redacted>"`.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "secret",
        "token",
        "password",
        "passwd",
        "apikey",
        "api_key",
        "api-key",
        "credential",
        "auth",
        "private",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// What redacted values are replaced by.
pub const REDACTED: &str = "<redacted>";

/// `text` with the credentials of every URL in it (`scheme://user:password@host`) replaced by
/// [`REDACTED`]; `None` when it holds none.
pub fn redact_url_credentials(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) if at > 0 => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
                changed = true;
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// `value` with every string holding URL credentials redacted (recursively); true when
/// something was.
pub fn redact_urls_in(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => match redact_url_credentials(s) {
            Some(clean) => {
                *s = clean;
                true
            }
            None => false,
        },
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, v| redact_urls_in(v) | acc),
        serde_json::Value::Object(map) => map
            .values_mut()
            .fold(false, |acc, v| redact_urls_in(v) | acc),
        _ => false,
    }
}

/// A copy of `params` with secret-looking values replaced by `"<redacted>"`.
pub fn redact_params(
    params: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    params
        .iter()
        .map(|(k, v)| {
            if is_secret_name(k) {
                (k.clone(), serde_json::Value::String("<redacted>".into()))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::approval::ApprovalSource;

    #[test]
    fn url_credentials_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url_credentials("postgres://app:hunter2@db:5432/x?y=1").as_deref(),
            Some("postgres://<redacted>@db:5432/x?y=1")
        );
        assert_eq!(
            redact_url_credentials("a https://tok@github.com b http://ok.example/p").as_deref(),
            Some("a https://<redacted>@github.com b http://ok.example/p")
        );
        assert_eq!(redact_url_credentials("http://ok.example/a@b"), None);
        assert_eq!(redact_url_credentials("plain"), None);
    }

    #[test]
    fn an_approval_keeps_its_own_time_beside_the_entry_time() {
        let entry = Entry {
            seq: 7,
            at: jiff::Timestamp::UNIX_EPOCH,
            record: Record::Approved {
                step: "ack".into(),
                by: "ann".into(),
                acked_at: "2026-11-25T14:00:00Z".into(),
                source: ApprovalSource::File,
                comment: None,
            },
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["type"], "Approved");
        assert_eq!(json["source"], "file");
        assert_eq!(json["acked_at"], "2026-11-25T14:00:00Z");
        assert_eq!(json["at"], "1970-01-01T00:00:00Z");
        assert!(json.get("comment").is_none());
        let back: Entry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.record.kind(), "Approved");
        assert_eq!(
            back.record.describe(),
            "[ack] approved by ann at 2026-11-25T14:00:00Z (via file)"
        );
    }
}
