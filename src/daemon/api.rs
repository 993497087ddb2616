//! The HTTP API: an axum [`Router`] built by a pure function, so tests drive it in process
//! with `tower::ServiceExt::oneshot`.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/runs` | `{playbook: NAME \| body: YAML, params, incident}` → 202 + the run |
//! | `GET /v1/runs`, `GET /v1/runs/{id}` | runs (status, steps, timeline, journal) |
//! | `POST /v1/runs/{id}/approvals/{step}` | `{by, comment}`: the ACK of a `gate.approval` |
//! | `POST /v1/runs/{id}/cancel` | stop at the next safe point / dequeue |
//! | `POST /v1/alertmanager` | the Alertmanager webhook receiver |
//! | `GET /` | the status page |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /healthz`, `GET /readyz` | probes (no authentication) |
//!
//! Everything but the probes needs `Authorization: Bearer <token>` (401 otherwise; the status
//! page can be made public with `publicStatusPage`). The token's name is who the request is
//! and its scope ([`auth::TokenScope`]) what it may do: which endpoints (403 otherwise), which
//! playbooks by name, whether inline playbooks, which objects `object.patch` steps may write.
//! An ACK is recorded under the token's name, never a name from the body. Bodies are limited
//! (413, before the body is read when `Content-Length` says so), malformed JSON is a 400 with
//! a JSON error body, and every error answer is counted in `ripcord_api_errors_total`.

use crate::daemon::alerts::WebhookPayload;
use crate::daemon::auth::{Endpoint, Identity};
use crate::daemon::runs::{PlaybookSource, RunError, RunRequest};
use crate::daemon::{DaemonState, auth};
use crate::engine::Trigger;
use crate::errors::error_chain;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The header naming the person behind a shared token (recorded as a claim next to the
/// token's name, never used for authorization).
pub const USER_HEADER: &str = "x-ripcord-user";

/// Builds the daemon's router.
pub fn router(state: DaemonState) -> Router {
    let protected = Router::new()
        .route("/v1/runs", post(create_run).get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/approvals/{step}", post(approve))
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/alertmanager", post(alertmanager))
        .route("/metrics", get(metrics));
    // The status page, its login and live feed (a browser session or the bearer token).
    let status_page = crate::daemon::session::routes(&state);
    Router::new()
        // The body is read (bounded in size and time) only after the token was checked.
        .merge(
            protected
                .route_layer(middleware::from_fn_with_state(state.clone(), bound_body))
                .route_layer(middleware::from_fn_with_state(state.clone(), require_token)),
        )
        .merge(status_page)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .with_state(state)
}

/// An error answer: `{"error": message, "category": category}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    category: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, category: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            category,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": self.message, "category": self.category})),
        )
            .into_response()
    }
}

impl From<RunError> for ApiError {
    fn from(err: RunError) -> Self {
        let status = match &err {
            RunError::UnknownPlaybook { .. } | RunError::NotFound { .. } => StatusCode::NOT_FOUND,
            RunError::InvalidPlaybook { .. } | RunError::Plan { .. } => StatusCode::BAD_REQUEST,
            RunError::NoSuchApproval { .. } => StatusCode::NOT_FOUND,
            RunError::NotAnApprover { .. } | RunError::NotPermitted { .. } => StatusCode::FORBIDDEN,
            RunError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RunError::InvalidIncident { .. } => StatusCode::BAD_REQUEST,
            RunError::AlreadyFinished { .. } | RunError::DuplicateRunId { .. } => {
                StatusCode::CONFLICT
            }
            RunError::Io { .. } | RunError::Resume { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.category(), error_chain(&err))
    }
}

async fn require_token(
    State(state): State<DaemonState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer);
    let identity = presented.and_then(|token| state.tokens.authenticate(token));
    match (presented, identity) {
        (_, Some(identity)) => {
            let path = request.uri().path().to_string();
            let endpoint = endpoint_of(request.method(), &path);
            if let Some(endpoint) = endpoint.filter(|e| !identity.scope.may_call(*e)) {
                let route = route_of(&path);
                state.metrics.api_error(route, 403);
                tracing::warn!(token = %identity.name, endpoint = endpoint.as_str(), path = %path, "token not allowed to call this endpoint");
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "token {} may not call {} (its endpoints: {})",
                        identity.name,
                        endpoint.as_str(),
                        identity
                            .scope
                            .endpoints
                            .iter()
                            .map(|e| e.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .into_response();
            }
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        (Some(_), None) => {
            state.metrics.api_error(route_of(request.uri().path()), 401);
            tracing::warn!(path = %request.uri().path(), "request with a wrong bearer token");
            unauthorized("the bearer token is not valid")
        }
        (None, None) => {
            state.metrics.api_error(route_of(request.uri().path()), 401);
            unauthorized("an Authorization: Bearer <token> header is required")
        }
    }
}

/// The endpoint (scope) a request calls; `None`: not a protected route (404 follows).
fn endpoint_of(method: &axum::http::Method, path: &str) -> Option<Endpoint> {
    let post = method == axum::http::Method::POST;
    match route_of(path) {
        "status" => Some(Endpoint::Status),
        "metrics" => Some(Endpoint::Metrics),
        "alertmanager" => Some(Endpoint::Alertmanager),
        "runs" if post => Some(Endpoint::Runs),
        "runs" | "run" => Some(Endpoint::Read),
        "approve" => Some(Endpoint::Approve),
        "cancel" => Some(Endpoint::Cancel),
        _ => None,
    }
}

/// Refuses a body whose `Content-Length` exceeds the limit (413) before reading a byte of
/// it, and bounds the time reading the body may take (408).
async fn bound_body(State(state): State<DaemonState>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > state.body_limit as u64) {
        let route = route_of(request.uri().path());
        state.metrics.api_error(route, 413);
        tracing::info!(
            route,
            declared = len,
            limit = state.body_limit,
            "request body over the limit refused unread"
        );
        let mut response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!(
                "the body ({len} bytes) is over the limit of {} bytes",
                state.body_limit
            ),
        )
        .into_response();
        // The unread body stays on the connection: close it.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    let (parts, body) = request.into_parts();
    let route = route_of(parts.uri.path());
    let limited = http_body_util::Limited::new(body, state.body_limit);
    let read = tokio::time::timeout(
        state.body_read_timeout,
        http_body_util::BodyExt::collect(limited),
    )
    .await;
    let refuse = |status: StatusCode, category: &'static str, message: String| {
        state.metrics.api_error(route, status.as_u16());
        tracing::info!(
            route,
            status = status.as_u16(),
            category,
            "request body refused"
        );
        let mut response = ApiError::new(status, category, message).into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        response
    };
    match read {
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!(
                "the body did not arrive within {}s",
                state.body_read_timeout.as_secs_f64()
            ),
        ),
        Ok(Err(err))
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the body is over the limit of {} bytes", state.body_limit),
            )
        }
        Ok(Err(err)) => refuse(
            StatusCode::BAD_REQUEST,
            "bad-body",
            format!("cannot read the body: {err}"),
        ),
        Ok(Ok(collected)) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"ripcord\""),
    );
    response
}

/// Low-cardinality route names for the error metric.
fn route_of(path: &str) -> &'static str {
    match path {
        "/" => "status",
        "/metrics" => "metrics",
        "/v1/runs" => "runs",
        "/v1/alertmanager" => "alertmanager",
        p if p.starts_with("/v1/runs/") && p.contains("/approvals/") => "approve",
        p if p.starts_with("/v1/runs/") && p.ends_with("/cancel") => "cancel",
        p if p.starts_with("/v1/runs/") => "run",
        _ => "other",
    }
}

/// Parses a JSON body; 400 (or 413 from the body limit) otherwise.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let category = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too-large"
        } else {
            "bad-body"
        };
        ApiError::new(status, category, rejection.body_text())
    })?;
    serde_json::from_slice(&bytes).map_err(|err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the body is not the expected JSON: {err}"),
        )
    })
}

fn counted<T: IntoResponse>(
    state: &DaemonState,
    route: &'static str,
    result: Result<T, ApiError>,
) -> Response {
    match result {
        Ok(ok) => ok.into_response(),
        Err(err) => {
            state.metrics.api_error(route, err.status.as_u16());
            tracing::info!(route, status = err.status.as_u16(), category = err.category, error = %err.message, "API request refused");
            err.into_response()
        }
    }
}

/// Who a request is, for the journal: `api/<token name>`, with the claim of the
/// `x-ripcord-user` header (a person behind a shared token) in parentheses.
fn user(identity: &Identity, headers: &HeaderMap) -> String {
    let claim = headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        });
    match claim {
        Some(claim) if claim != identity.name => format!("api/{} (for {claim})", identity.name),
        _ => format!("api/{}", identity.name),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRun {
    #[serde(default)]
    playbook: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, Value>,
    #[serde(default)]
    incident: Option<String>,
}

async fn create_run(
    State(state): State<DaemonState>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = (|| {
        let req: CreateRun = json_body(body)?;
        let scope = &identity.scope;
        let playbook = match (req.playbook, req.body) {
            (Some(name), None) if !scope.may_run(&name) => {
                return Err(forbidden(
                    &identity,
                    format!("token {} may not run playbook {name:?}", identity.name),
                ));
            }
            (None, Some(_)) if !scope.inline_playbooks => {
                return Err(forbidden(
                    &identity,
                    format!(
                        "token {} may not submit inline playbooks (inlinePlaybooks is off)",
                        identity.name
                    ),
                ));
            }
            (Some(name), None) => PlaybookSource::Name(name),
            (None, Some(body)) => PlaybookSource::Body(body),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "give exactly one of `playbook` (a name) or `body` (playbook YAML)",
                ));
            }
        };
        let mut params = BTreeMap::new();
        for (k, v) in req.params {
            let raw = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad-request",
                        format!("parameter {k} must be a string, number or boolean, not {other}"),
                    ));
                }
            };
            params.insert(k, raw);
        }
        if let Some(id) = &req.incident {
            crate::daemon::runs::validate_incident(id)?;
        }
        let view = state.runs.submit_checked(
            RunRequest {
                playbook,
                params,
                incident: req.incident,
                trigger: Trigger::Api,
                who: user(&identity, &headers),
                run_id: None,
            },
            |plan| crate::daemon::runs::check_object_patches(plan, &identity.scope.object_patch),
        )?;
        Ok((StatusCode::ACCEPTED, axum::Json(view)))
    })();
    counted(&state, "runs", result)
}

async fn list_runs(State(state): State<DaemonState>) -> Response {
    axum::Json(json!({"runs": state.runs.list()})).into_response()
}

async fn get_run(State(state): State<DaemonState>, Path(id): Path<String>) -> Response {
    let result = match state.runs.get(&id) {
        Some(view) => {
            let journal = view
                .journal
                .as_deref()
                .and_then(|p| crate::journal::read(p).ok())
                .map(|(entries, _)| entries)
                .unwrap_or_default();
            Ok(axum::Json(json!({"run": view, "journal": journal})))
        }
        None => Err(ApiError::from(RunError::NotFound { run_id: id })),
    };
    counted(&state, "run", result)
}

fn forbidden(identity: &Identity, message: String) -> ApiError {
    tracing::warn!(token = %identity.name, error = %message, "request outside the token's scope");
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Approve {
    /// Optional: when given it must be the token's name (the approver is who authenticated).
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

async fn approve(
    State(state): State<DaemonState>,
    Extension(identity): Extension<Identity>,
    Path((id, step)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = (|| {
        let req: Approve = json_body(body)?;
        let by = identity.name.as_str();
        if let Some(claimed) = req.by.as_deref().map(str::trim)
            && claimed != by
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "approver-mismatch",
                format!(
                    "this token is {by}: it cannot approve as {claimed:?} (the approver is the token's name; omit `by`)"
                ),
            ));
        }
        let path = state.runs.approve(&id, &step, by, req.comment.as_deref())?;
        Ok(axum::Json(
            json!({"runId": id, "step": step, "approvedBy": by, "recorded": path}),
        ))
    })();
    counted(&state, "approve", result)
}

async fn cancel(
    State(state): State<DaemonState>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = state
        .runs
        .cancel(&id, &user(&identity, &headers))
        .map(|view| (StatusCode::ACCEPTED, axum::Json(view)))
        .map_err(ApiError::from);
    counted(&state, "cancel", result)
}

async fn alertmanager(
    State(state): State<DaemonState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match json_body::<WebhookPayload>(body) {
        Ok(payload) => {
            let decisions = state
                .alerts
                .handle(&payload, &state.runs, &state.metrics)
                .await;
            Ok(axum::Json(json!({"decisions": decisions})))
        }
        Err(err) => Err(err),
    };
    counted(&state, "alertmanager", result)
}

async fn metrics(State(state): State<DaemonState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<DaemonState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn not_found(State(state): State<DaemonState>, request: Request) -> Response {
    counted::<Response>(
        &state,
        "other",
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no route {} {}", request.method(), request.uri().path()),
        )),
    )
}
