//! The action catalog: the closed, documented set of actions a playbook step may name, with
//! the typed shape of each action's `with` arguments.
//!
//! This is the interface between the language and the engine: a planned step carries an
//! [`Action`] whose variant selects the implementation in `crate::actions` and whose payload
//! holds the fully resolved arguments. Serialized, an action looks like the step it came from:
//! `{"action": "deployment.rollback", "with": {"name": "checkout"}}`.
//!
//! Every args struct denies unknown fields and uses camelCase names; optional fields default to
//! none, other defaults are documented on the field. A `namespace` left out means the run's
//! default namespace (`-n`, else the kubeconfig context's).
//!
//! | action | mutating | inverse recorded for cleanup |
//! |---|---|---|
//! | `deployment.rollback` | yes | not reverted (a roll-forward is offered, never automatic) |
//! | `deployment.waitRolledOut` | no | — |
//! | `deployment.scale` | yes | restore the previous replica count |
//! | `deployment.pause` / `deployment.resume` | yes | restore `spec.paused` |
//! | `deployment.restart` | yes | none (a restart stamp is not reverted; a released readiness gate neither) |
//! | `object.patch` | yes | merge patch restoring the touched fields |
//! | `wait`, `gate.prometheus`, `gate.approval`, `notify` | no | — |
//! | `node.cordon` / `node.uncordon` | yes | restore `spec.unschedulable` |
//! | `node.drain` | yes | uncordon (evictions themselves are not reverted) |
//! | `zone.failout` | yes | fail the zone back in (uncordon, restore traffic weights) |
//! | `zone.failback` | yes | cordon again and restore the weights |
//! | `traffic.setWeights` | yes | restore the previous weights |
//! | `http.request` | yes unless GET/HEAD/OPTIONS | none |

use super::duration::Duration;
use super::model::PromCondition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The label that carries a node's zone unless an action says otherwise.
pub const DEFAULT_ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// One action with its resolved arguments. The tag is the catalog name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", content = "with")]
pub enum Action {
    /// Roll a Deployment back to a previous revision (the previous one by default, a given
    /// `toRevision`, or — with `knownGood` — the newest revision that once became available).
    /// Idempotent: already on the target template → nothing to do.
    #[serde(rename = "deployment.rollback")]
    DeploymentRollback(DeploymentRollback),
    /// Wait until a Deployment's rollout is complete (bounded by the step timeout). Read-only.
    #[serde(rename = "deployment.waitRolledOut")]
    DeploymentWaitRolledOut(DeploymentRef),
    /// Set a Deployment's replica count (through the scale subresource).
    #[serde(rename = "deployment.scale")]
    DeploymentScale(DeploymentScale),
    /// Pause a Deployment's rollouts (`spec.paused: true`).
    #[serde(rename = "deployment.pause")]
    DeploymentPause(DeploymentRef),
    /// Resume a Deployment's rollouts (`spec.paused: false`).
    #[serde(rename = "deployment.resume")]
    DeploymentResume(DeploymentRef),
    /// Restart a Deployment's pods in batches, waiting for readiness, optionally calling a
    /// warm-up endpoint per pod and checking a health gate between batches.
    #[serde(rename = "deployment.restart")]
    DeploymentRestart(DeploymentRestart),
    /// Apply a JSON merge patch to any object.
    #[serde(rename = "object.patch")]
    ObjectPatch(ObjectPatch),
    /// Wait a fixed time.
    #[serde(rename = "wait")]
    Wait(Wait),
    /// Query Prometheus once; the step fails unless the condition holds.
    #[serde(rename = "gate.prometheus")]
    GatePrometheus(PromCondition),
    /// Block until one of the named approvers acknowledges (CLI or API).
    #[serde(rename = "gate.approval")]
    GateApproval(GateApproval),
    /// Send a message to the playbook's notification channels.
    #[serde(rename = "notify")]
    Notify(NotifyMessage),
    /// Cordon nodes (`spec.unschedulable: true`).
    #[serde(rename = "node.cordon")]
    NodeCordon(NodeSelection),
    /// Uncordon nodes (`spec.unschedulable: false`).
    #[serde(rename = "node.uncordon")]
    NodeUncordon(NodeSelection),
    /// Cordon nodes and evict their pods through the eviction API (respecting
    /// PodDisruptionBudgets).
    #[serde(rename = "node.drain")]
    NodeDrain(NodeDrain),
    /// Fail a zone out: shift its traffic away, cordon and drain its nodes, within the
    /// blast-radius budget; refuses to fail out the last healthy zone.
    #[serde(rename = "zone.failout")]
    ZoneFailout(ZoneFailout),
    /// Fail a zone back in: uncordon its nodes and ramp its traffic back up.
    #[serde(rename = "zone.failback")]
    ZoneFailback(ZoneFailback),
    /// Set the backend weights of a Gateway API HTTPRoute.
    #[serde(rename = "traffic.setWeights")]
    TrafficSetWeights(TrafficSetWeights),
    /// Make one HTTP request and check its status.
    #[serde(rename = "http.request")]
    HttpRequest(HttpRequest),
}

/// Every catalog name, in the order of [`Action`]'s variants.
const ALL_NAMES: &[&str] = &[
    "deployment.rollback",
    "deployment.waitRolledOut",
    "deployment.scale",
    "deployment.pause",
    "deployment.resume",
    "deployment.restart",
    "object.patch",
    "wait",
    "gate.prometheus",
    "gate.approval",
    "notify",
    "node.cordon",
    "node.uncordon",
    "node.drain",
    "zone.failout",
    "zone.failback",
    "traffic.setWeights",
    "http.request",
];

// === impl Action ===

impl Action {
    /// The catalog name (`deployment.rollback`).
    pub fn name(&self) -> &'static str {
        match self {
            Action::DeploymentRollback(_) => "deployment.rollback",
            Action::DeploymentWaitRolledOut(_) => "deployment.waitRolledOut",
            Action::DeploymentScale(_) => "deployment.scale",
            Action::DeploymentPause(_) => "deployment.pause",
            Action::DeploymentResume(_) => "deployment.resume",
            Action::DeploymentRestart(_) => "deployment.restart",
            Action::ObjectPatch(_) => "object.patch",
            Action::Wait(_) => "wait",
            Action::GatePrometheus(_) => "gate.prometheus",
            Action::GateApproval(_) => "gate.approval",
            Action::Notify(_) => "notify",
            Action::NodeCordon(_) => "node.cordon",
            Action::NodeUncordon(_) => "node.uncordon",
            Action::NodeDrain(_) => "node.drain",
            Action::ZoneFailout(_) => "zone.failout",
            Action::ZoneFailback(_) => "zone.failback",
            Action::TrafficSetWeights(_) => "traffic.setWeights",
            Action::HttpRequest(_) => "http.request",
        }
    }

    /// True when the action writes to a cluster or an external system (and so is journaled,
    /// preceded by the snapshot and the first notification, and skipped in dry-run).
    pub fn is_mutating(&self) -> bool {
        match self {
            Action::DeploymentRollback(_)
            | Action::DeploymentScale(_)
            | Action::DeploymentPause(_)
            | Action::DeploymentResume(_)
            | Action::DeploymentRestart(_)
            | Action::ObjectPatch(_)
            | Action::NodeCordon(_)
            | Action::NodeUncordon(_)
            | Action::NodeDrain(_)
            | Action::ZoneFailout(_)
            | Action::ZoneFailback(_)
            | Action::TrafficSetWeights(_) => true,
            Action::DeploymentWaitRolledOut(_)
            | Action::Wait(_)
            | Action::GatePrometheus(_)
            | Action::GateApproval(_)
            | Action::Notify(_) => false,
            Action::HttpRequest(request) => !matches!(
                request.method.to_ascii_uppercase().as_str(),
                "GET" | "HEAD" | "OPTIONS"
            ),
        }
    }

    /// Every catalog name.
    pub fn all_names() -> &'static [&'static str] {
        ALL_NAMES
    }

    /// True when `name` is in the catalog.
    pub fn is_known(name: &str) -> bool {
        ALL_NAMES.contains(&name)
    }

    /// Checks constraints serde cannot express (a node selection names at least one node or a
    /// selector, a batch percentage is well formed…). Returns one message per problem, each
    /// starting with the offending field's camelCase name.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            Action::DeploymentScale(scale) if scale.replicas < 0 => {
                problems.push(format!(
                    "replicas: must be 0 or more, got {}",
                    scale.replicas
                ));
            }
            Action::DeploymentRestart(restart) => {
                if let Err(problem) = restart.batch.validate() {
                    problems.push(format!("batch: {problem}"));
                }
            }
            Action::NodeCordon(selection) | Action::NodeUncordon(selection)
                if selection.names.is_empty() && selection.selector.is_none() =>
            {
                problems.push("names: give `names` or `selector` (or both)".to_string());
            }
            Action::NodeDrain(drain) => {
                if drain.names.is_empty() && drain.selector.is_none() {
                    problems.push("names: give `names` or `selector` (or both)".to_string());
                }
                if drain.max_concurrent == 0 {
                    problems.push("maxConcurrent: must be at least 1".to_string());
                }
            }
            Action::ZoneFailout(failout) => {
                if failout.max_percent.is_some_and(|p| p > 100) {
                    problems.push("maxPercent: must be between 0 and 100".to_string());
                }
                if failout.drain_concurrency == 0 {
                    problems.push("drainConcurrency: must be at least 1".to_string());
                }
            }
            Action::ZoneFailback(failback) => {
                if failback.ramp.iter().any(|p| *p > 100) {
                    problems.push("ramp: every step must be between 0 and 100".to_string());
                }
                if failback.ramp.windows(2).any(|w| w[0] > w[1]) {
                    problems.push("ramp: steps must not decrease".to_string());
                }
            }
            Action::GateApproval(approval) if approval.approvers.is_empty() => {
                problems.push("approvers: name at least one approver".to_string());
            }
            Action::HttpRequest(request) if request.method.trim().is_empty() => {
                problems.push("method: must not be empty".to_string());
            }
            _ => {}
        }
        problems
    }
}

/// A Deployment, by namespace and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentRef {
    /// The namespace (default: the run's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Deployment's name.
    pub name: String,
}

/// Arguments of `deployment.rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentRollback {
    /// The namespace (default: the run's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Deployment's name.
    pub name: String,
    /// The revision to return to (default: the previous one). `0` also means "the previous
    /// revision", so an integer parameter with default 0 can feed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<i64>,
    /// Roll back to the newest revision that once became fully available (default false).
    #[serde(default)]
    pub known_good: bool,
}

/// Arguments of `deployment.scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentScale {
    /// The namespace (default: the run's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Deployment's name.
    pub name: String,
    /// The desired replica count (0 or more).
    pub replicas: i32,
}

/// Arguments of `deployment.restart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentRestart {
    /// The namespace (default: the run's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Deployment's name.
    pub name: String,
    /// Pods per batch: a count (`2`) or a percentage of the replicas (`"25%"`).
    pub batch: BatchSize,
    /// Time to wait after a batch is ready before the next one (default `0s`).
    #[serde(default)]
    pub warmup: Duration,
    /// A request made to every new pod once it is ready (cache pre-warm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_request: Option<WarmupRequest>,
    /// A condition that must hold after each batch before the next one starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_gate: Option<PromCondition>,
    /// Whether new pods are kept out of their Services' endpoints until warmed, through the
    /// pod readiness gate `ripcord.dev/warmed` the Deployment's pod template declares
    /// (default `auto`).
    #[serde(default, skip_serializing_if = "ReadinessGateMode::is_auto")]
    pub readiness_gate: ReadinessGateMode,
}

/// How `deployment.restart` uses the pod readiness gate `ripcord.dev/warmed`.
///
/// The Deployment opts in by declaring the gate in its pod template
/// (`readinessGates: [{conditionType: ripcord.dev/warmed}]`); ripcord never adds it (that
/// would change the template, i.e. be a rollout). A pod carrying the gate is Ready — and in
/// its Services' endpoints — only once ripcord sets the pod condition `ripcord.dev/warmed` to
/// `True`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReadinessGateMode {
    /// Use the gate when the pod template declares it: each new pod is warmed while out of
    /// the endpoints, then released.
    #[default]
    Auto,
    /// Like `auto`, but refuse (before any write) when the pod template does not declare the
    /// gate.
    Require,
    /// Do not hold traffic back: a declared gate is released as soon as the pod's containers
    /// are ready (a gate nobody releases would leave the pods out of service), and the
    /// warm-up happens afterwards, as without a gate — live traffic may reach a cold pod.
    Off,
}

impl ReadinessGateMode {
    /// True for the default.
    pub fn is_auto(&self) -> bool {
        *self == ReadinessGateMode::Auto
    }
}

/// How many pods a restart batch takes. Reads a number (`2`), a string of digits (`"2"`, as
/// a string parameter gives it) or a percentage (`"25%"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum BatchSize {
    /// A fixed number of pods.
    Count(u32),
    /// A percentage of the replicas, written `"25%"`.
    Percent(#[schemars(regex(pattern = r"^[0-9]{1,3}%?$"))] String),
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        match Raw::deserialize(deserializer) {
            Ok(Raw::Count(n)) => Ok(BatchSize::Count(n)),
            Ok(Raw::Text(text)) => match text.trim().parse::<u32>() {
                Ok(n) => Ok(BatchSize::Count(n)),
                Err(_) => Ok(BatchSize::Percent(text)),
            },
            Err(_) => Err(serde::de::Error::custom(
                "expected a pod count (`2`) or a percentage (`\"25%\"`)",
            )),
        }
    }
}

impl BatchSize {
    /// The percentage of a `Percent` batch, when well formed (1 to 100).
    pub fn percent(&self) -> Option<u32> {
        match self {
            BatchSize::Count(_) => None,
            BatchSize::Percent(text) => text
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u32>().ok())
                .filter(|p| (1..=100).contains(p)),
        }
    }

    /// Checks the size: a count of at least 1, a percentage between 1% and 100%.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            BatchSize::Count(0) => Err("must be at least 1".to_string()),
            BatchSize::Count(_) => Ok(()),
            BatchSize::Percent(text) => match self.percent() {
                Some(_) => Ok(()),
                None => Err(format!(
                    "`{text}` is not a percentage between 1% and 100% (write e.g. \"25%\")"
                )),
            },
        }
    }

    /// The number of pods per batch for `total` replicas: at least 1, at most `total` (when
    /// `total` is positive). A percentage rounds up. A malformed percentage counts as 1 pod
    /// (the safest batch); validation rejects it before any run.
    pub fn resolve(&self, total: u32) -> u32 {
        let size = match self {
            BatchSize::Count(n) => *n,
            BatchSize::Percent(_) => match self.percent() {
                Some(p) => {
                    let scaled = u64::from(total) * u64::from(p);
                    u32::try_from(scaled.div_ceil(100)).unwrap_or(u32::MAX)
                }
                None => 1,
            },
        };
        size.min(total.max(1)).max(1)
    }
}

/// A warm-up request made to each restarted pod (directly or through the API server's pod
/// proxy, see [`WarmupVia`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupRequest {
    /// The container port.
    pub port: u16,
    /// The path, starting with `/`.
    pub path: String,
    /// The HTTP method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// The status that counts as warmed up (default 200).
    #[serde(default = "default_status")]
    pub expected_status: u16,
    /// Timeout per request (default `10s`).
    #[serde(default = "default_http_timeout")]
    pub timeout: Duration,
    /// How the request reaches the pod (default `auto`).
    #[serde(default, skip_serializing_if = "WarmupVia::is_auto")]
    pub via: WarmupVia,
}

/// How a warm-up request reaches a pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WarmupVia {
    /// The pod IP when a TCP connection to it opens within a second, else the API server's
    /// pod proxy (a laptop outside the pod network).
    #[default]
    Auto,
    /// Always the API server's pod proxy (`pods/NAME:PORT/proxy/PATH`; RBAC `pods/proxy`).
    Proxy,
    /// Always the pod IP (`http://<podIP>:<port><path>`).
    Direct,
}

impl WarmupVia {
    /// True for the default.
    pub fn is_auto(&self) -> bool {
        *self == WarmupVia::Auto
    }
}

/// Arguments of `object.patch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectPatch {
    /// `group/version` (`apps/v1`) or `v1`.
    pub api_version: String,
    /// The kind (`ConfigMap`).
    pub kind: String,
    /// The namespace, for namespaced kinds (default: the run's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// A JSON merge patch (RFC 7386).
    pub patch: serde_json::Value,
}

/// Arguments of `wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Wait {
    /// How long.
    pub duration: Duration,
}

/// Arguments of `gate.approval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateApproval {
    /// Who may acknowledge (at least one).
    pub approvers: Vec<String>,
    /// What the approver is asked (templated).
    pub message: String,
}

/// Arguments of `notify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyMessage {
    /// The text (templated).
    pub message: String,
    /// Fail the step when no channel received the message (none configured, or every
    /// delivery failed). Default: a failed delivery is reported, never fatal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// Nodes by name and/or label selector (at least one of the two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelection {
    /// Node names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A label selector (`topology.kubernetes.io/zone=zone-a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Arguments of `node.drain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeDrain {
    /// Node names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Evictions in flight at once (default 10).
    #[serde(default = "default_concurrency")]
    pub max_concurrent: u32,
    /// Leave DaemonSet pods alone (default true).
    #[serde(default = "default_true")]
    pub ignore_daemon_sets: bool,
    /// Evict pods that use emptyDir volumes, losing that data (default true).
    #[serde(default = "default_true")]
    pub delete_emptydir_data: bool,
}

/// Arguments of `zone.failout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneFailout {
    /// The zone (value of the zone label).
    pub zone: String,
    /// The node label that carries the zone (default `topology.kubernetes.io/zone`).
    #[serde(default = "default_zone_label")]
    pub zone_label: String,
    /// Refuse when more nodes than this would be out of service: the zone's plus those
    /// already cordoned or not Ready elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_nodes: Option<u32>,
    /// Refuse when more than this percentage of the cluster's nodes would be out of service:
    /// the zone's plus those already cordoned or not Ready elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_percent: Option<u32>,
    /// Proceed even beyond the blast-radius budget (never beyond the last healthy zone).
    #[serde(default)]
    pub override_blast_radius: bool,
    /// How the zone's traffic is shifted away before draining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficShift>,
    /// Nodes drained at once (default 10).
    #[serde(default = "default_concurrency")]
    pub drain_concurrency: u32,
}

/// Arguments of `zone.failback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneFailback {
    /// The zone (value of the zone label).
    pub zone: String,
    /// The node label that carries the zone (default `topology.kubernetes.io/zone`).
    #[serde(default = "default_zone_label")]
    pub zone_label: String,
    /// How the zone's traffic is shifted back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficShift>,
    /// Traffic percentages of the ramp, non-decreasing (default `[10, 25, 50, 100]`).
    #[serde(default = "default_ramp")]
    pub ramp: Vec<u32>,
    /// Pause between ramp steps (default `30s`).
    #[serde(default = "default_ramp_pause")]
    pub ramp_pause: Duration,
    /// A condition that must hold after each ramp step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_gate: Option<PromCondition>,
}

/// How a zone's traffic is moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficShift {
    /// Through the weight of one backend of a Gateway API HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<RouteBackend>,
    /// Through a webhook (URL) receiving `{"zone": …, "weight": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// The backendRef of an HTTPRoute that carries one zone's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteBackend {
    /// The route's namespace (default: the run's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The HTTPRoute's name.
    pub name: String,
    /// The backendRef's name.
    pub backend: String,
}

/// Arguments of `traffic.setWeights`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficSetWeights {
    /// The route's namespace (default: the run's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The HTTPRoute's name.
    pub name: String,
    /// backendRef name → weight. Backends not named keep their weight.
    pub weights: BTreeMap<String, u32>,
}

/// Arguments of `http.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRequest {
    /// The HTTP method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// The URL.
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The status that counts as success (default 200).
    #[serde(default = "default_status")]
    pub expected_status: u16,
    /// Timeout of the request (default `10s`).
    #[serde(default = "default_http_timeout")]
    pub timeout: Duration,
}

fn default_true() -> bool {
    true
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_status() -> u16 {
    200
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_concurrency() -> u32 {
    10
}

fn default_zone_label() -> String {
    DEFAULT_ZONE_LABEL.to_string()
}

fn default_ramp() -> Vec<u32> {
    vec![10, 25, 50, 100]
}

fn default_ramp_pause() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_name_round_trips_through_the_tag() {
        let samples = [
            json!({"action": "deployment.rollback", "with": {"name": "a"}}),
            json!({"action": "deployment.waitRolledOut", "with": {"name": "a"}}),
            json!({"action": "deployment.scale", "with": {"name": "a", "replicas": 2}}),
            json!({"action": "deployment.pause", "with": {"name": "a"}}),
            json!({"action": "deployment.resume", "with": {"name": "a"}}),
            json!({"action": "deployment.restart", "with": {"name": "a", "batch": "25%"}}),
            json!({"action": "object.patch", "with": {"apiVersion": "v1", "kind": "ConfigMap",
                   "name": "c", "patch": {"data": {"k": "v"}}}}),
            json!({"action": "wait", "with": {"duration": "5s"}}),
            json!({"action": "gate.prometheus", "with": {"query": "up", "op": "gt", "threshold": 0}}),
            json!({"action": "gate.approval", "with": {"approvers": ["ann"], "message": "ok?"}}),
            json!({"action": "notify", "with": {"message": "hi"}}),
            json!({"action": "node.cordon", "with": {"names": ["n1"]}}),
            json!({"action": "node.uncordon", "with": {"selector": "a=b"}}),
            json!({"action": "node.drain", "with": {"names": ["n1"]}}),
            json!({"action": "zone.failout", "with": {"zone": "z1"}}),
            json!({"action": "zone.failback", "with": {"zone": "z1"}}),
            json!({"action": "traffic.setWeights", "with": {"name": "r", "weights": {"a": 1}}}),
            json!({"action": "http.request", "with": {"url": "http://127.0.0.1/"}}),
        ];
        assert_eq!(samples.len(), Action::all_names().len());
        for (sample, expected) in samples.iter().zip(Action::all_names()) {
            let action: Action = match serde_json::from_value(sample.clone()) {
                Ok(action) => action,
                Err(err) => panic!("{expected}: {err}"),
            };
            assert_eq!(action.name(), *expected);
            assert!(
                action.check().is_empty(),
                "{expected}: {:?}",
                action.check()
            );
            let back = serde_json::to_value(&action).unwrap_or_default();
            assert_eq!(back["action"], json!(expected));
        }
    }

    #[test]
    fn defaults_are_applied() {
        let action: Result<Action, _> =
            serde_json::from_value(json!({"action": "zone.failback", "with": {"zone": "z1"}}));
        let Ok(Action::ZoneFailback(failback)) = action else {
            panic!("not a failback: {action:?}");
        };
        assert_eq!(failback.zone_label, DEFAULT_ZONE_LABEL);
        assert_eq!(failback.ramp, vec![10, 25, 50, 100]);
        assert_eq!(failback.ramp_pause, Duration::from_secs(30));
    }

    #[test]
    fn unknown_args_are_rejected() {
        let action: Result<Action, _> = serde_json::from_value(
            json!({"action": "deployment.rollback", "with": {"name": "a", "revison": 3}}),
        );
        assert!(action.is_err());
    }

    #[test]
    fn batch_size_resolves_within_bounds() {
        assert_eq!(BatchSize::Count(3).resolve(10), 3);
        assert_eq!(BatchSize::Count(30).resolve(10), 10);
        assert_eq!(BatchSize::Count(0).resolve(10), 1);
        assert_eq!(BatchSize::Percent("25%".into()).resolve(10), 3);
        assert_eq!(BatchSize::Percent("100%".into()).resolve(7), 7);
        assert_eq!(BatchSize::Percent("1%".into()).resolve(0), 1);
        assert_eq!(BatchSize::Percent("abc".into()).resolve(10), 1);
        assert!(BatchSize::Percent("0%".into()).validate().is_err());
        assert!(BatchSize::Percent("101%".into()).validate().is_err());
        let from_text: Result<BatchSize, _> = serde_json::from_value(serde_json::json!("2"));
        assert_eq!(from_text.ok(), Some(BatchSize::Count(2)));
    }

    #[test]
    fn mutating_flags() {
        let get: Result<Action, _> = serde_json::from_value(
            json!({"action": "http.request", "with": {"url": "http://127.0.0.1/"}}),
        );
        assert!(get.is_ok_and(|a| !a.is_mutating()));
        let post: Result<Action, _> = serde_json::from_value(
            json!({"action": "http.request", "with": {"url": "http://127.0.0.1/", "method": "POST"}}),
        );
        assert!(post.is_ok_and(|a| a.is_mutating()));
    }
}
