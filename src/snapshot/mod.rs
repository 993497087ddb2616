//! Evidence bundles captured before the first mutation: objects, events, logs, node conditions
//! and impact metrics, with secrets never captured.
