//! The simulated cluster: a Kubernetes-API-compatible server over loopback HTTP with simulated
//! controllers, fault injection and scenarios.
