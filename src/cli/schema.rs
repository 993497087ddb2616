//! `ripcord schema`: print the JSON Schema of the playbook format.
//!
//! The output is committed as `schema/playbook.schema.json`; a test fails when that file is
//! stale (regenerate with `cargo run -- schema > schema/playbook.schema.json`).

use super::GlobalArgs;
use super::exit::Exit;
use clap::Args;

/// Arguments of `ripcord schema` (none).
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {}

/// Prints the schema on stdout.
pub async fn run(_args: SchemaArgs, _global: GlobalArgs) -> anyhow::Result<Exit> {
    out!("{}", crate::playbook::schema::playbook_schema_text());
    Ok(Exit::Ok)
}
