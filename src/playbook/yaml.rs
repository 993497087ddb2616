//! A located YAML tree: every node and every mapping key knows its line and column.
//!
//! Built from the event parser that serde-saphyr re-exports (`granit_parser`), so validation
//! can report every problem with its position instead of only serde's first error. Scalars are
//! resolved with the YAML 1.2 core schema (`null`/`~`, `true`/`false`, integers, floats);
//! quoted scalars are always strings. Aliases are expanded (bounded), and nesting depth and
//! total node count are limited, so no input can exhaust the stack or memory.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes accepted (after alias expansion).
pub const MAX_NODES: usize = 100_000;

/// A position in the source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Self {
        Pos {
            line: span.start.line().max(1),
            column: span.start.col() + 1,
        }
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// The value.
    pub value: NodeValue,
}

/// The value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (plain or quoted).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Key, Node)>),
}

/// A mapping key (keys are turned into text; complex keys are rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key starts.
    pub pos: Pos,
}

/// Why the text is not a YAML document ripcord can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Where.
    pub pos: Pos,
    /// What (from the YAML parser, or a limit).
    pub message: String,
}

impl YamlError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        "yaml"
    }
}

impl NodeValue {
    /// A short description of the type, for messages ("a string", "a mapping").
    pub fn describe(&self) -> &'static str {
        match self {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a sequence",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The node as JSON (mapping keys become object keys; later duplicates win).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A tree without positions from a JSON value (for checking resolved values with the same
    /// walker as located ones).
    pub fn from_json(value: &serde_json::Value) -> Node {
        use serde_json::Value;
        let value = match value {
            Value::Null => NodeValue::Null,
            Value::Bool(b) => NodeValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => NodeValue::Int(i),
                None => NodeValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => NodeValue::Str(s.clone()),
            Value::Array(items) => NodeValue::Seq(items.iter().map(Node::from_json).collect()),
            Value::Object(map) => NodeValue::Map(
                map.iter()
                    .map(|(k, v)| {
                        let key = Key {
                            name: k.clone(),
                            pos: Pos::default(),
                        };
                        (key, Node::from_json(v))
                    })
                    .collect(),
            ),
        };
        Node {
            pos: Pos::default(),
            value,
        }
    }

    /// The entry of a mapping by key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string value, if a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !unsigned.is_empty()
        && unsigned.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return NodeValue::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return NodeValue::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return NodeValue::Int(i);
    }
    let looks_numeric = unsigned
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return NodeValue::Float(f);
    }
    NodeValue::Str(text.to_string())
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        pending_key: Option<Key>,
    },
}

/// Parses one YAML document into a located tree. An empty document gives `None`. A second
/// document in the stream is an error (a playbook file holds one playbook).
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;
    let mut last_pos = Pos { line: 1, column: 1 };

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|err| YamlError {
            pos: Pos {
                line: err.marker().line().max(1),
                column: err.marker().col() + 1,
            },
            message: scan_message(&err.to_string()),
        })?;
        let pos = Pos::from_span(&span);
        last_pos = pos;
        let completed: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => None,
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        pos,
                        message: "a second YAML document: a playbook file holds exactly one \
                                  playbook"
                            .to_string(),
                    });
                }
                None
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let resolved = if style == ScalarStyle::Plain {
                    resolve_plain(&value)
                } else {
                    NodeValue::Str(value.into_owned())
                };
                Some((
                    Node {
                        pos,
                        value: resolved,
                    },
                    anchor,
                ))
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => {
                    nodes = nodes.saturating_add(count_nodes(node));
                    if nodes > MAX_NODES {
                        return Err(too_many(pos));
                    }
                    Some((node.clone(), 0))
                }
                None => {
                    return Err(YamlError {
                        pos,
                        message: "alias to an unknown anchor".to_string(),
                    });
                }
            },
            Event::SequenceStart(_, anchor, _) => {
                stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingStart(_, anchor, _) => {
                stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { pos, anchor, items }) => Some((
                    Node {
                        pos,
                        value: NodeValue::Seq(items),
                    },
                    anchor,
                )),
                _ => return Err(unbalanced(pos)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => Some((
                    Node {
                        pos,
                        value: NodeValue::Map(entries),
                    },
                    anchor,
                )),
                _ => return Err(unbalanced(pos)),
            },
            _ => None,
        };
        if stack.len() > MAX_DEPTH {
            return Err(YamlError {
                pos,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let Some((node, anchor)) = completed else {
            continue;
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(too_many(pos));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let name = match &node.value {
                        NodeValue::Str(s) => s.clone(),
                        NodeValue::Null => "null".to_string(),
                        NodeValue::Bool(b) => b.to_string(),
                        NodeValue::Int(i) => i.to_string(),
                        NodeValue::Float(f) => f.to_string(),
                        NodeValue::Seq(_) | NodeValue::Map(_) => {
                            return Err(YamlError {
                                pos: node.pos,
                                message: "a mapping key must be a plain value, not a \
                                          collection"
                                    .to_string(),
                            });
                        }
                    };
                    *pending_key = Some(Key {
                        name,
                        pos: node.pos,
                    });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    if !stack.is_empty() {
        return Err(unbalanced(last_pos));
    }
    Ok(root)
}

fn too_many(pos: Pos) -> YamlError {
    YamlError {
        pos,
        message: format!("more than {MAX_NODES} YAML nodes (aliases included)"),
    }
}

fn unbalanced(pos: Pos) -> YamlError {
    YamlError {
        pos,
        message: "unbalanced YAML structure".to_string(),
    }
}

fn count_nodes(node: &Node) -> usize {
    let mut count = 0usize;
    let mut work = vec![node];
    while let Some(n) = work.pop() {
        count += 1;
        if count > MAX_NODES {
            break;
        }
        match &n.value {
            NodeValue::Seq(items) => work.extend(items.iter()),
            NodeValue::Map(entries) => work.extend(entries.iter().map(|(_, v)| v)),
            _ => {}
        }
    }
    count
}

/// The parser's message without its own position suffix (we print positions ourselves).
fn scan_message(message: &str) -> String {
    [" at char ", " at byte ", " at line "]
        .iter()
        .filter_map(|marker| message.find(marker))
        .min()
        .map_or_else(|| message.to_string(), |i| message[..i].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let root = parse("a: 1\nb:\n  c: [x, \"y\"]\n").ok().flatten();
        let Some(root) = root else {
            panic!("no document");
        };
        let Some(b) = root.get("b") else {
            panic!("no b");
        };
        let Some(c) = b.get("c") else { panic!("no c") };
        assert_eq!(c.pos, Pos { line: 3, column: 6 });
        let NodeValue::Map(entries) = &root.value else {
            panic!("not a map");
        };
        assert_eq!(entries[1].0.pos, Pos { line: 2, column: 1 });
        assert_eq!(
            root.get("a").map(|n| n.value.clone()),
            Some(NodeValue::Int(1))
        );
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        assert_eq!(resolve_plain("true"), NodeValue::Bool(true));
        assert_eq!(resolve_plain("yes"), NodeValue::Str("yes".into()));
        assert_eq!(resolve_plain("-12"), NodeValue::Int(-12));
        assert_eq!(resolve_plain("1.5"), NodeValue::Float(1.5));
        assert_eq!(resolve_plain("30s"), NodeValue::Str("30s".into()));
        assert_eq!(resolve_plain("~"), NodeValue::Null);
        assert_eq!(resolve_plain("1e3"), NodeValue::Float(1000.0));
        assert_eq!(resolve_plain("e3"), NodeValue::Str("e3".into()));
    }

    #[test]
    fn empty_input_has_no_document() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("# only a comment\n"), Ok(None));
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_refused() {
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).is_err());
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse(&bomb).is_err());
    }
}
