//! The daemon: its API, alerts, approvals, drills, leader election, status page, the process, and the end-to-end test with real Prometheus and Alertmanager.
//!
//! One test binary for these files (each a module), so the suite links a few binaries
//! instead of one per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[path = "../daemon_support/mod.rs"]
mod daemon_support;

mod daemon_alerts;
mod daemon_api;
mod daemon_approval;
mod daemon_cli;
mod daemon_contexts;
mod daemon_drills;
mod daemon_e2e;
mod daemon_leader;
mod daemon_status_page;
