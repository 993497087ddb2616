//! `notify`: send a message to the run's notification channels.
//!
//! No cluster mutation; the message is sent in `verify` (with no journaled mutation, so a
//! resumed run may send it again: notifications are at-least-once). Each channel's outcome
//! (sent, or failed with the reason) is logged by channel name (never by URL) and shown in the
//! step's result. A failing channel fails the step only with `required: true`, and then only
//! when nobody was told: no channel configured, or every delivery failed.

use super::{Action, ActionContext, ActionError, Applied, Diff, Mutation, ObjectRef};
use crate::notify::{Delivery, Notification, Phase};
use futures::future::BoxFuture;
use std::collections::BTreeMap;

/// The `notify` action.
#[derive(Debug, Clone)]
pub struct Notify {
    message: String,
    required: bool,
}

// === impl Notify ===

impl Notify {
    /// Sends `message`; a failed delivery is reported, not fatal.
    pub fn new(message: String) -> Notify {
        Notify {
            message,
            required: false,
        }
    }

    /// With `required`, the step fails when no channel received the message.
    pub fn required(mut self, required: bool) -> Notify {
        self.required = required;
        self
    }

    async fn send(&self, ctx: &ActionContext) -> Result<(), ActionError> {
        let Some(notifier) = ctx.notifier.as_ref().filter(|n| !n.is_empty()) else {
            tracing::warn!(run = %ctx.run_id, step = %ctx.step, "notify: no channels configured");
            if self.required {
                return Err(ActionError::VerifyFailed {
                    reason: "nobody was notified: no notification channel is configured (add \
                             notify.channels to the config file or the playbook)"
                        .into(),
                });
            }
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
        let deliveries = notifier.send(&notification).await;
        for delivery in &deliveries {
            if delivery.ok {
                tracing::info!(run = %ctx.run_id, step = %ctx.step, channel = %delivery.channel, "message sent");
            } else {
                tracing::warn!(
                    run = %ctx.run_id, step = %ctx.step, channel = %delivery.channel,
                    error = delivery.error.as_deref().unwrap_or(""), "message not delivered"
                );
            }
        }
        if self.required && !deliveries.iter().any(|d| d.ok) {
            return Err(ActionError::VerifyFailed {
                reason: format!("nobody was notified: {}", describe_deliveries(&deliveries)),
            });
        }
        Ok(())
    }
}

/// Each channel's outcome on one line: `incidents sent, ops failed (HTTP 500)`.
pub fn describe_deliveries(deliveries: &[Delivery]) -> String {
    deliveries
        .iter()
        .map(|d| {
            if d.ok {
                format!("{} sent", d.channel)
            } else {
                format!(
                    "{} failed ({})",
                    d.channel,
                    d.error.as_deref().unwrap_or("no reason given")
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
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
                summary: format!(
                    "notify{}: {}",
                    if self.required { " (required)" } else { "" },
                    self.message
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
