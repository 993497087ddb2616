//! The resource verbs: get, list, watch, create, update, patch, delete, deletecollection and
//! the `status`, `scale`, `eviction`, `log` and `proxy` subresources, plus CRD registration.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::defaults;
use crate::discovery;
use crate::patch::{self, PatchError, PatchKind};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{AppState, EvictOptions, LogRequest, Query};
use crate::status::{ApiError, json_response, success_status};
use crate::store::{Deletion, ResourceType, Store, StoreError, kinds};
use crate::table::{self, IncludeObject};
use crate::validation;
use crate::watch::{self, WatchRequest};

/// How often a patch is retried when the object changed between read and write.
const PATCH_RETRIES: usize = 5;

/// One request addressed to a resource.
#[derive(Debug)]
pub struct ResourceRequest {
    /// The resource type.
    pub rt: ResourceType,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Subresource from the path.
    pub sub: Option<String>,
    /// HTTP method.
    pub method: Method,
    /// Query parameters.
    pub query: Query,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
}

impl ResourceRequest {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun") == Some("All")
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// Routes a resource request to its verb.
pub async fn handle_resource(state: &AppState, req: ResourceRequest) -> Result<Response, ApiError> {
    let store = &state.store;
    match (&req.method, req.name.is_some(), req.sub.as_deref()) {
        (&Method::GET, false, None) if req.query.flag("watch") => watch_collection(state, &req),
        (&Method::GET, false, None) => list(store, &req),
        (&Method::GET, true, None) if req.query.flag("watch") => watch_collection(state, &req),
        (&Method::GET, true, None | Some("status")) => get(store, &req),
        (&Method::GET, true, Some("scale")) if has_scale(&req.rt) => {
            let obj = get_object(store, &req)?;
            Ok(json_response(StatusCode::OK, &scale_of(&obj)))
        }
        (&Method::GET, true, Some("log")) if req.rt == kinds::pods() => pod_log(state, &req),
        (&Method::POST, false, None) => {
            if req.rt.namespaced && req.namespace.is_none() {
                return Err(method_not_allowed(&req));
            }
            create(store, &req)
        }
        (&Method::POST, true, Some("eviction")) if req.rt == kinds::pods() => evict(state, &req),
        (&Method::PUT, true, None) => update(store, &req, false),
        (&Method::PUT, true, Some("status")) if has_status(store, &req.rt) => {
            update(store, &req, true)
        }
        (&Method::PUT, true, Some("scale")) if has_scale(&req.rt) => update_scale(store, &req),
        (&Method::PATCH, true, None) => patch_object(store, &req, false),
        (&Method::PATCH, true, Some("status")) if has_status(store, &req.rt) => {
            patch_object(store, &req, true)
        }
        (&Method::PATCH, true, Some("scale")) if has_scale(&req.rt) => patch_scale(store, &req),
        (&Method::DELETE, true, None) => delete(store, &req),
        (&Method::DELETE, false, None) => delete_collection(store, &req),
        (_, true, Some(sub))
            if req.rt == kinds::pods() && (sub == "proxy" || sub.starts_with("proxy/")) =>
        {
            pod_proxy(store, &req)
        }
        (_, _, Some(_)) if req.method == Method::GET => Err(ApiError::UnknownPath),
        _ => Err(method_not_allowed(&req)),
    }
}

fn method_not_allowed(req: &ResourceRequest) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method.to_string(),
    }
}

fn has_scale(rt: &ResourceType) -> bool {
    rt.group == "apps"
        && matches!(
            rt.plural.as_str(),
            "deployments" | "replicasets" | "statefulsets"
        )
        || *rt == kinds::replication_controllers()
}

fn has_status(store: &Store, rt: &ResourceType) -> bool {
    discovery::resource_info(store, rt)
        .subresources
        .iter()
        .any(|s| s.name == "status")
}

fn not_found(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::Store(StoreError::NotFound {
        resource: rt.qualified_plural(),
        name: name.to_string(),
    })
}

fn get_object(store: &Store, req: &ResourceRequest) -> Result<Value, ApiError> {
    store
        .get(&req.rt, req.namespace.as_deref(), req.name())
        .ok_or_else(|| not_found(&req.rt, req.name()))
}

fn include_object(req: &ResourceRequest) -> IncludeObject {
    IncludeObject::from_param(req.query.get("includeObject"))
}

fn wants_table(req: &ResourceRequest) -> bool {
    table::wants_table(req.header(header::ACCEPT))
}

fn get(store: &Store, req: &ResourceRequest) -> Result<Response, ApiError> {
    let obj = get_object(store, req)?;
    if wants_table(req) {
        let rv = obj.pointer("/metadata/resourceVersion").cloned();
        let t = table::table(
            store,
            &req.rt,
            std::slice::from_ref(&obj),
            include_object(req),
            json!({"resourceVersion": rv}),
            true,
        );
        return Ok(json_response(StatusCode::OK, &t));
    }
    Ok(json_response(StatusCode::OK, &obj))
}

fn selectors(req: &ResourceRequest) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels =
        LabelSelector::parse(req.query.get("labelSelector").unwrap_or("")).map_err(|e| {
            ApiError::BadRequest {
                message: e.to_string(),
            }
        })?;
    let fields =
        FieldSelector::parse(req.query.get("fieldSelector").unwrap_or("")).map_err(|e| {
            ApiError::BadRequest {
                message: e.to_string(),
            }
        })?;
    if let Some(field) = fields.unsupported_field(&req.rt, kinds::builtin().contains(&req.rt)) {
        return Err(ApiError::BadRequest {
            message: format!("field label not supported: {field}"),
        });
    }
    Ok((labels, fields))
}

/// Encodes a continue token: the list resourceVersion and the last returned key, hex-encoded.
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    format!("{rv}/{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(u64, String, String)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let mut parts = s.splitn(3, '/');
    let rv = parts.next()?.parse().ok()?;
    let ns = parts.next()?.to_string();
    let name = parts.next()?.to_string();
    Some((rv, ns, name))
}

fn list(store: &Store, req: &ResourceRequest) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(req)?;
    let after = match req.query.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => Some(decode_continue(token).ok_or_else(|| ApiError::BadRequest {
            message: "continue key is not valid: illegal base64 data".into(),
        })?),
        None => None,
    };
    let limit = req
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let after = after
        .as_ref()
        .map(|(_, ns, name)| (ns.as_str(), name.as_str()));
    let keep = |o: &Value| labels.matches(o) && fields.matches(o);
    let metadata_of = |items: &[&Value], remaining: usize, rv: u64| {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if remaining > 0
            && let Some(last) = items.last()
        {
            let meta = |f: &str| {
                last.pointer(&format!("/metadata/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            metadata["continue"] = json!(encode_continue(rv, &meta("namespace"), &meta("name")));
            metadata["remainingItemCount"] = json!(remaining);
        }
        metadata
    };
    if wants_table(req) {
        let (items, remaining, rv) =
            store.list_page(&req.rt, req.namespace.as_deref(), after, limit, keep);
        let refs: Vec<&Value> = items.iter().collect();
        let metadata = metadata_of(&refs, remaining, rv);
        let t = table::table(store, &req.rt, &items, include_object(req), metadata, true);
        return Ok(json_response(StatusCode::OK, &t));
    }
    // Serialized under the store's lock, straight from the stored objects.
    let bytes = store.list_page_with(
        &req.rt,
        req.namespace.as_deref(),
        after,
        limit,
        keep,
        |items, remaining, rv| {
            #[derive(serde::Serialize)]
            struct List<'a> {
                kind: String,
                #[serde(rename = "apiVersion")]
                api_version: String,
                metadata: Value,
                items: &'a [&'a Value],
            }
            serde_json::to_vec(&List {
                kind: format!("{}List", req.rt.kind),
                api_version: req.rt.api_version(),
                metadata: metadata_of(items, remaining, rv),
                items,
            })
        },
    );
    let bytes = bytes.map_err(|e| ApiError::Internal {
        message: format!("cannot encode the list: {e}"),
    })?;
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn watch_collection(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let (labels, mut fields) = selectors(req)?;
    if let Some(name) = &req.name {
        let combined = match req.query.get("fieldSelector").filter(|f| !f.is_empty()) {
            Some(f) => format!("{f},metadata.name={name}"),
            None => format!("metadata.name={name}"),
        };
        fields = FieldSelector::parse(&combined).map_err(|e| ApiError::BadRequest {
            message: e.to_string(),
        })?;
    }
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let send_initial_events = match req.query.get("sendInitialEvents") {
        Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        _ => None,
    };
    let table = wants_table(req).then(|| include_object(req));
    let watch_req = WatchRequest {
        rt: req.rt.clone(),
        namespace: req.namespace.clone(),
        resource_version: req.query.get("resourceVersion").map(str::to_string),
        bookmarks: req.query.flag("allowWatchBookmarks"),
        send_initial_events,
        timeout,
        labels,
        fields,
        table,
    };
    watch::serve_watch(
        state.store.clone(),
        state.faults.clone(),
        watch_req,
        state.shutdown.clone(),
    )
}

/// Decodes a request body: JSON, YAML for `application/yaml` and apply patches, Kubernetes
/// protobuf for the built-in kinds (`sim::protobuf`). CBOR is refused with 415 so that clients
/// fall back to JSON.
fn decode_body(req: &ResourceRequest) -> Result<Value, ApiError> {
    let ct = req.header(header::CONTENT_TYPE);
    if crate::protobuf::is_protobuf(ct) && !req.body.is_empty() {
        return crate::protobuf::decode(&req.body).map_err(|e| match e {
            // No protobuf type for this kind: JSON still works.
            crate::protobuf::ProtobufError::UnknownKind { .. } => ApiError::UnsupportedMediaType {
                content_type: ct.to_string(),
                accepted: "application/json, application/yaml".into(),
            },
            other => ApiError::BadRequest {
                message: other.to_string(),
            },
        });
    }
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::UnsupportedMediaType {
            content_type: ct.to_string(),
            accepted: "application/json, application/yaml".into(),
        });
    }
    if req.body.is_empty() {
        return Ok(Value::Null);
    }
    let yaml = ct.contains("yaml");
    let parsed = if yaml {
        std::str::from_utf8(&req.body)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string()))
    } else {
        serde_json::from_slice::<Value>(&req.body).map_err(|e| e.to_string())
    };
    parsed.map_err(|detail| ApiError::BadRequest {
        message: format!("the body of the request could not be decoded: {detail}"),
    })
}

fn check_type_meta(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != rt.api_version()
    {
        return Err(ApiError::BadRequest {
            message: format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            ),
        });
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != rt.kind
    {
        return Err(ApiError::BadRequest {
            message: format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            ),
        });
    }
    Ok(())
}

fn set_namespace(req: &ResourceRequest, obj: &mut Value) -> Result<(), ApiError> {
    let Some(meta) = obj
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return Err(ApiError::BadRequest {
            message: "the body of the request must be an object".into(),
        });
    };
    if req.rt.namespaced {
        let url_ns = req.namespace.clone().unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::BadRequest {
                    message: "the namespace of the provided object does not match the namespace sent on the request".into(),
                });
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

/// Type checks, defaulting and validation shared by every write of the main resource; `old`
/// is the stored object on updates (immutable fields).
fn prepare(
    store: &Store,
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if let Some(e) = validation::type_error(rt, obj) {
        return Err(ApiError::BadRequest {
            message: e.json_message(),
        });
    }
    defaults::apply_defaults(store, rt, obj);
    validation::validate(rt, obj, old)
}

/// Kinds whose status is owned by controllers and dropped on create.
fn drops_status_on_create(store: &Store, rt: &ResourceType) -> bool {
    (rt.group == "apps" || rt.group == "policy")
        || discovery::crd_for(store, rt).is_some() && discovery::crd_has_status(store, rt)
}

fn created(obj: &Value) -> Response {
    json_response(StatusCode::CREATED, obj)
}

fn create(store: &Store, req: &ResourceRequest) -> Result<Response, ApiError> {
    let mut obj = decode_body(req)?;
    if !obj.is_object() {
        return Err(ApiError::BadRequest {
            message: "the body of the request must be an object".into(),
        });
    }
    check_type_meta(&req.rt, &obj)?;
    set_namespace(req, &mut obj)?;
    if let Some(ns) = req.namespace.as_deref()
        && store.get(&kinds::namespaces(), None, ns).is_none()
    {
        return Err(not_found(&kinds::namespaces(), ns));
    }
    if drops_status_on_create(store, &req.rt)
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    // Owned fields are what the request set, not what defaulting added.
    let mut requested = obj_without_status(&obj);
    if let Some(meta) = requested.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    patch::record_update(
        None,
        &mut requested,
        &field_manager(req),
        &req.rt.api_version(),
        None,
        &store.clock().rfc3339(),
    );
    prepare(store, &req.rt, &mut obj, None)?;
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if !meta.contains_key("managedFields")
            && let Some(mf) = requested.pointer("/metadata/managedFields")
        {
            meta.insert("managedFields".into(), mf.clone());
        }
    }
    if req.dry_run() {
        return Ok(created(&store.preview_create(&req.rt, obj)?));
    }
    let created_obj = store.create(&req.rt, obj)?;
    let created_obj = after_write(store, &req.rt, created_obj);
    Ok(created(&created_obj))
}

/// The field manager of a write: `fieldManager`, else the user agent up to its first `/`
/// (`kubectl`, `ripcord`), as the API server defaults it.
fn field_manager(req: &ResourceRequest) -> String {
    if let Some(m) = req.query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = req.header(header::USER_AGENT);
    let prefix = ua.split('/').next().unwrap_or("").trim();
    if prefix.is_empty() {
        "unknown".to_string()
    } else {
        prefix.to_string()
    }
}

fn obj_without_status(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    o
}

/// Side effects of writes: CRDs register their resources and become Established.
fn after_write(store: &Store, rt: &ResourceType, obj: Value) -> Value {
    if *rt != kinds::crds() {
        return obj;
    }
    for t in crd_types(&obj) {
        store.register(t);
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let now = store.clock().rfc3339();
    let names = obj.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    store
        .modify(rt, None, &name, |crd| {
            crd["status"] = json!({
                "acceptedNames": names,
                "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array)
                    .map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>())
                    .unwrap_or_default(),
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            });
            Ok(())
        })
        .unwrap_or(obj)
}

/// The resource types a CRD object defines (one per served version).
pub fn crd_types(crd: &Value) -> Vec<ResourceType> {
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    let group = s("/spec/group");
    let plural = s("/spec/names/plural");
    let kind = s("/spec/names/kind");
    let namespaced = s("/spec/scope") != "Cluster";
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(|version| ResourceType::new(group, version, plural, kind, namespaced))
        .collect()
}

fn check_name(req: &ResourceRequest, obj: &mut Value) -> Result<(), ApiError> {
    let url_name = req.name().to_string();
    let Some(meta) = obj
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return Err(ApiError::BadRequest {
            message: "the body of the request must be an object".into(),
        });
    };
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != url_name => Err(ApiError::BadRequest {
            message: format!(
                "the name of the object ({n}) does not match the name on the URL ({url_name})"
            ),
        }),
        _ => {
            meta.insert("name".into(), json!(url_name));
            Ok(())
        }
    }
}

fn keep_managed_fields(old: &Value, new: &mut Value) {
    if new.pointer("/metadata/managedFields").is_none()
        && let (Some(mf), Some(meta)) = (
            old.pointer("/metadata/managedFields"),
            new.get_mut("metadata").and_then(Value::as_object_mut),
        )
    {
        meta.insert("managedFields".into(), mf.clone());
    }
}

fn update(store: &Store, req: &ResourceRequest, status: bool) -> Result<Response, ApiError> {
    let mut obj = decode_body(req)?;
    if !obj.is_object() {
        return Err(ApiError::BadRequest {
            message: "the body of the request must be an object".into(),
        });
    }
    check_type_meta(&req.rt, &obj)?;
    check_name(req, &mut obj)?;
    set_namespace(req, &mut obj)?;
    let old = get_object(store, req)?;
    keep_managed_fields(&old, &mut obj);
    write_object(store, req, &old, obj, status)
}

/// Stores an updated object (main resource or status) after defaulting; honours dry-run.
fn write_object(
    store: &Store,
    req: &ResourceRequest,
    old: &Value,
    mut obj: Value,
    status: bool,
) -> Result<Response, ApiError> {
    if !status {
        prepare(store, &req.rt, &mut obj, Some(old))?;
        let is_apply =
            req.method == Method::PATCH && req.header(header::CONTENT_TYPE).contains("apply-patch");
        if !is_apply {
            patch::record_update(
                Some(old),
                &mut obj,
                &field_manager(req),
                &req.rt.api_version(),
                None,
                &store.clock().rfc3339(),
            );
        }
    }
    if req.dry_run() {
        let mut preview = obj;
        if let (Some(m), false) = (preview.as_object_mut(), status) {
            match old.get("status") {
                Some(s) => m.insert("status".into(), s.clone()),
                None => m.remove("status"),
            };
        }
        return Ok(json_response(StatusCode::OK, &preview));
    }
    let stored = if status {
        store.update_status(&req.rt, obj)?
    } else {
        store.update(&req.rt, obj)?
    };
    let stored = after_write(store, &req.rt, stored);
    Ok(json_response(StatusCode::OK, &stored))
}

fn patch_error(e: PatchError) -> ApiError {
    match e {
        PatchError::ApplyConflict { .. } => ApiError::Conflict {
            message: e.to_string(),
        },
        PatchError::JsonPatch { .. } => ApiError::Invalid {
            message: e.to_string(),
        },
        PatchError::Decode { .. } | PatchError::Malformed { .. } => ApiError::BadRequest {
            message: e.to_string(),
        },
    }
}

fn patch_kind(req: &ResourceRequest) -> Result<PatchKind, ApiError> {
    let ct = req.header(header::CONTENT_TYPE);
    PatchKind::from_content_type(ct).ok_or_else(|| ApiError::UnsupportedMediaType {
        content_type: ct.to_string(),
        accepted: "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json".into(),
    })
}

fn apply_patch_body(
    kind: PatchKind,
    current: &Value,
    body: &Value,
    req: &ResourceRequest,
    now: &str,
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Json => patch::apply_json_patch(current, body),
        PatchKind::Merge => patch::apply_merge_patch(current, body),
        PatchKind::Strategic => patch::apply_strategic_patch(current, body),
        PatchKind::Apply => patch::server_side_apply(
            Some(current),
            body,
            req.query.get("fieldManager").unwrap_or(""),
            req.query.flag("force"),
            now,
        ),
    }
    .map_err(patch_error)
}

fn patch_object(store: &Store, req: &ResourceRequest, status: bool) -> Result<Response, ApiError> {
    let kind = patch_kind(req)?;
    let body = decode_body(req)?;
    if kind == PatchKind::Apply {
        if req.query.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::BadRequest {
                message: "PATCH, application/apply-patch+yaml requests must specify a fieldManager"
                    .into(),
            });
        }
        check_type_meta(&req.rt, &body)?;
    }
    // A resourceVersion inside the patch is a precondition.
    let precondition = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(current) = store.get(&req.rt, req.namespace.as_deref(), req.name()) else {
            if kind == PatchKind::Apply && !status {
                return apply_create(store, req, &body);
            }
            return Err(not_found(&req.rt, req.name()));
        };
        let current_rv = current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(pre) = &precondition
            && *pre != current_rv
        {
            return Err(ApiError::Store(StoreError::Conflict {
                resource: req.rt.qualified_plural(),
                name: req.name().to_string(),
            }));
        }
        let now = store.clock().rfc3339();
        let mut patched = apply_patch_body(kind, &current, &body, req, &now)?;
        if let Some(e) = validation::type_error(&req.rt, &patched) {
            let message = match kind {
                PatchKind::Strategic | PatchKind::Apply => e.converter_message(),
                PatchKind::Merge | PatchKind::Json => e.json_message(),
            };
            return Err(validation::patch_invalid(&body, &message));
        }
        check_name(req, &mut patched)?;
        set_namespace(req, &mut patched)?;
        // A patch that sets metadata.resourceVersion (a JSON patch `replace`, say) makes it a
        // precondition, as on a real server: a stale one is a 409.
        let patched_rv = patched
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty());
        if let Some(rv) = patched_rv
            && rv != current_rv
        {
            return Err(ApiError::Store(StoreError::Conflict {
                resource: req.rt.qualified_plural(),
                name: req.name().to_string(),
            }));
        }
        if let Some(meta) = patched.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(current_rv));
        }
        match write_object(store, req, &current, patched, status) {
            Err(ApiError::Store(StoreError::Conflict { .. }))
                if precondition.is_none() && attempt < PATCH_RETRIES =>
            {
                continue;
            }
            other => return other,
        }
    }
}

fn apply_create(store: &Store, req: &ResourceRequest, body: &Value) -> Result<Response, ApiError> {
    let now = store.clock().rfc3339();
    let mut obj = patch::server_side_apply(
        None,
        body,
        req.query.get("fieldManager").unwrap_or(""),
        req.query.flag("force"),
        &now,
    )
    .map_err(patch_error)?;
    check_name(req, &mut obj)?;
    set_namespace(req, &mut obj)?;
    if let Some(ns) = req.namespace.as_deref()
        && store.get(&kinds::namespaces(), None, ns).is_none()
    {
        return Err(not_found(&kinds::namespaces(), ns));
    }
    if drops_status_on_create(store, &req.rt)
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    prepare(store, &req.rt, &mut obj, None)?;
    if req.dry_run() {
        return Ok(created(&store.preview_create(&req.rt, obj)?));
    }
    let stored = store.create(&req.rt, obj)?;
    let stored = after_write(store, &req.rt, stored);
    Ok(created(&stored))
}

/// The autoscaling/v1 Scale of a workload.
fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": table::workload_selector(obj),
        },
    })
}

fn write_scale(
    store: &Store,
    req: &ResourceRequest,
    current: &Value,
    scale: &Value,
) -> Result<Response, ApiError> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::Invalid {
            message: format!(
                "Scale.autoscaling \"{}\" is invalid: spec.replicas: Required value",
                req.name()
            ),
        })?;
    if replicas < 0 {
        return Err(ApiError::Invalid {
            message: format!(
                "Scale.autoscaling \"{}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0",
                req.name()
            ),
        });
    }
    let mut obj = current.clone();
    if let Some(spec) = obj.pointer_mut("/spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), json!(replicas));
    }
    if let Some(rv) = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        && let Some(meta) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut)
    {
        meta.insert("resourceVersion".into(), json!(rv));
    }
    patch::record_update(
        Some(current),
        &mut obj,
        &field_manager(req),
        &req.rt.api_version(),
        Some("scale"),
        &store.clock().rfc3339(),
    );
    if req.dry_run() {
        return Ok(json_response(StatusCode::OK, &scale_of(&obj)));
    }
    let stored = store.update(&req.rt, obj)?;
    Ok(json_response(StatusCode::OK, &scale_of(&stored)))
}

fn update_scale(store: &Store, req: &ResourceRequest) -> Result<Response, ApiError> {
    let scale = decode_body(req)?;
    let current = get_object(store, req)?;
    write_scale(store, req, &current, &scale)
}

fn patch_scale(store: &Store, req: &ResourceRequest) -> Result<Response, ApiError> {
    let kind = patch_kind(req)?;
    let body = decode_body(req)?;
    let current = get_object(store, req)?;
    let now = store.clock().rfc3339();
    let scale = apply_patch_body(kind, &scale_of(&current), &body, req, &now)?;
    write_scale(store, req, &current, &scale)
}

fn evict(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let body = decode_body(req)?;
    if let Some(n) = body.pointer("/metadata/name").and_then(Value::as_str)
        && n != req.name()
    {
        return Err(ApiError::BadRequest {
            message: format!(
                "name in URL does not match name in Eviction object: {} != {n}",
                req.name()
            ),
        });
    }
    let ns = req.namespace.as_deref().unwrap_or("default");
    let options = EvictOptions {
        dry_run: req.dry_run() || dry_run_in(body.get("deleteOptions")),
        grace_period_seconds: body
            .pointer("/deleteOptions/gracePeriodSeconds")
            .and_then(Value::as_i64),
    };
    (state.hooks.evict)(&state.store, ns, req.name(), &options)?;
    let mut status = success_status(None);
    status["code"] = json!(201);
    Ok(json_response(StatusCode::CREATED, &status))
}

fn pod_log(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let log_req = LogRequest {
        namespace: req.namespace.clone().unwrap_or_else(|| "default".into()),
        pod: req.name().to_string(),
        container: req.query.get("container").map(str::to_string),
        previous: req.query.flag("previous"),
        tail_lines: req
            .query
            .get("tailLines")
            .and_then(|t| t.parse::<usize>().ok()),
        since_seconds: req
            .query
            .get("sinceSeconds")
            .and_then(|t| t.parse::<i64>().ok()),
        since_time: req.query.get("sinceTime").map(str::to_string),
        timestamps: req.query.flag("timestamps"),
        limit_bytes: req
            .query
            .get("limitBytes")
            .and_then(|t| t.parse::<usize>().ok()),
    };
    let text = (state.hooks.pod_log)(&state.store, &log_req)?;
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// `pods/NAME[:PORT]/proxy/PATH`: the API server's proxy to a pod. The simulated pods run no
/// containers, so the sim answers for them: a pod with an IP whose containers are ready
/// (`ContainersReady`, which a pod held back by a readiness gate already has — the real proxy
/// reaches it too, it does not look at `Ready`) answers `200 warm: /PATH` (any method), any
/// other pod `503` (the real proxy cannot connect either), a missing pod `404`. The request
/// log records every call (path and status).
fn pod_proxy(store: &Store, req: &ResourceRequest) -> Result<Response, ApiError> {
    let (pod_name, _port) = req.name().split_once(':').unwrap_or((req.name(), ""));
    let pod = store
        .get(&req.rt, req.namespace.as_deref(), pod_name)
        .ok_or_else(|| not_found(&req.rt, pod_name))?;
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "ContainersReady" && c["status"] == "True")
        });
    let has_ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .is_some_and(|ip| !ip.is_empty());
    let path = req.sub.as_deref().unwrap_or("proxy");
    let path = path.strip_prefix("proxy").unwrap_or(path);
    let (status, text) = if ready && has_ip {
        (
            StatusCode::OK,
            format!("warm: /{}", path.trim_start_matches('/')),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("error trying to reach service: pod {pod_name} is not ready"),
        )
    };
    let mut resp = (status, text).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// DeleteOptions from the body and query.
struct DeleteOptions {
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    grace_period_seconds: Option<i64>,
    dry_run: bool,
}

/// Whether a DeleteOptions-shaped value (a DELETE body, an Eviction's `deleteOptions`) asks
/// for a dry run: `dryRun: ["All"]`.
fn dry_run_in(options: Option<&Value>) -> bool {
    options
        .and_then(|o| o.get("dryRun"))
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("All")))
}

fn delete_options(req: &ResourceRequest) -> Result<DeleteOptions, ApiError> {
    let body = decode_body(req)?;
    let s = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_string);
    Ok(DeleteOptions {
        grace_period_seconds: req
            .query
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
            .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64)),
        dry_run: req.dry_run() || dry_run_in(Some(&body)),
        propagation: req
            .query
            .get("propagationPolicy")
            .map(str::to_string)
            .or_else(|| s("/propagationPolicy"))
            .or_else(
                || match body.get("orphanDependents").and_then(Value::as_bool) {
                    Some(true) => Some("Orphan".into()),
                    _ => None,
                },
            ),
        uid: s("/preconditions/uid"),
        resource_version: s("/preconditions/resourceVersion"),
    })
}

fn delete(store: &Store, req: &ResourceRequest) -> Result<Response, ApiError> {
    let opts = delete_options(req)?;
    let obj = get_object(store, req)?;
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(want) = &opts.uid
        && *want != uid
    {
        return Err(ApiError::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {} \"{}\": Precondition failed: UID in precondition: {want}, UID in object meta: {uid}",
                req.rt.qualified_plural(),
                req.name()
            ),
        });
    }
    if let Some(want) = &opts.resource_version {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if want != rv {
            return Err(ApiError::Conflict {
                message: format!(
                    "Operation cannot be fulfilled on {} \"{}\": Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}",
                    req.rt.qualified_plural(),
                    req.name()
                ),
            });
        }
    }
    if opts.dry_run {
        return Ok(json_response(StatusCode::OK, &obj));
    }
    let deletion = delete_one(
        store,
        &req.rt,
        req.namespace.as_deref(),
        req.name(),
        &uid,
        &opts,
    )?;
    Ok(json_response(StatusCode::OK, deletion.object()))
}

/// Deletes one object as the API server does: orphaning first for `Orphan`, the
/// `foregroundDeletion` finalizer for `Foreground`, graceful for pods.
fn delete_one(
    store: &Store,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    uid: &str,
    opts: &DeleteOptions,
) -> Result<Deletion, ApiError> {
    let finalizers: &[&str] = match opts.propagation.as_deref() {
        Some("Orphan") => {
            orphan_dependents(store, uid);
            &[]
        }
        Some("Foreground") => &["foregroundDeletion"],
        _ => &[],
    };
    let deletion = store.delete_gracefully(rt, ns, name, opts.grace_period_seconds, finalizers)?;
    if deletion.is_removed() {
        after_delete(store, rt, deletion.object());
    }
    Ok(deletion)
}

/// Removes owner references to `uid` from every object (`propagationPolicy=Orphan`).
fn orphan_dependents(store: &Store, uid: &str) {
    for rt in store.resource_types() {
        for obj in store.list(&rt, None).0 {
            let owned = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                });
            if !owned {
                continue;
            }
            let ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let result = store.modify(&rt, ns.as_deref(), &name, |o| {
                if let Some(refs) = o
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                }
                Ok(())
            });
            if let Err(error) = result {
                tracing::debug!(%error, object = %name, "orphaning dependent failed");
            }
        }
    }
}

/// Side effects of deletions: a CRD takes its resources with it. (A namespace goes
/// `Terminating`; the namespace controller empties it.)
fn after_delete(store: &Store, rt: &ResourceType, deleted: &Value) {
    if *rt == kinds::crds() {
        for t in crd_types(deleted) {
            store.unregister(&t);
        }
    }
}

fn delete_collection(store: &Store, req: &ResourceRequest) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(req)?;
    let opts = delete_options(req)?;
    let (items, _) = store.list(&req.rt, req.namespace.as_deref());
    let mut deleted = Vec::new();
    for obj in items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
    {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        if opts.dry_run {
            deleted.push(obj.clone());
            continue;
        }
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Ok(d) = delete_one(store, &req.rt, ns.as_deref(), name, uid, &opts) {
            deleted.push(d.object().clone());
        }
    }
    let body = json!({
        "kind": format!("{}List", req.rt.kind),
        "apiVersion": req.rt.api_version(),
        "metadata": {"resourceVersion": store.current_rv().to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "ns", "a/b");
        assert_eq!(decode_continue(&t), Some((42, "ns".into(), "a/b".into())));
        assert_eq!(decode_continue("zz"), None);
        assert_eq!(decode_continue("abc"), None);
    }

    #[test]
    fn crd_types_per_served_version() {
        let crd = json!({"spec": {"group": "ripcord.dev", "scope": "Namespaced",
            "names": {"plural": "runs", "kind": "Run"},
            "versions": [{"name": "v1", "served": true}, {"name": "v0", "served": false}]}});
        let types = crd_types(&crd);
        assert_eq!(
            types,
            vec![ResourceType::new("ripcord.dev", "v1", "runs", "Run", true)]
        );
    }
}
