//! The Helm chart, notifications, the Prometheus gate, fuzzed inputs, snapshots and Lease locks.
//!
//! One test binary for these files (each a module), so the suite links a few binaries
//! instead of one per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[path = "../actions_support/mod.rs"]
mod actions_support;
#[path = "../daemon_support/mod.rs"]
mod daemon_support;

mod chart;
mod fuzz_inputs;
mod leases;
mod notify;
mod prometheus_gate;
mod snapshot;
mod snapshot_shared;
