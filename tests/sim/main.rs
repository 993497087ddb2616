//! The simulated cluster: its API server, controllers, kubectl against it, watches, and the upstream-derived kubectl conformance suite.
//!
//! One test binary for these files (each a module), so the suite links a few binaries
//! instead of one per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod sim_api;
mod sim_conformance;
mod sim_controllers;
mod sim_kubectl;
mod sim_watcher;
