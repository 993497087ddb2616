//! The HTTP side of the sim: an axum server on loopback that routes Kubernetes API paths,
//! applies fault injection, logs every request and serves discovery, OpenAPI stubs and
//! `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::discovery;
use crate::faults::{Faults, RequestLog, RequestRecord};
use crate::openapi;
use crate::routes::{self, ResourceRequest};
use crate::status::{ApiError, json_response};
use crate::store::{ResourceType, Store, StoreError, kinds};

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ServerError {
    /// Stable category.
    pub fn category(&self) -> &'static str {
        match self {
            ServerError::Bind { .. } => "bind",
        }
    }
}

/// A `pods/log` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRequest {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// `container` parameter.
    pub container: Option<String>,
    /// `previous` parameter.
    pub previous: bool,
    /// `tailLines` parameter.
    pub tail_lines: Option<usize>,
    /// `sinceSeconds` parameter: only lines written in the last N (simulated) seconds.
    pub since_seconds: Option<i64>,
    /// `sinceTime` parameter (RFC 3339): only lines written at or after it.
    pub since_time: Option<String>,
    /// `timestamps` parameter: prefix each line with the time it was written.
    pub timestamps: bool,
    /// `limitBytes` parameter: at most this many bytes of output.
    pub limit_bytes: Option<usize>,
}

/// The `deleteOptions` of an Eviction that the eviction honours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvictOptions {
    /// `dryRun: ["All"]` (or `?dryRun=All`): check the budget, delete nothing.
    pub dry_run: bool,
    /// `gracePeriodSeconds`, overriding the pod's `terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
}

/// Evicts a pod (namespace, name), checking disruption budgets.
pub type EvictFn = dyn Fn(&Store, &str, &str, &EvictOptions) -> Result<(), ApiError> + Send + Sync;
/// Produces a pod's log text.
pub type PodLogFn = dyn Fn(&Store, &LogRequest) -> Result<String, ApiError> + Send + Sync;
/// Renders `/metrics`.
pub type MetricsFn = dyn Fn(&Store) -> String + Send + Sync;

/// Behaviour the API server delegates to the simulated controllers: eviction (PDB checks), pod
/// logs and service metrics. [`SimHooks::default`] evicts by deleting the pod, serves empty
/// logs and empty metrics.
#[derive(Clone)]
pub struct SimHooks {
    /// `POST pods/{name}/eviction`.
    pub evict: Arc<EvictFn>,
    /// `GET pods/{name}/log`.
    pub pod_log: Arc<PodLogFn>,
    /// `GET /metrics`.
    pub metrics: Arc<MetricsFn>,
}

impl Default for SimHooks {
    fn default() -> Self {
        SimHooks {
            evict: Arc::new(
                |store: &Store, ns: &str, name: &str, options: &EvictOptions| {
                    if options.dry_run {
                        return store
                            .get(&kinds::pods(), Some(ns), name)
                            .map(|_| ())
                            .ok_or_else(|| {
                                ApiError::Store(StoreError::NotFound {
                                    resource: "pods".into(),
                                    name: name.to_string(),
                                })
                            });
                    }
                    store
                        .delete_gracefully(
                            &kinds::pods(),
                            Some(ns),
                            name,
                            options.grace_period_seconds,
                            &[],
                        )
                        .map(|_| ())
                        .map_err(ApiError::from)
                },
            ),
            pod_log: Arc::new(|store: &Store, req: &LogRequest| {
                store
                    .get(&kinds::pods(), Some(&req.namespace), &req.pod)
                    .map(|_| String::new())
                    .ok_or_else(|| {
                        ApiError::Store(StoreError::NotFound {
                            resource: "pods".into(),
                            name: req.pod.clone(),
                        })
                    })
            }),
            metrics: Arc::new(|_: &Store| String::new()),
        }
    }
}

/// Shared state of the request handlers.
#[derive(Clone)]
pub struct AppState {
    /// The object store.
    pub store: Store,
    /// Fault injection.
    pub faults: Faults,
    /// The request log.
    pub log: RequestLog,
    /// Controller-side behaviour.
    pub hooks: SimHooks,
    /// `host:port` the server listens on.
    pub server_address: String,
    /// Flips to `true` on shutdown (ends open watches).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A running API server.
pub struct SimServer {
    addr: SocketAddr,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

// === impl SimServer ===

impl SimServer {
    /// Binds `addr` (default `127.0.0.1:0`) and serves the API in a background task.
    pub async fn start(
        store: Store,
        faults: Faults,
        log: RequestLog,
        hooks: SimHooks,
        addr: Option<SocketAddr>,
    ) -> Result<SimServer, ServerError> {
        let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let state = AppState {
            store,
            faults,
            log,
            hooks,
            server_address: local.to_string(),
            shutdown: shutdown_rx.clone(),
        };
        let app = router(state);
        let mut signal = shutdown_rx;
        let task = tokio::spawn(async move {
            let graceful = async move {
                while !*signal.borrow() {
                    if signal.changed().await.is_err() {
                        break;
                    }
                }
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .await
            {
                tracing::warn!(%error, "sim api server stopped with an error");
            }
        });
        tracing::info!(addr = %local, "sim api server listening");
        Ok(SimServer {
            addr: local,
            shutdown_tx,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ends open watches, stops accepting connections and waits (bounded) for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// The router: every request goes through [`handle`].
pub fn router(state: AppState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Version,
    Api,
    Apis,
    ApiGroup(String),
    ResourceList(String, String),
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String),
    Metrics,
    Health,
    Faults,
    Resource {
        group: String,
        version: String,
        namespace: Option<String>,
        plural: String,
        name: Option<String>,
        sub: Option<String>,
    },
    Unknown,
}

fn parse_path(path: &str) -> Target {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Target::Version,
        ["api"] => return Target::Api,
        ["apis"] => return Target::Apis,
        ["apis", g] => return Target::ApiGroup(g.to_string()),
        ["openapi", "v2"] => return Target::OpenApiV2,
        ["openapi", "v3"] => return Target::OpenApiV3Root,
        ["openapi", "v3", rest @ ..] => return Target::OpenApiV3(rest.join("/")),
        ["metrics"] => return Target::Metrics,
        ["healthz"] | ["livez"] | ["readyz"] => return Target::Health,
        ["sim", "faults"] => return Target::Faults,
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return Target::Unknown,
    };
    let res = |namespace: Option<&str>, plural: &str, name: Option<&str>, sub: Option<&str>| {
        Target::Resource {
            group: group.clone(),
            version: version.clone(),
            namespace: namespace.map(str::to_string),
            plural: plural.to_string(),
            name: name.map(str::to_string),
            sub: sub.map(str::to_string),
        }
    };
    match rest {
        [] => Target::ResourceList(group.clone(), version.clone()),
        ["namespaces", ns, plural] if !matches!(*plural, "status" | "finalize") => {
            res(Some(ns), plural, None, None)
        }
        ["namespaces", ns, plural, name] => res(Some(ns), plural, Some(name), None),
        // `pods/NAME[:PORT]/proxy/PATH…`: the subresource carries the proxied path.
        ["namespaces", ns, plural, name, "proxy", path @ ..] => res(
            Some(ns),
            plural,
            Some(name),
            Some(&format!("proxy/{}", path.join("/"))),
        ),
        ["namespaces", ns, plural, name, sub] => res(Some(ns), plural, Some(name), Some(sub)),
        [plural] => res(None, plural, None, None),
        [plural, name] => res(None, plural, Some(name), None),
        [plural, name, sub] => res(None, plural, Some(name), Some(sub)),
        _ => Target::Unknown,
    }
}

/// Query parameters of a request.
#[derive(Clone, Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is `true` or `1`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn verb_for(method: &Method, target: &Target, query: &Query) -> &'static str {
    match target {
        Target::Resource { name, .. } => match (method.as_str(), name.is_some()) {
            ("GET", _) if query.flag("watch") => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "other",
        },
        Target::Unknown => "other",
        _ => "discovery",
    }
}

/// Resolves a served type, registering custom resources whose CRD exists but was stored
/// without going through the API.
pub fn resolve_type(
    store: &Store,
    group: &str,
    version: &str,
    plural: &str,
) -> Option<ResourceType> {
    if let Some(rt) = store.find_type(group, version, plural) {
        return Some(rt);
    }
    for crd in store.list(&kinds::crds(), None).0 {
        for rt in routes::crd_types(&crd) {
            store.register(rt);
        }
    }
    store.find_type(group, version, plural)
}

async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = Query(
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri())
            .map(|q| q.0)
            .unwrap_or_default(),
    );
    let headers = req.headers().clone();
    let user_agent = header_str(&headers, header::USER_AGENT);
    let target = parse_path(&path);
    let verb = verb_for(&method, &target, &query);
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::BadRequest {
                message: format!("reading the request body: {e}"),
            }
            .into_response();
        }
    };
    let resp = dispatch(&state, &method, &target, query, headers, body).await;
    let status = resp.status().as_u16();
    tracing::debug!(%method, %path, verb, status, "sim request");
    state.log.push(RequestRecord {
        seq: 0,
        method: method.to_string(),
        path,
        query: raw_query,
        verb: verb.to_string(),
        status,
        user_agent,
    });
    resp
}

async fn dispatch(
    state: &AppState,
    method: &Method,
    target: &Target,
    query: Query,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let accept = header_str(&headers, header::ACCEPT);
    let store = &state.store;
    let get_only = |resp: Response| {
        if method == Method::GET || method == Method::HEAD {
            resp
        } else {
            ApiError::MethodNotAllowed {
                method: method.to_string(),
            }
            .into_response()
        }
    };
    match target {
        Target::Version => get_only(json_response(StatusCode::OK, &discovery::version())),
        Target::Api => get_only(if discovery::wants_aggregated(&accept) {
            aggregated_response(&discovery::aggregated(store, true))
        } else {
            json_response(
                StatusCode::OK,
                &discovery::api_versions(&state.server_address),
            )
        }),
        Target::Apis => get_only(if discovery::wants_aggregated(&accept) {
            aggregated_response(&discovery::aggregated(store, false))
        } else {
            json_response(StatusCode::OK, &discovery::api_group_list(store))
        }),
        Target::ApiGroup(group) => get_only(match discovery::api_group(store, group) {
            Some(g) => json_response(StatusCode::OK, &g),
            None => not_found_path(),
        }),
        Target::ResourceList(group, version) => {
            get_only(match discovery::api_resource_list(store, group, version) {
                Some(list) => json_response(StatusCode::OK, &list),
                None => not_found_path(),
            })
        }
        Target::OpenApiV2 => get_only(not_found_path()),
        Target::OpenApiV3Root => get_only(json_response(StatusCode::OK, &openapi::root(store))),
        Target::OpenApiV3(gv) => get_only(match openapi::group_version(store, gv) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => not_found_path(),
        }),
        Target::Metrics => get_only({
            let text = (state.hooks.metrics)(store);
            let mut resp = (StatusCode::OK, text).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }),
        Target::Health => get_only((StatusCode::OK, "ok").into_response()),
        Target::Faults => faults_endpoint(state, method, &body),
        Target::Unknown => not_found_path(),
        Target::Resource {
            group,
            version,
            namespace,
            plural,
            name,
            sub,
        } => {
            let Some(rt) = resolve_type(store, group, version, plural) else {
                return not_found_path();
            };
            if namespace.is_some() && !rt.namespaced {
                return not_found_path();
            }
            let latency = state.faults.latency();
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let is_write = *method != Method::GET && *method != Method::HEAD;
            if let Some(err) = state.faults.draw_error(is_write, &rt.plural) {
                return err.into_response_for(Some(&rt), name.as_deref());
            }
            let req = ResourceRequest {
                rt: rt.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                sub: sub.clone(),
                method: method.clone(),
                query,
                headers,
                body,
            };
            let handled = match crate::versions::storage_of(&rt) {
                Some(storage) => crate::versions::serve_converted(state, req, storage).await,
                None => routes::handle_resource(state, req).await,
            };
            match handled {
                Ok(resp) => resp,
                Err(err) => err.into_response_for(Some(&rt), name.as_deref()),
            }
        }
    }
}

fn not_found_path() -> Response {
    ApiError::UnknownPath.into_response()
}

fn aggregated_response(body: &Value) -> Response {
    let mut resp = json_response(StatusCode::OK, body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(discovery::AGGREGATED_V2),
    );
    resp
}

/// `GET /sim/faults` shows, `PUT /sim/faults` (a [`crate::faults::FaultConfig`] JSON
/// body) replaces the fault settings at runtime.
fn faults_endpoint(state: &AppState, method: &Method, body: &[u8]) -> Response {
    match *method {
        Method::GET => match serde_json::to_value(state.faults.config()) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => ApiError::Internal {
                message: e.to_string(),
            }
            .into_response(),
        },
        Method::PUT | Method::POST => match serde_json::from_slice(body) {
            Ok(config) => {
                state.faults.configure(config);
                match serde_json::to_value(state.faults.config()) {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err(e) => ApiError::Internal {
                        message: e.to_string(),
                    }
                    .into_response(),
                }
            }
            Err(e) => ApiError::BadRequest {
                message: format!("invalid fault configuration: {e}"),
            }
            .into_response(),
        },
        _ => ApiError::MethodNotAllowed {
            method: method.to_string(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("/api/v1/namespaces/default/pods/p/log"),
            Target::Resource {
                group: String::new(),
                version: "v1".into(),
                namespace: Some("default".into()),
                plural: "pods".into(),
                name: Some("p".into()),
                sub: Some("log".into()),
            }
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/default"),
            Target::Resource {
                group: String::new(),
                version: "v1".into(),
                namespace: None,
                plural: "namespaces".into(),
                name: Some("default".into()),
                sub: None,
            }
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/default/status"),
            Target::Resource {
                group: String::new(),
                version: "v1".into(),
                namespace: None,
                plural: "namespaces".into(),
                name: Some("default".into()),
                sub: Some("status".into()),
            }
        );
        assert_eq!(
            parse_path("/apis/apps/v1/deployments"),
            Target::Resource {
                group: "apps".into(),
                version: "v1".into(),
                namespace: None,
                plural: "deployments".into(),
                name: None,
                sub: None,
            }
        );
        assert_eq!(
            parse_path("/apis/apps/v1"),
            Target::ResourceList("apps".into(), "v1".into())
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/shop/pods/web-1:8080/proxy/warm/up"),
            Target::Resource {
                group: String::new(),
                version: "v1".into(),
                namespace: Some("shop".into()),
                plural: "pods".into(),
                name: Some("web-1:8080".into()),
                sub: Some("proxy/warm/up".into()),
            }
        );
        assert_eq!(parse_path("/nope"), Target::Unknown);
    }
}
