//! `notify`: send a message to the run's notification channels.
//!
//! No cluster mutation; the message is sent in `verify` (with no journaled mutation, so a
//! resumed run may send it again: notifications are at-least-once). A failing channel never
//! fails the step: deliveries are logged by channel name (never by URL).

use super::{Action, ActionContext, ActionError, Applied, Diff, Mutation, ObjectRef};
use crate::notify::{Notification, Phase};
use futures::future::BoxFuture;
use std::collections::BTreeMap;

/// The `notify` action.
#[derive(Debug, Clone)]
pub struct Notify {
    message: String,
}

// === impl Notify ===

impl Notify {
    /// Sends `message`.
    pub fn new(message: String) -> Notify {
        Notify { message }
    }

    async fn send(&self, ctx: &ActionContext) -> Result<(), ActionError> {
        let Some(notifier) = ctx.notifier.as_ref().filter(|n| !n.is_empty()) else {
            tracing::info!(run = %ctx.run_id, step = %ctx.step, "notify: no channels configured");
            return Ok(());
        };
        let notification = Notification {
            run_id: ctx.run_id.clone(),
            playbook: ctx.playbook.clone(),
            phase: Phase::Step,
            title: self.message.clone(),
            text: String::new(),
            fields: BTreeMap::from([("step".to_string(), ctx.step.clone())]),
        };
        for delivery in notifier.send(&notification).await {
            if delivery.ok {
                tracing::info!(run = %ctx.run_id, step = %ctx.step, channel = %delivery.channel, "message sent");
            } else {
                tracing::warn!(
                    run = %ctx.run_id, step = %ctx.step, channel = %delivery.channel,
                    error = delivery.error.as_deref().unwrap_or(""), "message not delivered"
                );
            }
        }
        Ok(())
    }
}

impl Action for Notify {
    fn kind(&self) -> &'static str {
        "notify"
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
                summary: format!("notify: {}", self.message),
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
                reason: "notify makes no cluster writes".into(),
            })
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(self.send(ctx))
    }
}
