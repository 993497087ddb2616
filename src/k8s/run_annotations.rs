//! Annotations on `Run` resources: how an ACK given on another machine reaches a waiting
//! approval gate (`ripcord approve` writes one, the gate reads it). The only `Run` calls outside
//! the mirror in [`super::runs`]; like every call here they are bounded and name ripcord's field
//! manager.

use super::runs::Run;
use super::{K8sError, describe};
use kube::api::{Api, Patch, PatchParams};
use std::time::Duration;

/// The value of annotation `key` on `Run` `namespace/run_id`: `Ok(None)` when the run or the
/// annotation is absent.
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    run_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<String>, K8sError> {
    let object = describe("Run", Some(namespace), run_id);
    let api: Api<Run> = Api::namespaced(client.clone(), namespace);
    let run = match tokio::time::timeout(timeout, api.get_opt(run_id)).await {
        Ok(Ok(run)) => run,
        Ok(Err(source)) => {
            return Err(K8sError::Api {
                operation: "get",
                object,
                source,
            });
        }
        Err(_) => {
            return Err(K8sError::Timeout {
                operation: "get",
                object,
                after: timeout,
            });
        }
    };
    Ok(run.and_then(|run| run.metadata.annotations?.get(key).cloned()))
}

/// Sets annotation `key` to `value` on `Run` `namespace/run_id` (a merge patch, field manager
/// `ripcord`); [`K8sError::NotFound`] when the cluster has no such run.
pub async fn write(
    client: &kube::Client,
    namespace: &str,
    run_id: &str,
    key: &str,
    value: &str,
    timeout: Duration,
) -> Result<(), K8sError> {
    let object = describe("Run", Some(namespace), run_id);
    let api: Api<Run> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    let params = PatchParams {
        field_manager: Some(crate::model::FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match tokio::time::timeout(timeout, api.patch(run_id, &params, &Patch::Merge(&patch))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => {
            Err(K8sError::NotFound { object })
        }
        Ok(Err(source)) => Err(K8sError::Api {
            operation: "patch",
            object,
            source,
        }),
        Err(_) => Err(K8sError::Timeout {
            operation: "patch",
            object,
            after: timeout,
        }),
    }
}
