//! `ripcord plan FILE -p key=value... --offline`: resolve a playbook's parameters and print
//! the fully resolved steps without touching a cluster.
//!
//! `-o json` prints the [`crate::plan::Plan`] as JSON. An invalid playbook, a missing, unknown
//! or malformed parameter ends with exit code 2. `-n NS` fills a `namespace` parameter that
//! `-p` does not give. Without `--offline`, the plan is run by the engine in dry-run mode
//! against the cluster: every step's diff and inverse are shown and nothing is written.

use super::exit::{Exit, with_exit};
use super::{GlobalArgs, Output};
use crate::playbook;
use anyhow::anyhow;
use clap::Args;
use std::collections::BTreeMap;

/// The run id used in offline plans unless `--run-id` is given.
pub const OFFLINE_RUN_ID: &str = "r-offline";

/// Arguments of `ripcord plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The playbook file, or `builtin:NAME`.
    #[arg(value_name = "FILE")]
    pub file: String,

    /// A parameter, `KEY=VALUE` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    /// Resolve without contacting a cluster.
    #[arg(long)]
    pub offline: bool,

    /// The run id substituted for `$(run.id)`.
    #[arg(long, value_name = "ID", default_value = OFFLINE_RUN_ID)]
    pub run_id: String,

    #[command(flatten)]
    pub config: super::run::ConfigArgs,
}

/// Parses `-p KEY=VALUE` arguments; a missing `=` or a repeated key is a usage error.
pub fn parse_param_args(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for item in raw {
        let Some((key, value)) = item.split_once('=') else {
            return Err(with_exit(
                Exit::Usage,
                anyhow!("parameter `{item}` is not KEY=VALUE (write e.g. -p name=checkout)"),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(with_exit(
                Exit::Usage,
                anyhow!("parameter `{item}` has an empty key (write e.g. -p name=checkout)"),
            ));
        }
        if params.insert(key.to_string(), value.to_string()).is_some() {
            return Err(with_exit(
                Exit::Usage,
                anyhow!("parameter `{key}` is given more than once"),
            ));
        }
    }
    Ok(params)
}

/// Plans and prints.
pub async fn run(args: PlanArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let mut params = parse_param_args(&args.params)?;
    let valid = match playbook::load_file(&args.file) {
        Ok(valid) => valid,
        Err(diagnostics) => {
            errln!("{diagnostics}\n");
            return Err(with_exit(
                Exit::Usage,
                anyhow!("{} is not a valid playbook", args.file),
            ));
        }
    };
    if let Some(namespace) = &global.namespace
        && valid.playbook().spec.params.contains_key("namespace")
        && !params.contains_key("namespace")
    {
        params.insert("namespace".to_string(), namespace.clone());
    }
    let plan = crate::plan::plan(&valid, &params, &args.run_id).map_err(|err| {
        with_exit(
            Exit::Usage,
            anyhow::Error::new(err).context(format!("cannot plan {}", args.file)),
        )
    })?;
    if !args.offline {
        return super::run::live_plan(plan, &global, &args.config).await;
    }
    match global.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&plan)?),
        Output::Text => out!("{}", plan.render_text()),
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_args_are_split_at_the_first_equals_sign() {
        let parsed = parse_param_args(&["a=b=c".to_string(), "d=".to_string()]).ok();
        let expected = BTreeMap::from([
            ("a".to_string(), "b=c".to_string()),
            ("d".to_string(), String::new()),
        ]);
        assert_eq!(parsed, Some(expected));
    }

    #[test]
    fn malformed_param_args_are_usage_errors() {
        for bad in [
            vec!["novalue".to_string()],
            vec!["=x".to_string()],
            vec!["a=1".to_string(), "a=2".to_string()],
        ] {
            let err = parse_param_args(&bad).err();
            let exit = err.as_ref().map(super::super::exit::classify);
            assert_eq!(exit, Some(Exit::Usage), "{bad:?}");
        }
    }
}
