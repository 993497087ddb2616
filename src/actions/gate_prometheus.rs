//! `gate.prometheus`: the run proceeds only if a PromQL condition holds now.
//!
//! No mutation; `verify` evaluates the condition once through the Prometheus HTTP API and fails
//! with the observed value versus the threshold. An empty query result is an error that says
//! so (an absent series never passes a gate). Needs a Prometheus URL in the context.

use super::{Action, ActionContext, ActionError, Applied, Diff, Mutation, ObjectRef};
use crate::metrics::prometheus::{Prometheus, explain};
use crate::playbook::PromCondition;
use futures::future::BoxFuture;

/// The `gate.prometheus` action.
#[derive(Debug, Clone)]
pub struct GatePrometheus {
    condition: PromCondition,
}

// === impl GatePrometheus ===

impl GatePrometheus {
    /// A gate on `condition`.
    pub fn new(condition: PromCondition) -> GatePrometheus {
        GatePrometheus { condition }
    }

    async fn evaluate(&self, ctx: &ActionContext) -> Result<(), ActionError> {
        let Some(url) = ctx.prometheus_url.as_deref() else {
            return Err(ActionError::Refused {
                reason: "gate.prometheus needs a Prometheus URL (set prometheus.url in the \
                         config file or pass --prometheus-url)"
                    .into(),
            });
        };
        let prometheus = Prometheus::new(url, ctx.http.clone()).with_timeout(ctx.call_timeout);
        let (holds, value) = prometheus.evaluate(&self.condition).await?;
        let explanation = explain(&self.condition, value, holds);
        tracing::info!(run = %ctx.run_id, step = %ctx.step, value, holds, "gate evaluated");
        if holds {
            Ok(())
        } else {
            Err(ActionError::GateFailed {
                reason: format!(
                    "observed {value}, required {} {}: {explanation}",
                    self.condition.op.symbol(),
                    self.condition.threshold
                ),
            })
        }
    }
}

impl Action for GatePrometheus {
    fn kind(&self) -> &'static str {
        "gate.prometheus"
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
                    "gate: {} {} {}",
                    self.condition.query,
                    self.condition.op.symbol(),
                    self.condition.threshold
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
                reason: "gate.prometheus makes no writes".into(),
            })
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(self.evaluate(ctx))
    }
}
