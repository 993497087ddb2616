//! `ripcord mark-good deployment/NAME [-n NS] [--revision N]`: record a revision as
//! known-good on the Deployment (`ripcord.dev/known-good-revision` and
//! `ripcord.dev/known-good-template-hash`), so `ripcord rollback --known-good` can return to
//! it. Without `--revision`, the revision running now (matching the current template) is
//! marked. Writes nothing when the mark is already there.

use super::{Exit, GlobalArgs, Output, exit::with_exit};
use crate::k8s::K8sError;
use crate::k8s::deployments::Deployments;
use anyhow::Context;
use clap::Args;
use std::time::Duration;

/// Arguments of `ripcord mark-good`.
#[derive(Debug, Clone, Args)]
pub struct MarkGoodArgs {
    /// The Deployment: `deployment/NAME` (or just `NAME`).
    #[arg(value_name = "deployment/NAME")]
    pub target: String,

    /// The revision to mark (default: the revision running now).
    #[arg(long, value_name = "N")]
    pub revision: Option<i64>,

    /// Timeout of each API call.
    #[arg(long, default_value = "10s", value_parser = super::duration, value_name = "DURATION")]
    pub call_timeout: Duration,
}

/// `deployment/NAME`, `deployments/NAME`, `deploy/NAME` or `NAME` → `NAME`.
pub fn deployment_name(target: &str) -> anyhow::Result<String> {
    let name = match target.split_once('/') {
        Some((kind, name)) => {
            if !matches!(
                kind.to_lowercase().as_str(),
                "deployment" | "deployments" | "deploy"
            ) {
                return Err(with_exit(
                    Exit::Usage,
                    anyhow::anyhow!("only Deployments can be marked known-good, not {kind:?}"),
                ));
            }
            name
        }
        None => target,
    };
    if name.is_empty() || name.contains('/') {
        return Err(with_exit(
            Exit::Usage,
            anyhow::anyhow!("expected deployment/NAME, got {target:?}"),
        ));
    }
    Ok(name.to_string())
}

/// Runs `ripcord mark-good`.
pub async fn run(args: MarkGoodArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let name = deployment_name(&args.target)?;
    let client = super::run::connected_client(&global).await?;
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let deployments = Deployments::new(client, &namespace, args.call_timeout);
    let object = deployments.describe(&name);
    let mark = match deployments.mark_known_good(&name, args.revision).await {
        Ok(mark) => mark,
        Err(err @ (K8sError::Invalid { .. } | K8sError::NotFound { .. })) => {
            return Err(with_exit(Exit::Usage, err));
        }
        Err(err) => return Err(err).with_context(|| format!("cannot mark {object} known-good")),
    };
    match global.output {
        Output::Json => outln!(
            "{}",
            serde_json::json!({
                "deployment": name,
                "namespace": namespace,
                "revision": mark.revision,
                "templateHash": mark.hash,
                "changed": mark.changed,
            })
        ),
        Output::Text => {
            let hash = mark
                .hash
                .map(|h| format!(" (template {h})"))
                .unwrap_or_default();
            if mark.changed {
                outln!(
                    "marked {object} revision {}{hash} known-good",
                    mark.revision
                );
            } else {
                outln!(
                    "{object} revision {}{hash} was already marked known-good",
                    mark.revision
                );
            }
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(deployment_name("deployment/web").unwrap(), "web");
        assert_eq!(deployment_name("deploy/web").unwrap(), "web");
        assert_eq!(deployment_name("web").unwrap(), "web");
        assert!(deployment_name("pod/web").is_err());
        assert!(deployment_name("deployment/").is_err());
        assert!(deployment_name("deployment/a/b").is_err());
    }
}
