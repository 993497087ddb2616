//! The daemon's HTTP server: an accept loop that survives slow and hostile clients.
//!
//! `axum::serve` keeps an idle or half-sent connection open for as long as the client likes,
//! so a few hundred idle sockets used to exhaust the process's file descriptors and take
//! `/healthz`, the Lease renewals and the `Run` mirror down with them. This loop bounds
//! every connection:
//!
//! - at most [`HttpLimits::max_connections`] at once: one more is accepted and closed at once
//!   (counted in `ripcord_http_connections_refused_total`), so it never queues in the backlog;
//! - the request head (and the idle time between keep-alive requests) must arrive within
//!   [`HttpLimits::header_read_timeout`] (hyper's `header_read_timeout`);
//! - the body must arrive within [`HttpLimits::body_read_timeout`] (408) and may not exceed
//!   the body limit (413, refused unread when `Content-Length` says so) — enforced by the
//!   router's `bound_body` layer (see [`crate::daemon::api`]).
//!
//! On shutdown the loop stops accepting, asks every connection to finish its request and
//! close, and waits (bounded by [`SHUTDOWN_BOUND`]).

use crate::daemon::metrics::DaemonMetrics;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// How long shutdown waits for open connections to finish.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// Bounds on client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time allowed for a request head, and for the idle time before the next request of a
    /// keep-alive connection.
    pub header_read_timeout: Duration,
    /// Time allowed for a whole request body.
    pub body_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<DaemonMetrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let (closing_tx, closing_rx) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning; the bounds above close
                // connections in time.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused();
            tracing::warn!(peer = %peer, limit = max, "too many connections: closing a new one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let closed = async move {
                let _ = closing.wait_for(|c| *c).await;
            };
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = closed => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(SHUTDOWN_BOUND, conn.as_mut()).await {
                        Ok(result) => result,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(err) = result {
                tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    closing_tx.send_replace(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_BOUND, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(bound = ?SHUTDOWN_BOUND, "connections still open at shutdown");
    }
    Ok(())
}
