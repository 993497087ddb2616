//! ripcord: an automated mitigation runner for Kubernetes.
//!
//! One crate, one binary that is both a CLI and a daemon. The modules follow the data flow
//! described in `docs/architecture.md`:
//!
//! ```text
//! playbook YAML ─parse/validate─▶ playbook ─plan─▶ plan ─execute─▶ engine ─▶ actions ─▶ k8s
//!                                                        │
//!                                     journal ◀──────────┤──────────▶ snapshot, notify
//!                                        │
//!                               cleanup / verify
//! ```
#![forbid(unsafe_code)]

pub mod actions;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod errors;
pub mod html;
pub mod journal;
pub mod k8s;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod plan;
pub mod playbook;
pub mod redact;
pub mod retry;
#[cfg(feature = "sim")]
pub use ripcord_sim as sim;
pub mod snapshot;
