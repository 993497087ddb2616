//! Leader election through the coordination.k8s.io Lease `ripcord-leader`, and the takeover
//! of unfinished runs by a new leader.
//!
//! The holder renews the Lease every third of its duration. A follower takes the Lease over
//! once it has not been renewed for its whole duration (an optimistic-concurrency `replace`:
//! of two followers racing, one gets a 409 and stays a follower). A leader that cannot renew
//! for a whole duration steps down by itself. On graceful shutdown the leader clears the
//! holder so the next leader does not wait for the expiry.
//!
//! Takeover ([`resume_unfinished`]): the new leader lists `Run` resources whose phase is not
//! `Finished` and runs them again *with the same run id* (from the local journal when this
//! replica has it — the engine's resume — else re-planned from the `Run`'s playbook and
//! parameters). Actions mark their changes with the run id and step, so the repeated run
//! recognises what the previous leader already did and applies nothing twice.

use crate::actions::FIELD_MANAGER;
use crate::daemon::runs::{PlaybookSource, RunManager, RunRequest};
use crate::engine::Trigger;
use crate::k8s::runs::Run;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;

/// Marks the stop reasons of runs stopped by the daemon itself (shutdown, lost leadership),
/// which the next leader resumes.
pub const DAEMON_STOP_MARKER: &str = "ripcord daemon (";

/// Why a Lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// An API call failed.
    #[error("{operation} of lease {namespace}/{name} failed")]
    Api {
        /// `get`, `create`, `replace`.
        operation: &'static str,
        /// The namespace.
        namespace: String,
        /// The Lease.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An API call did not answer in time.
    #[error("{operation} of lease {namespace}/{name} timed out after {after:?}")]
    Timeout {
        /// What.
        operation: &'static str,
        /// The namespace.
        namespace: String,
        /// The Lease.
        name: String,
        /// The bound.
        after: Duration,
    },
    /// Listing `Run` resources failed.
    #[error("cannot list Run resources")]
    ListRuns {
        /// The API error (or timeout).
        #[source]
        source: kube::Error,
    },
}

impl LeaderError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            LeaderError::Api { .. } => "api",
            LeaderError::Timeout { .. } => "timeout",
            LeaderError::ListRuns { .. } => "list-runs",
        }
    }
}

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name (`ripcord-leader`).
    pub lease_name: String,
    /// This process's identity (pod name + a random suffix).
    pub identity: String,
    /// The Lease duration.
    pub lease_duration: Duration,
    /// Timeout of each API call.
    pub call_timeout: Duration,
}

/// The election loop. Publishes leadership on `tx`; ends (releasing the Lease if held) when
/// `shutdown` turns true.
pub async fn run_election(
    client: kube::Client,
    config: ElectionConfig,
    tx: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let retry = (config.lease_duration / 3).max(Duration::from_millis(100));
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        let leading = *tx.borrow();
        match try_acquire_or_renew(&api, &config).await {
            Ok(true) => {
                last_renewed = Some(tokio::time::Instant::now());
                if !leading {
                    tracing::info!(identity = %config.identity, lease = %config.lease_name, "became the leader");
                    tx.send_replace(true);
                }
            }
            Ok(false) => {
                if leading {
                    tracing::warn!(identity = %config.identity, "another process holds the leader lease: stepping down");
                    tx.send_replace(false);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, category = err.category(), "leader lease call failed");
                let expired = last_renewed.is_none_or(|t| t.elapsed() >= config.lease_duration);
                if leading && expired {
                    tracing::warn!(identity = %config.identity, "could not renew the leader lease in time: stepping down");
                    tx.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if *tx.borrow() {
        tx.send_replace(false);
        match release(&api, &config).await {
            Ok(()) => tracing::info!(identity = %config.identity, "leader lease released"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot release the leader lease; it expires by itself")
            }
        }
    }
}

async fn call<T>(
    config: &ElectionConfig,
    operation: &'static str,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, LeaderError> {
    tokio::time::timeout(config.call_timeout, fut)
        .await
        .map_err(|_| LeaderError::Timeout {
            operation,
            namespace: config.namespace.clone(),
            name: config.lease_name.clone(),
            after: config.call_timeout,
        })
}

fn api_error(config: &ElectionConfig, operation: &'static str, source: kube::Error) -> LeaderError {
    LeaderError::Api {
        operation,
        namespace: config.namespace.clone(),
        name: config.lease_name.clone(),
        source,
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

/// One election round: `Ok(true)` when this process holds the Lease afterwards.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &ElectionConfig,
) -> Result<bool, LeaderError> {
    let now = jiff::Timestamp::now();
    let duration_s = i32::try_from(config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let existing = call(config, "get", api.get_opt(&config.lease_name))
        .await?
        .map_err(|e| api_error(config, "get", e))?;
    let Some(mut lease) = existing else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.lease_name.clone()),
                namespace: Some(config.namespace.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "ripcord".to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_s),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match call(config, "create", api.create(&post_params(), &lease)).await? {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(api_error(config, "create", e)),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(config.identity.as_str());
    if !ours {
        let renewed = spec
            .renew_time
            .as_ref()
            .or(spec.acquire_time.as_ref())
            .map(|t| t.0);
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(duration_s));
        let expired = match (holder.as_ref(), renewed) {
            (None, _) | (_, None) => true,
            (Some(_), Some(renewed)) => now.as_second() - renewed.as_second() >= duration,
        };
        if !expired {
            return Ok(false);
        }
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        tracing::info!(
            previous = holder.as_deref().unwrap_or("nobody"),
            "taking over the expired leader lease"
        );
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(duration_s);
    // `lease` carries its resourceVersion: a concurrent change makes this a 409.
    match call(
        config,
        "replace",
        api.replace(&config.lease_name, &post_params(), &lease),
    )
    .await?
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(api_error(config, "replace", e)),
    }
}

async fn release(api: &Api<Lease>, config: &ElectionConfig) -> Result<(), LeaderError> {
    let Some(mut lease) = call(config, "get", api.get_opt(&config.lease_name))
        .await?
        .map_err(|e| api_error(config, "get", e))?
    else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match call(
        config,
        "replace",
        api.replace(&config.lease_name, &post_params(), &lease),
    )
    .await?
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(api_error(config, "replace", e)),
    }
}

/// Queues every unfinished daemon run (trigger not `cli`) recorded in `Run` resources that
/// is not already active in this process. Returns the run ids queued.
pub async fn resume_unfinished(
    client: &kube::Client,
    runs: &RunManager,
    who: &str,
    call_timeout: Duration,
) -> Result<Vec<String>, LeaderError> {
    let api: Api<Run> = Api::all(client.clone());
    let list = match tokio::time::timeout(call_timeout, api.list(&ListParams::default())).await {
        Ok(Ok(list)) => list,
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
            tracing::info!("no Run resource definition installed: nothing to take over");
            return Ok(Vec::new());
        }
        Ok(Err(source)) => return Err(LeaderError::ListRuns { source }),
        Err(_) => {
            return Err(LeaderError::Timeout {
                operation: "list runs",
                namespace: String::new(),
                name: "runs.ripcord.dev".to_string(),
                after: call_timeout,
            });
        }
    };
    let mut queued = Vec::new();
    for run in list.items {
        let Some(run_id) = run.metadata.name.clone() else {
            continue;
        };
        // Unfinished: still `Running` (its process died), or interrupted by a daemon's
        // shutdown / lost leadership. Runs a person cancelled stay cancelled.
        let finished = run.status.as_ref().is_some_and(|s| {
            let by_daemon = s.outcome.as_deref() == Some("interrupted")
                && s.message
                    .as_deref()
                    .is_some_and(|m| m.contains(DAEMON_STOP_MARKER));
            (s.phase == "Finished" || s.outcome.is_some()) && !by_daemon
        });
        // A person's CLI run may still be running on a laptop: never take those over.
        if finished || run.spec.trigger == "cli" || runs.is_active(&run_id) {
            continue;
        }
        let local = crate::journal::journal_path(runs.state_dir(), &run_id);
        let result = if local.is_file() {
            runs.resume_local(&run_id, who)
        } else {
            if run.spec.params.values().any(|v| v == "<redacted>") {
                tracing::warn!(run = %run_id, "cannot take over: its Run resource has redacted parameters and this replica has no journal");
                continue;
            }
            runs.submit(RunRequest {
                playbook: PlaybookSource::Name(run.spec.playbook.clone()),
                params: run.spec.params.clone(),
                incident: run.spec.incident.clone(),
                trigger: trigger_of(&run.spec.trigger),
                who: who.to_string(),
                run_id: Some(run_id.clone()),
            })
        };
        match result {
            Ok(_) => {
                tracing::info!(run = %run_id, from_journal = local.is_file(), "taking over an unfinished run");
                queued.push(run_id);
            }
            Err(err) => tracing::warn!(run = %run_id, error = %err, "cannot take over the run"),
        }
    }
    Ok(queued)
}

fn trigger_of(s: &str) -> Trigger {
    match s {
        "cli" => Trigger::Cli,
        "alertmanager" => Trigger::Alertmanager,
        "schedule" => Trigger::Schedule,
        _ => Trigger::Api,
    }
}
