//! Cleanup and incidents: reverting journaled runs, drift, forged records, incident files, and
//! the versioned formats (old journals, Run resources and incidents still load and clean up).
//!
//! One test binary for these files (each a module), so the suite links a few binaries
//! instead of one per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[path = "../cleanup_support/mod.rs"]
mod cleanup_support;

mod cleanup_drift;
mod cleanup_incident;
mod formats;
