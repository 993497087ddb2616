//! The only place that calls `kube::Api`: typed helpers with the `ripcord` field manager and
//! per-call timeouts.
//!
//! Every call goes through [`call`], which bounds it with the caller's timeout and maps the
//! outcome into [`K8sError`] (a `404` becomes [`K8sError::NotFound`]). Every write names the
//! field manager [`FIELD_MANAGER`] (see [`patch_params`]).
//!
//! - [`deployments`]: get, revision history, the `kubectl rollout undo` patch, rollout status
//!   (kubectl's rules), scale, pause/resume, known-good marks.
//! - [`objects`]: any kind through `DynamicObject`/`ApiResource` (discovery, get, merge patch).
//! - [`workloads`]: pods, pod logs, events, nodes and the other kinds evidence capture reads.
//! - `runs`, `leases`: the engine's `Run` custom resource and per-target locks.

pub mod deployments;
pub mod http_routes;
pub mod leases;
pub mod nodes;
pub mod objects;
pub mod pods;
pub mod runs;
pub mod workloads;

use kube::api::PatchParams;
use std::future::Future;
use std::time::Duration;

/// The field manager ripcord names on every write.
pub const FIELD_MANAGER: &str = "ripcord";

/// Why a Kubernetes call failed. [`K8sError::category`] is stable and low-cardinality.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The API server answered with an error (or could not be reached).
    #[error("{operation} {object} failed")]
    Api {
        /// What was being done ("get", "patch", "list"…).
        operation: &'static str,
        /// The object (`deployment/shop/checkout`).
        object: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The object does not exist.
    #[error("{object} not found")]
    NotFound {
        /// The object.
        object: String,
    },
    /// The call did not finish within its timeout.
    #[error("{operation} {object} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The object.
        object: String,
        /// The bound.
        after: Duration,
    },
    /// The server's data cannot be used as asked (no revision history, unknown revision…).
    #[error("{object}: {reason}")]
    Invalid {
        /// The object.
        object: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// The server does not serve this kind.
    #[error("the cluster does not serve {api_version} {kind}")]
    UnknownKind {
        /// The requested apiVersion.
        api_version: String,
        /// The requested kind.
        kind: String,
        /// The discovery error.
        #[source]
        source: kube::Error,
    },
    /// An object could not be converted to or from JSON.
    #[error("cannot convert {object} to or from JSON")]
    Serde {
        /// The object.
        object: String,
        /// The conversion error.
        #[source]
        source: serde_json::Error,
    },
}

impl K8sError {
    /// A stable category for metrics labels, journal records and events.
    pub fn category(&self) -> &'static str {
        match self {
            K8sError::Api { .. } => "api",
            K8sError::NotFound { .. } => "not-found",
            K8sError::Timeout { .. } => "call-timeout",
            K8sError::Invalid { .. } => "invalid",
            K8sError::UnknownKind { .. } => "unknown-kind",
            K8sError::Serde { .. } => "serde",
        }
    }

    /// True for errors worth retrying: 429, 409 conflicts, 5xx, transport errors, timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            K8sError::Api { source, .. } => is_retryable_kube(source),
            K8sError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status the API server answered with, if any.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            K8sError::Api {
                source: kube::Error::Api(status),
                ..
            } => Some(status.code),
            K8sError::NotFound { .. } => Some(404),
            _ => None,
        }
    }
}

/// True when a kube error is transient: 429, 409, 5xx, or a transport failure.
pub fn is_retryable_kube(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => status.code == 429 || status.code == 409 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Patch parameters naming ripcord's field manager (merge/JSON/strategic patches).
pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// Runs one API call bounded by `timeout`, mapping errors into [`K8sError`] (404 → `NotFound`).
pub async fn call<T>(
    operation: &'static str,
    object: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, K8sError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(K8sError::Timeout {
            operation,
            object: object.to_string(),
            after: timeout,
        }),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Err(K8sError::NotFound {
            object: object.to_string(),
        }),
        Ok(Err(source)) => Err(K8sError::Api {
            operation,
            object: object.to_string(),
            source,
        }),
    }
}

/// `kind/namespace/name` (or `kind/name`) for messages.
pub fn describe(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{}/{}/{}", kind.to_lowercase(), ns, name),
        None => format!("{}/{}", kind.to_lowercase(), name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn call_times_out_with_context() {
        let err = call(
            "get",
            "deployment/shop/checkout",
            Duration::from_millis(50),
            std::future::pending::<Result<(), kube::Error>>(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.category(), "call-timeout");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("deployment/shop/checkout"));
    }

    #[tokio::test]
    async fn call_maps_404_to_not_found() {
        let status = kube::core::Status::failure("gone", "NotFound").with_code(404);
        let err = call("get", "pod/a/b", Duration::from_secs(1), async {
            Err::<(), _>(kube::Error::Api(status.boxed()))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, K8sError::NotFound { .. }));
        assert_eq!(err.status_code(), Some(404));
    }

    #[test]
    fn patch_params_name_the_field_manager() {
        assert_eq!(patch_params().field_manager.as_deref(), Some("ripcord"));
    }
}
