//! The playbook language: the YAML model, parsing with located diagnostics, validation,
//! parameter templating and the JSON Schema.
//!
//! - [`model`]: the document types (`apiVersion: ripcord.dev/v1alpha1`, `kind: Playbook`).
//! - [`catalog`]: the closed set of actions and the typed shape of their arguments.
//! - [`duration`]: `30s`, `5m`, `1h30m`, `250ms` (the type lives in [`crate::model`]).
//! - [`template`]: `$(params.NAME)` and `$(run.id)` references.
//! - [`typing`]: parameter values by their declared type, step arguments into the typed action.
//! - [`yaml`], [`validate`], [`diagnostic`], [`parse`]: located parsing and validation that
//!   collects every problem ([`Diagnostics`]).
//! - [`schema`]: the JSON Schema printed by `ripcord schema`.

pub mod catalog;
pub mod diagnostic;
/// Durations as people write them; defined in [`crate::model`].
pub mod duration {
    pub use crate::model::duration::*;
}
pub mod model;
pub mod parse;
pub mod schema;
pub mod suggest;
pub mod template;
pub mod typing;
pub mod validate;
pub mod yaml;

pub use catalog::Action;
pub use diagnostic::{Diagnostic, Diagnostics};
pub use duration::Duration;
pub use model::{
    ChannelType, CompareOp, Guards, NotifyChannel, OnFailure, ParamSpec, ParamType, Playbook,
    PromCondition, Retries, SnapshotSpec, Step,
};
pub use parse::{builtin, builtin_names, load_builtin, load_file, parse_str};

/// A playbook that passed validation: its references resolve, its steps name catalog actions
/// with well-shaped arguments. Only the parser/validator builds one.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPlaybook {
    playbook: Playbook,
    source_name: String,
}

impl ValidPlaybook {
    /// Wraps a playbook that the validator accepted.
    pub(crate) fn new(playbook: Playbook, source_name: impl Into<String>) -> Self {
        ValidPlaybook {
            playbook,
            source_name: source_name.into(),
        }
    }

    /// The playbook.
    pub fn playbook(&self) -> &Playbook {
        &self.playbook
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.playbook.metadata.name
    }

    /// Where it came from (a file path, `builtin:rollback`, a ConfigMap key…).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }
}
