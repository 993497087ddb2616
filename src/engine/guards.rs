//! Stop conditions: Prometheus conditions evaluated concurrently at their interval while the
//! run goes. A condition that holds trips the guard: it is journaled and the run stops at its
//! next safe point, saying why.

use super::{EngineEvent, Events, RunOptions, SharedJournal, StopHandle, StopReason};
use crate::journal::Record;
use crate::metrics::prometheus::{self, Prometheus};
use crate::plan::{Plan, StopCondition};
use std::time::Duration;

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
                let error = super::step::error_chain(&err);
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
