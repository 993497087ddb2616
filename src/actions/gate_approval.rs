//! `gate.approval`: block, bounded by the step's timeout, until one of the named approvers
//! acknowledges (a hand-off needs an ACK).
//!
//! No cluster mutation: the diff is always empty and the waiting happens in `verify`. An ACK
//! is either the file `<state-dir>/runs/<id>/approvals/<step>.json` (written by
//! `ripcord approve` on this machine or by the daemon's API) or the annotation
//! `approvals.ripcord.dev/<step>` on the run's `Run` custom resource (written by
//! `ripcord approve` on another machine). An ACK seen on the `Run` is copied to the local file
//! so that the run directory keeps who approved and when. An ACK by someone who is not among
//! the approvers is rejected (logged, reported to the engine as a [`Notice::AckRejected`] —
//! the CLI prints it, the daemon's timeline shows it — and the gate keeps waiting). The
//! accepted ACK is kept
//! and handed to the engine through [`Action::acknowledgement`], which journals it as an
//! `Approved` record (who, when, where it was found, the comment).
//!
//! The pending approval is announced once through the run's notification channels (phase
//! `approval`). Resuming re-announces it; an ACK given before the crash still counts.

use super::{Action, ActionContext, ActionError, Applied, Diff, Mutation, Notice, ObjectRef};
use crate::journal::approval::{self, Acknowledgement, Approval, ApprovalSource};
use crate::notify::{Notification, Phase};
use crate::playbook::catalog;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often the approval file and the `Run` are looked at.
const POLL: Duration = Duration::from_millis(250);

/// The `gate.approval` action.
#[derive(Debug)]
pub struct GateApproval {
    args: catalog::GateApproval,
    /// The ACK the last successful wait accepted.
    accepted: Mutex<Option<Acknowledgement>>,
}

// === impl GateApproval ===

impl GateApproval {
    /// Checks the arguments (at least one approver).
    pub fn new(args: catalog::GateApproval) -> Result<GateApproval, ActionError> {
        if args.approvers.iter().all(|a| a.trim().is_empty()) {
            return Err(ActionError::Invalid {
                object: "gate.approval".into(),
                reason: "name at least one approver in `approvers`".into(),
            });
        }
        Ok(GateApproval {
            args,
            accepted: Mutex::new(None),
        })
    }

    /// True when `who` may acknowledge.
    pub fn may_approve(&self, who: &str) -> bool {
        self.args.approvers.iter().any(|a| a == who)
    }

    async fn announce(&self, ctx: &ActionContext) {
        let Some(notifier) = ctx.notifier.as_ref().filter(|n| !n.is_empty()) else {
            return;
        };
        let notification = Notification {
            run_id: ctx.run_id.clone(),
            playbook: ctx.playbook.clone(),
            phase: Phase::Approval,
            title: format!(
                "approval needed from {}: {}",
                self.args.approvers.join(", "),
                self.args.message
            ),
            text: format!("ripcord approve {} {} --as NAME", ctx.run_id, ctx.step),
            fields: BTreeMap::from([
                ("step".to_string(), ctx.step.clone()),
                ("approvers".to_string(), self.args.approvers.join(", ")),
            ]),
        };
        for delivery in notifier.send(&notification).await {
            if !delivery.ok {
                tracing::warn!(
                    run = %ctx.run_id, step = %ctx.step, channel = %delivery.channel,
                    error = delivery.error.as_deref().unwrap_or(""), "approval request not delivered"
                );
            }
        }
    }

    /// The ACK on the `Run` resource, if any (errors: none seen; the file still works).
    async fn ack_on_run_resource(&self, ctx: &ActionContext) -> Option<Approval> {
        let read = crate::k8s::run_annotations::read(
            &ctx.client,
            &ctx.default_namespace,
            &ctx.run_id,
            &approval::run_annotation(&ctx.step),
            ctx.call_timeout,
        )
        .await;
        let raw = match read {
            Ok(raw) => raw?,
            Err(err) => {
                tracing::debug!(run = %ctx.run_id, step = %ctx.step, error = %err, "cannot read the Run resource");
                return None;
            }
        };
        match serde_json::from_str::<Approval>(&raw) {
            Ok(a) => Some(a),
            Err(err) => {
                tracing::warn!(run = %ctx.run_id, step = %ctx.step, error = %err, "unreadable approval annotation on the Run");
                None
            }
        }
    }

    /// Remembers the accepted ACK for [`Action::acknowledgement`].
    fn accept(&self, acknowledgement: Acknowledgement) {
        let mut accepted = self
            .accepted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *accepted = Some(acknowledgement);
    }

    async fn wait_for_ack(&self, ctx: &ActionContext) -> Result<(), ActionError> {
        self.announce(ctx).await;
        let deadline = Instant::now() + ctx.verify_timeout;
        let mut rejected: BTreeSet<String> = BTreeSet::new();
        loop {
            let mut seen: Vec<(Approval, ApprovalSource)> = Vec::new();
            if let Some(dir) = &ctx.state_dir {
                match approval::read(dir, &ctx.run_id, &ctx.step) {
                    Ok(Some(a)) => seen.push((a, ApprovalSource::File)),
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(run = %ctx.run_id, step = %ctx.step, error = %err, "unreadable approval file")
                    }
                }
            }
            if let Some(a) = self.ack_on_run_resource(ctx).await {
                seen.push((a, ApprovalSource::RunResource));
            }
            for (ack, source) in seen {
                if ack.run_id != ctx.run_id || ack.step != ctx.step {
                    continue;
                }
                if !self.may_approve(&ack.by) {
                    if rejected.insert(ack.by.clone()) {
                        tracing::warn!(
                            run = %ctx.run_id, step = %ctx.step, by = %ack.by,
                            approvers = %self.args.approvers.join(", "),
                            "ACK rejected: not an approver of this step"
                        );
                        ctx.notices.send(Notice::AckRejected {
                            by: ack.by.clone(),
                            reason: format!(
                                "not an approver of this step (approvers: {})",
                                self.args.approvers.join(", ")
                            ),
                        });
                    }
                    continue;
                }
                if source == ApprovalSource::RunResource
                    && let Some(dir) = &ctx.state_dir
                    && let Err(err) = approval::write(dir, &ack)
                {
                    tracing::warn!(run = %ctx.run_id, step = %ctx.step, error = %err, "cannot keep the ACK in the run directory");
                }
                tracing::info!(
                    run = %ctx.run_id, step = %ctx.step, by = %ack.by, at = %ack.at,
                    source = %source, comment = ack.comment.as_deref().unwrap_or(""),
                    "approval acknowledged"
                );
                self.accept(Acknowledgement {
                    approval: ack,
                    source,
                });
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ActionError::Timeout {
                    what: format!(
                        "an ACK of step {} from {} (ripcord approve {} {} --as NAME)",
                        ctx.step,
                        self.args.approvers.join(" or "),
                        ctx.run_id,
                        ctx.step
                    ),
                    after: ctx.verify_timeout,
                });
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }
}

impl Action for GateApproval {
    fn kind(&self) -> &'static str {
        "gate.approval"
    }

    fn targets(&self, _default_namespace: &str) -> Vec<ObjectRef> {
        Vec::new()
    }

    fn verify_when_satisfied(&self) -> bool {
        true
    }

    fn diff<'a>(&'a self, _ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>> {
        Box::pin(async move {
            Ok(Diff {
                summary: format!(
                    "wait for an ACK from {}: {}",
                    self.args.approvers.join(", "),
                    self.args.message
                ),
                mutations: Vec::new(),
                progress: None,
            })
        })
    }

    fn apply<'a>(
        &'a self,
        _ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>> {
        Box::pin(async move {
            Err(ActionError::Invalid {
                object: mutation.target.to_string(),
                reason: "gate.approval makes no cluster writes".into(),
            })
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(self.wait_for_ack(ctx))
    }

    fn acknowledgement(&self) -> Option<Acknowledgement> {
        self.accepted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvers_are_required_and_matched_exactly() {
        let none = catalog::GateApproval {
            approvers: vec![],
            message: "ok?".into(),
        };
        assert!(GateApproval::new(none).is_err());
        let gate = GateApproval::new(catalog::GateApproval {
            approvers: vec!["ann".into()],
            message: "ok?".into(),
        })
        .unwrap();
        assert!(gate.may_approve("ann"));
        assert!(!gate.may_approve("bob"));
        assert!(!gate.may_approve("Ann"));
    }

    /// A context whose cluster refuses connections (no `Run` resource): only files count.
    fn context(state_dir: &std::path::Path, verify_timeout: Duration) -> ActionContext {
        let uri: axum::http::Uri = "http://127.0.0.1:9".parse().unwrap();
        ActionContext {
            client: kube::Client::try_from(kube::Config::new(uri)).unwrap(),
            run_id: "r-20260101-000000-abcd".into(),
            step: "ack".into(),
            default_namespace: "shop".into(),
            http: reqwest::Client::new(),
            prometheus_url: None,
            call_timeout: Duration::from_millis(200),
            verify_timeout,
            playbook: "hand-off".into(),
            notifier: None,
            state_dir: Some(state_dir.to_path_buf()),
            observed: Default::default(),
            notices: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_accepted_ack_is_kept_for_the_journal_and_a_strangers_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let gate = GateApproval::new(catalog::GateApproval {
            approvers: vec!["ann".into()],
            message: "take over?".into(),
        })
        .unwrap();
        let mut ctx = context(dir.path(), Duration::from_millis(600));
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        ctx.notices = crate::actions::Notices::new(move |n| sink.lock().unwrap().push(n));
        let mut ack = Approval {
            run_id: ctx.run_id.clone(),
            step: "ack".into(),
            by: "mallory".into(),
            at: "2026-01-01T00:00:01Z".into(),
            comment: None,
        };
        approval::write(dir.path(), &ack).unwrap();
        assert!(gate.verify(&ctx, &[]).await.is_err(), "a stranger's ACK");
        assert_eq!(gate.acknowledgement(), None);
        // Reported once, though the gate saw the file at every poll.
        assert_eq!(
            *seen.lock().unwrap(),
            [Notice::AckRejected {
                by: "mallory".into(),
                reason: "not an approver of this step (approvers: ann)".into(),
            }]
        );

        ack.by = "ann".into();
        ack.comment = Some("mine".into());
        approval::write(dir.path(), &ack).unwrap();
        gate.verify(&ctx, &[]).await.unwrap();
        assert_eq!(
            gate.acknowledgement(),
            Some(Acknowledgement {
                approval: ack,
                source: ApprovalSource::File,
            })
        );
    }
}
