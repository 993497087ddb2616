//! The `ripcord` binary: parse the command line, set up logging, run, map the outcome to an
//! exit code. Everything else lives in the library.
#![forbid(unsafe_code)]

use clap::FromArgMatches as _;
use ripcord::cli::{self, Cli, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    // Installed as `kubectl-ripcord`, kubectl runs it as `kubectl ripcord …`: usage and help
    // say so.
    let matches = cli::completion::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    // The daemon runs unattended: it logs at info by default, in JSON when asked. The simulated
    // cluster logs warnings; a command run by a person reports what went wrong itself, so its
    // log speaks only for errors (each warning once) until -v.
    let (verbose, service, json) = match &cli.command {
        cli::Command::Daemon(args) => (
            cli.global.verbose.saturating_add(1),
            true,
            args.log_format == cli::daemon::LogFormat::Json,
        ),
        #[cfg(feature = "sim")]
        cli::Command::Sim(_) => (cli.global.verbose, true, false),
        _ => (cli.global.verbose, false, false),
    };
    init_tracing(verbose, service, json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            cli::write_stderr(format_args!(
                "error: cannot start the async runtime: {err}\n"
            ));
            return Exit::Failed.into();
        }
    };
    let result = runtime.block_on(cli::run(cli));
    // Tasks still running (a server's connections, a background capture) must not hold the
    // process open once the command has decided how it ends.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(exit) => exit.into(),
        Err(err) => {
            cli::write_stderr(format_args!("error: {err:#}\n"));
            cli::exit::classify(&err).into()
        }
    }
}

/// `println!` panics when stdout is a closed pipe (`ripcord … | head`); the CLI writes through
/// `cli::write_stdout`, which exits quietly instead. This hook does the same for any write that
/// does not (a library's `println!`): exit 0, no panic message. Other panics keep the default
/// report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if cli::is_broken_stdout_panic(message) {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Logs go to stderr; `RUST_LOG` overrides the `-v` level (default: warnings for `daemon` and
/// `sim`, errors for the rest). Colours only on a terminal, and never with `NO_COLOR` set;
/// `json`: one JSON object per line, for log collectors.
fn init_tracing(verbose: u8, service: bool, json: bool) {
    let level = match verbose {
        0 if service => "warn",
        0 => "error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // Dependencies (kube's connection retries, hyper) speak only from -vv on: ripcord's own
    // error already names what failed and what to do next.
    let others = if verbose >= 2 { level } else { "off" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("ripcord={level},{others}"))
    });
    use std::io::IsTerminal as _;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(colour).init();
    }
}
