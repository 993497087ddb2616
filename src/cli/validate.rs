//! `ripcord validate FILE...`: check playbooks and print every problem with its position.
//!
//! Exit code 0 when every file is valid, 2 when any is not. `FILE` may be `builtin:NAME`.
//! Diagnostics go to stderr (text) or, with `-o json`, everything goes to stdout as one JSON
//! document.

use super::exit::Exit;
use super::{GlobalArgs, Output};
use crate::playbook::{self, Diagnostic};
use clap::Args;
use serde::Serialize;

/// Arguments of `ripcord validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Playbook files, or `builtin:NAME` for a built-in playbook.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
}

/// The result for one file (the JSON output).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FileReport {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    playbook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<usize>,
    diagnostics: Vec<Diagnostic>,
}

/// Validates every file; prints the results.
pub async fn run(args: ValidateArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let mut reports = Vec::new();
    for file in &args.files {
        let report = match playbook::load_file(file) {
            Ok(valid) => {
                tracing::debug!(file = %file, playbook = %valid.name(), "playbook valid");
                if global.output == Output::Text {
                    outln!(
                        "ok: {file} (playbook `{}`, {} step{})",
                        valid.name(),
                        valid.playbook().spec.steps.len(),
                        if valid.playbook().spec.steps.len() == 1 {
                            ""
                        } else {
                            "s"
                        }
                    );
                }
                FileReport {
                    file: file.clone(),
                    valid: true,
                    playbook: Some(valid.name().to_string()),
                    steps: Some(valid.playbook().spec.steps.len()),
                    diagnostics: Vec::new(),
                }
            }
            Err(diagnostics) => {
                if global.output == Output::Text {
                    errln!("{diagnostics}\n");
                }
                FileReport {
                    file: file.clone(),
                    valid: false,
                    playbook: None,
                    steps: None,
                    diagnostics: diagnostics.items,
                }
            }
        };
        reports.push(report);
    }
    let invalid = reports.iter().filter(|r| !r.valid).count();
    match global.output {
        Output::Json => {
            let document = serde_json::json!({ "valid": invalid == 0, "files": reports });
            outln!("{}", serde_json::to_string_pretty(&document)?);
        }
        Output::Text if invalid > 0 => {
            errln!(
                "{invalid} of {} playbook file{} invalid",
                reports.len(),
                if reports.len() == 1 { "" } else { "s" }
            );
        }
        Output::Text => {}
    }
    Ok(if invalid == 0 { Exit::Ok } else { Exit::Usage })
}
