//! The run queue: every run the daemon starts (API, Alertmanager, drills, takeover) goes
//! through [`RunManager::submit`].
//!
//! A submitted run is planned at once (so a bad playbook or parameter is refused with 400),
//! then waits in the queue until (1) this process leads and (2) no other run of this process
//! holds the same lock target (the plan's `lock` key); then it executes through the engine
//! ([`Executor`]). The engine itself takes the per-target Lease, which also keeps a person's
//! CLI run and the daemon apart. Progress ([`EngineEvent`]s) feeds each run's timeline, the
//! step metrics and the status page.

use crate::daemon::clock::Clock;
use crate::daemon::metrics::DaemonMetrics;
use crate::engine::{
    Engine, EngineError, EngineEvent, RunOptions, RunOutcome, StepResult, StopHandle, StopReason,
    Trigger,
};
use crate::journal::approval::ApprovalSource;
use crate::journal::{self, Outcome};
use crate::plan::{self, Action, Plan};
use crate::playbook::ValidPlaybook;
use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// How many finished runs stay in memory (older ones are still listed from their journals).
const KEEP_FINISHED: usize = 200;
/// How many timeline entries a run keeps.
const MAX_TIMELINE: usize = 500;
/// Most bytes a run's plan (with its parameters, as journaled in `RunStarted` and mirrored)
/// may take. A bigger run is refused before anything is written: the journal copies the plan
/// and parameters into several records, so a 1 MiB request used to become a 7 MB journal.
pub const MAX_PLAN_BYTES: usize = 128 * 1024;

/// Executes a plan. The daemon's is [`EngineExecutor`]; tests substitute their own.
pub trait Executor: Send + Sync + 'static {
    /// Runs `plan` with `opts`, sending progress to `events`.
    fn execute(
        &self,
        plan: Plan,
        opts: RunOptions,
        events: mpsc::Sender<EngineEvent>,
    ) -> BoxFuture<'static, Result<RunOutcome, EngineError>>;
}

/// The engine as an [`Executor`].
#[derive(Clone)]
pub struct EngineExecutor(pub Engine);

impl EngineExecutor {
    /// The daemon's engine: `engine`, with per-step kubeconfig contexts enabled when
    /// `step_kubeconfig` names a kubeconfig (otherwise steps with `context:` are refused).
    pub fn new(engine: Engine, step_kubeconfig: Option<PathBuf>) -> EngineExecutor {
        match step_kubeconfig {
            Some(path) => EngineExecutor(engine.with_step_contexts(Some(path))),
            None => EngineExecutor(engine),
        }
    }
}

impl Executor for EngineExecutor {
    fn execute(
        &self,
        plan: Plan,
        opts: RunOptions,
        events: mpsc::Sender<EngineEvent>,
    ) -> BoxFuture<'static, Result<RunOutcome, EngineError>> {
        let engine = self.0.clone();
        Box::pin(async move { engine.run(plan, opts, Some(events)).await })
    }
}

/// Why a run could not be submitted or changed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No playbook of that name (directory or built-in).
    #[error("there is no playbook named {name:?}")]
    UnknownPlaybook {
        /// The name.
        name: String,
    },
    /// The playbook does not validate.
    #[error("the playbook is invalid:\n{diagnostics}")]
    InvalidPlaybook {
        /// The rendered diagnostics.
        diagnostics: String,
    },
    /// The parameters do not fit the playbook.
    #[error("cannot plan playbook {playbook}")]
    Plan {
        /// The playbook.
        playbook: String,
        /// Why.
        #[source]
        source: plan::PlanError,
    },
    /// No run with that id.
    #[error("there is no run {run_id}")]
    NotFound {
        /// The id.
        run_id: String,
    },
    /// The run has no such approval step.
    #[error("run {run_id} has no gate.approval step named {step:?}")]
    NoSuchApproval {
        /// The run.
        run_id: String,
        /// The step.
        step: String,
    },
    /// The approver is not one of the step's approvers.
    #[error("{by} may not approve step {step} (approvers: {approvers})")]
    NotAnApprover {
        /// Who tried.
        by: String,
        /// The step.
        step: String,
        /// Who may.
        approvers: String,
    },
    /// The run already finished.
    #[error("run {run_id} already finished ({state})")]
    AlreadyFinished {
        /// The run.
        run_id: String,
        /// Its state.
        state: String,
    },
    /// Writing a file (approval) failed.
    #[error("cannot write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The run id is taken: a run of this daemon (not finished, or being resumed) or a
    /// journal in its state directory has it. Never queued a second time.
    #[error("run id {run_id} is already in use")]
    DuplicateRunId {
        /// The id.
        run_id: String,
    },
    /// Resuming a run from its journal failed.
    #[error("cannot resume run {run_id}")]
    Resume {
        /// The run.
        run_id: String,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// The requester's token may not do this (playbook, inline playbook, `object.patch`
    /// target).
    #[error("{message}")]
    NotPermitted {
        /// What was refused, for people.
        message: String,
    },
    /// The run would journal more than [`MAX_PLAN_BYTES`].
    #[error(
        "the run is too large to journal: its plan and parameters take {bytes} bytes, the limit is {limit} (pass big data by reference, not inline)"
    )]
    TooLarge {
        /// The plan's size as JSON.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The incident id is not usable as a file or resource name.
    #[error(
        "incident id {id:?} is not valid: letters, digits, `.`, `_`, `-`, at most 64, not starting with `.`"
    )]
    InvalidIncident {
        /// The id.
        id: String,
    },
}

impl RunError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            RunError::UnknownPlaybook { .. } => "unknown-playbook",
            RunError::InvalidPlaybook { .. } => "invalid-playbook",
            RunError::Plan { source, .. } => source.category(),
            RunError::NotFound { .. } => "not-found",
            RunError::NoSuchApproval { .. } => "no-such-approval",
            RunError::NotAnApprover { .. } => "not-an-approver",
            RunError::AlreadyFinished { .. } => "already-finished",
            RunError::Io { .. } => "io",
            RunError::Resume { .. } => "resume",
            RunError::DuplicateRunId { .. } => "duplicate-run-id",
            RunError::NotPermitted { .. } => "forbidden",
            RunError::TooLarge { .. } => "run-too-large",
            RunError::InvalidIncident { .. } => "invalid-incident",
        }
    }
}

/// Which playbook to run.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaybookSource {
    /// By name: the playbooks directory first, then the built-ins.
    Name(String),
    /// Inline YAML.
    Body(String),
}

/// A request to run a playbook.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The playbook.
    pub playbook: PlaybookSource,
    /// Raw parameters (`key=value`, as on the command line).
    pub params: BTreeMap<String, String>,
    /// The incident id.
    pub incident: Option<String>,
    /// What triggered it.
    pub trigger: Trigger,
    /// Who (a token's user, an alert rule, a drill).
    pub who: String,
    /// Use this run id (takeover of another replica's run recorded in a `Run` resource: the
    /// same id lets the actions recognise their own earlier changes). `None`: a new id.
    pub run_id: Option<String>,
}

/// Finds playbooks by name.
#[derive(Debug, Clone, Default)]
pub struct Playbooks {
    /// Searched first: `<dir>/<name>.yaml` (or `.yml`).
    pub dir: Option<PathBuf>,
}

impl Playbooks {
    /// Loads and validates a playbook.
    pub fn load(&self, source: &PlaybookSource) -> Result<ValidPlaybook, RunError> {
        let invalid = |d: crate::playbook::diagnostic::Diagnostics| RunError::InvalidPlaybook {
            diagnostics: d.to_string(),
        };
        match source {
            PlaybookSource::Body(text) => {
                crate::playbook::parse::parse_str("request body", text).map_err(invalid)
            }
            PlaybookSource::Name(name) => {
                let valid_name = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid_name {
                    return Err(RunError::UnknownPlaybook { name: name.clone() });
                }
                if let Some(dir) = &self.dir {
                    for ext in ["yaml", "yml"] {
                        let path = dir.join(format!("{name}.{ext}"));
                        if path.is_file() {
                            return crate::playbook::parse::load_file(&path).map_err(invalid);
                        }
                    }
                }
                match crate::playbook::parse::builtin(name) {
                    Some((file, text)) => {
                        crate::playbook::parse::parse_str(&format!("playbooks/{file}"), text)
                            .map_err(invalid)
                    }
                    None => Err(RunError::UnknownPlaybook { name: name.clone() }),
                }
            }
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Waiting for leadership or its lock target.
    Queued,
    /// Executing.
    Running,
    /// Ended (see the outcome).
    Finished,
    /// Cancelled before it started.
    Cancelled,
    /// The engine could not run it at all (journal failure).
    Error,
    /// Journaled by another process without an end record: running there, or that process
    /// died (a takeover or `ripcord run --resume` continues it).
    Unfinished,
}

impl RunState {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Cancelled => "cancelled",
            RunState::Error => "error",
            RunState::Unfinished => "unfinished",
        }
    }

    /// True while the run is queued or executing.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running)
    }
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// When.
    pub at: Timestamp,
    /// What happened.
    pub text: String,
}

/// Where a step of a daemon run is, as the API and the status page show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepState {
    /// Not started.
    Pending,
    /// Diffing or applying.
    Running,
    /// A `gate.approval` step waiting for its ACK.
    AwaitingAck,
    /// Verifying after its writes.
    Verifying,
    /// Ended with this result.
    Ended(StepResultKind),
}

/// How a step ended (the engine's [`StepResult`] without its payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepResultKind {
    /// Verified after its writes.
    Verified,
    /// Nothing to do.
    AlreadySatisfied,
    /// Done by an earlier attempt of the run (resume).
    DoneEarlier,
    /// Failed.
    Failed,
    /// Dry run: would write.
    WouldApply,
    /// Not run (an earlier step ended the run).
    NotRun,
}

impl StepResultKind {
    /// The kind of an engine result.
    pub fn of(result: &StepResult) -> StepResultKind {
        match result {
            StepResult::Verified => StepResultKind::Verified,
            StepResult::AlreadySatisfied => StepResultKind::AlreadySatisfied,
            StepResult::DoneEarlier => StepResultKind::DoneEarlier,
            StepResult::Failed { .. } => StepResultKind::Failed,
            StepResult::WouldApply => StepResultKind::WouldApply,
            StepResult::NotRun => StepResultKind::NotRun,
        }
    }

    /// Its spelling in the API, metrics and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            StepResultKind::Verified => "verified",
            StepResultKind::AlreadySatisfied => "already-satisfied",
            StepResultKind::DoneEarlier => "done-earlier",
            StepResultKind::Failed => "failed",
            StepResultKind::WouldApply => "would-apply",
            StepResultKind::NotRun => "not-run",
        }
    }
}

impl StepState {
    /// Its spelling in the API and on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::AwaitingAck => "awaiting-ack",
            StepState::Verifying => "verifying",
            StepState::Ended(kind) => kind.as_str(),
        }
    }
}

impl Serialize for StepState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A step as the API and the status page show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    /// The step's name.
    pub name: String,
    /// The catalog action.
    pub action: String,
    /// Where the step is (serialized as `pending`, `running`, `awaiting-ack`, `verifying`, or
    /// the result: `verified`, `already-satisfied`, …).
    pub state: StepState,
    /// The last diff summary or error.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// When the step started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Who acknowledged it (a `gate.approval` step, once the engine journaled the ACK).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<StepApproval>,
}

/// The ACK the engine accepted for a `gate.approval` step (from
/// [`EngineEvent::Approved`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepApproval {
    /// Who acknowledged.
    pub by: String,
    /// When they acknowledged (RFC 3339, as written in the ACK).
    pub at: String,
    /// Where the engine found the ACK (`file` or `run-resource`).
    pub source: ApprovalSource,
}

/// An approval a person must give.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    /// The run.
    pub run_id: String,
    /// The `gate.approval` step.
    pub step: String,
    /// Who may ACK.
    pub approvers: Vec<String>,
    /// The question.
    pub message: String,
}

/// A run as the API and the status page show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    /// The run id.
    pub run_id: String,
    /// The playbook.
    pub playbook: String,
    /// `api`, `alertmanager`, `schedule`.
    pub trigger: String,
    /// Who.
    pub who: String,
    /// The incident.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// The lock target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Where it is.
    pub state: RunState,
    /// How it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Submitted.
    pub created_at: Timestamp,
    /// Started executing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Mutations applied.
    pub mutations_applied: usize,
    /// The steps.
    pub steps: Vec<StepView>,
    /// What happened, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Approvals still missing.
    pub pending_approvals: Vec<PendingApproval>,
    /// The journal file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
}

struct RunRecord {
    view: RunView,
    plan: Plan,
    step_started: HashMap<String, tokio::time::Instant>,
    stop: StopHandle,
    cancel: watch::Sender<bool>,
    done: watch::Sender<bool>,
}

impl RunRecord {
    fn push(&mut self, at: Timestamp, text: String) {
        if self.view.timeline.len() < MAX_TIMELINE {
            self.view.timeline.push(TimelineEntry { at, text });
        }
    }
}

/// Settings every run of this daemon shares.
#[derive(Debug, Clone)]
pub struct RunDefaults {
    /// Where journals go.
    pub state_dir: PathBuf,
    /// Prometheus for guards.
    pub prometheus_url: Option<String>,
    /// Notification channels.
    pub notify: Vec<crate::notify::ChannelConfig>,
    /// Refuse a run whose first notification reached nobody (config `notify.required`).
    pub notify_required: bool,
    /// Per-call timeout.
    pub call_timeout: std::time::Duration,
    /// The namespace of the runs' lock Leases (`None`: each run's target namespace). The
    /// daemon uses its own namespace, so it needs Lease writes nowhere else.
    pub lock_namespace: Option<String>,
    /// The key that seals the daemon's `Run` resources (see [`crate::k8s::runs::RunSeal`]);
    /// `None`: runs are not sealed and no other replica takes them over.
    pub seal: Option<Arc<crate::k8s::runs::RunSeal>>,
}

struct Inner {
    executor: Arc<dyn Executor>,
    playbooks: Playbooks,
    defaults: RunDefaults,
    metrics: Arc<DaemonMetrics>,
    clock: Clock,
    leader: watch::Receiver<bool>,
    runs: Mutex<BTreeMap<String, RunRecord>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Broad evidence captures the runs share under a storm.
    captures: Arc<crate::snapshot::SharedCaptures>,
}

/// The daemon's runs. Cheap to clone.
#[derive(Clone)]
pub struct RunManager {
    inner: Arc<Inner>,
}

// === impl RunManager ===

impl RunManager {
    /// A manager executing through `executor`; runs start only while `leader` is true.
    pub fn new(
        executor: Arc<dyn Executor>,
        playbooks: Playbooks,
        defaults: RunDefaults,
        metrics: Arc<DaemonMetrics>,
        clock: Clock,
        leader: watch::Receiver<bool>,
    ) -> RunManager {
        RunManager {
            inner: Arc::new(Inner {
                executor,
                playbooks,
                defaults,
                metrics,
                clock,
                leader,
                runs: Mutex::new(BTreeMap::new()),
                locks: Mutex::new(HashMap::new()),
                tasks: Mutex::new(Vec::new()),
                captures: Arc::new(crate::snapshot::SharedCaptures::new(
                    crate::snapshot::SHARE_WINDOW,
                )),
            }),
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.defaults.state_dir
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Plans a run and queues it; returns its view (state `queued`).
    pub fn submit(&self, req: RunRequest) -> Result<RunView, RunError> {
        self.submit_checked(req, |_| Ok(()))
    }

    /// [`RunManager::submit`], refusing the run when `check` refuses its plan (a token's
    /// scope). Every run is also refused when its plan is over [`MAX_PLAN_BYTES`]. (Incident
    /// ids from outside — API bodies, alert labels — are checked with [`validate_incident`]
    /// where they enter.)
    pub fn submit_checked(
        &self,
        req: RunRequest,
        check: impl FnOnce(&Plan) -> Result<(), RunError>,
    ) -> Result<RunView, RunError> {
        let playbook = self.inner.playbooks.load(&req.playbook)?;
        let run_id = match &req.run_id {
            Some(id) => id.clone(),
            // A fresh id that no run of this daemon and no journal has (48 random bits make
            // a clash rare; it is never silent).
            None => {
                let mut id = journal::new_run_id();
                for _ in 0..3 {
                    if !self.knows(&id) {
                        break;
                    }
                    id = journal::new_run_id();
                }
                id
            }
        };
        let plan =
            plan::plan(&playbook, &req.params, &run_id).map_err(|source| RunError::Plan {
                playbook: playbook.name().to_string(),
                source,
            })?;
        check(&plan)?;
        check_plan_size(&plan)?;
        self.enqueue(plan, req.trigger, req.who, req.incident, None)
    }

    /// Queues the resumption of a run whose journal is in this daemon's state directory.
    pub fn resume_local(&self, run_id: &str, who: &str) -> Result<RunView, RunError> {
        let plan = crate::engine::load_plan(self.state_dir(), run_id).map_err(|source| {
            RunError::Resume {
                run_id: run_id.to_string(),
                source,
            }
        })?;
        let path = journal::journal_path(self.state_dir(), run_id);
        let (trigger, incident) = match journal::read(&path) {
            Ok((entries, _)) => entries
                .iter()
                .find_map(|e| match &e.record {
                    journal::Record::RunStarted {
                        trigger, incident, ..
                    } => Some((trigger_from(trigger), incident.clone())),
                    _ => None,
                })
                .unwrap_or((Trigger::Api, None)),
            Err(_) => (Trigger::Api, None),
        };
        self.enqueue(
            plan,
            trigger,
            who.to_string(),
            incident,
            Some(run_id.to_string()),
        )
    }

    /// True when a run of this daemon or a journal in its state directory has `run_id`.
    fn knows(&self, run_id: &str) -> bool {
        let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.contains_key(run_id) || journal::run_dir(self.state_dir(), run_id).exists()
    }

    fn enqueue(
        &self,
        plan: Plan,
        trigger: Trigger,
        who: String,
        incident: Option<String>,
        resume: Option<String>,
    ) -> Result<RunView, RunError> {
        let now = self.inner.clock.now();
        let run_id = plan.run_id.clone();
        let steps = plan
            .steps
            .iter()
            .map(|s| StepView {
                name: s.name.clone(),
                action: s.action.name().to_string(),
                state: StepState::Pending,
                detail: String::new(),
                started_at: None,
                finished_at: None,
                approval: None,
            })
            .collect();
        let view = RunView {
            run_id: run_id.clone(),
            playbook: plan.playbook.clone(),
            trigger: trigger.as_str().to_string(),
            who: who.clone(),
            incident: incident.clone(),
            lock: plan.lock.clone(),
            state: RunState::Queued,
            outcome: None,
            reason: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            mutations_applied: 0,
            steps,
            timeline: vec![TimelineEntry {
                at: now,
                text: match &resume {
                    Some(_) => format!("queued for resumption by {who}"),
                    None => format!("queued by {who} ({})", trigger.as_str()),
                },
            }],
            pending_approvals: Vec::new(),
            journal: None,
        };
        let (cancel, cancel_rx) = watch::channel(false);
        let (done, _) = watch::channel(false);
        let stop = StopHandle::new();
        let record = RunRecord {
            view: view.clone(),
            plan: plan.clone(),
            step_started: HashMap::new(),
            stop: stop.clone(),
            cancel,
            done,
        };
        {
            let mut runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
            // A run id in use is an error, never a second run under the same id (whose
            // outcome would be reported as the first one's). A resumption may follow its own
            // finished run; a new run may not reuse the id of a journal.
            let taken = match runs.get(&run_id) {
                Some(existing) => resume.is_none() || !*existing.done.borrow(),
                None => resume.is_none() && journal::run_dir(self.state_dir(), &run_id).exists(),
            };
            if taken {
                tracing::warn!(run = %run_id, "run id already in use: not queued");
                return Err(RunError::DuplicateRunId { run_id });
            }
            runs.insert(run_id.clone(), record);
            prune(&mut runs);
        }
        self.update_queue_metrics();
        tracing::info!(run = %run_id, playbook = %plan.playbook, trigger = trigger.as_str(), who = %who, "run queued");
        let manager = self.clone();
        let opts = RunOptions {
            dry_run: false,
            resume,
            trigger,
            who,
            incident,
            state_dir: self.inner.defaults.state_dir.clone(),
            prometheus_url: self.inner.defaults.prometheus_url.clone(),
            notify: self.inner.defaults.notify.clone(),
            notify_required: self.inner.defaults.notify_required,
            namespace: None,
            lock_namespace: self.inner.defaults.lock_namespace.clone(),
            seal: self.inner.defaults.seal.clone(),
            call_timeout: self.inner.defaults.call_timeout,
            handle_signals: false,
            stop: Some(stop),
            wait_lock: std::time::Duration::ZERO,
            shared_captures: Some(self.inner.captures.clone()),
        };
        let task = tokio::spawn(async move { manager.drive(plan, opts, cancel_rx).await });
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        Ok(view)
    }

    async fn drive(self, plan: Plan, opts: RunOptions, mut cancel: watch::Receiver<bool>) {
        let run_id = plan.run_id.clone();
        // 1. Leadership. A replica on standby keeps the run queued, and says so.
        let mut leader = self.inner.leader.clone();
        if !*leader.borrow() {
            self.with_run(&run_id, |r, now| {
                r.push(
                    now,
                    "waiting: this daemon is on standby; the run starts when it leads".to_string(),
                );
            });
        }
        let lead = tokio::select! {
            r = leader.wait_for(|l| *l) => r.is_ok(),
            _ = cancel.wait_for(|c| *c) => false,
        };
        if !lead || *cancel.borrow() {
            self.finish_cancelled(&run_id);
            return;
        }
        // 2. The lock target, one run at a time in this process.
        let key = plan.lock.clone().unwrap_or_else(|| format!("run:{run_id}"));
        let lock = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let guard = match lock.clone().try_lock_owned() {
            Ok(guard) => Some(guard),
            Err(_) => {
                self.with_run(&run_id, |r, now| {
                    r.push(now, format!("waiting: another run on {key} goes first"));
                });
                tokio::select! {
                    g = lock.clone().lock_owned() => Some(g),
                    _ = cancel.wait_for(|c| *c) => None,
                }
            }
        };
        let Some(guard) = guard.filter(|_| !*cancel.borrow()) else {
            self.finish_cancelled(&run_id);
            return;
        };
        // 3. Execute.
        let trigger = opts.trigger.as_str();
        self.with_run(&run_id, |r, now| {
            r.view.state = RunState::Running;
            r.view.started_at = Some(now);
            r.push(now, "started".to_string());
        });
        self.update_queue_metrics();
        let (tx, mut rx) = mpsc::channel(256);
        let consumer = {
            let manager = self.clone();
            let run_id = run_id.clone();
            let playbook = plan.playbook.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    manager.on_event(&run_id, &playbook, event);
                }
            })
        };
        let playbook = plan.playbook.clone();
        let result = self.inner.executor.execute(plan, opts, tx).await;
        // The sender is gone with the executor's future: drain the remaining events.
        let _ = consumer.await;
        match result {
            Ok(outcome) => {
                self.inner
                    .metrics
                    .run_finished(&playbook, trigger, outcome.outcome.as_str());
                tracing::info!(run = %run_id, outcome = %outcome.outcome, "run finished");
                self.with_run(&run_id, |r, now| {
                    r.view.state = RunState::Finished;
                    r.view.outcome = Some(outcome.outcome);
                    r.view.reason = outcome.reason.clone();
                    r.view.finished_at = Some(now);
                    r.view.mutations_applied = outcome.mutations_applied;
                    r.view.journal = outcome.journal.clone();
                    let text = match &outcome.reason {
                        Some(reason) => format!("finished: {} ({reason})", outcome.outcome),
                        None => format!("finished: {}", outcome.outcome),
                    };
                    r.push(now, text);
                });
            }
            Err(err) => {
                self.inner.metrics.run_finished(&playbook, trigger, "error");
                tracing::error!(run = %run_id, error = %err, category = err.category(), "run could not execute");
                self.with_run(&run_id, |r, now| {
                    r.view.state = RunState::Error;
                    r.view.reason = Some(format!("{err}"));
                    r.view.finished_at = Some(now);
                    r.push(now, format!("error: {err}"));
                });
            }
        }
        drop(guard);
        drop(lock);
        {
            // Forget lock targets nobody waits for.
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, m| Arc::strong_count(m) > 1);
        }
        self.mark_done(&run_id);
        self.update_queue_metrics();
    }

    fn finish_cancelled(&self, run_id: &str) {
        self.with_run(run_id, |r, now| {
            r.view.state = RunState::Cancelled;
            r.view.finished_at = Some(now);
            r.push(now, "cancelled before it started".to_string());
        });
        self.mark_done(run_id);
        self.update_queue_metrics();
    }

    fn mark_done(&self, run_id: &str) {
        let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = runs.get(run_id) {
            r.done.send_replace(true);
        }
    }

    fn with_run(&self, run_id: &str, f: impl FnOnce(&mut RunRecord, Timestamp)) {
        let now = self.inner.clock.now();
        let mut runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = runs.get_mut(run_id) {
            f(r, now);
        }
    }

    fn on_event(&self, run_id: &str, playbook: &str, event: EngineEvent) {
        let metrics = self.inner.metrics.clone();
        let state_dir = self.inner.defaults.state_dir.clone();
        self.with_run(run_id, |r, now| match event {
            EngineEvent::RunStarted {
                journal, resumed, ..
            } => {
                r.view.journal = journal;
                if resumed {
                    r.push(now, "resumed from its journal".to_string());
                }
            }
            EngineEvent::StepStarted { step, action, .. } => {
                r.step_started
                    .insert(step.clone(), tokio::time::Instant::now());
                if let Some(s) = r.view.steps.iter_mut().find(|s| s.name == step) {
                    s.state = StepState::Running;
                    s.started_at = Some(now);
                }
                let waiting = (action == "gate.approval")
                    .then(|| approval_of(&r.plan, &step))
                    .flatten()
                    .filter(|_| !approval_path(&state_dir, run_id, &step).exists());
                if let Some((approvers, message)) = waiting {
                    if let Some(s) = r.view.steps.iter_mut().find(|s| s.name == step) {
                        s.state = StepState::AwaitingAck;
                    }
                    r.view.pending_approvals.push(PendingApproval {
                        run_id: run_id.to_string(),
                        step: step.clone(),
                        approvers,
                        message,
                    });
                }
                r.push(now, format!("step {step} ({action}) started"));
            }
            EngineEvent::StepDiff { step, summary, .. } => {
                if let Some(s) = r.view.steps.iter_mut().find(|s| s.name == step) {
                    s.detail = summary;
                }
            }
            EngineEvent::Prepared { notes } => {
                r.push(now, format!("prepared: {}", notes.join(", ")));
            }
            EngineEvent::MutationApplied { step, description } => {
                r.view.mutations_applied += 1;
                r.push(now, format!("{step}: {description}"));
            }
            EngineEvent::Approved {
                step,
                by,
                at,
                source,
            } => {
                r.push(now, format!("step {step}: approved by {by} (via {source})"));
                if let Some(s) = r.view.steps.iter_mut().find(|s| s.name == step) {
                    if s.state == StepState::AwaitingAck {
                        s.state = StepState::Running;
                    }
                    s.approval = Some(StepApproval { by, at, source });
                }
                r.view.pending_approvals.retain(|a| a.step != step);
            }
            EngineEvent::ApprovalRejected { step, by, reason } => {
                r.push(now, format!("step {step}: ACK by {by} rejected: {reason}"));
            }
            EngineEvent::Verifying { step, timeout } => {
                // A gate waiting for its ACK verifies by waiting: it stays `awaiting-ack`.
                if let Some(s) = r
                    .view
                    .steps
                    .iter_mut()
                    .find(|s| s.name == step && s.state != StepState::AwaitingAck)
                {
                    s.state = StepState::Verifying;
                }
                r.push(
                    now,
                    format!("{step}: verifying (up to {}s)", timeout.as_secs()),
                );
            }
            EngineEvent::StepFinished { step, result } => {
                let kind = StepResultKind::of(&result);
                let label = kind.as_str();
                let seconds = r
                    .step_started
                    .remove(&step)
                    .map(|t| t.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                let action = r
                    .view
                    .steps
                    .iter()
                    .find(|s| s.name == step)
                    .map(|s| s.action.clone())
                    .unwrap_or_default();
                metrics.step_finished(playbook, &action, label, seconds);
                if let Some(s) = r.view.steps.iter_mut().find(|s| s.name == step) {
                    s.state = StepState::Ended(kind);
                    s.finished_at = Some(now);
                    if let StepResult::Failed { error, .. } = &result {
                        s.detail = error.clone();
                    }
                }
                r.view.pending_approvals.retain(|a| a.step != step);
                r.push(now, format!("step {step}: {label}"));
            }
            EngineEvent::Progress {
                step,
                what,
                done,
                total,
            } => {
                if let Some(s) = r.view.steps.iter_mut().find(|s| s.name == step) {
                    s.detail = format!("{what}: {done}/{total}");
                }
            }
            // Failed deliveries are counted where they happen, in `notify`
            // (`ripcord_notifications_total{outcome="failed"}`).
            EngineEvent::Warning { message } => r.push(now, format!("warning: {message}")),
            EngineEvent::Finished { .. } => {}
        });
    }

    /// Asks a run to stop: a queued run is cancelled, a running one stops at its next safe
    /// point (journaled as interrupted, resumable).
    pub fn cancel(&self, run_id: &str, by: &str) -> Result<RunView, RunError> {
        let mut runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        let r = runs.get_mut(run_id).ok_or_else(|| RunError::NotFound {
            run_id: run_id.to_string(),
        })?;
        if !r.view.state.is_active() {
            return Err(RunError::AlreadyFinished {
                run_id: run_id.to_string(),
                state: r.view.state.as_str().to_string(),
            });
        }
        r.cancel.send_replace(true);
        r.stop.stop(StopReason::Interrupted { by: by.to_string() });
        let now = self.inner.clock.now();
        r.push(now, format!("cancel requested by {by}"));
        tracing::info!(run = %run_id, by = %by, "cancel requested");
        Ok(r.view.clone())
    }

    /// Stops every executing run at its next safe point because the daemon shuts down or lost
    /// leadership: each ends `interrupted`, its `Run` status saying so in `stoppedBy` (the next
    /// leader takes it over).
    pub fn stop_all(&self, cause: crate::k8s::runs::DaemonStop) {
        let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        for r in runs.values().filter(|r| r.view.state == RunState::Running) {
            tracing::info!(run = %r.view.run_id, cause = cause.as_str(), "daemon stops the run");
            r.stop.stop(StopReason::Daemon(cause));
        }
    }

    /// Waits (bounded) until every run task ended; returns false on timeout.
    pub async fn drain(&self, bound: std::time::Duration) -> bool {
        let tasks: Vec<_> = {
            let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *tasks)
        };
        let queued: Vec<String> = {
            let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.values()
                .filter(|r| r.view.state == RunState::Queued)
                .map(|r| r.view.run_id.clone())
                .collect()
        };
        // Queued runs are cancelled: a restart (or the next leader) picks them up again only
        // if they had started; queued runs never touched anything.
        for id in queued {
            let _ = self.cancel(&id, "shutdown");
        }
        tokio::time::timeout(bound, futures::future::join_all(tasks))
            .await
            .is_ok()
    }

    /// Records an ACK for `step` of `run_id` by `by`: written to
    /// `<state-dir>/runs/<id>/approvals/<step>.json` (where `gate.approval` looks for it).
    pub fn approve(
        &self,
        run_id: &str,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<PathBuf, RunError> {
        let approvers = {
            let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
            match runs.get(run_id) {
                Some(r) => {
                    if !r.view.state.is_active() {
                        return Err(RunError::AlreadyFinished {
                            run_id: run_id.to_string(),
                            state: r.view.state.as_str().to_string(),
                        });
                    }
                    approval_of(&r.plan, step)
                        .ok_or_else(|| RunError::NoSuchApproval {
                            run_id: run_id.to_string(),
                            step: step.to_string(),
                        })?
                        .0
                }
                None => {
                    return Err(RunError::NotFound {
                        run_id: run_id.to_string(),
                    });
                }
            }
        };
        if !approvers.is_empty() && !approvers.iter().any(|a| a == by) {
            return Err(RunError::NotAnApprover {
                by: by.to_string(),
                step: step.to_string(),
                approvers: approvers.join(", "),
            });
        }
        let now = self.inner.clock.now();
        let approval = journal::approval::Approval {
            run_id: run_id.to_string(),
            step: step.to_string(),
            by: by.to_string(),
            at: now.to_string(),
            comment: comment.map(str::to_string),
        };
        let path = journal::approval::write(self.state_dir(), &approval).map_err(|e| {
            let path = approval_path(self.state_dir(), run_id, step);
            match e {
                journal::approval::ApprovalError::Write { source, .. }
                | journal::approval::ApprovalError::Read { source, .. } => {
                    RunError::Io { path, source }
                }
                journal::approval::ApprovalError::Parse { source, .. } => RunError::Io {
                    path,
                    source: std::io::Error::other(source),
                },
            }
        })?;
        self.with_run(run_id, |r, now| {
            r.view.pending_approvals.retain(|a| a.step != step);
            if let Some(s) = r
                .view
                .steps
                .iter_mut()
                .find(|s| s.name == step && s.state == StepState::AwaitingAck)
            {
                s.state = StepState::Running;
            }
            r.push(
                now,
                format!("step {step}: ACK by {by} received via the API"),
            );
        });
        tracing::info!(run = %run_id, step = %step, by = %by, "approval recorded");
        Ok(path)
    }

    /// One run: in memory, else summarized from its journal.
    pub fn get(&self, run_id: &str) -> Option<RunView> {
        {
            let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = runs.get(run_id) {
                return Some(r.view.clone());
            }
        }
        journal::validate_run_id(run_id).ok()?;
        let path = journal::journal_path(self.state_dir(), run_id);
        let (entries, _) = journal::read(&path).ok()?;
        let summary = journal::summarize(run_id, &path, &entries);
        Some(view_from_summary(&summary))
    }

    /// Every run, newest first: this process's and the ones journaled in the state directory.
    pub fn list(&self) -> Vec<RunView> {
        let mut out: Vec<RunView> = {
            let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.values().map(|r| r.view.clone()).collect()
        };
        if let Ok(summaries) = journal::list_runs(self.state_dir()) {
            for s in summaries {
                if !out.iter().any(|v| v.run_id == s.run_id) {
                    out.push(view_from_summary(&s));
                }
            }
        }
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.run_id.cmp(&a.run_id))
        });
        out
    }

    /// True while the run is queued or executing in this process.
    pub fn is_active(&self, run_id: &str) -> bool {
        let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.get(run_id).is_some_and(|r| r.view.state.is_active())
    }

    /// Waits until the run ended; returns its final view (`None`: unknown run).
    pub async fn wait(&self, run_id: &str) -> Option<RunView> {
        let mut done = {
            let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.get(run_id)?.done.subscribe()
        };
        let _ = done.wait_for(|d| *d).await;
        self.get(run_id)
    }

    /// The impact queries (`snapshot.prometheus`) of a run known to this process.
    pub fn impact_queries(&self, run_id: &str) -> Vec<crate::plan::NamedQuery> {
        let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.get(run_id)
            .map(|r| r.plan.snapshot.prometheus.clone())
            .unwrap_or_default()
    }

    /// Approvals pending in active runs.
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.values()
            .filter(|r| r.view.state.is_active())
            .flat_map(|r| r.view.pending_approvals.clone())
            .collect()
    }

    fn update_queue_metrics(&self) {
        let (queued, running) = {
            let runs = self.inner.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.values().fold((0, 0), |(q, a), r| match r.view.state {
                RunState::Queued => (q + 1, a),
                RunState::Running => (q, a + 1),
                _ => (q, a),
            })
        };
        self.inner.metrics.set_queue(queued, running);
    }
}

/// Checks an incident id before it reaches a journal, a `Run` resource or a file name.
pub fn validate_incident(id: &str) -> Result<(), RunError> {
    crate::cleanup::incident::validate_id(id).map_err(|_| RunError::InvalidIncident {
        id: id.chars().take(80).collect(),
    })
}

fn check_plan_size(plan: &Plan) -> Result<(), RunError> {
    let bytes = serde_json::to_vec(plan)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if bytes > MAX_PLAN_BYTES {
        tracing::warn!(run = %plan.run_id, playbook = %plan.playbook, bytes, limit = MAX_PLAN_BYTES, "run refused: too large to journal");
        return Err(RunError::TooLarge {
            bytes,
            limit: MAX_PLAN_BYTES,
        });
    }
    Ok(())
}

/// Refuses a plan whose `object.patch` steps write outside `scope` (the namespace of a step
/// without one is the run's: the `namespace` parameter, else `default`, as the engine does).
pub fn check_object_patches(
    plan: &Plan,
    scope: &crate::daemon::auth::ObjectPatchScope,
) -> Result<(), RunError> {
    let run_namespace = plan
        .params
        .get("namespace")
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    for step in &plan.steps {
        if let Action::ObjectPatch(patch) = &step.action {
            let namespace = if is_cluster_scoped(&patch.kind) {
                None
            } else {
                Some(patch.namespace.as_deref().unwrap_or(run_namespace))
            };
            if !scope.allows(namespace, &patch.kind) {
                return Err(RunError::NotPermitted {
                    message: format!(
                        "step {} may not patch {} {}{} with this token (objectPatch allows namespaces [{}], kinds [{}]; kube-system, Secrets and Leases only when listed)",
                        step.name,
                        patch.kind,
                        namespace.map(|ns| format!("{ns}/")).unwrap_or_default(),
                        patch.name,
                        scope.namespaces.join(", "),
                        scope.kinds.join(", "),
                    ),
                });
            }
        }
    }
    Ok(())
}

fn is_cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Node"
            | "Namespace"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CustomResourceDefinition"
            | "PersistentVolume"
            | "StorageClass"
            | "PriorityClass"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
    )
}

/// `<state-dir>/runs/<id>/approvals/<step>.json`.
pub fn approval_path(state_dir: &Path, run_id: &str, step: &str) -> PathBuf {
    journal::approval::approval_path(state_dir, run_id, step)
}

fn approval_of(plan: &Plan, step: &str) -> Option<(Vec<String>, String)> {
    plan.steps
        .iter()
        .find(|s| s.name == step)
        .and_then(|s| match &s.action {
            Action::GateApproval(g) => Some((g.approvers.clone(), g.message.clone())),
            _ => None,
        })
}

fn trigger_from(s: &str) -> Trigger {
    match s {
        "cli" => Trigger::Cli,
        "alertmanager" => Trigger::Alertmanager,
        "schedule" => Trigger::Schedule,
        _ => Trigger::Api,
    }
}

fn view_from_summary(s: &journal::RunSummary) -> RunView {
    let state = if s.outcome.is_some() {
        RunState::Finished
    } else {
        RunState::Unfinished
    };
    RunView {
        run_id: s.run_id.clone(),
        playbook: s.playbook.clone(),
        trigger: String::new(),
        who: s.who.clone(),
        incident: s.incident.clone(),
        lock: None,
        state,
        outcome: s.outcome,
        reason: s.problem.clone().or_else(|| {
            s.outcome.is_none().then(|| {
                "no end record: another process runs it, or it stopped without finishing"
                    .to_string()
            })
        }),
        created_at: s.started_at.unwrap_or(Timestamp::UNIX_EPOCH),
        started_at: s.started_at,
        finished_at: s.finished_at,
        mutations_applied: s.mutations,
        steps: Vec::new(),
        timeline: Vec::new(),
        pending_approvals: Vec::new(),
        journal: Some(s.journal.clone()),
    }
}

fn prune(runs: &mut BTreeMap<String, RunRecord>) {
    let finished: Vec<String> = runs
        .values()
        .filter(|r| !r.view.state.is_active())
        .map(|r| r.view.run_id.clone())
        .collect();
    if finished.len() > KEEP_FINISHED {
        // Run ids sort by time: drop the oldest.
        for id in finished.iter().take(finished.len() - KEEP_FINISHED) {
            runs.remove(id);
        }
    }
}
