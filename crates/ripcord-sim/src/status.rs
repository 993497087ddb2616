//! `meta/v1 Status` error responses with the reasons and messages a real API server uses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::{ResourceType, StoreError};

/// One `details.causes` entry of a `Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCause {
    /// `reason` (apimachinery's `CauseType`: `FieldValueInvalid`, `DisruptionBudget`, …).
    pub reason: String,
    /// `message`.
    pub message: String,
    /// `field` (empty when the cause names none).
    pub field: String,
}

/// `Kind.group "name" is invalid: …` with apimachinery's aggregate of the causes.
fn invalid_message(group: &str, kind: &str, name: &str, causes: &[StatusCause]) -> String {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let texts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let agg = if texts.len() == 1 {
        texts.concat()
    } else {
        format!("[{}]", texts.join(", "))
    };
    format!("{qualified} {name:?} is invalid: {agg}")
}

/// An API request that failed; rendered as a `Status` object.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The URL names no served resource.
    #[error("the server could not find the requested resource")]
    UnknownPath,
    /// The request is malformed.
    #[error("{message}")]
    BadRequest {
        /// The full message.
        message: String,
    },
    /// The object is invalid; `message` is the full message.
    #[error("{message}")]
    Invalid {
        /// The full message.
        message: String,
    },
    /// The object failed validation: 422 with `details.{group,kind,name,causes}`.
    #[error("{}", invalid_message(group, kind, name, causes))]
    InvalidObject {
        /// API group of the kind.
        group: String,
        /// Kind, e.g. `Deployment`.
        kind: String,
        /// Object name.
        name: String,
        /// One cause per invalid field.
        causes: Vec<StatusCause>,
    },
    /// A PodDisruptionBudget refuses an eviction: 429 with a `DisruptionBudget` cause.
    #[error("{message}")]
    DisruptionBudget {
        /// `Cannot evict pod as it would violate the pod's disruption budget.`
        message: String,
        /// `The disruption budget NAME needs N healthy pods and has M currently`.
        cause: String,
    },
    /// The verb is not supported on this path.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed {
        /// The HTTP method.
        method: String,
    },
    /// The request body's media type is not supported (e.g. protobuf).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    )]
    UnsupportedMediaType {
        /// The rejected content type.
        content_type: String,
        /// Accepted media types.
        accepted: String,
    },
    /// Throttled (fault injection or an eviction blocked by a PDB).
    #[error("{message}")]
    TooManyRequests {
        /// The full message.
        message: String,
        /// Seconds the client should wait.
        retry_after: Option<u64>,
    },
    /// Injected or unexpected server error.
    #[error("{message}")]
    Internal {
        /// The full message.
        message: String,
    },
    /// Injected write conflict.
    #[error("{message}")]
    Conflict {
        /// The full message.
        message: String,
    },
}

// === impl ApiError ===

impl ApiError {
    /// Stable category for logs.
    pub fn category(&self) -> &'static str {
        match self {
            ApiError::Store(e) => e.category(),
            ApiError::UnknownPath => "unknown_path",
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Invalid { .. } | ApiError::InvalidObject { .. } => "invalid",
            ApiError::DisruptionBudget { .. } => "disruption_budget",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Internal { .. } => "internal",
            ApiError::Conflict { .. } => "conflict",
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::Store(e) => e.code(),
            ApiError::UnknownPath => 404,
            ApiError::BadRequest { .. } => 400,
            ApiError::Invalid { .. } | ApiError::InvalidObject { .. } => 422,
            ApiError::DisruptionBudget { .. } => 429,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Internal { .. } => 500,
            ApiError::Conflict { .. } => 409,
        }
    }

    /// The `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Store(e) => e.reason(),
            ApiError::UnknownPath => "NotFound",
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::Invalid { .. } | ApiError::InvalidObject { .. } => "Invalid",
            ApiError::DisruptionBudget { .. } => "TooManyRequests",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Internal { .. } => "InternalError",
            ApiError::Conflict { .. } => "Conflict",
        }
    }

    /// The `Status` object, with `details` naming the object when known.
    pub fn to_status(&self, rt: Option<&ResourceType>, name: Option<&str>) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            details.insert("name".into(), json!(name));
        }
        if let Some(rt) = rt {
            if !rt.group.is_empty() {
                details.insert("group".into(), json!(rt.group));
            }
            details.insert("kind".into(), json!(rt.plural));
        }
        if let ApiError::TooManyRequests {
            retry_after: Some(secs),
            ..
        } = self
        {
            details.insert("retryAfterSeconds".into(), json!(secs));
        }
        match self {
            ApiError::InvalidObject {
                group,
                kind,
                name,
                causes,
            } => {
                details.clear();
                for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
                    if !value.is_empty() {
                        details.insert(key.into(), json!(value));
                    }
                }
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                details.insert("causes".into(), json!(causes));
            }
            ApiError::DisruptionBudget { cause, .. } => {
                details.clear();
                details.insert(
                    "causes".into(),
                    json!([{"reason": "DisruptionBudget", "message": cause}]),
                );
            }
            _ => {}
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }

    /// The HTTP response carrying the `Status`.
    pub fn into_response_for(self, rt: Option<&ResourceType>, name: Option<&str>) -> Response {
        let status = self.to_status(rt, name);
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = json_response(code, &status);
        if let ApiError::TooManyRequests {
            retry_after: Some(secs),
            ..
        } = &self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_for(None, None)
    }
}

/// A JSON response with `Content-Type: application/json`.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (code, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A `Status` object reporting success (used by deletes of collections and evictions).
pub fn success_status(details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kinds;

    #[test]
    fn not_found_status_has_real_shape() {
        let err = ApiError::Store(StoreError::NotFound {
            resource: "deployments.apps".into(),
            name: "x".into(),
        });
        let status = err.to_status(Some(&kinds::deployments()), Some("x"));
        assert_eq!(status["message"], "deployments.apps \"x\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["details"]["kind"], "deployments");
    }

    #[test]
    fn throttle_carries_retry_after() {
        let err = ApiError::TooManyRequests {
            message: "slow down".into(),
            retry_after: Some(2),
        };
        let resp = err.into_response_for(None, None);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
