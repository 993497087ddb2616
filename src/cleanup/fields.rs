//! The fields a JSON merge patch touches, as leaf paths, and their values in an object.
//!
//! A merge patch (RFC 7386) touches a set of leaves: every non-object value (including `null`,
//! which removes a key, and arrays, which are replaced whole) at the end of a path of object
//! keys. Drift detection compares an object's value at each leaf with the values before ripcord
//! touched it and as ripcord left them. A missing key reads as `null`.

use serde_json::{Map, Value};

/// A path of object keys from the root (`["spec", "unschedulable"]`).
pub type FieldPath = Vec<String>;

/// The leaves of a merge patch with the value the patch sets there. An empty object inside the
/// patch touches nothing.
pub fn leaves(patch: &Value) -> Vec<(FieldPath, Value)> {
    let mut out = Vec::new();
    collect(patch, &mut Vec::new(), &mut out);
    out
}

fn collect(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<(FieldPath, Value)>) {
    match value {
        Value::Object(map) if !prefix.is_empty() || !map.is_empty() => {
            for (key, child) in map {
                prefix.push(key.clone());
                collect(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Object(_) => {}
        other => out.push((prefix.clone(), other.clone())),
    }
}

/// The value at `path` in `object`; `null` where any key on the way is missing.
pub fn value_at(object: &Value, path: &[String]) -> Value {
    let mut current = object;
    for key in path {
        match current.as_object().and_then(|m| m.get(key)) {
            Some(next) => current = next,
            None => return Value::Null,
        }
    }
    current.clone()
}

/// Sets `path` in `object` to `value`, creating objects on the way; `null` removes the key.
pub fn set_at(object: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *object = value;
        return;
    };
    let mut current = object;
    for key in parents {
        if !current.is_object() {
            if value.is_null() {
                return;
            }
            *current = Value::Object(Map::new());
        }
        let Some(map) = current.as_object_mut() else {
            return;
        };
        current = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !current.is_object() {
        if value.is_null() {
            return;
        }
        *current = Value::Object(Map::new());
    }
    if let Some(map) = current.as_object_mut() {
        if value.is_null() {
            map.remove(last);
        } else {
            map.insert(last.clone(), value);
        }
    }
}

/// Builds a merge patch from leaves (`null` values remove keys).
pub fn patch_from(leaves: &[(FieldPath, Value)]) -> Value {
    let mut out = Value::Object(Map::new());
    for (path, value) in leaves {
        set_in_patch(&mut out, path, value.clone());
    }
    out
}

fn set_in_patch(patch: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = patch;
    for key in parents {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Some(map) = current.as_object_mut() else {
            return;
        };
        current = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(map) = current.as_object_mut() {
        map.insert(last.clone(), value);
    }
}

/// The merge patch that turns `from` into `to` (`None` when they are equal): objects are
/// compared key by key (removed keys become `null`), anything else is replaced whole.
pub fn merge_diff(from: &Value, to: &Value) -> Option<Value> {
    if from == to {
        return None;
    }
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = Map::new();
            for (key, new) in b {
                let old = a.get(key).unwrap_or(&Value::Null);
                if let Some(d) = merge_diff(old, new) {
                    out.insert(key.clone(), d);
                }
            }
            for key in a.keys() {
                if !b.contains_key(key) {
                    out.insert(key.clone(), Value::Null);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => Some(to.clone()),
    }
}

/// Applies a patch that is either a JSON merge patch (an object) or a JSON patch (an array of
/// operations) to `doc`; returns the paths it touches.
pub fn apply_any_patch(doc: &mut Value, patch: &Value) -> Result<Vec<FieldPath>, String> {
    match patch {
        Value::Array(ops) => {
            let parsed: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("the recorded JSON patch does not parse: {e}"))?;
            json_patch::patch(doc, &parsed.0)
                .map_err(|e| format!("the recorded JSON patch does not apply: {e}"))?;
            Ok(ops
                .iter()
                .filter_map(|op| op.get("path").and_then(Value::as_str))
                .map(pointer_path)
                .collect())
        }
        Value::Object(_) => {
            json_patch::merge(doc, patch);
            Ok(leaves(patch).into_iter().map(|(path, _)| path).collect())
        }
        _ => Err("the recorded patch is neither a merge patch nor a JSON patch".into()),
    }
}

/// A JSON pointer (`/metadata/annotations/a~1b`) as a path.
pub fn pointer_path(pointer: &str) -> FieldPath {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A path for people: `spec.unschedulable`, `metadata.labels["ripcord.dev/cordoned-by"]`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for key in path {
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        } else {
            out.push_str(&format!("[{}]", Value::String(key.clone())));
        }
    }
    out
}

/// A value for people: compact JSON in full (a cut would hide where two long values, such as
/// route rules, differ), `(absent)` for null.
pub fn display_value(value: &Value) -> String {
    match value {
        Value::Null => "(absent)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Equality of two values at a leaf, where `false`/`0`/empty are NOT the same as absent, except
/// for `spec.unschedulable` and `spec.paused` style booleans: `false` equals absent (the API
/// server omits false booleans for these fields).
pub fn same_at(path: &[String], a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let defaults_false = matches!(
        path.last().map(String::as_str),
        Some("unschedulable" | "paused")
    );
    defaults_false && is_false_or_null(a) && is_false_or_null(b)
}

fn is_false_or_null(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(keys: &[&str]) -> FieldPath {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn leaves_of_a_nested_patch() {
        let patch = json!({"spec": {"unschedulable": null},
                           "metadata": {"labels": {"ripcord.dev/cordoned-by": null}}, "x": [1]});
        let mut got = leaves(&patch);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                (
                    p(&["metadata", "labels", "ripcord.dev/cordoned-by"]),
                    Value::Null
                ),
                (p(&["spec", "unschedulable"]), Value::Null),
                (p(&["x"]), json!([1])),
            ]
        );
        assert!(leaves(&json!({})).is_empty());
    }

    #[test]
    fn value_at_reads_missing_as_null() {
        let obj = json!({"spec": {"replicas": 3}});
        assert_eq!(value_at(&obj, &p(&["spec", "replicas"])), json!(3));
        assert_eq!(value_at(&obj, &p(&["spec", "paused"])), Value::Null);
        assert_eq!(value_at(&obj, &p(&["status", "x", "y"])), Value::Null);
    }

    #[test]
    fn set_at_creates_and_removes() {
        let mut obj = json!({"spec": {"replicas": 3}});
        set_at(&mut obj, &p(&["metadata", "labels", "a"]), json!("b"));
        assert_eq!(obj["metadata"]["labels"]["a"], json!("b"));
        set_at(&mut obj, &p(&["metadata", "labels", "a"]), Value::Null);
        assert_eq!(obj["metadata"]["labels"], json!({}));
        set_at(&mut obj, &p(&["nothing", "here"]), Value::Null);
        assert!(obj.get("nothing").is_some_and(Value::is_object) || obj.get("nothing").is_none());
    }

    #[test]
    fn patch_round_trips_through_leaves() {
        let patch =
            json!({"spec": {"replicas": 2, "paused": null}, "metadata": {"labels": {"a": "b"}}});
        assert_eq!(patch_from(&leaves(&patch)), patch);
    }

    #[test]
    fn merge_diff_nulls_removed_keys_and_replaces_arrays() {
        let from = json!({"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 1});
        let to = json!({"a": {"x": 1, "z": 3}, "b": [1], "c": 1});
        let d = merge_diff(&from, &to).unwrap();
        assert_eq!(d, json!({"a": {"y": null, "z": 3}, "b": [1]}));
        let mut applied = from.clone();
        json_patch::merge(&mut applied, &d);
        assert_eq!(applied, to);
        assert_eq!(merge_diff(&to, &to), None);
    }

    #[test]
    fn json_patches_apply_and_report_their_paths() {
        let mut doc = json!({"spec": {"template": {"a": 1}}, "metadata": {}});
        let patch = json!([{"op": "replace", "path": "/spec/template", "value": {"b": 2}},
                           {"op": "add", "path": "/metadata/annotations", "value": {"k/x": "v"}}]);
        let paths = apply_any_patch(&mut doc, &patch).unwrap();
        assert_eq!(doc["spec"]["template"], json!({"b": 2}));
        assert_eq!(
            paths,
            vec![p(&["spec", "template"]), p(&["metadata", "annotations"])]
        );
        assert_eq!(
            pointer_path("/metadata/labels/a~1b"),
            p(&["metadata", "labels", "a/b"])
        );
        assert!(apply_any_patch(&mut doc, &json!(3)).is_err());
    }

    #[test]
    fn display_quotes_keys_with_dots_and_slashes() {
        assert_eq!(
            display_path(&p(&["metadata", "labels", "ripcord.dev/cordoned-by"])),
            "metadata.labels[\"ripcord.dev/cordoned-by\"]"
        );
        assert_eq!(display_value(&Value::Null), "(absent)");
    }

    #[test]
    fn false_booleans_equal_absent_only_for_known_fields() {
        assert!(same_at(
            &p(&["spec", "unschedulable"]),
            &json!(false),
            &Value::Null
        ));
        assert!(!same_at(
            &p(&["spec", "unschedulable"]),
            &json!(true),
            &Value::Null
        ));
        assert!(!same_at(&p(&["spec", "replicas"]), &json!(0), &Value::Null));
    }
}
