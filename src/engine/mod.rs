//! The run engine: executes a plan step by step through the idempotency contract, with
//! timeouts, retries, `onFailure`, guards, dry-run and resume.
