//! Label and field selectors, parsed from the `labelSelector` / `fieldSelector` query
//! parameters with the grammar of the real API server.
//!
//! Label selectors support `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` and
//! `!k`. Field selectors support `=`, `==` and `!=` on any dotted path of the object (the real
//! server allows only a per-kind list such as `metadata.name`, `spec.nodeName`,
//! `status.phase`; the sim is more permissive). Values that are booleans or numbers compare
//! by their string form (`spec.unschedulable=true`).

use serde_json::Value;

use crate::store::ResourceType;

/// Selector parse errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// The label selector does not parse.
    #[error("unable to parse requirement: {detail}")]
    Label {
        /// What is wrong.
        detail: String,
    },
    /// The field selector does not parse.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Field {
        /// The whole selector.
        selector: String,
        /// The term that failed.
        term: String,
    },
}

impl SelectorError {
    /// Stable category.
    pub fn category(&self) -> &'static str {
        match self {
            SelectorError::Label { .. } => "label_selector",
            SelectorError::Field { .. } => "field_selector",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed label selector (a conjunction of requirements).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, LabelOp)>,
}

// === impl LabelSelector ===

impl LabelSelector {
    /// Parses a selector string; the empty string selects everything.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_label_term(term)?);
        }
        Ok(LabelSelector { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether the object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.reqs.iter().all(|(key, op)| {
            let value = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
            match op {
                LabelOp::Eq(v) => value == Some(v.as_str()),
                LabelOp::NotEq(v) => value != Some(v.as_str()),
                LabelOp::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                LabelOp::NotIn(vs) => !value.is_some_and(|x| vs.iter().any(|v| v == x)),
                LabelOp::Exists => value.is_some(),
                LabelOp::NotExists => value.is_none(),
            }
        })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn label_err(detail: impl Into<String>) -> SelectorError {
    SelectorError::Label {
        detail: detail.into(),
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_label_term(term: &str) -> Result<(String, LabelOp), SelectorError> {
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        if !valid_key(key) {
            return Err(label_err(format!("invalid label key \"{key}\"")));
        }
        return Ok((key.to_string(), LabelOp::NotExists));
    }
    for (sym, ctor) in [
        ("!=", LabelOp::NotEq as fn(String) -> LabelOp),
        ("==", LabelOp::Eq),
        ("=", LabelOp::Eq),
    ] {
        if let Some((k, v)) = term.split_once(sym) {
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) {
                return Err(label_err(format!("invalid label key \"{k}\"")));
            }
            if !valid_value(v) {
                return Err(label_err(format!("invalid label value: \"{v}\"")));
            }
            return Ok((k.to_string(), ctor(v.to_string())));
        }
    }
    let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = words[0].trim();
        let rest = words[1].trim();
        let (negate, list) = if let Some(l) = rest.strip_prefix("notin") {
            (true, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (false, l)
        } else {
            return Err(label_err(format!(
                "found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
            )));
        };
        let list = list.trim();
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| label_err(format!("found '{list}', expected: '('")))?;
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if !valid_key(key) || values.iter().any(|v| !valid_value(v)) {
            return Err(label_err(format!("invalid requirement \"{term}\"")));
        }
        let op = if negate {
            LabelOp::NotIn(values)
        } else {
            LabelOp::In(values)
        };
        return Ok((key.to_string(), op));
    }
    if !valid_key(term) {
        return Err(label_err(format!("invalid label key \"{term}\"")));
    }
    Ok((term.to_string(), LabelOp::Exists))
}

/// The field selectors a real API server accepts per kind (its field label conversion
/// functions); every kind accepts `metadata.name` and `metadata.namespace`.
fn field_supported(rt: &ResourceType, builtin: bool, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    if !builtin {
        return false;
    }
    let extra: &[&str] = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "secrets") => &["type"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        _ => &[],
    };
    extra.contains(&field)
}

/// A parsed field selector (a conjunction of `path=value` / `path!=value` terms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

// === impl FieldSelector ===

impl FieldSelector {
    /// Parses a selector string; the empty string selects everything.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut reqs = Vec::new();
        for term in s.split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                Some((k, false, v))
            } else if let Some((k, v)) = term.split_once("==") {
                Some((k, true, v))
            } else {
                term.split_once('=').map(|(k, v)| (k, true, v))
            };
            match parsed {
                Some((k, eq, v)) if !k.trim().is_empty() => {
                    reqs.push((k.trim().to_string(), eq, v.trim().to_string()))
                }
                _ => {
                    return Err(SelectorError::Field {
                        selector: s.to_string(),
                        term: term.to_string(),
                    });
                }
            }
        }
        Ok(FieldSelector { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The first field the API server does not support selecting `rt` by (a real server
    /// answers 400 `field label not supported: FIELD`); `None` when every field is supported.
    /// Custom resources (not in `builtin`) accept `metadata.name` and `metadata.namespace`.
    pub fn unsupported_field(&self, rt: &ResourceType, builtin: bool) -> Option<&str> {
        self.reqs
            .iter()
            .map(|(k, _, _)| k.as_str())
            .find(|field| !field_supported(rt, builtin, field))
    }

    /// The value required for `field` by an `=` term, if any (used to narrow lookups, e.g.
    /// `metadata.name`).
    pub fn required(&self, field: &str) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(k, eq, _)| *eq && k == field)
            .map(|(_, _, v)| v.as_str())
    }

    /// Whether the object satisfies every term. A missing field compares as `""`, and
    /// `spec.unschedulable` as `false`, as on a real server.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(path, eq, want)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let actual = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => {
                    if path == "spec.unschedulable" {
                        "false".to_string()
                    } else {
                        String::new()
                    }
                }
                Some(other) => other.to_string(),
            };
            (actual == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selector_grammar() {
        let p = pod(json!({"app": "web", "tier": "front"}));
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier in (back,front)", true),
            ("app=web,missing", false),
            ("missing!=x", true),
            ("missing notin (x)", true),
        ];
        for (sel, want) in cases {
            let parsed = LabelSelector::parse(sel).unwrap();
            assert_eq!(parsed.matches(&p), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("app=we b").is_err());
    }

    #[test]
    fn field_selector_paths() {
        let p = pod(json!({}));
        for (sel, want) in [
            ("metadata.name=p", true),
            ("metadata.namespace==ns", true),
            ("spec.nodeName=n2", false),
            ("status.phase!=Succeeded,status.phase!=Failed", true),
            ("spec.unschedulable=false", true),
        ] {
            assert_eq!(
                FieldSelector::parse(sel).unwrap().matches(&p),
                want,
                "{sel}"
            );
        }
        let node = json!({"spec": {"unschedulable": true}});
        assert!(
            FieldSelector::parse("spec.unschedulable=true")
                .unwrap()
                .matches(&node)
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=p")
                .unwrap()
                .required("metadata.name"),
            Some("p")
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
