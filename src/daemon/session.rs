//! The status page as a browser opens it: a login that exchanges an API token for a session
//! cookie, the pages behind it, and a live feed.
//!
//! A browser cannot send an `Authorization: Bearer` header when someone clicks a link, so
//! `GET /login` shows a form, `POST /login` (form field `token`) checks the token like the API
//! does and answers with a session cookie: random 256 bits, `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page sends it), `Path=/`, 12 hours, `Secure` when the
//! request came through TLS (`X-Forwarded-Proto: https`). The session is a viewer: it opens
//! the read-only pages (`/`, `/runs/{id}`, `/events`) and nothing else — the API keeps
//! requiring the bearer token, so a session cannot start, approve or cancel runs. Sessions
//! live in this process's memory (a restart asks to log in again); `POST /logout` ends one.
//!
//! Without a valid token or session, a browser (`Accept: text/html`) is sent to `/login`;
//! anything else gets a 401. `publicStatusPage: true` opens the pages without either.

use crate::daemon::DaemonState;
use crate::daemon::auth::Endpoint;
use crate::daemon::status;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "ripcord_session";
/// How long a session lives.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 1024;
/// How often the live feed looks for changes.
const FEED_POLL: Duration = Duration::from_secs(2);
/// A comment line keeps idle feeds (and proxies) alive.
const FEED_KEEPALIVE: Duration = Duration::from_secs(20);

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print session ids.
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

// === impl Sessions ===

impl Sessions {
    /// A new session id (`None`: no randomness available).
    pub fn create(&self) -> Option<String> {
        let mut bytes = [0u8; 32];
        let mut file = std::fs::File::open("/dev/urandom").ok()?;
        std::io::Read::read_exact(&mut file, &mut bytes).ok()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, created| now.duration_since(*created) < SESSION_TTL);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, c)| **c).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), now);
        Some(id)
    }

    /// True for a live session.
    pub fn valid(&self, id: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(id)
            .is_some_and(|created| created.elapsed() < SESSION_TTL)
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(id);
    }
}

/// The status pages, the feed and the login routes.
pub fn routes(state: &DaemonState) -> Router<DaemonState> {
    let pages = Router::new()
        .route("/", get(status_page))
        .route("/runs/{id}", get(run_page))
        .route("/events", get(events));
    let pages = if state.public_status_page {
        pages
    } else {
        pages.route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_viewer,
        ))
    };
    Router::new()
        .merge(pages)
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
}

/// The session id in the request's cookies.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// What the request's bearer token says about viewing the status page.
enum Bearer {
    /// No token, or not one of the tokens.
    Unknown,
    /// A token whose scope does not include the status page (the scraper's, Alertmanager's).
    OutOfScope,
    /// A token that may view it.
    Viewer,
}

fn bearer(state: &DaemonState, headers: &HeaderMap) -> Bearer {
    let identity = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::daemon::auth::bearer)
        .and_then(|t| state.tokens.authenticate(t));
    match identity {
        None => Bearer::Unknown,
        Some(identity) if identity.scope.may_call(Endpoint::Status) => Bearer::Viewer,
        Some(_) => Bearer::OutOfScope,
    }
}

async fn require_viewer(
    State(state): State<DaemonState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let session_ok = session_cookie(headers).is_some_and(|id| state.sessions.valid(&id));
    match bearer(&state, headers) {
        Bearer::Viewer => return next.run(request).await,
        _ if session_ok => return next.run(request).await,
        Bearer::OutOfScope => {
            state.metrics.api_error("status", 403);
            return (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({
                    "error": "this token may not view the status page",
                    "category": "forbidden"
                })),
            )
                .into_response();
        }
        Bearer::Unknown => {}
    }
    state.metrics.api_error("status", 401);
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if browser {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"ripcord\"")],
        axum::Json(serde_json::json!({
            "error": "log in at /login, or send Authorization: Bearer <token>",
            "category": "unauthorized"
        })),
    )
        .into_response()
}

fn login_page(error: Option<&str>) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>ripcord · log in</title>\
<style>{}</style></head><body><header><h1>ripcord</h1><p>status page</p></header><main><section>\
<h2>Log in</h2>{}<form method=\"post\" action=\"/login\"><label>API token<br>\
<input type=\"password\" name=\"token\" autocomplete=\"current-password\" required style=\"width:100%;max-width:28rem;padding:6px\"></label>\
<p><button type=\"submit\">Log in</button></p></form>\
<p class=\"muted\">The session is read-only: starting, approving and cancelling runs stays with the API and the CLI.</p>\
</section></main></body></html>",
        status::STYLE,
        error
            .map(|e| format!("<p class=\"error\">{}</p>", crate::html::escape(e)))
            .unwrap_or_default()
    )
}

async fn login_form() -> Html<String> {
    Html(login_page(None))
}

/// `application/x-www-form-urlencoded` value of `name`.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(value: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn login(State(state): State<DaemonState>, headers: HeaderMap, body: Bytes) -> Response {
    let token = form_value(&body, "token").unwrap_or_default();
    // Only a token that may view the status page opens a session (not the scraper's).
    if token.trim().is_empty() || !state.tokens.accepts_for(token.trim(), Endpoint::Status) {
        state.metrics.api_error("login", 401);
        tracing::warn!("status page login with a wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_page(Some("That token is not valid."))),
        )
            .into_response();
    }
    let Some(id) = state.sessions.create() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(login_page(Some(
                "No randomness for a session id on this host.",
            ))),
        )
            .into_response();
    };
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    tracing::info!("status page session opened");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

async fn logout(State(state): State<DaemonState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.sessions.remove(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_string()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}

async fn status_page(State(state): State<DaemonState>) -> Html<String> {
    let graphs = status::impact_graphs(&state).await;
    Html(status::render(&state, &graphs))
}

async fn run_page(State(state): State<DaemonState>, Path(id): Path<String>) -> Response {
    match status::render_run_page(&state, &id) {
        Some(html) => Html(html).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html(format!(
                "<!doctype html><title>not found</title><p>No run {}. <a href=\"/\">Back</a></p>",
                crate::html::escape(&id)
            )),
        )
            .into_response(),
    }
}

/// Server-sent events: `event: changed` whenever what the status page shows changed (polled
/// from the shared cache, so many open pages cost no more journal reads than one). The feed
/// ends when the daemon stops being ready, so a graceful shutdown does not wait for it.
async fn events(State(state): State<DaemonState>) -> Response {
    let stream = futures::stream::unfold(
        (state, None::<u64>, Instant::now()),
        |(state, last, mut quiet_since)| async move {
            loop {
                if !state.is_ready() {
                    // Shutting down (or not serving yet): end the feed, the browser reconnects.
                    return None;
                }
                let now = status::fingerprint(&state);
                if last.is_some_and(|l| l != now) {
                    let chunk = Bytes::from_static(b"event: changed\ndata: changed\n\n");
                    return Some((
                        Ok::<Bytes, std::convert::Infallible>(chunk),
                        (state, Some(now), Instant::now()),
                    ));
                }
                if last.is_none() {
                    let chunk = Bytes::from_static(b"retry: 5000\n: connected\n\n");
                    return Some((Ok(chunk), (state, Some(now), Instant::now())));
                }
                if quiet_since.elapsed() >= FEED_KEEPALIVE {
                    quiet_since = Instant::now();
                    return Some((
                        Ok(Bytes::from_static(b": keep-alive\n\n")),
                        (state, last, quiet_since),
                    ));
                }
                tokio::time::sleep(FEED_POLL).await;
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(
            form_value(b"a=1&token=s3cret%2Btok+en%21", "token").as_deref(),
            Some("s3cret+tok en!")
        );
        assert_eq!(
            form_value(b"token=%zz%4", "token").as_deref(),
            Some("%zz%4")
        );
        assert_eq!(form_value(b"x=1", "token"), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=b; ripcord_session=abc123; c=d".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc123"));
    }

    #[test]
    fn sessions_are_random_and_can_end() {
        let sessions = Sessions::default();
        let a = sessions.create().unwrap();
        let b = sessions.create().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(sessions.valid(&a) && !sessions.valid("nope"));
        sessions.remove(&a);
        assert!(!sessions.valid(&a));
    }
}
