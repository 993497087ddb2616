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
//! 3. an experiment, as Chaos Toolkit runs one: check the steady-state hypothesis (PromQL
//!    and HTTP probes) — not holding: `skipped-hypothesis`, nothing done;
//! 4. run the fail-out playbook and wait; hold the zone out for `hold`, checking the
//!    hypothesis every `holdInterval` — the first failure ends the hold early and opens an
//!    incident with the evidence (and burns `budgetBurn`);
//! 5. *always* run the fail-back playbook (a partial fail-out must be reverted too) and wait;
//! 6. check that the zone got its pods and traffic back (`returned`, retried for a bound),
//!    the hypothesis again, and the optional `verify` condition;
//! 7. write the drill's journal (`<state-dir>/drills/<drill>/<time>.jsonl`, every check as
//!    it happens) and report (`<time>.json` and `<time>.md`), count
//!    `ripcord_drills_total{drill,outcome}`, keep it for the status page. Drill runs carry no
//!    incident unless the hypothesis failed: a drill is not an incident.

use crate::daemon::clock::Clock;
use crate::daemon::config::{DaemonConfigError, DrillConfig, DrillRun, HttpProbe, Hypothesis};
use crate::daemon::metrics::DaemonMetrics;
use crate::daemon::runs::{PlaybookSource, RunManager, RunRequest, RunView};
use crate::engine::Trigger;
use crate::errors::error_chain;
use crate::journal::Outcome;
use crate::metrics::prometheus::Prometheus;
use crate::playbook::model::PromCondition;
use futures::future::BoxFuture;
use jiff::civil::Time;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How many drill reports the status page keeps.
const KEEP_REPORTS: usize = 50;
/// How often the hypothesis is checked during the hold, unless configured.
const DEFAULT_HOLD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long the `returned` checks may take to hold, unless configured.
const DEFAULT_RETURN_WITHIN: std::time::Duration = std::time::Duration::from_secs(300);
/// How often the `returned` checks are retried.
const RETURN_POLL: std::time::Duration = std::time::Duration::from_secs(5);
/// Bound of an HTTP probe, unless configured.
const HTTP_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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

/// Evaluates a drill's error-budget, hypothesis and verify conditions. [`Prometheus`] is the
/// real one.
pub trait ConditionGate: Send + Sync + 'static {
    /// `(holds, observed value)`.
    fn evaluate(
        &self,
        condition: &PromCondition,
    ) -> BoxFuture<'static, Result<(bool, f64), String>>;

    /// An HTTP probe: `(holds, status)`. The default sends the request (bounded by the
    /// probe's timeout).
    fn probe_http(&self, probe: &HttpProbe) -> BoxFuture<'static, Result<(bool, u16), String>> {
        let probe = probe.clone();
        Box::pin(async move { http_probe(&probe).await })
    }
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
                .map_err(|e| error_chain(&e))
        })
    }
}

/// The gate without Prometheus: PromQL probes cannot be evaluated, HTTP probes can.
struct NoPrometheus;

impl ConditionGate for NoPrometheus {
    fn evaluate(
        &self,
        _condition: &PromCondition,
    ) -> BoxFuture<'static, Result<(bool, f64), String>> {
        Box::pin(async { Err("no Prometheus is configured".to_string()) })
    }
}

/// Sends `GET url` once, bounded by the probe's timeout (default 5 s): `(holds, status)`.
pub async fn http_probe(probe: &HttpProbe) -> Result<(bool, u16), String> {
    let timeout = probe
        .timeout
        .map(|d| d.0)
        .unwrap_or(HTTP_PROBE_TIMEOUT)
        .max(std::time::Duration::from_millis(1));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| error_chain(&e))?;
    let response = tokio::time::timeout(timeout, client.get(&probe.url).send())
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| error_chain(&e))?;
    let status = response.status().as_u16();
    let holds = match probe.expect_status {
        Some(expected) => status == expected,
        None => response.status().is_success(),
    };
    Ok((holds, status))
}

/// One check or phase change of a drill, in the order they happened (the drill's journal).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillEvent {
    /// When.
    pub at: Timestamp,
    /// `before`, `failout`, `hold`, `failback`, `after`, `returned`, `verify`, `end`.
    pub phase: String,
    /// The probe or run it is about.
    pub what: String,
    /// For a check: whether it held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds: Option<bool>,
    /// For a check: the observed value (PromQL value, HTTP status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// For people.
    pub detail: String,
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
    /// `succeeded`, `failed`, `skipped-overlap`, `skipped-window`, `skipped-budget`,
    /// `skipped-hypothesis` (not in steady state before the fail-out).
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
    /// How long the zone was held failed out while the hypothesis was watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_seconds: Option<f64>,
    /// The evidence when the steady-state hypothesis failed during or after the drill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypothesis_failed: Option<String>,
    /// The incident opened because the hypothesis failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Every check and phase, in order.
    #[serde(default)]
    pub events: Vec<DrillEvent>,
    /// The drill's own run (a journal in `<state-dir>/runs/<id>/`, listed with the other runs
    /// and readable by `ripcord report`), for occurrences that failed a zone out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Where the report was written (JSON; the Markdown report and the JSON-lines journal
    /// sit beside it).
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

    /// One record per drill: its newest report and how many occurrences are kept, by name.
    pub fn per_drill(&self) -> Vec<(DrillReport, usize)> {
        let mut out: Vec<(DrillReport, usize)> = Vec::new();
        for report in self.recent() {
            match out.iter_mut().find(|(r, _)| r.drill == report.drill) {
                Some((_, count)) => *count += 1,
                None => out.push((report, 1)),
            }
        }
        out
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
        shared.metrics.drill_next(&drill.name, next.as_second());
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
        held_seconds: None,
        hypothesis_failed: None,
        incident: None,
        events: Vec::new(),
        run_id: None,
        file: None,
    }
}

/// The events of one occurrence, appended to its JSON-lines journal as they happen (the
/// journal is best effort: a write failure is logged once and the drill goes on).
struct DrillJournal {
    path: PathBuf,
    events: Vec<DrillEvent>,
    broken: bool,
}

// === impl DrillJournal ===

impl DrillJournal {
    fn new(state_dir: &std::path::Path, drill: &str, at: Timestamp) -> DrillJournal {
        DrillJournal {
            path: report_base(state_dir, drill, at).with_extension("jsonl"),
            events: Vec::new(),
            broken: false,
        }
    }

    async fn record(
        &mut self,
        clock: &Clock,
        phase: &str,
        what: &str,
        check: Option<(bool, Option<f64>)>,
        detail: String,
    ) {
        let event = DrillEvent {
            at: clock.now(),
            phase: phase.to_string(),
            what: what.to_string(),
            holds: check.map(|c| c.0),
            value: check.and_then(|c| c.1),
            detail,
        };
        if !self.broken {
            let line = serde_json::to_string(&event).unwrap_or_default() + "\n";
            let write = async {
                if let Some(dir) = self.path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                let mut file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .await?;
                tokio::io::AsyncWriteExt::write_all(&mut file, line.as_bytes()).await?;
                file.sync_data().await
            };
            if let Err(err) = write.await {
                tracing::warn!(file = %self.path.display(), error = %err, "cannot write the drill journal");
                self.broken = true;
            }
        }
        self.events.push(event);
    }
}

/// `<state-dir>/drills/<drill>/<time>` (the report's `.json`, `.md` and `.jsonl`).
fn report_base(state_dir: &std::path::Path, drill: &str, at: Timestamp) -> PathBuf {
    state_dir
        .join("drills")
        .join(drill)
        .join(at.strftime("%Y%m%dT%H%M%SZ").to_string())
}

/// Checks every probe of the hypothesis; `Err(evidence)` names each probe that did not hold.
async fn check_hypothesis(
    gate: &dyn ConditionGate,
    hypothesis: &Hypothesis,
    phase: &str,
    journal: &mut DrillJournal,
    clock: &Clock,
) -> Result<(), String> {
    let mut failed = Vec::new();
    let prom = hypothesis.probes.iter().map(|p| {
        let check = gate.evaluate(&p.condition());
        async move { (p, check.await) }
    });
    let http = hypothesis.http.iter().map(|p| {
        let check = gate.probe_http(p);
        async move { (p, check.await) }
    });
    let (prom, http) = futures::future::join(
        futures::future::join_all(prom),
        futures::future::join_all(http),
    )
    .await;
    for (probe, result) in prom {
        let needs = format!("{} {}", probe.op.symbol(), probe.threshold);
        match result {
            Ok((holds, value)) => {
                let detail = format!("{} = {value} (needs {needs})", probe.query);
                if !holds {
                    failed.push(format!("{}: {detail}", probe.name));
                }
                journal
                    .record(
                        clock,
                        phase,
                        &probe.name,
                        Some((holds, Some(value))),
                        detail,
                    )
                    .await;
            }
            Err(err) => {
                let detail = format!("{} could not be evaluated: {err}", probe.query);
                failed.push(format!("{}: {detail}", probe.name));
                journal
                    .record(clock, phase, &probe.name, Some((false, None)), detail)
                    .await;
            }
        }
    }
    for (probe, result) in http {
        match result {
            Ok((holds, status)) => {
                let detail = format!("GET {} answered {status}", probe.url);
                if !holds {
                    failed.push(format!("{}: {detail}", probe.name));
                }
                journal
                    .record(
                        clock,
                        phase,
                        &probe.name,
                        Some((holds, Some(f64::from(status)))),
                        detail,
                    )
                    .await;
            }
            Err(err) => {
                let detail = format!("GET {} failed: {err}", probe.url);
                failed.push(format!("{}: {detail}", probe.name));
                journal
                    .record(clock, phase, &probe.name, Some((false, None)), detail)
                    .await;
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
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
    let gate: Arc<dyn ConditionGate> = shared
        .gate
        .clone()
        .unwrap_or_else(|| Arc::new(NoPrometheus));
    let mut journal = DrillJournal::new(shared.runs.state_dir(), &drill.name, at);

    // 1. Steady state before: a system that is not in it proves nothing by losing a zone.
    if let Some(hypothesis) = &drill.hypothesis
        && let Err(evidence) =
            check_hypothesis(gate.as_ref(), hypothesis, "before", &mut journal, clock).await
    {
        let mut r = skipped(
            drill,
            at,
            clock,
            "skipped-hypothesis",
            &format!("not in steady state before the fail-out, nothing done: {evidence}"),
        );
        r.budget_value = budget_value;
        r.events = journal.events;
        return r;
    }

    // 2. Fail out.
    tracing::info!(drill = %drill.name, "drill starting: fail-out");
    let failout = run_and_wait(&shared.runs, drill, &drill.failout, None).await;
    journal
        .record(
            clock,
            "failout",
            failout.run_id.as_deref().unwrap_or(&failout.playbook),
            None,
            format!("{} {}", failout.playbook, failout.outcome),
        )
        .await;

    // 3. Hold, watching the hypothesis; the first failure ends the hold.
    let mut hypothesis_failed: Option<String> = None;
    let mut held_seconds = None;
    let hold = drill.hold.map(|d| d.0).unwrap_or_default();
    if failout.succeeded() && !hold.is_zero() {
        let interval = drill
            .hold_interval
            .map(|d| d.0)
            .unwrap_or(DEFAULT_HOLD_INTERVAL)
            .max(std::time::Duration::from_millis(10));
        let started = tokio::time::Instant::now();
        let deadline = started + hold;
        tracing::info!(drill = %drill.name, hold = ?hold, "drill: holding the zone out");
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            if let Some(hypothesis) = &drill.hypothesis
                && let Err(evidence) =
                    check_hypothesis(gate.as_ref(), hypothesis, "hold", &mut journal, clock).await
            {
                tracing::warn!(drill = %drill.name, evidence = %evidence, "drill: hypothesis failed during the hold, failing back early");
                hypothesis_failed = Some(format!(
                    "during the hold (after {:.0}s of {:.0}s): {evidence}",
                    started.elapsed().as_secs_f64(),
                    hold.as_secs_f64()
                ));
                break;
            }
        }
        held_seconds = Some(started.elapsed().as_secs_f64());
    }

    // 4. A failed hypothesis opens an incident before the fail-back, which runs under it.
    let mut incident = None;
    if let Some(evidence) = &hypothesis_failed {
        incident = open_incident(shared, drill, at, clock, evidence, &failout).await;
    }

    // 5. Fail back (always, once the fail-out started: a partial fail-out must be reverted).
    tracing::info!(drill = %drill.name, outcome = %failout.outcome, "drill: fail-back");
    let failback = if failout.run_id.is_some() {
        run_and_wait(&shared.runs, drill, &drill.failback, incident.clone()).await
    } else {
        DrillRunReport {
            playbook: drill.failback.playbook.clone(),
            run_id: None,
            outcome: "not-started".to_string(),
            reason: Some("the fail-out never started, nothing to fail back".to_string()),
        }
    };
    journal
        .record(
            clock,
            "failback",
            failback.run_id.as_deref().unwrap_or(&failback.playbook),
            None,
            format!("{} {}", failback.playbook, failback.outcome),
        )
        .await;

    let mut problems = Vec::new();
    if !failout.succeeded() {
        problems.push(format!("fail-out {}", failout.outcome));
    }
    if !failback.succeeded() {
        problems.push(format!("fail-back {}", failback.outcome));
    }

    // 6. The zone came back: its pods and its share of the traffic (bounded retry).
    if let Some(returned) = &drill.returned
        && failback.succeeded()
    {
        let within = returned
            .within
            .map(|d| d.0)
            .unwrap_or(DEFAULT_RETURN_WITHIN);
        let deadline = tokio::time::Instant::now() + within;
        let check = Hypothesis {
            probes: returned.probes.clone(),
            http: Vec::new(),
        };
        loop {
            let mut scratch = DrillJournal {
                path: journal.path.clone(),
                events: Vec::new(),
                broken: true,
            };
            let result =
                check_hypothesis(gate.as_ref(), &check, "returned", &mut scratch, clock).await;
            let last = result.is_ok() || tokio::time::Instant::now() >= deadline;
            if last {
                // Journal the final attempt only: the retries say nothing new.
                for e in scratch.events {
                    journal
                        .record(
                            clock,
                            &e.phase,
                            &e.what,
                            e.holds.map(|h| (h, e.value)),
                            e.detail,
                        )
                        .await;
                }
                if let Err(evidence) = result {
                    problems.push(format!(
                        "the zone did not return within {within:?}: {evidence}"
                    ));
                }
                break;
            }
            tokio::time::sleep(RETURN_POLL.min(within)).await;
        }
    }

    // 7. Steady state after.
    if let Some(hypothesis) = &drill.hypothesis
        && hypothesis_failed.is_none()
        && let Err(evidence) =
            check_hypothesis(gate.as_ref(), hypothesis, "after", &mut journal, clock).await
    {
        let evidence = format!("after the fail-back: {evidence}");
        incident = open_incident(shared, drill, at, clock, &evidence, &failout).await;
        hypothesis_failed = Some(evidence);
    }

    let mut verify_value = None;
    if let Some(condition) = &drill.verify {
        match &shared.gate {
            Some(gate) => match gate.evaluate(condition).await {
                Ok((holds, value)) => {
                    verify_value = Some(value);
                    journal
                        .record(
                            clock,
                            "verify",
                            &condition.query,
                            Some((holds, Some(value))),
                            format!("needs {} {}", condition.op.symbol(), condition.threshold),
                        )
                        .await;
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
    if let Some(evidence) = &hypothesis_failed {
        problems.insert(0, format!("hypothesis failed {evidence}"));
        if let Some(burn) = drill.budget_burn.filter(|b| b.is_finite() && *b > 0.0) {
            shared.metrics.drill_budget_burn(&drill.name, burn);
        }
    }
    let (outcome, reason) = if problems.is_empty() {
        (
            "succeeded",
            if drill.hypothesis.is_some() {
                format!(
                    "the hypothesis held before, during {:.0}s out and after; fail-out and fail-back succeeded",
                    held_seconds.unwrap_or(0.0)
                )
            } else {
                "fail-out, fail-back and verify succeeded".to_string()
            },
        )
    } else {
        ("failed", problems.join("; "))
    };
    journal
        .record(clock, "end", outcome, None, reason.clone())
        .await;
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
        held_seconds,
        hypothesis_failed,
        incident,
        events: journal.events,
        run_id: None,
        file: None,
    }
}

/// The incident id of a failed drill occurrence: `drill-<name>-<time>` (valid as an incident
/// id: letters, digits, `.`, `_`, `-`, at most 64).
pub fn incident_id(drill: &str, at: Timestamp) -> String {
    let name: String = drill
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("drill-{name}-{}", at.strftime("%Y%m%dT%H%MZ"))
}

/// Opens (writes) the incident of a failed hypothesis with the evidence; `None` when it
/// cannot be written (logged).
async fn open_incident(
    shared: &Shared,
    drill: &DrillConfig,
    at: Timestamp,
    clock: &Clock,
    evidence: &str,
    failout: &DrillRunReport,
) -> Option<String> {
    let id = incident_id(&drill.name, at);
    let incident = crate::cleanup::incident::Incident {
        severity: Some("drill".to_string()),
        impact: Some(format!(
            "drill {}: the steady-state hypothesis failed {evidence} (fail-out run {}, {})",
            drill.name,
            failout.run_id.as_deref().unwrap_or("none"),
            failout.playbook
        )),
        impact_started_at: Some(at),
        detected_at: Some(clock.now()),
        ..crate::cleanup::incident::Incident::new(
            &id,
            clock.now(),
            &format!("drill/{}", drill.name),
        )
    };
    let state_dir = shared.runs.state_dir().to_path_buf();
    let saved =
        tokio::task::spawn_blocking(move || crate::cleanup::incident::save(&state_dir, &incident))
            .await;
    match saved {
        Ok(Ok(path)) => {
            tracing::warn!(drill = %drill.name, incident = %id, file = %path.display(), "drill hypothesis failed: incident opened");
            Some(id)
        }
        Ok(Err(err)) => {
            tracing::error!(drill = %drill.name, incident = %id, error = %err, "cannot open the drill's incident");
            None
        }
        Err(err) => {
            tracing::error!(drill = %drill.name, incident = %id, error = %err, "cannot open the drill's incident");
            None
        }
    }
}

async fn run_and_wait(
    runs: &RunManager,
    drill: &DrillConfig,
    run: &DrillRun,
    incident: Option<String>,
) -> DrillRunReport {
    let request = RunRequest {
        playbook: PlaybookSource::Name(run.playbook.clone()),
        params: run.params.clone(),
        // A drill is not an incident: only a failed hypothesis opens one.
        incident,
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

/// The report as Markdown, for people (beside the JSON).
pub fn markdown(report: &DrillReport) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Drill {} — {}\n\n- scheduled for: {}\n- finished at: {}\n- outcome: **{}**\n- why: {}",
        report.drill,
        report.scheduled_for,
        report.scheduled_for,
        report.finished_at,
        report.outcome,
        report.reason
    );
    if let Some(held) = report.held_seconds {
        let _ = writeln!(md, "- held out: {held:.0}s");
    }
    if let Some(incident) = &report.incident {
        let _ = writeln!(md, "- incident: {incident}");
    }
    if let Some(run) = &report.run_id {
        let _ = writeln!(md, "- journal: run {run} (`ripcord report {run}`)");
    }
    for (label, run) in [
        ("fail-out", &report.failout),
        ("fail-back", &report.failback),
    ] {
        if let Some(run) = run {
            let _ = writeln!(
                md,
                "- {label}: {} run {} → {}{}",
                run.playbook,
                run.run_id.as_deref().unwrap_or("(not started)"),
                run.outcome,
                run.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
    }
    if !report.events.is_empty() {
        md.push_str(
            "\n| time | phase | what | holds | value | detail |\n|---|---|---|---|---|---|\n",
        );
        for e in &report.events {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                e.at.strftime("%H:%M:%S"),
                e.phase,
                e.what.replace('|', "\\|"),
                match e.holds {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                },
                e.value.map(|v| v.to_string()).unwrap_or_default(),
                e.detail.replace('|', "\\|")
            );
        }
    }
    md
}

/// Journals an occurrence that failed a zone out as a run of its own (`drill/<name>`): each
/// phase and check a step record, each failed check a tripped guard, the end a `RunFinished`.
fn journal_as_run(
    state_dir: &std::path::Path,
    report: &DrillReport,
) -> Result<String, crate::journal::JournalError> {
    use crate::journal::{Journal, Record};
    let run_id = crate::journal::new_run_id();
    let mut journal = Journal::create(state_dir, &run_id)?;
    let mut params = std::collections::BTreeMap::new();
    params.insert(
        "scheduledFor".to_string(),
        serde_json::Value::String(report.scheduled_for.to_string()),
    );
    for (key, run) in [
        ("failoutRun", &report.failout),
        ("failbackRun", &report.failback),
    ] {
        if let Some(id) = run.as_ref().and_then(|r| r.run_id.clone()) {
            params.insert(key.to_string(), serde_json::Value::String(id));
        }
    }
    let mut records = vec![Record::RunStarted {
        run_id: run_id.clone(),
        playbook: format!("drill/{}", report.drill),
        trigger: "schedule".to_string(),
        who: format!("drill/{}", report.drill),
        incident: report.incident.clone(),
        params,
        plan: serde_json::json!({"drill": report.drill}),
    }];
    for (i, e) in report.events.iter().enumerate() {
        let step = format!("{:02}-{}-{}", i + 1, e.phase, e.what);
        records.push(Record::StepPlanned {
            step: step.clone(),
            action: format!("drill.{}", e.phase),
            summary: e.detail.clone(),
            diff: String::new(),
        });
        if e.holds == Some(false) {
            records.push(Record::GuardTripped {
                guard: e.what.clone(),
                kind: format!("hypothesis/{}", e.phase),
                value: e.value,
                reason: e.detail.clone(),
            });
        } else {
            records.push(Record::StepVerified { step });
        }
    }
    let duration = report.finished_at.duration_since(report.scheduled_for);
    records.push(Record::RunFinished {
        outcome: if report.outcome == "succeeded" {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        },
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(0),
        reason: Some(report.reason.clone()),
    });
    journal.append_all(records)?;
    Ok(run_id)
}

async fn finish(shared: &Shared, drill: &DrillConfig, mut report: DrillReport) {
    if report.failout.as_ref().is_some_and(|r| r.run_id.is_some()) {
        let state_dir = shared.runs.state_dir().to_path_buf();
        let copy = report.clone();
        match tokio::task::spawn_blocking(move || journal_as_run(&state_dir, &copy)).await {
            Ok(Ok(run_id)) => report.run_id = Some(run_id),
            Ok(Err(err)) => {
                tracing::warn!(drill = %drill.name, error = %err, "cannot journal the drill as a run")
            }
            Err(err) => {
                tracing::warn!(drill = %drill.name, error = %err, "cannot journal the drill as a run")
            }
        }
    }
    let base = report_base(shared.runs.state_dir(), &drill.name, report.scheduled_for);
    let file = base.with_extension("json");
    report.file = Some(file.clone());
    let write = async {
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let body = serde_json::to_vec_pretty(&report).unwrap_or_default();
        tokio::fs::write(&file, body).await?;
        tokio::fs::write(base.with_extension("md"), markdown(&report)).await
    };
    if let Err(err) = write.await {
        tracing::warn!(drill = %drill.name, file = %file.display(), error = %err, "cannot write the drill report");
        report.file = None;
    }
    shared.metrics.drill(&drill.name, &report.outcome);
    if !report.outcome.starts_with("skipped-") {
        shared
            .metrics
            .drill_last(&drill.name, report.finished_at.as_second());
    }
    tracing::info!(drill = %drill.name, outcome = %report.outcome, reason = %report.reason, incident = report.incident.as_deref().unwrap_or(""), "drill finished");
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
            hypothesis: None,
            hold: None,
            hold_interval: None,
            returned: None,
            budget_burn: None,
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
    fn issue17_drill_incident_ids_are_valid_incident_ids() {
        let at: Timestamp = "2026-11-25T10:10:00Z".parse().unwrap();
        let id = incident_id("zone b/weekly", at);
        assert_eq!(id, "drill-zone-b-weekly-20261125T1010Z");
        crate::cleanup::incident::validate_id(&id).unwrap();
        crate::cleanup::incident::validate_id(&incident_id(&"x".repeat(200), at)).unwrap();
    }

    #[test]
    fn bad_timezone_and_window_are_refused() {
        assert!(Schedule::from_config(&drill("* * * * *", "+25:00", None)).is_err());
        assert!(Schedule::from_config(&drill("* * * * *", "Mars/Olympus", None)).is_err());
        assert!(Schedule::from_config(&drill("* * * * *", "UTC", Some(("9am", "17:00")))).is_err());
        assert!(parse_timezone("-03:30").is_ok());
    }
}
