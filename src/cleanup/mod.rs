//! Post-incident cleanup: computing and applying inverses from journals, and verifying that the
//! cluster is clean.
//!
//! - [`source`]: the runs to clean up, read from the local journals
//!   (`<state-dir>/runs/*/journal.jsonl`) and, when a run's journal is not on this machine,
//!   from its `Run` resource in the cluster (the person cleaning up is rarely the one who
//!   mitigated).
//! - [`fields`]: the leaf paths a merge patch touches, and their values in an object.
//! - [`revert`]: the cleanup plan — for every mutation still in effect, its inverse, newest
//!   first; drift (the touched fields changed since ripcord left them) is shown as a three-way
//!   difference and skipped unless forced; rollbacks are reported, rolled forward only on
//!   request.
//! - [`apply`]: runs a cleanup plan through the [`crate::engine`] as a synthetic plan of
//!   `object.patch` steps (journaled, idempotent, resumable: a crashed cleanup is finished by
//!   running cleanup again, which recomputes what is still in effect).
//! - [`verify`]: clean or dirty — touched objects restored, no residue, rollouts converged.
//! - [`incident`]: incident records (`<state-dir>/incidents/<ID>.json`).
//! - [`report`]: the run and incident report (Markdown or self-contained HTML with an inline
//!   SVG graph of the impact metrics).

pub mod apply;
pub mod fields;
pub mod incident;
pub mod report;
pub mod revert;
pub mod source;
pub mod verify;

use crate::k8s::K8sError;
use std::path::PathBuf;

/// The playbook name of the runs `ripcord cleanup` starts. Their mutations are never reverted
/// by a later cleanup (they are the reverts).
pub const CLEANUP_PLAYBOOK: &str = "ripcord-cleanup";

/// Why a cleanup, verify, incident or report operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// Reading the local journals failed.
    #[error("cannot read the run journals under {dir}")]
    Journals {
        /// The state directory.
        dir: PathBuf,
        /// The journal error.
        #[source]
        source: Box<crate::journal::JournalError>,
    },
    /// A Kubernetes read failed.
    #[error("cannot read {what} from the cluster")]
    Cluster {
        /// What was being read.
        what: String,
        /// The API error.
        #[source]
        source: Box<K8sError>,
    },
    /// Nothing matched the selection.
    #[error("no run found for {selection} (looked in {dir} and in the cluster's Run resources)")]
    NoRuns {
        /// `run r-…` or `incident INC-1`.
        selection: String,
        /// The state directory.
        dir: PathBuf,
    },
    /// The engine failed to run the cleanup plan.
    #[error("running the cleanup plan failed")]
    Engine {
        /// The engine error.
        #[source]
        source: Box<crate::engine::EngineError>,
    },
    /// An incident record could not be read or written.
    #[error("cannot {operation} incident file {path}")]
    IncidentIo {
        /// `read`, `write`, `parse`.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// An incident file in a format version this build does not read.
    #[error(transparent)]
    IncidentVersion {
        /// The file, the version found and the versions read.
        #[from]
        source: crate::journal::UnsupportedFormat,
    },
    /// An incident id that cannot be used as a file name.
    #[error("invalid incident id {id:?}: use letters, digits, `.`, `_` and `-` (at most 64)")]
    InvalidIncidentId {
        /// The id.
        id: String,
    },
    /// The incident does not exist.
    #[error("incident {id} not found at {path} (open it with `ripcord incident open {id}`)")]
    IncidentNotFound {
        /// The id.
        id: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The incident already exists.
    #[error("incident {id} already exists at {path} (use `ripcord incident update {id}`)")]
    IncidentExists {
        /// The id.
        id: String,
        /// The existing file.
        path: PathBuf,
    },
    /// A report or result file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl CleanupError {
    /// True when the cluster could not be reached at all (transport error or timeout), as
    /// opposed to answering with an error.
    pub fn is_unreachable(&self) -> bool {
        match self {
            CleanupError::Cluster { source, .. } => k8s_unreachable(source),
            _ => false,
        }
    }

    /// A stable category for metrics and journals.
    pub fn category(&self) -> &'static str {
        match self {
            CleanupError::Journals { .. } => "journal",
            CleanupError::Cluster { source, .. } => source.category(),
            CleanupError::NoRuns { .. } => "no-runs",
            CleanupError::Engine { source } => source.category(),
            CleanupError::IncidentIo { .. } => "incident-io",
            CleanupError::IncidentVersion { source } => source.category(),
            CleanupError::InvalidIncidentId { .. } => "invalid-incident-id",
            CleanupError::IncidentNotFound { .. } => "incident-not-found",
            CleanupError::IncidentExists { .. } => "incident-exists",
            CleanupError::Write { .. } => "write",
        }
    }
}

/// True for a Secret (any group): cleanup and verify never read or write one, whatever a
/// record says (ripcord's actions never write Secrets).
pub fn is_secret(target: &crate::actions::ObjectRef) -> bool {
    target.kind.eq_ignore_ascii_case("secret")
}

/// True for a transport failure or timeout of a Kubernetes call.
pub fn k8s_unreachable(err: &K8sError) -> bool {
    match err {
        K8sError::Timeout { .. } => true,
        K8sError::Api { source, .. } | K8sError::UnknownKind { source, .. } => {
            matches!(source, kube::Error::HyperError(_) | kube::Error::Service(_))
        }
        _ => false,
    }
}

/// Which runs a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One run.
    Run(String),
    /// Every run whose `RunStarted` carries this incident id.
    Incident(String),
    /// Every run known (local journals and the cluster's `Run` resources).
    All,
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::Run(id) => write!(f, "run {id}"),
            Selection::Incident(id) => write!(f, "incident {id}"),
            Selection::All => f.write_str("all runs"),
        }
    }
}
