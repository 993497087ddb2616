//! Watch streams: chunked JSON lines of `{"type": ..., "object": ...}` events.
//!
//! Semantics follow the real API server as kube-rs and kubectl use it:
//! - no `resourceVersion` (or `"0"`): synthetic `ADDED` events for the current objects, then
//!   changes; with `sendInitialEvents=true` additionally a `BOOKMARK` annotated
//!   `k8s.io/initial-events-end: "true"` once the initial state is sent (streaming lists);
//! - `resourceVersion=N`: every change after N; if N is older than the kept history, a single
//!   `ERROR` event carrying a 410 `Expired` `Status`, then the stream ends;
//! - `allowWatchBookmarks=true`: periodic `BOOKMARK` events with the current resourceVersion;
//! - `timeoutSeconds`: the stream ends after that many (real) seconds;
//! - label and field selectors: objects entering the selection are sent as `ADDED`, objects
//!   leaving it as `DELETED`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::faults::Faults;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{EventKind, ResourceType, Store, StoreError, StoreEvent};
use crate::table::{self, IncludeObject};

/// Default stream lifetime when the client gives no `timeoutSeconds` (real servers pick
/// 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Interval between bookmarks when they are allowed.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(2);

/// What a watch request asked for.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    /// The watched type.
    pub rt: ResourceType,
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// `resourceVersion` parameter (`None` or `"0"`: start from the current state).
    pub resource_version: Option<String>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents` (`None` when absent).
    pub send_initial_events: Option<bool>,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Render objects as Tables (kubectl get --watch).
    pub table: Option<IncludeObject>,
}

struct WatchState {
    req: WatchRequest,
    store: Store,
    faults: Faults,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    /// Whether a selector is set (only then are objects tracked in `known`).
    selective: bool,
    /// Keys of objects the client currently believes match (selective watches only).
    known: HashSet<(String, String)>,
    sent: usize,
    first_table: bool,
}

fn key_of(obj: &Value) -> (String, String) {
    let m = |f: &str| {
        obj.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (m("namespace"), m("name"))
}

// === impl WatchState ===

impl WatchState {
    fn matches(&self, obj: &Value) -> bool {
        self.req.labels.matches(obj) && self.req.fields.matches(obj)
    }

    /// Sends one event line; `false` when the client is gone or the stream must end.
    async fn send(&mut self, kind: &str, object: Value) -> bool {
        let object = match self.req.table {
            Some(include) if kind != "ERROR" && kind != "BOOKMARK" => {
                let with_columns = self.first_table;
                self.first_table = false;
                table::table(
                    &self.store,
                    &self.req.rt,
                    std::slice::from_ref(&object),
                    include,
                    json!({"resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)}),
                    with_columns,
                )
            }
            _ => object,
        };
        let mut line = match serde_json::to_vec(&json!({"type": kind, "object": object})) {
            Ok(l) => l,
            Err(_) => return true,
        };
        line.push(b'\n');
        if self.tx.send(Ok(Bytes::from(line))).await.is_err() {
            return false;
        }
        if kind == "BOOKMARK" || kind == "ERROR" {
            return true;
        }
        self.sent += 1;
        !self.faults.should_drop_watch(self.sent)
    }

    async fn send_bookmark(&mut self, rv: u64, initial_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({
            "kind": self.req.rt.kind,
            "apiVersion": self.req.rt.api_version(),
            "metadata": metadata,
        });
        self.send("BOOKMARK", obj).await
    }

    /// Translates a store event into what this watcher sees; `false` = stop.
    async fn on_event(&mut self, ev: StoreEvent) -> bool {
        if ev.resource != self.req.rt {
            return true;
        }
        if let Some(ns) = &self.req.namespace
            && ev.namespace() != Some(ns.as_str())
        {
            return true;
        }
        if !self.selective {
            return self.send(ev.kind.as_watch_type(), ev.object).await;
        }
        let key = key_of(&ev.object);
        let now_matches = ev.kind != EventKind::Deleted && self.matches(&ev.object);
        let was_known = self.known.contains(&key);
        let kind = match (ev.kind, now_matches, was_known) {
            (EventKind::Deleted, _, true) => Some("DELETED"),
            (EventKind::Deleted, _, false) => {
                // Deleted objects that match the selector but were created before the watch
                // started from a resourceVersion are still reported.
                self.matches(&ev.object).then_some("DELETED")
            }
            (EventKind::Added, true, _) => Some("ADDED"),
            (EventKind::Modified, true, true) => Some("MODIFIED"),
            (EventKind::Modified, true, false) => Some("ADDED"),
            (_, false, true) => Some("DELETED"),
            (_, false, false) => None,
        };
        match kind {
            Some("DELETED") => {
                self.known.remove(&key);
            }
            Some(_) => {
                self.known.insert(key);
            }
            None => return true,
        }
        match kind {
            Some(k) => self.send(k, ev.object).await,
            None => true,
        }
    }
}

/// The ERROR event for a failed watch start (e.g. 410 Expired).
fn error_event(err: StoreError) -> Value {
    json!({"type": "ERROR", "object": ApiError::Store(err).to_status(None, None)})
}

/// Starts a watch and returns the streaming response. `shutdown` ends the stream when the
/// server stops.
pub fn serve_watch(
    store: Store,
    faults: Faults,
    req: WatchRequest,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Response, ApiError> {
    let requested_rv = match req.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| ApiError::BadRequest {
            message: format!("invalid resource version: {rv}"),
        })?),
    };
    // Subscribe before reading the current state so no change is lost in between.
    let mut rx = store.subscribe();
    let (tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let selective = !req.labels.is_empty() || !req.fields.is_empty();
    let mut state = WatchState {
        req,
        selective,
        store: store.clone(),
        faults: faults.clone(),
        tx,
        known: HashSet::new(),
        sent: 0,
        first_table: true,
    };
    tokio::spawn(async move {
        let send_initial = state
            .req
            .send_initial_events
            .unwrap_or(requested_rv.is_none());
        let mut last_rv;
        if let Some(rv) = requested_rv.filter(|_| !send_initial) {
            if faults.take_watch_expiry() {
                let err = StoreError::Expired {
                    requested: rv,
                    oldest: store.current_rv(),
                };
                let _ = send_raw(&state.tx, &error_event(err)).await;
                return;
            }
            match store.events_since(&state.req.rt, state.req.namespace.as_deref(), rv) {
                Err(err) => {
                    let _ = send_raw(&state.tx, &error_event(err)).await;
                    return;
                }
                Ok(events) => {
                    // With selectors, objects that match now (minus those created after rv)
                    // are what the client is assumed to hold; without, every event passes.
                    if state.selective {
                        let req = state.req.clone();
                        let selects = |o: &Value| req.labels.matches(o) && req.fields.matches(o);
                        let ns = req.namespace.as_deref();
                        // Objects unchanged since rv: as they are now.
                        state.known.extend(store.keys_where(&req.rt, ns, selects));
                        // Objects changed since rv: as they were at rv (from the history), so
                        // that one which left the selector since is sent as DELETED.
                        let at_rv = store.states_at(&req.rt, ns, rv, selects);
                        let mut seen = HashSet::new();
                        for ev in &events {
                            let key = key_of(&ev.object);
                            if !seen.insert(key.clone()) {
                                continue;
                            }
                            let held = match (ev.kind, at_rv.get(&key)) {
                                (EventKind::Added, _) => false,
                                (_, Some(matched)) => *matched,
                                (_, None) => state.known.contains(&key),
                            };
                            if held {
                                state.known.insert(key);
                            } else {
                                state.known.remove(&key);
                            }
                        }
                    }
                    last_rv = rv;
                    for ev in events {
                        last_rv = last_rv.max(ev.rv);
                        if !state.on_event(ev).await {
                            return;
                        }
                    }
                }
            }
        } else {
            let req = state.req.clone();
            let (items, _, list_rv) =
                store.list_page(&req.rt, req.namespace.as_deref(), None, None, |o| {
                    req.labels.matches(o) && req.fields.matches(o)
                });
            last_rv = list_rv;
            for obj in items {
                if state.selective {
                    state.known.insert(key_of(&obj));
                }
                if send_initial && !state.send("ADDED", obj).await {
                    return;
                }
            }
            if state.req.send_initial_events == Some(true)
                && state.req.bookmarks
                && !state.send_bookmark(list_rv, true).await
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(state.req.timeout.unwrap_or(DEFAULT_TIMEOUT));
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = bookmark.tick(), if state.req.bookmarks => {
                    let rv = store.current_rv().max(last_rv);
                    if !state.send_bookmark(rv, false).await {
                        return;
                    }
                }
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if !state.on_event(ev).await {
                            return;
                        }
                    }
                    // A slow watcher lost events: end the stream, the client re-watches from
                    // its last resourceVersion (and re-lists on 410).
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = state.tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

async fn send_raw(tx: &mpsc::Sender<Result<Bytes, Infallible>>, event: &Value) -> bool {
    let Ok(mut line) = serde_json::to_vec(event) else {
        return false;
    };
    line.push(b'\n');
    tx.send(Ok(Bytes::from(line))).await.is_ok()
}
