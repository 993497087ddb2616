//! Wiring: settings → engine, run queue, leader election, drills, the warm-gate controller,
//! HTTP server; graceful shutdown.
//!
//! Shutdown order (SIGTERM, or the `shutdown` channel in tests): stop accepting requests, ask
//! every executing run to stop at its next safe point (journaled `interrupted`, resumable),
//! wait for them (bounded), then release the leader Lease so the next leader takes over at
//! once. The runs' per-target Leases are released by the engine.

use crate::daemon::alerts::AlertRouter;
use crate::daemon::auth::{AuthError, TokenScope, Tokens};
use crate::daemon::clock::Clock;
use crate::daemon::config::{AlertmanagerConfig, DrillConfig};
use crate::daemon::drills::{ConditionGate, DrillScheduler};
use crate::daemon::http::HttpLimits;
use crate::daemon::leader::{self, ElectionConfig};
use crate::daemon::metrics::DaemonMetrics;
use crate::daemon::runs::{EngineExecutor, Executor, Playbooks, RunDefaults, RunManager};
use crate::daemon::{DaemonState, router};
use crate::engine::Engine;
use crate::metrics::prometheus::Prometheus;
use crate::notify::ChannelConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long shutdown waits for executing runs to reach a safe point.
pub const DRAIN_BOUND: Duration = Duration::from_secs(30);
/// Pods the warm-gate controller handles at once.
pub const WARM_GATE_CONCURRENCY: usize = 4;
/// How often the warm-gate controller looks again at a pod a running restart holds.
pub const WARM_GATE_RECHECK: Duration = Duration::from_secs(5);

/// Why the daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The tokens could not be loaded.
    #[error("cannot load the API tokens")]
    Tokens(#[from] AuthError),
    /// No tokens configured: the API would be open.
    #[error("no API tokens: set --tokens-file / RIPCORD_TOKENS_FILE (one token per line)")]
    NoTokens,
    /// A notification channel could not be resolved.
    #[error("notification channel {channel}")]
    Notify {
        /// The channel.
        channel: String,
        /// Why.
        #[source]
        source: crate::notify::NotifyError,
    },
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// The state directory could not be created.
    #[error("cannot create the state directory {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            DaemonError::Tokens(e) => e.category(),
            DaemonError::NoTokens => "no-tokens",
            DaemonError::Notify { .. } => "notify-config",
            DaemonError::Serve(_) => "serve",
            DaemonError::StateDir { .. } => "state-dir",
        }
    }
}

/// Where the tokens come from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A file, one token per line (re-read when it changes).
    File(PathBuf),
    /// Fixed tokens (tests).
    Fixed(Vec<String>),
}

/// Everything the daemon needs, resolved from the config file and flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Journals, snapshots, approvals, drill reports.
    pub state_dir: PathBuf,
    /// Bearer tokens.
    pub tokens: TokenSource,
    /// The namespace of the leader Lease.
    pub namespace: String,
    /// Extra playbooks.
    pub playbooks_dir: Option<PathBuf>,
    /// Request body limit.
    pub body_limit: usize,
    /// Who daemon runs are attributed to.
    pub who: String,
    /// Per-call timeout.
    pub call_timeout: Duration,
    /// Prometheus for guards and drill gates.
    pub prometheus_url: Option<String>,
    /// Notification channels (resolved at start).
    pub notify: Vec<crate::playbook::model::NotifyChannel>,
    /// Require delivery (config `notify.required`): a run whose "about to …" notification
    /// reached nobody is refused before its first mutation.
    pub notify_required: bool,
    /// Leader election (`None`: always lead).
    pub election: Option<ElectionSettings>,
    /// Alert rules.
    pub alertmanager: AlertmanagerConfig,
    /// Drills.
    pub drills: Vec<DrillConfig>,
    /// Serve `/` without a token.
    pub public_status_page: bool,
    /// The kubeconfig whose contexts steps with `context:` may name (`None`: such steps are
    /// refused).
    pub step_kubeconfig: Option<PathBuf>,
    /// Token scopes, the run key, connection bounds.
    pub trust: TrustSettings,
}

/// The daemon's trust boundaries (see `docs/security.md`).
#[derive(Debug, Clone, Default)]
pub struct TrustSettings {
    /// What each named token may do (`tokens:` in the config; unlisted names get
    /// [`TokenScope::named`]).
    pub token_scopes: Vec<TokenScope>,
    /// The key sealing this daemon's `Run` resources (`None`: runs are not sealed and no
    /// unfinished run is taken over from the cluster).
    pub run_key: Option<Arc<crate::k8s::runs::RunSeal>>,
    /// Connection, header and body bounds.
    pub http: HttpLimits,
}

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct ElectionSettings {
    /// The Lease.
    pub lease_name: String,
    /// Its duration.
    pub lease_duration: Duration,
    /// This process's identity.
    pub identity: String,
}

/// Serves until `shutdown` turns true, then shuts down gracefully.
pub async fn serve(
    settings: Settings,
    client: kube::Client,
    listener: tokio::net::TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let executor: Arc<dyn Executor> = Arc::new(EngineExecutor::new(
        Engine::new(client.clone(), http.clone()),
        settings.step_kubeconfig.clone(),
    ));
    serve_with(settings, client, http, executor, listener, shutdown).await
}

/// [`serve`] with a chosen executor (tests).
pub async fn serve_with(
    settings: Settings,
    client: kube::Client,
    http: reqwest::Client,
    executor: Arc<dyn Executor>,
    listener: tokio::net::TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&settings.state_dir).map_err(|source| DaemonError::StateDir {
        path: settings.state_dir.clone(),
        source,
    })?;
    let tokens = match &settings.tokens {
        TokenSource::File(path) => Tokens::from_file(path)?,
        TokenSource::Fixed(list) if list.iter().any(|t| !t.trim().is_empty()) => {
            Tokens::fixed(list)
        }
        TokenSource::Fixed(_) => return Err(DaemonError::NoTokens),
    }
    .with_scopes(settings.trust.token_scopes.clone());
    if settings.trust.run_key.is_none() {
        tracing::warn!(
            "no run key (runKeyFile): this daemon's Run resources are not sealed and unfinished runs are not taken over by another replica"
        );
    }
    let notify = settings
        .notify
        .iter()
        .map(|c| {
            ChannelConfig::resolve(c).map_err(|source| DaemonError::Notify {
                channel: c.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metrics = Arc::new(DaemonMetrics::new());

    // Leadership.
    let (leader_tx, leader_rx) = watch::channel(settings.election.is_none());
    let (election_stop_tx, election_stop_rx) = watch::channel(false);
    let election = settings.election.as_ref().map(|e| {
        let config = ElectionConfig {
            namespace: settings.namespace.clone(),
            lease_name: e.lease_name.clone(),
            identity: e.identity.clone(),
            lease_duration: e.lease_duration,
            call_timeout: settings.call_timeout,
        };
        tokio::spawn(leader::run_election(
            client.clone(),
            config,
            leader_tx,
            election_stop_rx,
            metrics.clone(),
        ))
    });

    let runs = RunManager::new(
        executor,
        Playbooks {
            dir: settings.playbooks_dir.clone(),
        },
        RunDefaults {
            state_dir: settings.state_dir.clone(),
            prometheus_url: settings.prometheus_url.clone(),
            notify,
            notify_required: settings.notify_required,
            call_timeout: settings.call_timeout,
            lock_namespace: Some(settings.namespace.clone()),
            seal: settings.trust.run_key.clone(),
        },
        metrics.clone(),
        Clock::System,
        leader_rx.clone(),
    );
    let mut state = DaemonState::new(
        runs.clone(),
        AlertRouter::new(settings.alertmanager.clone()).with_cluster(
            client.clone(),
            settings.namespace.clone(),
            settings.call_timeout,
        ),
        metrics.clone(),
        tokens,
        leader_rx.clone(),
    );
    state.body_limit = settings.body_limit;
    state.body_read_timeout = settings.trust.http.body_read_timeout;
    state.prometheus = settings
        .prometheus_url
        .as_ref()
        .map(|url| Prometheus::new(url.clone(), http.clone()));
    state.public_status_page = settings.public_status_page;

    // Takeover on becoming the leader; stop on losing it.
    let takeover = {
        let runs = runs.clone();
        let client = client.clone();
        let mut leader_rx = leader_rx.clone();
        let who = settings.who.clone();
        let call_timeout = settings.call_timeout;
        let metrics = metrics.clone();
        let seal = settings.trust.run_key.clone();
        tokio::spawn(async move {
            let mut was = false;
            loop {
                let now = *leader_rx.borrow_and_update();
                metrics.set_leader(now);
                if now && !was {
                    match leader::resume_unfinished(
                        &client,
                        &runs,
                        &who,
                        call_timeout,
                        seal.as_deref(),
                        &metrics,
                    )
                    .await
                    {
                        Ok(ids) if !ids.is_empty() => {
                            tracing::info!(runs = ?ids, "took over unfinished runs")
                        }
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot list unfinished runs to take over")
                        }
                    }
                }
                if !now && was {
                    runs.stop_all(crate::k8s::runs::DaemonStop::LostLeadership);
                }
                was = now;
                if leader_rx.changed().await.is_err() {
                    return;
                }
            }
        })
    };

    let drills = DrillScheduler {
        drills: settings.drills.clone(),
        runs: runs.clone(),
        gate: settings.prometheus_url.as_ref().map(|url| {
            Arc::new(Prometheus::new(url.clone(), http.clone())) as Arc<dyn ConditionGate>
        }),
        leader: leader_rx.clone(),
        metrics: metrics.clone(),
        log: state.drills.clone(),
    }
    .spawn();

    let warm_gate = crate::daemon::warm_gate::WarmGate {
        client: client.clone(),
        http: http.clone(),
        leader: leader_rx.clone(),
        metrics: metrics.clone(),
        lock_namespace: Some(settings.namespace.clone()),
        call_timeout: settings.call_timeout,
        concurrency: WARM_GATE_CONCURRENCY,
        recheck: WARM_GATE_RECHECK,
    }
    .spawn();

    let status_refresh = crate::daemon::status::spawn_cluster_refresh(
        state.feed.clone(),
        client.clone(),
        settings.call_timeout,
    );
    let app = router(state.clone());
    state.set_ready(true);
    tracing::info!(addr = ?listener.local_addr().ok(), "ripcord daemon serving");
    let draining = state.clone();
    let mut shutting_down = shutdown.clone();
    tokio::spawn(async move {
        let _ = shutting_down.wait_for(|s| *s).await;
        // Not ready any more: /readyz says so and the status page's live feeds end, so the
        // graceful shutdown does not wait for them.
        draining.set_ready(false);
    });
    let served = crate::daemon::http::serve(
        listener,
        app,
        settings.trust.http,
        metrics.clone(),
        shutdown.clone(),
    )
    .await;
    state.set_ready(false);
    tracing::info!("shutting down: stopping runs at a safe point");
    for d in drills {
        d.abort();
    }
    runs.stop_all(crate::k8s::runs::DaemonStop::Shutdown);
    if !runs.drain(DRAIN_BOUND).await {
        tracing::warn!(bound = ?DRAIN_BOUND, "runs did not stop in time");
    }
    takeover.abort();
    warm_gate.abort();
    status_refresh.abort();
    election_stop_tx.send_replace(true);
    if let Some(election) = election {
        let _ = election.await;
    }
    served.map_err(DaemonError::Serve)
}
