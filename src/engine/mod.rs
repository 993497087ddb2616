//! The run engine: executes a plan step by step through the idempotency contract, with
//! timeouts, retries, `onFailure`, guards, dry-run and resume.
//!
//! # How a run proceeds
//!
//! 1. The journal is created (`<state-dir>/runs/<run-id>/journal.jsonl`) and `RunStarted`
//!    records the plan. Stop conditions start being evaluated concurrently at their interval.
//! 2. Each step: build the action, `diff`. An empty diff of a mutating step that this run never
//!    touched is *already satisfied* and nothing is written. A dry run
//!    ([`RunOptions::dry_run`]) is the same step loop in its dry-run mode: it ends each step
//!    here, reporting *would apply* or *already satisfied* — no journal, lock, mirror,
//!    notification or write — and reports every step (the first failure gives the outcome).
//! 3. Before the **first mutation** of the run, and only then (a run that needs no change makes
//!    no write request at all): take the per-target lock (a Lease), evaluate the pre-checks,
//!    notify "about to …", capture the snapshot (the targets awaited, the rest concurrently),
//!    and create the `Run` mirror in the cluster (not when the engine already knows the CRD
//!    is missing). Then the writes go out; the diff is computed again first unless the
//!    action's writes carry the diff's resourceVersion as a precondition
//!    (`Action::writes_are_conditional`). (A `gate.approval` step starts the mirror
//!    before it waits, so an ACK given on the `Run` from another machine has somewhere to go.)
//!    Writes an action declares fleet-guarded (the cordons of `zone.failout`) also need the
//!    cluster-wide fleet lock: the engine takes it (waiting up to `RunOptions::wait_lock`),
//!    diffs again so the guards see every other run's cordons, and lets it go once a diff holds
//!    no such write (see `guards.rs`).
//! 4. Per mutation: journal `MutationIntended` (write-ahead, fsync'd), apply (retrying
//!    retryable API errors with backoff; a 409 conflict re-diffs), journal `MutationApplied`.
//!    Then `verify` (bounded by the step timeout) and re-diff until the diff is empty.
//! 5. `onFailure`: `abort` stops, `continue` goes on, `undo` reverts this run's applied
//!    mutations (their `MergePatch` inverses, newest first) and stops.
//! 6. A tripped stop condition or Ctrl-C/SIGTERM stops the run at the next safe point (between
//!    mutations, or while verifying) and journals why; an interrupted run is resumable.
//!
//! A step with `context:` acts through a client of that kubeconfig context (a colo that is a
//! whole cluster), built once per context when the engine was given the kubeconfig
//! ([`Engine::with_step_contexts`]); otherwise the step is refused. Multi-phase steps report
//! counts as [`EngineEvent::Progress`], forwarded from their diffs ([`crate::actions::Diff::progress`]).
//!
//! Resume (`RunOptions::resume`) replays the journal: verified or already-satisfied steps are
//! skipped; a step with a `MutationIntended` but no `MutationApplied` is re-diffed — the
//! observed state (markers) tells whether the write happened — so a resumed run never applies a
//! mutation twice.
//!
//! Test hook: the environment variable `RIPCORD_TEST_CRASH_AT` set to `after-intent` (after the
//! write-ahead record, before the API call) or `after-apply` (after `MutationApplied`, before
//! verify) makes the process exit with status 137 at that point, simulating a crash. It exists
//! for the crash/resume tests only.

mod gate;
mod guards;
mod mirror;
mod resume;
mod step;
#[cfg(test)]
mod step_tests;

use crate::actions::{Inverse, Mutation};
use crate::journal::{self, Journal, JournalError, Outcome, Record};
use crate::notify::ChannelConfig;
use crate::plan::Plan;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

pub use crate::model::{Progress, Trigger};
pub use resume::load_plan;

/// The environment variable of the crash test hook (see the module docs).
pub const CRASH_HOOK_ENV: &str = "RIPCORD_TEST_CRASH_AT";

/// Why a run is being stopped at the next safe point.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// Ctrl-C / SIGTERM / an operator's request.
    Interrupted {
        /// What asked.
        by: String,
    },
    /// The daemon stops its own run (shutdown, lost leadership): interrupted, and taken over
    /// by the next leader (the `Run` status's `stoppedBy`).
    Daemon(crate::k8s::runs::DaemonStop),
    /// A stop condition tripped.
    Guard {
        /// The guard's name.
        guard: String,
        /// Observed value versus threshold.
        reason: String,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Interrupted { by } => write!(f, "interrupted by {by}"),
            StopReason::Daemon(stop) => {
                write!(f, "interrupted by ripcord daemon ({})", stop.describe())
            }
            StopReason::Guard { guard, reason } => {
                write!(f, "stop condition {guard} tripped: {reason}")
            }
        }
    }
}

/// Asks a running run to stop at its next safe point. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StopHandle {
    tx: Arc<watch::Sender<Option<StopReason>>>,
}

impl Default for StopHandle {
    fn default() -> Self {
        StopHandle::new()
    }
}

// === impl StopHandle ===

impl StopHandle {
    /// A handle nobody has pulled yet.
    pub fn new() -> StopHandle {
        let (tx, _rx) = watch::channel(None);
        StopHandle { tx: Arc::new(tx) }
    }

    /// Requests the stop (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        self.tx.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The reason, if a stop was requested.
    pub fn reason(&self) -> Option<StopReason> {
        self.tx.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Option<StopReason>> {
        self.tx.subscribe()
    }
}

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Compute and report each step's diff and inverse; write nothing (no journal either).
    pub dry_run: bool,
    /// Resume this run id from its journal (the plan must be [`load_plan`]'s).
    pub resume: Option<String>,
    /// What started the run.
    pub trigger: Trigger,
    /// Who started it.
    pub who: String,
    /// The incident id.
    pub incident: Option<String>,
    /// Where run directories go.
    pub state_dir: PathBuf,
    /// The Prometheus HTTP API base URL for guards and gates.
    pub prometheus_url: Option<String>,
    /// Notification channels from the configuration (the plan's own are added).
    pub notify: Vec<ChannelConfig>,
    /// Refuse the run before its first mutation when the "about to …" notification reached
    /// nobody (config `notify.required: true`).
    pub notify_required: bool,
    /// The namespace used when an action names none and for the lock Lease and `Run`
    /// mirror (default: the plan's `namespace` parameter, else `default`).
    pub namespace: Option<String>,
    /// The namespace of the lock Lease (default: the run's namespace, as above). The daemon
    /// sets its own namespace.
    pub lock_namespace: Option<String>,
    /// Seals the `Run` mirror's status with this key (the daemon; see
    /// [`crate::k8s::runs::RunSeal`]).
    pub seal: Option<std::sync::Arc<crate::k8s::runs::RunSeal>>,
    /// Timeout of each single API call.
    pub call_timeout: Duration,
    /// Stop the run at a safe point on Ctrl-C / SIGTERM (the CLI sets this; the daemon uses
    /// [`RunOptions::stop`]).
    pub handle_signals: bool,
    /// A handle the caller keeps to stop the run; `None`: the engine makes its own.
    pub stop: Option<StopHandle>,
    /// How long to wait for a lock (the per-target lock, the fleet lock) that another run
    /// holds before refusing: it may be released, or expire when its holder died. Zero (the
    /// default): refuse at once, naming the holder and how long its Lease has left.
    pub wait_lock: Duration,
    /// Broad evidence captures shared with other runs of this process on the same namespaces
    /// (the daemon under an alert storm); `None`: every run captures on its own (the CLI).
    pub shared_captures: Option<std::sync::Arc<crate::snapshot::SharedCaptures>>,
}

impl RunOptions {
    /// Options for a CLI run by `who`, journaling under `state_dir`.
    pub fn new(who: impl Into<String>, state_dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            dry_run: false,
            resume: None,
            trigger: Trigger::Cli,
            who: who.into(),
            incident: None,
            state_dir: state_dir.into(),
            prometheus_url: None,
            notify: Vec::new(),
            notify_required: false,
            namespace: None,
            lock_namespace: None,
            seal: None,
            call_timeout: Duration::from_secs(10),
            handle_signals: false,
            stop: None,
            wait_lock: Duration::ZERO,
            shared_captures: None,
        }
    }
}

/// Progress, for progress bars and logs. Sent best-effort (dropped when the receiver lags).
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// The run began (or resumed).
    RunStarted {
        /// The run id.
        run_id: String,
        /// The journal file (`None` in a dry run).
        journal: Option<PathBuf>,
        /// How many steps.
        steps: usize,
        /// True for `--resume`.
        resumed: bool,
    },
    /// A step began.
    StepStarted {
        /// 0-based index.
        index: usize,
        /// Step count.
        total: usize,
        /// The step's name.
        step: String,
        /// The catalog action.
        action: String,
    },
    /// A step's diff.
    StepDiff {
        /// The step's name.
        step: String,
        /// One line for people.
        summary: String,
        /// The mutations needed now.
        mutations: Vec<MutationPreview>,
    },
    /// The run passed its first-mutation gate (lock, pre-checks, notification, snapshot).
    Prepared {
        /// What was done (`lock ripcord-lock-…`, `notified 2 channels`, …).
        notes: Vec<String>,
    },
    /// A mutation was applied.
    MutationApplied {
        /// The step's name.
        step: String,
        /// One line for people.
        description: String,
    },
    /// Counts of a multi-phase step (pods evicted of a drain, batch and pods restarted of a
    /// restart), after each of its diffs.
    Progress {
        /// The step's name.
        step: String,
        /// What is counted ("pods evicted", "batch 2 of 4: pods restarted").
        what: String,
        /// How many are done.
        done: u64,
        /// How many in all.
        total: u64,
    },
    /// A `gate.approval` step was acknowledged (sent right after the engine journals its
    /// [`crate::journal::Record::Approved`]).
    Approved {
        /// The step's name.
        step: String,
        /// Who acknowledged.
        by: String,
        /// When they acknowledged (RFC 3339, as written in the ACK).
        at: String,
        /// Where the engine found the ACK (a file in the run directory or the `Run` resource).
        source: crate::journal::approval::ApprovalSource,
    },
    /// A `gate.approval` step saw an ACK that does not count (by someone who is not among its
    /// approvers); the gate keeps waiting. Sent once per person and wait.
    ApprovalRejected {
        /// The step's name.
        step: String,
        /// Who acknowledged.
        by: String,
        /// Why it does not count.
        reason: String,
    },
    /// Waiting for a step's change to take effect.
    Verifying {
        /// The step's name.
        step: String,
        /// The bound.
        timeout: Duration,
    },
    /// A step ended.
    StepFinished {
        /// The step's name.
        step: String,
        /// How.
        result: StepResult,
    },
    /// Something a person should know that does not stop the run (a failed notification, a
    /// failed mirror write, a guard that could not be evaluated).
    Warning {
        /// What happened.
        message: String,
    },
    /// The run ended.
    Finished {
        /// How.
        outcome: Outcome,
        /// Why.
        reason: Option<String>,
    },
}

/// A mutation as shown by a dry run or a diff event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MutationPreview {
    /// The mutation's id.
    pub id: String,
    /// The object (`deployment/shop/checkout`).
    pub target: String,
    /// One line for people.
    pub description: String,
    /// A readable diff.
    pub diff: String,
    /// How cleanup would revert it.
    pub inverse: Inverse,
}

impl From<&Mutation> for MutationPreview {
    fn from(m: &Mutation) -> Self {
        MutationPreview {
            id: m.id.clone(),
            target: m.target.to_string(),
            description: m.description.clone(),
            diff: m.diff.clone(),
            inverse: m.inverse.clone(),
        }
    }
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum StepResult {
    /// Its change took effect.
    Verified,
    /// Nothing needed changing.
    AlreadySatisfied,
    /// Done by an earlier process of this run (resume).
    DoneEarlier,
    /// It failed.
    Failed {
        /// The error chain.
        error: String,
        /// The stable category.
        category: String,
    },
    /// Dry run: what would be done.
    WouldApply,
    /// Not reached (the run stopped before).
    NotRun,
}

/// The report of one step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// The catalog action.
    pub action: String,
    /// How it ended.
    pub result: StepResult,
    /// The diff summary of the step's last diff.
    pub summary: String,
    /// The mutations of the step's first non-empty diff (dry run: what would be applied).
    pub mutations: Vec<MutationPreview>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutcome {
    /// The run id.
    pub run_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for people.
    pub reason: Option<String>,
    /// True for a dry run (nothing was written).
    pub dry_run: bool,
    /// Wall time of this process's part of the run.
    #[serde(with = "duration_ms")]
    pub duration: Duration,
    /// The run directory (journal, snapshot).
    pub dir: PathBuf,
    /// The journal file (`None` for a dry run).
    pub journal: Option<PathBuf>,
    /// Mutations applied by this process.
    pub mutations_applied: usize,
    /// Per step.
    pub steps: Vec<StepReport>,
}

mod duration_ms {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// Why the engine could not run a plan at all (step failures are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal could not be written or read: without the write-ahead log nothing may be
    /// mutated.
    #[error("journal failure")]
    Journal(#[from] JournalError),
    /// `--resume` of a run whose journal holds no plan.
    #[error("run {run_id} cannot be resumed: {reason}")]
    NotResumable {
        /// The run id.
        run_id: String,
        /// Why.
        reason: String,
    },
    /// The plan given with `resume` is not the one of the journal.
    #[error("the plan's run id {plan_run_id} does not match the resumed run {run_id}")]
    PlanMismatch {
        /// The resumed run.
        run_id: String,
        /// The plan's.
        plan_run_id: String,
    },
    /// A step names a kubeconfig context that cannot be used.
    #[error("kubeconfig context {context:?}: {reason}")]
    KubeContext {
        /// The context.
        context: String,
        /// Why (not enabled, unknown context, unreadable kubeconfig…).
        reason: String,
    },
}

impl EngineError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            EngineError::Journal(e) => e.category(),
            EngineError::NotResumable { .. } => "not-resumable",
            EngineError::PlanMismatch { .. } => "plan-mismatch",
            EngineError::KubeContext { .. } => "kube-context",
        }
    }
}

/// Executes plans against one cluster.
#[derive(Clone)]
pub struct Engine {
    client: kube::Client,
    http: reqwest::Client,
    lock_ttl: Duration,
    /// Where steps with `context:` find their contexts (`None`: such steps are refused;
    /// `Some(None)`: the default kubeconfig), and the clients built so far, per context.
    step_contexts: Option<Option<PathBuf>>,
    context_clients: Arc<tokio::sync::Mutex<std::collections::HashMap<String, kube::Client>>>,
    /// Builds steps' actions instead of [`crate::actions::build`] (the step loop's unit tests
    /// drive scripted actions through it).
    action_factory: Option<ActionFactory>,
    /// Whether the `Run` CRD is served, learnt once for every run of this engine.
    run_crd: crate::k8s::runs::RunCrdPresence,
}

/// Builds the action of a step (a test seam; see [`Engine::action_factory`]).
pub(crate) type ActionFactory =
    Arc<dyn Fn(&crate::plan::PlannedStep) -> Box<dyn crate::actions::Action> + Send + Sync>;

// === impl Engine ===

impl Engine {
    /// An engine using `client` for the cluster and `http` for Prometheus and webhooks.
    pub fn new(client: kube::Client, http: reqwest::Client) -> Engine {
        Engine {
            client,
            http,
            lock_ttl: Duration::from_secs(30),
            step_contexts: None,
            context_clients: Arc::default(),
            action_factory: None,
            run_crd: crate::k8s::runs::RunCrdPresence::default(),
        }
    }

    /// Tells the engine whether the `Run` CRD is served (the CLI's discovery probe found
    /// out): `false` spares every run of this engine the mirror's create request.
    pub fn with_run_crd_served(self, served: bool) -> Engine {
        if !served {
            self.run_crd.mark_absent();
        }
        self
    }

    /// Builds every step's action with `factory` (unit tests of the step loop).
    #[cfg(test)]
    pub(crate) fn with_action_factory(mut self, factory: ActionFactory) -> Engine {
        self.action_factory = Some(factory);
        self
    }

    /// Lets steps name a kubeconfig context (a colo that is a whole cluster): one
    /// `kube::Client` per named context, built from `kubeconfig` (`None`: `$KUBECONFIG`, then
    /// `~/.kube/config`) on first use. The run's lock, snapshot and `Run` mirror stay on the
    /// engine's own client.
    pub fn with_step_contexts(mut self, kubeconfig: Option<PathBuf>) -> Engine {
        self.step_contexts = Some(kubeconfig);
        self
    }

    /// The client of a step's kubeconfig `context`.
    pub(crate) async fn client_for_context(
        &self,
        context: &str,
    ) -> Result<kube::Client, EngineError> {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let fail = |reason: String| EngineError::KubeContext {
            context: context.to_string(),
            reason,
        };
        let Some(source) = &self.step_contexts else {
            return Err(fail(
                "per-step contexts are not enabled for this engine (the CLI takes them from \
                 --kubeconfig or $KUBECONFIG; the daemon only from stepKubeconfig in its config \
                 or --step-kubeconfig)"
                    .into(),
            ));
        };
        let mut clients = self.context_clients.lock().await;
        if let Some(client) = clients.get(context) {
            return Ok(client.clone());
        }
        let options = KubeConfigOptions {
            context: Some(context.to_string()),
            ..KubeConfigOptions::default()
        };
        let config = match source {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| fail(e.to_string()))?;
        let client = kube::Client::try_from(config).map_err(|e| fail(e.to_string()))?;
        clients.insert(context.to_string(), client.clone());
        Ok(client)
    }

    /// How long a lock Lease lives without renewal (default 30 s).
    pub fn with_lock_ttl(mut self, ttl: Duration) -> Engine {
        self.lock_ttl = ttl;
        self
    }

    /// Runs (or, with `opts.resume`, resumes) `plan`. Progress goes to `events`.
    pub async fn run(
        &self,
        plan: Plan,
        opts: RunOptions,
        events: Option<mpsc::Sender<EngineEvent>>,
    ) -> Result<RunOutcome, EngineError> {
        let span = tracing::info_span!("run", run = %plan.run_id, playbook = %plan.playbook);
        self.run_inner(plan, opts, events).instrument(span).await
    }

    async fn run_inner(
        &self,
        plan: Plan,
        opts: RunOptions,
        events: Option<mpsc::Sender<EngineEvent>>,
    ) -> Result<RunOutcome, EngineError> {
        let started = Instant::now();
        let events = Events(events);
        let namespace = opts
            .namespace
            .clone()
            .or_else(|| {
                plan.params
                    .get("namespace")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "default".to_string());
        let run_dir = journal::run_dir(&opts.state_dir, &plan.run_id);

        if opts.dry_run {
            return self.dry_run(&plan, &opts, namespace, events, started).await;
        }

        // The journal: new, or reopened for resume.
        let (journal, prior) = match &opts.resume {
            Some(run_id) => {
                if *run_id != plan.run_id {
                    return Err(EngineError::PlanMismatch {
                        run_id: run_id.clone(),
                        plan_run_id: plan.run_id.clone(),
                    });
                }
                let (mut journal, entries, torn) = Journal::open(&opts.state_dir, run_id)?;
                if let Some(torn) = torn {
                    events.send(EngineEvent::Warning {
                        message: format!("journal: {torn}"),
                    });
                }
                let prior = resume::Prior::from_entries(&entries);
                if let Some(outcome) = prior.finished
                    && !outcome.is_resumable()
                {
                    return Err(EngineError::NotResumable {
                        run_id: run_id.clone(),
                        reason: format!("it already finished: {outcome}"),
                    });
                }
                journal.append(Record::RunResumed {
                    who: opts.who.clone(),
                })?;
                (journal, prior)
            }
            None => {
                let mut journal = Journal::create(&opts.state_dir, &plan.run_id)?;
                // Secrets never reach the journal (nor what reads it: the API, reports).
                let plan_json = plan.redacted_json();
                journal.append(Record::RunStarted {
                    run_id: plan.run_id.clone(),
                    playbook: plan.playbook.clone(),
                    trigger: opts.trigger.as_str().to_string(),
                    who: opts.who.clone(),
                    incident: opts.incident.clone(),
                    params: journal::redact_params(&plan.params),
                    plan: plan_json,
                })?;
                (journal, resume::Prior::default())
            }
        };
        let journal_path = journal.path().to_path_buf();
        events.send(EngineEvent::RunStarted {
            run_id: plan.run_id.clone(),
            journal: Some(journal_path.clone()),
            steps: plan.steps.len(),
            resumed: opts.resume.is_some(),
        });

        let stop = opts.stop.clone().unwrap_or_default();
        let shared = SharedJournal(Arc::new(Mutex::new(journal)));
        let signals = opts
            .handle_signals
            .then(|| spawn_signal_listener(stop.clone(), shared.clone()));

        let mut state = step::RunState::new(
            self,
            &plan,
            &opts,
            namespace,
            step::Mode::Live(shared.clone()),
            events.clone(),
            stop.clone(),
            prior,
        );
        let guards = guards::spawn_stop_conditions(
            &plan,
            &opts,
            &self.http,
            shared.clone(),
            events.clone(),
            stop.clone(),
        );

        let result = state.execute().await;

        for guard in guards {
            guard.abort();
        }
        if let Some(signals) = signals {
            signals.abort();
        }
        let (outcome, reason) = match result {
            Ok(v) => v,
            Err(err) => {
                // The journal failed: release what we hold, then give up.
                state.shutdown().await;
                return Err(err);
            }
        };
        state.shutdown().await;
        state
            .notify_finished(outcome, reason.as_deref(), &journal_path)
            .await;
        let duration = started.elapsed();
        let finished = shared.append(Record::RunFinished {
            outcome,
            duration_ms: duration.as_millis() as u64,
            reason: reason.clone(),
        });
        state.mirror_finish(outcome, reason.clone()).await;
        finished?;
        events.send(EngineEvent::Finished {
            outcome,
            reason: reason.clone(),
        });
        tracing::info!(run = %plan.run_id, outcome = %outcome, "run finished");
        Ok(RunOutcome {
            run_id: plan.run_id.clone(),
            outcome,
            reason,
            dry_run: false,
            duration,
            dir: run_dir,
            journal: Some(journal_path),
            mutations_applied: state.mutations_applied,
            steps: state.reports,
        })
    }

    /// A dry run: the step loop in [`step::Mode::DryRun`] — each step's action built and
    /// diffed as in a live run, reported as would-apply or already satisfied; no journal, no
    /// lock, no mirror, no notification, no write. Stops only through `opts.stop` (no signal
    /// handler, no stop conditions).
    async fn dry_run(
        &self,
        plan: &Plan,
        opts: &RunOptions,
        namespace: String,
        events: Events,
        started: Instant,
    ) -> Result<RunOutcome, EngineError> {
        events.send(EngineEvent::RunStarted {
            run_id: plan.run_id.clone(),
            journal: None,
            steps: plan.steps.len(),
            resumed: false,
        });
        let mut state = step::RunState::new(
            self,
            plan,
            opts,
            namespace,
            step::Mode::DryRun,
            events.clone(),
            opts.stop.clone().unwrap_or_default(),
            resume::Prior::default(),
        );
        let (outcome, reason) = state.execute().await?;
        events.send(EngineEvent::Finished {
            outcome,
            reason: reason.clone(),
        });
        Ok(RunOutcome {
            run_id: plan.run_id.clone(),
            outcome,
            reason,
            dry_run: true,
            duration: started.elapsed(),
            dir: journal::run_dir(&opts.state_dir, &plan.run_id),
            journal: None,
            mutations_applied: 0,
            steps: state.reports,
        })
    }
}

/// The journal, shared by the step loop, the guard tasks and the mirror task.
#[derive(Clone)]
pub(crate) struct SharedJournal(Arc<Mutex<Journal>>);

impl SharedJournal {
    /// Appends (and fsyncs) one record.
    pub(crate) fn append(&self, record: Record) -> Result<(), EngineError> {
        let mut journal = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        journal.append(record)?;
        Ok(())
    }

    /// Appends several records with one `fsync`.
    pub(crate) fn append_all(&self, records: Vec<Record>) -> Result<(), EngineError> {
        let mut journal = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        journal.append_all(records)?;
        Ok(())
    }

    /// The run directory.
    pub(crate) fn dir(&self) -> PathBuf {
        let journal = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        journal.dir().to_path_buf()
    }
}

/// Best-effort progress events.
#[derive(Clone)]
pub(crate) struct Events(Option<mpsc::Sender<EngineEvent>>);

impl Events {
    pub(crate) fn send(&self, event: EngineEvent) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(event);
        }
    }
}

/// Exits the process with status 137 when the crash test hook names `point`.
pub(crate) fn crash_point(point: &str) {
    if std::env::var(CRASH_HOOK_ENV).is_ok_and(|v| v == point) {
        tracing::warn!(point, "test crash hook: exiting with status 137");
        std::process::exit(137);
    }
}

/// Listens for Ctrl-C and SIGTERM while a CLI run goes: the first asks the run to stop at its
/// next safe point (the step loop cancels any wait at once); a second one, while the run is
/// still winding down, ends the process with status 130 as soon as no journal record is being
/// written (it takes the journal's lock first, so the journal never ends mid-record) — the
/// run stays resumable like after a crash.
fn spawn_signal_listener(stop: StopHandle, journal: SharedJournal) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut signals = Signals::new();
        let first = signals.next().await;
        tracing::warn!(
            signal = first,
            "stopping at the next safe point; again to exit at once"
        );
        stop.stop(StopReason::Interrupted { by: first.into() });
        let second = signals.next().await;
        let _writing = journal
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        eprintln!(
            "{second} again: exiting now; the journal is complete up to its last record \
             (the run is resumable: ripcord run --resume RUN_ID)"
        );
        std::process::exit(130);
    })
}

/// Ctrl-C and SIGTERM, listened to from creation on (a signal between two `next` calls is
/// not lost).
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

// === impl Signals ===

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(err) => {
                    tracing::warn!(signal = name, error = %err, "cannot listen for the signal");
                    None
                }
            };
            Signals {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// The next signal, named.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        if s.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.interrupt) => "Ctrl-C",
                _ = recv(&mut self.terminate) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_a_daemon_stop_is_typed_and_reads_as_before() {
        use crate::k8s::runs::DaemonStop;
        let stop = StopHandle::new();
        stop.stop(StopReason::Daemon(DaemonStop::LostLeadership));
        let reason = stop.reason();
        assert_eq!(reason, Some(StopReason::Daemon(DaemonStop::LostLeadership)));
        assert_eq!(
            reason.map(|r| r.to_string()).as_deref(),
            Some("interrupted by ripcord daemon (lost leadership)")
        );
        assert_eq!(
            StopReason::Daemon(DaemonStop::Shutdown).to_string(),
            "interrupted by ripcord daemon (shutdown)"
        );
    }

    #[test]
    fn the_first_stop_reason_wins() {
        let stop = StopHandle::new();
        assert_eq!(stop.reason(), None);
        stop.stop(StopReason::Guard {
            guard: "errors".into(),
            reason: "0.9 > 0.5".into(),
        });
        stop.stop(StopReason::Interrupted {
            by: "Ctrl-C".into(),
        });
        assert!(
            matches!(stop.reason(), Some(StopReason::Guard { guard, .. }) if guard == "errors")
        );
        assert!(
            stop.reason()
                .is_some_and(|r| r.to_string().contains("stop condition errors tripped"))
        );
    }

    #[test]
    fn outcomes_serialize_in_kebab_case() {
        assert_eq!(
            serde_json::to_string(&Outcome::Succeeded).unwrap(),
            "\"succeeded\""
        );
        assert!(Outcome::Interrupted.is_resumable());
        assert!(!Outcome::Succeeded.is_resumable());
    }
}
