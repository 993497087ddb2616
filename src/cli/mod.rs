//! The command line: clap definitions, output formatting and exit codes.
//!
//! Each subcommand lives in its own file with an `Args` struct and an async `run` function;
//! this file only wires them together. No remediation logic lives here.

pub mod exit;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub use exit::Exit;

/// ripcord — automated, journaled, reversible mitigations for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "ripcord", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 ok, 1 run failed / dirty, 2 invalid input, \
3 cluster unreachable, 4 refused by a guard or lock, 130 interrupted (resumable).")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (defaults to $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long, global = true, env = "RIPCORD_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,

    /// The namespace of the target (defaults to the context's namespace).
    #[arg(short = 'n', long, global = true, env = "RIPCORD_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Directory for run journals and snapshots (defaults to the XDG state directory).
    #[arg(long, global = true, env = "RIPCORD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For programs: one JSON document.
    Json,
}

impl GlobalArgs {
    /// The state directory: `--state-dir`, else `$XDG_STATE_HOME/ripcord`, else
    /// `~/.local/state/ripcord`.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("ripcord");
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/state/ripcord"),
            None => PathBuf::from(".ripcord-state"),
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let Cli { global, command } = cli;
    let _ = &global;
    match command {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
