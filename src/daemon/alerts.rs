//! The Alertmanager webhook: alert labels → playbook runs.
//!
//! Each alert of a webhook payload gets exactly one decision, logged with structured fields
//! and counted in `ripcord_alert_decisions_total{rule,decision}`:
//!
//! - `ignored`: not firing (a resolved notification never triggers anything), no rule
//!   matches, a templated label is missing, or the run could not be planned;
//! - `deduplicated`: a run for the same target (playbook + rendered params) is still active,
//!   or ended less than the cooldown ago;
//! - `rate-limited`: more than `maxRunsPerMinute` alert-triggered runs in the last minute;
//! - `ran`: a run was queued.

use crate::daemon::config::{AlertRule, AlertmanagerConfig};
use crate::daemon::metrics::DaemonMetrics;
use crate::daemon::runs::{PlaybookSource, RunManager, RunRequest};
use crate::engine::Trigger;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// The Alertmanager webhook payload (version 4). Unknown fields are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// `firing` or `resolved` for the whole group.
    #[serde(default)]
    pub status: String,
    /// The receiver's name.
    #[serde(default)]
    pub receiver: String,
    /// The group key.
    #[serde(default)]
    pub group_key: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// The alert's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The alert's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Alertmanager's fingerprint.
    #[serde(default)]
    pub fingerprint: String,
}

/// What was decided for one alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertDecision {
    /// The alert's `alertname`.
    pub alert: String,
    /// Its fingerprint.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// The matching rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `ran`, `deduplicated`, `ignored`, `rate-limited`.
    pub decision: &'static str,
    /// The run started, or the active run that de-duplicated this alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Why.
    pub reason: String,
}

#[derive(Default)]
struct RouterState {
    /// Target → (last run id, when it was triggered).
    last: HashMap<String, (String, Timestamp)>,
    /// When recent alert-triggered runs started (for the rate limit).
    recent: VecDeque<Timestamp>,
}

/// Applies the alert rules.
pub struct AlertRouter {
    config: AlertmanagerConfig,
    state: Mutex<RouterState>,
}

impl std::fmt::Debug for AlertRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertRouter")
            .field("rules", &self.config.rules.len())
            .finish_non_exhaustive()
    }
}

// === impl AlertRouter ===

impl AlertRouter {
    /// A router for these rules.
    pub fn new(config: AlertmanagerConfig) -> AlertRouter {
        AlertRouter {
            config,
            state: Mutex::new(RouterState::default()),
        }
    }

    /// Decides (and acts) for every alert of a payload.
    pub fn handle(
        &self,
        payload: &WebhookPayload,
        runs: &RunManager,
        metrics: &DaemonMetrics,
    ) -> Vec<AlertDecision> {
        payload
            .alerts
            .iter()
            .map(|alert| {
                let decision = self.decide(alert, runs);
                let rule = decision.rule.as_deref().unwrap_or("none");
                metrics.alert_decision(rule, decision.decision);
                tracing::info!(
                    alert = %decision.alert,
                    fingerprint = %decision.fingerprint,
                    rule = %rule,
                    decision = decision.decision,
                    run = decision.run_id.as_deref().unwrap_or(""),
                    reason = %decision.reason,
                    receiver = %payload.receiver,
                    "alert decision"
                );
                decision
            })
            .collect()
    }

    fn decide(&self, alert: &Alert, runs: &RunManager) -> AlertDecision {
        let mut decision = AlertDecision {
            alert: alert.labels.get("alertname").cloned().unwrap_or_default(),
            fingerprint: alert.fingerprint.clone(),
            rule: None,
            decision: "ignored",
            run_id: None,
            reason: String::new(),
        };
        if alert.status != "firing" {
            decision.reason = format!("alert is {:?}, only firing alerts trigger", alert.status);
            return decision;
        }
        let Some(rule) = self.config.rules.iter().find(|r| matches(r, &alert.labels)) else {
            decision.reason = "no rule matches its labels".to_string();
            return decision;
        };
        decision.rule = Some(rule.name.clone());
        let params = match render_params(&rule.params, &alert.labels) {
            Ok(p) => p,
            Err(missing) => {
                decision.reason =
                    format!("the alert has no label {missing:?} that the rule's params need");
                return decision;
            }
        };
        let target = target_key(&rule.playbook, &params);
        let cooldown = rule.cooldown.unwrap_or(self.config.cooldown).0;
        let now = runs.clock().now();

        // Hold the state lock across the check and the submit: two concurrent webhooks for the
        // same target must not both run.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((last_run, triggered)) = state.last.get(&target).cloned() {
            if runs.is_active(&last_run) {
                decision.decision = "deduplicated";
                decision.reason = format!("run {last_run} for {target} is still active");
                decision.run_id = Some(last_run);
                return decision;
            }
            let ended = runs
                .get(&last_run)
                .and_then(|v| v.finished_at)
                .unwrap_or(triggered)
                .max(triggered);
            let until = ended
                .checked_add(SignedDuration::try_from(cooldown).unwrap_or(SignedDuration::MAX))
                .unwrap_or(Timestamp::MAX);
            if now < until {
                decision.decision = "deduplicated";
                decision.reason =
                    format!("run {last_run} for {target} ended at {ended}; cooldown until {until}");
                decision.run_id = Some(last_run);
                return decision;
            }
        }
        let minute_ago = now
            .checked_sub(SignedDuration::from_secs(60))
            .unwrap_or(Timestamp::MIN);
        while state.recent.front().is_some_and(|t| *t <= minute_ago) {
            state.recent.pop_front();
        }
        if state.recent.len() >= self.config.max_runs_per_minute as usize {
            decision.decision = "rate-limited";
            decision.reason = format!(
                "{} alert-triggered runs in the last minute (limit {})",
                state.recent.len(),
                self.config.max_runs_per_minute
            );
            return decision;
        }
        // An incident id from a label is validated like a run id; a bad one is dropped (the
        // mitigation still runs) and logged.
        let incident = alert
            .labels
            .get("incident")
            .or_else(|| alert.annotations.get("incident"))
            .filter(|id| match crate::daemon::runs::validate_incident(id) {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!(rule = %rule.name, error = %err, "ignoring the alert's invalid incident id");
                    false
                }
            })
            .cloned();
        let request = RunRequest {
            playbook: PlaybookSource::Name(rule.playbook.clone()),
            params,
            incident,
            trigger: Trigger::Alertmanager,
            who: format!("alertmanager/{}", rule.name),
            run_id: None,
        };
        match runs.submit(request) {
            Ok(view) => {
                state
                    .last
                    .insert(target.clone(), (view.run_id.clone(), now));
                state.recent.push_back(now);
                decision.decision = "ran";
                decision.reason = format!("{} for {target}", rule.playbook);
                decision.run_id = Some(view.run_id);
            }
            Err(err) => {
                decision.reason = format!("cannot start {}: {err}", rule.playbook);
            }
        }
        decision
    }
}

fn matches(rule: &AlertRule, labels: &BTreeMap<String, String>) -> bool {
    rule.matchers
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
}

/// Replaces `$(labels.NAME)` in each value; `Err(NAME)` for a missing label.
pub fn render_params(
    params: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    params
        .iter()
        .map(|(k, v)| render(v, labels).map(|v| (k.clone(), v)))
        .collect()
}

fn render(template: &str, labels: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("$(labels.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "$(labels.".len()..];
        let Some(end) = after.find(')') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        match labels.get(name) {
            Some(value) => out.push_str(value),
            None => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn target_key(playbook: &str, params: &BTreeMap<String, String>) -> String {
    let rendered: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{playbook}({})", rendered.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_label_references() {
        let l = labels(&[("deployment", "checkout"), ("namespace", "shop")]);
        assert_eq!(render("$(labels.deployment)", &l).unwrap(), "checkout");
        assert_eq!(
            render("deployment/$(labels.namespace)/$(labels.deployment)", &l).unwrap(),
            "deployment/shop/checkout"
        );
        assert_eq!(render("plain", &l).unwrap(), "plain");
        assert_eq!(render("$(labels.zone)", &l).unwrap_err(), "zone");
        assert_eq!(
            render("$(labels.unterminated", &l).unwrap(),
            "$(labels.unterminated"
        );
    }

    #[test]
    fn matching_needs_every_label() {
        let rule = AlertRule {
            name: "r".into(),
            matchers: labels(&[("alertname", "HighErrorRate"), ("severity", "page")]),
            playbook: "rollback".into(),
            params: BTreeMap::new(),
            cooldown: None,
        };
        assert!(matches(
            &rule,
            &labels(&[
                ("alertname", "HighErrorRate"),
                ("severity", "page"),
                ("x", "y")
            ])
        ));
        assert!(!matches(&rule, &labels(&[("alertname", "HighErrorRate")])));
        assert!(!matches(
            &rule,
            &labels(&[("alertname", "Other"), ("severity", "page")])
        ));
    }

    #[test]
    fn payload_accepts_alertmanager_fields() {
        let json = r#"{"version":"4","groupKey":"{}:{alertname=\"HighErrorRate\"}","truncatedAlerts":0,
            "status":"firing","receiver":"ripcord","groupLabels":{},"commonLabels":{},
            "commonAnnotations":{},"externalURL":"http://am","alerts":[{"status":"firing",
            "labels":{"alertname":"HighErrorRate","deployment":"checkout"},"annotations":{},
            "startsAt":"2026-11-25T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "generatorURL":"http://prom","fingerprint":"abc"}]}"#;
        let payload: WebhookPayload = serde_json::from_str(json).unwrap();
        assert_eq!(payload.alerts.len(), 1);
        assert_eq!(payload.alerts[0].labels["deployment"], "checkout");
    }
}
