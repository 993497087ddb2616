//! Scenarios: zones, nodes, workloads and release histories, loaded from YAML.
//!
//! A scenario describes the cluster the sim starts with: zones with node counts and
//! allocatable resources, namespaces, Deployments with their release history (a release may
//! be marked bad: its pods never become ready, or crash-loop), PodDisruptionBudgets,
//! DaemonSets, Services and HTTPRoutes, plus simulation settings (time factor, pod readiness
//! delay, API latency). [`Scenario::load_into`] turns it into API objects in a [`Store`]:
//! the ReplicaSets of earlier releases carry the revision numbers a real cluster would show,
//! and their pods are already scheduled, running and ready, so the cluster starts settled
//! (or, for a release marked `rollout: inProgress`, with that rollout just beginning).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::controllers::{deployment, pods, replicaset, scheduler, util};
use super::store::{Store, StoreError, kinds};

/// The most nodes a scenario may declare (the 1,000-node benchmark fits five times).
pub const MAX_SCENARIO_NODES: u64 = 5_000;
/// The most replicas a scenario's Deployments may declare in total.
pub const MAX_SCENARIO_REPLICAS: i64 = 100_000;
/// Template annotation that marks a release bad: `"true"` (pods never become ready) or
/// `"crashloop"` (containers crash-loop).
pub const BAD_RELEASE_ANNOTATION: &str = "sim.ripcord.dev/bad-release";
/// Service annotation restricting its endpoints to pods on nodes of one zone (sim-only).
pub const SERVICE_ZONE_ANNOTATION: &str = "sim.ripcord.dev/zone";
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

const DEMO_YAML: &str = include_str!("../../../tests/data/scenarios/demo.yaml");
const EMPTY_YAML: &str = include_str!("../../../tests/data/scenarios/empty.yaml");

/// Errors loading or applying a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("cannot read scenario file {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not describe a scenario.
    #[error("invalid scenario {source_name}: {message}")]
    Parse {
        /// File name or label of the text.
        source_name: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The scenario parsed but is inconsistent.
    #[error("invalid scenario {source_name}: {message}")]
    Invalid {
        /// File name or label of the text.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// Creating an object in the store failed.
    #[error("cannot create {kind} {name} from the scenario")]
    Create {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// The store's error.
        source: StoreError,
    },
    /// No node can hold a pod of the scenario.
    #[error("no node fits pod {pod} of the scenario")]
    Unschedulable {
        /// The pod's owner and index.
        pod: String,
    },
}

impl ScenarioError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ScenarioError::Read { .. } => "scenario_read",
            ScenarioError::Parse { .. } => "scenario_parse",
            ScenarioError::Invalid { .. } => "scenario_invalid",
            ScenarioError::Create { .. } => "scenario_create",
            ScenarioError::Unschedulable { .. } => "scenario_unschedulable",
        }
    }
}

// === the YAML model ===

/// A scenario file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioFile {
    /// A name for reports.
    #[serde(default)]
    pub name: String,
    /// Simulation settings.
    #[serde(default)]
    pub settings: SettingsSpec,
    /// Zones and their nodes.
    #[serde(default)]
    pub zones: Vec<ZoneSpec>,
    /// Namespaces to create (in addition to `default` and `kube-system`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Deployments with their release histories.
    #[serde(default)]
    pub deployments: Vec<DeploymentSpec>,
    /// PodDisruptionBudgets.
    #[serde(default)]
    pub pod_disruption_budgets: Vec<PdbSpec>,
    /// DaemonSets.
    #[serde(default)]
    pub daemon_sets: Vec<DaemonSetSpec>,
    /// Services.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Gateway API HTTPRoutes.
    #[serde(default)]
    pub http_routes: Vec<HttpRouteSpec>,
}

/// Simulation settings as written in YAML.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsSpec {
    /// Simulated seconds per real second.
    #[serde(default = "default_time_factor")]
    pub time_factor: f64,
    /// Simulated seconds from container start to Ready.
    #[serde(default = "default_ready_delay")]
    pub pod_ready_delay_seconds: f64,
    /// Simulated seconds from binding to container start.
    #[serde(default = "default_start_delay")]
    pub pod_start_delay_seconds: f64,
    /// Added latency per API request, real milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Fraction (0..1) of requests answered with each HTTP error code (429, 500, 409).
    #[serde(default)]
    pub error_rates: BTreeMap<u16, f64>,
    /// Region label of every node.
    #[serde(default = "default_region")]
    pub region: String,
    /// Default `terminationGracePeriodSeconds` of the scenario's workloads (simulated seconds,
    /// scaled by the time factor like every delay). Small by default so tests stay fast; a
    /// real cluster's default is 30.
    #[serde(default = "default_termination_grace")]
    pub termination_grace_period_seconds: i64,
}

fn default_termination_grace() -> i64 {
    2
}

fn default_time_factor() -> f64 {
    10.0
}
fn default_ready_delay() -> f64 {
    5.0
}
fn default_start_delay() -> f64 {
    1.0
}
fn default_region() -> String {
    "sim-region-1".to_string()
}

impl Default for SettingsSpec {
    fn default() -> Self {
        SettingsSpec {
            time_factor: default_time_factor(),
            pod_ready_delay_seconds: default_ready_delay(),
            pod_start_delay_seconds: default_start_delay(),
            latency_ms: 0,
            error_rates: BTreeMap::new(),
            region: default_region(),
            termination_grace_period_seconds: default_termination_grace(),
        }
    }
}

/// One zone.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneSpec {
    /// Zone name (`topology.kubernetes.io/zone`).
    pub name: String,
    /// Number of nodes, named `<zone>-node-<i>`.
    pub nodes: u32,
    /// Allocatable cpu per node.
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Allocatable memory per node.
    #[serde(default = "default_memory")]
    pub memory: String,
    /// Allocatable pod slots per node.
    #[serde(default = "default_max_pods")]
    pub max_pods: u32,
}

fn default_cpu() -> String {
    "8".to_string()
}
fn default_memory() -> String {
    "32Gi".to_string()
}
fn default_max_pods() -> u32 {
    110
}

/// How a bad release misbehaves.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum BadMode {
    /// Containers run but the readiness probe always fails.
    NotReady,
    /// Containers exit shortly after start; restartCount grows (CrashLoopBackOff).
    CrashLoop,
}

/// One release (pod template revision) of a Deployment.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseSpec {
    /// Container image.
    pub image: String,
    /// Marks every pod running this image bad.
    #[serde(default)]
    pub bad: Option<BadMode>,
    /// `kubernetes.io/change-cause` of the revision.
    #[serde(default)]
    pub change_cause: Option<String>,
    /// Extra pod-template annotations of this release.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Rollout state of the last release when the scenario starts.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RolloutState {
    /// The last release runs all replicas.
    #[default]
    Complete,
    /// The previous release runs all replicas; the Deployment already names the last one, so
    /// the rollout starts when the controllers do.
    InProgress,
}

/// A rolling-update or recreate strategy.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrategySpec {
    /// `RollingUpdate` (default) or `Recreate`.
    #[serde(rename = "type", default = "default_strategy")]
    pub kind: String,
    /// maxSurge (int or percent string).
    #[serde(default)]
    pub max_surge: Option<IntOrString>,
    /// maxUnavailable (int or percent string).
    #[serde(default)]
    pub max_unavailable: Option<IntOrString>,
}

fn default_strategy() -> String {
    "RollingUpdate".to_string()
}

/// An int or a string such as `"25%"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// A string (a percentage).
    Str(String),
}

impl IntOrString {
    fn to_value(&self) -> Value {
        match self {
            IntOrString::Int(i) => json!(i),
            IntOrString::Str(s) => json!(s),
        }
    }
}

/// A Deployment and its release history.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// spec.replicas.
    pub replicas: i64,
    /// Pod labels (and the selector); default `app: <name>`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Container port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Container cpu request.
    #[serde(default = "default_cpu_request")]
    pub cpu_request: String,
    /// Container memory request.
    #[serde(default = "default_memory_request")]
    pub memory_request: String,
    /// Update strategy.
    #[serde(default)]
    pub strategy: Option<StrategySpec>,
    /// spec.minReadySeconds.
    #[serde(default)]
    pub min_ready_seconds: i64,
    /// The pods' `terminationGracePeriodSeconds` (simulated seconds a deleted or evicted pod
    /// stays Terminating); default: the settings' `terminationGracePeriodSeconds`.
    #[serde(default)]
    pub termination_grace_period_seconds: Option<i64>,
    /// spec.progressDeadlineSeconds (default 600).
    #[serde(default)]
    pub progress_deadline_seconds: Option<i64>,
    /// spec.revisionHistoryLimit (default 10).
    #[serde(default)]
    pub revision_history_limit: Option<i64>,
    /// Condition types of the pod template's `readinessGates` (e.g. `ripcord.dev/warmed`):
    /// new pods stay not Ready until each condition is `True`. Pods loaded with the scenario
    /// start with the conditions `True`.
    #[serde(default)]
    pub readiness_gates: Vec<String>,
    /// Releases, oldest first; the last is the Deployment's current template.
    pub releases: Vec<ReleaseSpec>,
    /// Whether the last release is still rolling out.
    #[serde(default)]
    pub rollout: RolloutState,
}

fn default_port() -> u16 {
    8080
}
fn default_cpu_request() -> String {
    "100m".to_string()
}
fn default_memory_request() -> String {
    "128Mi".to_string()
}

/// A PodDisruptionBudget (exactly one of minAvailable / maxUnavailable).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PdbSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// matchLabels of the selector.
    pub selector: BTreeMap<String, String>,
    /// minAvailable.
    #[serde(default)]
    pub min_available: Option<IntOrString>,
    /// maxUnavailable.
    #[serde(default)]
    pub max_unavailable: Option<IntOrString>,
}

/// A DaemonSet (one pod per node, tolerating cordoned nodes).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSetSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Pod labels; default `app: <name>`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The pods' `terminationGracePeriodSeconds`; default: the settings' value.
    #[serde(default)]
    pub termination_grace_period_seconds: Option<i64>,
}

/// A ClusterIP Service.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// spec.selector.
    pub selector: BTreeMap<String, String>,
    /// Service port.
    #[serde(default = "default_service_port")]
    pub port: u16,
    /// Target port.
    #[serde(default = "default_port")]
    pub target_port: u16,
    /// Restrict endpoints to pods in this zone (sim-only annotation).
    #[serde(default)]
    pub zone: Option<String>,
}

fn default_service_port() -> u16 {
    80
}

/// A Gateway API HTTPRoute with one rule of weighted backends.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Gateway the route attaches to.
    #[serde(default = "default_gateway")]
    pub gateway: String,
    /// Hostnames.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Weighted backends.
    pub backends: Vec<BackendSpec>,
}

fn default_gateway() -> String {
    "public".to_string()
}

/// One weighted backend of an HTTPRoute.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendSpec {
    /// Service name.
    pub service: String,
    /// Service port.
    #[serde(default = "default_service_port")]
    pub port: u16,
    /// Weight.
    #[serde(default = "default_weight")]
    pub weight: i64,
}

fn default_weight() -> i64 {
    1
}

// === settings ===

/// Settings the controllers and the server run with.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSettings {
    /// Simulated seconds per real second.
    pub time_factor: f64,
    /// Simulated time from container start to Ready.
    pub pod_ready_delay: Duration,
    /// Simulated time from binding to container start.
    pub pod_start_delay: Duration,
    /// Added latency per API request (real time).
    pub latency: Duration,
    /// Fraction of requests answered with each HTTP error code.
    pub error_rates: BTreeMap<u16, f64>,
    /// Images whose pods misbehave, from releases marked bad.
    pub bad_images: BTreeMap<String, BadMode>,
    /// Region label of nodes.
    pub region: String,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings::from_spec(&SettingsSpec::default())
    }
}

impl SimSettings {
    fn from_spec(s: &SettingsSpec) -> SimSettings {
        let secs = |f: f64| {
            if f.is_finite() && f > 0.0 {
                Duration::try_from_secs_f64(f).unwrap_or(Duration::MAX)
            } else {
                Duration::ZERO
            }
        };
        SimSettings {
            time_factor: if s.time_factor.is_finite() && s.time_factor > 0.0 {
                s.time_factor
            } else {
                1.0
            },
            pod_ready_delay: secs(s.pod_ready_delay_seconds),
            pod_start_delay: secs(s.pod_start_delay_seconds),
            latency: Duration::from_millis(s.latency_ms),
            error_rates: s.error_rates.clone(),
            bad_images: BTreeMap::new(),
            region: s.region.clone(),
        }
    }

    /// How a pod with this template annotation value and these images misbehaves, if at all.
    pub fn bad_mode(&self, annotation: Option<&str>, images: &[&str]) -> Option<BadMode> {
        match annotation {
            Some("true") => return Some(BadMode::NotReady),
            Some("crashloop") | Some("crashLoop") => return Some(BadMode::CrashLoop),
            _ => {}
        }
        images.iter().find_map(|i| self.bad_images.get(*i).copied())
    }
}

// === the scenario ===

/// A parsed, validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The file's contents.
    pub file: ScenarioFile,
    settings: SimSettings,
}

impl Scenario {
    /// Parses and validates YAML; `source_name` labels error messages.
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile =
            serde_saphyr::from_str(text).map_err(|e| ScenarioError::Parse {
                source_name: source_name.to_string(),
                message: e.to_string(),
            })?;
        Scenario::from_file(source_name, file)
    }

    /// Validates an already-built model.
    pub fn from_file(source_name: &str, file: ScenarioFile) -> Result<Scenario, ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            source_name: source_name.to_string(),
            message,
        };
        let mut settings = SimSettings::from_spec(&file.settings);
        let mut zones = BTreeSet::new();
        for z in &file.zones {
            if !zones.insert(z.name.as_str()) {
                return Err(invalid(format!("zone {} is listed twice", z.name)));
            }
            if util::parse_cpu_millis(&z.cpu).is_none()
                || util::parse_memory_bytes(&z.memory).is_none()
            {
                return Err(invalid(format!(
                    "zone {}: cpu or memory is not a quantity",
                    z.name
                )));
            }
        }
        // Bounds: a scenario is a test fixture, not a way to exhaust memory.
        let total_nodes: u64 = file.zones.iter().map(|z| u64::from(z.nodes)).sum();
        if total_nodes > MAX_SCENARIO_NODES {
            return Err(invalid(format!(
                "{total_nodes} nodes in all zones; a scenario may have at most {MAX_SCENARIO_NODES}"
            )));
        }
        let total_replicas: i64 = file
            .deployments
            .iter()
            .map(|d| d.replicas.max(0))
            .fold(0i64, i64::saturating_add);
        if total_replicas > MAX_SCENARIO_REPLICAS {
            return Err(invalid(format!(
                "{total_replicas} replicas in all deployments; a scenario may have at most \
                 {MAX_SCENARIO_REPLICAS}"
            )));
        }
        let mut namespaces: BTreeSet<&str> = file.namespaces.iter().map(String::as_str).collect();
        namespaces.extend(["default", "kube-system"]);
        let mut names = BTreeSet::new();
        for d in &file.deployments {
            if !namespaces.contains(d.namespace.as_str()) {
                return Err(invalid(format!(
                    "deployment {}/{}: namespace {} is not listed",
                    d.namespace, d.name, d.namespace
                )));
            }
            if !names.insert((d.namespace.as_str(), d.name.as_str())) {
                return Err(invalid(format!(
                    "deployment {}/{} is listed twice",
                    d.namespace, d.name
                )));
            }
            if d.releases.is_empty() {
                return Err(invalid(format!(
                    "deployment {}/{} has no releases",
                    d.namespace, d.name
                )));
            }
            if d.replicas < 0 {
                return Err(invalid(format!(
                    "deployment {}/{}: replicas < 0",
                    d.namespace, d.name
                )));
            }
            if d.rollout == RolloutState::InProgress && d.releases.len() < 2 {
                return Err(invalid(format!(
                    "deployment {}/{}: rollout inProgress needs at least two releases",
                    d.namespace, d.name
                )));
            }
            for r in &d.releases {
                if let Some(mode) = r.bad {
                    settings.bad_images.insert(r.image.clone(), mode);
                }
            }
        }
        for p in &file.pod_disruption_budgets {
            if p.min_available.is_some() == p.max_unavailable.is_some() {
                return Err(invalid(format!(
                    "pdb {}/{}: set exactly one of minAvailable and maxUnavailable",
                    p.namespace, p.name
                )));
            }
        }
        for (kind, ns) in file
            .pod_disruption_budgets
            .iter()
            .map(|p| ("pdb", &p.namespace))
            .chain(file.daemon_sets.iter().map(|d| ("daemonSet", &d.namespace)))
            .chain(file.services.iter().map(|s| ("service", &s.namespace)))
            .chain(file.http_routes.iter().map(|h| ("httpRoute", &h.namespace)))
        {
            if !namespaces.contains(ns.as_str()) {
                return Err(invalid(format!(
                    "{kind} in namespace {ns}, which is not listed"
                )));
            }
        }
        Ok(Scenario { file, settings })
    }

    /// Reads and parses a scenario file.
    pub fn load_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::from_yaml(&path.display().to_string(), &text)
    }

    /// The demo scenario (`tests/data/scenarios/demo.yaml`, embedded).
    pub fn demo() -> Scenario {
        Scenario::embedded("demo.yaml", DEMO_YAML)
    }

    /// One zone with one node and nothing else (`tests/data/scenarios/empty.yaml`).
    pub fn empty() -> Scenario {
        Scenario::embedded("empty.yaml", EMPTY_YAML)
    }

    fn embedded(name: &str, text: &str) -> Scenario {
        match Scenario::from_yaml(name, text) {
            Ok(s) => s,
            Err(error) => {
                // The embedded files are covered by unit tests; fall back to an empty model.
                tracing::error!(scenario = name, %error, "embedded scenario is invalid");
                Scenario {
                    file: ScenarioFile::default(),
                    settings: SimSettings::default(),
                }
            }
        }
    }

    /// The simulation settings.
    pub fn settings(&self) -> &SimSettings {
        &self.settings
    }

    /// Mutable settings (e.g. to raise the time factor in a test).
    pub fn settings_mut(&mut self) -> &mut SimSettings {
        &mut self.settings
    }

    /// Creates the scenario's objects in `store`. Objects that already exist (e.g. the
    /// `default` namespace) are left alone.
    pub fn load_into(&self, store: &Store) -> Result<(), ScenarioError> {
        let f = &self.file;
        let mut namespaces: Vec<&str> =
            vec!["default", "kube-system", "kube-public", "kube-node-lease"];
        namespaces.extend(f.namespaces.iter().map(String::as_str));
        for ns in namespaces {
            create(store, &kinds::namespaces(), namespace_object(ns))?;
        }
        let mut node_index = 0u32;
        let mut nodes = Vec::new();
        for zone in &f.zones {
            for i in 1..=zone.nodes {
                node_index += 1;
                let node = node_object(
                    zone,
                    i,
                    node_index,
                    &self.settings.region,
                    &store.clock().rfc3339(),
                );
                nodes.push(create(store, &kinds::nodes(), node)?);
            }
        }
        let mut infos: Vec<scheduler::NodeInfo> =
            nodes.iter().map(scheduler::NodeInfo::from_node).collect();
        let mut ips = pods::IpAllocator::default();
        for d in &f.deployments {
            self.load_deployment(store, d, &nodes, &mut infos, &mut ips)?;
        }
        for p in &f.pod_disruption_budgets {
            create(store, &kinds::pod_disruption_budgets(), pdb_object(p))?;
        }
        for ds in &f.daemon_sets {
            create(
                store,
                &kinds::daemonsets(),
                daemonset_object(ds, self.file.settings.termination_grace_period_seconds),
            )?;
        }
        for s in &f.services {
            create(store, &kinds::services(), service_object(s))?;
        }
        for h in &f.http_routes {
            create(store, &kinds::http_routes(), http_route_object(h))?;
        }
        Ok(())
    }

    fn load_deployment(
        &self,
        store: &Store,
        d: &DeploymentSpec,
        nodes: &[Value],
        infos: &mut [scheduler::NodeInfo],
        ips: &mut pods::IpAllocator,
    ) -> Result<(), ScenarioError> {
        let grace = d
            .termination_grace_period_seconds
            .unwrap_or(self.file.settings.termination_grace_period_seconds);
        let templates: Vec<Value> = d
            .releases
            .iter()
            .map(|r| pod_template(d, r, grace))
            .collect();
        let Some(current) = templates.last() else {
            return Ok(());
        };
        let mut deploy = deployment_object(d, current);
        let rolling = d.rollout == RolloutState::InProgress;
        // Releases that get a ReplicaSet now: all but the last while it is rolling out.
        let with_rs = if rolling {
            templates.len() - 1
        } else {
            templates.len()
        };
        if let Some(cause) = d.releases.last().and_then(|r| r.change_cause.as_deref()) {
            util::set_annotation(&mut deploy, CHANGE_CAUSE, cause);
        }
        util::set_annotation(&mut deploy, deployment::REVISION, &with_rs.to_string());
        let deploy = create(store, &kinds::deployments(), deploy)?;
        let full = with_rs.saturating_sub(1);
        for (i, template) in templates.iter().enumerate().take(with_rs) {
            let replicas = if i == full { d.replicas } else { 0 };
            let hash = util::pod_template_hash(template, None);
            let mut rs = deployment::replica_set_for(&deploy, template, &hash, replicas);
            util::set_annotation(&mut rs, deployment::REVISION, &(i + 1).to_string());
            // Each revision keeps the change-cause it was created with.
            util::remove_at(&mut rs, &["metadata", "annotations", CHANGE_CAUSE]);
            if let Some(cause) = d.releases[i].change_cause.as_deref() {
                util::set_annotation(&mut rs, CHANGE_CAUSE, cause);
            }
            let rs = create(store, &kinds::replicasets(), rs)?;
            let bad = self.settings.bad_mode(
                util::str_at(
                    template,
                    &["metadata", "annotations", BAD_RELEASE_ANNOTATION],
                ),
                &[d.releases[i].image.as_str()],
            );
            let mut same_owner: BTreeMap<String, i64> = BTreeMap::new();
            for n in 0..replicas {
                let mut pod = replicaset::pod_for(&rs);
                let req = scheduler::PodRequest::from_pod(&pod);
                let Some(idx) = scheduler::pick_node(infos, &req, &same_owner) else {
                    return Err(ScenarioError::Unschedulable {
                        pod: format!("{}/{} #{n}", d.namespace, d.name),
                    });
                };
                infos[idx].add_pod(req.cpu_millis, req.memory_bytes);
                *same_owner.entry(infos[idx].name.clone()).or_default() += 1;
                let node = &nodes[idx];
                let ip = ips.allocate(node);
                pods::settle(&mut pod, node, &ip, &store.clock().rfc3339(), bad);
                create(store, &kinds::pods(), pod)?;
            }
        }
        Ok(())
    }
}

fn create(
    store: &Store,
    rt: &super::store::ResourceType,
    obj: Value,
) -> Result<Value, ScenarioError> {
    let name = util::name(&obj).to_string();
    let ns = util::namespace(&obj).map(str::to_string);
    match store.create(rt, obj) {
        Ok(v) => Ok(v),
        Err(StoreError::AlreadyExists { .. }) => {
            Ok(store.get(rt, ns.as_deref(), &name).unwrap_or(Value::Null))
        }
        Err(source) => Err(ScenarioError::Create {
            kind: rt.kind.clone(),
            name,
            source,
        }),
    }
}

// === object builders ===

fn namespace_object(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

fn node_object(zone: &ZoneSpec, i: u32, index: u32, region: &str, now: &str) -> Value {
    let name = format!("{}-node-{i}", zone.name);
    let ip = format!("10.0.{}.{}", index / 250, index % 250 + 1);
    let alloc = json!({
        "cpu": zone.cpu, "memory": zone.memory, "pods": zone.max_pods.to_string(),
        "ephemeral-storage": "100Gi"
    });
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "sim.standard",
            scheduler::ZONE_LABEL: zone.name,
            "topology.kubernetes.io/region": region,
        }},
        "spec": {"podCIDR": format!("10.244.{index}.0/24"), "podCIDRs": [format!("10.244.{index}.0/24")],
                 "providerID": format!("sim://{name}")},
        "status": {
            "capacity": alloc.clone(),
            "allocatable": alloc,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{index:032x}"), "systemUUID": format!("{index:08x}-0000-4000-8000-000000000000"),
                "bootID": format!("{index:08x}-b007-4000-8000-000000000000"),
                "kernelVersion": "6.8.0-sim", "osImage": "Sim Linux 1.0",
                "containerRuntimeVersion": "containerd://2.0.0-sim",
                "kubeletVersion": "v1.34.0", "kubeProxyVersion": "v1.34.0",
                "operatingSystem": "linux", "architecture": "amd64"
            }
        }
    })
}

fn app_labels(labels: &BTreeMap<String, String>, name: &str) -> BTreeMap<String, String> {
    if labels.is_empty() {
        [("app".to_string(), name.to_string())]
            .into_iter()
            .collect()
    } else {
        labels.clone()
    }
}

fn pod_template(d: &DeploymentSpec, r: &ReleaseSpec, grace: i64) -> Value {
    let labels = app_labels(&d.labels, &d.name);
    let mut t = json!({
        "metadata": {"labels": labels},
        "spec": {
            "containers": [{
                "name": d.name,
                "image": r.image,
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": d.port, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": d.port, "scheme": "HTTP"},
                                   "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "resources": {"requests": {"cpu": d.cpu_request, "memory": d.memory_request}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": grace,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "securityContext": {}
        }
    });
    if !r.annotations.is_empty() {
        util::set_at(&mut t, &["metadata", "annotations"], json!(r.annotations));
    }
    if !d.readiness_gates.is_empty() {
        let gates: Vec<Value> = d
            .readiness_gates
            .iter()
            .map(|g| json!({"conditionType": g}))
            .collect();
        util::set_at(&mut t, &["spec", "readinessGates"], json!(gates));
    }
    t
}

fn deployment_object(d: &DeploymentSpec, template: &Value) -> Value {
    let labels = app_labels(&d.labels, &d.name);
    let strategy = match &d.strategy {
        Some(s) if s.kind == "Recreate" => json!({"type": "Recreate"}),
        Some(s) => json!({"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": s.max_surge.as_ref().map_or(json!("25%"), IntOrString::to_value),
            "maxUnavailable": s.max_unavailable.as_ref().map_or(json!("25%"), IntOrString::to_value),
        }}),
        None => {
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        }
    };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": d.name, "namespace": d.namespace, "labels": labels},
        "spec": {
            "replicas": d.replicas,
            "selector": {"matchLabels": labels},
            "template": template,
            "strategy": strategy,
            "minReadySeconds": d.min_ready_seconds,
            "revisionHistoryLimit": d.revision_history_limit.unwrap_or(10),
            "progressDeadlineSeconds": d.progress_deadline_seconds.unwrap_or(600),
        }
    })
}

fn pdb_object(p: &PdbSpec) -> Value {
    let mut spec = json!({"selector": {"matchLabels": p.selector}});
    if let Some(v) = &p.min_available {
        util::set_at(&mut spec, &["minAvailable"], v.to_value());
    }
    if let Some(v) = &p.max_unavailable {
        util::set_at(&mut spec, &["maxUnavailable"], v.to_value());
    }
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": p.name, "namespace": p.namespace},
        "spec": spec
    })
}

fn daemonset_object(ds: &DaemonSetSpec, default_grace: i64) -> Value {
    let labels = app_labels(&ds.labels, &ds.name);
    let grace = ds.termination_grace_period_seconds.unwrap_or(default_grace);
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": ds.name, "namespace": ds.namespace, "labels": labels,
                     "annotations": {"deprecated.daemonset.template.generation": "1"}},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": ds.name, "image": ds.image, "imagePullPolicy": "IfNotPresent",
                                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                                    "terminationMessagePath": "/dev/termination-log",
                                    "terminationMessagePolicy": "File"}],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": grace,
                    "dnsPolicy": "ClusterFirst",
                    "schedulerName": "default-scheduler",
                    "securityContext": {}
                }
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "revisionHistoryLimit": 10
        }
    })
}

fn service_object(s: &ServiceSpec) -> Value {
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {
            "type": "ClusterIP",
            "selector": s.selector,
            "ports": [{"name": "http", "port": s.port, "targetPort": s.target_port, "protocol": "TCP"}],
            "clusterIP": service_ip(&s.namespace, &s.name),
            "clusterIPs": [service_ip(&s.namespace, &s.name)],
            "sessionAffinity": "None",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster"
        },
        "status": {"loadBalancer": {}}
    });
    if let Some(zone) = &s.zone {
        util::set_annotation(&mut svc, SERVICE_ZONE_ANNOTATION, zone);
    }
    svc
}

/// A deterministic ClusterIP in 10.96.0.0/16 derived from the service's name.
fn service_ip(ns: &str, name: &str) -> String {
    let h = util::fnv32a(format!("{ns}/{name}").as_bytes());
    format!("10.96.{}.{}", (h >> 8) % 256, h % 254 + 1)
}

fn http_route_object(h: &HttpRouteSpec) -> Value {
    let backends: Vec<Value> = h
        .backends
        .iter()
        .map(|b| json!({"group": "", "kind": "Service", "name": b.service, "port": b.port, "weight": b.weight}))
        .collect();
    let mut spec = json!({
        "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": h.gateway}],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}]
    });
    if !h.hostnames.is_empty() {
        util::set_at(&mut spec, &["hostnames"], json!(h.hostnames));
    }
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": h.name, "namespace": h.namespace},
        "spec": spec
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_scenarios_parse() {
        for (name, text) in [
            ("demo.yaml", DEMO_YAML),
            ("empty.yaml", EMPTY_YAML),
            (
                "three-zones.yaml",
                include_str!("../../../tests/data/scenarios/three-zones.yaml"),
            ),
            (
                "restart-12.yaml",
                include_str!("../../../tests/data/scenarios/restart-12.yaml"),
            ),
        ] {
            let s = Scenario::from_yaml(name, text);
            assert!(s.is_ok(), "{name}: {s:?}");
        }
        let demo = Scenario::demo();
        assert_eq!(demo.file.zones.len(), 3);
        let checkout = &demo.file.deployments[0];
        assert_eq!(checkout.releases[0].image, "registry.local/checkout:1.4.2");
        assert_eq!(checkout.releases[1].bad, Some(BadMode::NotReady));
        assert_eq!(
            demo.settings()
                .bad_images
                .get("registry.local/checkout:1.5.0"),
            Some(&BadMode::NotReady)
        );
        let empty = Scenario::empty();
        assert_eq!(empty.file.zones.iter().map(|z| z.nodes).sum::<u32>(), 1);
        assert!(empty.file.deployments.is_empty());
    }

    #[test]
    fn unknown_fields_and_inconsistencies_are_rejected() {
        let err = Scenario::from_yaml("x", "zones: []\nbogus: 1\n");
        assert!(matches!(err, Err(ScenarioError::Parse { .. })), "{err:?}");
        let err = Scenario::from_yaml(
            "x",
            "deployments:\n- {namespace: nope, name: a, replicas: 1, releases: [{image: a:1}]}\n",
        );
        assert!(matches!(err, Err(ScenarioError::Invalid { .. })), "{err:?}");
        let err = Scenario::from_yaml(
            "x",
            "namespaces: [a]\npodDisruptionBudgets:\n- {namespace: a, name: p, selector: {app: a}}\n",
        );
        assert!(matches!(err, Err(ScenarioError::Invalid { .. })), "{err:?}");
    }

    #[test]
    fn issue8_oversized_scenarios_are_rejected_before_loading() {
        let err = Scenario::from_yaml("x", "zones:\n- {name: a, nodes: 4294967295}\n");
        assert!(matches!(err, Err(ScenarioError::Invalid { .. })), "{err:?}");
        let err = Scenario::from_yaml(
            "x",
            "namespaces: [a]\ndeployments:\n- {namespace: a, name: a, replicas: 9000000000000, releases: [{image: a:1}]}\n",
        );
        assert!(matches!(err, Err(ScenarioError::Invalid { .. })), "{err:?}");
        let nan = Scenario::from_yaml("x", "settings: {timeFactor: .nan}\n").expect("valid");
        assert!(nan.settings().time_factor.is_finite() && nan.settings().time_factor > 0.0);
    }

    #[test]
    fn settings_convert_units() {
        let s = Scenario::from_yaml(
            "x",
            "settings: {timeFactor: 20, podReadyDelaySeconds: 2.5, latencyMs: 7, errorRates: {429: 0.25}}\n",
        )
        .expect("valid");
        assert_eq!(s.settings().time_factor, 20.0);
        assert_eq!(s.settings().pod_ready_delay, Duration::from_millis(2500));
        assert_eq!(s.settings().latency, Duration::from_millis(7));
        assert_eq!(s.settings().error_rates.get(&429), Some(&0.25));
        assert_eq!(
            s.settings().bad_mode(Some("crashloop"), &[]),
            Some(BadMode::CrashLoop)
        );
        assert_eq!(s.settings().bad_mode(None, &["x:1"]), None);
    }
}
