//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch and
//! a simplified server-side apply with `managedFields`.
//!
//! Strategic merge knows the patch merge keys of the fields kubectl and ripcord touch
//! (containers, initContainers, ephemeralContainers, volumes, env, imagePullSecrets by `name`;
//! volumeMounts by `mountPath`; container ports by `containerPort`, service ports by `port`;
//! conditions by `type`; tolerations and taints by `key`; ownerReferences by `uid`;
//! hostAliases by `ip`) and the directives `$patch: replace|delete|merge`, `$setElementOrder/`,
//! `$deleteFromPrimitiveList/` and `$retainKeys`; `finalizers` merge as a set. Other lists
//! are replaced, as for atomic lists on a real server.
//!
//! Server-side apply merges the applied configuration into the live object with the strategic
//! rules, records one `Apply` entry per field manager in `metadata.managedFields` (FieldsV1),
//! removes fields the same manager applied before and no longer applies (unless another
//! manager owns them), and reports conflicts against every other manager. Every other write
//! (create, PUT, PATCH, `scale`) records its manager too ([`record_update`]): the fields it
//! changed move to that manager's `Update` entry, as the API server's field manager does.

use serde_json::{Map, Value, json};

/// Patch failures.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not valid for its content type.
    #[error("the body of the request could not be decoded: {detail}")]
    Decode {
        /// Decoder message.
        detail: String,
    },
    /// A JSON patch operation failed.
    #[error("the server rejected our request due to an error in our request: {source}")]
    JsonPatch {
        /// The failing operation.
        #[source]
        source: json_patch::PatchError,
    },
    /// The patch is structurally wrong (e.g. a `$patch` directive with an unknown value).
    #[error("{detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// Server-side apply found fields owned by other managers with different values.
    #[error("Apply failed with {count} conflict{plural}: {details}", plural = if *count == 1 { "" } else { "s" })]
    ApplyConflict {
        /// Number of conflicting fields.
        count: usize,
        /// `conflict with "mgr": .spec.replicas` items joined by "; ".
        details: String,
    },
}

impl PatchError {
    /// Stable category.
    pub fn category(&self) -> &'static str {
        match self {
            PatchError::Decode { .. } => "decode",
            PatchError::JsonPatch { .. } => "json_patch",
            PatchError::Malformed { .. } => "malformed",
            PatchError::ApplyConflict { .. } => "apply_conflict",
        }
    }
}

/// The patch flavours, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (also `+cbor` is not supported).
    Apply,
}

impl PatchKind {
    /// The patch kind for a `Content-Type` header value, ignoring parameters.
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" => Some(PatchKind::Apply),
            _ => None,
        }
    }
}

/// Applies an RFC 6902 JSON patch document (an array of operations) to a copy of `target`.
pub fn apply_json_patch(target: &Value, body: &Value) -> Result<Value, PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(body.clone()).map_err(|e| PatchError::Decode {
            detail: e.to_string(),
        })?;
    let mut out = target.clone();
    json_patch::patch(&mut out, &patch).map_err(|source| PatchError::JsonPatch { source })?;
    Ok(out)
}

/// Applies an RFC 7386 merge patch to a copy of `target`.
pub fn apply_merge_patch(target: &Value, body: &Value) -> Result<Value, PatchError> {
    if !body.is_object() {
        return Err(PatchError::Decode {
            detail: "a merge patch must be a JSON object".into(),
        });
    }
    let mut out = target.clone();
    json_patch::merge(&mut out, body);
    Ok(out)
}

/// Applies a strategic merge patch to a copy of `target`.
pub fn apply_strategic_patch(target: &Value, body: &Value) -> Result<Value, PatchError> {
    let Some(patch) = body.as_object() else {
        return Err(PatchError::Decode {
            detail: "a strategic merge patch must be a JSON object".into(),
        });
    };
    let mut out = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(&mut out, patch)?;
    Ok(Value::Object(out))
}

/// The patch merge key of list field `field`, given the items on both sides.
fn merge_key(field: &str, items: &[&Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        "conditions" => Some("type"),
        "tolerations" | "taints" => Some("key"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        _ => None,
    }
}

/// Lists of scalars merged as sets.
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

fn directive(m: &Map<String, Value>) -> Option<&str> {
    m.get("$patch").and_then(Value::as_str)
}

fn strip_directives(v: &Value) -> Result<Value, PatchError> {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            merge_map(&mut out, m)?;
            Ok(Value::Object(out))
        }
        Value::Array(items) => Ok(Value::Array(
            items
                .iter()
                .filter(|i| i.as_object().is_none_or(|m| directive(m).is_none()))
                .map(strip_directives)
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), PatchError> {
    match directive(patch) {
        Some("replace") => {
            let mut rest = patch.clone();
            rest.remove("$patch");
            let mut fresh = Map::new();
            merge_map(&mut fresh, &rest)?;
            *target = fresh;
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Malformed {
                detail: format!("unknown patch type: {other}"),
            });
        }
    }
    for (k, pv) in patch {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            target.remove(k);
            continue;
        }
        match (target.get_mut(k), pv) {
            (Some(Value::Object(tm)), Value::Object(pm)) => {
                if directive(pm) == Some("delete") {
                    target.remove(k);
                } else {
                    merge_map(tm, pm)?;
                }
            }
            (Some(Value::Array(ta)), Value::Array(pa)) => merge_list(k, ta, pa)?,
            (_, Value::Object(pm)) => {
                if directive(pm) != Some("delete") {
                    target.insert(k.clone(), strip_directives(pv)?);
                } else {
                    target.remove(k);
                }
            }
            (_, Value::Array(pa)) => {
                let mut fresh = Vec::new();
                merge_list(k, &mut fresh, pa)?;
                target.insert(k.clone(), Value::Array(fresh));
            }
            _ => {
                target.insert(k.clone(), pv.clone());
            }
        }
    }
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(ta)), Some(remove)) = (target.get_mut(field), pv.as_array())
        {
            ta.retain(|v| !remove.contains(v));
        }
    }
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(ta)), Some(order)) = (target.get_mut(field), pv.as_array())
        {
            reorder(field, ta, order);
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        target.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k.as_str())));
    }
    Ok(())
}

fn reorder(field: &str, target: &mut Vec<Value>, order: &[Value]) {
    let all: Vec<&Value> = target.iter().chain(order.iter()).collect();
    let key = merge_key(field, &all);
    let same = |item: &Value, o: &Value| match key {
        Some(key) if o.is_object() => item.get(key).is_some() && item.get(key) == o.get(key),
        _ => item == o,
    };
    let mut rest: Vec<Value> = std::mem::take(target);
    for o in order {
        if let Some(pos) = rest.iter().position(|i| same(i, o)) {
            target.push(rest.remove(pos));
        }
    }
    target.extend(rest);
}

fn merge_list(field: &str, target: &mut Vec<Value>, patch: &[Value]) -> Result<(), PatchError> {
    let replace = patch
        .iter()
        .any(|i| i.as_object().and_then(directive) == Some("replace"));
    if replace {
        *target = strip_directives(&Value::Array(patch.to_vec()))?
            .as_array()
            .cloned()
            .unwrap_or_default();
        return Ok(());
    }
    let all: Vec<&Value> = target.iter().chain(patch.iter()).collect();
    let key = merge_key(field, &all).filter(|_| patch.iter().all(Value::is_object));
    if let Some(key) = key {
        for pi in patch {
            let Some(pm) = pi.as_object() else { continue };
            let kv = pm.get(key);
            let pos = target.iter().position(|t| kv.is_some() && t.get(key) == kv);
            if directive(pm) == Some("delete") {
                if let Some(pos) = pos {
                    target.remove(pos);
                }
                continue;
            }
            match pos {
                Some(pos) => {
                    if let Some(tm) = target[pos].as_object_mut() {
                        merge_map(tm, pm)?;
                    }
                }
                None => target.push(strip_directives(pi)?),
            }
        }
        return Ok(());
    }
    if is_set_list(field) {
        for pi in patch {
            if !target.contains(pi) {
                target.push(pi.clone());
            }
        }
        return Ok(());
    }
    *target = strip_directives(&Value::Array(patch.to_vec()))?
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(())
}

// === server-side apply ===

/// Fields never recorded as owned: `apiVersion`, `kind` and identity/bookkeeping metadata.
fn skip_field(at_root: bool, in_metadata: bool, k: &str) -> bool {
    at_root && matches!(k, "apiVersion" | "kind")
        || in_metadata
            && matches!(
                k,
                "name"
                    | "namespace"
                    | "uid"
                    | "resourceVersion"
                    | "generation"
                    | "creationTimestamp"
                    | "managedFields"
                    | "deletionTimestamp"
                    | "deletionGracePeriodSeconds"
                    | "selfLink"
            )
}

/// The FieldsV1 set of an applied configuration.
pub fn fields_v1(applied: &Value) -> Value {
    fn walk(v: &Value, at_root: bool, in_metadata: bool) -> Map<String, Value> {
        let mut out = Map::new();
        let Some(m) = v.as_object() else { return out };
        for (k, child) in m {
            if skip_field(at_root, in_metadata, k) {
                continue;
            }
            let entry = match child {
                Value::Object(cm) if !cm.is_empty() => {
                    Value::Object(walk(child, false, at_root && k == "metadata"))
                }
                Value::Array(items) => {
                    let refs: Vec<&Value> = items.iter().collect();
                    match merge_key(k, &refs).filter(|_| items.iter().all(Value::is_object)) {
                        Some(key) => {
                            let mut lm = Map::new();
                            for item in items {
                                let kv = item.get(key).cloned().unwrap_or(Value::Null);
                                let mut im = walk(item, false, false);
                                im.insert(".".into(), json!({}));
                                lm.insert(format!("k:{}", json!({ key: kv })), Value::Object(im));
                            }
                            Value::Object(lm)
                        }
                        None => json!({}),
                    }
                }
                _ => json!({}),
            };
            out.insert(format!("f:{k}"), entry);
        }
        out
    }
    Value::Object(walk(applied, true, false))
}

/// Leaf paths of a FieldsV1 set (each a list of `f:`/`k:` elements).
fn leaves(fields: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v.as_object() {
            Some(m) if m.keys().any(|k| k != ".") => {
                for (k, child) in m {
                    if k == "." {
                        continue;
                    }
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.push(prefix.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

/// Resolves a FieldsV1 path in an object.
fn resolve<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array()?
                .iter()
                .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes the value at a FieldsV1 path (a map key or a keyed list element).
fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for el in parents {
        let next = if let Some(f) = el.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = el.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            cur.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:")
        && let (Ok(key), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        )
    {
        a.retain(|item| !key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
    }
}

/// Removes a leaf path from a FieldsV1 set, pruning emptied parents.
fn remove_field(fields: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(m) = fields.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        m.remove(first);
        return;
    }
    if let Some(child) = m.get_mut(first) {
        remove_field(child, rest);
        if child
            .as_object()
            .is_some_and(|c| c.keys().all(|k| k == "."))
        {
            m.remove(first);
        }
    }
}

/// `.spec.template.spec.containers[name="app"].image` for a conflict message.
fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let inner = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| {
                    m.iter()
                        .map(|(kk, kv)| format!("{kk}={kv}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            s.push_str(&format!("[{inner}]"));
        }
    }
    s
}

/// Adds a leaf path to a FieldsV1 set.
fn add_field(fields: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if !fields.is_object() {
        *fields = json!({});
    }
    let Some(m) = fields.as_object_mut() else {
        return;
    };
    let child = m.entry(first.clone()).or_insert_with(|| json!({}));
    if first.starts_with("k:")
        && let Some(cm) = child.as_object_mut()
    {
        cm.entry(".").or_insert_with(|| json!({}));
    }
    add_field(child, rest);
}

/// The part of an object a write to `subresource` may own: `.status` for `status`, all but
/// `.status` otherwise.
fn owned_part(obj: &Value, subresource: Option<&str>) -> Value {
    match subresource {
        Some("status") => json!({"status": obj.get("status").cloned().unwrap_or(Value::Null)}),
        _ => {
            let mut o = obj.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("status");
            }
            o
        }
    }
}

/// Records a write that is not an apply (create, PUT, PATCH, `scale`, `status`) by `manager`
/// in `new`'s `metadata.managedFields`, as the API server's field manager does: the fields the
/// write set or changed (compared with `old`; every field for a create) move to `manager`'s
/// `Update` entry and are taken from every other manager, so a later server-side apply that
/// sets them differently conflicts with `manager`; fields the write removed are owned by
/// nobody. A write that changes nothing leaves `managedFields` alone.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let new_part = owned_part(new, subresource);
    let new_leaves = leaves(&fields_v1(&new_part));
    let (changed, removed): (Vec<Vec<String>>, Vec<Vec<String>>) = match old {
        None => (new_leaves, Vec::new()),
        Some(old) => {
            let old_part = owned_part(old, subresource);
            let changed = new_leaves
                .into_iter()
                .filter(|p| resolve(&old_part, p) != resolve(&new_part, p))
                .collect();
            let removed = leaves(&fields_v1(&old_part))
                .into_iter()
                .filter(|p| resolve(&new_part, p).is_none())
                .collect();
            (changed, removed)
        }
    };
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let mut managed: Vec<Value> = new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let is_own = |e: &Value| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Update")
            && e.get("subresource").and_then(Value::as_str) == subresource
    };
    for entry in managed.iter_mut().filter(|e| !is_own(e)) {
        if let Some(fields) = entry.get_mut("fieldsV1") {
            for path in changed.iter().chain(&removed) {
                remove_field(fields, path);
            }
        }
    }
    let mut own = managed
        .iter()
        .position(is_own)
        .map(|i| managed.remove(i))
        .and_then(|e| e.get("fieldsV1").cloned())
        .unwrap_or_else(|| json!({}));
    for path in &removed {
        remove_field(&mut own, path);
    }
    for path in &changed {
        add_field(&mut own, path);
    }
    managed.retain(|e| {
        e.get("fieldsV1")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
    });
    if own.as_object().is_some_and(|m| !m.is_empty()) {
        let mut entry = json!({
            "manager": manager,
            "operation": "Update",
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": own,
        });
        if let (Some(sub), Some(m)) = (subresource, entry.as_object_mut()) {
            m.insert("subresource".into(), json!(sub));
        }
        managed.push(entry);
    }
    if let Some(root) = new.as_object_mut() {
        let meta = root.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("managedFields".into(), Value::Array(managed));
        }
    }
}

/// The field paths `applied` would take from other managers of `managed` by changing their
/// value.
fn conflicting_paths(
    base: &Value,
    applied: &Value,
    new_leaves: &[Vec<String>],
    manager: &str,
    managed: &mut [Value],
) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for entry in managed.iter_mut() {
        if entry.get("manager").and_then(Value::as_str) == Some(manager) {
            continue;
        }
        let Some(fields) = entry.get_mut("fieldsV1") else {
            continue;
        };
        for path in leaves(fields) {
            if new_leaves.contains(&path) && resolve(base, &path) != resolve(applied, &path) {
                paths.push(path);
            }
        }
    }
    paths
}

/// The field paths of the object's `kubectl.kubernetes.io/last-applied-configuration`
/// annotation (what client-side applies set).
fn last_applied_leaves(base: &Value) -> Vec<Vec<String>> {
    base.pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .map(|config| leaves(&fields_v1(&config)))
        .unwrap_or_default()
}

/// Server-side apply of `applied` by `manager` onto `live` (`None` = create). Returns the new
/// object with `metadata.managedFields` updated. `now` is the entry's timestamp.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    let Some(applied_map) = applied.as_object() else {
        return Err(PatchError::Decode {
            detail: "an apply configuration must be an object".into(),
        });
    };
    let api_version = applied_map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let new_fields = fields_v1(applied);
    let new_leaves = leaves(&new_fields);
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let mut managed: Vec<Value> = base
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();

    // Upgrading from client-side apply, as upstream's `lastAppliedManager`: when the manager
    // is `kubectl` and every conflicting field is one the object's last-applied-configuration
    // annotation set (kubectl's earlier client-side applies), the apply is forced.
    let force = force
        || manager == "kubectl" && {
            let mut probe = managed.clone();
            let conflicting = conflicting_paths(&base, applied, &new_leaves, manager, &mut probe);
            !conflicting.is_empty() && {
                let allowed = last_applied_leaves(&base);
                conflicting.iter().all(|path| allowed.contains(path))
            }
        };

    // Conflicts with every other manager (appliers and writers by create/PUT/PATCH alike).
    let mut conflicts = Vec::new();
    for entry in &mut managed {
        let other = entry.get("manager").and_then(Value::as_str).unwrap_or("");
        if other == manager {
            continue;
        }
        let other = other.to_string();
        let other_api = entry
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(fields) = entry.get_mut("fieldsV1") else {
            continue;
        };
        for path in leaves(fields) {
            if !new_leaves.contains(&path) {
                continue;
            }
            if resolve(&base, &path) == resolve(applied, &path) {
                continue;
            }
            if force {
                remove_field(fields, &path);
            } else {
                conflicts.push(format!(
                    "conflict with \"{other}\" using {other_api}: {}",
                    display_path(&path)
                ));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(PatchError::ApplyConflict {
            count: conflicts.len(),
            details: conflicts.join("; "),
        });
    }

    // Fields this manager applied before and no longer applies are removed, unless another
    // manager still owns them.
    let mut result = base.clone();
    if let Some(prev) = managed.iter().find(|e| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
    }) {
        let others: Vec<Vec<String>> = managed
            .iter()
            .filter(|e| e.get("manager").and_then(Value::as_str) != Some(manager))
            .filter_map(|e| e.get("fieldsV1"))
            .flat_map(leaves)
            .collect();
        if let Some(prev_fields) = prev.get("fieldsV1") {
            for path in leaves(prev_fields) {
                let still_applied = new_leaves
                    .iter()
                    .any(|n| n.starts_with(&path) || path.starts_with(n));
                if !still_applied && !others.contains(&path) {
                    remove_path(&mut result, &path);
                }
            }
        }
    }
    let mut patch = applied.clone();
    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let mut result = apply_strategic_patch(&result, &patch)?;

    managed.retain(|e| {
        !(e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Apply"))
    });
    managed.retain(|e| {
        e.get("fieldsV1")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
    });
    managed.push(json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": new_fields,
    }));
    if let Some(root) = result.as_object_mut() {
        let meta = root.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("managedFields".into(), Value::Array(managed));
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "sidecar", "image": "side:1"}
            ]}}}
        })
    }

    #[test]
    fn strategic_merges_containers_by_name_and_keeps_others() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "app:2"}]}}}});
        let out = apply_strategic_patch(&deployment(), &patch).unwrap();
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["image"], "app:2");
        assert_eq!(cs[0]["env"][0]["value"], "1");
        assert_eq!(cs[1]["image"], "side:1");
    }

    #[test]
    fn strategic_directives() {
        let patch = json!({
            "metadata": {"labels": {"app": null, "new": "x"}, "finalizers": ["b"]},
            "spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "$patch": "delete"},
                {"name": "app", "env": [{"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "$patch": "delete"}]}
            ]}}}
        });
        let out = apply_strategic_patch(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"new": "x"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["ports"], json!([]));

        let replace = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "o:1"}]}}}});
        let out = apply_strategic_patch(&deployment(), &replace).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "o:1"}])
        );

        let retain = json!({"spec": {"$retainKeys": ["template"], "replicas": null}});
        let out = apply_strategic_patch(&deployment(), &retain).unwrap();
        assert!(out["spec"].get("replicas").is_none());
        let del_prim = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = apply_strategic_patch(&deployment(), &del_prim).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!([]));
        assert!(apply_strategic_patch(&deployment(), &json!({"$patch": "bogus"})).is_err());
    }

    #[test]
    fn json_and_merge_patches() {
        let out = apply_json_patch(
            &deployment(),
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 5}]),
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert!(
            apply_json_patch(&deployment(), &json!([{"op": "remove", "path": "/nope"}])).is_err()
        );
        let out = apply_merge_patch(&deployment(), &json!({"spec": {"replicas": null}})).unwrap();
        assert!(out["spec"].get("replicas").is_none());
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
    }

    #[test]
    fn apply_records_owners_detects_conflicts_and_removes_dropped_fields() {
        let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 2}});
        let created = server_side_apply(None, &cfg, "alice", false, "t").unwrap();
        let mf = &created["metadata"]["managedFields"][0];
        assert_eq!(mf["manager"], "alice");
        assert!(mf["fieldsV1"]["f:spec"]["f:replicas"].is_object());
        assert!(mf["fieldsV1"]["f:metadata"].get("f:name").is_none());

        let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 3}});
        let err = server_side_apply(Some(&created), &bob, "bob", false, "t").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"alice\" using apps/v1: .spec.replicas"
        );
        let forced = server_side_apply(Some(&created), &bob, "bob", true, "t").unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);

        // alice drops label b: it is removed; replicas is now bob's and stays.
        let cfg2 = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "1"}}});
        let out = server_side_apply(Some(&forced), &cfg2, "alice", false, "t").unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn kubectl_server_side_apply_takes_over_fields_of_its_client_side_applies() {
        // A client-side apply set spec.replicas (manager kubectl-client-side-apply, the
        // annotation records it).
        let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let mut live =
            server_side_apply(None, &cfg, "kubectl-client-side-apply", false, "t").unwrap();
        live["metadata"]["annotations"] = json!({
            "kubectl.kubernetes.io/last-applied-configuration": cfg.to_string()
        });
        let changed = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        // kubectl upgrading to server-side apply: no conflict.
        let out = server_side_apply(Some(&live), &changed, "kubectl", false, "t").unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        // Any other manager still conflicts.
        assert!(server_side_apply(Some(&live), &changed, "deployer", false, "t").is_err());
        // So does kubectl for a field the last-applied configuration never set.
        let mut scaled = live.clone();
        scaled["metadata"]["annotations"] = json!({
            "kubectl.kubernetes.io/last-applied-configuration":
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web"}}).to_string()
        });
        assert!(server_side_apply(Some(&scaled), &changed, "kubectl", false, "t").is_err());
    }
}
