//! The daemon: HTTP API, Alertmanager webhook, status page, scheduler, leader election, run
//! queue and per-target locks.
