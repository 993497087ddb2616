//! `ripcord sim serve`: runs the simulated cluster in the foreground so that kubectl (or
//! ripcord itself) can be pointed at it, until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Exit, GlobalArgs};
use crate::sim::scenario::Scenario;
use crate::sim::{SimCluster, SimOptions};

/// `ripcord sim ...`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// What to do with the simulated cluster.
    #[command(subcommand)]
    pub command: SimCommand,
}

/// The `sim` subcommands.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve a simulated cluster on 127.0.0.1 until Ctrl-C.
    Serve(ServeArgs),
}

/// `ripcord sim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The scenario YAML (zones, workloads, releases); the built-in demo scenario if omitted.
    #[arg(long, env = "RIPCORD_SIM_SCENARIO", value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// Where to write a kubeconfig for the simulated cluster.
    #[arg(long, env = "RIPCORD_SIM_KUBECONFIG_OUT", value_name = "FILE")]
    pub kubeconfig_out: PathBuf,

    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, env = "RIPCORD_SIM_PORT", default_value_t = 0)]
    pub port: u16,
}

/// Runs `ripcord sim ...`.
pub async fn run(args: SimArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let _ = global;
    match args.command {
        SimCommand::Serve(serve_args) => serve(serve_args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<Exit> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::load_file(path)
            .with_context(|| format!("cannot load scenario {}", path.display()))?,
        None => Scenario::demo(),
    };
    let sim = SimCluster::start(SimOptions {
        scenario,
        addr: Some(SocketAddr::from(([127, 0, 0, 1], args.port))),
    })
    .await
    .context("cannot start the simulated cluster")?;
    sim.write_kubeconfig(&args.kubeconfig_out)
        .with_context(|| format!("cannot write {}", args.kubeconfig_out.display()))?;
    let kubeconfig =
        std::fs::canonicalize(&args.kubeconfig_out).unwrap_or_else(|_| args.kubeconfig_out.clone());
    // Listen for Ctrl-C before saying so: a signal that arrives right after the prompt must stop
    // the server cleanly, not kill the process with the default action.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let early = futures::poll!(&mut ctrl_c);
    outln!("simulated cluster serving at {}", sim.url());
    outln!("point kubectl at it with:");
    outln!("  export KUBECONFIG={}", kubeconfig.display());
    outln!("  kubectl get nodes,deployments,pods -A");
    outln!(
        "fault injection: GET/PUT {}/sim/faults; Prometheus metrics: {}/metrics",
        sim.url(),
        sim.url()
    );
    outln!("press Ctrl-C to stop");
    let stopped = match early {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => ctrl_c.await,
    };
    outln!("stopping the simulated cluster");
    let violations = sim.invariants().violations();
    sim.shutdown().await;
    stopped.context("cannot listen for Ctrl-C")?;
    if !violations.is_empty() {
        outln!("{} invariant violation(s) were recorded:", violations.len());
        for v in &violations {
            outln!("  {:?} {}/{}: {}", v.kind, v.namespace, v.name, v.message);
        }
    }
    Ok(Exit::Ok)
}
