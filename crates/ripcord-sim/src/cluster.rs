//! [`SimCluster`]: a scenario loaded into a store, the simulated controllers and the API
//! server, started and stopped together.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::clock::SimClock;
use crate::controllers;
use crate::eviction::{self, EvictionError};
use crate::faults::{Faults, RequestLog, RequestRecord};
use crate::invariants::InvariantMonitor;
use crate::pod_logs;
use crate::scenario::{Scenario, ScenarioError};
use crate::server::{EvictOptions, LogRequest, ServerError, SimHooks, SimServer};
use crate::service_metrics;
use crate::status::ApiError;
use crate::store::{Store, StoreError};

/// Seed of the fault-injection generator.
const FAULT_SEED: u64 = 0x5EED_FA17;

/// How a [`SimCluster`] starts.
pub struct SimOptions {
    /// What the cluster contains and how it behaves.
    pub scenario: Scenario,
    /// Listen address; `None` = `127.0.0.1:0` (a free port).
    pub addr: Option<SocketAddr>,
}

/// Errors starting a simulated cluster.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario's objects could not be created.
    #[error("loading the scenario into the simulated cluster")]
    LoadScenario {
        /// The cause.
        #[source]
        source: ScenarioError,
    },
    /// The API server did not start.
    #[error("starting the simulated API server")]
    Serve {
        /// The cause.
        #[source]
        source: ServerError,
    },
    /// The server's own URL does not parse (cannot happen for a bound socket address).
    #[error("the simulated API server URL {url} is not a valid URI")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// The kube client for the server could not be built.
    #[error("building a Kubernetes client for {url}")]
    Client {
        /// The server URL.
        url: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

impl SimError {
    /// Stable category.
    pub fn category(&self) -> &'static str {
        match self {
            SimError::LoadScenario { .. } => "sim_load_scenario",
            SimError::Serve { .. } => "sim_serve",
            SimError::BadUrl { .. } | SimError::Client { .. } => "sim_client",
        }
    }
}

/// A running simulated cluster.
pub struct SimCluster {
    store: Store,
    faults: Faults,
    log: RequestLog,
    monitor: InvariantMonitor,
    server: SimServer,
    controllers: tokio::task::JoinHandle<()>,
    client: kube::Client,
}

/// Maps the controllers' eviction errors onto API errors (429 with the PDB message, 404).
fn eviction_error(err: EvictionError) -> ApiError {
    match err {
        EvictionError::DisruptionNotAllowed { message, cause } => {
            ApiError::DisruptionBudget { message, cause }
        }
        EvictionError::NotFound { name, .. } => ApiError::Store(StoreError::NotFound {
            resource: "pods".into(),
            name,
        }),
        EvictionError::Delete { source, .. } => ApiError::Store(source),
        other @ EvictionError::MultiplePdbs { .. } => ApiError::Internal {
            message: other.to_string(),
        },
    }
}

// === impl SimCluster ===

impl SimCluster {
    /// Loads the scenario, starts the controllers and serves the API.
    pub async fn start(opts: SimOptions) -> Result<SimCluster, SimError> {
        let settings = opts.scenario.settings().clone();
        let clock = SimClock::new(settings.time_factor);
        let store = Store::new(clock);
        opts.scenario
            .load_into(&store)
            .map_err(|source| SimError::LoadScenario { source })?;
        let faults = Faults::new(FAULT_SEED);
        faults.set_latency(settings.latency);
        for (code, rate) in &settings.error_rates {
            faults.set_error_rate(*code, *rate);
        }
        let monitor = InvariantMonitor::new();
        let log = RequestLog::default();
        let evict_monitor = monitor.clone();
        let hooks = SimHooks {
            evict: Arc::new(
                move |store: &Store, ns: &str, pod: &str, options: &EvictOptions| {
                    eviction::evict_with(store, &evict_monitor, ns, pod, options)
                        .map_err(eviction_error)
                },
            ),
            pod_log: Arc::new(|store: &Store, req: &LogRequest| {
                pod_logs::pod_log_for(store, req).map_err(ApiError::Store)
            }),
            metrics: {
                let monitor = monitor.clone();
                Arc::new(move |store: &Store| service_metrics::render(store, &monitor))
            },
        };
        let controllers = controllers::spawn(store.clone(), settings, monitor.clone());
        let server =
            match SimServer::start(store.clone(), faults.clone(), log.clone(), hooks, opts.addr)
                .await
            {
                Ok(s) => s,
                Err(source) => {
                    controllers.abort();
                    return Err(SimError::Serve { source });
                }
            };
        let url = server.url();
        let client = match url.parse::<axum::http::Uri>() {
            Ok(uri) => {
                kube::Client::try_from(kube::Config::new(uri)).map_err(|source| SimError::Client {
                    url: url.clone(),
                    source,
                })
            }
            Err(_) => Err(SimError::BadUrl { url: url.clone() }),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                controllers.abort();
                server.shutdown().await;
                return Err(e);
            }
        };
        Ok(SimCluster {
            store,
            faults,
            log,
            monitor,
            server,
            controllers,
            client,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A kube client for the server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig for kubectl and other clients (plain HTTP, no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// Writes [`SimCluster::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// The object store (tests read and write it directly).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runtime fault injection.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every request served so far (bounded), oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.log.records()
    }

    /// Number of POST/PUT/PATCH/DELETE requests served.
    pub fn write_request_count(&self) -> usize {
        self.log.write_count()
    }

    /// The invariant monitor fed by the controllers and evictions.
    pub fn invariants(&self) -> &InvariantMonitor {
        &self.monitor
    }

    /// Stops the controllers and the server (open watches end).
    pub async fn shutdown(self) {
        self.controllers.abort();
        self.server.shutdown().await;
    }
}

/// A kubeconfig pointing at `url` with context `ripcord-sim` and namespace `default`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: ripcord-sim
  cluster:
    server: {url}
contexts:
- name: ripcord-sim
  context:
    cluster: ripcord-sim
    user: ripcord-sim
    namespace: default
current-context: ripcord-sim
users:
- name: ripcord-sim
  user: {{}}
preferences: {{}}
"
    )
}
