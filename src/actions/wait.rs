//! `wait`: pause the run for a duration.
//!
//! No mutation; the sleep is `verify`. It is bounded by the step timeout: a duration longer
//! than the timeout fails with a timeout after sleeping the timeout. Resuming a run whose wait
//! was interrupted waits the full duration again (kept simple on purpose: a wait is cheap to
//! repeat and its start is not a cluster fact the action could observe).

use super::{Action, ActionContext, ActionError, Applied, Diff, Mutation, ObjectRef};
use futures::future::BoxFuture;
use std::time::Duration;

/// The `wait` action.
#[derive(Debug, Clone)]
pub struct Wait {
    duration: Duration,
}

// === impl Wait ===

impl Wait {
    /// Waits `duration`.
    pub fn new(duration: Duration) -> Wait {
        Wait { duration }
    }
}

impl Action for Wait {
    fn kind(&self) -> &'static str {
        "wait"
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
                summary: format!("wait {:?}", self.duration),
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
                reason: "wait makes no writes".into(),
            })
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            if self.duration > ctx.verify_timeout {
                tokio::time::sleep(ctx.verify_timeout).await;
                return Err(ActionError::Timeout {
                    what: format!(
                        "a wait of {:?} (longer than the step timeout)",
                        self.duration
                    ),
                    after: ctx.verify_timeout,
                });
            }
            tracing::info!(run = %ctx.run_id, step = %ctx.step, duration = ?self.duration, "waiting");
            tokio::time::sleep(self.duration).await;
            Ok(())
        })
    }
}
