//! Object validation with apimachinery's wording: names (DNS-1123 subdomain / label, DNS-1035
//! label for Services), label and annotation keys and values, required fields, field types,
//! immutable fields (workload selectors, a Service's `clusterIP`, a Pod's spec) and value
//! ranges. Every problem is a [`FieldError`]; the API answers 422 `Invalid` with one
//! `details.causes` entry per error (`ApiError::InvalidObject`).

use serde_json::Value;

use crate::status::{ApiError, StatusCause};
use crate::store::{ResourceType, kinds};

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// One invalid field, as apimachinery's `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueForbidden`, ….
    pub cause: &'static str,
    /// The field path, e.g. `metadata.name`, `spec.containers[0].image`.
    pub field: String,
    /// The error body: `Invalid value: "x": …`, `Required value`, `Forbidden: …`.
    pub body: String,
}

impl FieldError {
    fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
        FieldError {
            cause: "FieldValueInvalid",
            field: field.to_string(),
            body: format!("Invalid value: {}: {detail}", go_value(value)),
        }
    }

    fn required(field: &str) -> FieldError {
        FieldError {
            cause: "FieldValueRequired",
            field: field.to_string(),
            body: "Required value".into(),
        }
    }

    fn forbidden(field: &str, detail: &str) -> FieldError {
        FieldError {
            cause: "FieldValueForbidden",
            field: field.to_string(),
            body: format!("Forbidden: {detail}"),
        }
    }

    /// `field: body`, as in the `Status.message`.
    pub fn text(&self) -> String {
        format!("{}: {}", self.field, self.body)
    }
}

/// How Go's `%v`/`%q` prints a value in apimachinery's messages: strings quoted, numbers bare.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The `Invalid` API error for `errs` on object `name` of type `rt` (`None` when empty).
pub fn invalid(rt: &ResourceType, name: &str, errs: Vec<FieldError>) -> Option<ApiError> {
    if errs.is_empty() {
        return None;
    }
    Some(ApiError::InvalidObject {
        group: rt.group.clone(),
        kind: rt.kind.clone(),
        name: name.to_string(),
        causes: errs
            .into_iter()
            .map(|e| StatusCause {
                reason: e.cause.to_string(),
                message: e.body.clone(),
                field: e.field,
            })
            .collect(),
    })
}

/// The 422 a real server answers when a patched object does not decode (a wrongly typed
/// field): the cause is the field `patch` with the patch as its value.
pub fn patch_invalid(patch: &Value, decode_error: &str) -> ApiError {
    ApiError::InvalidObject {
        group: String::new(),
        kind: String::new(),
        name: String::new(),
        causes: vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {:?}: {decode_error}", patch.to_string()),
            field: "patch".into(),
        }],
    }
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

// === names ===

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

/// The name rules of `rt`: Namespaces are DNS-1123 labels, Services DNS-1035 labels, other
/// built-in kinds DNS-1123 subdomains.
fn name_errors(rt: &ResourceType, name: &str) -> Vec<FieldError> {
    let v = Value::String(name.to_string());
    let (ok, msg, max) = if *rt == kinds::namespaces() {
        (is_dns1123_label(name), DNS1123_LABEL_MSG, 63)
    } else if *rt == kinds::services() {
        (is_dns1035_label(name), DNS1035_LABEL_MSG, 63)
    } else {
        (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN_MSG, 253)
    };
    let mut errs = Vec::new();
    if name.len() > max {
        errs.push(FieldError::invalid(
            "metadata.name",
            &v,
            &format!("must be no more than {max} characters"),
        ));
    }
    if !ok {
        errs.push(FieldError::invalid("metadata.name", &v, msg));
    }
    errs
}

// === labels and annotations ===

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// apimachinery's `IsQualifiedName` messages for a label or annotation key.
fn key_errors(field: &str, key: &str) -> Vec<FieldError> {
    let v = Value::String(key.to_string());
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push(FieldError::invalid(
                field,
                &v,
                "prefix part must be non-empty",
            ));
        } else if !is_dns1123_subdomain(p) {
            errs.push(FieldError::invalid(
                field,
                &v,
                &format!("prefix part {DNS1123_SUBDOMAIN_MSG}"),
            ));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::invalid(
            field,
            &v,
            "name part must be non-empty",
        ));
    } else if name.len() > 63 {
        errs.push(FieldError::invalid(
            field,
            &v,
            "name part must be no more than 63 characters",
        ));
    } else if !is_qualified_name_part(name) {
        errs.push(FieldError::invalid(field, &v, QUALIFIED_NAME_MSG));
    }
    errs
}

fn label_value_errors(field: &str, value: &str) -> Vec<FieldError> {
    let v = Value::String(value.to_string());
    if value.is_empty() {
        return Vec::new();
    }
    if value.len() > 63 {
        return vec![FieldError::invalid(
            field,
            &v,
            "must be no more than 63 characters",
        )];
    }
    if is_qualified_name_part(value) {
        Vec::new()
    } else {
        vec![FieldError::invalid(field, &v, LABEL_VALUE_MSG)]
    }
}

fn labels_errors(obj: &Value, pointer: &str, field: &str, errs: &mut Vec<FieldError>) {
    let Some(labels) = obj.pointer(pointer).and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        errs.extend(key_errors(field, k));
        match v.as_str() {
            Some(s) => errs.extend(label_value_errors(field, s)),
            None if v.is_null() => {}
            None => errs.push(FieldError::invalid(field, v, "must be a string")),
        }
    }
}

fn annotations_errors(obj: &Value, pointer: &str, field: &str, errs: &mut Vec<FieldError>) {
    let Some(annotations) = obj.pointer(pointer).and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in annotations {
        errs.extend(key_errors(field, k));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > 256 * 1024 {
        errs.push(FieldError {
            cause: "FieldValueTooLong",
            field: field.to_string(),
            body: "Too long: must have at most 262144 bytes".into(),
        });
    }
}

// === field types ===

/// The JSON type a typed field of a built-in kind must have, with Go's names for the
/// `cannot unmarshal` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Int32,
    Int64,
    Bool,
    Str,
    StrMap,
    Array,
    Object,
}

impl Ty {
    fn go(self) -> &'static str {
        match self {
            Ty::Int32 => "int32",
            Ty::Int64 => "int64",
            Ty::Bool => "bool",
            Ty::Str => "string",
            Ty::StrMap => "map[string]string",
            Ty::Array => "[]",
            Ty::Object => "struct",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            _ if v.is_null() => true,
            Ty::Int32 | Ty::Int64 => v.is_i64() || v.is_u64(),
            Ty::Bool => v.is_boolean(),
            Ty::Str => v.is_string(),
            Ty::StrMap => v
                .as_object()
                .is_some_and(|m| m.values().all(|x| x.is_string() || x.is_null())),
            Ty::Array => v.is_array(),
            Ty::Object => v.is_object(),
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

const META_TYPES: &[(&str, &str, Ty)] = &[
    ("/metadata", "metadata", Ty::Object),
    ("/metadata/name", "metadata.name", Ty::Str),
    ("/metadata/labels", "metadata.labels", Ty::StrMap),
    ("/metadata/annotations", "metadata.annotations", Ty::StrMap),
    ("/metadata/finalizers", "metadata.finalizers", Ty::Array),
    (
        "/metadata/ownerReferences",
        "metadata.ownerReferences",
        Ty::Array,
    ),
];

const POD_SPEC_TYPES: &[(&str, &str, Ty)] = &[
    ("/containers", "containers", Ty::Array),
    ("/initContainers", "initContainers", Ty::Array),
    ("/nodeSelector", "nodeSelector", Ty::StrMap),
    ("/nodeName", "nodeName", Ty::Str),
    ("/restartPolicy", "restartPolicy", Ty::Str),
    ("/serviceAccountName", "serviceAccountName", Ty::Str),
    (
        "/terminationGracePeriodSeconds",
        "terminationGracePeriodSeconds",
        Ty::Int64,
    ),
    ("/activeDeadlineSeconds", "activeDeadlineSeconds", Ty::Int64),
    ("/tolerations", "tolerations", Ty::Array),
    ("/volumes", "volumes", Ty::Array),
    ("/hostNetwork", "hostNetwork", Ty::Bool),
];

/// A field whose JSON type does not fit the kind's Go type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    go_struct: String,
    field: String,
    json_type: &'static str,
    ty: Ty,
}

impl TypeError {
    /// encoding/json's message (JSON bodies, merge and JSON patches).
    pub fn json_message(&self) -> String {
        format!(
            "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
            self.json_type,
            self.go_struct,
            self.field,
            self.ty.go()
        )
    }

    /// apimachinery's unstructured converter's message (strategic merge patches).
    pub fn converter_message(&self) -> String {
        match self.ty {
            Ty::StrMap => format!("cannot restore map from {}", self.json_type),
            Ty::Array => format!("cannot restore slice from {}", self.json_type),
            Ty::Object => format!("cannot restore struct from {}", self.json_type),
            other => format!("unrecognized type: {}", other.go()),
        }
    }
}

/// The first wrongly typed field of `obj`, if any.
pub fn type_error(rt: &ResourceType, obj: &Value) -> Option<TypeError> {
    let check = |base: &str, path_prefix: &str, go_struct: &str, table: &[(&str, &str, Ty)]| {
        table.iter().find_map(|(pointer, field, ty)| {
            let v = obj.pointer(&format!("{base}{pointer}"))?;
            (!ty.accepts(v)).then(|| TypeError {
                go_struct: go_struct.to_string(),
                field: format!("{path_prefix}{field}"),
                json_type: json_type(v),
                ty: *ty,
            })
        })
    };
    if let Some(e) = check("", "", &rt.kind, META_TYPES) {
        return Some(e);
    }
    let spec_struct = format!("{}Spec", rt.kind);
    let workload: &[(&str, &str, Ty)] = &[
        ("/spec", "spec", Ty::Object),
        ("/spec/replicas", "spec.replicas", Ty::Int32),
        ("/spec/minReadySeconds", "spec.minReadySeconds", Ty::Int32),
        (
            "/spec/revisionHistoryLimit",
            "spec.revisionHistoryLimit",
            Ty::Int32,
        ),
        (
            "/spec/progressDeadlineSeconds",
            "spec.progressDeadlineSeconds",
            Ty::Int32,
        ),
        ("/spec/paused", "spec.paused", Ty::Bool),
        ("/spec/selector", "spec.selector", Ty::Object),
        ("/spec/template", "spec.template", Ty::Object),
        (
            "/spec/template/metadata/labels",
            "spec.template.metadata.labels",
            Ty::StrMap,
        ),
    ];
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            check("", "", &spec_struct, workload).or_else(|| {
                check(
                    "/spec/template/spec",
                    "spec.template.spec.",
                    "PodSpec",
                    POD_SPEC_TYPES,
                )
            })
        }
        ("", "pods") => check("/spec", "spec.", "PodSpec", POD_SPEC_TYPES),
        ("", "services") => check(
            "",
            "",
            "ServiceSpec",
            &[
                ("/spec/selector", "spec.selector", Ty::StrMap),
                ("/spec/ports", "spec.ports", Ty::Array),
                ("/spec/type", "spec.type", Ty::Str),
                ("/spec/clusterIP", "spec.clusterIP", Ty::Str),
            ],
        ),
        ("", "configmaps") => check(
            "",
            "",
            "ConfigMap",
            &[
                ("/data", "data", Ty::StrMap),
                ("/immutable", "immutable", Ty::Bool),
            ],
        ),
        ("", "nodes") => check(
            "",
            "",
            "NodeSpec",
            &[
                ("/spec/unschedulable", "spec.unschedulable", Ty::Bool),
                ("/spec/taints", "spec.taints", Ty::Array),
            ],
        ),
        _ => None,
    }
}

// === per-kind rules ===

fn containers_errors(spec: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let Some(containers) = spec.get("containers").and_then(Value::as_array) else {
        errs.push(FieldError::required(&format!("{field}.containers")));
        return;
    };
    if containers.is_empty() {
        errs.push(FieldError::required(&format!("{field}.containers")));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let at = format!("{field}.containers[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(&format!("{at}.name"))),
            Some(n) => {
                if !is_dns1123_label(n) {
                    errs.push(FieldError::invalid(
                        &format!("{at}.name"),
                        &Value::String(n.to_string()),
                        DNS1123_LABEL_MSG,
                    ));
                }
                if !names.insert(n.to_string()) {
                    errs.push(FieldError {
                        cause: "FieldValueDuplicate",
                        field: format!("{at}.name"),
                        body: format!("Duplicate value: {n:?}"),
                    });
                }
            }
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(|i| i.trim().is_empty())
        {
            errs.push(FieldError::required(&format!("{at}.image")));
        }
    }
}

fn non_negative(obj: &Value, pointer: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = obj.pointer(pointer).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            field,
            &Value::from(n),
            "must be greater than or equal to 0",
        ));
    }
}

fn spec_errors(rt: &ResourceType, obj: &Value, errs: &mut Vec<FieldError>) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            non_negative(obj, "/spec/replicas", "spec.replicas", errs);
            non_negative(obj, "/spec/minReadySeconds", "spec.minReadySeconds", errs);
            non_negative(
                obj,
                "/spec/revisionHistoryLimit",
                "spec.revisionHistoryLimit",
                errs,
            );
            labels_errors(
                obj,
                "/spec/template/metadata/labels",
                "spec.template.metadata.labels",
                errs,
            );
            labels_errors(
                obj,
                "/spec/selector/matchLabels",
                "spec.selector.matchLabels",
                errs,
            );
            match obj.pointer("/spec/template/spec") {
                Some(spec) => containers_errors(spec, "spec.template.spec", errs),
                None => errs.push(FieldError::required("spec.template.spec.containers")),
            }
            selector_errors(obj, errs);
        }
        ("", "replicationcontrollers") => {
            non_negative(obj, "/spec/replicas", "spec.replicas", errs);
        }
        ("", "pods") => match obj.get("spec") {
            Some(spec) => containers_errors(spec, "spec", errs),
            None => errs.push(FieldError::required("spec.containers")),
        },
        ("", "services") => {
            let ty = str_at(obj, "/spec/type").unwrap_or("ClusterIP");
            let headless = str_at(obj, "/spec/clusterIP") == Some("None");
            let no_ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if no_ports && ty != "ExternalName" && !headless {
                errs.push(FieldError::required("spec.ports"));
            }
            for (i, p) in obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(port) = p.get("port").and_then(Value::as_i64)
                    && !(1..=65535).contains(&port)
                {
                    errs.push(FieldError::invalid(
                        &format!("spec.ports[{i}].port"),
                        &Value::from(port),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        ("policy", "poddisruptionbudgets")
            if obj.pointer("/spec/minAvailable").is_some()
                && obj.pointer("/spec/maxUnavailable").is_some() =>
        {
            errs.push(FieldError::invalid(
                "spec",
                &Value::String(String::new()),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        _ => {}
    }
}

/// A workload needs a selector, and it must select its own template's labels.
fn selector_errors(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(selector) = obj.pointer("/spec/selector").filter(|s| s.is_object()) else {
        errs.push(FieldError::required("spec.selector"));
        return;
    };
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let match_expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let value = labels.get(key).and_then(Value::as_str);
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => !value.is_some_and(|v| values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        });
    let empty = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    if empty {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector,
            "empty selector is invalid for deployment",
        ));
    } else if !(match_labels && match_expressions) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            &labels,
            "`selector` does not match template `labels`",
        ));
    }
}

// === immutable fields ===

fn immutable(old: &Value, new: &Value, pointer: &str, field: &str, errs: &mut Vec<FieldError>) {
    let (o, n) = (old.pointer(pointer), new.pointer(pointer));
    if o.is_some() && o != n {
        errs.push(FieldError::invalid(
            field,
            n.unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

/// `v` without null and empty values (Go's `omitempty` makes them equal to absent).
fn without_empty(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), without_empty(x)))
                .filter(|(_, x)| !is_empty_value(x))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_empty).collect()),
        other => other.clone(),
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The pod spec without the fields a pod update may change (and without empty values).
fn pod_spec_mutable_stripped(spec: Option<&Value>) -> Value {
    let mut s = spec.map(without_empty).unwrap_or(Value::Null);
    if let Some(m) = s.as_object_mut() {
        for f in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
        ] {
            m.remove(f);
        }
        for list in ["containers", "initContainers"] {
            if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
    }
    s
}

fn update_errors(rt: &ResourceType, old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            immutable(old, new, "/spec/selector", "spec.selector", errs);
        }
        ("batch", "jobs") => immutable(old, new, "/spec/selector", "spec.selector", errs),
        ("", "services") => {
            let old_ip = str_at(old, "/spec/clusterIP").filter(|ip| !ip.is_empty());
            let new_ip = str_at(new, "/spec/clusterIP");
            if let Some(o) = old_ip
                && new_ip.is_some_and(|n| n != o && !n.is_empty())
            {
                errs.push(FieldError::invalid(
                    "spec.clusterIP",
                    &Value::String(new_ip.unwrap_or("").to_string()),
                    "field is immutable",
                ));
            }
        }
        ("", "pods") => {
            let (o, n) = (old.get("spec"), new.get("spec"));
            let (o, n) = (pod_spec_mutable_stripped(o), pod_spec_mutable_stripped(n));
            if o != n {
                // A real server appends a diff of the specs; name the changed fields.
                let keys = |v: &Value| {
                    v.as_object()
                        .map(|m| m.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                };
                let mut changed: Vec<String> = keys(&o)
                    .into_iter()
                    .chain(keys(&n))
                    .filter(|k| o.get(k) != n.get(k))
                    .collect();
                changed.dedup();
                errs.push(FieldError::forbidden(
                    "spec",
                    &format!(
                        "{POD_UPDATE_MSG}\n  changed: spec.{}",
                        changed.join(", spec.")
                    ),
                ));
            }
        }
        ("", "configmaps" | "secrets")
            if old.get("immutable").and_then(Value::as_bool) == Some(true) =>
        {
            for f in ["data", "binaryData", "stringData"] {
                if old.get(f) != new.get(f) {
                    errs.push(FieldError::forbidden(
                        f,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        _ => {}
    }
}

/// Validates `obj` (after defaulting) as a create (`old == None`) or update of a built-in kind.
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let builtin = kinds::builtin().contains(rt);
    if !builtin {
        return Ok(());
    }
    let name = str_at(obj, "/metadata/name").unwrap_or("");
    let mut errs = Vec::new();
    if old.is_none() && !name.is_empty() {
        errs.extend(name_errors(rt, name));
    }
    labels_errors(obj, "/metadata/labels", "metadata.labels", &mut errs);
    annotations_errors(
        obj,
        "/metadata/annotations",
        "metadata.annotations",
        &mut errs,
    );
    spec_errors(rt, obj, &mut errs);
    if let Some(old) = old {
        update_errors(rt, old, obj, &mut errs);
    }
    match invalid(rt, name, errs) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_apimachinery() {
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("Bad_Name"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1035_label("1abc"));
        let errs = name_errors(&kinds::configmaps(), "Bad_Name");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].text().starts_with(
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
        ));
    }

    #[test]
    fn label_keys_and_values() {
        assert!(key_errors("metadata.labels", "example.com/ok-key").is_empty());
        assert!(!key_errors("metadata.labels", "bad key!").is_empty());
        assert!(!key_errors("metadata.labels", "/x").is_empty());
        assert!(label_value_errors("metadata.labels", "").is_empty());
        assert!(!label_value_errors("metadata.labels", "bad value!").is_empty());
    }

    #[test]
    fn immutable_selector_and_pod_spec() {
        let rt = kinds::deployments();
        let old = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}}}});
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["app"] = json!("other");
        new["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
        let err = validate(&rt, &new, Some(&old)).unwrap_err();
        let status = err.to_status(Some(&rt), Some("web"));
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["kind"], "Deployment");
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["details"]["causes"][0]["field"], "spec.selector");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("field is immutable")
        );

        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "i"}], "restartPolicy": "Always"}});
        let mut image = pod.clone();
        image["spec"]["containers"][0]["image"] = json!("j");
        assert!(validate(&kinds::pods(), &image, Some(&pod)).is_ok());
        let mut policy = pod.clone();
        policy["spec"]["restartPolicy"] = json!("Never");
        assert!(validate(&kinds::pods(), &policy, Some(&pod)).is_err());
    }

    #[test]
    fn wrong_types_are_named() {
        let d = json!({"spec": {"replicas": "three"}});
        let e = type_error(&kinds::deployments(), &d).unwrap();
        assert_eq!(
            e.json_message(),
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        assert_eq!(e.converter_message(), "unrecognized type: int32");
        let labels = json!({"metadata": {"labels": "invalid"}});
        assert_eq!(
            type_error(&kinds::pods(), &labels)
                .unwrap()
                .converter_message(),
            "cannot restore map from string"
        );
        assert!(type_error(&kinds::deployments(), &json!({"spec": {"replicas": 3}})).is_none());
    }
}
