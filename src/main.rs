//! The `ripcord` binary: parse the command line, set up logging, run, map the outcome to an
//! exit code. Everything else lives in the library.
#![forbid(unsafe_code)]

use clap::Parser;
use ripcord::cli::{self, Cli, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon runs unattended: it logs at info by default, in JSON when asked.
    let (daemon, json) = match &cli.command {
        cli::Command::Daemon(args) => (true, args.log_format == cli::daemon::LogFormat::Json),
        _ => (false, false),
    };
    init_tracing(cli.global.verbose + u8::from(daemon), json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
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
            eprintln!("error: {err:#}");
            cli::exit::classify(&err).into()
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the `-v` level.
fn init_tracing(verbose: u8, json: bool) {
    let level = match verbose {
        0 => "warn",
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
