//! The `Run` mirror: a background task that writes the run's bounded status into the cluster
//! after each batch of records, coalescing bursts. A failure is journaled once
//! (`MirrorFailed`) and mirroring stops; it never blocks the run.
//!
//! A daemon's run carries the daemon's seal ([`runs::RunSeal::seal_status`]), computed for
//! each status written since it covers the status's `stoppedBy` as well as the run's identity.

use super::{EngineEvent, Events, RunOptions, SharedJournal};
use crate::journal::Record;
use crate::k8s::runs::{self, Run, RunSpec, RunStatus};
use crate::plan::Plan;
use std::time::Duration;
use tokio::sync::watch;

/// Bound of the final write at the end of the run.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// A running mirror.
pub(crate) struct Mirror {
    tx: watch::Sender<RunStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Mirror {
    /// Creates the `Run` and starts mirroring `status` updates.
    ///
    /// When the engine already knows the `Run` CRD is not served (`crd`: an earlier create
    /// answered 404, or the CLI's discovery probe said so), no request is made: the failure is
    /// journaled as it would have been. A 404 here is remembered in `crd` for later runs.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        client: kube::Client,
        namespace: String,
        plan: &Plan,
        opts: &RunOptions,
        status: RunStatus,
        journal: SharedJournal,
        events: Events,
        crd: runs::RunCrdPresence,
    ) -> Mirror {
        let params = crate::journal::redact_params(&plan.params)
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, runs::cut(&v))
            })
            .collect();
        let mut run = Run::new(
            &plan.run_id,
            RunSpec {
                playbook: plan.playbook.clone(),
                params,
                trigger: opts.trigger.as_str().to_string(),
                who: opts.who.clone(),
                incident: opts.incident.clone(),
            },
        );
        run.metadata.namespace = Some(namespace.clone());
        run.metadata.labels = Some(
            [
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "ripcord".to_string(),
                ),
                (
                    "ripcord.dev/playbook".to_string(),
                    label_value(&plan.playbook),
                ),
            ]
            .into(),
        );
        let timeout = opts.call_timeout;
        // The daemon seals its runs so that only it takes them over (see `RunSeal`).
        let seal = opts.seal.clone();
        let (tx, mut rx) = watch::channel(status);
        let name = plan.run_id.clone();
        let task = tokio::spawn(async move {
            let fail = |err: runs::RunMirrorError| {
                let error = crate::errors::error_chain(&err);
                tracing::warn!(run = %name, error = %error, "Run mirror failed; continuing without it");
                let _ = journal.append(Record::MirrorFailed {
                    error: error.clone(),
                });
                events.send(EngineEvent::Warning {
                    message: format!("Run resource mirror failed (the run goes on): {error}"),
                });
            };
            if crd.known_absent() {
                fail(runs::RunMirrorError::CrdMissing);
                return;
            }
            if let Err(err) = runs::create_run(&client, &namespace, &run, timeout).await {
                if matches!(err, runs::RunMirrorError::CrdMissing) {
                    crd.mark_absent();
                }
                fail(err);
                return;
            }
            loop {
                let mut status = rx.borrow_and_update().clone();
                status.seal = seal
                    .as_ref()
                    .map(|key| key.seal_status(&namespace, &name, &run.spec, &status));
                if let Err(err) =
                    runs::write_status(&client, &namespace, &name, &status, timeout).await
                {
                    fail(err);
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Mirror { tx, task }
    }

    /// Queues a new status (only the latest is written).
    pub fn push(&self, status: RunStatus) {
        self.tx.send_replace(status);
    }

    /// Writes the final status and waits (bounded) for the task to end.
    pub async fn finish(self, status: RunStatus) {
        let Mirror { tx, task } = self;
        tx.send_replace(status);
        drop(tx);
        if tokio::time::timeout(FINISH_WAIT, task).await.is_err() {
            tracing::warn!("the final Run mirror write did not finish in time");
        }
    }
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}
