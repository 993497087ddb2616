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
//! page can be made public with `publicStatusPage`). Bodies are limited (413), malformed JSON
//! is a 400 with a JSON error body, and every error answer is counted in
//! `ripcord_api_errors_total`.

use crate::daemon::alerts::WebhookPayload;
use crate::daemon::runs::{PlaybookSource, RunError, RunRequest};
use crate::daemon::{DaemonState, auth};
use crate::engine::Trigger;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The header naming the person behind an API call (audit; tokens are shared secrets).
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
        .merge(protected.route_layer(middleware::from_fn_with_state(state.clone(), require_token)))
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
            RunError::NotAnApprover { .. } => StatusCode::FORBIDDEN,
            RunError::AlreadyFinished { .. } => StatusCode::CONFLICT,
            RunError::Io { .. } | RunError::Resume { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.category(), error_chain(&err))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn require_token(State(state): State<DaemonState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer);
    match presented {
        Some(token) if state.tokens.accepts(token) => next.run(request).await,
        Some(_) => {
            state.metrics.api_error(route_of(request.uri().path()), 401);
            tracing::warn!(path = %request.uri().path(), "request with a wrong bearer token");
            unauthorized("the bearer token is not valid")
        }
        None => {
            state.metrics.api_error(route_of(request.uri().path()), 401);
            unauthorized("an Authorization: Bearer <token> header is required")
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

fn user(headers: &HeaderMap) -> String {
    headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(|v| format!("api/{v}"))
        .unwrap_or_else(|| "api".to_string())
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = (|| {
        let req: CreateRun = json_body(body)?;
        let playbook = match (req.playbook, req.body) {
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
        let view = state.runs.submit(RunRequest {
            playbook,
            params,
            incident: req.incident,
            trigger: Trigger::Api,
            who: user(&headers),
            run_id: None,
        })?;
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Approve {
    by: String,
    #[serde(default)]
    comment: Option<String>,
}

async fn approve(
    State(state): State<DaemonState>,
    Path((id, step)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = (|| {
        let req: Approve = json_body(body)?;
        if req.by.trim().is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "`by` must name the approver",
            ));
        }
        let path = state
            .runs
            .approve(&id, &step, req.by.trim(), req.comment.as_deref())?;
        Ok(axum::Json(
            json!({"runId": id, "step": step, "approvedBy": req.by.trim(), "recorded": path}),
        ))
    })();
    counted(&state, "approve", result)
}

async fn cancel(
    State(state): State<DaemonState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = state
        .runs
        .cancel(&id, &user(&headers))
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
