//! `ripcord completion bash|zsh|fish|powershell|elvish` and `ripcord man [--dir DIR]`: shell
//! completions and manual pages generated from the clap definitions, so they never drift from
//! the flags.
//!
//! ```sh
//! ripcord completion bash > /etc/bash_completion.d/ripcord
//! ripcord completion zsh > "${fpath[1]}/_ripcord"
//! ripcord completion fish > ~/.config/fish/completions/ripcord.fish
//! ripcord man > ripcord.1                # one page
//! ripcord man --dir man/                 # ripcord.1 and one page per subcommand
//! ```

use super::{Cli, Exit, GlobalArgs};
use anyhow::Context as _;
use clap::{Args, CommandFactory};
use std::path::PathBuf;

/// `ripcord completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `ripcord man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `ripcord.1` and one page per subcommand (`ripcord-failout.1`, …) into DIR instead
    /// of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The name the binary was invoked as, for usage text: `kubectl ripcord` when installed as
/// the kubectl plugin `kubectl-ripcord` (kubectl runs plugins by that file name), else
/// `ripcord`.
pub fn invoked_name() -> &'static str {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let file = std::path::Path::new(&argv0)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if file == "kubectl-ripcord" {
        "kubectl ripcord"
    } else {
        "ripcord"
    }
}

/// The clap command, named as invoked (see [`invoked_name`]).
pub fn command() -> clap::Command {
    let command = Cli::command();
    match invoked_name() {
        "ripcord" => command,
        name => command.bin_name(name).display_name(name),
    }
}

/// Runs `ripcord completion`.
pub fn completion(args: CompletionArgs, _global: GlobalArgs) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    // Completion scripts hook an executable name: the plugin's file name when invoked so.
    let bin = match invoked_name() {
        "ripcord" => "ripcord",
        _ => "kubectl-ripcord",
    };
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, bin, &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(Exit::Ok)
}

/// Runs `ripcord man`.
pub fn man(args: ManArgs, _global: GlobalArgs) -> anyhow::Result<Exit> {
    let cmd = Cli::command();
    if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        clap_mangen::generate_to(cmd, &dir)
            .with_context(|| format!("cannot write manual pages to {}", dir.display()))?;
        errln!("manual pages written to {}", dir.display());
        return Ok(Exit::Ok);
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .context("cannot render the manual page")?;
    out!("{}", String::from_utf8_lossy(&page));
    Ok(Exit::Ok)
}
