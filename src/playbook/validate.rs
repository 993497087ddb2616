//! Validation: every problem of a playbook, each with its position and a hint.
//!
//! The text is first parsed into a located tree ([`super::yaml`]). The tree is then checked
//! against the JSON Schema generated from the model types (so the checks never drift from the
//! model): unknown fields (with "did you mean"), missing fields, wrong types, bad enum values,
//! bad durations, integer ranges. A second pass checks what a schema cannot: unknown actions,
//! each step's `with` against its action's argument shape (accepting `$(params.x)` where the
//! parameter's type fits), references to undefined parameters, malformed references,
//! duplicate step names, parameter declarations. Only when nothing was found is the tree
//! deserialized into the typed [`Playbook`], and each step's arguments (with parameter
//! defaults substituted) checked against the catalog's constraints.

use super::catalog::Action;
use super::diagnostic::{Collector, Diagnostics};
use super::duration::Duration;
use super::model::{ParamSpec, ParamType, Playbook};
use super::template::{self, Segment};
use super::yaml::{self, Key, Node, NodeValue, Pos};
use super::{ValidPlaybook, suggest};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// The generated schemas the validator walks.
struct Schemas {
    playbook: Value,
    actions: Value,
    /// Catalog name → the args schema (`{"$ref": "#/$defs/X"}`) in `actions`.
    args: HashMap<String, Value>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let playbook = serde_json::to_value(schemars::schema_for!(Playbook)).unwrap_or_default();
        let actions = serde_json::to_value(schemars::schema_for!(Action)).unwrap_or_default();
        let mut args = HashMap::new();
        if let Some(variants) = actions.get("oneOf").and_then(Value::as_array) {
            for variant in variants {
                let name = variant
                    .pointer("/properties/action/const")
                    .and_then(Value::as_str);
                let with = variant.pointer("/properties/with");
                if let (Some(name), Some(with)) = (name, with) {
                    args.insert(name.to_string(), with.clone());
                }
            }
        }
        Schemas {
            playbook,
            actions,
            args,
        }
    })
}

/// The argument schema of an action (`{"$ref": …}` into [`action_defs`]), if in the catalog.
pub(crate) fn args_schema(action: &str) -> Option<&'static Value> {
    schemas().args.get(action)
}

/// The first problem of resolved arguments against the action's shape: the argument's dotted
/// path (`warmupRequest.port`, `ramp[2]`) and the message. Used by `plan` to name the field
/// when the typed deserialization fails.
pub(crate) fn first_args_problem(action: &str, with: &Value) -> Option<(String, String)> {
    let schema = args_schema(action)?;
    let params = BTreeMap::new();
    let mut problems = Vec::new();
    let mut walker = Walker {
        problems: &mut problems,
        defs: action_defs(),
        params: &params,
        templated: false,
    };
    walker.check(&Node::from_json(with), schema, "");
    problems.into_iter().next().map(|p| {
        let path = if p.path.is_empty() {
            // A missing field is reported on the map itself; name the field instead.
            p.message
                .strip_prefix("missing required field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or_default()
                .to_string()
        } else {
            p.path
        };
        (path, p.message)
    })
}

/// The `$defs` of the action schema.
pub(crate) fn action_defs() -> &'static Map<String, Value> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    schemas()
        .actions
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn playbook_defs() -> &'static Map<String, Value> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    schemas()
        .playbook
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// One problem before rendering.
#[derive(Debug, Clone)]
struct Problem {
    kind: &'static str,
    /// When set, the caret moves onto this text if it appears on the line at or after `pos`.
    needle: Option<String>,
    pos: Pos,
    len: usize,
    path: String,
    message: String,
    hint: Option<String>,
}

/// Validates playbook text. `file` names the source in diagnostics.
pub fn validate(file: &str, text: &str) -> Result<ValidPlaybook, Diagnostics> {
    let mut collector = Collector::new(file, text);
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            collector.push(
                "empty",
                0,
                0,
                1,
                "",
                "the file holds no YAML document",
                Some(
                    "a playbook starts with `apiVersion: ripcord.dev/v1alpha1` and \
                     `kind: Playbook`"
                        .to_string(),
                ),
            );
            return Err(finish_err(collector));
        }
        Err(err) => {
            let hint = yaml_hint(&err.message, text, err.pos);
            collector.push(
                "yaml",
                err.pos.line,
                err.pos.column,
                1,
                "",
                format!("malformed YAML: {}", err.message),
                hint,
            );
            return Err(finish_err(collector));
        }
    };

    let mut problems = Vec::new();
    let params = declared_params(&root);
    let mut walker = Walker {
        problems: &mut problems,
        defs: playbook_defs(),
        params: &params,
        templated: false,
    };
    walker.check(&root, &schemas().playbook, "");
    semantic_checks(&root, &params, &mut problems);
    if problems.is_empty() {
        match serde_json::from_value::<Playbook>(root.to_json()) {
            Ok(playbook) => {
                step_constraints(&root, &playbook, &mut problems);
                if problems.is_empty() {
                    return Ok(ValidPlaybook::new(playbook, file));
                }
            }
            Err(err) => problems.push(Problem {
                kind: "invalid",
                needle: None,
                pos: root.pos,
                len: 1,
                path: String::new(),
                message: err.to_string(),
                hint: None,
            }),
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    for p in problems {
        let (column, len) = match (&p.needle, lines.get(p.pos.line.saturating_sub(1))) {
            (Some(needle), Some(line)) => {
                locate(line, p.pos.column, needle).unwrap_or((p.pos.column, p.len))
            }
            _ => (p.pos.column, p.len),
        };
        collector.push(p.kind, p.pos.line, column, len, &p.path, p.message, p.hint);
    }
    Err(finish_err(collector))
}

/// The 1-based column and length of `needle` on `line`, searching from `column`.
fn locate(line: &str, column: usize, needle: &str) -> Option<(usize, usize)> {
    let start = line
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i);
    let found = line.get(start..)?.find(needle)? + start;
    let column = line.get(..found)?.chars().count() + 1;
    Some((column, needle.chars().count()))
}

fn finish_err(collector: Collector<'_>) -> Diagnostics {
    match collector.finish() {
        Err(diagnostics) => diagnostics,
        Ok(()) => Diagnostics {
            file: String::new(),
            items: Vec::new(),
        },
    }
}

fn yaml_hint(message: &str, text: &str, pos: Pos) -> Option<String> {
    let line = text.lines().nth(pos.line.saturating_sub(1)).unwrap_or("");
    let lower = message.to_lowercase();
    if line.contains('\t') || lower.contains("tab") {
        Some("YAML indentation must use spaces, not tabs".to_string())
    } else if lower.contains("quote") || lower.contains("quoted") {
        Some("close the quoted string with the same quote it started with".to_string())
    } else if lower.contains("indent")
        || lower.contains("mapping values")
        || lower.contains("did not find expected")
    {
        Some(
            "check the indentation: nested fields are indented further than their parent, \
              siblings line up"
                .to_string(),
        )
    } else {
        None
    }
}

/// The declared parameters with their types (as far as they can be read).
fn declared_params(root: &Node) -> BTreeMap<String, Option<ParamType>> {
    let mut params = BTreeMap::new();
    let Some(NodeValue::Map(entries)) = root
        .get("spec")
        .and_then(|s| s.get("params"))
        .map(|p| &p.value)
    else {
        return params;
    };
    for (key, spec) in entries {
        let param_type = spec
            .get("type")
            .and_then(|t| serde_json::from_value::<ParamType>(t.to_json()).ok());
        params.insert(key.name.clone(), param_type);
    }
    params
}

// === impl Walker ===

/// Walks a located tree against a JSON Schema (the subset schemars generates).
struct Walker<'a, 'p> {
    problems: &'p mut Vec<Problem>,
    defs: &'a Map<String, Value>,
    params: &'a BTreeMap<String, Option<ParamType>>,
    /// Inside a step's `with`: `$(params.x)` may stand for any value of a fitting type.
    templated: bool,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn scalar_len(node: &Node) -> usize {
    match &node.value {
        NodeValue::Str(s) => s.chars().count().max(1),
        NodeValue::Int(i) => i.to_string().len(),
        NodeValue::Bool(b) => b.to_string().len(),
        NodeValue::Float(f) => f.to_string().len(),
        _ => 1,
    }
}

fn show(node: &Node) -> String {
    match &node.value {
        NodeValue::Str(s) => format!(" `{s}`"),
        NodeValue::Int(i) => format!(" `{i}`"),
        NodeValue::Float(f) => format!(" `{f}`"),
        NodeValue::Bool(b) => format!(" `{b}`"),
        _ => String::new(),
    }
}

fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn describe_type(t: &str) -> &'static str {
    match t {
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean (`true` or `false`)",
        "object" => "a mapping",
        "array" => "a sequence",
        "null" => "nothing (null)",
        _ => "a value",
    }
}

fn node_matches_type(node: &Node, t: &str) -> bool {
    matches!(
        (&node.value, t),
        (NodeValue::Str(_), "string")
            | (NodeValue::Int(_), "integer" | "number")
            | (NodeValue::Float(_), "number")
            | (NodeValue::Bool(_), "boolean")
            | (NodeValue::Map(_), "object")
            | (NodeValue::Seq(_), "array")
            | (NodeValue::Null, "null")
    )
}

/// The JSON type a parameter produces when a string is exactly one reference to it.
fn param_json_type(param_type: ParamType) -> &'static str {
    match param_type {
        ParamType::String | ParamType::Enum | ParamType::Duration => "string",
        ParamType::Integer => "integer",
        ParamType::Boolean => "boolean",
    }
}

/// `Some(name)` when the string is exactly `$(params.name)`.
fn whole_reference(text: &str) -> Option<&str> {
    match template::parse(text).ok()?.as_slice() {
        [Segment::Param(name)] => Some(name),
        _ => None,
    }
}

/// True when the string holds any reference (its content is only known at plan time).
fn has_reference(text: &str) -> bool {
    template::parse(text).is_ok_and(|segments| {
        segments
            .iter()
            .any(|s| matches!(s, Segment::Param(_) | Segment::RunId))
    })
}

impl<'a> Walker<'a, '_> {
    /// "expected integer or string, found boolean `true`" at the node.
    fn wrong_type(&mut self, node: &Node, path: &str, expected: &[&str], hint: Option<String>) {
        let message = format!(
            "expected {}, found {}{}",
            expected.join(" or "),
            node.value.describe(),
            show(node)
        );
        self.problem(
            "wrong-type",
            node.pos,
            scalar_len(node),
            path,
            message,
            hint,
        );
    }

    fn problem(
        &mut self,
        kind: &'static str,
        pos: Pos,
        len: usize,
        path: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.problems.push(Problem {
            kind,
            needle: None,
            pos,
            len,
            path: path.to_string(),
            message,
            hint,
        });
    }

    fn resolve(&self, schema: &Value) -> Option<&'a Value> {
        let name = schema.get("$ref")?.as_str()?.strip_prefix("#/$defs/")?;
        self.defs.get(name)
    }

    /// True when the schema accepts some value of JSON type `t`.
    fn accepts_type(&self, schema: &Value, t: &str, depth: usize) -> bool {
        if depth > 16 {
            return true;
        }
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            return match self.defs.get(name) {
                Some(def) => self.accepts_type(def, t, depth + 1),
                None => true,
            };
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = schema.get(key).and_then(Value::as_array) {
                return alts.iter().any(|alt| self.accepts_type(alt, t, depth + 1));
            }
        }
        let types = types_of(schema);
        if types.is_empty() {
            return match schema.get("const") {
                Some(c) => match t {
                    "string" => c.is_string(),
                    "integer" => c.is_i64() || c.is_u64(),
                    "boolean" => c.is_boolean(),
                    _ => false,
                },
                None => true,
            };
        }
        types.contains(&t) || (t == "integer" && types.contains(&"number"))
    }

    fn expected(&self, schema: &Value, depth: usize) -> Vec<&'static str> {
        if depth > 16 {
            return Vec::new();
        }
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            if name == "Duration" {
                return vec!["a duration such as `30s`"];
            }
            return match self.defs.get(name) {
                Some(def) => self.expected(def, depth + 1),
                None => Vec::new(),
            };
        }
        let mut out = Vec::new();
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = schema.get(key).and_then(Value::as_array) {
                for alt in alts {
                    for e in self.expected(alt, depth + 1) {
                        if !out.contains(&e) {
                            out.push(e);
                        }
                    }
                }
            }
        }
        for t in types_of(schema) {
            let e = describe_type(t);
            if !out.contains(&e) {
                out.push(e);
            }
        }
        if out.is_empty() && schema.get("const").is_some_and(Value::is_string) {
            out.push("a string");
        }
        out
    }

    fn check(&mut self, node: &Node, schema: &Value, path: &str) {
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            && name == "Duration"
        {
            self.check_duration(node, path);
            return;
        }
        if let Some(def) = self.resolve(schema) {
            self.check(node, def, path);
            return;
        }
        if self.templated
            && let NodeValue::Str(text) = &node.value
            && let Some(name) = whole_reference(text)
        {
            self.check_reference(node, name, schema, path);
            return;
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = schema.get(key).and_then(Value::as_array) {
                self.check_alternatives(node, alts, path);
                return;
            }
        }
        if let Some(expected) = schema.get("const") {
            if self.templated && node.as_str().is_some_and(has_reference) {
                return;
            }
            if node.to_json() != *expected {
                let shown = expected
                    .as_str()
                    .map_or(expected.to_string(), str::to_string);
                self.problem(
                    "bad-value",
                    node.pos,
                    scalar_len(node),
                    path,
                    format!("expected `{shown}`, found{}", show_or_type(node)),
                    Some(format!("write `{shown}`")),
                );
            }
            return;
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
            self.check_enum(node, &names, path);
            return;
        }
        let types = types_of(schema);
        if !types.is_empty() && !types.iter().any(|t| node_matches_type(node, t)) {
            let expected: Vec<&str> = types.iter().map(|t| describe_type(t)).collect();
            let hint = match (&node.value, types.first()) {
                (NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_), Some(&"string")) => {
                    Some("quote the value to make it a string".to_string())
                }
                (NodeValue::Str(_), Some(&"integer" | &"number")) if self.templated => Some(
                    "write a number, or `$(params.NAME)` alone with an integer parameter"
                        .to_string(),
                ),
                _ => None,
            };
            self.wrong_type(node, path, &expected, hint);
            return;
        }
        match &node.value {
            NodeValue::Int(i) => self.check_range(node, *i, schema, path),
            NodeValue::Map(entries) => self.check_object(node, entries, schema, path),
            NodeValue::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    fn check_reference(&mut self, node: &Node, name: &str, schema: &Value, path: &str) {
        // Undefined parameters are reported by the reference scan.
        let Some(Some(param_type)) = self.params.get(name) else {
            return;
        };
        let produced = param_json_type(*param_type);
        if !self.accepts_type(schema, produced, 0) {
            let expected = self.expected(schema, 0);
            self.problem(
                "wrong-type",
                node.pos,
                scalar_len(node),
                path,
                format!(
                    "parameter `{name}` is of type {}, but this argument expects {}",
                    param_type.as_str(),
                    expected.join(" or ")
                ),
                Some("change the parameter's type, or embed it in a longer string".to_string()),
            );
        }
    }

    fn check_alternatives(&mut self, node: &Node, alts: &[Value], path: &str) {
        let consts: Vec<&str> = alts
            .iter()
            .filter_map(|a| a.get("const").and_then(Value::as_str))
            .collect();
        if !consts.is_empty() && consts.len() == alts.len() {
            self.check_enum(node, &consts, path);
            return;
        }
        let mut best: Option<Vec<Problem>> = None;
        for alt in alts {
            let mut trial = Vec::new();
            let mut walker = Walker {
                problems: &mut trial,
                defs: self.defs,
                params: self.params,
                templated: self.templated,
            };
            walker.check(node, alt, path);
            if trial.is_empty() {
                return;
            }
            let kind_matches = trial
                .iter()
                .all(|p| p.kind != "wrong-type" || p.pos != node.pos);
            if kind_matches && best.is_none() {
                best = Some(trial);
            }
        }
        match best {
            Some(problems) => self.problems.extend(problems),
            None => {
                let expected: Vec<&str> = alts.iter().flat_map(|alt| self.expected(alt, 0)).fold(
                    Vec::new(),
                    |mut acc, e| {
                        if !acc.contains(&e) {
                            acc.push(e);
                        }
                        acc
                    },
                );
                self.wrong_type(node, path, &expected, None);
            }
        }
    }

    fn check_enum(&mut self, node: &Node, names: &[&str], path: &str) {
        match &node.value {
            NodeValue::Str(s) if names.contains(&s.as_str()) => {}
            NodeValue::Str(s) if self.templated && has_reference(s) => {}
            NodeValue::Str(s) => {
                let hint = suggest::hint(s, names.iter().copied());
                self.problem(
                    "bad-value",
                    node.pos,
                    scalar_len(node),
                    path,
                    format!("`{s}` is not a valid value"),
                    Some(hint),
                );
            }
            _ => {
                let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                self.problem(
                    "wrong-type",
                    node.pos,
                    scalar_len(node),
                    path,
                    format!(
                        "expected one of {}, found {}{}",
                        list.join(", "),
                        node.value.describe(),
                        show(node)
                    ),
                    None,
                );
            }
        }
    }

    fn check_duration(&mut self, node: &Node, path: &str) {
        match &node.value {
            NodeValue::Str(s) => {
                if self.templated
                    && let Some(name) = whole_reference(s)
                {
                    if let Some(Some(t)) = self.params.get(name)
                        && matches!(t, ParamType::Integer | ParamType::Boolean)
                    {
                        self.problem(
                            "wrong-type",
                            node.pos,
                            scalar_len(node),
                            path,
                            format!(
                                "parameter `{name}` is of type {}, but this argument expects a \
                                 duration",
                                t.as_str()
                            ),
                            Some("declare the parameter with `type: duration`".to_string()),
                        );
                    }
                    return;
                }
                if self.templated && has_reference(s) {
                    return;
                }
                if let Err(err) = Duration::parse(s) {
                    self.problem(
                        "bad-duration",
                        node.pos,
                        scalar_len(node),
                        path,
                        format!("bad duration: {err}"),
                        Some(
                            "a duration is digits followed by a unit (ms, s, m, h, d): `250ms`, \
                             `30s`, `5m`, `1h30m`"
                                .to_string(),
                        ),
                    );
                }
            }
            NodeValue::Int(i) => self.problem(
                "bad-duration",
                node.pos,
                scalar_len(node),
                path,
                format!("`{i}` is a bare number, not a duration"),
                Some(format!("add a unit, e.g. `{i}s` or `{i}m`")),
            ),
            _ => self.problem(
                "wrong-type",
                node.pos,
                scalar_len(node),
                path,
                format!(
                    "expected a duration such as `30s`, found {}",
                    node.value.describe()
                ),
                None,
            ),
        }
    }

    fn check_range(&mut self, node: &Node, value: i64, schema: &Value, path: &str) {
        let (mut min, mut max) = match schema.get("format").and_then(Value::as_str) {
            Some("uint8") => (Some(0), Some(i64::from(u8::MAX))),
            Some("uint16") => (Some(0), Some(i64::from(u16::MAX))),
            Some("uint32" | "uint") => (Some(0), Some(i64::from(u32::MAX))),
            Some("int32" | "int") => (Some(i64::from(i32::MIN)), Some(i64::from(i32::MAX))),
            Some("uint64") => (Some(0), None),
            _ => (None, None),
        };
        if let Some(m) = schema.get("minimum").and_then(Value::as_i64) {
            min = Some(min.map_or(m, |x| x.max(m)));
        }
        if let Some(m) = schema.get("maximum").and_then(Value::as_i64) {
            max = Some(max.map_or(m, |x| x.min(m)));
        }
        let below = min.is_some_and(|m| value < m);
        let above = max.is_some_and(|m| value > m);
        if below || above {
            let range = match (min, max) {
                (Some(a), Some(b)) => format!("between {a} and {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => String::new(),
            };
            self.problem(
                "bad-value",
                node.pos,
                scalar_len(node),
                path,
                format!("`{value}` is out of range: must be {range}"),
                None,
            );
        }
    }

    fn check_object(&mut self, node: &Node, entries: &[(Key, Node)], schema: &Value, path: &str) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        for (key, value) in entries {
            let child = join(path, &key.name);
            if let Some(first) = seen.insert(key.name.as_str(), key.pos) {
                self.problem(
                    "duplicate-key",
                    key.pos,
                    key.name.chars().count(),
                    path,
                    format!("duplicate field `{}`", key.name),
                    Some(format!(
                        "`{}` is already set on line {}",
                        key.name, first.line
                    )),
                );
                continue;
            }
            if let Some(prop) = properties.and_then(|p| p.get(&key.name)) {
                self.check(value, prop, &child);
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let names: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    self.problem(
                        "unknown-field",
                        key.pos,
                        key.name.chars().count(),
                        path,
                        format!("unknown field `{}`", key.name),
                        Some(suggest::hint(&key.name, names.iter().copied())),
                    );
                }
                Some(extra @ Value::Object(_)) => self.check(value, extra, &child),
                _ => {}
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !entries.iter().any(|(k, _)| k.name == name) {
                    let description = properties
                        .and_then(|p| p.get(name))
                        .and_then(|p| p.get("description"))
                        .and_then(Value::as_str)
                        .map(first_sentence);
                    self.problem(
                        "missing-field",
                        node.pos,
                        1,
                        path,
                        format!("missing required field `{name}`"),
                        Some(match description {
                            Some(d) => format!("add `{name}:` ({d})"),
                            None => format!("add `{name}:`"),
                        }),
                    );
                }
            }
        }
    }
}

fn first_sentence(text: &str) -> String {
    let line = text.split('\n').next().unwrap_or(text);
    let sentence = line.split(". ").next().unwrap_or(line);
    sentence.trim_end_matches('.').to_string()
}

fn show_or_type(node: &Node) -> String {
    match show(node) {
        s if s.is_empty() => format!(" {}", node.value.describe()),
        s => s,
    }
}

// === semantic checks ===

fn semantic_checks(
    root: &Node,
    params: &BTreeMap<String, Option<ParamType>>,
    problems: &mut Vec<Problem>,
) {
    let Some(spec) = root.get("spec") else {
        return;
    };
    if let Some(name) = root.get("metadata").and_then(|m| m.get("name"))
        && let Some(text) = name.as_str()
        && !is_dns_label(text)
    {
        problems.push(Problem {
            kind: "bad-value",
            needle: None,
            pos: name.pos,
            len: scalar_len(name),
            path: "metadata.name".to_string(),
            message: format!("`{text}` is not a valid playbook name"),
            hint: Some(
                "use lowercase letters, digits and `-`, starting with a letter (at most 63)"
                    .to_string(),
            ),
        });
    }
    check_param_declarations(spec, problems);
    check_steps(spec, params, problems);
    // References: every string that plan() templates.
    let mut scan = |node: &Node, path: &str| scan_references(node, path, params, problems);
    if let Some(lock) = spec.get("lock") {
        scan(lock, "spec.lock");
    }
    if let Some(snapshot) = spec.get("snapshot") {
        if let Some(ns) = snapshot.get("namespaces") {
            scan(ns, "spec.snapshot.namespaces");
        }
        if let Some(NodeValue::Seq(queries)) = snapshot.get("prometheus").map(|q| &q.value) {
            for (i, q) in queries.iter().enumerate() {
                if let Some(query) = q.get("query") {
                    scan(query, &format!("spec.snapshot.prometheus[{i}].query"));
                }
            }
        }
    }
    if let Some(guards) = spec.get("guards") {
        for list in ["preChecks", "stopConditions"] {
            if let Some(NodeValue::Seq(items)) = guards.get(list).map(|l| &l.value) {
                for (i, item) in items.iter().enumerate() {
                    if let Some(query) = item.get("prometheus").and_then(|p| p.get("query")) {
                        scan(query, &format!("spec.guards.{list}[{i}].prometheus.query"));
                    }
                }
            }
        }
    }
    if let Some(NodeValue::Seq(steps)) = spec.get("steps").map(|s| &s.value) {
        for (i, step) in steps.iter().enumerate() {
            if let Some(with) = step.get("with") {
                scan(with, &format!("spec.steps[{i}].with"));
            }
            if let Some(context) = step.get("context") {
                scan(context, &format!("spec.steps[{i}].context"));
            }
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_param_declarations(spec: &Node, problems: &mut Vec<Problem>) {
    let Some(NodeValue::Map(entries)) = spec.get("params").map(|p| &p.value) else {
        return;
    };
    for (key, decl) in entries {
        let path = format!("spec.params.{}", key.name);
        if !template::is_name(&key.name) {
            problems.push(Problem {
                kind: "invalid-param",
                needle: None,
                pos: key.pos,
                len: key.name.chars().count(),
                path: path.clone(),
                message: format!("`{}` is not a valid parameter name", key.name),
                hint: Some("start with a letter; then letters, digits, `_` or `-`".to_string()),
            });
        }
        let Ok(spec) = serde_json::from_value::<ParamSpec>(decl.to_json()) else {
            continue; // shape problems are reported by the schema walk
        };
        if spec.param_type == ParamType::Enum && spec.values.is_empty() {
            problems.push(Problem {
                kind: "invalid-param",
                needle: None,
                pos: decl.pos,
                len: 1,
                path: path.clone(),
                message: format!("enum parameter `{}` lists no `values`", key.name),
                hint: Some("add `values: [a, b]`".to_string()),
            });
        }
        if spec.param_type != ParamType::Enum
            && !spec.values.is_empty()
            && let Some(values) = decl.get("values")
        {
            problems.push(Problem {
                kind: "invalid-param",
                needle: None,
                pos: values.pos,
                len: 1,
                path: path.clone(),
                message: format!(
                    "`values` only applies to enum parameters; `{}` is of type {}",
                    key.name,
                    spec.param_type.as_str()
                ),
                hint: Some("use `type: enum`, or drop `values`".to_string()),
            });
        }
        if let (Some(default), Some(node)) = (&spec.default, decl.get("default")) {
            if spec.required {
                problems.push(Problem {
                    kind: "invalid-param",
                    needle: None,
                    pos: node.pos,
                    len: scalar_len(node),
                    path: path.clone(),
                    message: format!("required parameter `{}` has a default", key.name),
                    hint: Some("drop `required: true` or the default".to_string()),
                });
            } else if let Err(err) = super::typing::typed_default(&key.name, &spec, default) {
                problems.push(Problem {
                    kind: "invalid-param",
                    needle: None,
                    pos: node.pos,
                    len: scalar_len(node),
                    path: path.clone(),
                    message: format!("bad default: {err}"),
                    hint: None,
                });
            }
        }
    }
}

fn check_steps(
    spec: &Node,
    params: &BTreeMap<String, Option<ParamType>>,
    problems: &mut Vec<Problem>,
) {
    let Some(NodeValue::Seq(steps)) = spec.get("steps").map(|s| &s.value) else {
        return;
    };
    if steps.is_empty()
        && let Some(node) = spec.get("steps")
    {
        problems.push(Problem {
            kind: "missing-field",
            needle: None,
            pos: node.pos,
            len: 1,
            path: "spec.steps".to_string(),
            message: "a playbook needs at least one step".to_string(),
            hint: None,
        });
    }
    let mut names: HashMap<String, Pos> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let path = format!("spec.steps[{i}]");
        if let Some(name_node) = step.get("name")
            && let Some(name) = name_node.as_str()
        {
            if name.trim().is_empty() {
                problems.push(Problem {
                    kind: "bad-value",
                    needle: None,
                    pos: name_node.pos,
                    len: 1,
                    path: format!("{path}.name"),
                    message: "a step name must not be empty".to_string(),
                    hint: None,
                });
            } else if let Some(first) = names.get(name) {
                problems.push(Problem {
                    kind: "duplicate-step",
                    needle: None,
                    pos: name_node.pos,
                    len: scalar_len(name_node),
                    path: format!("{path}.name"),
                    message: format!("duplicate step name `{name}`"),
                    hint: Some(format!(
                        "a step named `{name}` is already defined on line {}; step names must \
                         be unique",
                        first.line
                    )),
                });
            } else {
                names.insert(name.to_string(), name_node.pos);
            }
        }
        if let Some(attempts) = step.get("retries").and_then(|r| r.get("attempts"))
            && attempts.value == NodeValue::Int(0)
        {
            problems.push(Problem {
                kind: "bad-value",
                needle: None,
                pos: attempts.pos,
                len: 1,
                path: format!("{path}.retries.attempts"),
                message: "`attempts` counts the first try too: it must be at least 1".to_string(),
                hint: Some("use `attempts: 1` for no retry".to_string()),
            });
        }
        let Some(action_node) = step.get("action") else {
            continue;
        };
        let Some(action) = action_node.as_str() else {
            continue; // a wrong type is reported by the schema walk
        };
        let Some(args) = args_schema(action) else {
            problems.push(Problem {
                kind: "unknown-action",
                needle: None,
                pos: action_node.pos,
                len: scalar_len(action_node),
                path: format!("{path}.action"),
                message: format!("unknown action `{action}`"),
                hint: Some(suggest::hint(action, Action::all_names().iter().copied())),
            });
            continue;
        };
        let empty;
        let with = match step.get("with") {
            Some(with) if with.value == NodeValue::Null => {
                empty = Node {
                    pos: with.pos,
                    value: NodeValue::Map(Vec::new()),
                };
                &empty
            }
            Some(with) => with,
            None => {
                empty = Node {
                    pos: step.pos,
                    value: NodeValue::Map(Vec::new()),
                };
                &empty
            }
        };
        let mut walker = Walker {
            problems: &mut *problems,
            defs: action_defs(),
            params,
            templated: true,
        };
        walker.check(with, args, &format!("{path}.with"));
    }
}

fn scan_references(
    node: &Node,
    path: &str,
    params: &BTreeMap<String, Option<ParamType>>,
    problems: &mut Vec<Problem>,
) {
    match &node.value {
        NodeValue::Str(text) => check_string_references(node.pos, text, path, params, problems),
        NodeValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                scan_references(item, &format!("{path}[{i}]"), params, problems);
            }
        }
        NodeValue::Map(entries) => {
            for (key, value) in entries {
                let child = join(path, &key.name);
                check_string_references(key.pos, &key.name, &child, params, problems);
                scan_references(value, &child, params, problems);
            }
        }
        _ => {}
    }
}

fn check_string_references(
    pos: Pos,
    text: &str,
    path: &str,
    params: &BTreeMap<String, Option<ParamType>>,
    problems: &mut Vec<Problem>,
) {
    match template::parse(text) {
        Err(err) => problems.push(Problem {
            kind: "template",
            needle: None,
            pos,
            len: text.chars().count(),
            path: path.to_string(),
            message: err.to_string(),
            hint: None,
        }),
        Ok(segments) => {
            for segment in segments {
                let Segment::Param(name) = segment else {
                    continue;
                };
                if params.contains_key(name) {
                    continue;
                }
                let hint = match suggest::did_you_mean(name, params.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `$(params.{s})`?"),
                    None => {
                        format!("declare it under `spec.params` (e.g. `{name}: {{type: string}}`)")
                    }
                };
                problems.push(Problem {
                    kind: "undefined-param",
                    needle: Some(format!("$(params.{name})")),
                    pos,
                    len: text.chars().count(),
                    path: path.to_string(),
                    message: format!("`$(params.{name})` refers to an undefined parameter"),
                    hint: Some(hint),
                });
            }
        }
    }
}

/// After deserialization: substitute parameter defaults into each step's arguments and check
/// them against the catalog's constraints (skipped for steps whose arguments reference a
/// parameter without default: `plan` checks those).
fn step_constraints(root: &Node, playbook: &Playbook, problems: &mut Vec<Problem>) {
    let mut values = BTreeMap::new();
    for (name, spec) in &playbook.spec.params {
        match &spec.default {
            Some(default) => {
                if let Ok(v) = super::typing::typed_default(name, spec, default) {
                    values.insert(name.clone(), v);
                }
            }
            None if !spec.required => {
                values.insert(name.clone(), Value::Null);
            }
            None => {}
        }
    }
    struct Defaults<'a>(&'a BTreeMap<String, Value>);
    impl template::Resolver for Defaults<'_> {
        fn param(&self, name: &str) -> Option<Value> {
            self.0.get(name).cloned()
        }
        fn run_id(&self) -> &str {
            "r-validate"
        }
    }
    let steps = root.get("spec").and_then(|s| s.get("steps"));
    for (i, step) in playbook.spec.steps.iter().enumerate() {
        let with = Value::Object(step.with.clone().into_iter().collect());
        let Ok(with) = template::render_value(&with, &Defaults(&values)) else {
            continue;
        };
        if let Err(problem) = super::typing::build_action(&step.action, with) {
            let step_node = match steps.map(|s| &s.value) {
                Some(NodeValue::Seq(items)) => items.get(i),
                _ => None,
            };
            let with_node = step_node.and_then(|s| s.get("with"));
            let field_node = problem
                .field
                .as_deref()
                .and_then(|f| with_node.and_then(|w| w.get(f)));
            let at = field_node.or(with_node).or(step_node);
            let path = match &problem.field {
                Some(f) => format!("spec.steps[{i}].with.{f}"),
                None => format!("spec.steps[{i}].with"),
            };
            problems.push(Problem {
                kind: "invalid-args",
                needle: None,
                pos: at.map(|n| n.pos).unwrap_or(root.pos),
                len: at.map(scalar_len).unwrap_or(1),
                path,
                message: format!(
                    "invalid arguments for `{}`: {}",
                    step.action, problem.reason
                ),
                hint: None,
            });
        }
    }
}
