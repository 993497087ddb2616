//! Guards that watch a run and the lock that makes fleet guards hold across runs.
//!
//! - Stop conditions: Prometheus conditions evaluated concurrently at their interval while the
//!   run goes. A condition that holds trips the guard: it is journaled and the run stops at its
//!   next safe point, saying why.
//! - The fleet lock ([`FleetLock`]): one cluster-wide Lease (`ripcord-lock-…` for the lock
//!   string [`FLEET_LOCK`] in namespace [`FLEET_LOCK_NAMESPACE`]) that every run holds while it
//!   writes mutations an action declares fleet-guarded ([`crate::actions::Action::fleet_guarded`]:
//!   the cordons of `zone.failout`). The engine takes it, then diffs again — so the guards
//!   (last healthy zone, blast radius, capacity) see every cordon of every other run — and
//!   applies only that diff's writes; it lets go as soon as the step's diff no longer holds such
//!   writes (the cordons are in place, where every later guard sees them), or when the run
//!   ends. Another run holding it refuses the run before any write, naming the holder and how
//!   long its Lease has left, unless [`super::RunOptions::wait_lock`] lets the run wait.

use super::gate::GateError;
use super::{EngineEvent, Events, RunOptions, SharedJournal, StopHandle, StopReason};
use crate::journal::Record;
use crate::k8s::leases::{self, LeaseError, LockGuard};
use crate::metrics::prometheus::{self, Prometheus};
use crate::plan::{Plan, StopCondition};
use std::time::Duration;

/// The lock string of the fleet lock (its Lease is `leases::lease_name(FLEET_LOCK)`).
pub const FLEET_LOCK: &str = "fleet";

/// The namespace of the fleet lock's Lease when no lock namespace is configured: one that every
/// cluster has, so that every CLI run, whatever namespace it targets, meets the same Lease.
pub const FLEET_LOCK_NAMESPACE: &str = "default";

/// The namespace of the fleet Lease: the configured lock namespace (`--lock-namespace`, the
/// daemon's own namespace), else [`FLEET_LOCK_NAMESPACE`]. Runs exclude each other on the
/// fleet only when they agree on it, as for per-target locks.
pub fn fleet_lock_namespace(opts: &RunOptions) -> &str {
    opts.lock_namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(FLEET_LOCK_NAMESPACE)
}

/// What the step loop does after asking the fleet lock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FleetGate {
    /// Go on with this diff (the lock is held, or the diff needs none).
    Proceed,
    /// The lock was just taken: diff again, under it.
    Taken,
    /// Another run holds it (after the wait, if any): the run is refused.
    Refused(String),
}

/// The fleet lock of one run (see the module docs).
#[derive(Default)]
pub(crate) struct FleetLock {
    guard: Option<LockGuard>,
}

// === impl FleetLock ===

impl FleetLock {
    /// True while this run holds the fleet Lease (taken and not lost to another holder).
    pub(crate) fn held(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.lost().is_none())
    }

    /// Before applying `diff`: `fleet_guarded` says whether its writes need the lock. Takes it
    /// (waiting up to `opts.wait_lock`) when they do and it is not held; lets it go when they
    /// do not.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn gate(
        &mut self,
        fleet_guarded: bool,
        client: &kube::Client,
        run_id: &str,
        ttl: Duration,
        opts: &RunOptions,
        journal: &SharedJournal,
        events: &Events,
    ) -> Result<FleetGate, GateError> {
        if !fleet_guarded {
            self.release(events).await;
            return Ok(FleetGate::Proceed);
        }
        if self.held() {
            return Ok(FleetGate::Proceed);
        }
        // A lock lost to another holder is not ours any more: never delete it.
        self.guard = None;
        let namespace = fleet_lock_namespace(opts);
        match leases::acquire_waiting(
            client,
            namespace,
            FLEET_LOCK,
            run_id,
            ttl,
            opts.call_timeout,
            opts.wait_lock,
        )
        .await
        {
            Ok(guard) => {
                tracing::info!(run = %run_id, lease = %guard.lease(), "fleet lock taken");
                events.send(EngineEvent::Prepared {
                    notes: vec![format!(
                        "fleet lock (lease {namespace}/{}): guards checked again under it",
                        guard.lease()
                    )],
                });
                self.guard = Some(guard);
                Ok(FleetGate::Taken)
            }
            Err(err @ LeaseError::Held { .. }) => {
                let reason = lock_refusal(&err, opts.wait_lock);
                journal.append(Record::GuardTripped {
                    guard: format!("lock {FLEET_LOCK}"),
                    kind: "lock".into(),
                    value: None,
                    reason: reason.clone(),
                })?;
                Ok(FleetGate::Refused(format!(
                    "another run is changing the fleet: {reason}"
                )))
            }
            Err(err) => Err(GateError::LockUnavailable {
                category: err.category(),
                reason: crate::errors::error_chain(&err),
            }),
        }
    }

    /// Lets the lock go (deletes the Lease if this run still holds it).
    pub(crate) async fn release(&mut self, events: &Events) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        if let Err(err) = guard.release().await {
            events.send(EngineEvent::Warning {
                message: format!(
                    "releasing the fleet lock failed (it expires by itself): {}",
                    crate::errors::error_chain(&err)
                ),
            });
        }
    }
}

/// The refusal text of a lock another run holds: who, how long its Lease has left, and how to
/// wait for it.
pub(crate) fn lock_refusal(err: &LeaseError, waited: Duration) -> String {
    let reason = crate::errors::error_chain(err);
    let expires = match err {
        LeaseError::Held { expires_in_s, .. } => *expires_in_s,
        _ => 0,
    };
    if waited.is_zero() {
        format!(
            "{reason}; to wait for it (released, or expired in {expires}s if its holder died), \
             pass --wait-lock DURATION (e.g. --wait-lock {}s)",
            expires.max(0) + 5
        )
    } else {
        format!("{reason}; waited {}s for it", waited.as_secs())
    }
}

/// Shortest interval between two evaluations of one stop condition.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Starts one task per stop condition (none without a Prometheus URL: the gate refuses such a
/// run before its first mutation). Abort the handles when the run ends.
pub(crate) fn spawn_stop_conditions(
    plan: &Plan,
    opts: &RunOptions,
    http: &reqwest::Client,
    journal: SharedJournal,
    events: Events,
    stop: StopHandle,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(url) = &opts.prometheus_url else {
        return Vec::new();
    };
    plan.guards
        .stop_conditions
        .iter()
        .map(|condition| {
            let prom = Prometheus::new(url.clone(), http.clone());
            tokio::spawn(watch_condition(
                condition.clone(),
                prom,
                journal.clone(),
                events.clone(),
                stop.clone(),
            ))
        })
        .collect()
}

async fn watch_condition(
    condition: StopCondition,
    prom: Prometheus,
    journal: SharedJournal,
    events: Events,
    stop: StopHandle,
) {
    let interval = condition.interval.0.max(MIN_INTERVAL);
    let mut reported_unavailable = false;
    loop {
        if stop.reason().is_some() {
            return;
        }
        match prom.evaluate(&condition.prometheus).await {
            Ok((true, value)) => {
                let reason = prometheus::explain(&condition.prometheus, value, true);
                tracing::warn!(guard = %condition.name, value, "stop condition tripped");
                if let Err(err) = journal.append(Record::GuardTripped {
                    guard: condition.name.clone(),
                    kind: "stopCondition".into(),
                    value: Some(value),
                    reason: reason.clone(),
                }) {
                    tracing::error!(error = %err, "cannot journal a tripped stop condition");
                }
                events.send(EngineEvent::Warning {
                    message: format!("stop condition {} tripped: {reason}", condition.name),
                });
                stop.stop(StopReason::Guard {
                    guard: condition.name.clone(),
                    reason,
                });
                return;
            }
            Ok((false, _)) => {}
            Err(err) => {
                let error = crate::errors::error_chain(&err);
                tracing::warn!(guard = %condition.name, error = %error, "stop condition could not be evaluated");
                if !reported_unavailable {
                    reported_unavailable = true;
                    let _ = journal.append(Record::GuardUnavailable {
                        guard: condition.name.clone(),
                        error: error.clone(),
                    });
                    events.send(EngineEvent::Warning {
                        message: format!(
                            "stop condition {} could not be evaluated: {error}",
                            condition.name
                        ),
                    });
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}
