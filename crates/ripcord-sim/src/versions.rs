//! Kinds served in more than one version from one storage version: `autoscaling/v1`
//! HorizontalPodAutoscalers are stored as `autoscaling/v2` (as a real server does) and
//! converted on the way in and out, so `kubectl autoscale` (which writes v1 up to kubectl
//! 1.32) and `kubectl get hpa` / ripcord's snapshot (which read v2) see the same objects.
//!
//! Served for v1: get, list, create, update, delete, deletecollection. Watches and patches of
//! the v1 form answer 405 (`MethodNotAllowed`); use v2.

use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::protobuf;
use crate::routes::{self, ResourceRequest};
use crate::server::AppState;
use crate::status::{ApiError, json_response};
use crate::store::{ResourceType, kinds};

/// The storage type a request for `rt` is served from, when it differs.
pub fn storage_of(rt: &ResourceType) -> Option<ResourceType> {
    (*rt == kinds::horizontal_pod_autoscalers_v1()).then(kinds::horizontal_pod_autoscalers)
}

/// An autoscaling/v1 HPA as autoscaling/v2.
pub fn hpa_v1_to_v2(v1: &Value) -> Value {
    let mut v2 = v1.clone();
    v2["apiVersion"] = json!("autoscaling/v2");
    if let Some(spec) = v2.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(cpu) = spec.remove("targetCPUUtilizationPercentage")
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": cpu}}}]),
        );
    }
    if let Some(status) = v2.get_mut("status").and_then(Value::as_object_mut)
        && let Some(cpu) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": cpu}}}]),
        );
    }
    v2
}

/// An autoscaling/v2 HPA as autoscaling/v1 (CPU utilization is the only metric v1 has).
pub fn hpa_v2_to_v1(v2: &Value) -> Value {
    let mut v1 = v2.clone();
    v1["apiVersion"] = json!("autoscaling/v1");
    let cpu_of = |list: Option<&Value>, field: &str| {
        list.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|m| m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu"))
            .and_then(|m| m.pointer(&format!("/resource/{field}/averageUtilization")))
            .cloned()
    };
    if let Some(spec) = v1.get_mut("spec").and_then(Value::as_object_mut) {
        let cpu = cpu_of(spec.get("metrics"), "target");
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(cpu) = cpu {
            spec.insert("targetCPUUtilizationPercentage".into(), cpu);
        }
    }
    if let Some(status) = v1.get_mut("status").and_then(Value::as_object_mut) {
        let cpu = cpu_of(status.get("currentMetrics"), "current");
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(cpu) = cpu {
            status.insert("currentCPUUtilizationPercentage".into(), cpu);
        }
    }
    v1
}

/// Serves a request for a converted version: the body goes in as the storage version, the
/// answer comes back in the requested one.
pub async fn serve_converted(
    state: &AppState,
    mut req: ResourceRequest,
    storage: ResourceType,
) -> Result<Response, ApiError> {
    let watch = req.query.flag("watch");
    if req.method == Method::PATCH || watch {
        return Err(ApiError::MethodNotAllowed {
            method: req.method.to_string(),
        });
    }
    if matches!(req.method, Method::POST | Method::PUT) && !req.body.is_empty() {
        let content_type = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let body: Value = if protobuf::is_protobuf(content_type) {
            protobuf::decode(&req.body).map_err(|e| ApiError::BadRequest {
                message: e.to_string(),
            })?
        } else {
            serde_json::from_slice(&req.body).map_err(|e| ApiError::BadRequest {
                message: format!("the body of the request could not be decoded: {e}"),
            })?
        };
        req.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let converted =
            serde_json::to_vec(&hpa_v1_to_v2(&body)).map_err(|e| ApiError::Internal {
                message: e.to_string(),
            })?;
        req.body = converted.into();
    }
    let requested = req.rt.clone();
    req.rt = storage;
    let resp = routes::handle_resource(state, req).await?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::Internal {
            message: e.to_string(),
        })?;
    let Ok(mut body) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok((status, bytes).into_response());
    };
    match body.get("kind").and_then(Value::as_str) {
        Some("HorizontalPodAutoscaler") => body = hpa_v2_to_v1(&body),
        Some("HorizontalPodAutoscalerList") => {
            body["apiVersion"] = json!(requested.api_version());
            if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
                for item in items.iter_mut() {
                    *item = hpa_v2_to_v1(item);
                }
            }
        }
        Some("Table") => {
            if let Some(rows) = body.get_mut("rows").and_then(Value::as_array_mut) {
                for row in rows.iter_mut() {
                    if let Some(obj) = row.get_mut("object").filter(|o| o.get("spec").is_some()) {
                        *obj = hpa_v2_to_v1(obj);
                    }
                }
            }
        }
        _ => {}
    }
    Ok(json_response(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_round_trips_cpu_target() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                     "minReplicas": 2, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}});
        let v2 = hpa_v1_to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        assert_eq!(hpa_v2_to_v1(&v2), v1);
    }
}
