//! Leader election through the coordination.k8s.io Lease `ripcord-leader`, and the takeover
//! of unfinished runs by a new leader.
//!
//! Every Lease call goes through [`crate::k8s::leases`] ([`leases::try_acquire_or_renew`],
//! [`leases::clear_holder`]). The holder renews the Lease every third of its duration. A follower takes the Lease over
//! once it has not been renewed for its whole duration (an optimistic-concurrency `replace`:
//! of two followers racing, one gets a 409 and stays a follower). A leader that cannot renew
//! for a whole duration steps down by itself. On graceful shutdown the leader clears the
//! holder so the next leader does not wait for the expiry.
//!
//! Takeover ([`resume_unfinished`]): the new leader lists `Run` resources (through
//! [`runs::list_runs`], bounded per call) whose phase is not
//! `Finished`, keeps only those whose status carries a seal it can verify
//! ([`runs::RunSeal`]: a `Run` someone created by hand is not a command, and is logged and
//! counted in `ripcord_takeovers_refused_total`), and runs them again *with the same run id* (from the local journal when this
//! replica has it — the engine's resume — else re-planned from the `Run`'s playbook and
//! parameters). Actions mark their changes with the run id and step, so the repeated run
//! recognises what the previous leader already did and applies nothing twice.
//!
//! A stopped run is taken over only when a daemon stopped it itself (shutdown, lost
//! leadership): the status's `stoppedBy` ([`runs::RunStatus::daemon_stop`], covered by the
//! seal); a status of format 1 or 2 said so in its message, which is read for those versions
//! only.

use crate::daemon::metrics::DaemonMetrics;
use crate::daemon::runs::{PlaybookSource, RunManager, RunRequest};
use crate::engine::Trigger;
use crate::k8s::leases::{self, LeaseError};
use crate::k8s::runs::{self, RunListError};
use std::time::Duration;
use tokio::sync::watch;

/// Why a leader-election or takeover step failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// An election round (get, create or conditional replace of the Lease) failed.
    #[error("leader election on lease {namespace}/{name} failed")]
    Election {
        /// The namespace.
        namespace: String,
        /// The Lease.
        name: String,
        /// The Lease error.
        #[source]
        source: LeaseError,
    },
    /// Giving up the Lease on shutdown failed.
    #[error("releasing leader lease {namespace}/{name} failed")]
    Release {
        /// The namespace.
        namespace: String,
        /// The Lease.
        name: String,
        /// The Lease error.
        #[source]
        source: LeaseError,
    },
    /// Listing `Run` resources failed or did not answer in time.
    #[error("cannot find the unfinished runs to take over")]
    ListRuns {
        /// The list error.
        #[source]
        source: RunListError,
    },
}

impl LeaderError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            LeaderError::Election { source, .. } | LeaderError::Release { source, .. } => {
                source.category()
            }
            LeaderError::ListRuns { source } => match source {
                RunListError::Timeout { .. } => "timeout",
                _ => "list-runs",
            },
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

/// The election loop. Publishes leadership on `tx`, counts each round in `metrics`
/// (`ripcord_leader_election_rounds_total{result}`); ends (releasing the Lease if held) when
/// `shutdown` turns true.
pub async fn run_election(
    client: kube::Client,
    config: ElectionConfig,
    tx: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
    metrics: std::sync::Arc<crate::daemon::metrics::DaemonMetrics>,
) {
    let retry = (config.lease_duration / 3).max(Duration::from_millis(100));
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        let leading = *tx.borrow();
        match try_acquire_or_renew(&client, &config).await {
            Ok(true) => {
                metrics.election_round("leading");
                last_renewed = Some(tokio::time::Instant::now());
                if !leading {
                    tracing::info!(identity = %config.identity, lease = %config.lease_name, "became the leader");
                    tx.send_replace(true);
                }
            }
            Ok(false) => {
                metrics.election_round("standby");
                if leading {
                    tracing::warn!(identity = %config.identity, "another process holds the leader lease: stepping down");
                    tx.send_replace(false);
                }
            }
            Err(err) => {
                metrics.election_round("error");
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
        match release(&client, &config).await {
            Ok(()) => tracing::info!(identity = %config.identity, "leader lease released"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot release the leader lease; it expires by itself")
            }
        }
    }
}

/// One election round through [`leases::try_acquire_or_renew`]: `Ok(true)` when this process
/// holds the Lease afterwards.
pub async fn try_acquire_or_renew(
    client: &kube::Client,
    config: &ElectionConfig,
) -> Result<bool, LeaderError> {
    leases::try_acquire_or_renew(
        client,
        &config.namespace,
        &config.lease_name,
        &config.identity,
        config.lease_duration,
        config.call_timeout,
    )
    .await
    .map_err(|source| LeaderError::Election {
        namespace: config.namespace.clone(),
        name: config.lease_name.clone(),
        source,
    })
}

/// Clears the holder (if it is this process) so the next leader does not wait for the expiry.
async fn release(client: &kube::Client, config: &ElectionConfig) -> Result<(), LeaderError> {
    leases::clear_holder(
        client,
        &config.namespace,
        &config.lease_name,
        &config.identity,
        config.call_timeout,
    )
    .await
    .map_err(|source| LeaderError::Release {
        namespace: config.namespace.clone(),
        name: config.lease_name.clone(),
        source,
    })
}

/// Queues every unfinished daemon run (trigger not `cli`) recorded in `Run` resources that
/// is not already active in this process and whose seal verifies with `seal` (no key: none
/// is taken over). Returns the run ids queued.
pub async fn resume_unfinished(
    client: &kube::Client,
    runs: &RunManager,
    who: &str,
    call_timeout: Duration,
    seal: Option<&runs::RunSeal>,
    metrics: &DaemonMetrics,
) -> Result<Vec<String>, LeaderError> {
    let list = match runs::list_runs(client, None, call_timeout).await {
        Ok(list) => list,
        Err(RunListError::CrdMissing) => {
            tracing::info!("no Run resource definition installed: nothing to take over");
            return Ok(Vec::new());
        }
        Err(source) => return Err(LeaderError::ListRuns { source }),
    };
    let mut queued = Vec::new();
    for run in list {
        let Some(run_id) = run.metadata.name.clone() else {
            continue;
        };
        let finished = run.status.as_ref().is_some_and(|s| !unfinished(s));
        // A person's CLI run may still be running on a laptop: never take those over.
        if finished || run.spec.trigger == "cli" || runs.is_active(&run_id) {
            continue;
        }
        // Only runs a daemon holding the key started (and sealed through the status
        // subresource) are commands; anything else is someone's `kubectl create`.
        let check = seal.map(|s| s.check(&run));
        if check != Some(runs::SealCheck::Valid) {
            let reason = check.map(runs::SealCheck::as_str).unwrap_or("no-key");
            metrics.takeover_refused(reason);
            tracing::warn!(
                run = %run_id,
                namespace = run.metadata.namespace.as_deref().unwrap_or_default(),
                playbook = %run.spec.playbook,
                who = %run.spec.who,
                reason,
                "not taking over an unfinished Run resource: it does not carry this daemon's seal"
            );
            continue;
        }
        // A status written by a newer ripcord is not read as if it were ours (issue 14).
        let namespace = run.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(Err(err)) = run
            .status
            .as_ref()
            .map(|s| s.check_format(format_args!("Run {namespace}/{run_id}")))
        {
            metrics.takeover_refused(err.category());
            tracing::warn!(run = %run_id, error = %err, "not taking over a Run resource in a format this daemon does not read");
            continue;
        }
        if crate::journal::validate_run_id(&run_id).is_err() {
            metrics.takeover_refused("bad-run-id");
            tracing::warn!(run = %run_id, "not taking over a Run resource whose name is not a run id");
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

/// Whether a `Run` status is one to take over: still `Running` (its process died), or
/// interrupted by a daemon's shutdown / lost leadership ([`runs::RunStatus::daemon_stop`]:
/// `stoppedBy`, or the message of a status of format 1 or 2). Runs a person cancelled stay
/// cancelled. A status this build does not read may say a daemon stopped it: it counts as
/// unfinished, to be refused (and counted) for its version.
fn unfinished(s: &runs::RunStatus) -> bool {
    let by_daemon = if s.check_format("").is_ok() {
        s.daemon_stop().is_some()
    } else {
        s.outcome.as_deref() == Some("interrupted")
    };
    by_daemon || (s.phase != runs::RunPhase::Finished && s.outcome.is_none())
}

fn trigger_of(s: &str) -> Trigger {
    match s {
        "cli" => Trigger::Cli,
        "alertmanager" => Trigger::Alertmanager,
        "schedule" => Trigger::Schedule,
        _ => Trigger::Api,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::runs::{DaemonStop, RunPhase, RunStatus, StoppedBy};

    fn status(version: u32, phase: RunPhase, outcome: Option<&str>, message: &str) -> RunStatus {
        RunStatus {
            format_version: crate::journal::FormatVersion::new(version),
            phase,
            outcome: outcome.map(str::to_string),
            message: Some(message.to_string()),
            ..RunStatus::default()
        }
    }

    #[test]
    fn issue14_takeover_is_decided_by_the_stop_cause_field_not_the_message() {
        let lost =
            "interrupted by ripcord daemon (lost leadership); resume with: ripcord run --resume r";
        let person = "interrupted by api/oncall; resume with: ripcord run --resume r";
        // Still running (its process died): taken over, whatever the version.
        for v in 1..=3 {
            assert!(unfinished(&status(v, RunPhase::Running, None, "")));
        }
        // Versions 1 and 2: the message tells a daemon's stop.
        for v in [1, 2] {
            assert!(unfinished(&status(
                v,
                RunPhase::Finished,
                Some("interrupted"),
                lost
            )));
            assert!(!unfinished(&status(
                v,
                RunPhase::Finished,
                Some("interrupted"),
                person
            )));
            assert!(!unfinished(&status(
                v,
                RunPhase::Finished,
                Some("succeeded"),
                ""
            )));
        }
        // Version 3: the field alone.
        let mut by_field = status(3, RunPhase::Finished, Some("interrupted"), lost);
        assert!(
            !unfinished(&by_field),
            "the message alone is not read in version 3"
        );
        by_field.stopped_by = Some(StoppedBy::Daemon(DaemonStop::LostLeadership));
        assert!(unfinished(&by_field));
        by_field.stopped_by = Some(StoppedBy::Other {
            kind: "person".into(),
            reason: "cancel".into(),
        });
        assert!(!unfinished(&by_field));
        // A newer version that may have been stopped by a daemon goes on to be refused.
        assert!(unfinished(&status(
            4,
            RunPhase::Finished,
            Some("interrupted"),
            ""
        )));
        assert!(!unfinished(&status(
            4,
            RunPhase::Finished,
            Some("succeeded"),
            ""
        )));
    }
}
