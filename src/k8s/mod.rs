//! The only place that calls `kube::Api`: typed helpers with the `ripcord` field manager and
//! per-call timeouts.
