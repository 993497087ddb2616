//! Scheduled drills: fail a zone out on a cron schedule, fail it back, verify, report.
//!
//! Each drill has a croner schedule evaluated in its timezone (`UTC`, a fixed offset such as
//! `+02:00` — no tz data needed — or an IANA name, which needs the host's tzdata: the
//! distroless/slim image has none, so prefer offsets there), an optional local-time window,
//! and an optional error-budget gate (a PromQL condition that must hold). When it fires, and
//! only on the leader:
//!
//! 1. skip (`skipped-overlap`) while the previous occurrence of the same drill still runs
//!    (concurrency policy: forbid);
//! 2. skip (`skipped-window`) outside the window, (`skipped-budget`) when the gate does not
//!    hold or cannot be evaluated;
//! 3. run the fail-out playbook and wait; then *always* run the fail-back playbook (a partial
//!    fail-out must be reverted too) and wait;
//! 4. verify: both runs succeeded and the optional `verify` condition holds;
//! 5. write the drill report `<state-dir>/drills/<drill>/<time>.json`, count
//!    `ripcord_drills_total{drill,outcome}`, keep it for the status page.

use crate::daemon::clock::Clock;
use crate::daemon::config::{DaemonConfigError, DrillConfig, DrillRun};
use crate::daemon::metrics::DaemonMetrics;
use crate::daemon::runs::{PlaybookSource, RunManager, RunRequest, RunView};
use crate::engine::Trigger;
use crate::journal::Outcome;
use crate::metrics::prometheus::Prometheus;
use crate::playbook::model::PromCondition;
use futures::future::BoxFuture;
use jiff::civil::Time;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How many drill reports the status page keeps.
const KEEP_REPORTS: usize = 50;

/// A drill's parsed schedule, timezone and window.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: TimeZone,
    window: Option<(Time, Time)>,
}

// === impl Schedule ===

impl Schedule {
    /// Parses a drill's `schedule`, `timezone` and `window`.
    pub fn from_config(drill: &DrillConfig) -> Result<Schedule, DaemonConfigError> {
        let bad = |message: String| DaemonConfigError::Drill {
            drill: drill.name.clone(),
            message,
        };
        let cron = croner::Cron::from_str(&drill.schedule)
            .map_err(|e| bad(format!("schedule {:?}: {e}", drill.schedule)))?;
        let tz = parse_timezone(drill.timezone.as_deref().unwrap_or("UTC")).map_err(bad)?;
        let window = match &drill.window {
            None => None,
            Some(w) => {
                let parse = |s: &str| {
                    Time::strptime("%H:%M", s)
                        .map_err(|e| bad(format!("window time {s:?} is not HH:MM: {e}")))
                };
                Some((parse(&w.start)?, parse(&w.end)?))
            }
        };
        Ok(Schedule { cron, tz, window })
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// True when `at` is inside the window (always, without one). An end before the start
    /// spans midnight.
    pub fn in_window(&self, at: Timestamp) -> bool {
        let Some((start, end)) = self.window else {
            return true;
        };
        let local = at.to_zoned(self.tz.clone()).time();
        if start <= end {
            start <= local && local < end
        } else {
            local >= start || local < end
        }
    }
}

/// `UTC`, `Z`, `+HH:MM` / `-HH:MM`, or an IANA name from the host's tzdata.
pub fn parse_timezone(spec: &str) -> Result<TimeZone, String> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("utc") || spec == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = spec.strip_prefix('+').or_else(|| spec.strip_prefix('-')) {
        let sign = if spec.starts_with('-') { -1 } else { 1 };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let (Ok(h), Ok(m)) = (h.parse::<i32>(), m.parse::<i32>()) else {
            return Err(format!("timezone {spec:?} is not an offset like +02:00"));
        };
        if h > 14 || m > 59 {
            return Err(format!("timezone offset {spec:?} is out of range"));
        }
        let offset = Offset::from_seconds(sign * (h * 3600 + m * 60))
            .map_err(|e| format!("timezone offset {spec:?}: {e}"))?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(spec).map_err(|e| {
        format!("timezone {spec:?}: {e} (no tz data on this host? use a fixed offset like +02:00)")
    })
}

/// Evaluates a drill's error-budget and verify conditions. [`Prometheus`] is the real one.
pub trait ConditionGate: Send + Sync + 'static {
    /// `(holds, observed value)`.
    fn evaluate(
        &self,
        condition: &PromCondition,
    ) -> BoxFuture<'static, Result<(bool, f64), String>>;
}

impl ConditionGate for Prometheus {
    fn evaluate(
        &self,
        condition: &PromCondition,
    ) -> BoxFuture<'static, Result<(bool, f64), String>> {
        let prometheus = self.clone();
        let condition = condition.clone();
        Box::pin(async move {
            Prometheus::evaluate(&prometheus, &condition)
                .await
                .map_err(|e| {
                    let mut msg = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        msg.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    msg
                })
        })
    }
}

/// One drill occurrence's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    /// The drill.
    pub drill: String,
    /// The cron time it fired for.
    pub scheduled_for: Timestamp,
    /// When it ended (or was skipped).
    pub finished_at: Timestamp,
    /// `succeeded`, `failed`, `skipped-overlap`, `skipped-window`, `skipped-budget`.
    pub outcome: String,
    /// Why, for people.
    pub reason: String,
    /// The error-budget query's value, when evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_value: Option<f64>,
    /// The fail-out run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failout: Option<DrillRunReport>,
    /// The fail-back run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failback: Option<DrillRunReport>,
    /// The verify condition's value, when evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_value: Option<f64>,
    /// Where the report was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// A run of a drill.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillRunReport {
    /// The playbook.
    pub playbook: String,
    /// The run id (none: it could not be started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The outcome (`succeeded`, …, `error`, `not-started`).
    pub outcome: String,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl DrillRunReport {
    fn succeeded(&self) -> bool {
        self.outcome == Outcome::Succeeded.as_str()
    }
}

/// Recent drill reports (for the status page). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct DrillLog(Arc<Mutex<VecDeque<DrillReport>>>);

impl DrillLog {
    /// Adds a report (keeping the newest [`KEEP_REPORTS`]).
    pub fn push(&self, report: DrillReport) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() >= KEEP_REPORTS {
            log.pop_front();
        }
        log.push_back(report);
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<DrillReport> {
        let log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().rev().cloned().collect()
    }
}

/// Runs the drills of a configuration.
pub struct DrillScheduler {
    /// The drills.
    pub drills: Vec<DrillConfig>,
    /// Where runs go.
    pub runs: RunManager,
    /// Evaluates error budgets and verify conditions (none: drills with a gate are skipped).
    pub gate: Option<Arc<dyn ConditionGate>>,
    /// Leadership.
    pub leader: watch::Receiver<bool>,
    /// Metrics.
    pub metrics: Arc<DaemonMetrics>,
    /// Reports for the status page.
    pub log: DrillLog,
}

// === impl DrillScheduler ===

impl DrillScheduler {
    /// Starts one task per drill. Invalid schedules were refused when the configuration was
    /// parsed; one that still fails here is logged and skipped.
    pub fn spawn(self) -> Vec<tokio::task::JoinHandle<()>> {
        let shared = Arc::new(Shared {
            runs: self.runs,
            gate: self.gate,
            leader: self.leader,
            metrics: self.metrics,
            log: self.log,
        });
        self.drills
            .into_iter()
            .filter_map(|drill| match Schedule::from_config(&drill) {
                Ok(schedule) => {
                    let shared = shared.clone();
                    Some(tokio::spawn(drill_loop(shared, drill, schedule)))
                }
                Err(err) => {
                    tracing::error!(drill = %drill.name, error = %err, "drill not scheduled");
                    None
                }
            })
            .collect()
    }
}

struct Shared {
    runs: RunManager,
    gate: Option<Arc<dyn ConditionGate>>,
    leader: watch::Receiver<bool>,
    metrics: Arc<DaemonMetrics>,
    log: DrillLog,
}

async fn drill_loop(shared: Arc<Shared>, drill: DrillConfig, schedule: Schedule) {
    let drill = Arc::new(drill);
    let running = Arc::new(AtomicBool::new(false));
    let clock: Clock = shared.runs.clock().clone();
    loop {
        let now = clock.now();
        let Some(next) = schedule.next_after(now) else {
            tracing::warn!(drill = %drill.name, "the schedule has no further occurrence");
            return;
        };
        let wait = next.duration_since(now).max(SignedDuration::ZERO);
        let wait = std::time::Duration::try_from(wait).unwrap_or(std::time::Duration::ZERO);
        tracing::debug!(drill = %drill.name, next = %next, "drill scheduled");
        tokio::time::sleep(wait).await;
        // Wall and tokio time may disagree a little: never act before the cron time, so the
        // next occurrence computed after this one is a later one.
        while clock.now() < next {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if !*shared.leader.borrow() {
            tracing::debug!(drill = %drill.name, "not the leader: the leader runs drills");
            continue;
        }
        if running.swap(true, Ordering::SeqCst) {
            finish(
                &shared,
                &drill,
                skipped(
                    &drill,
                    next,
                    &clock,
                    "skipped-overlap",
                    "the previous occurrence is still running",
                ),
            )
            .await;
            continue;
        }
        let shared2 = shared.clone();
        let drill2 = drill.clone();
        let running2 = running.clone();
        let schedule2 = schedule.clone();
        let clock2 = clock.clone();
        tokio::spawn(async move {
            let report = occurrence(&shared2, &drill2, &schedule2, next, &clock2).await;
            finish(&shared2, &drill2, report).await;
            running2.store(false, Ordering::SeqCst);
        });
    }
}

fn skipped(
    drill: &DrillConfig,
    at: Timestamp,
    clock: &Clock,
    outcome: &str,
    reason: &str,
) -> DrillReport {
    DrillReport {
        drill: drill.name.clone(),
        scheduled_for: at,
        finished_at: clock.now(),
        outcome: outcome.to_string(),
        reason: reason.to_string(),
        budget_value: None,
        failout: None,
        failback: None,
        verify_value: None,
        file: None,
    }
}

async fn occurrence(
    shared: &Shared,
    drill: &DrillConfig,
    schedule: &Schedule,
    at: Timestamp,
    clock: &Clock,
) -> DrillReport {
    if !schedule.in_window(at) {
        return skipped(
            drill,
            at,
            clock,
            "skipped-window",
            "outside the drill's time window",
        );
    }
    let mut budget_value = None;
    if let Some(condition) = &drill.error_budget {
        let Some(gate) = &shared.gate else {
            return skipped(
                drill,
                at,
                clock,
                "skipped-budget",
                "an error-budget gate is configured but no Prometheus is",
            );
        };
        match gate.evaluate(condition).await {
            Ok((true, value)) => budget_value = Some(value),
            Ok((false, value)) => {
                let mut r = skipped(
                    drill,
                    at,
                    clock,
                    "skipped-budget",
                    &format!(
                        "error budget gate does not hold: {} = {value} (needs {} {})",
                        condition.query,
                        condition.op.symbol(),
                        condition.threshold
                    ),
                );
                r.budget_value = Some(value);
                return r;
            }
            Err(err) => {
                return skipped(
                    drill,
                    at,
                    clock,
                    "skipped-budget",
                    &format!("error budget gate could not be evaluated: {err}"),
                );
            }
        }
    }
    tracing::info!(drill = %drill.name, "drill starting: fail-out");
    let failout = run_and_wait(&shared.runs, drill, &drill.failout).await;
    tracing::info!(drill = %drill.name, outcome = %failout.outcome, "drill: fail-back");
    let failback = if failout.run_id.is_some() {
        run_and_wait(&shared.runs, drill, &drill.failback).await
    } else {
        DrillRunReport {
            playbook: drill.failback.playbook.clone(),
            run_id: None,
            outcome: "not-started".to_string(),
            reason: Some("the fail-out never started, nothing to fail back".to_string()),
        }
    };
    let mut verify_value = None;
    let mut problems = Vec::new();
    if !failout.succeeded() {
        problems.push(format!("fail-out {}", failout.outcome));
    }
    if !failback.succeeded() {
        problems.push(format!("fail-back {}", failback.outcome));
    }
    if let Some(condition) = &drill.verify {
        match &shared.gate {
            Some(gate) => match gate.evaluate(condition).await {
                Ok((holds, value)) => {
                    verify_value = Some(value);
                    if !holds {
                        problems.push(format!(
                            "verify: {} = {value} (needs {} {})",
                            condition.query,
                            condition.op.symbol(),
                            condition.threshold
                        ));
                    }
                }
                Err(err) => problems.push(format!("verify could not be evaluated: {err}")),
            },
            None => problems.push("verify needs Prometheus, none is configured".to_string()),
        }
    }
    let (outcome, reason) = if problems.is_empty() {
        (
            "succeeded",
            "fail-out, fail-back and verify succeeded".to_string(),
        )
    } else {
        ("failed", problems.join("; "))
    };
    DrillReport {
        drill: drill.name.clone(),
        scheduled_for: at,
        finished_at: clock.now(),
        outcome: outcome.to_string(),
        reason,
        budget_value,
        failout: Some(failout),
        failback: Some(failback),
        verify_value,
        file: None,
    }
}

async fn run_and_wait(runs: &RunManager, drill: &DrillConfig, run: &DrillRun) -> DrillRunReport {
    let request = RunRequest {
        playbook: PlaybookSource::Name(run.playbook.clone()),
        params: run.params.clone(),
        incident: Some(format!("drill/{}", drill.name)),
        trigger: Trigger::Schedule,
        who: format!("drill/{}", drill.name),
        run_id: None,
    };
    let view = match runs.submit(request) {
        Ok(view) => view,
        Err(err) => {
            return DrillRunReport {
                playbook: run.playbook.clone(),
                run_id: None,
                outcome: "not-started".to_string(),
                reason: Some(err.to_string()),
            };
        }
    };
    let done: Option<RunView> = runs.wait(&view.run_id).await;
    let (outcome, reason) = match done {
        Some(v) => (
            v.outcome
                .map(|o| o.as_str().to_string())
                .unwrap_or_else(|| v.state.as_str().to_string()),
            v.reason,
        ),
        None => ("error".to_string(), Some("the run vanished".to_string())),
    };
    DrillRunReport {
        playbook: run.playbook.clone(),
        run_id: Some(view.run_id),
        outcome,
        reason,
    }
}

async fn finish(shared: &Shared, drill: &DrillConfig, mut report: DrillReport) {
    let dir = shared.runs.state_dir().join("drills").join(&drill.name);
    let file = dir.join(format!(
        "{}.json",
        report.scheduled_for.strftime("%Y%m%dT%H%M%SZ")
    ));
    report.file = Some(file.clone());
    let write = async {
        tokio::fs::create_dir_all(&dir).await?;
        let body = serde_json::to_vec_pretty(&report).unwrap_or_default();
        tokio::fs::write(&file, body).await
    };
    if let Err(err) = write.await {
        tracing::warn!(drill = %drill.name, file = %file.display(), error = %err, "cannot write the drill report");
        report.file = None;
    }
    shared.metrics.drill(&drill.name, &report.outcome);
    tracing::info!(drill = %drill.name, outcome = %report.outcome, reason = %report.reason, "drill finished");
    shared.log.push(report);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::TimeWindow;

    fn drill(schedule: &str, tz: &str, window: Option<(&str, &str)>) -> DrillConfig {
        DrillConfig {
            name: "d".into(),
            schedule: schedule.into(),
            timezone: Some(tz.into()),
            window: window.map(|(s, e)| TimeWindow {
                start: s.into(),
                end: e.into(),
            }),
            error_budget: None,
            failout: DrillRun {
                playbook: "failout-zone".into(),
                params: Default::default(),
            },
            failback: DrillRun {
                playbook: "failback-zone".into(),
                params: Default::default(),
            },
            verify: None,
        }
    }

    #[test]
    fn next_occurrence_respects_the_offset() {
        let s = Schedule::from_config(&drill("0 10 * * *", "+02:00", None)).unwrap();
        let now: Timestamp = "2026-11-25T07:00:00Z".parse().unwrap();
        // 10:00 at +02:00 is 08:00 UTC.
        assert_eq!(
            s.next_after(now).unwrap().to_string(),
            "2026-11-25T08:00:00Z"
        );
        let after: Timestamp = "2026-11-25T08:00:00Z".parse().unwrap();
        assert_eq!(
            s.next_after(after).unwrap().to_string(),
            "2026-11-26T08:00:00Z"
        );
    }

    #[test]
    fn windows_including_overnight() {
        let s =
            Schedule::from_config(&drill("* * * * *", "UTC", Some(("09:00", "17:00")))).unwrap();
        assert!(s.in_window("2026-11-25T09:00:00Z".parse().unwrap()));
        assert!(!s.in_window("2026-11-25T17:00:00Z".parse().unwrap()));
        let s =
            Schedule::from_config(&drill("* * * * *", "-05:00", Some(("22:00", "02:00")))).unwrap();
        // 03:30 UTC is 22:30 at -05:00.
        assert!(s.in_window("2026-11-25T03:30:00Z".parse().unwrap()));
        assert!(!s.in_window("2026-11-25T12:00:00Z".parse().unwrap()));
    }

    #[test]
    fn bad_timezone_and_window_are_refused() {
        assert!(Schedule::from_config(&drill("* * * * *", "+25:00", None)).is_err());
        assert!(Schedule::from_config(&drill("* * * * *", "Mars/Olympus", None)).is_err());
        assert!(Schedule::from_config(&drill("* * * * *", "UTC", Some(("9am", "17:00")))).is_err());
        assert!(parse_timezone("-03:30").is_ok());
    }
}
