//! Exit codes, documented in the README and `ripcord --help`.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success (for `verify`: the cluster is clean) |
//! | 1 | the run failed, or `verify` found the cluster dirty |
//! | 2 | usage error or invalid input (bad flags, malformed playbook, bad parameter) |
//! | 3 | the cluster (or another required endpoint) is unreachable |
//! | 4 | refused: a guard, lock or confirmation stopped the run before its first mutation |
//! | 130 | interrupted (Ctrl-C / SIGTERM) at a safe point; the journal is resumable |

use std::process::ExitCode;

/// How a command ended, mapped one-to-one onto a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went as asked.
    Ok,
    /// The run failed (or verification found residue).
    Failed,
    /// Bad flags or invalid input.
    Usage,
    /// The cluster or another required endpoint could not be reached.
    Unreachable,
    /// A guard, a lock or the operator refused before the first mutation.
    Refused,
    /// Stopped by a signal at a safe point.
    Interrupted,
}

impl Exit {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Unreachable => 3,
            Exit::Refused => 4,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// An error that carries the exit code it should end the process with.
///
/// Commands return `anyhow::Error`; wrapping the cause in `Exited` (via [`with_exit`]) chooses
/// the code. Errors without one are classified by [`classify`].
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct Exited {
    /// The exit code to use.
    pub exit: Exit,
    /// What went wrong. Not a `#[source]`: the message already renders the whole chain, so
    /// `main`'s `{:#}` must not print it twice.
    pub error: anyhow::Error,
}

/// Attaches an exit code to an error.
pub fn with_exit(exit: Exit, source: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Exited {
        exit,
        error: source.into(),
    })
}

/// Chooses the exit code for an error that reached `main`.
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(exited) = cause.downcast_ref::<Exited>() {
            return exited.exit;
        }
        if let Some(kube::Error::HyperError(_)) = cause.downcast_ref::<kube::Error>() {
            return Exit::Unreachable;
        }
        if cause
            .downcast_ref::<kube::config::KubeconfigError>()
            .is_some()
            || cause
                .downcast_ref::<kube::config::InferConfigError>()
                .is_some()
        {
            return Exit::Unreachable;
        }
    }
    Exit::Failed
}

/// A Kubernetes client error as a sentence for people. kube's own `Display` of an API error
/// appends the Rust debug form of the `Status` (`ApiError: … (Status { … })`); this says what
/// the API server answered instead.
pub fn kube_sentence(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" {}", status.reason)
            };
            format!(
                "the API server answered {}{reason}: {}",
                status.code, status.message
            )
        }
        other => other.to_string(),
    }
}
