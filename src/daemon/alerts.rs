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
//!
//! De-duplication and cooldowns live in the cluster, not only in this process's memory: with
//! a client ([`AlertRouter::with_cluster`]) each target is claimed through a Lease
//! `ripcord-alert-<hash>` in the daemon's namespace, held by the triggered run's id for the
//! cooldown and renewed while the run is active and once more when it ends (so the cooldown
//! counts from the end). Every write is conditional, so a restarted daemon, a new leader or a
//! second replica receiving the same notification sees the claim and de-duplicates. When the
//! API server cannot be reached the in-memory state decides (logged). The rate limit stays per
//! process.
//!
//! Every alert-triggered run attaches to an incident: the alert's `incident` label or
//! annotation, else one opened automatically per alert group (`am-<alertname>-<hash of the
//! group key>-<start>`), with the alert's labels and start time.

use crate::daemon::config::{AlertRule, AlertmanagerConfig};
use crate::daemon::metrics::DaemonMetrics;
use crate::daemon::runs::{PlaybookSource, RunManager, RunRequest};
use crate::engine::Trigger;
use crate::k8s::leases;
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
    /// When the alert started firing (RFC 3339).
    #[serde(default)]
    pub starts_at: Option<String>,
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

/// Where the claims of alert targets live in the cluster.
#[derive(Clone)]
struct ClusterClaims {
    client: kube::Client,
    namespace: String,
    call_timeout: std::time::Duration,
}

/// Applies the alert rules.
pub struct AlertRouter {
    config: AlertmanagerConfig,
    state: Mutex<RouterState>,
    cluster: Option<ClusterClaims>,
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
            cluster: None,
        }
    }

    /// Keeps de-duplication and cooldowns in Leases of `namespace` (the daemon's), so they
    /// survive a restart or a change of leader.
    pub fn with_cluster(
        mut self,
        client: kube::Client,
        namespace: String,
        call_timeout: std::time::Duration,
    ) -> AlertRouter {
        self.cluster = Some(ClusterClaims {
            client,
            namespace,
            call_timeout,
        });
        self
    }

    /// Decides (and acts) for every alert of a payload.
    pub async fn handle(
        &self,
        payload: &WebhookPayload,
        runs: &RunManager,
        metrics: &DaemonMetrics,
    ) -> Vec<AlertDecision> {
        let group = GroupIncident::of(payload);
        let mut decisions = Vec::with_capacity(payload.alerts.len());
        for alert in &payload.alerts {
            let decision = self.decide(alert, &group, runs).await;
            {
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
            }
            decisions.push(decision);
        }
        decisions
    }

    async fn decide(
        &self,
        alert: &Alert,
        group: &GroupIncident,
        runs: &RunManager,
    ) -> AlertDecision {
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

        let run_id = crate::journal::new_run_id();
        // Reserve the target in memory before anything is awaited: two concurrent webhooks
        // for the same target in this process must not both run.
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reason) = in_cooldown(&state, &target, cooldown, now, runs) {
                decision.decision = "deduplicated";
                decision.run_id = Some(reason.0);
                decision.reason = reason.1;
                return decision;
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
            state.last.insert(target.clone(), (run_id.clone(), now));
            state.recent.push_back(now);
        }

        // Claim the target in the cluster: a restarted daemon or another replica sees it.
        let lease = alert_lease_name(&target);
        if let Some(cluster) = &self.cluster {
            match leases::claim(
                &cluster.client,
                &cluster.namespace,
                &lease,
                &run_id,
                cooldown,
                cluster.call_timeout,
            )
            .await
            {
                Ok(leases::Claim::Taken) => {}
                Ok(leases::Claim::Held(holder)) => {
                    self.unreserve(&target, &run_id, now);
                    decision.decision = "deduplicated";
                    decision.reason = format!(
                        "run {} for {target} was triggered less than the cooldown ({cooldown:?}) ago or is still active (lease {}/{lease})",
                        holder.as_deref().unwrap_or("(unknown)"),
                        cluster.namespace
                    );
                    decision.run_id = holder;
                    return decision;
                }
                Err(err) => {
                    tracing::warn!(
                        target = %target,
                        lease = %lease,
                        error = %err,
                        category = err.category(),
                        "cannot claim the alert target in the cluster: de-duplicating in memory only"
                    );
                }
            }
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
            .cloned()
            .or_else(|| group.open(alert, runs.state_dir()));
        let request = RunRequest {
            playbook: PlaybookSource::Name(rule.playbook.clone()),
            params,
            incident,
            trigger: Trigger::Alertmanager,
            who: format!("alertmanager/{}", rule.name),
            run_id: Some(run_id.clone()),
        };
        match runs.submit(request) {
            Ok(view) => {
                decision.decision = "ran";
                decision.reason = format!("{} for {target}", rule.playbook);
                decision.run_id = Some(view.run_id);
                if let Some(cluster) = self.cluster.clone() {
                    tokio::spawn(hold_claim(cluster, lease, run_id, cooldown, runs.clone()));
                }
            }
            Err(err) => {
                self.unreserve(&target, &run_id, now);
                if let Some(cluster) = &self.cluster {
                    let _ = leases::clear_holder(
                        &cluster.client,
                        &cluster.namespace,
                        &lease,
                        &run_id,
                        cluster.call_timeout,
                    )
                    .await;
                }
                decision.reason = format!("cannot start {}: {err}", rule.playbook);
            }
        }
        decision
    }

    /// Undoes the in-memory reservation of a run that did not start.
    fn unreserve(&self, target: &str, run_id: &str, at: Timestamp) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.last.get(target).is_some_and(|(id, _)| id == run_id) {
            state.last.remove(target);
        }
        if let Some(i) = state.recent.iter().rposition(|t| *t == at) {
            state.recent.remove(i);
        }
    }
}

/// `Some((run, reason))` while the last run for `target` is active or ended less than the
/// cooldown ago.
fn in_cooldown(
    state: &RouterState,
    target: &str,
    cooldown: std::time::Duration,
    now: Timestamp,
    runs: &RunManager,
) -> Option<(String, String)> {
    let (last_run, triggered) = state.last.get(target).cloned()?;
    if runs.is_active(&last_run) {
        let reason = format!("run {last_run} for {target} is still active");
        return Some((last_run, reason));
    }
    let ended = runs
        .get(&last_run)
        .and_then(|v| v.finished_at)
        .unwrap_or(triggered)
        .max(triggered);
    let until = ended
        .checked_add(SignedDuration::try_from(cooldown).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    (now < until).then(|| {
        let reason =
            format!("run {last_run} for {target} ended at {ended}; cooldown until {until}");
        (last_run, reason)
    })
}

/// Keeps the claim of an alert target while its run is active (renewing every third of the
/// cooldown) and renews it once more when the run ended, so the cooldown counts from the end.
async fn hold_claim(
    cluster: ClusterClaims,
    lease: String,
    run_id: String,
    cooldown: std::time::Duration,
    runs: RunManager,
) {
    let every = (cooldown / 3).max(std::time::Duration::from_secs(1));
    loop {
        let ended = tokio::time::timeout(every, runs.wait(&run_id))
            .await
            .is_ok();
        let renewed = leases::try_acquire_or_renew(
            &cluster.client,
            &cluster.namespace,
            &lease,
            &run_id,
            cooldown,
            cluster.call_timeout,
        )
        .await;
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(lease = %lease, run = %run_id, "the alert claim moved on");
                return;
            }
            Err(err) => {
                tracing::warn!(lease = %lease, run = %run_id, error = %err, "cannot renew the alert claim");
            }
        }
        if ended {
            return;
        }
    }
}

/// `ripcord-alert-<FNV-1a 64 of the target>`.
pub fn alert_lease_name(target: &str) -> String {
    format!("ripcord-alert-{:016x}", fnv1a(target))
}

fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The incident of an alert group: one per group key and start.
struct GroupIncident {
    id: Option<String>,
    receiver: String,
    started: Option<Timestamp>,
}

// === impl GroupIncident ===

impl GroupIncident {
    fn of(payload: &WebhookPayload) -> GroupIncident {
        let firing: Vec<&Alert> = payload
            .alerts
            .iter()
            .filter(|a| a.status == "firing")
            .collect();
        let started = firing
            .iter()
            .filter_map(|a| a.starts_at.as_deref()?.parse::<Timestamp>().ok())
            .min();
        let alertname = firing
            .first()
            .and_then(|a| a.labels.get("alertname"))
            .map(String::as_str)
            .unwrap_or("alert");
        let id =
            (!firing.is_empty()).then(|| group_incident_id(alertname, &payload.group_key, started));
        GroupIncident {
            id,
            receiver: payload.receiver.clone(),
            started,
        }
    }

    /// Opens the group's incident unless it exists; returns its id (`None`: it could not be
    /// written, logged).
    fn open(&self, alert: &Alert, state_dir: &std::path::Path) -> Option<String> {
        use crate::cleanup::incident;
        let id = self.id.clone()?;
        if incident::load(state_dir, &id).is_ok() {
            return Some(id);
        }
        let labels: Vec<String> = alert
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let summary = alert
            .annotations
            .get("summary")
            .or_else(|| alert.annotations.get("description"))
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        let record = incident::Incident {
            severity: alert.labels.get("severity").cloned(),
            services: alert
                .labels
                .get("service")
                .or_else(|| alert.labels.get("deployment"))
                .cloned()
                .into_iter()
                .collect(),
            impact: Some(format!("alert {{{}}}{summary}", labels.join(", "))),
            // Alertmanager's `startsAt`: when the condition began, before anyone noticed.
            impact_started_at: self.started,
            detected_at: Some(Timestamp::now()),
            ..incident::Incident::new(
                &id,
                self.started.unwrap_or_else(Timestamp::now),
                &format!("alertmanager/{}", self.receiver),
            )
        };
        match incident::save(state_dir, &record) {
            Ok(_) => {
                tracing::info!(incident = %id, "incident opened for the alert group");
                Some(id)
            }
            Err(err) => {
                tracing::warn!(incident = %id, error = %err, "cannot open the alert group's incident");
                None
            }
        }
    }
}

/// `am-<alertname>-<hash of the group key>-<start>`: a valid incident id (letters, digits,
/// `.`, `_`, `-`; at most 64).
pub fn group_incident_id(alertname: &str, group_key: &str, started: Option<Timestamp>) -> String {
    let name: String = alertname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    let start = started
        .map(|t| t.strftime("%Y%m%dT%H%MZ").to_string())
        .unwrap_or_else(|| "unknown".to_string());
    format!("am-{name}-{:08x}-{start}", fnv1a(group_key) as u32)
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
