//! `ripcord approve RUN STEP [--as NAME] [--comment TEXT]`: the ACK of a `gate.approval` step.
//!
//! Writes the same file the daemon's API writes (`<state-dir>/runs/<id>/approvals/<step>.json`,
//! through [`crate::journal::approval`]) when the run's directory is on this machine, and, best
//! effort, records the ACK as the annotation `approvals.ripcord.dev/<step>` on the run's `Run`
//! custom resource so that a run on another machine (or in the daemon) sees it too. When the
//! run's journal is here, a person who is not among the step's approvers is refused (exit 4).

use super::exit::with_exit;
use super::run::{kube_client, plan_namespace};
use super::{Exit, GlobalArgs};
use crate::journal::{self, approval};
use crate::k8s::K8sError;
use crate::playbook::catalog::Action;
use clap::Args;
use std::time::Duration;

/// Bound of the `Run` annotation write.
const RUN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `ripcord approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run: its id (`r-YYYYMMDD-HHMMSS-xxxxxxxxxxxx`), a unique prefix of a local run's id, or
    /// `last`.
    #[arg(value_name = "RUN")]
    pub run: String,

    /// The `gate.approval` step.
    #[arg(value_name = "STEP")]
    pub step: String,

    /// Who acknowledges (default: $RIPCORD_WHO, then the kubeconfig user, $USER, the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub approver: Option<String>,

    /// A comment kept with the ACK.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

/// Runs `ripcord approve`.
pub async fn run(mut args: ApproveArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let usage = |e: anyhow::Error| with_exit(Exit::Usage, e);
    // A local run may be named by a unique prefix or `last`; any other id may be a run on
    // another machine, found through its `Run` resource.
    if let Ok(local) = super::runs::resolve_run_id(&global.state_dir(), &args.run) {
        args.run = local;
    }
    journal::validate_run_id(&args.run).map_err(|e| usage(e.into()))?;
    let by = args
        .approver
        .clone()
        .or_else(|| std::env::var("RIPCORD_WHO").ok())
        .filter(|w| !w.trim().is_empty())
        .unwrap_or_else(|| super::run::default_operator(&global));
    let state_dir = global.state_dir();
    let local = journal::journal_path(&state_dir, &args.run).is_file();
    let mut namespace = global.namespace.clone();
    if local {
        let plan = crate::engine::load_plan(&state_dir, &args.run).map_err(|e| usage(e.into()))?;
        let Some(step) = plan.steps.iter().find(|s| s.name == args.step) else {
            return Err(usage(anyhow::anyhow!(
                "run {} has no step {:?}",
                args.run,
                args.step
            )));
        };
        let Action::GateApproval(gate) = &step.action else {
            return Err(usage(anyhow::anyhow!(
                "step {} of run {} is a {} step, not gate.approval",
                args.step,
                args.run,
                step.action.name()
            )));
        };
        if !gate.approvers.iter().any(|a| a == &by) {
            return Err(with_exit(
                Exit::Refused,
                anyhow::anyhow!(
                    "{by} may not approve step {} of run {}: its approvers are {} (pass --as NAME)",
                    args.step,
                    args.run,
                    gate.approvers.join(", ")
                ),
            ));
        }
        namespace = namespace.or_else(|| plan_namespace(&plan));
    }
    let ack = approval::Approval {
        run_id: args.run.clone(),
        step: args.step.clone(),
        by: by.clone(),
        at: jiff::Timestamp::now().to_string(),
        comment: args.comment.clone(),
    };
    let mut wrote = Vec::new();
    if local {
        let path = approval::write(&state_dir, &ack)?;
        wrote.push(format!("file {}", path.display()));
    }
    match record_on_run(&global, namespace, &ack).await {
        Ok(at) => wrote.push(format!("Run {at}")),
        Err(err) if local => errln!("warning: the Run resource was not annotated: {err:#}"),
        Err(err) if super::exit::classify(&err) == Exit::Usage => {
            return Err(with_exit(
                Exit::Usage,
                anyhow::anyhow!(
                    "there is no run {} here: not in {}, and {err:#} (check the run id with \
                     `ripcord runs list`, or pass -n NAMESPACE)",
                    args.run,
                    state_dir.display()
                ),
            ));
        }
        Err(err) => {
            return Err(with_exit(
                Exit::Unreachable,
                err.context(format!(
                    "run {} is not in {} and its Run resource could not be annotated",
                    args.run,
                    state_dir.display()
                )),
            ));
        }
    }
    tracing::info!(run = %args.run, step = %args.step, by = %by, "approval given");
    outln!(
        "approved step {} of run {} as {by} ({})",
        args.step,
        args.run,
        wrote.join(", ")
    );
    Ok(Exit::Ok)
}

/// Annotates the `Run` with the ACK (merge patch, field manager `ripcord`, bounded); returns
/// `NAMESPACE/NAME`.
async fn record_on_run(
    global: &GlobalArgs,
    namespace: Option<String>,
    ack: &approval::Approval,
) -> anyhow::Result<String> {
    let client = kube_client(global).await?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let value = serde_json::to_string(ack)?;
    let written = crate::k8s::run_annotations::write(
        &client,
        &namespace,
        &ack.run_id,
        &approval::run_annotation(&ack.step),
        &value,
        RUN_WRITE_TIMEOUT,
    )
    .await;
    match written {
        Ok(()) => Ok(format!("{namespace}/{}", ack.run_id)),
        Err(K8sError::NotFound { .. }) => Err(with_exit(
            Exit::Usage,
            anyhow::anyhow!("the cluster has no Run resource {namespace}/{}", ack.run_id),
        )),
        Err(K8sError::Api { source, .. }) => Err(anyhow::anyhow!(
            "cannot annotate Run {namespace}/{}: {}",
            ack.run_id,
            super::exit::kube_sentence(&source)
        )),
        Err(err) => Err(anyhow::anyhow!(
            "cannot annotate Run {namespace}/{}: {err}",
            ack.run_id
        )),
    }
}
