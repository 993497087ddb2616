//! Small pure helpers shared by the simulated controllers: reading and writing fields of
//! objects stored as JSON, label selectors, owner references, int-or-percent arithmetic,
//! resource quantities and the pod-template hash.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Label key the deployment controller adds to ReplicaSets and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

// === field access ===

/// The value at `path` (object keys), if every step exists.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(*key)?;
    }
    Some(cur)
}

/// The string at `path`.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

/// The integer at `path` (also accepts integral floats).
pub fn i64_at(v: &Value, path: &[&str]) -> Option<i64> {
    let x = at(v, path)?;
    x.as_i64().or_else(|| {
        x.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// The boolean at `path`, `false` when absent.
pub fn bool_at(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// `metadata.name` (empty when absent).
pub fn name(v: &Value) -> &str {
    str_at(v, &["metadata", "name"]).unwrap_or("")
}

/// `metadata.namespace`.
pub fn namespace(v: &Value) -> Option<&str> {
    str_at(v, &["metadata", "namespace"])
}

/// `metadata.uid` (empty when absent).
pub fn uid(v: &Value) -> &str {
    str_at(v, &["metadata", "uid"]).unwrap_or("")
}

/// `metadata.labels` as a sorted map of strings.
pub fn labels(v: &Value) -> BTreeMap<String, String> {
    string_map(at(v, &["metadata", "labels"]))
}

/// A JSON object of strings as a sorted map (non-string values are skipped).
pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// One annotation.
pub fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    at(v, &["metadata", "annotations", key])?.as_str()
}

/// The object at `path`, created (as empty objects) where missing or not an object.
pub fn object_at_mut<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = ensure_object(v);
    for key in path {
        let child = cur
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        cur = ensure_object(child);
    }
    cur
}

/// Turns `v` into an object if it is not one, and returns the map.
fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(map) => map,
        // `v` was made an object just above.
        _ => unreachable!("value was just set to an object"),
    }
}

/// Sets the value at `path` (the last element is the key), creating parents.
pub fn set_at(v: &mut Value, path: &[&str], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *v = new;
        return;
    };
    object_at_mut(v, parents).insert((*last).to_string(), new);
}

/// Removes the value at `path`, returning it.
pub fn remove_at(v: &mut Value, path: &[&str]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = v;
    for key in parents {
        cur = cur.as_object_mut()?.get_mut(*key)?;
    }
    cur.as_object_mut()?.remove(*last)
}

/// Sets one annotation.
pub fn set_annotation(v: &mut Value, key: &str, value: &str) {
    object_at_mut(v, &["metadata", "annotations"]).insert(key.to_string(), json!(value));
}

// === time ===

/// Parses a Kubernetes timestamp.
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// The timestamp at `path`.
pub fn time_at(v: &Value, path: &[&str]) -> Option<jiff::Timestamp> {
    parse_time(str_at(v, path)?)
}

// === selectors ===

/// Whether a `LabelSelector` (matchLabels + matchExpressions) matches `labels`. An empty
/// selector matches everything (policy/v1 and apps/v1 semantics); a malformed expression
/// matches nothing.
pub fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector_matches_by(selector, |k| labels.get(k).map(String::as_str))
}

/// [`selector_matches`] against the labels of `obj` itself (`metadata.labels`), without
/// copying them into a map: for scans over many objects.
pub fn selector_matches_labels_of(selector: &Value, obj: &Value) -> bool {
    let labels = at(obj, &["metadata", "labels"]).and_then(Value::as_object);
    selector_matches_by(selector, |k| labels?.get(k)?.as_str())
}

/// [`selector_matches`] with the labels given by a lookup (a label's value, `None` when it is
/// absent or not a string).
fn selector_matches_by<'a>(selector: &Value, label: impl Fn(&str) -> Option<&'a str>) -> bool {
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for expr in exprs {
            let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = expr
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let have = label(key);
            let ok = match expr.get("operator").and_then(Value::as_str) {
                Some("In") => have.is_some_and(|h| values.contains(&h)),
                Some("NotIn") => have.is_none_or(|h| !values.contains(&h)),
                Some("Exists") => have.is_some(),
                Some("DoesNotExist") => have.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// Whether a plain map selector (Service `spec.selector`) matches; an empty map matches
/// nothing, as for Services.
pub fn map_selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// === owner references ===

/// The controller owner reference: (kind, name, uid).
pub fn controller_ref(v: &Value) -> Option<(&str, &str, &str)> {
    let refs = at(v, &["metadata", "ownerReferences"])?.as_array()?;
    refs.iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            (
                r.get("kind").and_then(Value::as_str).unwrap_or(""),
                r.get("name").and_then(Value::as_str).unwrap_or(""),
                r.get("uid").and_then(Value::as_str).unwrap_or(""),
            )
        })
}

/// Whether `v` is controlled by the object with uid `owner_uid`.
pub fn is_controlled_by(v: &Value, owner_uid: &str) -> bool {
    controller_ref(v).is_some_and(|(_, _, uid)| !uid.is_empty() && uid == owner_uid)
}

/// The uids of every owner reference of `v`.
pub fn owner_uids(v: &Value) -> Vec<&str> {
    at(v, &["metadata", "ownerReferences"])
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// A controller owner reference pointing at `owner`.
pub fn owner_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

// === int or percent ===

/// An `IntOrString` field such as `maxSurge` or `minAvailable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrPercent {
    /// An absolute number.
    Int(i64),
    /// A percentage of some total.
    Percent(i64),
}

impl IntOrPercent {
    /// Parses a JSON number or a string such as `"25%"` (or `"3"`, accepted leniently).
    pub fn from_value(v: &Value) -> Option<IntOrPercent> {
        if let Some(i) = v.as_i64() {
            return Some(IntOrPercent::Int(i));
        }
        let s = v.as_str()?.trim();
        match s.strip_suffix('%') {
            Some(p) => p.trim().parse().ok().map(IntOrPercent::Percent),
            None => s.parse().ok().map(IntOrPercent::Int),
        }
    }

    /// The value scaled against `total`, like apimachinery's
    /// `GetScaledValueFromIntOrPercent`: percentages round up or down as asked.
    pub fn scaled(self, total: i64, round_up: bool) -> i64 {
        match self {
            IntOrPercent::Int(i) => i,
            IntOrPercent::Percent(p) => {
                let product = p.saturating_mul(total);
                if round_up {
                    product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
                } else {
                    product.div_euclid(100)
                }
            }
        }
    }

    /// The JSON form (`1` or `"25%"`).
    pub fn to_value(self) -> Value {
        match self {
            IntOrPercent::Int(i) => json!(i),
            IntOrPercent::Percent(p) => json!(format!("{p}%")),
        }
    }
}

/// The deployment controller's `ResolveFenceposts`: (maxSurge rounded up, maxUnavailable
/// rounded down); if both are zero, maxUnavailable becomes 1.
pub fn resolve_fenceposts(
    max_surge: IntOrPercent,
    max_unavailable: IntOrPercent,
    desired: i64,
) -> (i64, i64) {
    let surge = max_surge.scaled(desired, true).max(0);
    let mut unavailable = max_unavailable.scaled(desired, false).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

// === quantities ===

/// Parses a CPU quantity (`"2"`, `"500m"`, `"0.5"`) into millicores.
pub fn parse_cpu_millis(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|f| f.ceil() as i64);
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(|f| (f * 1000.0).ceil() as i64)
}

/// Parses a memory quantity (`"128Mi"`, `"1G"`, `"1000"`, `"1e3"`) into bytes.
pub fn parse_memory_bytes(s: &str) -> Option<i64> {
    let s = s.trim();
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, mult) in SUFFIXES {
        if let Some(num) = s.strip_suffix(suffix) {
            return num
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| (f * mult).ceil() as i64);
        }
    }
    if let Some(num) = s.strip_suffix('m') {
        return num.parse::<f64>().ok().map(|f| (f / 1000.0).ceil() as i64);
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(|f| f.ceil() as i64)
}

/// Sums the cpu (millicores) and memory (bytes) requests of a pod spec's containers.
pub fn pod_requests(spec: &Value) -> (i64, i64) {
    let mut cpu = 0;
    let mut mem = 0;
    if let Some(containers) = spec.get("containers").and_then(Value::as_array) {
        for c in containers {
            let req = at(c, &["resources", "requests"]);
            if let Some(q) = req.and_then(|r| r.get("cpu")).and_then(quantity_str) {
                cpu += parse_cpu_millis(&q).unwrap_or(0);
            }
            if let Some(q) = req.and_then(|r| r.get("memory")).and_then(quantity_str) {
                mem += parse_memory_bytes(&q).unwrap_or(0);
            }
        }
    }
    (cpu, mem)
}

/// A quantity given as a JSON string or number.
pub fn quantity_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// === pod-template hash ===

/// Removes nulls, empty objects and empty arrays, recursively, so that semantically equal
/// templates compare and hash equal however a client spelled them.
pub fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a
                .iter()
                .map(|v| normalize(v).unwrap_or(json!({})))
                .collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// A pod template without its `pod-template-hash` label, normalized.
pub fn template_without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    remove_at(&mut t, &["metadata", "labels", POD_TEMPLATE_HASH]);
    normalize(&t).unwrap_or(json!({}))
}

/// Whether two pod templates are equal ignoring the `pod-template-hash` label (the
/// deployment controller's `EqualIgnoreHash`).
pub fn templates_equal_ignoring_hash(a: &Value, b: &Value) -> bool {
    template_without_hash(a) == template_without_hash(b)
}

/// Serializes with object keys sorted, whatever the map implementation.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(val) = m.get(k) {
                    canonical_json(val, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, val) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(val, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// 32-bit FNV-1a.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// apimachinery's `rand.SafeEncodeString`: maps every byte onto a vowel-free alphabet.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The `pod-template-hash` of a Deployment's pod template, computed like the real controller
/// (FNV-1a of the template, plus the collision count, safe-encoded from its decimal form);
/// the hashed bytes are this sim's canonical JSON, so values differ from a real cluster's.
pub fn pod_template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut text = String::new();
    canonical_json(&template_without_hash(template), &mut text);
    if let Some(c) = collision_count {
        text.push_str(&c.to_string());
    }
    safe_encode(&fnv32a(text.as_bytes()).to_string())
}

// === pods ===

/// Whether the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Value) -> bool {
    pod_condition(pod, "Ready")
        .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// The condition types of a pod's `spec.readinessGates`.
pub fn readiness_gates(pod: &Value) -> Vec<String> {
    at(pod, &["spec", "readinessGates"])
        .and_then(Value::as_array)
        .map(|gates| {
            gates
                .iter()
                .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Why a pod's readiness gates keep it not Ready, worded like the kubelet
/// (`corresponding condition of pod readiness gate "x" does not exist.`, or `the status of pod
/// readiness gate "x" is not "True", but False`, joined by `, `); `None` when every gate's
/// condition is `True` (or the pod has no gates).
pub fn readiness_gates_unready(pod: &Value) -> Option<String> {
    let messages: Vec<String> = readiness_gates(pod)
        .iter()
        .filter_map(|gate| match pod_condition(pod, gate) {
            None => Some(format!(
                "corresponding condition of pod readiness gate {gate:?} does not exist."
            )),
            Some(c) => {
                let status = c.get("status").and_then(Value::as_str).unwrap_or("");
                (status != "True").then(|| {
                    format!(
                        "the status of pod readiness gate {gate:?} is not \"True\", but {status}"
                    )
                })
            }
        })
        .collect();
    (!messages.is_empty()).then(|| messages.join(", "))
}

/// One condition of a pod (or any object with `status.conditions`).
pub fn pod_condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    at(obj, &["status", "conditions"])?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// Whether a pod counts as active for its controller: not terminal, not being deleted.
pub fn is_pod_active(pod: &Value) -> bool {
    let phase = str_at(pod, &["status", "phase"]).unwrap_or("Pending");
    phase != "Succeeded"
        && phase != "Failed"
        && at(pod, &["metadata", "deletionTimestamp"]).is_none()
}

/// Whether a pod is available: ready for at least `min_ready_seconds` at `now`.
pub fn is_pod_available(pod: &Value, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    pod_condition(pod, "Ready")
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(parse_time)
        .is_some_and(|since| now.duration_since(since).as_secs() >= min_ready_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounding_matches_the_deployment_controller() {
        let p = IntOrPercent::Percent(25);
        assert_eq!(p.scaled(10, true), 3);
        assert_eq!(p.scaled(10, false), 2);
        assert_eq!(p.scaled(4, true), 1);
        assert_eq!(p.scaled(4, false), 1);
        assert_eq!(p.scaled(3, false), 0);
        assert_eq!(IntOrPercent::Int(2).scaled(100, true), 2);
        assert_eq!(
            IntOrPercent::from_value(&json!("30%")),
            Some(IntOrPercent::Percent(30))
        );
        assert_eq!(
            IntOrPercent::from_value(&json!(3)),
            Some(IntOrPercent::Int(3))
        );
        assert_eq!(IntOrPercent::from_value(&json!("x%")), None);
        // Both zero after rounding: unavailable becomes 1.
        assert_eq!(
            resolve_fenceposts(IntOrPercent::Percent(25), IntOrPercent::Percent(25), 3),
            (1, 0)
        );
        assert_eq!(
            resolve_fenceposts(IntOrPercent::Int(0), IntOrPercent::Percent(10), 5),
            (0, 1)
        );
        assert_eq!(
            resolve_fenceposts(IntOrPercent::Percent(25), IntOrPercent::Percent(25), 12),
            (3, 3)
        );
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_cpu_millis("500m"), Some(500));
        assert_eq!(parse_cpu_millis("2"), Some(2000));
        assert_eq!(parse_cpu_millis("0.25"), Some(250));
        assert_eq!(parse_cpu_millis("abc"), None);
        assert_eq!(parse_memory_bytes("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(parse_memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory_bytes("1000"), Some(1000));
        assert_eq!(parse_memory_bytes("12Qi"), None);
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "checkout".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]
        .into_iter()
        .collect();
        assert!(selector_matches(&json!({}), &labels));
        assert!(selector_matches(
            &json!({"matchLabels": {"app": "checkout"}}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"app": "cart"}}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]}),
            &labels
        ));
        assert!(!map_selector_matches(&BTreeMap::new(), &labels));
    }

    #[test]
    fn selectors_match_an_objects_labels_in_place_as_a_copied_map() {
        // Non-string label values are no labels, as in `labels()`.
        let obj = json!({"metadata": {"labels": {"app": "checkout", "tier": "web", "n": 3}}});
        let bare = json!({"metadata": {}});
        for selector in [
            json!({}),
            json!({"matchLabels": {"app": "checkout"}}),
            json!({"matchLabels": {"app": "cart"}}),
            json!({"matchLabels": {"n": 3}}),
            json!({"matchLabels": {"missing": 3}}),
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}),
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}),
            json!({"matchExpressions": [{"key": "n", "operator": "Exists"}]}),
            json!({"matchExpressions": [{"key": "n", "operator": "DoesNotExist"}]}),
            json!({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]}),
        ] {
            for o in [&obj, &bare] {
                assert_eq!(
                    selector_matches_labels_of(&selector, o),
                    selector_matches(&selector, &labels(o)),
                    "{selector} on {o}"
                );
            }
        }
    }

    #[test]
    fn template_hash_ignores_hash_label_and_empty_fields_but_not_content() {
        let a = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "x:1"}]}});
        let b = json!({"metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}, "annotations": {}},
                        "spec": {"containers": [{"name": "x", "image": "x:1", "env": []}]}});
        let c = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "x:2"}]}});
        assert!(templates_equal_ignoring_hash(&a, &b));
        assert!(!templates_equal_ignoring_hash(&a, &c));
        let ha = pod_template_hash(&a, None);
        assert_eq!(ha, pod_template_hash(&b, None));
        assert_ne!(ha, pod_template_hash(&c, None));
        assert_ne!(ha, pod_template_hash(&a, Some(1)));
        assert!((6..=10).contains(&ha.len()), "{ha}");
        assert!(
            ha.chars()
                .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch))
        );
    }

    #[test]
    fn fnv_and_safe_encode_match_go() {
        // fnv.New32a() of "" is the offset basis; of "a" is 0xe40c292c.
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        // '0' is byte 48, 48 % 27 = 21 → '4'.
        assert_eq!(safe_encode("0"), "4");
    }

    #[test]
    fn field_helpers_create_and_remove_paths() {
        let mut v = json!({"metadata": {"name": "a"}});
        set_at(&mut v, &["status", "phase"], json!("Running"));
        set_annotation(&mut v, "k", "v");
        assert_eq!(str_at(&v, &["status", "phase"]), Some("Running"));
        assert_eq!(annotation(&v, "k"), Some("v"));
        assert_eq!(
            remove_at(&mut v, &["status", "phase"]),
            Some(json!("Running"))
        );
        assert_eq!(remove_at(&mut v, &["nope", "x"]), None);
        assert_eq!(name(&v), "a");
    }
}
