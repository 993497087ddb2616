//! The step loop: diff → (first-mutation gate) → write-ahead → apply → journal → verify →
//! re-diff, with retries, timeouts, safe points, `onFailure` and undo; and the dry run.

use super::gate::{GateError, GateState};
use super::mirror::Mirror;
use super::resume::Prior;
use super::{
    Engine, EngineError, EngineEvent, Events, MutationPreview, RunOptions, RunOutcome,
    SharedJournal, StepReport, StepResult, StopHandle, StopReason, crash_point,
};
use crate::actions::{self, Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation};
/// The one error-chain walker (`engine/gate.rs` calls it by this path).
use crate::errors::error_chain;
use crate::journal::{Outcome, Record};
use crate::k8s::runs::{MutationStatus, RunPhase, RunStatus, StepPhase, StepStatus, StoppedBy};
use crate::plan::{Plan, PlannedStep};
use crate::playbook::OnFailure;
use crate::playbook::catalog::{self, ObjectPatch};
use crate::retry::{self, Stopped};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::Instrument;

/// Most diff → apply → verify rounds of one step (multi-phase actions need several).
const MAX_ROUNDS: usize = 1000;
/// Extra time granted to `verify` beyond its own bound before the engine cancels it.
const VERIFY_GRACE: Duration = Duration::from_secs(5);
/// How long a write already sent, or a verify already reading, may still finish after a stop
/// request before the engine drops it (a dropped write's intent is journaled: a resume's
/// re-diff settles whether it took effect). Two graces at most fall into one stop.
const STOP_GRACE: Duration = Duration::from_millis(400);

/// Why a step failed.
#[derive(Debug, Clone)]
pub(crate) struct StepFailure {
    pub error: String,
    pub category: String,
    /// The action refused before writing anything (a guard, a gate's refusal): decided by the
    /// error's variant ([`ActionError::Refused`]), never by comparing the category string.
    pub refused: bool,
}

impl StepFailure {
    fn from_action(err: &ActionError) -> StepFailure {
        StepFailure {
            error: error_chain(err),
            category: err.category().to_string(),
            refused: matches!(err, ActionError::Refused { .. }),
        }
    }

    fn new(category: &str, error: impl Into<String>) -> StepFailure {
        StepFailure {
            error: error.into(),
            category: category.to_string(),
            refused: false,
        }
    }
}

/// How a step ended when it did not fail.
enum StepEnd {
    Verified,
    AlreadySatisfied(String),
    Stopped(StopReason),
    Refused(String),
}

/// Why a diff did not return one: it failed, or a stop request cancelled it (a diff only
/// reads, so cancelling it is always safe).
enum DiffHalt {
    Failed(StepFailure),
    Stopped(StopReason),
}

/// How one attempt of a retried diff, apply or verify ended when it did not succeed: the
/// action's own error (retried when [`ActionError::is_retryable`]), or a halt that is never
/// retried (the step's time is up, a stop request, a conflict that re-diffs).
enum Attempt<H> {
    Action(ActionError),
    Halt(H),
}

impl<H> Attempt<H> {
    fn is_retryable(&self) -> bool {
        matches!(self, Attempt::Action(err) if err.is_retryable())
    }
}

impl<H> std::fmt::Display for Attempt<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Action(err) => write!(f, "{err}"),
            Attempt::Halt(_) => f.write_str("halted"),
        }
    }
}

/// Resolves when a stop is requested (never, if nobody can request one any more).
pub(crate) async fn stop_requested(mut rx: watch::Receiver<Option<StopReason>>) -> StopReason {
    let reason = rx
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|r| r.clone());
    match reason {
        Some(reason) => reason,
        None => std::future::pending().await,
    }
}

/// The mutable state of one run.
pub(crate) struct RunState<'a> {
    pub engine: &'a Engine,
    pub plan: &'a Plan,
    pub opts: &'a RunOptions,
    pub namespace: String,
    pub journal: SharedJournal,
    pub events: Events,
    pub stop: StopHandle,
    stop_rx: watch::Receiver<Option<StopReason>>,
    pub prior: Prior,
    pub gate: GateState,
    pub mirror: Option<Mirror>,
    pub status: RunStatus,
    /// Mutations applied by this process.
    pub mutations_applied: usize,
    /// Per-step reports, in plan order.
    pub reports: Vec<StepReport>,
    /// Every applied mutation of the run (including earlier processes'), in order.
    pub applied_log: Vec<(String, Mutation)>,
    /// The client of the current step's kubeconfig context (`None`: the engine's).
    step_client: Option<kube::Client>,
}

impl<'a> RunState<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: &'a Engine,
        plan: &'a Plan,
        opts: &'a RunOptions,
        namespace: String,
        journal: SharedJournal,
        events: Events,
        stop: StopHandle,
        prior: Prior,
    ) -> RunState<'a> {
        let status = RunStatus {
            phase: RunPhase::Running,
            steps: plan
                .steps
                .iter()
                .map(|s| StepStatus {
                    name: s.name.clone(),
                    phase: if prior.done_steps.contains(&s.name) {
                        StepPhase::Verified
                    } else {
                        StepPhase::Pending
                    },
                    ..StepStatus::default()
                })
                .collect(),
            started_at: Some(jiff::Timestamp::now().to_string()),
            journal: Some(format!(
                "{}:{}",
                hostname(),
                journal.dir().join(crate::journal::JOURNAL_FILE).display()
            )),
            ..RunStatus::default()
        };
        let gate = GateState::new(engine, plan, opts, &prior, stop.clone());
        let applied_log = prior.applied_log.clone();
        RunState {
            engine,
            plan,
            opts,
            namespace,
            journal,
            events,
            stop_rx: stop.subscribe(),
            stop,
            prior,
            gate,
            mirror: None,
            status,
            mutations_applied: 0,
            reports: Vec::new(),
            applied_log,
            step_client: None,
        }
    }

    fn record(&self, record: Record) -> Result<(), EngineError> {
        self.journal.append(record)
    }

    fn set_step_phase(&mut self, step: &str, phase: StepPhase, error: Option<String>) {
        if let Some(s) = self.status.steps.iter_mut().find(|s| s.name == step) {
            s.phase = phase;
            s.error = error;
        }
        self.push_mirror();
    }

    fn push_mirror(&self) {
        if let Some(mirror) = &self.mirror {
            mirror.push(self.status.clone());
        }
    }

    fn context(&self, step: &PlannedStep, deadline: Instant) -> ActionContext {
        ActionContext {
            client: self
                .step_client
                .clone()
                .unwrap_or_else(|| self.engine.client.clone()),
            run_id: self.plan.run_id.clone(),
            step: step.name.clone(),
            default_namespace: self.namespace.clone(),
            http: self.engine.http.clone(),
            prometheus_url: self.opts.prometheus_url.clone(),
            call_timeout: self.opts.call_timeout,
            verify_timeout: deadline.saturating_duration_since(Instant::now()),
            playbook: self.plan.playbook.clone(),
            notifier: self.gate.notifier.clone(),
            state_dir: Some(self.opts.state_dir.clone()),
            observed: self.gate.observed.clone(),
        }
    }

    /// Runs every step. Returns the outcome and its reason.
    pub async fn execute(&mut self) -> Result<(Outcome, Option<String>), EngineError> {
        let plan: &'a Plan = self.plan;
        let total = plan.steps.len();
        let mut failures: Vec<String> = Vec::new();
        for (index, step) in plan.steps.iter().enumerate() {
            if let Some(reason) = self.stop.reason() {
                self.fill_not_run(index);
                return Ok(self.stopped(reason));
            }
            if self.prior.done_steps.contains(&step.name) {
                self.reports.push(report(
                    step,
                    StepResult::DoneEarlier,
                    "done by an earlier process of this run",
                ));
                self.events.send(EngineEvent::StepFinished {
                    step: step.name.clone(),
                    result: StepResult::DoneEarlier,
                });
                continue;
            }
            self.events.send(EngineEvent::StepStarted {
                index,
                total,
                step: step.name.clone(),
                action: step.action.name().to_string(),
            });
            self.set_step_phase(&step.name, StepPhase::Running, None);
            self.reports.push(report(step, StepResult::NotRun, ""));
            let span = tracing::info_span!("step", run = %self.plan.run_id, step = %step.name);
            let result = self.run_step(step).instrument(span).await?;
            match result {
                Ok(StepEnd::Verified) => {
                    self.record(Record::StepVerified {
                        step: step.name.clone(),
                    })?;
                    self.finish_step(step, StepResult::Verified, None).await;
                }
                Ok(StepEnd::AlreadySatisfied(summary)) => {
                    self.record(Record::StepAlreadySatisfied {
                        step: step.name.clone(),
                        summary: summary.clone(),
                    })?;
                    if let Some(r) = self.reports.last_mut() {
                        r.summary = summary;
                    }
                    self.finish_step(step, StepResult::AlreadySatisfied, None)
                        .await;
                }
                Ok(StepEnd::Stopped(reason)) => {
                    self.set_step_phase(&step.name, StepPhase::Stopped, None);
                    self.fill_not_run(index + 1);
                    return Ok(self.stopped(reason));
                }
                Ok(StepEnd::Refused(reason)) => {
                    self.set_step_phase(&step.name, StepPhase::Refused, Some(reason.clone()));
                    self.fill_not_run(index + 1);
                    return Ok((Outcome::Refused, Some(reason)));
                }
                Err(failure) => {
                    tracing::warn!(run = %self.plan.run_id, step = %step.name, category = %failure.category, error = %failure.error, "step failed");
                    self.record(Record::StepFailed {
                        step: step.name.clone(),
                        error: failure.error.clone(),
                        category: failure.category.clone(),
                    })?;
                    let result = StepResult::Failed {
                        error: failure.error.clone(),
                        category: failure.category.clone(),
                    };
                    self.finish_step(step, result, Some(failure.error.clone()))
                        .await;
                    let reason = format!("step {} failed: {}", step.name, failure.error);
                    // An action that refuses before this run wrote anything (a zone fail-out
                    // guard, an approval gate's refusal) refuses the run: nothing to undo.
                    if failure.refused
                        && self.mutations_applied == 0
                        && self.applied_log.is_empty()
                        && step.on_failure != OnFailure::Continue
                    {
                        self.fill_not_run(index + 1);
                        return Ok((Outcome::Refused, Some(reason)));
                    }
                    match step.on_failure {
                        OnFailure::Continue => failures.push(reason),
                        OnFailure::Abort => {
                            self.fill_not_run(index + 1);
                            return Ok((Outcome::Failed, Some(reason)));
                        }
                        OnFailure::Undo => {
                            self.fill_not_run(index + 1);
                            let undone = self.undo().await?;
                            return Ok((Outcome::Undone, Some(format!("{reason}; {undone}"))));
                        }
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok((Outcome::Succeeded, None))
        } else {
            Ok((
                Outcome::Failed,
                Some(format!("{} (onFailure: continue)", failures.join("; "))),
            ))
        }
    }

    fn stopped(&self, reason: StopReason) -> (Outcome, Option<String>) {
        match &reason {
            StopReason::Interrupted { .. } | StopReason::Daemon(_) => (
                Outcome::Interrupted,
                Some(format!(
                    "{reason}; resume with: ripcord run --resume {}",
                    self.plan.run_id
                )),
            ),
            StopReason::Guard { .. } => (Outcome::Stopped, Some(reason.to_string())),
        }
    }

    fn fill_not_run(&mut self, from: usize) {
        for step in self.plan.steps.iter().skip(from) {
            if !self.reports.iter().any(|r| r.name == step.name) {
                self.reports.push(report(step, StepResult::NotRun, ""));
            }
        }
    }

    async fn finish_step(&mut self, step: &PlannedStep, result: StepResult, error: Option<String>) {
        let phase = match &result {
            StepResult::Verified => StepPhase::Verified,
            StepResult::AlreadySatisfied => StepPhase::AlreadySatisfied,
            StepResult::Failed { .. } => StepPhase::Failed,
            _ => StepPhase::Pending,
        };
        self.set_step_phase(&step.name, phase, error);
        if let Some(r) = self.reports.iter_mut().rev().find(|r| r.name == step.name) {
            r.result = result.clone();
        }
        self.events.send(EngineEvent::StepFinished {
            step: step.name.clone(),
            result: result.clone(),
        });
        if self.gate.passed {
            let text = match &result {
                StepResult::Verified => format!("step {} verified", step.name),
                StepResult::AlreadySatisfied => format!("step {} already satisfied", step.name),
                StepResult::Failed { error, .. } => format!("step {} failed: {error}", step.name),
                _ => format!("step {}", step.name),
            };
            let deliveries = self
                .gate
                .notify_step(self.plan, &self.opts.who, &text)
                .await;
            if let Some(record) = deliveries {
                let _ = self.record(record);
            }
        }
    }

    /// One step: the diff/apply/verify rounds.
    async fn run_step(
        &mut self,
        step: &PlannedStep,
    ) -> Result<Result<StepEnd, StepFailure>, EngineError> {
        let built = match &self.engine.action_factory {
            Some(factory) => Ok(factory(step)),
            None => actions::build(&step.action),
        };
        let action = match built {
            Ok(a) => a,
            Err(err) => return Ok(Err(StepFailure::from_action(&err))),
        };
        self.step_client = match &step.context {
            None => None,
            Some(context) => match self.engine.client_for_context(context).await {
                Ok(client) => Some(client),
                Err(err) => return Ok(Err(StepFailure::new(err.category(), err.to_string()))),
            },
        };
        if matches!(
            step.action,
            crate::playbook::catalog::Action::GateApproval(_)
        ) {
            self.ensure_mirror();
        }
        let deadline = Instant::now() + step.timeout.0;
        let verify_when_satisfied = action.verify_when_satisfied();
        let mut applied_in_step: Vec<Applied> =
            self.prior.applied.remove(&step.name).unwrap_or_default();
        let mut pending: Vec<Mutation> = self.prior.pending.remove(&step.name).unwrap_or_default();
        let mut unverified = !applied_in_step.is_empty();
        let mut conflicts = 0u32;
        // What the last StepPlanned recorded (mutation ids and diffs), to journal a re-diff
        // only when it differs.
        let mut last_planned: Option<Vec<(String, String)>> = None;

        // Resumed after the writes of a round went through but before their verify: finish
        // that verify first (what remains of a ramp step's pause, a batch's readiness), so the
        // next round never starts early. Writes whose result was never journaled are settled
        // by the re-diff below instead.
        if unverified && pending.is_empty() {
            match self
                .verify(action.as_ref(), step, &applied_in_step, deadline)
                .await
            {
                Ok(None) => unverified = false,
                Ok(Some(reason)) => return Ok(Ok(StepEnd::Stopped(reason))),
                Err(f) => return Ok(Err(f)),
            }
        }

        for _round in 0..MAX_ROUNDS {
            // A stop request is honoured after the diff: a step whose change is complete ends
            // verified, one with writes left stops before them.
            let diff = match self
                .diff_with_retries(action.as_ref(), step, deadline)
                .await
            {
                Ok(d) => d,
                Err(DiffHalt::Failed(f)) => return Ok(Err(f)),
                Err(DiffHalt::Stopped(reason)) => return Ok(Ok(StepEnd::Stopped(reason))),
            };
            let planned: Vec<(String, String)> = diff
                .mutations
                .iter()
                .map(|m| (m.id.clone(), m.diff.clone()))
                .collect();
            if last_planned.as_ref() != Some(&planned) {
                last_planned = Some(planned);
                self.record(Record::StepPlanned {
                    step: step.name.clone(),
                    action: step.action.name().to_string(),
                    summary: diff.summary.clone(),
                    diff: diff
                        .mutations
                        .iter()
                        .map(|m| format!("{} ({})\n{}", m.description, m.target, m.diff))
                        .collect::<Vec<_>>()
                        .join("\n"),
                })?;
                let previews: Vec<MutationPreview> =
                    diff.mutations.iter().map(MutationPreview::from).collect();
                if let Some(r) = self.reports.last_mut() {
                    r.summary = diff.summary.clone();
                    if r.mutations.is_empty() {
                        r.mutations = previews.clone();
                    }
                }
                self.events.send(EngineEvent::StepDiff {
                    step: step.name.clone(),
                    summary: diff.summary.clone(),
                    mutations: previews,
                });
            }
            if let Some(p) = diff.progress.clone() {
                self.events.send(EngineEvent::Progress {
                    step: step.name.clone(),
                    what: p.what,
                    done: p.done,
                    total: p.total,
                });
            }

            // Fleet-guarded writes (zone cordons) go out only under the fleet lock, from a
            // diff computed after taking it; let go once a diff holds none (engine/guards.rs).
            match self
                .gate
                .fleet_gate(
                    action.fleet_guarded(&diff),
                    self.plan,
                    self.opts,
                    &self.journal,
                    &self.events,
                )
                .await
            {
                Ok(super::guards::FleetGate::Proceed) => {}
                Ok(super::guards::FleetGate::Taken) => continue,
                Ok(super::guards::FleetGate::Refused(reason)) => {
                    return Ok(Ok(StepEnd::Refused(reason)));
                }
                Err(GateError::Engine(err)) => return Err(err),
                Err(err @ GateError::LockUnavailable { category, .. }) => {
                    return Ok(Err(StepFailure::new(
                        &format!("lock-{category}"),
                        err.to_string(),
                    )));
                }
            }
            if diff.is_satisfied() {
                // Writes an earlier process sent but never journaled as applied: the observed
                // state shows they took effect.
                for m in pending.drain(..) {
                    let applied = Applied {
                        id: m.id.clone(),
                        target: m.target.clone(),
                        resource_version_after: None,
                    };
                    self.record_applied(step, &m, &applied, true)?;
                    applied_in_step.push(applied);
                    unverified = true;
                }
                if unverified || verify_when_satisfied {
                    match self
                        .verify(action.as_ref(), step, &applied_in_step, deadline)
                        .await
                    {
                        Ok(None) => {
                            self.record_acknowledgement(step, action.as_ref())?;
                            return Ok(Ok(StepEnd::Verified));
                        }
                        Ok(Some(reason)) => return Ok(Ok(StepEnd::Stopped(reason))),
                        Err(f) => return Ok(Err(f)),
                    }
                }
                if applied_in_step.is_empty() {
                    return Ok(Ok(StepEnd::AlreadySatisfied(diff.summary)));
                }
                return Ok(Ok(StepEnd::Verified));
            }

            if let Some(reason) = self.stop.reason() {
                return Ok(Ok(StepEnd::Stopped(reason)));
            }
            if !self.gate.passed {
                let first = &diff.mutations[0];
                match self.pass_gate(first).await {
                    Err(GateError::Engine(err)) => return Err(err),
                    Err(err @ GateError::LockUnavailable { category, .. }) => {
                        return Ok(Err(StepFailure::new(
                            &format!("lock-{category}"),
                            err.to_string(),
                        )));
                    }
                    Ok(Some(refusal)) => return Ok(Ok(StepEnd::Refused(refusal))),
                    // The world may have moved while we took the lock: diff again, unless
                    // the writes carry the diff's resourceVersion as a precondition (a change
                    // since is a 409, answered by a fresh diff below).
                    Ok(None) if action.writes_are_conditional() => {}
                    Ok(None) => continue,
                }
            }

            // This process writes the step's mutations now; intents of an earlier process
            // are either among them (same id) or superseded by them.
            pending.clear();
            let mut conflict = false;
            // Independent writes (the action says how many) go out together: their intents are
            // journaled first with one fsync, then they are sent at once, and each is journaled
            // as applied when it returns. One at a time otherwise, in order.
            for chunk in diff.mutations.chunks(action.parallel_mutations().max(1)) {
                if let Some(reason) = self.stop.reason() {
                    return Ok(Ok(StepEnd::Stopped(reason)));
                }
                self.journal.append_all(
                    chunk
                        .iter()
                        .map(|m| Record::MutationIntended {
                            step: step.name.clone(),
                            mutation: m.clone(),
                        })
                        .collect(),
                )?;
                crash_point("after-intent");
                let results = futures::future::join_all(
                    chunk
                        .iter()
                        .map(|m| self.apply_with_retries(action.as_ref(), step, m, deadline)),
                )
                .await;
                let mut failure = None;
                let mut stopped = None;
                for (m, result) in chunk.iter().zip(results) {
                    match result {
                        Ok(applied) => {
                            self.record_applied(step, m, &applied, false)?;
                            tracing::info!(run = %self.plan.run_id, step = %step.name, mutation = %m.id, "mutation applied");
                            self.mutations_applied += 1;
                            applied_in_step.push(applied);
                            unverified = true;
                            self.events.send(EngineEvent::MutationApplied {
                                step: step.name.clone(),
                                description: m.description.clone(),
                            });
                            crash_point("after-apply");
                        }
                        // The writes that went through are journaled above; the rest keep
                        // their intents, which a re-diff (or a resume) settles.
                        Err(ApplyError::Conflict(err)) => {
                            if failure.is_none() && !conflict {
                                conflicts += 1;
                                if conflicts >= step.retries.attempts.max(1) {
                                    failure = Some(StepFailure::from_action(&err));
                                } else {
                                    tracing::info!(run = %self.plan.run_id, step = %step.name, "conflict: diffing again");
                                    conflict = true;
                                }
                            }
                        }
                        Err(ApplyError::Failed(f)) => {
                            failure.get_or_insert(f);
                        }
                        Err(ApplyError::Stopped(reason)) => {
                            stopped.get_or_insert(reason);
                        }
                    }
                }
                if let Some(f) = failure {
                    return Ok(Err(f));
                }
                if let Some(reason) = stopped {
                    return Ok(Ok(StepEnd::Stopped(reason)));
                }
                if conflict {
                    break;
                }
            }
            if conflict {
                continue;
            }
            if unverified {
                match self
                    .verify(action.as_ref(), step, &applied_in_step, deadline)
                    .await
                {
                    // The verified write is the desired state: no second diff.
                    Ok(None) if action.settled_by_verify() => {
                        self.record_acknowledgement(step, action.as_ref())?;
                        return Ok(Ok(StepEnd::Verified));
                    }
                    Ok(None) => unverified = false,
                    Ok(Some(reason)) => return Ok(Ok(StepEnd::Stopped(reason))),
                    Err(f) => return Ok(Err(f)),
                }
            }
        }
        Ok(Err(StepFailure::new(
            "not-converging",
            format!("step did not converge after {MAX_ROUNDS} diff/apply rounds"),
        )))
    }

    /// Journals `m` as applied (`recovered`: an earlier process sent it, the re-diff shows it
    /// took effect) and adds it to the run's status and the applied log.
    fn record_applied(
        &mut self,
        step: &PlannedStep,
        m: &Mutation,
        applied: &Applied,
        recovered: bool,
    ) -> Result<(), EngineError> {
        self.record(Record::MutationApplied {
            step: step.name.clone(),
            mutation_id: m.id.clone(),
            applied: applied.clone(),
            resource_version_before: m.resource_version.clone(),
            inverse: m.inverse.clone(),
            recovered,
        })?;
        self.add_mutation_status(&step.name, m);
        self.applied_log.push((step.name.clone(), m.clone()));
        Ok(())
    }

    /// Journals the ACK the step's action accepted (`gate.approval`) as an `Approved` record,
    /// once per step: a resumed run whose journal already has it (the process died between
    /// the record and `StepVerified`) does not journal it again.
    fn record_acknowledgement(
        &self,
        step: &PlannedStep,
        action: &dyn Action,
    ) -> Result<(), EngineError> {
        let Some(ack) = action.acknowledgement() else {
            return Ok(());
        };
        let path = self.journal.dir().join(crate::journal::JOURNAL_FILE);
        match crate::journal::read(&path) {
            Ok((entries, _torn)) => {
                if entries.iter().any(
                    |e| matches!(&e.record, Record::Approved { step: s, .. } if *s == step.name),
                ) {
                    tracing::info!(run = %self.plan.run_id, step = %step.name, by = %ack.approval.by, "ACK already journaled");
                    return Ok(());
                }
            }
            Err(err) => {
                tracing::warn!(run = %self.plan.run_id, step = %step.name, error = %err, "cannot read the journal back; journaling the ACK");
            }
        }
        self.record(ack.record())?;
        self.events.send(EngineEvent::Approved {
            step: step.name.clone(),
            by: ack.approval.by.clone(),
            at: ack.approval.at.clone(),
            source: ack.source,
        });
        crash_point("after-approved");
        Ok(())
    }

    fn add_mutation_status(&mut self, step: &str, m: &Mutation) {
        if let Some(s) = self.status.steps.iter_mut().find(|s| s.name == step) {
            s.mutations
                .push(MutationStatus::new(&m.id, m.target.to_string(), &m.inverse));
        }
        self.push_mirror();
    }

    /// `diff`, retried on retryable errors within the step's time ([`retry::step`]); a stop
    /// request cancels it at once (wherever it waits: a restart waiting for room for its next
    /// batch, a backoff).
    async fn diff_with_retries(
        &self,
        action: &dyn Action,
        step: &PlannedStep,
        deadline: Instant,
    ) -> Result<Diff, DiffHalt> {
        self.with_retries(
            step,
            deadline,
            "diff",
            DiffHalt::Stopped,
            DiffHalt::Failed,
            || self.diff_once(action, step, deadline),
        )
        .await
    }

    /// Calls `op` (one diff, apply or verify: `what`) until it succeeds, halts, or fails with
    /// an error that is not retryable or when the step's [`retry::step`] policy is spent; a
    /// stop request ends a backoff at once (`stopped`). An action's error becomes `failed`.
    async fn with_retries<T, H, Fut>(
        &self,
        step: &PlannedStep,
        deadline: Instant,
        what: &'static str,
        stopped: impl FnOnce(StopReason) -> H,
        failed: impl FnOnce(StepFailure) -> H,
        op: impl FnMut() -> Fut,
    ) -> Result<T, H>
    where
        Fut: std::future::Future<Output = Result<T, Attempt<H>>>,
    {
        let mut attempt = 0u32;
        let result = retry::retry(
            &self.retry_policy(step, deadline),
            op,
            Attempt::is_retryable,
            self.stop_signal(),
            |err, _| {
                tracing::info!(run = %self.plan.run_id, step = %step.name, attempt, phase = what, error = %err, "step call failed, retrying");
                attempt += 1;
            },
        )
        .await;
        result.map_err(|end| match end {
            Stopped::Cancelled => stopped(self.stop_reason()),
            Stopped::Failed(Attempt::Halt(halt)) => halt,
            Stopped::Failed(Attempt::Action(err)) => failed(StepFailure::from_action(&err)),
        })
    }

    /// One `diff` within the step's time: a stop request lets a diff that is only reading
    /// finish for [`STOP_GRACE`] and cancels one that waits.
    async fn diff_once(
        &self,
        action: &dyn Action,
        step: &PlannedStep,
        deadline: Instant,
    ) -> Result<Diff, Attempt<DiffHalt>> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Attempt::Halt(DiffHalt::Failed(timeout_failure(
                step, "diff",
            ))));
        }
        let ctx = self.context(step, deadline);
        // A diff that is only reading still finishes (a step whose change is done then ends
        // verified); one that waits is cancelled.
        let outcome = self
            .unless_stopped(tokio::time::timeout(remaining, action.diff(&ctx)))
            .await
            .map_err(|reason| Attempt::Halt(DiffHalt::Stopped(reason)))?;
        match outcome {
            Ok(result) => result.map_err(Attempt::Action),
            Err(_) => Err(Attempt::Halt(DiffHalt::Failed(timeout_failure(
                step, "diff",
            )))),
        }
    }

    /// Awaits `fut`; after a stop request it may still finish for [`STOP_GRACE`], then it is
    /// dropped and the request's reason returned.
    async fn unless_stopped<F: std::future::Future>(
        &self,
        fut: F,
    ) -> Result<F::Output, StopReason> {
        let mut fut = std::pin::pin!(fut);
        tokio::select! {
            r = &mut fut => Ok(r),
            reason = stop_requested(self.stop_rx.clone()) => {
                tokio::time::timeout(STOP_GRACE, &mut fut).await.map_err(|_| reason)
            }
        }
    }

    /// The step's retry policy for the time left until `deadline`.
    fn retry_policy(&self, step: &PlannedStep, deadline: Instant) -> retry::Policy {
        retry::step(
            &step.retries,
            deadline.saturating_duration_since(Instant::now()),
        )
    }

    /// The `cancel` signal of [`retry::retry`]: this run's stop request.
    fn stop_signal(
        &self,
    ) -> impl Fn() -> futures::future::BoxFuture<'static, StopReason> + 'static {
        let rx = self.stop_rx.clone();
        move || Box::pin(stop_requested(rx.clone()))
    }

    /// Why the run was asked to stop (called once a stop request cut a wait short).
    fn stop_reason(&self) -> StopReason {
        self.stop
            .reason()
            .unwrap_or_else(|| StopReason::Interrupted {
                by: "a stop request".into(),
            })
    }

    /// `apply`, retried on retryable errors within the step's time ([`retry::step`]). A stop
    /// request lets a write already under way finish for [`STOP_GRACE`], then drops it (a
    /// drain's eviction retrying against a PodDisruptionBudget), and ends a backoff at once:
    /// its intent is journaled, so a resume's re-diff tells whether it took effect. A 409
    /// conflict is not retried here: the step loop re-diffs.
    async fn apply_with_retries(
        &self,
        action: &dyn Action,
        step: &PlannedStep,
        mutation: &Mutation,
        deadline: Instant,
    ) -> Result<Applied, ApplyError> {
        self.with_retries(
            step,
            deadline,
            "apply",
            ApplyError::Stopped,
            ApplyError::Failed,
            || self.apply_once(action, step, mutation, deadline),
        )
        .await
    }

    /// One `apply` within the step's time (see [`Self::apply_with_retries`]).
    async fn apply_once(
        &self,
        action: &dyn Action,
        step: &PlannedStep,
        mutation: &Mutation,
        deadline: Instant,
    ) -> Result<Applied, Attempt<ApplyError>> {
        if let Some(reason) = self.stop.reason() {
            return Err(Attempt::Halt(ApplyError::Stopped(reason)));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Attempt::Halt(ApplyError::Failed(timeout_failure(
                step, "apply",
            ))));
        }
        let ctx = self.context(step, deadline);
        let marked = crate::k8s::with_mutation_marker(
            &self.plan.run_id,
            &step.name,
            action.apply(&ctx, mutation),
        );
        let outcome = self
            .unless_stopped(tokio::time::timeout(remaining, marked))
            .await
            .map_err(|reason| {
                tracing::info!(run = %self.plan.run_id, step = %step.name, mutation = %mutation.id, "write dropped by a stop request; its intent stays journaled");
                Attempt::Halt(ApplyError::Stopped(reason))
            })?;
        match outcome {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(err)) if is_conflict(&err) => Err(Attempt::Halt(ApplyError::Conflict(err))),
            Ok(Err(err)) => Err(Attempt::Action(err)),
            Err(_) => Err(Attempt::Halt(ApplyError::Failed(timeout_failure(
                step, "apply",
            )))),
        }
    }

    /// Waits for `verify` (bounded by the step's remaining time), retried on retryable errors
    /// ([`retry::step`]); a stop request cancels the wait (verify only reads, so this is a
    /// safe point). `Ok(Some(_))`: stopped.
    async fn verify(
        &mut self,
        action: &dyn Action,
        step: &PlannedStep,
        applied: &[Applied],
        deadline: Instant,
    ) -> Result<Option<StopReason>, StepFailure> {
        let this = &*self;
        let verified = this
            .with_retries(
                step,
                deadline,
                "verify",
                DiffHalt::Stopped,
                DiffHalt::Failed,
                || this.verify_once(action, step, applied, deadline),
            )
            .await;
        match verified {
            Ok(()) => Ok(None),
            Err(DiffHalt::Stopped(reason)) => Ok(Some(reason)),
            Err(DiffHalt::Failed(failure)) => Err(failure),
        }
    }

    /// One `verify` within the step's time (see [`Self::verify`]).
    async fn verify_once(
        &self,
        action: &dyn Action,
        step: &PlannedStep,
        applied: &[Applied],
        deadline: Instant,
    ) -> Result<(), Attempt<DiffHalt>> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Attempt::Halt(DiffHalt::Failed(timeout_failure(
                step, "verify",
            ))));
        }
        self.events.send(EngineEvent::Verifying {
            step: step.name.clone(),
            timeout: remaining,
        });
        let ctx = self.context(step, deadline);
        // A verify that is only reading the result back still finishes (the step is then
        // verified); one that waits is cancelled: verify only reads.
        let result = self
            .unless_stopped(tokio::time::timeout(
                remaining + VERIFY_GRACE,
                action.verify(&ctx, applied),
            ))
            .await
            .map_err(|reason| Attempt::Halt(DiffHalt::Stopped(reason)))?;
        match result {
            Ok(r) => r.map_err(Attempt::Action),
            Err(_) => Err(Attempt::Halt(DiffHalt::Failed(timeout_failure(
                step, "verify",
            )))),
        }
    }

    /// Reverts this run's applied mutations with `MergePatch` inverses, newest first.
    /// Returns a one-line summary.
    async fn undo(&mut self) -> Result<String, EngineError> {
        let log: Vec<(String, Mutation)> = self.applied_log.iter().rev().cloned().collect();
        let (mut reverted, mut failed, mut skipped) = (0usize, 0usize, 0usize);
        for (step_name, m) in log {
            let Inverse::MergePatch { patch, .. } = &m.inverse else {
                if let Inverse::NotReverted { reason, .. } = &m.inverse {
                    skipped += 1;
                    self.record(Record::UndoApplied {
                        step: step_name.clone(),
                        mutation_id: m.id.clone(),
                        ok: false,
                        error: Some(format!("not reverted automatically: {reason}")),
                    })?;
                }
                continue;
            };
            let undo_step = PlannedStep {
                name: format!("undo-{step_name}"),
                action: catalog::Action::ObjectPatch(ObjectPatch {
                    api_version: m.target.api_version.clone(),
                    kind: m.target.kind.clone(),
                    namespace: m.target.namespace.clone(),
                    name: m.target.name.clone(),
                    patch: patch.clone(),
                }),
                timeout: crate::playbook::Duration::from_secs(60),
                retries: crate::playbook::Retries::default(),
                on_failure: OnFailure::Abort,
                context: None,
            };
            let result = self.revert_one(&undo_step).await?;
            match result {
                Ok(()) => reverted += 1,
                Err(_) => failed += 1,
            }
            self.record(Record::UndoApplied {
                step: step_name.clone(),
                mutation_id: m.id.clone(),
                ok: result.is_ok(),
                error: result.err().map(|f| f.error),
            })?;
        }
        Ok(format!(
            "undo: {reverted} reverted, {failed} failed, {skipped} not revertible automatically"
        ))
    }

    async fn revert_one(
        &mut self,
        step: &PlannedStep,
    ) -> Result<Result<(), StepFailure>, EngineError> {
        let action = match actions::build(&step.action) {
            Ok(a) => a,
            Err(err) => return Ok(Err(StepFailure::from_action(&err))),
        };
        let deadline = Instant::now() + step.timeout.0;
        let diff = match self
            .diff_with_retries(action.as_ref(), step, deadline)
            .await
        {
            Ok(d) => d,
            Err(DiffHalt::Failed(f)) => return Ok(Err(f)),
            Err(DiffHalt::Stopped(reason)) => {
                return Ok(Err(StepFailure::new(
                    "interrupted",
                    format!("undo {reason}"),
                )));
            }
        };
        for m in &diff.mutations {
            self.record(Record::MutationIntended {
                step: step.name.clone(),
                mutation: m.clone(),
            })?;
            match self
                .apply_with_retries(action.as_ref(), step, m, deadline)
                .await
            {
                Ok(applied) => {
                    self.record(Record::MutationApplied {
                        step: step.name.clone(),
                        mutation_id: m.id.clone(),
                        applied,
                        resource_version_before: m.resource_version.clone(),
                        inverse: m.inverse.clone(),
                        recovered: false,
                    })?;
                    self.mutations_applied += 1;
                }
                Err(ApplyError::Conflict(err)) => return Ok(Err(StepFailure::from_action(&err))),
                Err(ApplyError::Failed(f)) => return Ok(Err(f)),
                Err(ApplyError::Stopped(reason)) => {
                    return Ok(Err(StepFailure::new(
                        "interrupted",
                        format!("undo {reason}"),
                    )));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Before the first mutation: lock, pre-checks, notification, snapshot, mirror.
    /// `Some(reason)`: refused.
    async fn pass_gate(&mut self, first: &Mutation) -> Result<Option<String>, GateError> {
        let refusal = self
            .gate
            .pass(
                self.plan,
                self.opts,
                &self.namespace,
                first,
                &self.journal,
                &self.events,
            )
            .await?;
        if refusal.is_none() {
            self.ensure_mirror();
        }
        Ok(refusal)
    }

    /// Starts the `Run` mirror unless it runs already: after the first-mutation gate, or
    /// before a `gate.approval` waits (so that an ACK given on the `Run` from another machine
    /// has a `Run` to go to).
    fn ensure_mirror(&mut self) {
        if self.mirror.is_some() {
            return;
        }
        self.mirror = Some(Mirror::start(
            self.engine.client.clone(),
            self.namespace.clone(),
            self.plan,
            self.opts,
            self.status.clone(),
            self.journal.clone(),
            self.events.clone(),
            self.engine.run_crd.clone(),
        ));
    }

    /// After the steps: waits (bounded) for the broad snapshot and releases the lock (also a
    /// lock left behind by an earlier, crashed process of this run).
    pub async fn shutdown(&mut self) {
        let stale_lock = self.prior.gate_passed;
        self.gate
            .finish(
                self.plan,
                self.opts,
                &self.namespace,
                stale_lock,
                &self.journal,
                &self.events,
            )
            .await;
    }

    /// Sends the final notification (when the run did something or did not succeed).
    pub async fn notify_finished(
        &mut self,
        outcome: Outcome,
        reason: Option<&str>,
        journal: &std::path::Path,
    ) {
        if let Some(record) = self
            .gate
            .notify_finished(self.plan, &self.opts.who, outcome, reason, journal)
            .await
        {
            let _ = self.record(record);
        }
    }

    /// Writes the final state of the `Run` mirror (bounded wait).
    pub async fn mirror_finish(&mut self, outcome: Outcome, reason: Option<String>) {
        if let Some(mirror) = self.mirror.take() {
            self.status.phase = RunPhase::Finished;
            self.status.outcome = Some(outcome.as_str().to_string());
            self.status.message = reason;
            // Said in a field, not only in the message: the next leader takes over what a
            // daemon stopped itself.
            self.status.stopped_by = match (outcome, self.stop.reason()) {
                (Outcome::Interrupted, Some(StopReason::Daemon(stop))) => {
                    Some(StoppedBy::Daemon(stop))
                }
                _ => None,
            };
            self.status.finished_at = Some(jiff::Timestamp::now().to_string());
            mirror.finish(self.status.clone()).await;
        }
    }
}

enum ApplyError {
    Conflict(ActionError),
    Failed(StepFailure),
    /// A stop request came first; the write's intent stays journaled.
    Stopped(StopReason),
}

fn is_conflict(err: &ActionError) -> bool {
    matches!(err, ActionError::Api { source: kube::Error::Api(status), .. } if status.code == 409)
}

fn timeout_failure(step: &PlannedStep, phase: &str) -> StepFailure {
    StepFailure::new(
        "timeout",
        format!(
            "step {} timed out during {phase} (timeout {:?})",
            step.name, step.timeout.0
        ),
    )
}

fn report(step: &PlannedStep, result: StepResult, summary: &str) -> StepReport {
    StepReport {
        name: step.name.clone(),
        action: step.action.name().to_string(),
        result,
        summary: summary.to_string(),
        mutations: Vec::new(),
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A dry run: each step's diff and inverse, nothing written (no journal either).
pub(crate) async fn dry_run(
    engine: &Engine,
    plan: &Plan,
    opts: &RunOptions,
    namespace: &str,
    events: &Events,
    started: Instant,
) -> RunOutcome {
    events.send(EngineEvent::RunStarted {
        run_id: plan.run_id.clone(),
        journal: None,
        steps: plan.steps.len(),
        resumed: false,
    });
    let mut reports = Vec::new();
    let mut failed = None;
    let mut refused = false;
    for (index, step) in plan.steps.iter().enumerate() {
        events.send(EngineEvent::StepStarted {
            index,
            total: plan.steps.len(),
            step: step.name.clone(),
            action: step.action.name().to_string(),
        });
        let deadline = Instant::now() + step.timeout.0;
        let client = match &step.context {
            None => Ok(engine.client.clone()),
            Some(context) => engine
                .client_for_context(context)
                .await
                .map_err(|err| StepFailure::new(err.category(), err.to_string())),
        };
        let ctx = ActionContext {
            client: client.clone().unwrap_or_else(|_| engine.client.clone()),
            run_id: plan.run_id.clone(),
            step: step.name.clone(),
            default_namespace: namespace.to_string(),
            http: engine.http.clone(),
            prometheus_url: opts.prometheus_url.clone(),
            call_timeout: opts.call_timeout,
            verify_timeout: step.timeout.0,
            playbook: plan.playbook.clone(),
            notifier: None,
            state_dir: None,
            observed: actions::Observed::default(),
        };
        let diff = match client.and_then(|_| {
            actions::build(&step.action).map_err(|err| StepFailure::from_action(&err))
        }) {
            Ok(action) => {
                // The dry run retries every failure (a timeout too) within the step's time;
                // nothing can stop it but the bound.
                let policy = retry::step(
                    &step.retries,
                    deadline.saturating_duration_since(Instant::now()),
                );
                let diff_once = || async {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(remaining, action.diff(&ctx)).await {
                        Ok(r) => r.map_err(|e| StepFailure::from_action(&e)),
                        Err(_) => Err(timeout_failure(step, "diff")),
                    }
                };
                retry::retry(&policy, diff_once, |_| true, retry::never(), |_, _| {})
                    .await
                    .map_err(|stopped| match stopped {
                        Stopped::Failed(failure) => failure,
                        Stopped::Cancelled => timeout_failure(step, "diff"),
                    })
            }
            Err(failure) => Err(failure),
        };
        let step_report = match diff {
            Ok(diff) => {
                let previews: Vec<MutationPreview> =
                    diff.mutations.iter().map(MutationPreview::from).collect();
                events.send(EngineEvent::StepDiff {
                    step: step.name.clone(),
                    summary: diff.summary.clone(),
                    mutations: previews.clone(),
                });
                let result = if diff.is_satisfied() && !action_verifies(step) {
                    StepResult::AlreadySatisfied
                } else {
                    StepResult::WouldApply
                };
                StepReport {
                    name: step.name.clone(),
                    action: step.action.name().to_string(),
                    result,
                    summary: diff.summary,
                    mutations: previews,
                }
            }
            Err(f) => {
                refused |= f.refused && failed.is_none();
                failed.get_or_insert_with(|| format!("step {} failed: {}", step.name, f.error));
                StepReport {
                    name: step.name.clone(),
                    action: step.action.name().to_string(),
                    result: StepResult::Failed {
                        error: f.error,
                        category: f.category,
                    },
                    summary: String::new(),
                    mutations: Vec::new(),
                }
            }
        };
        events.send(EngineEvent::StepFinished {
            step: step.name.clone(),
            result: step_report.result.clone(),
        });
        reports.push(step_report);
    }
    let outcome = if refused {
        Outcome::Refused
    } else if failed.is_some() {
        Outcome::Failed
    } else {
        Outcome::Succeeded
    };
    events.send(EngineEvent::Finished {
        outcome,
        reason: failed.clone(),
    });
    RunOutcome {
        run_id: plan.run_id.clone(),
        outcome,
        reason: failed,
        dry_run: true,
        duration: started.elapsed(),
        dir: crate::journal::run_dir(&opts.state_dir, &plan.run_id),
        journal: None,
        mutations_applied: 0,
        steps: reports,
    }
}

/// True when the step's action does its work in `verify` (dry run: it "would" run).
fn action_verifies(step: &PlannedStep) -> bool {
    actions::build(&step.action)
        .map(|a| a.verify_when_satisfied())
        .unwrap_or(false)
}
