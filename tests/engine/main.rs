//! The engine end to end: guards, resume after a crash, rollback through the binary.
//!
//! One test binary for these files (each a module), so the suite links a few binaries
//! instead of one per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[path = "../engine_support/mod.rs"]
mod engine_support;

mod engine_guards;
mod engine_resume;
mod rollback;
