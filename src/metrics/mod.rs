//! Prometheus queries for guards and impact, and the daemon's own metrics registry.
