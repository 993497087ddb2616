//! The simulated cluster: a Kubernetes-API-compatible server over loopback HTTP with simulated
//! controllers, fault injection and scenarios.
//!
//! Used by `ripcord demo`, `ripcord sim serve` and the test suite; never by production code
//! paths that act on real clusters.

pub mod clock;
pub mod cluster;
pub mod controllers;
pub mod defaults;
pub mod discovery;
pub mod eviction;
pub mod faults;
pub mod invariants;
pub mod openapi;
pub mod patch;
pub mod pod_logs;
pub mod protobuf;
mod protobuf_json;
pub mod rng;
pub mod routes;
pub mod scenario;
pub mod selectors;
pub mod server;
pub mod service_metrics;
pub mod status;
pub mod store;
pub mod table;
pub mod validation;
pub mod versions;
pub mod watch;

pub use cluster::{SimCluster, SimError, SimOptions};
