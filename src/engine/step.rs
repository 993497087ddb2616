//! The step loop: diff → (first-mutation gate) → write-ahead → apply → journal → verify →
//! re-diff, with retries, timeouts, safe points, `onFailure` and undo.
//!
//! A dry run is a [`Mode`] of the same loop: each step's action is built and diffed exactly as
//! in a live run (the same retries, the same stop handling), and the step ends right after its
//! first diff as [`StepEnd::WouldApply`] or [`StepEnd::AlreadySatisfied`] — before the fleet
//! gate, the first-mutation gate and any write. A dry run has no journal, takes no lock, starts
//! no `Run` mirror and notifies nobody: it writes nothing, to disk or to the cluster.

use super::gate::{GateError, GateState};
use super::guards::FleetGate;
use super::mirror::Mirror;
use super::resume::Prior;
use super::{
    Engine, EngineError, EngineEvent, Events, MutationPreview, RunOptions, SharedJournal,
    StepReport, StepResult, StopHandle, StopReason, crash_point,
};
use crate::actions::{
    self, Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, Notice, Notices,
};
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

/// Whether a run writes.
pub(crate) enum Mode {
    /// Journal (write-ahead), lock, mirror, notify, apply and verify.
    Live(SharedJournal),
    /// Diff each step and report what it would do; nothing is written (no journal either).
    DryRun,
}

/// How a step ended when it did not fail.
#[derive(Debug)]
enum StepEnd {
    Verified,
    AlreadySatisfied(String),
    /// Dry run: the step's diff holds writes (or its action works in `verify`).
    WouldApply,
    Stopped(StopReason),
    Refused(String),
}

/// Why a step did not end: it failed (an outcome of the run, subject to `onFailure`), or the
/// engine itself could not go on (the journal failed: nothing may be written any more).
#[derive(Debug)]
enum StepHalt {
    Failed(StepFailure),
    Engine(EngineError),
}

impl From<StepFailure> for StepHalt {
    fn from(failure: StepFailure) -> StepHalt {
        StepHalt::Failed(failure)
    }
}

impl From<EngineError> for StepHalt {
    fn from(err: EngineError) -> StepHalt {
        StepHalt::Engine(err)
    }
}

impl From<GateError> for StepHalt {
    fn from(err: GateError) -> StepHalt {
        match err {
            GateError::Engine(err) => StepHalt::Engine(err),
            err @ GateError::LockUnavailable { category, .. } => StepHalt::Failed(
                StepFailure::new(&format!("lock-{category}"), err.to_string()),
            ),
        }
    }
}

/// What one diff/apply/verify round decided.
enum Round {
    /// Diff again (the fleet lock was just taken, a gate passed, a conflict, a round's writes
    /// verified).
    Again,
    /// The step ended.
    End(StepEnd),
}

/// What a step carries from round to round.
struct StepProgress {
    /// Writes of this step journaled as applied (by this process or an earlier one).
    applied: Vec<Applied>,
    /// Intents of an earlier process without a result, settled by the next diff.
    pending: Vec<Mutation>,
    /// Writes applied whose `verify` has not passed yet.
    unverified: bool,
    /// 409 conflicts so far (each re-diffs, up to the step's attempts).
    conflicts: u32,
    /// What the last `StepPlanned` recorded (mutation ids and diffs), to journal a re-diff
    /// only when it differs.
    last_planned: Option<Vec<(String, String)>>,
}

/// How one chunk of writes ended.
enum ChunkEnd {
    /// Every write of the chunk went through.
    Applied,
    /// A write answered 409: diff again.
    Conflict,
    /// A stop request came first (before the chunk, or while a write was under way).
    Stopped(StopReason),
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
    /// Live (with the run's journal) or a dry run.
    pub mode: Mode,
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
        mode: Mode,
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
            journal: match &mode {
                Mode::Live(journal) => Some(format!(
                    "{}:{}",
                    hostname(),
                    journal.dir().join(crate::journal::JOURNAL_FILE).display()
                )),
                Mode::DryRun => None,
            },
            ..RunStatus::default()
        };
        let gate = GateState::new(engine, plan, opts, &prior, stop.clone());
        let applied_log = prior.applied_log.clone();
        RunState {
            engine,
            plan,
            opts,
            namespace,
            mode,
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

    /// Journals `record` (fsync'd). A dry run journals nothing.
    fn record(&self, record: Record) -> Result<(), EngineError> {
        match &self.mode {
            Mode::Live(journal) => journal.append(record),
            Mode::DryRun => Ok(()),
        }
    }

    fn is_dry_run(&self) -> bool {
        matches!(self.mode, Mode::DryRun)
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
            // A dry run notifies nobody and keeps nothing in a run directory.
            notifier: self.gate.notifier.clone().filter(|_| !self.is_dry_run()),
            state_dir: (!self.is_dry_run()).then(|| self.opts.state_dir.clone()),
            observed: self.gate.observed.clone(),
            notices: notices(&self.events, &step.name),
        }
    }

    /// Runs every step. Returns the outcome and its reason.
    ///
    /// A live run ends at the first failure (unless its step says `onFailure: continue`); a
    /// dry run reports every step and takes its outcome from the first failure.
    pub async fn execute(&mut self) -> Result<(Outcome, Option<String>), EngineError> {
        let plan: &'a Plan = self.plan;
        let total = plan.steps.len();
        let mut failures: Vec<String> = Vec::new();
        let mut dry_run_refused = false;
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
            let span = tracing::info_span!("step", run = %self.plan.run_id, step = %step.name, dry_run = self.is_dry_run());
            let end = match self.run_step(step).instrument(span).await {
                Ok(end) => end,
                Err(StepHalt::Engine(err)) => return Err(err),
                Err(StepHalt::Failed(failure)) => {
                    let reason = format!("step {} failed: {}", step.name, failure.error);
                    let refused = failure.refused;
                    self.step_failed(step, failure).await?;
                    if self.is_dry_run() {
                        // A dry run reports every step; the first failure decides.
                        dry_run_refused |= refused && failures.is_empty();
                        failures.push(reason);
                        continue;
                    }
                    // An action that refuses before this run wrote anything (a zone fail-out
                    // guard, an approval gate's refusal) refuses the run: nothing to undo.
                    if refused
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
                    continue;
                }
            };
            match end {
                StepEnd::Verified => {
                    self.record(Record::StepVerified {
                        step: step.name.clone(),
                    })?;
                    self.finish_step(step, StepResult::Verified, None).await;
                }
                StepEnd::AlreadySatisfied(summary) => {
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
                StepEnd::WouldApply => {
                    self.finish_step(step, StepResult::WouldApply, None).await;
                }
                StepEnd::Stopped(reason) => {
                    self.set_step_phase(&step.name, StepPhase::Stopped, None);
                    self.fill_not_run(index + 1);
                    return Ok(self.stopped(reason));
                }
                StepEnd::Refused(reason) => {
                    self.set_step_phase(&step.name, StepPhase::Refused, Some(reason.clone()));
                    self.fill_not_run(index + 1);
                    return Ok((Outcome::Refused, Some(reason)));
                }
            }
        }
        if self.is_dry_run() {
            let outcome = match failures.first() {
                None => Outcome::Succeeded,
                Some(_) if dry_run_refused => Outcome::Refused,
                Some(_) => Outcome::Failed,
            };
            return Ok((outcome, failures.into_iter().next()));
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

    /// Journals and reports a failed step.
    async fn step_failed(
        &mut self,
        step: &PlannedStep,
        failure: StepFailure,
    ) -> Result<(), EngineError> {
        tracing::warn!(run = %self.plan.run_id, step = %step.name, category = %failure.category, error = %failure.error, dry_run = self.is_dry_run(), "step failed");
        self.record(Record::StepFailed {
            step: step.name.clone(),
            error: failure.error.clone(),
            category: failure.category.clone(),
        })?;
        let error = failure.error.clone();
        let result = StepResult::Failed {
            error: failure.error,
            category: failure.category,
        };
        self.finish_step(step, result, Some(error)).await;
        Ok(())
    }

    fn stopped(&self, reason: StopReason) -> (Outcome, Option<String>) {
        match &reason {
            // Nothing of a dry run to resume.
            StopReason::Interrupted { .. } | StopReason::Daemon(_) if self.is_dry_run() => {
                (Outcome::Interrupted, Some(reason.to_string()))
            }
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
            StepResult::DoneEarlier | StepResult::WouldApply | StepResult::NotRun => {
                StepPhase::Pending
            }
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

    /// One step: its action built, then diff → apply → verify rounds until a diff is empty
    /// and the writes verified. A dry run ends after the first diff.
    async fn run_step(&mut self, step: &PlannedStep) -> Result<StepEnd, StepHalt> {
        let action = self.build_action(step).await?;
        if !self.is_dry_run() && matches!(step.action, catalog::Action::GateApproval(_)) {
            self.ensure_mirror();
        }
        let deadline = Instant::now() + step.timeout.0;
        let applied = self.prior.applied.remove(&step.name).unwrap_or_default();
        let mut progress = StepProgress {
            unverified: !applied.is_empty(),
            applied,
            pending: self.prior.pending.remove(&step.name).unwrap_or_default(),
            conflicts: 0,
            last_planned: None,
        };
        if let Some(end) = self
            .finish_resumed_verify(action.as_ref(), step, deadline, &mut progress)
            .await?
        {
            return Ok(end);
        }
        for _round in 0..MAX_ROUNDS {
            match self
                .round(action.as_ref(), step, deadline, &mut progress)
                .await?
            {
                Round::Again => {}
                Round::End(end) => return Ok(end),
            }
        }
        Err(StepFailure::new(
            "not-converging",
            format!("step did not converge after {MAX_ROUNDS} diff/apply rounds"),
        )
        .into())
    }

    /// The step's action (through the engine's action factory when it has one: the step
    /// loop's unit tests) and, for a step with `context:`, the client of that context.
    async fn build_action(&mut self, step: &PlannedStep) -> Result<Box<dyn Action>, StepFailure> {
        let built = match &self.engine.action_factory {
            Some(factory) => Ok(factory(step)),
            None => actions::build(&step.action),
        };
        let action = built.map_err(|err| StepFailure::from_action(&err))?;
        self.step_client = match &step.context {
            None => None,
            Some(context) => Some(
                self.engine
                    .client_for_context(context)
                    .await
                    .map_err(|err| StepFailure::new(err.category(), err.to_string()))?,
            ),
        };
        Ok(action)
    }

    /// Resumed after the writes of a round went through but before their verify: finishes
    /// that verify first (what remains of a ramp step's pause, a batch's readiness), so the
    /// next round never starts early. Writes whose result was never journaled are settled by
    /// the next diff instead. `Some(_)`: the step stopped.
    async fn finish_resumed_verify(
        &mut self,
        action: &dyn Action,
        step: &PlannedStep,
        deadline: Instant,
        progress: &mut StepProgress,
    ) -> Result<Option<StepEnd>, StepFailure> {
        if !progress.unverified || !progress.pending.is_empty() {
            return Ok(None);
        }
        match self
            .verify(action, step, &progress.applied, deadline)
            .await?
        {
            None => {
                progress.unverified = false;
                Ok(None)
            }
            Some(reason) => Ok(Some(StepEnd::Stopped(reason))),
        }
    }

    /// One round: diff; a dry run ends here. Then the fleet gate, the first-mutation gate,
    /// the writes chunk by chunk and their verify.
    async fn round(
        &mut self,
        action: &dyn Action,
        step: &PlannedStep,
        deadline: Instant,
        progress: &mut StepProgress,
    ) -> Result<Round, StepHalt> {
        // A stop request is honoured after the diff: a step whose change is complete ends
        // verified, one with writes left stops before them.
        let diff = match self.diff_with_retries(action, step, deadline).await {
            Ok(d) => d,
            Err(DiffHalt::Failed(f)) => return Err(f.into()),
            Err(DiffHalt::Stopped(reason)) => return Ok(Round::End(StepEnd::Stopped(reason))),
        };
        self.report_diff(step, &diff, &mut progress.last_planned)?;
        let journal = match &self.mode {
            Mode::DryRun => return Ok(Round::End(dry_run_end(action, diff))),
            Mode::Live(journal) => journal.clone(),
        };
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
                &journal,
                &self.events,
            )
            .await?
        {
            FleetGate::Proceed => {}
            FleetGate::Taken => return Ok(Round::Again),
            FleetGate::Refused(reason) => return Ok(Round::End(StepEnd::Refused(reason))),
        }
        if diff.is_satisfied() {
            return self
                .settle(action, step, deadline, progress, diff.summary)
                .await
                .map(Round::End);
        }

        if let Some(reason) = self.stop.reason() {
            return Ok(Round::End(StepEnd::Stopped(reason)));
        }
        if !self.gate.passed {
            match self.pass_gate(&diff.mutations[0], &journal).await? {
                Some(refusal) => return Ok(Round::End(StepEnd::Refused(refusal))),
                // The world may have moved while we took the lock: diff again, unless the
                // writes carry the diff's resourceVersion as a precondition (a change since
                // is a 409, answered by a fresh diff).
                None if action.writes_are_conditional() => {}
                None => return Ok(Round::Again),
            }
        }

        // This process writes the step's mutations now; intents of an earlier process are
        // either among them (same id) or superseded by them.
        progress.pending.clear();
        // Independent writes (the action says how many) go out together; one at a time
        // otherwise, in order.
        for chunk in diff.mutations.chunks(action.parallel_mutations().max(1)) {
            match self
                .apply_chunk(action, step, chunk, deadline, &journal, progress)
                .await?
            {
                ChunkEnd::Applied => {}
                ChunkEnd::Conflict => return Ok(Round::Again),
                ChunkEnd::Stopped(reason) => return Ok(Round::End(StepEnd::Stopped(reason))),
            }
        }
        if progress.unverified {
            match self
                .verify(action, step, &progress.applied, deadline)
                .await?
            {
                // The verified write is the desired state: no second diff.
                None if action.settled_by_verify() => {
                    self.record_acknowledgement(step, action)?;
                    return Ok(Round::End(StepEnd::Verified));
                }
                None => progress.unverified = false,
                Some(reason) => return Ok(Round::End(StepEnd::Stopped(reason))),
            }
        }
        Ok(Round::Again)
    }

    /// Reports a diff that differs from the last one: journaled as `StepPlanned` (a live run),
    /// kept in the step's report, sent as [`EngineEvent::StepDiff`].
    fn report_diff(
        &mut self,
        step: &PlannedStep,
        diff: &Diff,
        last_planned: &mut Option<Vec<(String, String)>>,
    ) -> Result<(), EngineError> {
        let planned: Vec<(String, String)> = diff
            .mutations
            .iter()
            .map(|m| (m.id.clone(), m.diff.clone()))
            .collect();
        if last_planned.as_ref() == Some(&planned) {
            return Ok(());
        }
        *last_planned = Some(planned);
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
        Ok(())
    }

    /// The diff is empty: the step's change holds. Writes an earlier process sent but never
    /// journaled as applied are journaled now (the observed state shows they took effect);
    /// then the step's writes (or its action's wait) are verified.
    async fn settle(
        &mut self,
        action: &dyn Action,
        step: &PlannedStep,
        deadline: Instant,
        progress: &mut StepProgress,
        summary: String,
    ) -> Result<StepEnd, StepHalt> {
        for m in std::mem::take(&mut progress.pending) {
            let applied = Applied {
                id: m.id.clone(),
                target: m.target.clone(),
                resource_version_after: None,
            };
            self.record_applied(step, &m, &applied, true)?;
            progress.applied.push(applied);
            progress.unverified = true;
        }
        if progress.unverified || action.verify_when_satisfied() {
            return match self
                .verify(action, step, &progress.applied, deadline)
                .await?
            {
                None => {
                    self.record_acknowledgement(step, action)?;
                    Ok(StepEnd::Verified)
                }
                Some(reason) => Ok(StepEnd::Stopped(reason)),
            };
        }
        if progress.applied.is_empty() {
            return Ok(StepEnd::AlreadySatisfied(summary));
        }
        Ok(StepEnd::Verified)
    }

    /// Writes one chunk: its intents journaled first with one fsync, then its writes sent at
    /// once, each journaled as applied when it returns. The writes that went through are
    /// journaled; the rest keep their intents, which a re-diff (or a resume) settles.
    async fn apply_chunk(
        &mut self,
        action: &dyn Action,
        step: &PlannedStep,
        chunk: &[Mutation],
        deadline: Instant,
        journal: &SharedJournal,
        progress: &mut StepProgress,
    ) -> Result<ChunkEnd, StepHalt> {
        if let Some(reason) = self.stop.reason() {
            return Ok(ChunkEnd::Stopped(reason));
        }
        journal.append_all(
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
                .map(|m| self.apply_with_retries(action, step, m, deadline)),
        )
        .await;
        let mut failure = None;
        let mut stopped = None;
        let mut conflict = false;
        for (m, result) in chunk.iter().zip(results) {
            match result {
                Ok(applied) => {
                    self.record_applied(step, m, &applied, false)?;
                    tracing::info!(run = %self.plan.run_id, step = %step.name, mutation = %m.id, "mutation applied");
                    self.mutations_applied += 1;
                    progress.applied.push(applied);
                    progress.unverified = true;
                    self.events.send(EngineEvent::MutationApplied {
                        step: step.name.clone(),
                        description: m.description.clone(),
                    });
                    crash_point("after-apply");
                }
                Err(ApplyError::Conflict(err)) => {
                    if failure.is_none() && !conflict {
                        progress.conflicts += 1;
                        if progress.conflicts >= step.retries.attempts.max(1) {
                            failure = Some(StepFailure::from_action(&err));
                        } else {
                            tracing::info!(run = %self.plan.run_id, step = %step.name, conflicts = progress.conflicts, "conflict: diffing again");
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
            return Err(f.into());
        }
        if let Some(reason) = stopped {
            return Ok(ChunkEnd::Stopped(reason));
        }
        Ok(if conflict {
            ChunkEnd::Conflict
        } else {
            ChunkEnd::Applied
        })
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
        let Mode::Live(journal) = &self.mode else {
            return Ok(());
        };
        let path = journal.dir().join(crate::journal::JOURNAL_FILE);
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
            let error = match self.revert_one(&undo_step).await {
                Ok(()) => {
                    reverted += 1;
                    None
                }
                Err(StepHalt::Failed(failure)) => {
                    failed += 1;
                    Some(failure.error)
                }
                Err(StepHalt::Engine(err)) => return Err(err),
            };
            self.record(Record::UndoApplied {
                step: step_name.clone(),
                mutation_id: m.id.clone(),
                ok: error.is_none(),
                error,
            })?;
        }
        Ok(format!(
            "undo: {reverted} reverted, {failed} failed, {skipped} not revertible automatically"
        ))
    }

    /// Applies one inverse (a synthetic `object.patch` step) through diff and apply.
    async fn revert_one(&mut self, step: &PlannedStep) -> Result<(), StepHalt> {
        let action = actions::build(&step.action).map_err(|err| StepFailure::from_action(&err))?;
        let deadline = Instant::now() + step.timeout.0;
        let diff = match self
            .diff_with_retries(action.as_ref(), step, deadline)
            .await
        {
            Ok(d) => d,
            Err(DiffHalt::Failed(f)) => return Err(f.into()),
            Err(DiffHalt::Stopped(reason)) => {
                return Err(StepFailure::new("interrupted", format!("undo {reason}")).into());
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
                Err(ApplyError::Conflict(err)) => return Err(StepFailure::from_action(&err).into()),
                Err(ApplyError::Failed(f)) => return Err(f.into()),
                Err(ApplyError::Stopped(reason)) => {
                    return Err(StepFailure::new("interrupted", format!("undo {reason}")).into());
                }
            }
        }
        Ok(())
    }

    /// Before the first mutation: lock, pre-checks, notification, snapshot, mirror.
    /// `Some(reason)`: refused.
    async fn pass_gate(
        &mut self,
        first: &Mutation,
        journal: &SharedJournal,
    ) -> Result<Option<String>, GateError> {
        let refusal = self
            .gate
            .pass(
                self.plan,
                self.opts,
                &self.namespace,
                first,
                journal,
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
        let Mode::Live(journal) = &self.mode else {
            return;
        };
        if self.mirror.is_some() {
            return;
        }
        let journal = journal.clone();
        self.mirror = Some(Mirror::start(
            self.engine.client.clone(),
            self.namespace.clone(),
            self.plan,
            self.opts,
            self.status.clone(),
            journal,
            self.events.clone(),
            self.engine.run_crd.clone(),
        ));
    }

    /// After the steps: waits (bounded) for the broad snapshot and releases the lock (also a
    /// lock left behind by an earlier, crashed process of this run).
    pub async fn shutdown(&mut self) {
        let Mode::Live(journal) = &self.mode else {
            return;
        };
        let stale_lock = self.prior.gate_passed;
        self.gate
            .finish(
                self.plan,
                self.opts,
                &self.namespace,
                stale_lock,
                journal,
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

/// The [`Notices`] of `step`'s action, sent on as [`EngineEvent`]s.
fn notices(events: &Events, step: &str) -> Notices {
    let events = events.clone();
    let step = step.to_string();
    Notices::new(move |notice| match notice {
        Notice::AckRejected { by, reason } => {
            events.send(EngineEvent::ApprovalRejected {
                step: step.clone(),
                by,
                reason,
            });
        }
    })
}

/// How a dry run's step ends after its diff: already satisfied when nothing needs writing
/// (and its action does no work in `verify`), else it would apply.
fn dry_run_end(action: &dyn Action, diff: Diff) -> StepEnd {
    if diff.is_satisfied() && !action.verify_when_satisfied() {
        StepEnd::AlreadySatisfied(diff.summary)
    } else {
        StepEnd::WouldApply
    }
}
