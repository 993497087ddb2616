//! The JSON Schema of the playbook format, printed by `ripcord schema` and committed as
//! `schema/playbook.schema.json` so editors validate playbooks while people type.
//!
//! It is generated from the model types (schemars) and then refined: a step's `action` lists
//! the catalog names, and for each action its `with` gets that action's argument schema
//! (`if`/`then`), where integer and boolean arguments also accept a lone `$(params.NAME)`.

use super::catalog::Action;
use super::model::Playbook;
use serde_json::{Map, Value, json};

/// A string that is exactly one parameter reference.
pub const REFERENCE_PATTERN: &str = r"^\$\(params\.[A-Za-z][A-Za-z0-9_-]*\)$";

/// The schema as a JSON value.
pub fn playbook_schema() -> Value {
    let mut root = serde_json::to_value(schemars::schema_for!(Playbook)).unwrap_or_default();
    let actions = serde_json::to_value(schemars::schema_for!(Action)).unwrap_or_default();
    let action_defs = actions
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut rules = Vec::new();
    if let Some(variants) = actions.get("oneOf").and_then(Value::as_array) {
        for variant in variants {
            let name = variant.pointer("/properties/action/const").cloned();
            let args = variant
                .pointer("/properties/with/$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|def| action_defs.get(def));
            if let (Some(name), Some(args)) = (name, args) {
                rules.push(json!({
                    "if": { "properties": { "action": { "const": name } }, "required": ["action"] },
                    "then": { "properties": { "with": allow_references(args) } }
                }));
            }
        }
    }
    if let Some(defs) = root.get_mut("$defs").and_then(Value::as_object_mut) {
        for (name, def) in action_defs {
            defs.entry(name).or_insert(def);
        }
        if let Some(step) = defs.get_mut("Step").and_then(Value::as_object_mut) {
            if let Some(action) = step
                .get_mut("properties")
                .and_then(|p| p.get_mut("action"))
                .and_then(Value::as_object_mut)
            {
                action.insert("enum".to_string(), json!(Action::all_names()));
            }
            step.insert("allOf".to_string(), Value::Array(rules));
        }
    }
    root
}

/// The schema as pretty JSON text with a trailing newline (the committed file's content).
pub fn playbook_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&playbook_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// A copy of an args schema whose non-string arguments (numbers, booleans, durations, enums,
/// batch sizes…) also accept a lone parameter reference.
fn allow_references(args: &Value) -> Value {
    let mut args = args.clone();
    if let Some(props) = args.get_mut("properties").and_then(Value::as_object_mut) {
        let updated: Map<String, Value> = props
            .iter()
            .map(|(name, prop)| {
                let plain_string = match prop.get("type") {
                    Some(Value::String(t)) => t == "string",
                    Some(Value::Array(ts)) => ts
                        .iter()
                        .all(|t| t.as_str().is_some_and(|t| t == "string" || t == "null")),
                    _ => false,
                };
                let value = if plain_string {
                    prop.clone()
                } else {
                    json!({ "anyOf": [prop, { "type": "string", "pattern": REFERENCE_PATTERN }] })
                };
                (name.clone(), value)
            })
            .collect();
        *props = updated;
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_know_every_action() {
        let schema = playbook_schema();
        let names = schema.pointer("/$defs/Step/properties/action/enum");
        assert_eq!(names, Some(&json!(Action::all_names())));
        let rules = schema
            .pointer("/$defs/Step/allOf")
            .and_then(Value::as_array);
        assert_eq!(rules.map(Vec::len), Some(Action::all_names().len()));
        let replicas = schema.pointer(
            "/$defs/Step/allOf/2/then/properties/with/properties/replicas/anyOf/1/pattern",
        );
        assert_eq!(replicas, Some(&json!(REFERENCE_PATTERN)));
    }
}
