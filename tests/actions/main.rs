//! Actions one at a time against the simulated cluster (rollback, mark-good, scale, object.patch, waits).
//!
//! One test binary for these files (each a module), so the suite links a few binaries
//! instead of one per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[path = "../actions_support/mod.rs"]
mod actions_support;

mod actions_deployment;
mod actions_mark_good;
mod actions_misc;
mod actions_object_patch;
