//! Credential redaction of captured objects. Pod specs carry credentials in literal env values
//! and container arguments; `kubectl apply` copies the whole object, env included, into the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation.
//!
//! [`redact_credentials`] keeps every name (env variable names, argument flags, URL hosts) and
//! replaces the values that look like credentials by `<redacted>`:
//!
//! - env entries whose name looks like a credential (`PASSWORD`, `TOKEN`, `SECRET`, `KEY`,
//!   `CREDENTIAL`, `AUTH`…) with a literal `value` (`valueFrom` references are kept: they name
//!   a Secret key, not its value);
//! - `--flag=value` and `--flag value` arguments (`args`, `command`) whose flag looks like one;
//! - credentials in URLs (`scheme://user:password@host`) anywhere in env values and arguments;
//! - the last-applied-configuration annotation, dropped as a whole.
//!
//! It returns what it redacted (paths and names, never values) for the bundle's manifest.

use crate::journal::record::is_secret_name;
use crate::journal::{REDACTED, redact_url_credentials};
use serde_json::Value;

/// The annotation `kubectl apply` keeps a full copy of the object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A credential-looking name (env variable, argument flag).
pub fn is_credential_name(name: &str) -> bool {
    is_secret_name(name) || name.to_ascii_lowercase().contains("key")
}

/// Redacts `value` in place; returns one line per redaction (`spec.template.spec.containers[0]
/// env DB_PASSWORD`), without the values.
pub fn redact_credentials(value: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

fn walk(value: &mut Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(annotations)) = map.get_mut("annotations")
                && annotations.remove(LAST_APPLIED).is_some()
            {
                out.push(format!(
                    "{} annotation {LAST_APPLIED}",
                    join(path, "annotations")
                ));
            }
            for (key, child) in map.iter_mut() {
                let here = join(path, key);
                match (key.as_str(), child) {
                    ("env", Value::Array(items)) => redact_env(items, &here, out),
                    ("args" | "command", Value::Array(items)) => redact_args(items, &here, out),
                    (_, child) => walk(child, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                walk(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn redact_env(items: &mut [Value], path: &str, out: &mut Vec<String>) {
    for item in items.iter_mut() {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(Value::String(text)) = item.get_mut("value") else {
            continue;
        };
        if is_credential_name(&name) {
            if text.as_str() != REDACTED && !text.is_empty() {
                *text = REDACTED.to_string();
                out.push(format!("{path} {name}"));
            }
        } else if let Some(clean) = redact_url_credentials(text) {
            *text = clean;
            out.push(format!("{path} {name} (URL credentials)"));
        }
    }
}

fn redact_args(items: &mut [Value], path: &str, out: &mut Vec<String>) {
    let mut value_follows = false;
    for (i, item) in items.iter_mut().enumerate() {
        let Value::String(arg) = item else {
            value_follows = false;
            continue;
        };
        let here = format!("{path}[{i}]");
        if value_follows && !arg.starts_with('-') {
            *arg = REDACTED.to_string();
            out.push(here);
            value_follows = false;
            continue;
        }
        value_follows = false;
        if let Some(flag) = arg.strip_prefix('-') {
            let flag = flag.trim_start_matches('-').to_string();
            match flag.split_once('=') {
                Some((name, value)) if is_credential_name(name) && !value.is_empty() => {
                    let keep = arg.len() - value.len();
                    let redacted = format!("{}{REDACTED}", &arg[..keep]);
                    out.push(format!("{here} ({name})"));
                    *arg = redacted;
                    continue;
                }
                None if is_credential_name(&flag) => {
                    value_follows = true;
                    continue;
                }
                _ => {}
            }
        }
        if let Some(clean) = redact_url_credentials(arg) {
            *arg = clean;
            out.push(format!("{here} (URL credentials)"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn issue13_env_values_and_args_that_look_like_credentials_are_redacted_names_kept() {
        let mut pod = json!({
            "metadata": {"name": "web", "annotations": {LAST_APPLIED: "{\"env\":\"hunter2\"}"}},
            "spec": {"containers": [{
                "name": "app",
                "env": [
                    {"name": "DB_PASSWORD", "value": "hunter2"},
                    {"name": "API_TOKEN", "value": "t0k3n"},
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": "abc"},
                    {"name": "DATABASE_URL", "value": "postgres://app:pa55@db:5432/x"},
                    {"name": "LOG_LEVEL", "value": "debug"},
                    {"name": "SIGNING_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                ],
                "args": ["--port=8080", "--token=s3cr3t", "--password", "pw", "--verbose",
                         "https://user:pw@repo.example/x"]
            }]}
        });
        let redacted = redact_credentials(&mut pod);
        let text = pod.to_string();
        for leaked in [
            "hunter2", "t0k3n", "\"abc\"", "pa55", "s3cr3t", "\"pw\"", "user:pw",
        ] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        for kept in [
            "DB_PASSWORD",
            "API_TOKEN",
            "debug",
            "--port=8080",
            "--token=<redacted>",
            "--password",
            "postgres://<redacted>@db:5432/x",
            "secretKeyRef",
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
        assert_eq!(redacted.len(), 8, "{redacted:?}");
        assert!(
            redacted.iter().any(|r| r.ends_with("env DB_PASSWORD")),
            "{redacted:?}"
        );
        assert!(redacted.iter().all(|r| !r.contains("hunter2")));
    }
}
