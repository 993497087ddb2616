//! The command line: clap definitions, output formatting and exit codes.
//!
//! Each subcommand lives in its own file with an `Args` struct and an async `run` function;
//! this file only wires them together. No remediation logic lives here.
//!
//! Output goes through [`outln!`]/[`out!`] (stdout) and [`errln!`]/[`err!`] (stderr) rather
//! than `println!`: `ripcord runs list | head -1` closes stdout early, and `println!` panics on
//! the broken pipe. A closed stdout ends the process quietly (exit 0, like `grep` and `rg`); a
//! closed stderr is ignored.

/// `println!` for stdout that exits quietly on a closed pipe.
macro_rules! outln {
    () => {
        $crate::cli::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for stdout that exits quietly on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    () => {
        $crate::cli::write_stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that ignores a closed stderr.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::write_stderr(format_args!($($arg)*))
    };
}

pub mod approve;
pub mod cleanup;
pub mod completion;
pub mod daemon;
#[cfg(feature = "sim")]
pub mod demo;
pub mod exit;
pub mod failback;
pub mod failout;
pub mod incident;
pub mod mark_good;
pub mod plan;
pub mod report;
pub mod restart;
pub mod rollback;
pub mod run;
pub mod runs;
pub mod schema;
#[cfg(feature = "sim")]
pub mod sim;
pub mod snapshot;
pub mod validate;
pub mod verify;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The clap value parser of run id flags naming an existing run (`--run`, `--resume`): an id
/// that cannot be a directory name is a usage error (exit 2).
pub fn run_id(value: &str) -> Result<String, String> {
    crate::journal::validate_run_id(value)
        .map(|()| value.to_string())
        .map_err(|e| e.to_string())
}

/// The clap value parser of every duration flag (`30s`, `2m`, `1h30m`).
pub fn duration(value: &str) -> Result<std::time::Duration, String> {
    crate::playbook::Duration::parse(value)
        .map(|d| d.get())
        .map_err(|e| e.to_string())
}

/// The clap value parser of every incident id flag and argument: an id that cannot be a file
/// name (`../../x`) is a usage error (exit 2) before anything runs.
pub fn incident_id(value: &str) -> Result<String, String> {
    crate::journal::validate_incident_id(value)
        .map(|()| value.to_string())
        .map_err(|e| e.to_string())
}

pub use exit::Exit;

/// ripcord — automated, journaled, reversible mitigations for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "ripcord", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 run failed / dirty, 2 invalid input, \
3 cluster unreachable, 4 refused by a guard or lock, 130 interrupted (resumable)."
)]
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
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "RIPCORD_NAMESPACE",
        value_name = "NS"
    )]
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
pub enum Command {
    /// Run a playbook (a file or builtin:NAME), or resume an interrupted run.
    Run(run::RunArgs),
    /// List the runs in the state directory, or show one run's timeline.
    Runs(runs::RunsArgs),
    /// Roll a Deployment back (the built-in rollback playbook) with one command.
    Rollback(rollback::RollbackArgs),
    /// Fail a zone out (cordon and drain its nodes, behind the guards) with one command.
    Failout(failout::FailoutArgs),
    /// Fail a zone back in (uncordon what a fail-out took out, ramp traffic back).
    Failback(failback::FailbackArgs),
    /// Restart a Deployment's pods in batches with a warm-up between batches.
    Restart(restart::RestartArgs),
    /// Acknowledge a gate.approval step of a run (the hand-off ACK).
    Approve(approve::ApproveArgs),
    /// Print the runs.ripcord.dev CustomResourceDefinition (YAML).
    Crd,
    /// Start a simulated cluster with a bad release, roll it back, show journal and snapshot.
    #[cfg(feature = "sim")]
    Demo(demo::DemoArgs),
    /// Mark a Deployment's revision known-good (for `rollback --known-good`).
    MarkGood(mark_good::MarkGoodArgs),
    /// Capture an evidence bundle (objects, events, logs, metrics; never Secrets).
    Snapshot(snapshot::SnapshotArgs),
    /// Check playbooks (files or builtin:NAME) and print every problem with its position.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of the playbook format.
    Schema(schema::SchemaArgs),
    /// Resolve a playbook's parameters and print the steps it would run.
    Plan(plan::PlanArgs),
    /// Run a simulated cluster that kubectl and ripcord can talk to.
    #[cfg(feature = "sim")]
    Sim(sim::SimArgs),
    /// Run the daemon: HTTP API, Alertmanager webhook, status page, drills, leader election.
    Daemon(daemon::DaemonArgs),
    /// Revert what runs did and is still in effect (newest first, drift-checked).
    Cleanup(cleanup::CleanupArgs),
    /// Check that the cluster is clean: touched objects restored, no residue, converged.
    Verify(verify::VerifyArgs),
    /// Incident book-keeping: open, update, close, show, list, note, action, handoff, ack.
    Incident(incident::IncidentArgs),
    /// The run or incident report (Markdown or self-contained HTML).
    Report(report::ReportArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completion(completion::CompletionArgs),
    /// Print the manual page (roff), or write one page per subcommand with --dir.
    Man(completion::ManArgs),
}

/// Writes to stdout. A closed pipe (the reader, e.g. `head`, has gone) ends the process
/// quietly with exit code 0; any other write error ends it with exit code 1 and one line on
/// stderr. Either way nothing panics.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_fmt(args).and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            write_stderr(format_args!("error: cannot write to stdout: {e}\n"));
            std::process::exit(i32::from(Exit::Failed.code()));
        }
    }
}

/// Writes to stderr, ignoring errors (a closed stderr must not stop a mitigation).
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// True when a panic message is `println!`'s "failed printing to stdout" on a closed pipe: the
/// binary's panic hook turns that into a quiet exit, for output that does not go through
/// [`write_stdout`].
pub fn is_broken_stdout_panic(message: &str) -> bool {
    message.contains("failed printing to stdout") && message.contains("Broken pipe")
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let Cli { global, command } = cli;
    run::set_detailed_progress(global.verbose > 0);
    match command {
        Command::Run(args) => run::run(args, global).await,
        Command::Runs(args) => runs::run(args, global).await,
        Command::Rollback(args) => rollback::run(args, global).await,
        Command::Failout(args) => failout::run(args, global).await,
        Command::Failback(args) => failback::run(args, global).await,
        Command::Restart(args) => restart::run(args, global).await,
        Command::Approve(args) => approve::run(args, global).await,
        Command::Crd => runs::print_crd(),
        #[cfg(feature = "sim")]
        Command::Demo(args) => demo::run(args, global).await,
        Command::MarkGood(args) => mark_good::run(args, global).await,
        Command::Snapshot(args) => snapshot::run(args, global).await,
        Command::Validate(args) => validate::run(args, global).await,
        Command::Schema(args) => schema::run(args, global).await,
        Command::Plan(args) => plan::run(args, global).await,
        #[cfg(feature = "sim")]
        Command::Sim(args) => sim::run(args, global).await,
        Command::Daemon(args) => daemon::run(args, global).await,
        Command::Cleanup(args) => cleanup::run(args, global).await,
        Command::Verify(args) => verify::run(args, global).await,
        Command::Incident(args) => incident::run(args, global).await,
        Command::Report(args) => report::run(args, global).await,
        Command::Completion(args) => completion::completion(args, global),
        Command::Man(args) => completion::man(args, global),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn issue13_incident_and_run_ids_are_validated_at_every_flag() {
        let bad = "../../../PWNED";
        let cases: Vec<Vec<&str>> = vec![
            vec!["run", "p.yaml", "--incident", bad],
            vec!["rollback", "deployment/web", "--incident", bad],
            vec!["failout", "zone-a", "--incident", bad],
            vec!["failback", "zone-a", "--incident", bad],
            vec!["restart", "deployment/web", "--incident", bad],
            vec!["cleanup", "--incident", bad],
            vec!["verify", "--incident", bad],
            vec!["report", "--incident", bad],
            vec!["incident", "open", bad],
            vec!["incident", "show", bad],
            vec!["cleanup", "--run", bad],
            vec!["verify", "--run", bad],
            vec!["report", bad],
            vec!["run", "--resume", bad],
        ];
        for args in cases {
            let err = Cli::try_parse_from(std::iter::once("ripcord").chain(args.iter().copied()))
                .expect_err("rejected");
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}: {err}"
            );
        }
        assert!(Cli::try_parse_from(["ripcord", "cleanup", "--incident", "INC-7"]).is_ok());
    }
}
