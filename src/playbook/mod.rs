//! The playbook language: the YAML model, parsing with located diagnostics, validation,
//! parameter templating and the JSON Schema.
