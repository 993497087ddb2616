//! `ripcord demo`: the README's main command. Starts the simulated cluster with a bad release
//! of a demo service rolling out, shows it failing, rolls it back through the engine exactly as
//! `ripcord rollback` would, then prints the journal timeline and the snapshot manifest.

use super::run::{ConfigArgs, Settings, outcome_line, plan_playbook, run_with_progress};
use super::{Exit, GlobalArgs};
use crate::engine::Engine;
use crate::journal;
use crate::sim::scenario::Scenario;
use crate::sim::store::kinds;
use crate::sim::{SimCluster, SimOptions};
use anyhow::Context as _;
use clap::Args;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The demo's Deployment.
const NAMESPACE: &str = "shop";
/// The demo's Deployment.
const DEPLOYMENT: &str = "checkout";
/// How long the demo watches the bad release before rolling it back (real time).
const WATCH_BAD_RELEASE: Duration = Duration::from_secs(15);

/// `ripcord demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Roll back as soon as the bad release's pods are seen failing, without waiting for the
    /// progress deadline.
    #[arg(long)]
    pub quick: bool,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `ripcord demo`.
pub async fn run(args: DemoArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let mut settings = Settings::load(&args.config, &global)?;
    // The demo keeps its journal out of the real state directory unless one is given.
    if global.state_dir.is_none() {
        settings.state_dir =
            std::env::temp_dir().join(format!("ripcord-demo-{}", std::process::id()));
    }
    let started = Instant::now();
    let sim = SimCluster::start(SimOptions {
        scenario: Scenario::demo(),
        addr: None,
    })
    .await
    .context("cannot start the simulated cluster")?;
    outln!("simulated cluster at {} (scenario: demo)", sim.url());
    if let Err(err) = crate::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5)).await {
        outln!("note: Run mirror unavailable in the sim: {err}");
    }

    outln!("\n== 1. a bad release of {NAMESPACE}/{DEPLOYMENT} is rolling out");
    watch_bad_release(&sim, args.quick).await;

    outln!("\n== 2. ripcord rollback deployment/{DEPLOYMENT} -n {NAMESPACE} --yes");
    let mut params = BTreeMap::new();
    params.insert("name".to_string(), DEPLOYMENT.to_string());
    params.insert("namespace".to_string(), NAMESPACE.to_string());
    let plan = settings.with_config_channels(plan_playbook(
        "builtin:rollback",
        &params,
        &journal::new_run_id(),
    )?);
    let mut opts = settings.run_options(NAMESPACE);
    opts.handle_signals = true;
    let engine = Engine::new(sim.client(), settings.http.clone());
    let outcome = run_with_progress(&engine, plan, opts).await?;
    outln!(
        "{}",
        outcome_line(
            &outcome,
            &format!("rollback of deployment {NAMESPACE}/{DEPLOYMENT}")
        )
    );
    outln!("now: {}", deployment_line(&sim));

    outln!("\n== 3. the journal (ripcord runs show {})", outcome.run_id);
    if let Some(path) = &outcome.journal {
        let (entries, _) = journal::read(path)?;
        out!("{}", super::runs::timeline(&entries));
    }
    outln!("{}", run_resource_line(&sim, &outcome.run_id));

    outln!("\n== 4. the snapshot taken before the first mutation");
    let manifest_path = outcome.dir.join("snapshot").join("manifest.json");
    match std::fs::read_to_string(&manifest_path) {
        Ok(text) => print_manifest(&text),
        Err(err) => outln!("no snapshot manifest at {}: {err}", manifest_path.display()),
    }
    outln!("\nstate directory: {}", settings.state_dir.display());
    outln!("demo finished in {:.1}s", started.elapsed().as_secs_f64());
    sim.shutdown().await;
    Ok(super::run::exit_for(outcome.outcome))
}

/// Polls the sim until the bad release shows it is failing (pods not ready for a while, or
/// ProgressDeadlineExceeded), bounded by [`WATCH_BAD_RELEASE`].
async fn watch_bad_release(sim: &SimCluster, quick: bool) {
    let deadline = Instant::now() + WATCH_BAD_RELEASE;
    let mut last = String::new();
    let mut unready_seen = 0u32;
    while Instant::now() < deadline {
        let line = deployment_line(sim);
        if line != last {
            outln!("  {line}");
            last = line;
        }
        let deployment = sim
            .store()
            .get(&kinds::deployments(), Some(NAMESPACE), DEPLOYMENT);
        if let Some(d) = &deployment {
            if progress_deadline_exceeded(d) {
                outln!("  => the rollout is stuck: ProgressDeadlineExceeded");
                break;
            }
            let (_, unready) = pod_counts(sim);
            if unready > 0 {
                unready_seen += 1;
            }
            if quick && unready_seen >= 3 {
                outln!("  => new pods never become ready");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ready, unready) = pod_counts(sim);
    outln!("  pods: {ready} ready, {unready} not ready");
}

fn progress_deadline_exceeded(d: &Value) -> bool {
    d.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conds| {
            conds.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Progressing")
                    && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
            })
        })
}

/// "checkout: image …, revision N, ready R/N, updated U".
fn deployment_line(sim: &SimCluster) -> String {
    let Some(d) = sim
        .store()
        .get(&kinds::deployments(), Some(NAMESPACE), DEPLOYMENT)
    else {
        return format!("{NAMESPACE}/{DEPLOYMENT}: not found");
    };
    let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let image = d
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let revision = d
        .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!(
        "{NAMESPACE}/{DEPLOYMENT}: image {image}, revision {revision}, ready {}/{}, updated {}, unavailable {}",
        int("/status/readyReplicas"),
        int("/spec/replicas"),
        int("/status/updatedReplicas"),
        int("/status/unavailableReplicas"),
    )
}

/// (ready, not ready) pods of the demo Deployment.
fn pod_counts(sim: &SimCluster) -> (usize, usize) {
    let (pods, _) = sim.store().list(&kinds::pods(), Some(NAMESPACE));
    let mut ready = 0;
    let mut unready = 0;
    for pod in pods {
        if pod.pointer("/metadata/labels/app").and_then(Value::as_str) != Some(DEPLOYMENT) {
            continue;
        }
        let is_ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            });
        if is_ready {
            ready += 1;
        } else {
            unready += 1;
        }
    }
    (ready, unready)
}

fn print_manifest(text: &str) {
    let Ok(manifest) = serde_json::from_str::<Value>(text) else {
        outln!("{text}");
        return;
    };
    let captured = manifest
        .get("captured")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let failed = manifest
        .get("failed")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    outln!("{} captured, {} failed", captured.len(), failed.len());
    for entry in captured.iter().take(40) {
        let field = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        // A bundle of format version 2 keeps the broad phase's objects in pages: the entry
        // names the page and the object's index in its `items`.
        let index = entry
            .get("index")
            .and_then(Value::as_u64)
            .map(|i| format!(" items[{i}]"))
            .unwrap_or_default();
        outln!(
            "  {:<22} {:<40} {}{index}",
            field("kind"),
            field("name"),
            field("file")
        );
    }
    if captured.len() > 40 {
        outln!("  … and {} more", captured.len() - 40);
    }
    for f in &failed {
        let field = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        outln!("  failed: {}: {}", field("what"), field("error"));
    }
}

/// What `kubectl get runs.ripcord.dev -n shop RUN` shows: the in-cluster mirror.
fn run_resource_line(sim: &SimCluster, run_id: &str) -> String {
    let Some(rt) = sim
        .store()
        .resource_types()
        .into_iter()
        .find(|rt| rt.group == "ripcord.dev" && rt.plural == "runs")
    else {
        return "in the cluster: no runs.ripcord.dev resource type".to_string();
    };
    match sim.store().get(&rt, Some(NAMESPACE), run_id) {
        Some(run) => {
            let field = |p: &str| {
                run.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            let mutations: usize = run
                .pointer("/status/steps")
                .and_then(Value::as_array)
                .map(|steps| {
                    steps
                        .iter()
                        .filter_map(|s| s.get("mutations").and_then(Value::as_array))
                        .map(Vec::len)
                        .sum()
                })
                .unwrap_or(0);
            format!(
                "in the cluster: runs.ripcord.dev {NAMESPACE}/{run_id}: phase {}, outcome {}, {mutations} mutation(s) with inverses",
                field("/status/phase"),
                field("/status/outcome"),
            )
        }
        None => format!("in the cluster: Run {NAMESPACE}/{run_id} not found"),
    }
}
