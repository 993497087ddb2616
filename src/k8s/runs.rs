//! The `Run` custom resource (`runs.ripcord.dev`): the in-cluster mirror of a run journal.
//!
//! The local journal is the write-ahead log; the `Run` resource is a bounded summary so that
//! `kubectl get runs.ripcord.dev` (or a teammate's ripcord, or the daemon) sees what a run did:
//! its steps, the mutations with their inverses, and the outcome. Long lists are truncated with
//! a count of what was left out; details stay in the journal and the snapshot.
//!
//! Writing the mirror never blocks mitigation: callers journal a failure and carry on.

use crate::model::FIELD_MANAGER;
use crate::model::format::{Format, FormatVersion, UnsupportedFormat};
use kube::CustomResource;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most steps kept in `status.steps`.
pub const MAX_STEPS: usize = 50;
/// Most mutations kept per step.
pub const MAX_MUTATIONS_PER_STEP: usize = 20;
/// Longest string kept in a status field (longer ones are cut, marked with `…`).
pub const MAX_FIELD_CHARS: usize = 1024;

/// What a run was asked to do.
// Each `printcolumn(type_ = "string", …)` is a separate column, not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "ripcord.dev",
    version = "v1alpha1",
    kind = "Run",
    namespaced,
    status = "RunStatus",
    shortname = "rrun",
    category = "ripcord",
    doc = "A ripcord run: the in-cluster mirror of a run journal (steps, mutations with their inverses, outcome).",
    printcolumn(name = "Playbook", type_ = "string", json_path = ".spec.playbook"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Outcome", type_ = "string", json_path = ".status.outcome"),
    printcolumn(name = "Who", type_ = "string", json_path = ".spec.who"),
    printcolumn(name = "Incident", type_ = "string", json_path = ".spec.incident"),
    printcolumn(name = "Started", type_ = "date", json_path = ".status.startedAt")
)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    /// The playbook's name.
    pub playbook: String,
    /// The parameters (secret-looking values redacted), rendered as strings.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// What started the run (`cli`, `api`, `alertmanager`, `schedule`).
    pub trigger: String,
    /// Who started it.
    pub who: String,
    /// The incident id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

/// Where a run is, as its `Run` resource says (`status.phase`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunPhase {
    /// Started and not finished (or its process died).
    Running,
    /// Ended (see `outcome`).
    Finished,
    /// A value this build does not know (or none: a `Run` without a status), kept as read.
    Other(String),
}

impl RunPhase {
    /// The spelling in the resource.
    pub fn as_str(&self) -> &str {
        match self {
            RunPhase::Running => "Running",
            RunPhase::Finished => "Finished",
            RunPhase::Other(other) => other,
        }
    }
}

impl Default for RunPhase {
    fn default() -> RunPhase {
        RunPhase::Other(String::new())
    }
}

impl From<&str> for RunPhase {
    fn from(s: &str) -> RunPhase {
        match s {
            "Running" => RunPhase::Running,
            "Finished" => RunPhase::Finished,
            other => RunPhase::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for RunPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunPhase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RunPhase {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RunPhase, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(RunPhase::from(s.as_str()))
    }
}

/// What a run did so far.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// The status's format version: 2 today; absent means 1 (written before statuses carried
    /// one). A ripcord reads its own version and the previous one and refuses any other.
    #[serde(default)]
    pub format_version: FormatVersion,
    /// `Running`, `Finished`.
    // A string in the resource (the CRD's schema); a value this build does not know is kept.
    #[schemars(with = "String")]
    pub phase: RunPhase,
    /// The steps, in plan order (at most [`MAX_STEPS`]).
    #[serde(default)]
    pub steps: Vec<StepStatus>,
    /// Steps left out of `steps` because of the size bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_steps: u32,
    /// The outcome, once finished (`succeeded`, `failed`, `undone`, `stopped`, `refused`,
    /// `interrupted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 end time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Where the local journal lives (`host:path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// The daemon's seal over the run's identity (`v1:` + HMAC-SHA256 of namespace, name and
    /// spec, keyed with the daemon's run key; see docs/security.md). Written only through the
    /// status subresource; a daemon takes over only runs whose seal verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One step of a run.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The step's name.
    pub name: String,
    /// `Pending`, `Running`, `Verified`, `AlreadySatisfied`, `Failed`, `Skipped`.
    pub phase: String,
    /// The mutations applied (at most [`MAX_MUTATIONS_PER_STEP`]).
    #[serde(default)]
    pub mutations: Vec<MutationStatus>,
    /// Mutations left out because of the size bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_mutations: u32,
    /// The error, when the step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One applied mutation and how to revert it.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutationStatus {
    /// The mutation's id within the step.
    pub id: String,
    /// The object written (`deployment/shop/checkout`).
    pub target: String,
    /// The inverse as compact JSON (`{"type":"mergePatch","patch":…}`), cut to
    /// [`MAX_FIELD_CHARS`].
    pub inverse: String,
}

// === impl RunStatus ===

impl RunStatus {
    /// Enforces the size bounds: at most [`MAX_STEPS`] steps, [`MAX_MUTATIONS_PER_STEP`]
    /// mutations per step and [`MAX_FIELD_CHARS`] per free-text field, counting what was
    /// left out.
    pub fn bounded(mut self) -> RunStatus {
        if self.steps.len() > MAX_STEPS {
            self.omitted_steps += (self.steps.len() - MAX_STEPS) as u32;
            self.steps.truncate(MAX_STEPS);
        }
        for step in &mut self.steps {
            if step.mutations.len() > MAX_MUTATIONS_PER_STEP {
                step.omitted_mutations += (step.mutations.len() - MAX_MUTATIONS_PER_STEP) as u32;
                step.mutations.truncate(MAX_MUTATIONS_PER_STEP);
            }
            for m in &mut step.mutations {
                m.inverse = cut(&m.inverse);
            }
            step.error = step.error.as_deref().map(cut);
        }
        self.message = self.message.as_deref().map(cut);
        self
    }
}

impl RunStatus {
    /// The format version of this status when this build reads it; otherwise the error naming
    /// `resource` (`Run shop/r-…`) and the version.
    pub fn check_format(
        &self,
        resource: impl std::fmt::Display,
    ) -> Result<FormatVersion, UnsupportedFormat> {
        Format::RunStatus.check(self.format_version, resource)
    }

    /// [`RunStatus::check_format`] on a status as JSON, before deserializing it (a status of
    /// another version need not deserialize at all).
    pub fn check_format_json(
        status: &serde_json::Value,
        resource: impl std::fmt::Display,
    ) -> Result<FormatVersion, UnsupportedFormat> {
        Format::RunStatus.check_json(status, STATUS_FORMAT_FIELD, resource)
    }
}

/// The field of a `Run` status that carries its format version.
pub const STATUS_FORMAT_FIELD: &str = "formatVersion";

/// Cuts a string to [`MAX_FIELD_CHARS`] characters, marking the cut with `…`.
pub fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_FIELD_CHARS {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_FIELD_CHARS - 1).collect();
        out.push('…');
        out
    }
}

/// The daemon's key for sealing its `Run` resources.
///
/// Anyone allowed to `create runs.ripcord.dev` can write a `Run`'s spec, so a spec is not a
/// command: a new leader takes over only a `Run` whose status carries a seal it can verify —
/// an HMAC-SHA256, keyed with a secret only the daemon holds (its Secret), over the run's
/// namespace, name, playbook, parameters, trigger, who and incident. The status is written
/// through the status subresource, which the chart grants to the daemon alone; the key makes
/// a seal unforgeable even for someone who can write statuses, and binds it to this exact
/// run (a seal copied onto another spec or name does not verify).
pub struct RunSeal {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for RunSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("RunSeal").finish_non_exhaustive()
    }
}

/// Shortest accepted run key, in bytes.
pub const MIN_SEAL_KEY_BYTES: usize = 32;

/// What a seal check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealCheck {
    /// The seal verifies.
    Valid,
    /// No status or no seal (not written by a daemon holding the key).
    Missing,
    /// A seal that does not verify (forged, copied, or another key).
    Invalid,
}

impl SealCheck {
    /// A stable reason for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SealCheck::Valid => "valid",
            SealCheck::Missing => "unsealed",
            SealCheck::Invalid => "bad-seal",
        }
    }
}

/// Why the run key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RunSealError {
    /// The key file could not be read.
    #[error("cannot read the run key file {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key is too short.
    #[error("the run key in {path} is {len} bytes; at least {MIN_SEAL_KEY_BYTES} are needed")]
    TooShort {
        /// The file.
        path: std::path::PathBuf,
        /// Its length.
        len: usize,
    },
}

impl RunSealError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            RunSealError::Read { .. } => "run-key-read",
            RunSealError::TooShort { .. } => "run-key-short",
        }
    }
}

// === impl RunSeal ===

impl RunSeal {
    /// A seal keyed with `secret`.
    pub fn new(secret: &[u8]) -> RunSeal {
        RunSeal {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    /// The key from a file (surrounding whitespace ignored; at least
    /// [`MIN_SEAL_KEY_BYTES`]).
    pub fn from_file(path: &std::path::Path) -> Result<RunSeal, RunSealError> {
        let text = std::fs::read(path).map_err(|source| RunSealError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let key = text.trim_ascii();
        if key.len() < MIN_SEAL_KEY_BYTES {
            return Err(RunSealError::TooShort {
                path: path.to_path_buf(),
                len: key.len(),
            });
        }
        Ok(RunSeal::new(key))
    }

    fn message(namespace: &str, name: &str, spec: &RunSpec) -> Vec<u8> {
        // serde_json writes struct fields in order and BTreeMap keys sorted: canonical.
        serde_json::to_vec(&serde_json::json!({
            "v": 1,
            "namespace": namespace,
            "name": name,
            "spec": spec,
        }))
        .unwrap_or_default()
    }

    /// The seal of the run `namespace/name` with `spec`: `v1:` + hex HMAC-SHA256.
    pub fn seal(&self, namespace: &str, name: &str, spec: &RunSpec) -> String {
        let tag = ring::hmac::sign(&self.key, &RunSeal::message(namespace, name, spec));
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("v1:{hex}")
    }

    /// Checks the seal in `run`'s status against its namespace, name and spec (in constant
    /// time).
    pub fn check(&self, run: &Run) -> SealCheck {
        let Some(seal) = run.status.as_ref().and_then(|s| s.seal.as_deref()) else {
            return SealCheck::Missing;
        };
        let Some(tag) = seal.strip_prefix("v1:").and_then(decode_hex) else {
            return SealCheck::Invalid;
        };
        let namespace = run.metadata.namespace.as_deref().unwrap_or_default();
        let name = run.metadata.name.as_deref().unwrap_or_default();
        match ring::hmac::verify(
            &self.key,
            &RunSeal::message(namespace, name, &run.spec),
            &tag,
        ) {
            Ok(()) => SealCheck::Valid,
            Err(_) => SealCheck::Invalid,
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Why writing the mirror failed.
#[derive(Debug, thiserror::Error)]
pub enum RunMirrorError {
    /// The `runs.ripcord.dev` CRD is not installed (the API server answered 404).
    #[error(
        "the runs.ripcord.dev CRD is not installed (install it with `ripcord crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    /// Creating the `Run` failed.
    #[error("creating Run {namespace}/{name} failed")]
    Create {
        /// The namespace.
        namespace: String,
        /// The run id.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the `Run` status failed.
    #[error("updating the status of Run {namespace}/{name} failed")]
    PatchStatus {
        /// The namespace.
        namespace: String,
        /// The run id.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Installing the CRD failed.
    #[error("installing the runs.ripcord.dev CRD failed")]
    InstallCrd {
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A call did not answer within its timeout.
    #[error("{operation} Run {name} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The run id.
        name: String,
        /// The bound.
        after: Duration,
    },
    /// The CRD could not be rendered as YAML.
    #[error("cannot render the CRD as YAML: {message}")]
    Render {
        /// The serializer's message.
        message: String,
    },
}

impl RunMirrorError {
    /// A stable category for journal records and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            RunMirrorError::CrdMissing => "crd-missing",
            RunMirrorError::Create { .. } | RunMirrorError::PatchStatus { .. } => "api",
            RunMirrorError::InstallCrd { .. } => "install-crd",
            RunMirrorError::Timeout { .. } => "timeout",
            RunMirrorError::Render { .. } => "render",
        }
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Whether the cluster serves the `runs.ripcord.dev` CRD, learnt once and shared by every run
/// of an engine (issue 18): the first `Run` create answered 404, or a discovery probe said so.
/// While it is known to be absent, the mirror makes no request at all; the finding is
/// forgotten after [`RUN_CRD_RECHECK`] (a long-lived daemon notices a CRD installed later).
#[derive(Debug, Clone, Default)]
pub struct RunCrdPresence(std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>);

/// How long a "CRD absent" finding holds before the next run tries again.
pub const RUN_CRD_RECHECK: Duration = Duration::from_secs(600);

impl RunCrdPresence {
    /// Records that the CRD is not served (now).
    pub fn mark_absent(&self) {
        if let Ok(mut at) = self.0.lock() {
            *at = Some(std::time::Instant::now());
        }
    }

    /// True while a "not served" finding is fresh: skip the mirror.
    pub fn known_absent(&self) -> bool {
        self.0
            .lock()
            .map(|at| at.is_some_and(|t| t.elapsed() < RUN_CRD_RECHECK))
            .unwrap_or(false)
    }
}

/// Asks discovery whether the API server serves `runs` in `ripcord.dev/v1alpha1` (one GET of
/// the group version). An error answer from the server (404: the group is not served) is
/// `Ok(false)`; only a transport failure or a timeout is an error, so the call doubles as the
/// CLI's "is the cluster reachable" probe.
pub async fn crd_served(client: &kube::Client, timeout: Duration) -> Result<bool, RunProbeError> {
    let group_version = format!(
        "{}/{}",
        <Run as kube::Resource>::group(&()),
        <Run as kube::Resource>::version(&())
    );
    match tokio::time::timeout(timeout, client.list_api_group_resources(&group_version)).await {
        Err(_) => Err(RunProbeError::Timeout { after: timeout }),
        Ok(Ok(list)) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == <Run as kube::Resource>::plural(&()))),
        Ok(Err(kube::Error::Api(_))) => Ok(false),
        Ok(Err(source)) => Err(RunProbeError::Unreachable { source }),
    }
}

/// Why the discovery probe of [`crd_served`] got no answer from the API server.
#[derive(Debug, thiserror::Error)]
pub enum RunProbeError {
    /// The request did not reach the server (connection, TLS, auth plumbing).
    #[error("the API server could not be reached")]
    Unreachable {
        /// The transport error.
        #[source]
        source: kube::Error,
    },
    /// The server did not answer in time.
    #[error("the API server did not answer within {after:?}")]
    Timeout {
        /// The bound.
        after: Duration,
    },
}

/// Creates the `Run` (an existing one — a resumed run — is kept).
pub async fn create_run(
    client: &kube::Client,
    namespace: &str,
    run: &Run,
    timeout: Duration,
) -> Result<(), RunMirrorError> {
    let api: Api<Run> = Api::namespaced(client.clone(), namespace);
    let name = run.metadata.name.clone().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match tokio::time::timeout(timeout, api.create(&params, run)).await {
        Err(_) => Err(RunMirrorError::Timeout {
            operation: "create",
            name,
            after: timeout,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => Ok(()),
        Ok(Err(err)) if is_not_found(&err) => Err(RunMirrorError::CrdMissing),
        Ok(Err(source)) => Err(RunMirrorError::Create {
            namespace: namespace.to_string(),
            name,
            source,
        }),
    }
}

/// Replaces the `Run`'s status (bounded) through the status subresource.
pub async fn write_status(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: &RunStatus,
    timeout: Duration,
) -> Result<(), RunMirrorError> {
    let api: Api<Run> = Api::namespaced(client.clone(), namespace);
    let mut status = status.clone().bounded();
    status.format_version = Format::RunStatus.current();
    let patch = serde_json::json!({ "status": status });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match tokio::time::timeout(
        timeout,
        api.patch_status(name, &params, &Patch::Merge(&patch)),
    )
    .await
    {
        Err(_) => Err(RunMirrorError::Timeout {
            operation: "update status of",
            name: name.to_string(),
            after: timeout,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) if is_not_found(&err) => Err(RunMirrorError::CrdMissing),
        Ok(Err(source)) => Err(RunMirrorError::PatchStatus {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        }),
    }
}

/// Most `Run` resources asked for per list page.
pub const LIST_PAGE_SIZE: u32 = 500;

/// Why listing `Run` resources failed.
#[derive(Debug, thiserror::Error)]
pub enum RunListError {
    /// The `runs.ripcord.dev` CRD is not installed (the API server answered 404): the cluster
    /// holds no `Run` resources.
    #[error(
        "the runs.ripcord.dev CRD is not installed (install it with `ripcord crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    /// A list call failed.
    #[error("listing Run resources in {scope} failed")]
    List {
        /// `all namespaces` or `namespace NAME`.
        scope: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A list call did not answer within its timeout.
    #[error("listing Run resources in {scope} timed out after {after:?}")]
    Timeout {
        /// `all namespaces` or `namespace NAME`.
        scope: String,
        /// The bound (per page).
        after: Duration,
    },
}

impl RunListError {
    /// A stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            RunListError::CrdMissing => "crd-missing",
            RunListError::List { .. } => "api",
            RunListError::Timeout { .. } => "timeout",
        }
    }

    /// True when the API server could not be reached (transport failure or timeout), as
    /// opposed to an answer that refused the request.
    pub fn is_unreachable(&self) -> bool {
        match self {
            RunListError::Timeout { .. } => true,
            RunListError::List { source, .. } => {
                matches!(source, kube::Error::HyperError(_) | kube::Error::Service(_))
            }
            RunListError::CrdMissing => false,
        }
    }
}

/// Lists the `Run` resources of one namespace (`Some`) or of every namespace (`None`), page by
/// page ([`LIST_PAGE_SIZE`] per page), each call bounded by `timeout`.
pub async fn list_runs(
    client: &kube::Client,
    namespace: Option<&str>,
    timeout: Duration,
) -> Result<Vec<Run>, RunListError> {
    list_runs_paged(client, namespace, LIST_PAGE_SIZE, timeout).await
}

/// [`list_runs`] with a chosen page size (at least 1).
pub async fn list_runs_paged(
    client: &kube::Client,
    namespace: Option<&str>,
    page_size: u32,
    timeout: Duration,
) -> Result<Vec<Run>, RunListError> {
    let (api, scope): (Api<Run>, String) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            format!("namespace {ns}"),
        ),
        None => (Api::all(client.clone()), "all namespaces".to_string()),
    };
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(page_size.max(1));
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = match tokio::time::timeout(timeout, api.list(&params)).await {
            Err(_) => {
                return Err(RunListError::Timeout {
                    scope,
                    after: timeout,
                });
            }
            Ok(Ok(page)) => page,
            Ok(Err(err)) if is_not_found(&err) => return Err(RunListError::CrdMissing),
            Ok(Err(source)) => return Err(RunListError::List { scope, source }),
        };
        out.extend(page.items);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
            _ => break,
        }
    }
    Ok(out)
}

/// The CRD as YAML (what `ripcord crd` prints and the chart ships).
pub fn crd_yaml() -> Result<String, RunMirrorError> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&Run::crd()).map_err(|e| RunMirrorError::Render {
        message: e.to_string(),
    })
}

/// Installs (or replaces) the CRD through server-side apply — for the sim, `demo` and tests;
/// production clusters get it from the Helm chart.
pub async fn install_crd(client: &kube::Client, timeout: Duration) -> Result<(), RunMirrorError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Run::crd();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match tokio::time::timeout(timeout, api.create(&params, &crd)).await {
        Err(_) => Err(RunMirrorError::Timeout {
            operation: "install CRD for",
            name: "runs.ripcord.dev".into(),
            after: timeout,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => Ok(()),
        Ok(Err(source)) => Err(RunMirrorError::InstallCrd { source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_bounded_with_counts() {
        let step = StepStatus {
            name: "drain".into(),
            phase: "Verified".into(),
            mutations: (0..30)
                .map(|i| MutationStatus {
                    id: format!("m{i}"),
                    target: "node/a".into(),
                    inverse: "x".repeat(5000),
                })
                .collect(),
            omitted_mutations: 0,
            error: None,
        };
        let status = RunStatus {
            phase: "Running".into(),
            steps: vec![step; 60],
            ..RunStatus::default()
        }
        .bounded();
        assert_eq!(status.steps.len(), MAX_STEPS);
        assert_eq!(status.omitted_steps, 10);
        assert_eq!(status.steps[0].mutations.len(), MAX_MUTATIONS_PER_STEP);
        assert_eq!(status.steps[0].omitted_mutations, 10);
        assert_eq!(
            status.steps[0].mutations[0].inverse.chars().count(),
            MAX_FIELD_CHARS
        );
    }

    fn run(namespace: &str, name: &str, zone: &str) -> Run {
        let mut run = Run::new(
            name,
            RunSpec {
                playbook: "failout-zone".into(),
                params: [("zone".to_string(), zone.to_string())].into(),
                trigger: "api".into(),
                who: "api/oncall".into(),
                incident: None,
            },
        );
        run.metadata.namespace = Some(namespace.into());
        run
    }

    #[test]
    fn issue13_seal_binds_the_run_identity() {
        let key = RunSeal::new(&[7u8; 32]);
        let mut sealed = run("shop", "r-20261202-100000-abcd", "zone-a");
        sealed.status = Some(RunStatus {
            phase: "Running".into(),
            seal: Some(key.seal("shop", "r-20261202-100000-abcd", &sealed.spec)),
            ..RunStatus::default()
        });
        assert_eq!(key.check(&sealed), SealCheck::Valid);
        // No status, no seal.
        assert_eq!(
            key.check(&run("shop", "r-20261202-100000-abcd", "zone-a")),
            SealCheck::Missing
        );
        // The seal copied onto other parameters, another name or namespace.
        let mut other = sealed.clone();
        other.spec.params.insert("zone".into(), "zone-b".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
        let mut other = sealed.clone();
        other.metadata.name = Some("r-20261202-100000-ffff".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
        let mut other = sealed.clone();
        other.metadata.namespace = Some("kube-system".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
        // Another key.
        assert_eq!(RunSeal::new(&[8u8; 32]).check(&sealed), SealCheck::Invalid);
        // Garbage.
        let mut other = sealed.clone();
        other.status.as_mut().unwrap().seal = Some("v1:zz".into());
        assert_eq!(key.check(&other), SealCheck::Invalid);
    }

    #[test]
    fn issue14_the_phase_is_an_enum_that_keeps_unknown_values_as_read() {
        for (text, phase) in [
            ("Running", RunPhase::Running),
            ("Finished", RunPhase::Finished),
            ("Paused", RunPhase::Other("Paused".into())),
        ] {
            let status: RunStatus =
                serde_json::from_value(serde_json::json!({"phase": text})).unwrap();
            assert_eq!(status.phase, phase);
            assert_eq!(serde_json::to_value(&status).unwrap()["phase"], text);
        }
        // The CRD still declares a string.
        let crd = serde_json::to_value(<Run as kube::CustomResourceExt>::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"]["phase"];
        assert_eq!(schema["type"], "string", "{schema}");
    }

    #[test]
    fn issue14_status_format_version_absent_is_v1_newer_is_refused() {
        let old: RunStatus =
            serde_json::from_value(serde_json::json!({"phase": "Running"})).unwrap();
        assert_eq!(old.check_format("Run shop/r"), Ok(FormatVersion::V1));
        let newer: RunStatus =
            serde_json::from_value(serde_json::json!({"phase": "Running", "formatVersion": 3}))
                .unwrap();
        let err = newer.check_format("Run shop/r").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Run shop/r: Run status format version 3"),
            "{err}"
        );
        assert!(
            RunStatus::check_format_json(&serde_json::json!({"formatVersion": 3}), "x").is_err()
        );
        // The seal covers namespace, name and spec, not the status: adding the version to the
        // status changes no seal, old or new.
        let key = RunSeal::new(&[7u8; 32]);
        let mut sealed = run("shop", "r-20261202-100000-abcd", "zone-a");
        let seal = key.seal("shop", "r-20261202-100000-abcd", &sealed.spec);
        sealed.status = Some(RunStatus {
            seal: Some(seal),
            ..old
        });
        assert_eq!(key.check(&sealed), SealCheck::Valid);
        sealed.status.as_mut().unwrap().format_version = Format::RunStatus.current();
        assert_eq!(key.check(&sealed), SealCheck::Valid);
    }

    #[test]
    fn crd_has_group_kind_and_status_subresource() {
        let yaml = crd_yaml().unwrap();
        assert!(yaml.contains("name: runs.ripcord.dev"), "{yaml}");
        assert!(yaml.contains("status: {}"), "{yaml}");
        assert!(yaml.contains("v1alpha1"), "{yaml}");
        assert!(yaml.contains("formatVersion:"), "{yaml}");
    }

    #[test]
    fn committed_crd_is_up_to_date() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/ripcord/crds/runs.ripcord.dev.yaml"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = crd_yaml().unwrap();
        assert!(
            committed == generated,
            "{path} is stale; regenerate it with `cargo run -- crd > charts/ripcord/crds/runs.ripcord.dev.yaml`"
        );
    }
}
