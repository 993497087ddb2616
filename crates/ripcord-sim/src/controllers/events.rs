//! core/v1 Events emitted by the simulated controllers (ScalingReplicaSet, SuccessfulCreate,
//! Scheduled, Started, Killing, Unhealthy, BackOff…), shaped like the real components' events
//! so that `kubectl describe` and snapshots show them; pruned after one simulated hour.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Controllers, util};
use crate::store::kinds;

/// How long events are kept (the API server's default `--event-ttl`).
const EVENT_TTL: Duration = Duration::from_secs(3600);

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// An expected state change.
    Normal,
    /// Something went wrong.
    Warning,
}

/// Records an event about `involved` from `component`.
pub fn emit(
    c: &mut Controllers,
    involved: &Value,
    event_type: EventType,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some(ns) = util::namespace(involved).map(str::to_string).or_else(|| {
        // Events about cluster-scoped objects live in `default`.
        Some("default".to_string())
    }) else {
        return;
    };
    c.state.event_seq += 1;
    let nanos = c.now.as_nanosecond().max(0) as u128 + u128::from(c.state.event_seq);
    let name = format!("{}.{:016x}", util::name(involved), nanos as u64);
    let now = c.now_str();
    let mut source = json!({"component": component});
    if let Some(node) = util::str_at(involved, &["spec", "nodeName"])
        && component == "kubelet"
    {
        util::set_at(&mut source, &["host"], json!(node));
    }
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion").cloned().unwrap_or(Value::Null),
            "kind": involved.get("kind").cloned().unwrap_or(Value::Null),
            "name": util::name(involved),
            "namespace": util::namespace(involved),
            "uid": util::uid(involved),
            "resourceVersion": util::str_at(involved, &["metadata", "resourceVersion"]),
        },
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": match event_type { EventType::Normal => "Normal", EventType::Warning => "Warning" },
        "eventTime": Value::Null,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    if let Some(obj) = util::normalize(&event) {
        let _ = c.create("events", &kinds::events(), obj);
    }
}

/// Emits an event only the first time `key` is seen for `involved`.
pub fn emit_once(
    c: &mut Controllers,
    involved: &Value,
    key: &str,
    event_type: EventType,
    reason: &str,
    message: &str,
    component: &str,
) {
    let k = (util::uid(involved).to_string(), key.to_string());
    if c.state.emitted_once.insert(k) {
        emit(c, involved, event_type, reason, message, component);
    }
}

/// Deletes events older than the TTL (checked once per simulated minute at most), and
/// forgets one-off event keys of objects that no longer exist.
pub fn prune(c: &mut Controllers) {
    if c.state
        .last_prune
        .is_some_and(|t| c.now.duration_since(t) < jiff::SignedDuration::from_secs(60))
    {
        return;
    }
    c.state.last_prune = Some(c.now);
    let cutoff = c
        .now
        .checked_sub(
            jiff::SignedDuration::try_from(EVENT_TTL).unwrap_or(jiff::SignedDuration::ZERO),
        )
        .unwrap_or(c.now);
    let (events, _) = c.store.list(&kinds::events(), None);
    for e in events {
        let last = util::time_at(&e, &["lastTimestamp"])
            .or_else(|| util::time_at(&e, &["metadata", "creationTimestamp"]));
        if last.is_some_and(|t| t < cutoff) {
            c.delete("events", &kinds::events(), &e);
        }
    }
    let pods = c.cache.list(&kinds::pods());
    let live: std::collections::BTreeSet<&str> = pods.iter().map(|p| util::uid(p)).collect();
    c.state
        .emitted_once
        .retain(|(uid, _)| live.contains(uid.as_str()));
    c.state
        .pod_times
        .retain(|uid, _| live.contains(uid.as_str()));
}
