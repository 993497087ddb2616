//! The run journal: an append-only, fsync'd JSON-lines write-ahead log per run, run
//! directories and summaries, and the `Run` custom resource mirror.
