//! Prometheus queries for guards and impact, and the daemon's own metrics registry.
//!
//! - [`prometheus`]: a client for the Prometheus HTTP API (instant and range queries, condition
//!   evaluation for `gate.prometheus`, pre-checks and stop conditions).

pub mod prometheus;
