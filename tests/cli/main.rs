//! The `ripcord` binary as people run it: commands, approval progress, playbook commands, snapshots, the demo, verify and reports.
//!
//! One test binary for these files (each a module), so the suite links a few binaries
//! instead of one per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[path = "../actions_support/mod.rs"]
mod actions_support;
#[path = "../cleanup_support/mod.rs"]
mod cleanup_support;
#[path = "../mitigations_support/mod.rs"]
mod mitigations_support;

mod cli_approval_progress;
mod cli_playbook;
mod commands_cli;
mod demo;
mod report_cluster;
mod report_html;
mod snapshot_cli;
mod verify_cluster;
