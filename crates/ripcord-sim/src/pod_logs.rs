//! Simulated container logs for `pods/log`.
//!
//! Lines are deterministic: a function of the pod, the container, its start time and the
//! simulated clock (one access-log line per 5 simulated seconds since the container started,
//! the most recent 1,000 kept). Bad-release containers log readiness failures; crash-looping
//! ones end with a panic, and their previous instance (`previous=true`) is available once
//! they have restarted.

use serde_json::Value;

use crate::controllers::util;
use crate::server::LogRequest;
use crate::store::{Store, StoreError, kinds};

/// Lines kept per container instance.
const MAX_LINES: usize = 1000;
/// Simulated seconds between access-log lines.
const LINE_EVERY_SECONDS: i64 = 5;

const PATHS: [&str; 6] = [
    "/api/cart",
    "/api/checkout",
    "/api/items",
    "/healthz",
    "/api/user",
    "/metrics",
];

fn bad_request(pod: &str, message: String) -> StoreError {
    StoreError::Invalid {
        kind: "Pod".to_string(),
        name: pod.to_string(),
        message,
    }
}

/// The log text of one container of a pod (`previous` for the last terminated instance).
pub fn pod_log(
    store: &Store,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    previous: bool,
    tail_lines: Option<usize>,
) -> Result<String, StoreError> {
    pod_log_for(
        store,
        &LogRequest {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            container: container.map(str::to_string),
            previous,
            tail_lines,
            since_seconds: None,
            since_time: None,
            timestamps: false,
            limit_bytes: None,
        },
    )
}

/// The log text for a `pods/log` request with all its options: `sinceSeconds`/`sinceTime`
/// drop older lines, then `tailLines` keeps the last N, `timestamps` prefixes each line with
/// the (RFC 3339, nanosecond) time it was written, and `limitBytes` cuts the output, as the
/// kubelet does.
pub fn pod_log_for(store: &Store, req: &LogRequest) -> Result<String, StoreError> {
    let (ns, pod) = (req.namespace.as_str(), req.pod.as_str());
    let (container, previous, tail_lines) =
        (req.container.as_deref(), req.previous, req.tail_lines);
    let obj = store
        .get(&kinds::pods(), Some(ns), pod)
        .ok_or_else(|| StoreError::NotFound {
            resource: "pods".to_string(),
            name: pod.to_string(),
        })?;
    let containers: Vec<String> = util::at(&obj, &["spec", "containers"])
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let name = match container {
        Some(c) if containers.iter().any(|n| n == c) => c.to_string(),
        Some(c) => {
            return Err(bad_request(
                pod,
                format!("container {c} is not valid for pod {pod}"),
            ));
        }
        None => containers
            .first()
            .cloned()
            .ok_or_else(|| bad_request(pod, format!("pod {pod} has no containers")))?,
    };
    let status = util::at(&obj, &["status", "containerStatuses"])
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name.as_str()))
        })
        .cloned();
    let image = util::at(&obj, &["spec", "containers"])
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name.as_str()))
        })
        .and_then(|c| c.get("image"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let now = store.clock().now();
    let restarts = status
        .as_ref()
        .and_then(|s| s.get("restartCount"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let crash_looping = status
        .as_ref()
        .and_then(|s| util::str_at(s, &["state", "waiting", "reason"]))
        == Some("CrashLoopBackOff")
        || status
            .as_ref()
            .and_then(|s| util::at(s, &["lastState", "terminated"]))
            .is_some();
    let ready = status
        .as_ref()
        .and_then(|s| s.get("ready"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (start, end, instance, crashed) = if previous {
        let Some(term) = status
            .as_ref()
            .and_then(|s| util::at(s, &["lastState", "terminated"]))
        else {
            return Err(bad_request(
                pod,
                format!("previous terminated container \"{name}\" in pod \"{pod}\" not found"),
            ));
        };
        let start = util::time_at(term, &["startedAt"]).unwrap_or(now);
        let end = util::time_at(term, &["finishedAt"]).unwrap_or(now);
        (start, end, restarts - 1, true)
    } else {
        let Some(start) = status
            .as_ref()
            .and_then(|s| util::time_at(s, &["state", "running", "startedAt"]))
        else {
            if crash_looping {
                // Waiting in back-off: the current instance has not started; show nothing.
                return Ok(String::new());
            }
            return Err(bad_request(
                pod,
                format!(
                    "container \"{name}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                ),
            ));
        };
        (start, now, restarts, false)
    };
    let mut lines = render_lines(pod, &name, &image, start, end, instance, crashed, ready);
    let since = match (&req.since_time, req.since_seconds) {
        (Some(t), _) => t.parse::<jiff::Timestamp>().ok(),
        (None, Some(secs)) => now.checked_sub(jiff::SignedDuration::from_secs(secs)).ok(),
        (None, None) => None,
    };
    if let Some(since) = since {
        lines.retain(|(t, _)| *t >= since);
    }
    let skip = tail_lines.map_or(0, |t| lines.len().saturating_sub(t));
    let mut out = String::new();
    for (t, line) in &lines[skip..] {
        if req.timestamps {
            out.push_str(&t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string());
            out.push(' ');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(limit) = req.limit_bytes
        && out.len() > limit
    {
        let mut cut = limit;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn render_lines(
    pod: &str,
    container: &str,
    image: &str,
    start: jiff::Timestamp,
    end: jiff::Timestamp,
    instance: i64,
    crashed: bool,
    ready: bool,
) -> Vec<(jiff::Timestamp, String)> {
    let fmt = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let version = image.rsplit(':').next().unwrap_or("unknown");
    let mut lines = vec![
        (
            start,
            format!(
                "{} INFO starting {container} version={version} pod={pod} instance={instance}",
                fmt(start)
            ),
        ),
        (start, format!("{} INFO listening on :8080", fmt(start))),
    ];
    let elapsed = end.duration_since(start).as_secs().max(0);
    let count = elapsed / LINE_EVERY_SECONDS;
    let first = (count - MAX_LINES as i64).max(1);
    for i in first..=count {
        let t = start
            .checked_add(jiff::SignedDuration::from_secs(i * LINE_EVERY_SECONDS))
            .unwrap_or(end);
        let h = util::fnv32a(format!("{pod}/{container}/{instance}/{i}").as_bytes());
        let path = PATHS[(h as usize) % PATHS.len()];
        let latency = 2 + h % 40;
        if !ready && !crashed {
            lines.push((t, format!(
                "{} ERROR GET /healthz 503 {latency}ms: dependency check failed: connection refused (upstream payments:443)",
                fmt(t)
            )));
        } else {
            lines.push((t, format!("{} INFO GET {path} 200 {latency}ms", fmt(t))));
        }
    }
    if crashed {
        lines.push((
            end,
            format!(
                "{} ERROR panic: runtime error: invalid memory address or nil pointer dereference",
                fmt(end)
            ),
        ));
        lines.push((end, format!("{} ERROR exiting with status 1", fmt(end))));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use serde_json::json;

    #[tokio::test]
    async fn logs_are_deterministic_and_previous_needs_a_restart() {
        let store = Store::new(SimClock::new(1.0));
        let started = store
            .clock()
            .now()
            .checked_sub(jiff::SignedDuration::from_secs(60))
            .unwrap_or(store.clock().now());
        let started = crate::clock::format_k8s_time(started);
        store
            .create(&kinds::pods(), json!({"metadata": {"name": "web-1", "namespace": "shop"},
                "spec": {"containers": [{"name": "web", "image": "web:1.2"}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0,
                    "state": {"running": {"startedAt": started}}}]}}))
            .expect("create");
        let a = pod_log(&store, "shop", "web-1", None, false, None).expect("log");
        let b = pod_log(&store, "shop", "web-1", Some("web"), false, None).expect("log");
        assert!(a.contains("version=1.2"), "{a}");
        assert!(a.lines().count() >= 12, "{a}");
        assert_eq!(
            a.lines().take(5).collect::<Vec<_>>(),
            b.lines().take(5).collect::<Vec<_>>()
        );
        let tail = pod_log(&store, "shop", "web-1", None, false, Some(2)).expect("log");
        assert_eq!(tail.lines().count(), 2);
        assert!(pod_log(&store, "shop", "web-1", None, true, None).is_err());
        assert!(pod_log(&store, "shop", "web-1", Some("nope"), false, None).is_err());
        assert!(matches!(
            pod_log(&store, "shop", "nope", None, false, None),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn issue15_log_options_since_timestamps_and_limit_bytes() {
        let store = Store::new(SimClock::new(1.0));
        let started = store
            .clock()
            .now()
            .checked_sub(jiff::SignedDuration::from_secs(60))
            .unwrap_or(store.clock().now());
        let started = crate::clock::format_k8s_time(started);
        store
            .create(&kinds::pods(), json!({"metadata": {"name": "web-1", "namespace": "shop"},
                "spec": {"containers": [{"name": "web", "image": "web:1.2"}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0,
                    "state": {"running": {"startedAt": started}}}]}}))
            .expect("create");
        let req = |f: &dyn Fn(&mut LogRequest)| {
            let mut r = LogRequest {
                namespace: "shop".into(),
                pod: "web-1".into(),
                container: None,
                previous: false,
                tail_lines: None,
                since_seconds: None,
                since_time: None,
                timestamps: false,
                limit_bytes: None,
            };
            f(&mut r);
            pod_log_for(&store, &r).expect("log")
        };
        let all = req(&|_| {});
        let recent = req(&|r| r.since_seconds = Some(20));
        assert!(recent.lines().count() < all.lines().count(), "{recent}");
        assert!(recent.lines().count() >= 3, "{recent}");
        assert!(
            !recent.contains("INFO starting"),
            "lines before sinceSeconds are dropped"
        );
        let stamped = req(&|r| r.timestamps = true);
        let first = stamped.lines().next().expect("a line");
        let (stamp, rest) = first.split_once(' ').expect("timestamp prefix");
        assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{stamp}");
        assert_eq!(
            stamp.len(),
            "2026-01-01T00:00:00.000000000Z".len(),
            "{stamp}"
        );
        assert_eq!(rest, all.lines().next().expect("a line"));
        let limited = req(&|r| r.limit_bytes = Some(10));
        assert_eq!(limited.len(), 10);
        assert!(all.starts_with(&limited));
    }
}
