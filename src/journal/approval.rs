//! Approvals (ACKs of `gate.approval` steps) as files in a run's directory:
//! `<state-dir>/runs/<id>/approvals/<step>.json` holding `{runId, step, by, at, comment}`.
//!
//! One writer shared by the daemon's API, `ripcord approve` and the gate itself (which copies
//! an ACK given on the `Run` custom resource here, so that the run directory keeps who
//! approved and when). Files are written atomically (temporary file, then rename).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The annotation prefix on the `Run` custom resource carrying an ACK given from another
/// machine: `approvals.ripcord.dev/<step>` = the JSON of an [`Approval`].
pub const RUN_ANNOTATION_PREFIX: &str = "approvals.ripcord.dev/";

/// One ACK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The run.
    pub run_id: String,
    /// The `gate.approval` step.
    pub step: String,
    /// Who acknowledged.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// Where the gate found an ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalSource {
    /// The approval file in the run directory (`ripcord approve` here, or the daemon's API).
    File,
    /// The annotation on the run's `Run` custom resource (`ripcord approve` elsewhere).
    RunResource,
}

impl ApprovalSource {
    /// The kebab-case name used in journals and output (`file`, `run-resource`).
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalSource::File => "file",
            ApprovalSource::RunResource => "run-resource",
        }
    }
}

impl std::fmt::Display for ApprovalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ACK a gate accepted, with where it was found (what the engine journals as
/// [`super::Record::Approved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The accepted ACK.
    pub approval: Approval,
    /// Where it was found.
    pub source: ApprovalSource,
}

impl Acknowledgement {
    /// The journal record of this ACK.
    pub fn record(&self) -> super::Record {
        super::Record::Approved {
            step: self.approval.step.clone(),
            by: self.approval.by.clone(),
            acked_at: self.approval.at.clone(),
            source: self.source,
            comment: self.approval.comment.clone(),
        }
    }
}

/// Why an approval file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// Writing the file failed.
    #[error("cannot write approval {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading the file failed.
    #[error("cannot read approval {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an approval.
    #[error("approval {path} is not valid JSON")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl ApprovalError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            ApprovalError::Write { .. } => "approval-write",
            ApprovalError::Read { .. } => "approval-read",
            ApprovalError::Parse { .. } => "approval-parse",
        }
    }
}

/// `<state-dir>/runs/<id>/approvals/<step>.json` (characters other than ASCII letters, digits,
/// `-` and `_` in the step name become `_`).
pub fn approval_path(state_dir: &Path, run_id: &str, step: &str) -> PathBuf {
    let safe: String = step
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    super::run_dir(state_dir, run_id)
        .join("approvals")
        .join(format!("{safe}.json"))
}

/// The annotation key of `step`'s ACK on the `Run` custom resource.
pub fn run_annotation(step: &str) -> String {
    format!("{RUN_ANNOTATION_PREFIX}{step}")
}

/// Writes `approval` atomically to its file; returns the path.
pub fn write(state_dir: &Path, approval: &Approval) -> Result<PathBuf, ApprovalError> {
    let path = approval_path(state_dir, &approval.run_id, &approval.step);
    let body = serde_json::to_vec_pretty(approval).unwrap_or_default();
    let result = super::files::write_private(&path, &body);
    result.map_err(|source| ApprovalError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Reads `step`'s ACK, if one was written.
pub fn read(state_dir: &Path, run_id: &str, step: &str) -> Result<Option<Approval>, ApprovalError> {
    let path = approval_path(state_dir, run_id, step);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ApprovalError::Read { path, source }),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| ApprovalError::Parse { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let approval = Approval {
            run_id: "r-20260101-000000-abcd".into(),
            step: "hand off".into(),
            by: "ann".into(),
            at: "2026-01-01T00:00:00Z".into(),
            comment: Some("go".into()),
        };
        assert_eq!(
            read(dir.path(), &approval.run_id, "hand off").unwrap(),
            None
        );
        let path = write(dir.path(), &approval).unwrap();
        assert!(path.ends_with("approvals/hand_off.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"runId\"") && text.contains("\"by\": \"ann\""));
        assert_eq!(
            read(dir.path(), &approval.run_id, "hand off").unwrap(),
            Some(approval)
        );
    }
}
