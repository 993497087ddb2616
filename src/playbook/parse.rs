//! Loading playbooks: from a file, from text, or from the built-in set embedded in the binary.

use super::ValidPlaybook;
use super::diagnostic::{Collector, Diagnostics};
use super::validate::validate;
use std::path::Path;

/// Largest playbook file read (bytes).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The built-in playbooks: (name, file name, YAML).
const BUILTINS: &[(&str, &str, &str)] = &[
    (
        "rollback",
        "rollback.yaml",
        include_str!("../../playbooks/rollback.yaml"),
    ),
    (
        "failout-zone",
        "failout-zone.yaml",
        include_str!("../../playbooks/failout-zone.yaml"),
    ),
    (
        "failback-zone",
        "failback-zone.yaml",
        include_str!("../../playbooks/failback-zone.yaml"),
    ),
    (
        "rolling-restart",
        "rolling-restart.yaml",
        include_str!("../../playbooks/rolling-restart.yaml"),
    ),
];

const BUILTIN_NAMES: &[&str] = &[
    "rollback",
    "failout-zone",
    "failback-zone",
    "rolling-restart",
];

/// Parses and validates playbook text; `source_name` names it in diagnostics.
pub fn parse_str(source_name: &str, text: &str) -> Result<ValidPlaybook, Diagnostics> {
    validate(source_name, text)
}

/// Reads, parses and validates a playbook file. A path of the form `builtin:NAME` loads a
/// built-in playbook. Read errors become a diagnostic too.
pub fn load_file(path: impl AsRef<Path>) -> Result<ValidPlaybook, Diagnostics> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    if let Some(name) = shown.strip_prefix("builtin:") {
        return load_builtin(name);
    }
    let text = match read_bounded(path) {
        Ok(text) => text,
        Err(message) => {
            let mut collector = Collector::new(&shown, "");
            collector.push("io", 0, 0, 1, "", message, None);
            return Err(into_diagnostics(collector, &shown));
        }
    };
    parse_str(&shown, &text)
}

/// Loads a built-in playbook by name (`rollback`), reporting unknown names as a diagnostic.
pub fn load_builtin(name: &str) -> Result<ValidPlaybook, Diagnostics> {
    let source = format!("builtin:{name}");
    match builtin(name) {
        Some((file, text)) => parse_str(&format!("playbooks/{file}"), text),
        None => {
            let mut collector = Collector::new(&source, "");
            collector.push(
                "io",
                0,
                0,
                1,
                "",
                format!("there is no built-in playbook `{name}`"),
                Some(super::suggest::hint(name, BUILTIN_NAMES.iter().copied())),
            );
            Err(into_diagnostics(collector, &source))
        }
    }
}

/// A built-in playbook: its file name and YAML text.
pub fn builtin(name: &str) -> Option<(&'static str, &'static str)> {
    BUILTINS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, file, text)| (*file, *text))
}

/// The names of the built-in playbooks.
pub fn builtin_names() -> &'static [&'static str] {
    BUILTIN_NAMES
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!(
            "{} is a directory, not a playbook file",
            path.display()
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes; playbooks are limited to {MAX_FILE_BYTES} bytes",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

fn into_diagnostics(collector: Collector<'_>, file: &str) -> Diagnostics {
    match collector.finish() {
        Err(d) => d,
        Ok(()) => Diagnostics {
            file: file.to_string(),
            items: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_is_valid() {
        assert_eq!(BUILTINS.len(), BUILTIN_NAMES.len());
        for name in builtin_names() {
            if let Err(d) = load_builtin(name) {
                panic!("built-in `{name}` is invalid:\n{d}");
            }
        }
    }

    #[test]
    fn unknown_builtin_suggests() {
        let Err(d) = load_file("builtin:rollbak") else {
            panic!("accepted");
        };
        assert!(d.to_string().contains("did you mean `rollback`?"), "{d}");
    }
}
