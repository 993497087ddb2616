//! Parameter templating: `$(params.NAME)` and `$(run.id)` inside strings.
//!
//! Rules:
//! - A string that is exactly one reference takes the referenced value with its type: an
//!   integer parameter stays a JSON number, a boolean a JSON boolean; an optional parameter
//!   without value and default becomes `null` (so an optional argument is simply left out).
//! - A reference inside a longer string is replaced by the value's text (an absent optional
//!   parameter by the empty string).
//! - `$$(` writes a literal `$(`.
//! - `$(` without a closing `)`, or a reference other than `params.NAME` / `run.id`, is an error.
//!
//! `{{ }}` is deliberately not used: Helm would try to render it when playbooks ship in a
//! ConfigMap.

use serde_json::Value;

/// One part of a templated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Literal text (with `$$(` already unescaped to `$(`).
    Text(String),
    /// `$(params.NAME)`.
    Param(&'a str),
    /// `$(run.id)`.
    RunId,
}

/// Why a templated string is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `$(` without `)`.
    #[error(
        "unclosed reference `{fragment}`: a reference ends with `)` (write `$$(` for a literal `$(`)"
    )]
    Unclosed {
        /// The text from `$(` to the end.
        fragment: String,
    },
    /// A reference to something other than `params.NAME` or `run.id`.
    #[error("unknown reference `$({inner})`: use `$(params.NAME)` or `$(run.id)`")]
    UnknownReference {
        /// What was between the parentheses.
        inner: String,
    },
}

impl TemplateError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        "template"
    }
}

/// Splits a string into literal text and references.
pub fn parse(text: &str) -> Result<Vec<Segment<'_>>, TemplateError> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        literal.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$$(") {
            literal.push_str("$(");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix("$(") {
            let Some(end) = body.find(')') else {
                return Err(TemplateError::Unclosed {
                    fragment: after.to_string(),
                });
            };
            let inner = body[..end].trim();
            let segment = if inner == "run.id" {
                Segment::RunId
            } else if let Some(name) = inner.strip_prefix("params.").filter(|n| is_name(n)) {
                Segment::Param(name)
            } else {
                return Err(TemplateError::UnknownReference {
                    inner: inner.to_string(),
                });
            };
            if !literal.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut literal)));
            }
            segments.push(segment);
            rest = &body[end + 1..];
        } else {
            literal.push('$');
            rest = &after[1..];
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Text(literal));
    }
    Ok(segments)
}

/// The parameter names a string references (in order, possibly repeated).
pub fn param_references(text: &str) -> Result<Vec<&str>, TemplateError> {
    Ok(parse(text)?
        .into_iter()
        .filter_map(|segment| match segment {
            Segment::Param(name) => Some(name),
            _ => None,
        })
        .collect())
}

/// True for a valid parameter name: a letter, then letters, digits, `_` or `-`.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Supplies the values references resolve to.
pub trait Resolver {
    /// The value of a parameter: `Some(Value::Null)` for an optional parameter without value,
    /// `None` for an undeclared one.
    fn param(&self, name: &str) -> Option<Value>;
    /// The run id.
    fn run_id(&self) -> &str;
}

/// A reference to a parameter that the resolver does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The string is malformed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// `$(params.NAME)` names no declared parameter.
    #[error("`$(params.{name})` refers to an undefined parameter")]
    UndefinedParam {
        /// The name.
        name: String,
    },
}

/// Renders one string (see the module docs for typing rules).
pub fn render_str(text: &str, resolver: &dyn Resolver) -> Result<Value, RenderError> {
    let segments = parse(text)?;
    let lookup = |name: &str| {
        resolver
            .param(name)
            .ok_or_else(|| RenderError::UndefinedParam {
                name: name.to_string(),
            })
    };
    match segments.as_slice() {
        [Segment::Param(name)] => return lookup(name),
        [Segment::RunId] => return Ok(Value::String(resolver.run_id().to_string())),
        _ => {}
    }
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Text(text) => out.push_str(&text),
            Segment::RunId => out.push_str(resolver.run_id()),
            Segment::Param(name) => match lookup(name)? {
                Value::Null => {}
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

/// Renders a string that must stay a string (lock keys, queries, messages): typed values are
/// written as text.
pub fn render_text(text: &str, resolver: &dyn Resolver) -> Result<String, RenderError> {
    Ok(match render_str(text, resolver)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Renders every string (and map key) inside a JSON value. Keys always stay strings.
/// Errors carry the dotted path of the offending string (`weights.blue`, `names[1]`).
pub fn render_value(
    value: &Value,
    resolver: &dyn Resolver,
) -> Result<Value, (String, RenderError)> {
    fn walk(
        value: &Value,
        resolver: &dyn Resolver,
        path: &str,
    ) -> Result<Value, (String, RenderError)> {
        match value {
            Value::String(s) => render_str(s, resolver).map_err(|e| (path.to_string(), e)),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| walk(item, resolver, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (key, item) in map {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    let key = render_text(key, resolver).map_err(|e| (child.clone(), e))?;
                    out.insert(key, walk(item, resolver, &child)?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }
    walk(value, resolver, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    struct Fixed(BTreeMap<&'static str, Value>);

    impl Resolver for Fixed {
        fn param(&self, name: &str) -> Option<Value> {
            self.0.get(name).cloned()
        }
        fn run_id(&self) -> &str {
            "run-1"
        }
    }

    fn resolver() -> Fixed {
        Fixed(BTreeMap::from([
            ("name", json!("checkout")),
            ("replicas", json!(3)),
            ("optional", Value::Null),
        ]))
    }

    #[test]
    fn whole_reference_keeps_its_type() {
        let r = resolver();
        assert_eq!(render_str("$(params.replicas)", &r), Ok(json!(3)));
        assert_eq!(render_str(" $(params.replicas)", &r), Ok(json!(" 3")));
        assert_eq!(render_str("$(params.optional)", &r), Ok(Value::Null));
        assert_eq!(render_str("$(run.id)", &r), Ok(json!("run-1")));
    }

    #[test]
    fn interpolates_and_escapes() {
        let r = resolver();
        assert_eq!(
            render_str("deployment/$(params.name)/$(run.id)", &r),
            Ok(json!("deployment/checkout/run-1"))
        );
        assert_eq!(render_str("cost: $$(x) $5", &r), Ok(json!("cost: $(x) $5")));
        assert_eq!(render_str("a$(params.optional)b", &r), Ok(json!("ab")));
    }

    #[test]
    fn reports_malformed_and_undefined_references() {
        let r = resolver();
        assert!(matches!(
            render_str("$(params.name", &r),
            Err(RenderError::Template(TemplateError::Unclosed { .. }))
        ));
        assert!(matches!(
            render_str("$(env.HOME)", &r),
            Err(RenderError::Template(
                TemplateError::UnknownReference { .. }
            ))
        ));
        assert_eq!(
            render_str("$(params.nmae)", &r),
            Err(RenderError::UndefinedParam {
                name: "nmae".into()
            })
        );
    }

    #[test]
    fn renders_nested_values_and_keys() {
        let r = resolver();
        let value = json!({"weights": {"$(params.name)": "$(params.replicas)"}, "list": ["$(params.nope)"]});
        let err = render_value(&value, &r).err().map(|(path, _)| path);
        assert_eq!(err.as_deref(), Some("list[0]"));
        let ok = render_value(
            &json!({"weights": {"$(params.name)": "$(params.replicas)"}}),
            &r,
        );
        assert_eq!(ok, Ok(json!({"weights": {"checkout": 3}})));
    }
}
