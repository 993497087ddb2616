//! The daemon's own metrics, served at `/metrics` in the Prometheus text format.
//!
//! Every metric has the `ripcord_` prefix: runs by playbook and outcome, step durations, API
//! errors, drills by outcome (and their last and next time, the error budget failed drills
//! burned), notification deliveries (from `notify`), the run queue's depth, Alertmanager decisions and the
//! warm-gate controller's releases (`ripcord_warm_gate_releases_total{outcome}`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;

/// The registry and its metrics.
pub struct DaemonMetrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    step_duration: Family<Labels, Histogram>,
    api_errors: Family<Labels, Counter>,
    drills: Family<Labels, Counter>,
    queue_depth: Gauge,
    active_runs: Gauge,
    alert_decisions: Family<Labels, Counter>,
    leader: Gauge,
    connections_refused: Counter,
    takeovers_refused: Family<Labels, Counter>,
    election_rounds: Family<Labels, Counter>,
    drill_last: Family<Labels, Gauge>,
    drill_next: Family<Labels, Gauge>,
    drill_budget_burn: Family<Labels, Counter<f64, AtomicU64>>,
    warm_gate_releases: Family<Labels, Counter>,
}

impl std::fmt::Debug for DaemonMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonMetrics").finish_non_exhaustive()
    }
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        DaemonMetrics::new()
    }
}

fn step_histogram() -> Histogram {
    // 50 ms … ~14 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

// === impl DaemonMetrics ===

impl DaemonMetrics {
    /// A fresh registry with the prefix `ripcord`.
    pub fn new() -> DaemonMetrics {
        let mut registry = Registry::with_prefix("ripcord");
        let runs = Family::<Labels, Counter>::default();
        let step_duration =
            Family::<Labels, Histogram>::new_with_constructor(step_histogram as fn() -> Histogram);
        let api_errors = Family::<Labels, Counter>::default();
        let drills = Family::<Labels, Counter>::default();
        let queue_depth = Gauge::default();
        let active_runs = Gauge::default();
        let alert_decisions = Family::<Labels, Counter>::default();
        let leader = Gauge::default();
        let connections_refused = Counter::default();
        let takeovers_refused = Family::<Labels, Counter>::default();
        let election_rounds = Family::<Labels, Counter>::default();
        registry.register(
            "leader_election_rounds",
            "Leader election rounds, by result (leading, standby, error)",
            election_rounds.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections closed at once because the connection limit was reached",
            connections_refused.clone(),
        );
        registry.register(
            "takeovers_refused",
            "Unfinished Run resources a new leader refused to take over, by reason (unsealed, bad-seal, no-key)",
            takeovers_refused.clone(),
        );
        let drill_last = Family::<Labels, Gauge>::default();
        let drill_next = Family::<Labels, Gauge>::default();
        let drill_budget_burn = Family::<Labels, Counter<f64, AtomicU64>>::default();
        let warm_gate_releases = Family::<Labels, Counter>::default();
        registry.register(
            "warm_gate_releases",
            "Pods the warm-gate controller handled (readiness gate ripcord.dev/warmed), by outcome \
             (warmed, released, warmup-failed, error)",
            warm_gate_releases.clone(),
        );
        registry.register(
            "drill_last_timestamp_seconds",
            "When each drill last ran (fail-out to report), unix seconds",
            drill_last.clone(),
        );
        registry.register(
            "drill_next_timestamp_seconds",
            "When each drill fires next, unix seconds",
            drill_next.clone(),
        );
        registry.register(
            "drill_error_budget_burn",
            "Error budget (ratio) burned by drills whose steady-state hypothesis failed",
            drill_budget_burn.clone(),
        );
        registry.register(
            "runs",
            "Runs finished, by playbook, trigger and outcome",
            runs.clone(),
        );
        registry.register(
            "notifications",
            "Notification deliveries, by channel and outcome (sent, failed)",
            crate::notify::delivery_counter().clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Duration of run steps, by playbook, action and result",
            step_duration.clone(),
        );
        registry.register(
            "api_errors",
            "HTTP API requests answered with an error, by route and status",
            api_errors.clone(),
        );
        registry.register(
            "drills",
            "Scheduled drills, by drill and outcome (succeeded, failed, skipped-*)",
            drills.clone(),
        );
        registry.register(
            "queue_depth",
            "Runs waiting for their lock target or for leadership",
            queue_depth.clone(),
        );
        registry.register("active_runs", "Runs executing now", active_runs.clone());
        registry.register(
            "alert_decisions",
            "Alertmanager webhook decisions, by rule and decision (ran, deduplicated, ignored, rate-limited)",
            alert_decisions.clone(),
        );
        registry.register(
            "leader",
            "1 while this process is the leader",
            leader.clone(),
        );
        DaemonMetrics {
            registry,
            runs,
            step_duration,
            api_errors,
            drills,
            queue_depth,
            active_runs,
            alert_decisions,
            leader,
            connections_refused,
            takeovers_refused,
            election_rounds,
            drill_last,
            drill_next,
            drill_budget_burn,
            warm_gate_releases,
        }
    }

    /// Counts a pod the warm-gate controller handled, by outcome.
    pub fn warm_gate_release(&self, outcome: &'static str) {
        self.warm_gate_releases
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// Counts a connection closed because of the connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts a leader election round by its result (`leading`, `standby`, `error`).
    pub fn election_round(&self, result: &'static str) {
        self.election_rounds
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// Counts a `Run` resource a new leader did not take over.
    pub fn takeover_refused(&self, reason: &'static str) {
        self.takeovers_refused
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// Counts a finished run.
    pub fn run_finished(&self, playbook: &str, trigger: &str, outcome: &str) {
        self.runs
            .get_or_create(&vec![
                ("playbook", playbook.to_string()),
                ("trigger", trigger.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// Records a step's duration.
    pub fn step_finished(&self, playbook: &str, action: &str, result: &str, seconds: f64) {
        self.step_duration
            .get_or_create(&vec![
                ("playbook", playbook.to_string()),
                ("action", action.to_string()),
                ("result", result.to_string()),
            ])
            .observe(seconds);
    }

    /// Counts an API error response.
    pub fn api_error(&self, route: &str, status: u16) {
        self.api_errors
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// Counts a drill outcome.
    pub fn drill(&self, drill: &str, outcome: &str) {
        self.drills
            .get_or_create(&vec![
                ("drill", drill.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// Records when a drill last ran.
    pub fn drill_last(&self, drill: &str, unix_seconds: i64) {
        self.drill_last
            .get_or_create(&vec![("drill", drill.to_string())])
            .set(unix_seconds);
    }

    /// Records when a drill fires next.
    pub fn drill_next(&self, drill: &str, unix_seconds: i64) {
        self.drill_next
            .get_or_create(&vec![("drill", drill.to_string())])
            .set(unix_seconds);
    }

    /// Adds the error budget a failed drill burned.
    pub fn drill_budget_burn(&self, drill: &str, ratio: f64) {
        self.drill_budget_burn
            .get_or_create(&vec![("drill", drill.to_string())])
            .inc_by(ratio);
    }

    /// Counts an Alertmanager decision.
    pub fn alert_decision(&self, rule: &str, decision: &str) {
        self.alert_decisions
            .get_or_create(&vec![
                ("rule", rule.to_string()),
                ("decision", decision.to_string()),
            ])
            .inc();
    }

    /// Sets the queue depth and the number of executing runs.
    pub fn set_queue(&self, queued: usize, active: usize) {
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.active_runs
            .set(i64::try_from(active).unwrap_or(i64::MAX));
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics_with_labels() {
        let m = DaemonMetrics::new();
        m.run_finished("rollback", "api", "succeeded");
        m.alert_decision("high-error-rate", "deduplicated");
        m.step_finished("rollback", "deployment.rollback", "verified", 0.3);
        m.set_queue(2, 1);
        m.drill_next("zone-b", 1_800_000_000);
        m.drill_last("zone-b", 1_700_000_000);
        m.drill_budget_burn("zone-b", 0.02);
        let text = m.render();
        for line in [
            r#"ripcord_drill_next_timestamp_seconds{drill="zone-b"} 1800000000"#,
            r#"ripcord_drill_last_timestamp_seconds{drill="zone-b"} 1700000000"#,
            r#"ripcord_drill_error_budget_burn_total{drill="zone-b"} 0.02"#,
        ] {
            assert!(text.contains(line), "issue17: {line} missing in {text}");
        }
        assert!(
            text.contains(
                r#"ripcord_runs_total{playbook="rollback",trigger="api",outcome="succeeded"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ripcord_alert_decisions_total{rule="high-error-rate",decision="deduplicated"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("ripcord_queue_depth 2"), "{text}");
        assert!(
            text.contains("ripcord_step_duration_seconds_bucket"),
            "{text}"
        );
    }
}
