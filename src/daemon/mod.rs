//! The daemon: HTTP API, Alertmanager webhook, status page, scheduler, leader election, run
//! queue and per-target locks.
//!
//! - [`api`]: the axum router ([`router`]), bearer-token auth ([`auth`]), body limits.
//! - [`runs`]: the run queue; every trigger ends in [`runs::RunManager::submit`] and runs
//!   through the engine, one run per lock target at a time, only while this process leads.
//! - [`alerts`]: Alertmanager rules (labels → playbook + params), de-duplication, cooldown,
//!   rate limit.
//! - [`drills`]: scheduled drills (cron, window, timezone, error-budget gate, fail-out →
//!   fail-back → verify, drill report).
//! - [`leader`]: leader election through the `ripcord-leader` Lease.
//! - [`warm_gate`]: while leading, releases pods held by the readiness gate
//!   `ripcord.dev/warmed` that no ripcord restart is warming (rollouts started by others).
//! - [`status`]: the status page at `/`, [`session`]: its login, session cookie and live feed.
//! - [`metrics`]: `/metrics` (prefix `ripcord_`).
//! - [`http`]: the accept loop with connection, header and body bounds.
//! - [`server`]: wiring and graceful shutdown ([`server::serve`]).

pub mod alerts;
pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod drills;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod runs;
pub mod server;
pub mod session;
pub mod status;
pub mod warm_gate;

pub use api::router;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Everything the HTTP handlers share. Cheap to clone.
#[derive(Clone)]
pub struct DaemonState {
    /// The run queue.
    pub runs: runs::RunManager,
    /// The Alertmanager rules.
    pub alerts: Arc<alerts::AlertRouter>,
    /// Metrics.
    pub metrics: Arc<metrics::DaemonMetrics>,
    /// Accepted bearer tokens.
    pub tokens: Arc<auth::Tokens>,
    /// Request body limit in bytes.
    pub body_limit: usize,
    /// Time allowed for reading a whole request body (408 after it).
    pub body_read_timeout: std::time::Duration,
    /// Serve `/` without a token (it shows no secrets, but does show incidents).
    pub public_status_page: bool,
    /// Leadership (true while this process leads).
    pub leader: tokio::sync::watch::Receiver<bool>,
    /// Drill history for the status page.
    pub drills: drills::DrillLog,
    /// Prometheus for the status page's impact graphs (none: no graphs).
    pub prometheus: Option<crate::metrics::prometheus::Prometheus>,
    /// Status page sessions (browser logins).
    pub sessions: Arc<session::Sessions>,
    /// What the status page shows, cached for every viewer.
    pub feed: status::StatusFeed,
    ready: Arc<AtomicBool>,
}

// === impl DaemonState ===

impl DaemonState {
    /// Shared state; `ready` starts false.
    pub fn new(
        runs: runs::RunManager,
        alerts: alerts::AlertRouter,
        metrics: Arc<metrics::DaemonMetrics>,
        tokens: auth::Tokens,
        leader: tokio::sync::watch::Receiver<bool>,
    ) -> DaemonState {
        DaemonState {
            runs,
            alerts: Arc::new(alerts),
            metrics,
            tokens: Arc::new(tokens),
            body_limit: 1024 * 1024,
            body_read_timeout: http::HttpLimits::default().body_read_timeout,
            public_status_page: false,
            leader,
            drills: drills::DrillLog::default(),
            prometheus: None,
            sessions: Arc::new(session::Sessions::default()),
            feed: status::StatusFeed::default(),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the daemon ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// True once the daemon serves.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// True while this process leads.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}
