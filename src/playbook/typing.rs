//! Typing values against a playbook: a parameter's raw value or default by its declared type
//! ([`parse_param`], [`typed_default`]), and a step's resolved arguments into the typed action of
//! the catalog ([`build_action`]). Validation checks defaults and arguments with these, and
//! planning types the values it is given with them, so the two can never disagree; this module
//! sits below both (`plan` uses `playbook`, never the other way round).

use super::catalog::Action;
use super::duration::Duration;
use super::model::{ParamSpec, ParamType};
use super::suggest;
use serde_json::Value;

/// A parameter value or default that does not parse as the parameter's declared type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{name}` ({param_type}): {reason}")]
pub struct ParamError {
    /// The parameter.
    pub name: String,
    /// Its declared type.
    pub param_type: &'static str,
    /// What is wrong (includes the value).
    pub reason: String,
}

/// Parses one raw parameter value by its declared type into its typed JSON value.
pub fn parse_param(name: &str, spec: &ParamSpec, raw: &str) -> Result<Value, ParamError> {
    let invalid = |reason: String| ParamError {
        name: name.to_string(),
        param_type: spec.param_type.as_str(),
        reason,
    };
    match spec.param_type {
        ParamType::String => Ok(Value::String(raw.to_string())),
        ParamType::Integer => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| invalid(format!("`{raw}` is not an integer"))),
        ParamType::Boolean => match raw.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(invalid(format!("`{raw}` is not `true` or `false`"))),
        },
        ParamType::Duration => Duration::parse(raw)
            .map(|d| Value::String(d.to_string()))
            .map_err(|e| invalid(e.to_string())),
        ParamType::Enum => {
            if spec.values.iter().any(|v| v == raw) {
                Ok(Value::String(raw.to_string()))
            } else {
                let hint = suggest::hint(raw, spec.values.iter().map(String::as_str));
                Err(invalid(format!("`{raw}` is not an allowed value ({hint})")))
            }
        }
    }
}

/// Checks a declared default against the parameter's type and returns its typed value.
pub fn typed_default(name: &str, spec: &ParamSpec, default: &Value) -> Result<Value, ParamError> {
    let raw = match default {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => default.to_string(),
        Value::Null => return Ok(Value::Null),
        other => {
            return Err(ParamError {
                name: name.to_string(),
                param_type: spec.param_type.as_str(),
                reason: format!("default `{other}` is not a scalar"),
            });
        }
    };
    parse_param(name, spec, &raw)
}

/// A problem with a step's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsProblem {
    /// The argument (dotted path), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// Deserializes resolved arguments into the typed action and checks the constraints serde
/// cannot express. Nulls (absent optional parameters) are dropped from maps first, so an
/// optional argument fed by an absent parameter is simply left out.
pub fn build_action(action: &str, with: Value) -> Result<Action, ArgsProblem> {
    if !Action::is_known(action) {
        return Err(ArgsProblem {
            field: None,
            reason: format!(
                "unknown action ({})",
                suggest::hint(action, Action::all_names().iter().copied())
            ),
        });
    }
    let with = drop_nulls(with);
    let mut document = serde_json::Map::new();
    document.insert("action".to_string(), Value::String(action.to_string()));
    document.insert("with".to_string(), with.clone());
    let typed: Action = serde_json::from_value(Value::Object(document)).map_err(|err| {
        match super::validate::first_args_problem(action, &with) {
            Some((path, message)) if !path.is_empty() => ArgsProblem {
                field: Some(path),
                reason: message,
            },
            _ => {
                let reason = err.to_string();
                ArgsProblem {
                    field: quoted_field(&reason),
                    reason,
                }
            }
        }
    })?;
    if let Some(problem) = typed.check().into_iter().next() {
        let (field, reason) = match problem.split_once(": ") {
            Some((field, reason)) => (Some(field.to_string()), reason.to_string()),
            None => (None, problem),
        };
        return Err(ArgsProblem { field, reason });
    }
    Ok(typed)
}

fn drop_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

/// The field named in a serde message such as "missing field `name`".
fn quoted_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_string)
}
