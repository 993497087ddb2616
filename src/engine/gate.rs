//! The first-mutation gate: everything that must happen before a run's first write — the
//! per-target lock, the pre-checks, the "about to …" notification and the snapshot — and the
//! notifications after it.

use super::guards::{FLEET_LOCK, FleetGate, FleetLock, lock_refusal};
use super::{EngineError, EngineEvent, Events, SharedJournal, StopHandle, StopReason};
use crate::actions::{self, Mutation, ObjectRef};
use crate::engine::resume::Prior;
use crate::engine::{Engine, RunOptions};
use crate::journal::{DeliveryRecord, Outcome, Record};
use crate::k8s::leases::{self, LockGuard};
use crate::metrics::prometheus::{self, Prometheus};
use crate::notify::{ChannelConfig, Delivery, Notification, Notifier, Phase};
use crate::plan::Plan;
use crate::snapshot::{self, Manifest, SnapshotError, SnapshotRequest};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long the end of a run waits for the broad snapshot to finish.
const SNAPSHOT_REST_WAIT: Duration = Duration::from_secs(60);
/// Bound of the fast target capture (it sits on the critical path).
const SNAPSHOT_TARGETS_WAIT: Duration = Duration::from_secs(20);

/// Why the gate could not be passed, other than a refusal.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GateError {
    /// The journal could not be written.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The lock could not be taken because the API failed (not because someone holds it).
    #[error("cannot take the run's lock: {reason}")]
    LockUnavailable {
        /// The lock error's category.
        category: &'static str,
        /// The error chain.
        reason: String,
    },
}

/// The two phases of the pre-mutation snapshot, as journaled (`SnapshotTaken`/`SnapshotFailed`
/// `phase`, a string in the journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotPhase {
    /// The target objects, awaited before the first write.
    Targets,
    /// The rest of the namespace, captured concurrently.
    Rest,
}

impl SnapshotPhase {
    /// The spelling in the journal.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SnapshotPhase::Targets => "targets",
            SnapshotPhase::Rest => "rest",
        }
    }

    /// The phase a journal record names (`None`: one this build does not know).
    pub(crate) fn from_journal(phase: &str) -> Option<SnapshotPhase> {
        [SnapshotPhase::Targets, SnapshotPhase::Rest]
            .into_iter()
            .find(|p| p.as_str() == phase)
    }
}

/// The gate's state for one run.
pub(crate) struct GateState {
    /// True once the gate was passed (by this process or, on resume, an earlier one).
    pub passed: bool,
    /// The run's notification channels.
    pub notifier: Option<Arc<Notifier>>,
    resolve_failures: Vec<DeliveryRecord>,
    client: kube::Client,
    lock_ttl: Duration,
    prometheus: Option<Prometheus>,
    lock: Option<LockGuard>,
    snapshot_taken: bool,
    snapshot_rest: Option<tokio::task::JoinHandle<Result<Manifest, SnapshotError>>>,
    snapshot_dir: PathBuf,
    /// Stops the run when the lock is lost (another holder took the Lease).
    stop: StopHandle,
    /// The task watching the lock for loss.
    lock_watch: Option<tokio::task::JoinHandle<()>>,
    /// The cluster-wide fleet lock, held while fleet-guarded writes go out.
    fleet: FleetLock,
    /// What the run's diffs read of their targets: the snapshot of the targets reuses it.
    pub observed: actions::Observed,
}

impl GateState {
    pub fn new(
        engine: &Engine,
        plan: &Plan,
        opts: &RunOptions,
        prior: &Prior,
        stop: StopHandle,
    ) -> GateState {
        let mut channels: Vec<ChannelConfig> = opts.notify.clone();
        // A channel that cannot be resolved (its URL variable unset) is journaled as a failed
        // delivery: a broken notification setup never blocks mitigation.
        let mut resolve_failures = Vec::new();
        for channel in &plan.notify {
            match ChannelConfig::resolve(channel) {
                Ok(c) => channels.push(c),
                Err(err) => resolve_failures.push(DeliveryRecord {
                    channel: channel.name.clone(),
                    ok: false,
                    error: Some(err.to_string()),
                }),
            }
        }
        let notifier =
            (!channels.is_empty()).then(|| Arc::new(Notifier::new(channels, engine.http.clone())));
        GateState {
            // A resumed run re-takes the lock before its next write, but does not notify
            // "about to" or snapshot again if an earlier process already did.
            passed: false,
            notifier,
            resolve_failures,
            client: engine.client.clone(),
            lock_ttl: engine.lock_ttl,
            prometheus: opts
                .prometheus_url
                .as_ref()
                .map(|url| Prometheus::new(url.clone(), engine.http.clone())),
            lock: None,
            snapshot_taken: prior.snapshot_taken,
            snapshot_rest: None,
            snapshot_dir: crate::journal::run_dir(&opts.state_dir, &plan.run_id).join("snapshot"),
            stop,
            lock_watch: None,
            fleet: FleetLock::default(),
            observed: actions::Observed::default(),
        }
    }

    /// Before applying a diff: takes the fleet lock when its writes are `fleet_guarded` (see
    /// [`super::guards`]), lets it go when they are not.
    pub async fn fleet_gate(
        &mut self,
        fleet_guarded: bool,
        plan: &Plan,
        opts: &RunOptions,
        journal: &SharedJournal,
        events: &Events,
    ) -> Result<FleetGate, GateError> {
        self.fleet
            .gate(
                fleet_guarded,
                &self.client,
                &plan.run_id,
                self.lock_ttl,
                opts,
                journal,
                events,
            )
            .await
    }

    /// Stops the run at its next safe point if the lock is lost: writing on without it could
    /// race the new holder. The run ends interrupted and resumable (a resume takes the lock
    /// again first).
    fn watch_lock(&mut self, guard: &LockGuard, run_id: &str) {
        let mut lost = guard.lost_signal();
        let stop = self.stop.clone();
        let run_id = run_id.to_string();
        if let Some(old) = self.lock_watch.take() {
            old.abort();
        }
        self.lock_watch = Some(tokio::spawn(async move {
            if let Ok(holder) = lost.wait_for(Option::is_some).await {
                let holder = holder.clone().unwrap_or_default();
                tracing::error!(run = %run_id, holder = %holder, "lock lost: stopping the run");
                stop.stop(StopReason::Interrupted {
                    by: format!("the lock was lost to {holder}"),
                });
            }
        }));
    }

    /// Runs the gate before the first mutation `first`. `Some(reason)`: refused.
    pub async fn pass(
        &mut self,
        plan: &Plan,
        opts: &RunOptions,
        namespace: &str,
        first: &Mutation,
        journal: &SharedJournal,
        events: &Events,
    ) -> Result<Option<String>, GateError> {
        let mut notes = Vec::new();

        // 1. The per-target lock.
        if let Some(lock) = &plan.lock {
            let namespace = leases::lock_namespace(opts.lock_namespace.as_deref(), namespace);
            match leases::acquire_waiting(
                &self.client,
                namespace,
                lock,
                &plan.run_id,
                self.lock_ttl,
                opts.call_timeout,
                opts.wait_lock,
            )
            .await
            {
                Ok(guard) => {
                    notes.push(format!("lock {lock} (lease {namespace}/{})", guard.lease()));
                    self.watch_lock(&guard, &plan.run_id);
                    self.lock = Some(guard);
                }
                // Not a holder but an API that did not answer (after the retries `acquire`
                // makes) or refused the request: the run fails, it was not refused by a lock.
                Err(err) if !matches!(err, leases::LeaseError::Held { .. }) => {
                    return Err(GateError::LockUnavailable {
                        category: err.category(),
                        reason: crate::errors::error_chain(&err),
                    });
                }
                Err(err) => {
                    let reason = lock_refusal(&err, opts.wait_lock);
                    journal.append(Record::GuardTripped {
                        guard: format!("lock {lock}"),
                        kind: "lock".into(),
                        value: None,
                        reason: reason.clone(),
                    })?;
                    return Ok(Some(reason));
                }
            }
        }

        // 2. Pre-checks: each condition must hold.
        let has_guards =
            !plan.guards.pre_checks.is_empty() || !plan.guards.stop_conditions.is_empty();
        if has_guards {
            let Some(prom) = &self.prometheus else {
                let reason = "the playbook has guards but no Prometheus URL is configured \
                              (set prometheus.url in the config file)"
                    .to_string();
                journal.append(Record::GuardTripped {
                    guard: "preChecks".into(),
                    kind: "preCheck".into(),
                    value: None,
                    reason: reason.clone(),
                })?;
                return Ok(Some(reason));
            };
            for check in &plan.guards.pre_checks {
                match prom.evaluate(&check.prometheus).await {
                    Ok((true, value)) => {
                        notes.push(format!("pre-check {} passed ({value})", check.name));
                    }
                    Ok((false, value)) => {
                        let reason = format!(
                            "pre-check {} failed: {}",
                            check.name,
                            prometheus::explain(&check.prometheus, value, false)
                        );
                        journal.append(Record::GuardTripped {
                            guard: check.name.clone(),
                            kind: "preCheck".into(),
                            value: Some(value),
                            reason: reason.clone(),
                        })?;
                        return Ok(Some(reason));
                    }
                    Err(err) => {
                        let error = crate::errors::error_chain(&err);
                        journal.append(Record::GuardUnavailable {
                            guard: check.name.clone(),
                            error: error.clone(),
                        })?;
                        return Ok(Some(format!(
                            "pre-check {} could not be evaluated: {error}",
                            check.name
                        )));
                    }
                }
            }
        }

        // 3 + 4. Tell people and capture the targets, at once: both must be done before the
        // first write and neither needs the other, so the run waits for the slower of the two
        // (a chat webhook's answer, typically), not for their sum.
        let incident = opts
            .incident
            .as_deref()
            .map(|i| format!(" (incident {i})"))
            .unwrap_or_default();
        let what = if first.description.contains(&first.target.to_string()) {
            first.description.clone()
        } else {
            format!("{} ({})", first.description, first.target)
        };
        let text = format!(
            "about to {what}, run {}, by {}{incident}",
            plan.run_id, opts.who
        );
        let prepared = self.prepare_notification(
            plan,
            &opts.who,
            Phase::Started,
            format!("ripcord: about to {}", first.description),
            text,
            Some(&first.target),
        );
        let request = (plan.snapshot.enabled && !self.snapshot_taken)
            .then(|| snapshot_request(plan, namespace));
        let capture = async {
            let request = request.as_ref()?;
            let capture = snapshot::capture_targets(
                &self.client,
                request,
                &self.snapshot_dir,
                &self.observed,
            );
            Some(tokio::time::timeout(SNAPSHOT_TARGETS_WAIT, capture).await)
        };
        let send = async {
            match prepared {
                Some(prepared) => Some(prepared.send().await),
                None => None,
            }
        };
        let (record, captured) = futures::join!(send, capture);

        let told = matches!(&record, Some(Record::Notified { deliveries, .. })
            if deliveries.iter().any(|d| d.ok));
        if record.is_none() {
            notes.push("notifications: no channel configured, nobody was told".into());
        }
        if let Some(record) = record {
            if let Record::Notified { deliveries, .. } = &record {
                // One line per run start with each channel's outcome (a failed channel is not
                // repeated as a warning: the CLI sums up every delivery at the end).
                notes.push(format!(
                    "notifications: {}",
                    describe_deliveries(deliveries)
                ));
            }
            journal.append(record)?;
        }
        let reads = match captured {
            Some(captured) => Some(self.record_snapshot(captured, journal, events, &mut notes)?),
            None => None,
        };
        if opts.notify_required && !told {
            let reason = "notify.required is set and nobody was notified (no channel configured, \
                          or every delivery failed); nothing was changed"
                .to_string();
            journal.append(Record::GuardTripped {
                guard: "notify.required".into(),
                kind: "notify".into(),
                value: None,
                reason: reason.clone(),
            })?;
            return Ok(Some(reason));
        }
        // The rest of the snapshot runs concurrently with the mitigation.
        if let (Some(request), Some(reads)) = (request, reads) {
            let client = self.client.clone();
            let prom = self.prometheus.clone();
            let dir = self.snapshot_dir.clone();
            let shared = opts.shared_captures.clone();
            self.snapshot_rest = Some(tokio::spawn(async move {
                match shared {
                    Some(shared) => {
                        shared
                            .capture_rest(&client, &request, &dir, prom, reads)
                            .await
                    }
                    None => snapshot::capture_rest(&client, &request, &dir, prom, reads).await,
                }
            }));
        }

        self.passed = true;
        events.send(EngineEvent::Prepared { notes });
        Ok(None)
    }

    /// Journals the targets' capture (taken or failed) and returns what it read, for the broad
    /// capture to reuse.
    fn record_snapshot(
        &mut self,
        captured: Result<
            Result<(Manifest, snapshot::TargetReads), SnapshotError>,
            tokio::time::error::Elapsed,
        >,
        journal: &SharedJournal,
        events: &Events,
        notes: &mut Vec<String>,
    ) -> Result<snapshot::TargetReads, EngineError> {
        let dir = &self.snapshot_dir;
        let mut reads = snapshot::TargetReads::default();
        match captured {
            Ok(Ok((manifest, target_reads))) => {
                reads = target_reads;
                notes.push(format!("snapshot: {} object(s)", manifest.captured.len()));
                journal.append(snapshot_record(dir, SnapshotPhase::Targets, &manifest))?;
            }
            Ok(Err(err)) => {
                let error = crate::errors::error_chain(&err);
                events.send(EngineEvent::Warning {
                    message: format!("snapshot of the targets failed: {error}"),
                });
                journal.append(Record::SnapshotFailed {
                    phase: SnapshotPhase::Targets.as_str().into(),
                    error,
                })?;
            }
            Err(_) => {
                journal.append(Record::SnapshotFailed {
                    phase: SnapshotPhase::Targets.as_str().into(),
                    error: format!("timed out after {SNAPSHOT_TARGETS_WAIT:?}"),
                })?;
            }
        }
        self.snapshot_taken = true;
        Ok(reads)
    }

    /// The notification to send, with the channels that could not be resolved already recorded
    /// as failed deliveries (None: no channels at all).
    fn prepare_notification(
        &mut self,
        plan: &Plan,
        who: &str,
        phase: Phase,
        title: String,
        text: String,
        target: Option<&ObjectRef>,
    ) -> Option<PreparedNotification> {
        let notifier = self.notifier.clone();
        if notifier.is_none() && self.resolve_failures.is_empty() {
            return None;
        }
        let mut fields = BTreeMap::new();
        fields.insert("run".to_string(), plan.run_id.clone());
        fields.insert("playbook".to_string(), plan.playbook.clone());
        fields.insert("who".to_string(), who.to_string());
        if let Some(t) = target {
            fields.insert("target".to_string(), t.to_string());
        }
        Some(PreparedNotification {
            phase_name: phase_name(&phase),
            notification: Notification {
                run_id: plan.run_id.clone(),
                playbook: plan.playbook.clone(),
                phase,
                title,
                text,
                fields,
            },
            deliveries: std::mem::take(&mut self.resolve_failures),
            notifier,
        })
    }

    /// Sends one notification; returns the `Notified` record to journal (None: no channels).
    async fn notify(
        &mut self,
        plan: &Plan,
        who: &str,
        phase: Phase,
        title: String,
        text: String,
        target: Option<&ObjectRef>,
    ) -> Option<Record> {
        let prepared = self.prepare_notification(plan, who, phase, title, text, target)?;
        Some(prepared.send().await)
    }

    /// A step's result, to the channels (after the gate only).
    pub async fn notify_step(&mut self, plan: &Plan, who: &str, text: &str) -> Option<Record> {
        self.notify(
            plan,
            who,
            Phase::Step,
            format!("ripcord: {text}"),
            format!("{text} (run {})", plan.run_id),
            None,
        )
        .await
    }

    /// The end of the run, to the channels: always when the run did something or did not
    /// succeed; a run that found everything in place and changed nothing stays quiet.
    pub async fn notify_finished(
        &mut self,
        plan: &Plan,
        who: &str,
        outcome: Outcome,
        reason: Option<&str>,
        journal: &std::path::Path,
    ) -> Option<Record> {
        if !self.passed && outcome == Outcome::Succeeded {
            return None;
        }
        let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
        let text = format!(
            "run {} ({}) finished: {outcome}{reason}; journal {}",
            plan.run_id,
            plan.playbook,
            journal.display()
        );
        self.notify(
            plan,
            who,
            Phase::Finished,
            format!("ripcord: {} {outcome}", plan.playbook),
            text,
            None,
        )
        .await
    }

    /// Waits (bounded) for the broad snapshot, journals its manifest, releases the lock —
    /// with `stale_lock`, also a Lease an earlier (crashed) process of this run left behind.
    pub async fn finish(
        &mut self,
        plan: &Plan,
        opts: &RunOptions,
        namespace: &str,
        stale_lock: bool,
        journal: &SharedJournal,
        events: &Events,
    ) {
        if let Some(handle) = self.snapshot_rest.take() {
            let dir = self.snapshot_dir.clone();
            let record = match tokio::time::timeout(SNAPSHOT_REST_WAIT, handle).await {
                Ok(Ok(Ok(manifest))) => snapshot_record(&dir, SnapshotPhase::Rest, &manifest),
                Ok(Ok(Err(err))) => Record::SnapshotFailed {
                    phase: SnapshotPhase::Rest.as_str().into(),
                    error: crate::errors::error_chain(&err),
                },
                Ok(Err(join)) => Record::SnapshotFailed {
                    phase: SnapshotPhase::Rest.as_str().into(),
                    error: format!("capture task failed: {join}"),
                },
                Err(_) => Record::SnapshotFailed {
                    phase: SnapshotPhase::Rest.as_str().into(),
                    error: format!("not finished after {SNAPSHOT_REST_WAIT:?}"),
                },
            };
            if let Err(err) = journal.append(record) {
                tracing::warn!(error = %err, "cannot journal the snapshot manifest");
            }
        }
        if let Some(watch) = self.lock_watch.take() {
            watch.abort();
        }
        self.fleet.release(events).await;
        if stale_lock
            && let Err(err) = leases::release_if_held(
                &self.client,
                super::guards::fleet_lock_namespace(opts),
                FLEET_LOCK,
                &plan.run_id,
                opts.call_timeout,
            )
            .await
        {
            tracing::warn!(run = %plan.run_id, error = %err, "cannot release a stale fleet lock");
        }
        let released = match (self.lock.take(), &plan.lock) {
            (Some(lock), _) => lock.release().await,
            (None, Some(lock)) if stale_lock => {
                leases::release_if_held(
                    &self.client,
                    leases::lock_namespace(opts.lock_namespace.as_deref(), namespace),
                    lock,
                    &plan.run_id,
                    opts.call_timeout,
                )
                .await
            }
            _ => Ok(()),
        };
        if let Err(err) = released {
            events.send(EngineEvent::Warning {
                message: format!(
                    "releasing the lock failed (it expires by itself): {}",
                    crate::errors::error_chain(&err)
                ),
            });
        }
    }
}

fn phase_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Started => "started",
        Phase::Step => "step",
        Phase::Finished => "finished",
        Phase::Approval => "approval",
    }
}

/// Each channel's outcome: `incidents sent, ops failed (HTTP 500)`.
fn describe_deliveries(deliveries: &[DeliveryRecord]) -> String {
    deliveries
        .iter()
        .map(|d| match (&d.ok, &d.error) {
            (true, _) => format!("{} sent", d.channel),
            (false, Some(error)) => format!("{} failed ({error})", d.channel),
            (false, None) => format!("{} failed", d.channel),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn delivery_record(d: Delivery) -> DeliveryRecord {
    DeliveryRecord {
        channel: d.channel,
        ok: d.ok,
        error: d.error.or_else(|| {
            (!d.ok).then(|| {
                d.status
                    .map(|s| format!("HTTP {s}"))
                    .unwrap_or_else(|| "failed".into())
            })
        }),
    }
}

/// What to capture for `plan`: every step's targets, and broadly their namespaces plus the
/// playbook's extra ones (the run's namespace when there is none).
fn snapshot_request(plan: &Plan, namespace: &str) -> SnapshotRequest {
    let mut targets: Vec<ObjectRef> = Vec::new();
    for step in &plan.steps {
        if let Ok(action) = actions::build(&step.action) {
            for t in action.targets(namespace) {
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
        }
    }
    let mut namespaces: Vec<String> = plan.snapshot.namespaces.clone();
    for t in &targets {
        if let Some(ns) = &t.namespace
            && !namespaces.contains(ns)
        {
            namespaces.push(ns.clone());
        }
    }
    if namespaces.is_empty() {
        namespaces.push(namespace.to_string());
    }
    SnapshotRequest {
        targets,
        namespaces,
        spec: plan.snapshot.clone(),
    }
}

/// A notification ready to go, owning all it needs (so it can be sent while the gate does
/// something else).
struct PreparedNotification {
    phase_name: &'static str,
    notification: Notification,
    /// Deliveries already known (channels that could not be resolved).
    deliveries: Vec<DeliveryRecord>,
    notifier: Option<Arc<Notifier>>,
}

impl PreparedNotification {
    /// Posts to every channel; the `Notified` record to journal.
    async fn send(self) -> Record {
        let mut deliveries = self.deliveries;
        if let Some(n) = self.notifier {
            deliveries.extend(
                n.send(&self.notification)
                    .await
                    .into_iter()
                    .map(delivery_record),
            );
        }
        Record::Notified {
            phase: self.phase_name.to_string(),
            deliveries,
        }
    }
}

fn snapshot_record(dir: &std::path::Path, phase: SnapshotPhase, manifest: &Manifest) -> Record {
    Record::SnapshotTaken {
        dir: dir.display().to_string(),
        phase: phase.as_str().to_string(),
        captured: manifest.captured.len(),
        failed: manifest
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.what, f.error))
            .collect(),
    }
}
