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
pub mod run_annotations;
pub mod runs;
pub mod workloads;

use kube::api::PatchParams;
use std::future::Future;
use std::time::Duration;

pub use crate::model::FIELD_MANAGER;

/// The annotation every mutating write of a run step sets in the same patch:
/// `RUN_ID/STEP`. It is ripcord's proof of its own write: cleanup reverts only objects whose
/// marker names the run that recorded the mutation (see `cleanup::revert::proof_of_write`).
pub const LAST_MUTATION_ANNOTATION: &str = "ripcord.dev/last-mutation";

tokio::task_local! {
    /// The `RUN_ID/STEP` marker of the mutation being applied (set by the engine around
    /// `Action::apply`, read by the patch helpers).
    static MUTATION_MARKER: String;
}

/// Runs `fut` (one `Action::apply`) with the marker `RUN_ID/STEP`: every merge or JSON patch a
/// helper sends inside it also sets [`LAST_MUTATION_ANNOTATION`].
pub async fn with_mutation_marker<F: Future>(run_id: &str, step: &str, fut: F) -> F::Output {
    MUTATION_MARKER.scope(format!("{run_id}/{step}"), fut).await
}

/// The marker of the mutation being applied, if any.
pub fn mutation_marker() -> Option<String> {
    MUTATION_MARKER.try_with(Clone::clone).ok()
}

/// `patch` (a JSON merge patch) with the current mutation marker added to
/// `metadata.annotations` (unchanged outside a marked mutation, or when it is not an object).
pub fn marked_merge_patch(patch: &serde_json::Value) -> serde_json::Value {
    let mut patch = patch.clone();
    if let (Some(marker), Some(root)) = (mutation_marker(), patch.as_object_mut()) {
        let metadata = root
            .entry("metadata")
            .or_insert_with(|| serde_json::json!({}));
        if !metadata.is_object() {
            *metadata = serde_json::json!({});
        }
        if let Some(metadata) = metadata.as_object_mut() {
            let annotations = metadata
                .entry("annotations")
                .or_insert_with(|| serde_json::json!({}));
            if !annotations.is_object() {
                *annotations = serde_json::json!({});
            }
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(
                    LAST_MUTATION_ANNOTATION.to_string(),
                    serde_json::Value::String(marker),
                );
            }
        }
    }
    patch
}

/// `ops` (a JSON patch) with an op setting the current mutation marker appended, when one of
/// the ops writes `/metadata/annotations` as a whole (so the map exists for the `add`).
pub fn marked_json_patch(ops: &serde_json::Value) -> serde_json::Value {
    let mut ops = ops.clone();
    let Some(marker) = mutation_marker() else {
        return ops;
    };
    if let Some(list) = ops.as_array_mut() {
        let writes_annotations = list.iter().any(|op| {
            op.get("path").and_then(serde_json::Value::as_str) == Some("/metadata/annotations")
                && op.get("op").and_then(serde_json::Value::as_str) != Some("remove")
        });
        if writes_annotations {
            list.push(serde_json::json!({
                "op": "add",
                "path": format!(
                    "/metadata/annotations/{}",
                    LAST_MUTATION_ANNOTATION.replace('~', "~0").replace('/', "~1")
                ),
                "value": marker,
            }));
        }
    }
    ops
}

/// The `RUN_ID` part of an object's [`LAST_MUTATION_ANNOTATION`] (`None`: not marked).
pub fn last_mutation_run(object: &serde_json::Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_MUTATION_ANNOTATION))
        .and_then(serde_json::Value::as_str)
        .and_then(|marker| marker.split('/').next())
        .filter(|run| !run.is_empty())
}

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

    #[tokio::test]
    async fn patches_inside_a_mutation_carry_the_marker() {
        let patch = serde_json::json!({"spec": {"unschedulable": true}});
        assert_eq!(marked_merge_patch(&patch), patch);
        let (merge, json) = with_mutation_marker("r-1", "cordon", async {
            (
                marked_merge_patch(&patch),
                marked_json_patch(&serde_json::json!([
                    {"op": "add", "path": "/metadata/annotations", "value": {}}
                ])),
            )
        })
        .await;
        assert_eq!(
            merge["metadata"]["annotations"][LAST_MUTATION_ANNOTATION],
            "r-1/cordon"
        );
        assert_eq!(merge["spec"]["unschedulable"], true);
        assert_eq!(
            json[1]["path"],
            "/metadata/annotations/ripcord.dev~1last-mutation"
        );
        assert_eq!(last_mutation_run(&merge), Some("r-1"));
    }

    #[test]
    fn patch_params_name_the_field_manager() {
        assert_eq!(patch_params().field_manager.as_deref(), Some("ripcord"));
    }
}
