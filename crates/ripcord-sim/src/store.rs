//! The in-memory object store with resourceVersions and a watch history.
//!
//! Objects are kept as `serde_json::Value`, exactly as a real API server returns them. The store
//! assigns `metadata.uid`, `metadata.resourceVersion` (one global counter, as etcd's revision),
//! `metadata.creationTimestamp` (from the [`SimClock`]) and `metadata.generation`, keeps a bounded
//! history of changes for watches (`events_since`) and broadcasts every change (`subscribe`). It
//! does no admission or validation beyond what is needed to keep that bookkeeping consistent.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::clock::SimClock;
use crate::rng::XorShift;

/// How many change events the watch history keeps before older resourceVersions expire.
pub const HISTORY_LIMIT: usize = 10_000;

/// Capacity of the broadcast channel behind [`Store::subscribe`]; slower receivers lag.
const BROADCAST_CAPACITY: usize = 16_384;

/// A kind of object the API serves: group/version/plural plus its kind and scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType {
    /// API group; `""` for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

// === impl ResourceType ===

impl ResourceType {
    /// Builds a resource type.
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced,
        }
    }

    /// The `apiVersion` of objects of this type: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-qualified resource name used in API error messages: `pods`,
    /// `deployments.apps`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The group-qualified kind used in `Invalid` messages: `Pod`, `Deployment.apps`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// Constructors for the built-in resource types the sim serves.
pub mod kinds {
    use super::ResourceType;

    /// core/v1 Pod.
    pub fn pods() -> ResourceType {
        ResourceType::new("", "v1", "pods", "Pod", true)
    }
    /// core/v1 Node.
    pub fn nodes() -> ResourceType {
        ResourceType::new("", "v1", "nodes", "Node", false)
    }
    /// core/v1 Namespace.
    pub fn namespaces() -> ResourceType {
        ResourceType::new("", "v1", "namespaces", "Namespace", false)
    }
    /// core/v1 Service.
    pub fn services() -> ResourceType {
        ResourceType::new("", "v1", "services", "Service", true)
    }
    /// core/v1 Endpoints.
    pub fn endpoints() -> ResourceType {
        ResourceType::new("", "v1", "endpoints", "Endpoints", true)
    }
    /// core/v1 ConfigMap.
    pub fn configmaps() -> ResourceType {
        ResourceType::new("", "v1", "configmaps", "ConfigMap", true)
    }
    /// core/v1 Secret.
    pub fn secrets() -> ResourceType {
        ResourceType::new("", "v1", "secrets", "Secret", true)
    }
    /// core/v1 Event.
    pub fn events() -> ResourceType {
        ResourceType::new("", "v1", "events", "Event", true)
    }
    /// core/v1 ServiceAccount.
    pub fn service_accounts() -> ResourceType {
        ResourceType::new("", "v1", "serviceaccounts", "ServiceAccount", true)
    }
    /// apps/v1 Deployment.
    pub fn deployments() -> ResourceType {
        ResourceType::new("apps", "v1", "deployments", "Deployment", true)
    }
    /// apps/v1 ReplicaSet.
    pub fn replicasets() -> ResourceType {
        ResourceType::new("apps", "v1", "replicasets", "ReplicaSet", true)
    }
    /// apps/v1 DaemonSet.
    pub fn daemonsets() -> ResourceType {
        ResourceType::new("apps", "v1", "daemonsets", "DaemonSet", true)
    }
    /// apps/v1 StatefulSet.
    pub fn statefulsets() -> ResourceType {
        ResourceType::new("apps", "v1", "statefulsets", "StatefulSet", true)
    }
    /// apps/v1 ControllerRevision.
    pub fn controller_revisions() -> ResourceType {
        ResourceType::new(
            "apps",
            "v1",
            "controllerrevisions",
            "ControllerRevision",
            true,
        )
    }
    /// policy/v1 PodDisruptionBudget.
    pub fn pod_disruption_budgets() -> ResourceType {
        ResourceType::new(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
        )
    }
    /// coordination.k8s.io/v1 Lease.
    pub fn leases() -> ResourceType {
        ResourceType::new("coordination.k8s.io", "v1", "leases", "Lease", true)
    }
    /// events.k8s.io/v1 Event.
    pub fn events_v1() -> ResourceType {
        ResourceType::new("events.k8s.io", "v1", "events", "Event", true)
    }
    /// gateway.networking.k8s.io/v1 HTTPRoute.
    pub fn http_routes() -> ResourceType {
        ResourceType::new(
            "gateway.networking.k8s.io",
            "v1",
            "httproutes",
            "HTTPRoute",
            true,
        )
    }
    /// apiextensions.k8s.io/v1 CustomResourceDefinition.
    pub fn crds() -> ResourceType {
        ResourceType::new(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        )
    }

    /// batch/v1 Job (served generically: no job controller).
    pub fn jobs() -> ResourceType {
        ResourceType::new("batch", "v1", "jobs", "Job", true)
    }
    /// batch/v1 CronJob (served generically: no cronjob controller).
    pub fn cron_jobs() -> ResourceType {
        ResourceType::new("batch", "v1", "cronjobs", "CronJob", true)
    }
    /// autoscaling/v2 HorizontalPodAutoscaler (served generically: no autoscaler).
    pub fn horizontal_pod_autoscalers() -> ResourceType {
        ResourceType::new(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
        )
    }
    /// autoscaling/v1 HorizontalPodAutoscaler: served by conversion from the v2 storage
    /// (`sim::versions`); holds no objects of its own.
    pub fn horizontal_pod_autoscalers_v1() -> ResourceType {
        ResourceType::new(
            "autoscaling",
            "v1",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
        )
    }
    /// networking.k8s.io/v1 Ingress (served generically: no ingress controller).
    pub fn ingresses() -> ResourceType {
        ResourceType::new("networking.k8s.io", "v1", "ingresses", "Ingress", true)
    }
    /// core/v1 PersistentVolumeClaim (served generically: never bound).
    pub fn persistent_volume_claims() -> ResourceType {
        ResourceType::new(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
        )
    }
    /// core/v1 PersistentVolume (served generically).
    pub fn persistent_volumes() -> ResourceType {
        ResourceType::new("", "v1", "persistentvolumes", "PersistentVolume", false)
    }
    /// core/v1 ReplicationController (served generically: no controller).
    pub fn replication_controllers() -> ResourceType {
        ResourceType::new(
            "",
            "v1",
            "replicationcontrollers",
            "ReplicationController",
            true,
        )
    }
    /// discovery.k8s.io/v1 EndpointSlice (served generically: not derived from Services).
    pub fn endpoint_slices() -> ResourceType {
        ResourceType::new(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        )
    }

    /// Every built-in type, in discovery order.
    pub fn builtin() -> Vec<ResourceType> {
        vec![
            pods(),
            nodes(),
            namespaces(),
            services(),
            endpoints(),
            configmaps(),
            secrets(),
            events(),
            service_accounts(),
            persistent_volume_claims(),
            persistent_volumes(),
            replication_controllers(),
            deployments(),
            replicasets(),
            daemonsets(),
            statefulsets(),
            controller_revisions(),
            pod_disruption_budgets(),
            leases(),
            jobs(),
            cron_jobs(),
            horizontal_pod_autoscalers(),
            horizontal_pod_autoscalers_v1(),
            endpoint_slices(),
            ingresses(),
            events_v1(),
            http_routes(),
            crds(),
        ]
    }
}

/// The kind of change a [`StoreEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was removed (the event carries its last state).
    Deleted,
}

impl EventKind {
    /// The watch event type string: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_watch_type(&self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Clone, Debug)]
pub struct StoreEvent {
    /// What happened.
    pub kind: EventKind,
    /// The type of the object.
    pub resource: ResourceType,
    /// The object after the change (for deletions: its final state).
    pub object: Value,
    /// The resourceVersion of the change.
    pub rv: u64,
}

impl StoreEvent {
    /// The namespace of the changed object, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }
}

/// Errors from store operations; each maps to a Kubernetes `Status` reason.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Qualified plural, e.g. `deployments.apps`.
        resource: String,
        /// Object name.
        name: String,
    },
    /// An object with that name already exists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Qualified plural.
        resource: String,
        /// Object name.
        name: String,
    },
    /// The caller's resourceVersion precondition failed.
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// Qualified plural.
        resource: String,
        /// Object name.
        name: String,
    },
    /// The object is malformed; `message` is the complete API message.
    #[error("{message}")]
    Invalid {
        /// Qualified kind, e.g. `Deployment.apps`.
        kind: String,
        /// Object name (may be empty).
        name: String,
        /// The full message.
        message: String,
    },
    /// The requested resourceVersion is older than the kept history.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The resourceVersion the caller asked for.
        requested: u64,
        /// The oldest resourceVersion that can still be watched from.
        oldest: u64,
    },
    /// The operation is refused.
    #[error("{message}")]
    Forbidden {
        /// The full message.
        message: String,
    },
    /// The operation is throttled or not allowed right now (e.g. a PDB refuses an eviction).
    #[error("{message}")]
    TooManyRequests {
        /// The full message.
        message: String,
    },
}

// === impl StoreError ===

impl StoreError {
    /// Stable low-cardinality category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::AlreadyExists { .. } => "already_exists",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Invalid { .. } => "invalid",
            StoreError::Expired { .. } => "expired",
            StoreError::Forbidden { .. } => "forbidden",
            StoreError::TooManyRequests { .. } => "too_many_requests",
        }
    }

    /// The `Status.reason` a Kubernetes API server uses for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "NotFound",
            StoreError::AlreadyExists { .. } => "AlreadyExists",
            StoreError::Conflict { .. } => "Conflict",
            StoreError::Invalid { .. } => "Invalid",
            StoreError::Expired { .. } => "Expired",
            StoreError::Forbidden { .. } => "Forbidden",
            StoreError::TooManyRequests { .. } => "TooManyRequests",
        }
    }

    /// The HTTP status code for this error.
    pub fn code(&self) -> u16 {
        match self {
            StoreError::NotFound { .. } => 404,
            StoreError::AlreadyExists { .. } | StoreError::Conflict { .. } => 409,
            StoreError::Invalid { .. } => 422,
            StoreError::Expired { .. } => 410,
            StoreError::Forbidden { .. } => 403,
            StoreError::TooManyRequests { .. } => 429,
        }
    }

    /// Builds an `Invalid` error for field `field` of object `name` of type `rt`, with the
    /// real API server's message shape.
    pub fn invalid(rt: &ResourceType, name: &str, field: &str, detail: &str) -> StoreError {
        StoreError::Invalid {
            kind: rt.qualified_kind(),
            name: name.to_string(),
            message: format!(
                "{} \"{}\" is invalid: {}: {}",
                rt.qualified_kind(),
                name,
                field,
                detail
            ),
        }
    }
}

/// The in-memory object store. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<StoreEvent>,
    clock: SimClock,
}

type ObjectKey = (String, String);

struct Inner {
    objects: BTreeMap<ResourceType, BTreeMap<ObjectKey, Value>>,
    types: BTreeSet<ResourceType>,
    builtin: Vec<ResourceType>,
    rv: u64,
    history: VecDeque<StoreEvent>,
    /// Highest resourceVersion dropped from the history (0 = nothing dropped yet).
    compacted: u64,
    rng: XorShift,
}

// === impl Store ===

impl Store {
    /// An empty store using `clock` for timestamps.
    pub fn new(clock: SimClock) -> Store {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let builtin = kinds::builtin();
        Store {
            inner: Arc::new(Mutex::new(Inner {
                objects: BTreeMap::new(),
                types: BTreeSet::new(),
                builtin,
                rv: 1,
                history: VecDeque::new(),
                compacted: 0,
                rng: XorShift::new(0x5EED_1234_ABCD_0001),
            })),
            events,
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-operation; the maps stay
        // structurally valid, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The simulated clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// The current (latest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Receives every change to every object from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// Built-in types followed by types registered through CRDs.
    pub fn resource_types(&self) -> Vec<ResourceType> {
        let inner = self.lock();
        let mut out = inner.builtin.clone();
        out.extend(
            inner
                .types
                .iter()
                .filter(|t| !inner.builtin.contains(t))
                .cloned(),
        );
        out
    }

    /// Registers a type (used when a CRD is created). Idempotent.
    pub fn register(&self, rt: ResourceType) {
        let mut inner = self.lock();
        if !inner.builtin.contains(&rt) {
            inner.types.insert(rt);
        }
    }

    /// Removes a type registered through a CRD, with all its objects (no events are sent for
    /// the removed objects). Built-in types cannot be removed.
    pub fn unregister(&self, rt: &ResourceType) {
        let mut inner = self.lock();
        if inner.types.remove(rt) {
            inner.objects.remove(rt);
        }
    }

    /// Finds a served type by group, version and plural.
    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.resource_types()
            .into_iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Finds a served type by apiVersion (`v1`, `apps/v1`) and kind.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.resource_types()
            .into_iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
    }

    /// One object, or `None`.
    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Option<Value> {
        let inner = self.lock();
        inner
            .objects
            .get(rt)
            .and_then(|m| m.get(&key(rt, ns, name)))
            .cloned()
    }

    /// All objects of a type (in one namespace, or all for `None`), sorted by namespace and
    /// name, with the resourceVersion the list is consistent with.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = match inner.objects.get(rt) {
            None => Vec::new(),
            Some(m) => match ns.filter(|_| rt.namespaced) {
                None => m.values().cloned().collect(),
                Some(ns) => m
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
            },
        };
        (items, inner.rv)
    }

    /// One page of the objects of a type that satisfy `keep`, in (namespace, name) order,
    /// starting after the key `after`, at most `limit` items (`None` = all). Returns the page,
    /// how many further objects satisfy `keep`, and the list resourceVersion. Only the returned
    /// objects are cloned.
    pub fn list_page(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
        keep: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, usize, u64) {
        self.list_page_with(rt, ns, after, limit, keep, |items, remaining, rv| {
            (items.iter().map(|v| (*v).clone()).collect(), remaining, rv)
        })
    }

    /// [`Store::list_page`] handing the page to `f` under the store's lock, without cloning
    /// it (a list response is serialized straight from the store: copying every object of a
    /// large list first cost most of its time). `f` must not call back into the store.
    pub fn list_page_with<R>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
        keep: impl Fn(&Value) -> bool,
        f: impl FnOnce(&[&Value], usize, u64) -> R,
    ) -> R {
        use std::ops::Bound;
        let inner = self.lock();
        let Some(m) = inner.objects.get(rt) else {
            return f(&[], 0, inner.rv);
        };
        let ns = ns.filter(|_| rt.namespaced);
        let start = match (after, ns) {
            (Some((a_ns, a_name)), _) => Bound::Excluded((a_ns.to_string(), a_name.to_string())),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut items: Vec<&Value> = Vec::new();
        let mut remaining = 0;
        for ((obj_ns, _), obj) in m.range((start, Bound::Unbounded)) {
            if let Some(ns) = ns {
                match obj_ns.as_str().cmp(ns) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Greater => break,
                    std::cmp::Ordering::Equal => {}
                }
            }
            if !keep(obj) {
                continue;
            }
            if limit.is_none_or(|l| items.len() < l) {
                items.push(obj);
            } else {
                remaining += 1;
            }
        }
        f(&items, remaining, inner.rv)
    }

    /// Calls `f` on one object under the store's lock, without cloning it; `None` when the
    /// object does not exist. `f` must not call back into the store.
    pub fn read<R>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&Value) -> R,
    ) -> Option<R> {
        let inner = self.lock();
        inner
            .objects
            .get(rt)
            .and_then(|m| m.get(&key(rt, ns, name)))
            .map(f)
    }

    /// Calls `f` on every object of a type (in one namespace, or all for `None`) in
    /// (namespace, name) order, under the store's lock and without cloning them: one
    /// consistent view, for counting and summarizing. `f` must not call back into the store.
    pub fn for_each(&self, rt: &ResourceType, ns: Option<&str>, mut f: impl FnMut(&Value)) {
        let inner = self.lock();
        let Some(m) = inner.objects.get(rt) else {
            return;
        };
        match ns.filter(|_| rt.namespaced) {
            None => m.values().for_each(f),
            Some(ns) => m
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .for_each(|(_, v)| f(v)),
        }
    }

    /// The (namespace, name) keys of the objects of a type that satisfy `keep`, without
    /// cloning the objects.
    pub fn keys_where(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<(String, String)> {
        let inner = self.lock();
        let ns = ns.filter(|_| rt.namespaced);
        inner
            .objects
            .get(rt)
            .into_iter()
            .flatten()
            .filter(|((obj_ns, _), obj)| ns.is_none_or(|n| n == obj_ns) && keep(obj))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of objects of a type (all namespaces).
    pub fn count(&self, rt: &ResourceType) -> usize {
        self.lock().objects.get(rt).map_or(0, BTreeMap::len)
    }

    /// Creates an object. The namespace comes from `metadata.namespace` (required for
    /// namespaced types, dropped for cluster-scoped ones); `metadata.generateName` is honoured.
    /// Sets uid, resourceVersion, creationTimestamp and generation 1.
    pub fn create(&self, rt: &ResourceType, obj: Value) -> Result<Value, StoreError> {
        self.create_or_preview(rt, obj, true)
    }

    /// What [`Store::create`] would store, without storing it (a server-side dry run): the
    /// same errors (an existing name is `AlreadyExists`), a fresh uid and timestamps.
    pub fn preview_create(&self, rt: &ResourceType, obj: Value) -> Result<Value, StoreError> {
        self.create_or_preview(rt, obj, false)
    }

    fn create_or_preview(
        &self,
        rt: &ResourceType,
        mut obj: Value,
        store: bool,
    ) -> Result<Value, StoreError> {
        if !obj.is_object() {
            return Err(StoreError::invalid(rt, "", "body", "must be a JSON object"));
        }
        let mut inner = self.lock();
        ensure_metadata(&mut obj);
        let ns = if rt.namespaced {
            match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() => Some(ns.to_string()),
                _ => {
                    return Err(StoreError::invalid(
                        rt,
                        meta_str(&obj, "name").unwrap_or_default(),
                        "metadata.namespace",
                        "Required value",
                    ));
                }
            }
        } else {
            None
        };
        let name = match meta_str(&obj, "name").filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta_str(&obj, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => {
                    let prefix = prefix.to_string();
                    let mut name;
                    loop {
                        name = format!("{prefix}{}", random_suffix(&mut inner.rng));
                        let exists = inner
                            .objects
                            .get(rt)
                            .is_some_and(|m| m.contains_key(&key(rt, ns.as_deref(), &name)));
                        if !exists {
                            break;
                        }
                    }
                    name
                }
                None => {
                    return Err(StoreError::invalid(
                        rt,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        validate_name(rt, &name)?;
        if let Some(ns) = ns.as_deref()
            && rt.plural != "events"
            && inner
                .objects
                .get(&kinds::namespaces())
                .and_then(|m| m.get(&(String::new(), ns.to_string())))
                .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some())
        {
            return Err(StoreError::Forbidden {
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rt.qualified_plural()
                ),
            });
        }
        let k = key(rt, ns.as_deref(), &name);
        if inner.objects.get(rt).is_some_and(|m| m.contains_key(&k)) {
            return Err(StoreError::AlreadyExists {
                resource: rt.qualified_plural(),
                name,
            });
        }
        let rv = inner.rv + 1;
        let uid = random_uid(&mut inner.rng);
        let created = self.clock.rfc3339();
        set_type_meta(rt, &mut obj);
        let Some(meta) = metadata_mut(&mut obj) else {
            return Err(StoreError::invalid(
                rt,
                &name,
                "body",
                "must be a JSON object",
            ));
        };
        meta.insert("name".into(), json!(name));
        match &ns {
            Some(ns) => {
                meta.insert("namespace".into(), json!(ns));
            }
            None => {
                meta.remove("namespace");
            }
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(created));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        if !store {
            return Ok(obj);
        }
        inner.rv = rv;
        inner
            .objects
            .entry(rt.clone())
            .or_default()
            .insert(k, obj.clone());
        self.emit(&mut inner, EventKind::Added, rt, obj.clone(), rv);
        drop(inner);
        if *rt == kinds::namespaces() {
            crate::defaults::namespace_created(self, &name);
        }
        Ok(obj)
    }

    /// Replaces an object. If `metadata.resourceVersion` is set and differs from the stored
    /// one, fails with [`StoreError::Conflict`]. The stored `.status` is kept (status goes
    /// through [`Store::update_status`]); `metadata.generation` is bumped when `.spec` changed.
    /// An update that changes nothing returns the stored object without a new resourceVersion.
    pub fn update(&self, rt: &ResourceType, obj: Value) -> Result<Value, StoreError> {
        self.replace(rt, obj, ReplaceMode::Main)
    }

    /// Replaces only `.status` of an object (resourceVersion precondition as [`Store::update`]).
    pub fn update_status(&self, rt: &ResourceType, obj: Value) -> Result<Value, StoreError> {
        self.replace(rt, obj, ReplaceMode::Status)
    }

    fn replace(
        &self,
        rt: &ResourceType,
        obj: Value,
        mode: ReplaceMode,
    ) -> Result<Value, StoreError> {
        if !obj.is_object() {
            return Err(StoreError::invalid(rt, "", "body", "must be a JSON object"));
        }
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let ns = if rt.namespaced {
            meta_str(&obj, "namespace").map(str::to_string)
        } else {
            None
        };
        // "0" (like "") asks for an unconditional update, as on a real server.
        let precondition = meta_str(&obj, "resourceVersion")
            .filter(|rv| !rv.is_empty() && *rv != "0")
            .map(str::to_string);
        let mut inner = self.lock();
        let k = key(rt, ns.as_deref(), &name);
        let old = inner
            .objects
            .get(rt)
            .and_then(|m| m.get(&k))
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                resource: rt.qualified_plural(),
                name: name.clone(),
            })?;
        if let Some(expected) = precondition
            && meta_str(&old, "resourceVersion") != Some(expected.as_str())
        {
            return Err(StoreError::Conflict {
                resource: rt.qualified_plural(),
                name,
            });
        }
        let new = match mode {
            ReplaceMode::Main => {
                let mut new = obj;
                match old.get("status") {
                    Some(status) => {
                        if let Some(m) = new.as_object_mut() {
                            m.insert("status".into(), status.clone());
                        }
                    }
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                new
            }
            ReplaceMode::Status => {
                let mut new = old.clone();
                match obj.get("status") {
                    Some(status) => {
                        if let Some(m) = new.as_object_mut() {
                            m.insert("status".into(), status.clone());
                        }
                    }
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                new
            }
        };
        Ok(self.commit(&mut inner, rt, k, &old, new))
    }

    /// Atomic read-modify-write for controllers: no resourceVersion precondition; `f` may change
    /// spec, status and metadata (uid, name, namespace, creationTimestamp and resourceVersion are
    /// restored). Bumps generation on a spec change; no event and no new resourceVersion when
    /// nothing changed. An error from `f` aborts without changes.
    pub fn modify(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value) -> Result<(), StoreError>,
    ) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let k = key(rt, ns, name);
        let old = inner
            .objects
            .get(rt)
            .and_then(|m| m.get(&k))
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                resource: rt.qualified_plural(),
                name: name.to_string(),
            })?;
        let mut new = old.clone();
        f(&mut new)?;
        if !new.is_object() {
            return Err(StoreError::invalid(
                rt,
                name,
                "body",
                "must be a JSON object",
            ));
        }
        Ok(self.commit(&mut inner, rt, k, &old, new))
    }

    /// Stores `new` in place of `old`: restores identity metadata, computes generation, bumps
    /// the resourceVersion and emits `Modified` — unless nothing changed.
    fn commit(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        k: ObjectKey,
        old: &Value,
        mut new: Value,
    ) -> Value {
        set_type_meta(rt, &mut new);
        let old_generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if let Some(meta) = metadata_mut(&mut new) {
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old.pointer(&format!("/metadata/{field}")) {
                    Some(v) => {
                        meta.insert(field.into(), v.clone());
                    }
                    None => {
                        meta.remove(field);
                    }
                }
            }
            meta.insert("generation".into(), json!(old_generation));
        }
        if &new == old {
            return new;
        }
        let spec_changed = new.get("spec") != old.get("spec");
        let rv = inner.rv + 1;
        inner.rv = rv;
        if let Some(meta) = metadata_mut(&mut new) {
            if spec_changed {
                meta.insert("generation".into(), json!(old_generation + 1));
            }
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        if new.pointer("/metadata/deletionTimestamp").is_some() && !deletion_blocked(rt, &new) {
            // The last finalizer went and no grace period is left: the object goes now.
            if let Some(m) = inner.objects.get_mut(rt) {
                m.remove(&k);
            }
            self.emit(inner, EventKind::Deleted, rt, new.clone(), rv);
            return new;
        }
        inner
            .objects
            .entry(rt.clone())
            .or_default()
            .insert(k, new.clone());
        self.emit(inner, EventKind::Modified, rt, new.clone(), rv);
        new
    }

    /// Deletes an object the way the API server's graceful deletion does. A pod bound to a
    /// node that is not terminal gets `deletionTimestamp` = now + its grace period
    /// (`grace_period_seconds`, else `spec.terminationGracePeriodSeconds`, else 30) and
    /// `deletionGracePeriodSeconds`, and stays (Terminating) until the kubelet removes it; any
    /// object with `metadata.finalizers` (plus `add_finalizers`, e.g. `foregroundDeletion`) stays
    /// until they are removed; a namespace goes `Terminating` until the namespace controller
    /// empties it. Everything else is removed at once. A second deletion of an object that is
    /// already being deleted can only shorten its grace period.
    pub fn delete_gracefully(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        grace_period_seconds: Option<i64>,
        add_finalizers: &[&str],
    ) -> Result<Deletion, StoreError> {
        let mut inner = self.lock();
        let k = key(rt, ns, name);
        let old = inner
            .objects
            .get(rt)
            .and_then(|m| m.get(&k))
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                resource: rt.qualified_plural(),
                name: name.to_string(),
            })?;
        let grace = deletion_grace(rt, &old, grace_period_seconds);
        let mut finalizers: Vec<String> = string_list(old.pointer("/metadata/finalizers"));
        for f in add_finalizers {
            if !finalizers.iter().any(|have| have == f) {
                finalizers.push((*f).to_string());
            }
        }
        let is_namespace = *rt == kinds::namespaces();
        if grace == 0 && finalizers.is_empty() && !is_namespace {
            drop(inner);
            return self.delete(rt, ns, name).map(Deletion::Removed);
        }
        let mut new = old.clone();
        let already = old.pointer("/metadata/deletionTimestamp").is_some();
        let current_grace = old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(meta) = metadata_mut(&mut new) {
            if !already || grace < current_grace {
                let at = self
                    .clock
                    .now()
                    .checked_add(jiff::SignedDuration::from_secs(grace))
                    .unwrap_or_else(|_| self.clock.now());
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(crate::clock::format_k8s_time(at)),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), json!(finalizers));
            }
        }
        if is_namespace {
            if new.pointer("/spec/finalizers").is_none() {
                new["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            new["status"]["phase"] = json!("Terminating");
        }
        if !is_namespace && !deletion_blocked(rt, &new) {
            drop(inner);
            return self.delete(rt, ns, name).map(Deletion::Removed);
        }
        if new == old {
            return Ok(Deletion::Pending(new));
        }
        let rv = inner.rv + 1;
        inner.rv = rv;
        if let Some(meta) = metadata_mut(&mut new) {
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        inner
            .objects
            .entry(rt.clone())
            .or_default()
            .insert(k, new.clone());
        self.emit(&mut inner, EventKind::Modified, rt, new.clone(), rv);
        Ok(Deletion::Pending(new))
    }

    /// Removes an object immediately, whatever its grace period or finalizers, and returns its
    /// final state (with the deletion's resourceVersion). Owned objects are collected by the
    /// sim's GC controller, not here. API deletions go through [`Store::delete_gracefully`].
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let k = key(rt, ns, name);
        let mut obj = inner
            .objects
            .get_mut(rt)
            .and_then(|m| m.remove(&k))
            .ok_or_else(|| StoreError::NotFound {
                resource: rt.qualified_plural(),
                name: name.to_string(),
            })?;
        let rv = inner.rv + 1;
        inner.rv = rv;
        if let Some(meta) = metadata_mut(&mut obj) {
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        self.emit(&mut inner, EventKind::Deleted, rt, obj.clone(), rv);
        Ok(obj)
    }

    /// Changes to objects of `rt` (in `ns`, or all namespaces for `None`) after resourceVersion
    /// `rv`, oldest first. Fails with [`StoreError::Expired`] when events after `rv` have
    /// already been dropped from the bounded history.
    pub fn events_since(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        rv: u64,
    ) -> Result<Vec<StoreEvent>, StoreError> {
        let inner = self.lock();
        if rv < inner.compacted {
            return Err(StoreError::Expired {
                requested: rv,
                oldest: inner.compacted,
            });
        }
        let start = inner.history.partition_point(|e| e.rv <= rv);
        Ok(inner
            .history
            .range(start..)
            .filter(|e| &e.resource == rt && (ns.is_none() || e.namespace() == ns))
            .cloned()
            .collect())
    }

    /// For every object of `rt` (in `ns`) whose last change at or before resourceVersion `rv`
    /// is still in the history: its key and whether it existed then and satisfied `keep`. Lets
    /// a watch resumed from `rv` know which objects the client holds (objects that left its
    /// selector since get a `DELETED`).
    pub fn states_at(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        rv: u64,
        keep: impl Fn(&Value) -> bool,
    ) -> BTreeMap<ObjectKey, bool> {
        let inner = self.lock();
        let end = inner.history.partition_point(|e| e.rv <= rv);
        let mut out = BTreeMap::new();
        for e in inner
            .history
            .range(..end)
            .filter(|e| &e.resource == rt && (ns.is_none() || e.namespace() == ns))
        {
            let k = (
                e.namespace().unwrap_or("").to_string(),
                meta_str(&e.object, "name").unwrap_or("").to_string(),
            );
            out.insert(k, e.kind != EventKind::Deleted && keep(&e.object));
        }
        out
    }

    /// Drops the whole watch history, so that watching from any resourceVersion older than the
    /// current one fails with `Expired` (tests use this to force a 410 Gone).
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    fn emit(&self, inner: &mut Inner, kind: EventKind, rt: &ResourceType, object: Value, rv: u64) {
        let event = StoreEvent {
            kind,
            resource: rt.clone(),
            object,
            rv,
        };
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = inner.history.pop_front() {
                inner.compacted = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}

/// What [`Store::delete_gracefully`] did.
#[derive(Clone, Debug)]
pub enum Deletion {
    /// The object is gone; its final state.
    Removed(Value),
    /// The object is being deleted (`deletionTimestamp` set) and waits for its grace period or
    /// finalizers; its current state.
    Pending(Value),
}

impl Deletion {
    /// The object as the deletion left it.
    pub fn object(&self) -> &Value {
        match self {
            Deletion::Removed(v) | Deletion::Pending(v) => v,
        }
    }

    /// Whether the object is gone.
    pub fn is_removed(&self) -> bool {
        matches!(self, Deletion::Removed(_))
    }
}

/// The grace period a deletion gets: only pods bound to a node and not terminal have one.
fn deletion_grace(rt: &ResourceType, obj: &Value, requested: Option<i64>) -> i64 {
    if *rt != kinds::pods() {
        return 0;
    }
    let bound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let terminal = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !bound || terminal {
        return 0;
    }
    requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

/// Whether an object being deleted must stay: finalizers, a namespace's `spec.finalizers`, or
/// a grace period the kubelet has not yet ended.
fn deletion_blocked(rt: &ResourceType, obj: &Value) -> bool {
    let has = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    has("/metadata/finalizers")
        || (*rt == kinds::namespaces() && has("/spec/finalizers"))
        || obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

enum ReplaceMode {
    Main,
    Status,
}

fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> ObjectKey {
    let ns = if rt.namespaced { ns.unwrap_or("") } else { "" };
    (ns.to_string(), name.to_string())
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn ensure_metadata(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut()
        && !m.get("metadata").is_some_and(Value::is_object)
    {
        m.insert("metadata".into(), json!({}));
    }
}

/// The `metadata` map of an object, created when missing; `None` when `obj` is not a JSON
/// object.
fn metadata_mut(obj: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let meta = obj
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

fn set_type_meta(rt: &ResourceType, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
}

/// DNS-1123 subdomain check (what most kinds require for names).
fn validate_name(rt: &ResourceType, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            rt,
            name,
            "metadata.name",
            &format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ))
    }
}

/// Five characters from the alphabet Kubernetes uses for generated names.
fn random_suffix(rng: &mut XorShift) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// A random RFC 4122 version-4-shaped uid.
fn random_uid(rng: &mut XorShift) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        (((b >> 48) as u16) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(SimClock::new(1.0))
    }

    fn deployment(name: &str, replicas: i64) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": {"replicas": replicas},
        })
    }

    #[tokio::test]
    async fn create_sets_bookkeeping_fields() {
        let s = store();
        let d = s
            .create(&kinds::deployments(), deployment("web", 2))
            .unwrap();
        assert_eq!(d["apiVersion"], "apps/v1");
        assert_eq!(d["kind"], "Deployment");
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(d["metadata"]["resourceVersion"], s.current_rv().to_string());
        assert_eq!(d["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(
            d["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        let err = s
            .create(&kinds::deployments(), deployment("web", 2))
            .unwrap_err();
        assert_eq!(err.to_string(), "deployments.apps \"web\" already exists");
        assert_eq!(err.code(), 409);
    }

    #[tokio::test]
    async fn generate_name_and_required_namespace() {
        let s = store();
        let p = s
            .create(
                &kinds::pods(),
                json!({"metadata": {"generateName": "web-", "namespace": "default"}}),
            )
            .unwrap();
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        let err = s
            .create(&kinds::pods(), json!({"metadata": {"name": "x"}}))
            .unwrap_err();
        assert_eq!(err.reason(), "Invalid");
        let n = s
            .create(
                &kinds::nodes(),
                json!({"metadata": {"name": "n1", "namespace": "ignored"}}),
            )
            .unwrap();
        assert!(n["metadata"].get("namespace").is_none());
        assert!(s.get(&kinds::nodes(), None, "n1").is_some());
    }

    #[tokio::test]
    async fn update_with_stale_resource_version_conflicts() {
        let s = store();
        let rt = kinds::deployments();
        let d = s.create(&rt, deployment("web", 2)).unwrap();
        let mut first = d.clone();
        first["spec"]["replicas"] = json!(3);
        s.update(&rt, first).unwrap();
        let mut stale = d;
        stale["spec"]["replicas"] = json!(4);
        let err = s.update(&rt, stale).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(err.reason(), "Conflict");
    }

    #[tokio::test]
    async fn generation_bumps_only_on_spec_change_and_status_is_kept() {
        let s = store();
        let rt = kinds::deployments();
        s.create(&rt, deployment("web", 2)).unwrap();
        let mut with_status = s.get(&rt, Some("default"), "web").unwrap();
        with_status["status"] = json!({"replicas": 2});
        let st = s.update_status(&rt, with_status).unwrap();
        assert_eq!(st["metadata"]["generation"], 1);
        assert_eq!(st["status"]["replicas"], 2);

        let mut labels_only = st.clone();
        labels_only["metadata"]["labels"]["tier"] = json!("front");
        labels_only["status"] = json!({"replicas": 99});
        let u = s.update(&rt, labels_only).unwrap();
        assert_eq!(u["metadata"]["generation"], 1);
        assert_eq!(u["status"]["replicas"], 2, "update must not change status");

        let mut spec = u.clone();
        spec["spec"]["replicas"] = json!(5);
        let u2 = s.update(&rt, spec).unwrap();
        assert_eq!(u2["metadata"]["generation"], 2);

        let m = s
            .modify(&rt, Some("default"), "web", |o| {
                o["spec"]["replicas"] = json!(6);
                o["status"]["replicas"] = json!(6);
                Ok(())
            })
            .unwrap();
        assert_eq!(m["metadata"]["generation"], 3);
        assert_eq!(m["status"]["replicas"], 6);
    }

    #[tokio::test]
    async fn noop_modify_does_not_bump_resource_version() {
        let s = store();
        let rt = kinds::configmaps();
        s.create(
            &rt,
            json!({"metadata": {"name": "c", "namespace": "a"}, "data": {"k": "v"}}),
        )
        .unwrap();
        let rv = s.current_rv();
        let mut rx = s.subscribe();
        s.modify(&rt, Some("a"), "c", |o| {
            o["data"]["k"] = json!("v");
            Ok(())
        })
        .unwrap();
        assert_eq!(s.current_rv(), rv);
        assert!(rx.try_recv().is_err());
        let err = s.modify(&rt, Some("a"), "missing", |_| Ok(())).unwrap_err();
        assert_eq!(err.to_string(), "configmaps \"missing\" not found");
    }

    #[tokio::test]
    async fn events_since_filters_and_expires() {
        let s = store();
        let rt = kinds::pods();
        let start = s.current_rv();
        let mut rx = s.subscribe();
        s.create(&rt, json!({"metadata": {"name": "a", "namespace": "x"}}))
            .unwrap();
        s.create(&rt, json!({"metadata": {"name": "b", "namespace": "y"}}))
            .unwrap();
        s.create(
            &kinds::configmaps(),
            json!({"metadata": {"name": "c", "namespace": "x"}}),
        )
        .unwrap();
        s.delete(&rt, Some("x"), "a").unwrap();

        let all = s.events_since(&rt, None, start).unwrap();
        let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventKind::Added, EventKind::Added, EventKind::Deleted]
        );
        let in_x = s.events_since(&rt, Some("x"), start).unwrap();
        assert_eq!(in_x.len(), 2);
        let after_first = s.events_since(&rt, None, all[0].rv).unwrap();
        assert_eq!(after_first.len(), 2);
        assert_eq!(rx.try_recv().unwrap().rv, all[0].rv);

        s.compact();
        let err = s.events_since(&rt, None, start).unwrap_err();
        assert_eq!(err.code(), 410);
        assert!(
            s.events_since(&rt, None, s.current_rv())
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn history_is_bounded() {
        let s = store();
        let rt = kinds::configmaps();
        let start = s.current_rv();
        for i in 0..(HISTORY_LIMIT + 5) {
            s.create(
                &rt,
                json!({"metadata": {"name": format!("c{i}"), "namespace": "n"}}),
            )
            .unwrap();
        }
        assert!(matches!(
            s.events_since(&rt, None, start),
            Err(StoreError::Expired { .. })
        ));
        let recent = s.events_since(&rt, None, s.current_rv() - 3).unwrap();
        assert_eq!(recent.len(), 3);
    }

    #[tokio::test]
    async fn list_by_namespace_is_sorted() {
        let s = store();
        let rt = kinds::pods();
        for (ns, name) in [("b", "z"), ("a", "y"), ("b", "a"), ("ab", "q")] {
            s.create(&rt, json!({"metadata": {"name": name, "namespace": ns}}))
                .unwrap();
        }
        let (items, rv) = s.list(&rt, Some("b"));
        let names: Vec<_> = items
            .iter()
            .map(|o| o["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("a"), json!("z")]);
        assert_eq!(rv, s.current_rv());
        assert_eq!(s.list(&rt, None).0.len(), 4);
        assert_eq!(s.count(&rt), 4);
    }

    #[tokio::test]
    async fn list_page_filters_and_resumes() {
        let s = store();
        let rt = kinds::pods();
        for (ns, name) in [
            ("a", "p1"),
            ("a", "p2"),
            ("b", "p3"),
            ("b", "p4"),
            ("c", "p5"),
        ] {
            s.create(&rt, json!({"metadata": {"name": name, "namespace": ns}}))
                .unwrap();
        }
        let not_p2 = |o: &Value| o["metadata"]["name"] != "p2";
        let (page, remaining, _) = s.list_page(&rt, None, None, Some(2), not_p2);
        let names: Vec<_> = page.iter().map(|o| o["metadata"]["name"].clone()).collect();
        assert_eq!(names, vec![json!("p1"), json!("p3")]);
        assert_eq!(remaining, 2);
        let (page, remaining, _) = s.list_page(&rt, None, Some(("b", "p3")), Some(2), not_p2);
        assert_eq!(page.len(), 2);
        assert_eq!(remaining, 0);
        let (page, _, _) = s.list_page(&rt, Some("b"), None, None, |_| true);
        assert_eq!(page.len(), 2);
        let (page, _, _) = s.list_page(&rt, Some("b"), Some(("b", "p3")), None, |_| true);
        assert_eq!(page.len(), 1);
        let keys = s.keys_where(&rt, Some("a"), not_p2);
        assert_eq!(keys, vec![("a".to_string(), "p1".to_string())]);
    }

    #[tokio::test]
    async fn issue15_graceful_deletion_grace_periods_and_finalizers() {
        let s = store();
        let pods = kinds::pods();
        let bound = |name: &str| {
            json!({"metadata": {"name": name, "namespace": "a"},
                   "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}})
        };
        s.create(&pods, bound("p")).unwrap();
        let pending = s
            .delete_gracefully(&pods, Some("a"), "p", None, &[])
            .unwrap();
        assert!(!pending.is_removed());
        assert_eq!(
            pending.object()["metadata"]["deletionGracePeriodSeconds"],
            30
        );
        let first = pending.object()["metadata"]["deletionTimestamp"].clone();
        // Writes cannot clear the deletion; a second deletion only shortens it.
        s.modify(&pods, Some("a"), "p", |o| {
            o["metadata"]
                .as_object_mut()
                .map(|m| m.remove("deletionTimestamp"));
            o["metadata"]["labels"] = json!({"x": "y"});
            Ok(())
        })
        .unwrap();
        let kept = s.get(&pods, Some("a"), "p").unwrap();
        assert_eq!(kept["metadata"]["deletionTimestamp"], first);
        let longer = s
            .delete_gracefully(&pods, Some("a"), "p", Some(90), &[])
            .unwrap();
        assert_eq!(
            longer.object()["metadata"]["deletionGracePeriodSeconds"],
            30
        );
        // Grace 0 (the kubelet) removes it.
        assert!(
            s.delete_gracefully(&pods, Some("a"), "p", Some(0), &[])
                .unwrap()
                .is_removed()
        );
        assert!(s.get(&pods, Some("a"), "p").is_none());
        // An unbound pod goes at once.
        s.create(&pods, json!({"metadata": {"name": "u", "namespace": "a"}}))
            .unwrap();
        assert!(
            s.delete_gracefully(&pods, Some("a"), "u", None, &[])
                .unwrap()
                .is_removed()
        );
        // A finalizer holds any object until an update removes it.
        let cms = kinds::configmaps();
        s.create(
            &cms,
            json!({"metadata": {"name": "c", "namespace": "a", "finalizers": ["x/y"]}}),
        )
        .unwrap();
        let held = s
            .delete_gracefully(&cms, Some("a"), "c", None, &[])
            .unwrap();
        assert!(!held.is_removed());
        assert!(held.object()["metadata"]["deletionTimestamp"].is_string());
        let mut rx = s.subscribe();
        s.modify(&cms, Some("a"), "c", |o| {
            o["metadata"]["finalizers"] = json!([]);
            Ok(())
        })
        .unwrap();
        assert!(s.get(&cms, Some("a"), "c").is_none());
        assert_eq!(rx.try_recv().unwrap().kind, EventKind::Deleted);
    }

    #[tokio::test]
    async fn issue15_terminating_namespace_refuses_new_content_and_dry_run_create_conflicts() {
        let s = store();
        let ns = kinds::namespaces();
        s.create(&ns, json!({"metadata": {"name": "a"}})).unwrap();
        let cms = kinds::configmaps();
        s.create(&cms, json!({"metadata": {"name": "c", "namespace": "a"}}))
            .unwrap();
        let dup = s
            .preview_create(&cms, json!({"metadata": {"name": "c", "namespace": "a"}}))
            .unwrap_err();
        assert_eq!(dup.code(), 409);
        let preview = s
            .preview_create(&cms, json!({"metadata": {"name": "d", "namespace": "a"}}))
            .unwrap();
        assert_eq!(preview["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(s.get(&cms, Some("a"), "d").is_none());
        let terminating = s.delete_gracefully(&ns, None, "a", None, &[]).unwrap();
        assert_eq!(terminating.object()["status"]["phase"], "Terminating");
        let err = s
            .create(&cms, json!({"metadata": {"name": "e", "namespace": "a"}}))
            .unwrap_err();
        assert_eq!(err.code(), 403);
        assert_eq!(
            err.to_string(),
            "configmaps \"e\" is forbidden: unable to create new content in namespace a because it is being terminated"
        );
        s.modify(&ns, None, "a", |n| {
            n["spec"]["finalizers"] = json!([]);
            Ok(())
        })
        .unwrap();
        assert!(s.get(&ns, None, "a").is_none());
    }

    #[tokio::test]
    async fn register_adds_crd_types() {
        let s = store();
        let rt = ResourceType::new("example.com", "v1", "widgets", "Widget", true);
        assert!(s.find_type("example.com", "v1", "widgets").is_none());
        s.register(rt.clone());
        s.register(rt.clone());
        assert_eq!(
            s.find_type("example.com", "v1", "widgets"),
            Some(rt.clone())
        );
        assert_eq!(s.find_kind("example.com/v1", "Widget"), Some(rt.clone()));
        assert_eq!(s.resource_types().len(), kinds::builtin().len() + 1);
        s.unregister(&rt);
        assert!(s.find_type("example.com", "v1", "widgets").is_none());
    }
}
