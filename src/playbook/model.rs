//! The playbook model: `apiVersion: ripcord.dev/v1alpha1`, `kind: Playbook`.
//!
//! Every struct denies unknown fields and uses camelCase names in YAML. The types derive
//! `JsonSchema`; `ripcord schema` prints the schema generated from them.
//!
//! A step's `with` stays an untyped map here because it may hold `$(params.x)` references in
//! places where the action expects a number or a boolean; [`crate::plan`] substitutes the
//! parameters and only then deserializes it into the action's typed arguments
//! ([`crate::playbook::catalog::Action`]). Validation does the same with placeholder values, so
//! a shape error is reported before any run.

use super::duration::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only `apiVersion` this version of ripcord reads.
pub const API_VERSION: &str = "ripcord.dev/v1alpha1";
/// The only `kind`.
pub const KIND: &str = "Playbook";

/// A playbook document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "ripcord Playbook")]
pub struct Playbook {
    /// Always `ripcord.dev/v1alpha1`.
    #[schemars(extend("const" = API_VERSION))]
    pub api_version: String,
    /// Always `Playbook`.
    #[schemars(extend("const" = KIND))]
    pub kind: String,
    /// Name, description and labels.
    pub metadata: Metadata,
    /// What the playbook does.
    pub spec: Spec,
}

/// Identification of a playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The playbook's name (`rollback`, `failout-zone`). Lowercase letters, digits and `-`.
    pub name: String,
    /// One or two sentences for people choosing a playbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form labels (team, service, tier).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The body of a playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// Typed parameters, referenced as `$(params.NAME)`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamSpec>,
    /// The per-target lock key (templated), e.g. `deployment/$(params.namespace)/$(params.name)`.
    /// Two runs with the same key never execute at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Where notifications go.
    #[serde(default)]
    pub notify: Notify,
    /// What evidence to capture before the first mutation.
    #[serde(default)]
    pub snapshot: SnapshotSpec,
    /// Pre-checks and continuous stop conditions.
    #[serde(default)]
    pub guards: Guards,
    /// The steps, executed in order.
    pub steps: Vec<Step>,
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ParamType {
    /// Any text.
    String,
    /// A whole number (`-p replicas=3`); stays a JSON number after substitution.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A duration such as `30s`, `5m`, `1h30m`.
    Duration,
    /// One of `values`.
    Enum,
}

impl ParamType {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Duration => "duration",
            ParamType::Enum => "enum",
        }
    }
}

/// The declaration of one parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParamSpec {
    /// The parameter's type.
    #[serde(rename = "type")]
    pub param_type: ParamType,
    /// The allowed values of an `enum` parameter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// A run must give a value (and there is no default).
    #[serde(default)]
    pub required: bool,
    /// The value used when a run gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// What the parameter means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Notification channels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notify {
    /// Every channel receives the start, per-step and end messages.
    #[serde(default)]
    pub channels: Vec<NotifyChannel>,
}

/// The kind of a notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ChannelType {
    /// A Slack-compatible incoming webhook (`{"text": …}`).
    Slack,
    /// A generic webhook receiving the JSON event.
    Webhook,
}

/// One notification channel. A webhook URL is a secret: prefer `urlFromEnv`. Journals and
/// serialized plans record only the channel's name, type and `urlFromEnv`; an inline `url` is
/// never written out (it is skipped on serialization), so a resumed run needs `urlFromEnv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyChannel {
    /// The channel's name (shown in journals).
    pub name: String,
    /// `slack` or `webhook`.
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    /// The webhook URL, inline (discouraged: it is a secret).
    #[serde(default, skip_serializing)]
    pub url: Option<String>,
    /// The name of the environment variable holding the webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from_env: Option<String>,
}

/// What to capture before the first mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotSpec {
    /// Capture at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Lines of log tail per container.
    #[serde(default = "default_log_tail_lines")]
    pub log_tail_lines: u32,
    /// Also the logs of the previous container instance (after a restart/crash).
    #[serde(default = "default_true")]
    pub previous_logs: bool,
    /// Capture events of the involved objects and namespaces.
    #[serde(default = "default_true")]
    pub events: bool,
    /// Extra namespaces to capture besides the targets' own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Impact metrics to record before, during and after the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prometheus: Vec<NamedQuery>,
}

impl Default for SnapshotSpec {
    fn default() -> Self {
        SnapshotSpec {
            enabled: true,
            log_tail_lines: default_log_tail_lines(),
            previous_logs: true,
            events: true,
            namespaces: Vec::new(),
            prometheus: Vec::new(),
        }
    }
}

/// A named PromQL query (templated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedQuery {
    /// The metric's name in reports.
    pub name: String,
    /// The PromQL expression; must return one value (a scalar or one-element vector).
    pub query: String,
}

/// Guards around a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Guards {
    /// Conditions that must HOLD before the first mutation; otherwise the run is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_checks: Vec<PreCheck>,
    /// Conditions evaluated every `interval` during the run; when one HOLDS the run TRIPS
    /// (stops before its next mutation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_conditions: Vec<StopCondition>,
}

/// A condition that must hold before the run starts mutating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreCheck {
    /// The check's name.
    pub name: String,
    /// The condition that must hold.
    pub prometheus: PromCondition,
}

/// A condition that stops the run when it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopCondition {
    /// The condition's name.
    pub name: String,
    /// The condition that trips the run when it holds.
    pub prometheus: PromCondition,
    /// How often it is evaluated.
    #[serde(default = "default_stop_interval")]
    pub interval: Duration,
}

/// A comparison of a PromQL query's single value with a threshold: `query op threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromCondition {
    /// The PromQL expression (templated); must return one value.
    pub query: String,
    /// The comparison.
    pub op: CompareOp,
    /// The right-hand side.
    pub threshold: f64,
}

impl PromCondition {
    /// True when `value op threshold` holds. NaN never holds (except for `ne`).
    pub fn holds(&self, value: f64) -> bool {
        self.op.compare(value, self.threshold)
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CompareOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CompareOp {
    /// Applies the operator.
    pub fn compare(self, left: f64, right: f64) -> bool {
        match self {
            CompareOp::Lt => left < right,
            CompareOp::Le => left <= right,
            CompareOp::Gt => left > right,
            CompareOp::Ge => left >= right,
            CompareOp::Eq => left == right,
            CompareOp::Ne => left != right,
        }
    }

    /// The symbol (`<`, `>=`…), for messages.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
        }
    }
}

/// One step of a playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// Unique within the playbook; markers and journal records derive from it.
    pub name: String,
    /// The action, one of the catalog names (`deployment.rollback`, `zone.failout`…).
    pub action: String,
    /// The action's arguments (see the catalog); strings may hold `$(params.NAME)`.
    #[serde(default)]
    pub with: BTreeMap<String, serde_json::Value>,
    /// Upper bound for the whole step, retries included.
    #[serde(default = "default_step_timeout")]
    pub timeout: Duration,
    /// How transient failures are retried.
    #[serde(default)]
    pub retries: Retries,
    /// What the run does when the step finally fails.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The kubeconfig context to run this step against (multi-cluster colos); defaults to the
    /// run's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Retry policy for transient failures (429, 5xx, conflicts, call timeouts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    /// Total attempts (1 = no retry).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The first wait between attempts; doubled each time.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// The longest wait between attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl Retries {
    /// The wait before attempt `attempt + 1` (0-based `attempt` that just failed):
    /// `backoff * 2^attempt`, capped at `maxBackoff`.
    pub fn delay_after(&self, attempt: u32) -> std::time::Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.backoff
            .0
            .checked_mul(factor)
            .unwrap_or(self.max_backoff.0)
            .min(self.max_backoff.0)
    }
}

/// What happens when a step fails after its retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnFailure {
    /// Stop the run; leave the changes made so far in place (cleanup can revert them later).
    #[default]
    Abort,
    /// Record the failure and go on with the next step.
    Continue,
    /// Stop the run and revert the changes this run made, newest first.
    Undo,
}

impl OnFailure {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Abort => "abort",
            OnFailure::Continue => "continue",
            OnFailure::Undo => "undo",
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_log_tail_lines() -> u32 {
    200
}

fn default_stop_interval() -> Duration {
    Duration::from_secs(15)
}

fn default_step_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_attempts() -> u32 {
    3
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        let retries = Retries::default();
        assert_eq!(retries.delay_after(0), std::time::Duration::from_secs(1));
        assert_eq!(retries.delay_after(3), std::time::Duration::from_secs(8));
        assert_eq!(retries.delay_after(10), std::time::Duration::from_secs(30));
        assert_eq!(
            retries.delay_after(u32::MAX),
            std::time::Duration::from_secs(30)
        );
    }

    #[test]
    fn compare_ops() {
        assert!(CompareOp::Lt.compare(1.0, 2.0));
        assert!(!CompareOp::Gt.compare(1.0, 2.0));
        assert!(CompareOp::Ne.compare(f64::NAN, 1.0));
        assert!(!CompareOp::Eq.compare(f64::NAN, f64::NAN));
    }

    #[test]
    fn notify_url_is_never_serialized() {
        let channel = NotifyChannel {
            name: "oncall".into(),
            channel_type: ChannelType::Slack,
            url: Some("https://hooks.example/secret".into()),
            url_from_env: None,
        };
        let json = serde_json::to_string(&channel).unwrap_or_default();
        assert!(!json.contains("secret"), "{json}");
        assert!(json.contains("oncall"), "{json}");
    }
}
