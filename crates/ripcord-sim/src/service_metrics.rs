//! Simulated service metrics (request and error counters per Deployment).
//!
//! Every Deployment "serves" 20 requests per simulated second per serving pod (ready pods of a
//! good release, running pods of a bad release). While any bad-release pod runs, half of the
//! requests fail; otherwise one in a thousand does. The counters are integrated over simulated
//! time by the [`InvariantMonitor`] (which sees every pod change in order) and rendered in the
//! Prometheus text format by [`render`], so `rate(sim_http_errors_total[1m]) /
//! rate(sim_http_requests_total[1m])` is ~0.5 during a bad rollout and ~0.001 after a
//! rollback.

use std::fmt::Write as _;

use crate::controllers::util;
use crate::invariants::InvariantMonitor;
use crate::store::{Store, kinds};

/// Requests per simulated second per serving pod.
pub const REQUESTS_PER_POD_PER_SECOND: f64 = 20.0;
/// Error ratio while a bad release serves.
pub const BAD_ERROR_RATIO: f64 = 0.5;
/// Baseline error ratio.
pub const BASE_ERROR_RATIO: f64 = 0.001;

/// The integrated traffic of one Deployment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traffic {
    /// Simulated time the counters were last advanced to.
    pub last: Option<jiff::Timestamp>,
    /// Requests so far.
    pub requests: f64,
    /// Failed requests so far.
    pub errors: f64,
    /// Pods serving now.
    pub serving: u32,
    /// Bad-release pods running now.
    pub bad: u32,
}

impl Traffic {
    /// Integrates the current rates up to `now`.
    pub fn advance(&mut self, now: jiff::Timestamp) {
        if let Some(last) = self.last {
            let dt = now.duration_since(last).as_secs_f64().max(0.0);
            let rps = REQUESTS_PER_POD_PER_SECOND * f64::from(self.serving);
            let ratio = if self.bad > 0 {
                BAD_ERROR_RATIO
            } else {
                BASE_ERROR_RATIO
            };
            self.requests += rps * dt;
            self.errors += rps * dt * ratio;
        }
        if self.last.is_none_or(|l| l < now) {
            self.last = Some(now);
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the counters of every Deployment in the Prometheus text format.
pub fn render(store: &Store, monitor: &InvariantMonitor) -> String {
    let now = store.clock().now();
    let (deployments, _) = store.list(&kinds::deployments(), None);
    let rows: Vec<(String, String, Traffic)> = deployments
        .iter()
        .map(|d| {
            let ns = util::namespace(d).unwrap_or("").to_string();
            let name = util::name(d).to_string();
            let t = monitor.traffic(&ns, &name, now);
            (ns, name, t)
        })
        .collect();
    let mut out = String::new();
    for (metric, help, pick) in [
        (
            "sim_http_requests_total",
            "HTTP requests served by the Deployment's pods (simulated).",
            0,
        ),
        (
            "sim_http_errors_total",
            "HTTP requests answered with a 5xx by the Deployment's pods (simulated).",
            1,
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} counter");
        for (ns, name, t) in &rows {
            let value = if pick == 0 { t.requests } else { t.errors };
            let _ = writeln!(
                out,
                "{metric}{{namespace=\"{}\",deployment=\"{}\"}} {}",
                escape(ns),
                escape(name),
                value.floor() as u64
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP sim_deployment_serving_pods Pods of the Deployment receiving traffic (simulated)."
    );
    let _ = writeln!(out, "# TYPE sim_deployment_serving_pods gauge");
    for (ns, name, t) in &rows {
        let _ = writeln!(
            out,
            "sim_deployment_serving_pods{{namespace=\"{}\",deployment=\"{}\"}} {}",
            escape(ns),
            escape(name),
            t.serving
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_integrates_rates() {
        let t0 = jiff::Timestamp::UNIX_EPOCH;
        let mut t = Traffic::default();
        t.advance(t0);
        t.serving = 4;
        t.advance(t0 + jiff::SignedDuration::from_secs(10));
        assert_eq!(t.requests, 800.0);
        assert!((t.errors - 0.8).abs() < 1e-9);
        t.bad = 1;
        t.advance(t0 + jiff::SignedDuration::from_secs(20));
        assert_eq!(t.requests, 1600.0);
        assert!((t.errors - 400.8).abs() < 1e-9);
        // Time never goes backwards.
        t.advance(t0);
        assert_eq!(t.requests, 1600.0);
    }
}
