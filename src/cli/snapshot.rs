//! `ripcord snapshot [NAMESPACE...] [-d DIR] [--target deployment/NAME...]`: capture an
//! evidence bundle on demand — the same capture a run takes before its first mutation.
//!
//! Namespaces are positional (the global `-o` is the output format and `-n` takes one
//! namespace, so the bundle directory is `-d/--dir`); without any, the global `-n` or the
//! context's namespace is used. Secrets are never captured (names only).

use super::{Exit, GlobalArgs, Output, exit::with_exit};
use crate::actions::ObjectRef;
use crate::metrics::prometheus::Prometheus;
use crate::playbook::SnapshotSpec;
use crate::playbook::model::NamedQuery;
use crate::snapshot::{self, Manifest, SnapshotRequest};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `ripcord snapshot`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Namespaces to capture (default: `-n`, else the context's namespace).
    #[arg(value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,

    /// The bundle directory (default: `<state-dir>/snapshots/snap-<unix time>`).
    #[arg(short = 'd', long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Objects to capture first with their history: `deployment/NAME`, `pod/NAME`,
    /// `node/NAME`, `service/NAME` (in the first namespace).
    #[arg(long = "target", value_name = "KIND/NAME")]
    pub targets: Vec<String>,

    /// Lines of log tail per container.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub log_tail_lines: u32,

    /// Skip the logs of previous container instances.
    #[arg(long)]
    pub no_previous_logs: bool,

    /// Skip events.
    #[arg(long)]
    pub no_events: bool,

    /// Base URL of the Prometheus HTTP API for impact queries.
    #[arg(long, env = "RIPCORD_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,

    /// An impact query to record: `NAME=PROMQL` (repeatable).
    #[arg(long = "query", value_name = "NAME=PROMQL")]
    pub queries: Vec<String>,
}

/// `kind/NAME` → an object reference in `namespace`.
pub fn parse_target(raw: &str, namespace: &str) -> anyhow::Result<ObjectRef> {
    let usage = || {
        with_exit(
            Exit::Usage,
            anyhow::anyhow!(
                "unsupported target {raw:?}: use deployment/NAME, pod/NAME, node/NAME, \
                 service/NAME or configmap/NAME"
            ),
        )
    };
    let (kind, name) = raw.split_once('/').ok_or_else(usage)?;
    if name.is_empty() || name.contains('/') {
        return Err(usage());
    }
    let (api_version, kind, namespaced) = match kind.to_lowercase().as_str() {
        "deployment" | "deployments" | "deploy" => ("apps/v1", "Deployment", true),
        "pod" | "pods" | "po" => ("v1", "Pod", true),
        "node" | "nodes" | "no" => ("v1", "Node", false),
        "service" | "services" | "svc" => ("v1", "Service", true),
        "configmap" | "configmaps" | "cm" => ("v1", "ConfigMap", true),
        _ => return Err(usage()),
    };
    Ok(ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespaced.then(|| namespace.to_string()),
        name: name.into(),
    })
}

fn parse_query(raw: &str) -> anyhow::Result<NamedQuery> {
    match raw.split_once('=') {
        Some((name, query)) if !name.trim().is_empty() && !query.trim().is_empty() => {
            Ok(NamedQuery {
                name: name.trim().to_string(),
                query: query.trim().to_string(),
            })
        }
        _ => Err(with_exit(
            Exit::Usage,
            anyhow::anyhow!("--query expects NAME=PROMQL, got {raw:?}"),
        )),
    }
}

/// Runs `ripcord snapshot`.
pub async fn run(args: SnapshotArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let queries = args
        .queries
        .iter()
        .map(|q| parse_query(q))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = super::run::connected_client(&global).await?;
    let mut namespaces = args.namespaces.clone();
    if namespaces.is_empty() {
        namespaces.push(
            global
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
        );
    }
    let targets = args
        .targets
        .iter()
        .map(|t| parse_target(t, &namespaces[0]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dir = args.dir.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        global
            .state_dir()
            .join("snapshots")
            .join(format!("snap-{secs}"))
    });
    let request = SnapshotRequest {
        targets,
        namespaces,
        spec: SnapshotSpec {
            enabled: true,
            log_tail_lines: args.log_tail_lines,
            previous_logs: !args.no_previous_logs,
            events: !args.no_events,
            namespaces: Vec::new(),
            prometheus: queries,
        },
    };
    let http = reqwest::Client::new();
    let prometheus = args
        .prometheus_url
        .as_ref()
        .map(|url| Prometheus::new(url.clone(), http));
    let (mut manifest, reads): (Manifest, _) =
        snapshot::capture_targets(&client, &request, &dir, &Default::default()).await?;
    let rest = snapshot::capture_rest(&client, &request, &dir, prometheus, reads).await?;
    manifest.merge(&rest);
    match global.output {
        Output::Json => outln!(
            "{}",
            serde_json::json!({ "dir": dir.display().to_string(), "manifest": manifest })
        ),
        Output::Text => {
            for failure in &manifest.failed {
                errln!("warning: not captured: {}: {}", failure.what, failure.error);
            }
            outln!(
                "captured {} item(s), {} not captured; manifest: {}",
                manifest.captured.len(),
                manifest.failed.len(),
                dir.join(snapshot::MANIFEST_FILE).display()
            );
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_queries_parse() {
        let d = parse_target("deployment/web", "shop").unwrap();
        assert_eq!(
            (d.kind.as_str(), d.namespace.as_deref()),
            ("Deployment", Some("shop"))
        );
        let n = parse_target("node/a-1", "shop").unwrap();
        assert_eq!(n.namespace, None);
        assert!(parse_target("secret/x", "shop").is_err());
        assert!(parse_target("web", "shop").is_err());
        let q = parse_query("errors=sum(rate(x[1m]))").unwrap();
        assert_eq!(q.name, "errors");
        assert!(parse_query("=x").is_err());
    }
}
