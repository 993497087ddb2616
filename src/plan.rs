//! Planning: turning a valid playbook and its parameters into concrete, fully resolved steps.
//!
//! [`plan`] parses the raw `-p key=value` parameters by their declared types, fills in
//! defaults, substitutes every `$(params.NAME)` / `$(run.id)` reference (in step arguments,
//! the lock key, guard and snapshot queries, step contexts) and deserializes each step's
//! arguments into the typed [`Action`]. It never talks to a cluster. The [`Plan`] is what the
//! engine executes and what the journal stores (so `--resume` reloads it).

pub use crate::playbook::Duration;
pub use crate::playbook::catalog::Action;
pub use crate::playbook::model::{
    ChannelType, CompareOp, Guards, NamedQuery, NotifyChannel, OnFailure, PreCheck, PromCondition,
    Retries, SnapshotSpec, StopCondition,
};

use crate::model::format::{Format, UnsupportedFormat};
use crate::playbook::model::ParamSpec;
use crate::playbook::template::{self, RenderError, Resolver};
use crate::playbook::{ValidPlaybook, suggest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The field of a journaled plan that carries its format version.
pub const PLAN_FORMAT_FIELD: &str = "formatVersion";

/// Why a journaled plan does not load.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPlanError {
    /// Its format version is not one this build reads.
    #[error(transparent)]
    Version(#[from] UnsupportedFormat),
    /// It does not deserialize as a plan.
    #[error("{location}: the journaled plan does not load")]
    Invalid {
        /// The journal.
        location: String,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
}

/// A fully resolved run: what the engine executes, step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The run's id.
    pub run_id: String,
    /// The playbook's `metadata.name`.
    pub playbook: String,
    /// Every declared parameter with its typed value (`null`: optional and not given).
    pub params: BTreeMap<String, Value>,
    /// The resolved lock key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Notification channels (inline URLs are never serialized; see [`NotifyChannel`]).
    #[serde(default)]
    pub notify: Vec<NotifyChannel>,
    /// What to capture before the first mutation (queries resolved).
    pub snapshot: SnapshotSpec,
    /// Pre-checks and stop conditions (queries resolved).
    pub guards: Guards,
    /// The steps, in order.
    pub steps: Vec<PlannedStep>,
}

/// One resolved step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// The step's name (unique in the plan).
    pub name: String,
    /// The action with its typed, resolved arguments. Flattened: a step serializes as
    /// `{"name": …, "action": "deployment.rollback", "with": {…}, "timeout": …}`, like the
    /// playbook step it came from.
    #[serde(flatten)]
    pub action: Action,
    /// Upper bound for the whole step.
    pub timeout: Duration,
    /// Retry policy.
    pub retries: Retries,
    /// What happens when the step finally fails.
    pub on_failure: OnFailure,
    /// The kubeconfig context for this step (none: the run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Why a playbook could not be planned with the given parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// A `-p` key that the playbook does not declare.
    #[error("unknown parameter `{name}`{}", suggestion_suffix(.suggestion, .declared))]
    UnknownParam {
        /// The key given.
        name: String,
        /// The closest declared name.
        suggestion: Option<String>,
        /// Every declared name.
        declared: Vec<String>,
    },
    /// A required parameter without value.
    #[error("missing required parameter `{name}`{}: pass -p {name}=VALUE", describe(.description))]
    MissingParam {
        /// The parameter.
        name: String,
        /// Its description.
        description: Option<String>,
    },
    /// A value that does not parse as the parameter's type.
    #[error("parameter `{name}` ({param_type}): {reason}")]
    InvalidParam {
        /// The parameter.
        name: String,
        /// Its declared type.
        param_type: &'static str,
        /// What is wrong (includes the value).
        reason: String,
    },
    /// A templated string could not be rendered.
    #[error("{location}: {source}")]
    Template {
        /// Where (`lock`, `steps[rollback].with.name`, `guards.preChecks[0].query`).
        location: String,
        /// What is wrong.
        source: RenderError,
    },
    /// After substitution, a step's arguments do not fit its action.
    #[error("step `{step}` ({action}): {}{reason}", field_prefix(.field))]
    StepArgs {
        /// The step.
        step: String,
        /// The action.
        action: String,
        /// The offending argument, when known.
        field: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Several of the above.
    #[error("{}", join_errors(.errors))]
    Several {
        /// Every problem, in playbook order.
        errors: Vec<PlanError>,
    },
}

impl PlanError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            PlanError::UnknownParam { .. } => "unknown-param",
            PlanError::MissingParam { .. } => "missing-param",
            PlanError::InvalidParam { .. } => "invalid-param",
            PlanError::Template { .. } => "template",
            PlanError::StepArgs { .. } => "step-args",
            PlanError::Several { .. } => "several",
        }
    }

    /// The individual problems (one for every variant except `Several`).
    pub fn problems(&self) -> Vec<&PlanError> {
        match self {
            PlanError::Several { errors } => errors.iter().collect(),
            other => vec![other],
        }
    }

    fn from_many(mut errors: Vec<PlanError>) -> Option<PlanError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(PlanError::Several { errors }),
        }
    }
}

fn suggestion_suffix(suggestion: &Option<String>, declared: &[String]) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None if declared.is_empty() => " (the playbook declares no parameters)".to_string(),
        None => format!(" (declared: {})", declared.join(", ")),
    }
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

fn field_prefix(field: &Option<String>) -> String {
    field
        .as_deref()
        .map(|f| format!("argument `{f}`: "))
        .unwrap_or_default()
}

fn join_errors(errors: &[PlanError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

pub use crate::playbook::typing::{ArgsProblem, ParamError, build_action};

impl From<ParamError> for PlanError {
    fn from(err: ParamError) -> PlanError {
        PlanError::InvalidParam {
            name: err.name,
            param_type: err.param_type,
            reason: err.reason,
        }
    }
}

/// Parses one raw parameter value by its declared type (see [`crate::playbook::typing`]).
pub fn parse_param(name: &str, spec: &ParamSpec, raw: &str) -> Result<Value, PlanError> {
    Ok(crate::playbook::typing::parse_param(name, spec, raw)?)
}

/// Checks a declared default against the parameter's type (see [`crate::playbook::typing`]).
pub fn typed_default(name: &str, spec: &ParamSpec, default: &Value) -> Result<Value, PlanError> {
    Ok(crate::playbook::typing::typed_default(name, spec, default)?)
}

/// Resolves the parameters: parses given values, applies defaults, reports unknown keys and
/// missing required parameters (all of them).
pub fn resolve_params(
    declared: &BTreeMap<String, ParamSpec>,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Value>, PlanError> {
    let mut errors = Vec::new();
    let names: Vec<String> = declared.keys().cloned().collect();
    for key in given.keys() {
        if !declared.contains_key(key) {
            errors.push(PlanError::UnknownParam {
                name: key.clone(),
                suggestion: suggest::did_you_mean(key, names.iter().map(String::as_str))
                    .map(str::to_string),
                declared: names.clone(),
            });
        }
    }
    let mut values = BTreeMap::new();
    for (name, spec) in declared {
        let value = match (given.get(name), &spec.default) {
            (Some(raw), _) => parse_param(name, spec, raw),
            (None, Some(default)) => typed_default(name, spec, default),
            (None, None) if spec.required => Err(PlanError::MissingParam {
                name: name.clone(),
                description: spec.description.clone(),
            }),
            (None, None) => Ok(Value::Null),
        };
        match value {
            Ok(value) => {
                values.insert(name.clone(), value);
            }
            Err(err) => errors.push(err),
        }
    }
    match PlanError::from_many(errors) {
        Some(err) => Err(err),
        None => Ok(values),
    }
}

struct Values<'a> {
    params: &'a BTreeMap<String, Value>,
    run_id: &'a str,
}

impl Resolver for Values<'_> {
    fn param(&self, name: &str) -> Option<Value> {
        self.params.get(name).cloned()
    }

    fn run_id(&self) -> &str {
        self.run_id
    }
}

/// Builds the plan for a valid playbook, raw `-p key=value` parameters and a run id.
pub fn plan(
    playbook: &ValidPlaybook,
    params: &BTreeMap<String, String>,
    run_id: &str,
) -> Result<Plan, PlanError> {
    let spec = &playbook.playbook().spec;
    let values = resolve_params(&spec.params, params)?;
    let resolver = Values {
        params: &values,
        run_id,
    };
    let mut errors = Vec::new();
    let mut text = |location: String, input: &str| match template::render_text(input, &resolver) {
        Ok(out) => out,
        Err(source) => {
            errors.push(PlanError::Template { location, source });
            input.to_string()
        }
    };

    let lock = spec.lock.as_deref().map(|l| text("lock".to_string(), l));
    let mut snapshot = spec.snapshot.clone();
    for (i, ns) in snapshot.namespaces.iter_mut().enumerate() {
        *ns = text(format!("snapshot.namespaces[{i}]"), ns);
    }
    for (i, q) in snapshot.prometheus.iter_mut().enumerate() {
        q.query = text(format!("snapshot.prometheus[{i}].query"), &q.query);
    }
    let mut guards = spec.guards.clone();
    for (i, check) in guards.pre_checks.iter_mut().enumerate() {
        let location = format!("guards.preChecks[{i}].prometheus.query");
        check.prometheus.query = text(location, &check.prometheus.query);
    }
    for (i, stop) in guards.stop_conditions.iter_mut().enumerate() {
        let location = format!("guards.stopConditions[{i}].prometheus.query");
        stop.prometheus.query = text(location, &stop.prometheus.query);
    }
    let mut contexts = Vec::new();
    for step in &spec.steps {
        let location = format!("steps[{}].context", step.name);
        contexts.push(step.context.as_deref().map(|c| text(location, c)));
    }

    let mut steps = Vec::new();
    for (step, context) in spec.steps.iter().zip(contexts) {
        let with = Value::Object(step.with.clone().into_iter().collect());
        let with = match template::render_value(&with, &resolver) {
            Ok(with) => with,
            Err((path, source)) => {
                errors.push(PlanError::Template {
                    location: format!("steps[{}].with.{path}", step.name),
                    source,
                });
                continue;
            }
        };
        match build_action(&step.action, with) {
            Ok(action) => steps.push(PlannedStep {
                name: step.name.clone(),
                action,
                timeout: step.timeout,
                retries: step.retries.clone(),
                on_failure: step.on_failure,
                context,
            }),
            Err(problem) => errors.push(PlanError::StepArgs {
                step: step.name.clone(),
                action: step.action.clone(),
                field: problem.field,
                reason: problem.reason,
            }),
        }
    }
    if let Some(err) = PlanError::from_many(errors) {
        return Err(err);
    }
    tracing::debug!(run = %run_id, playbook = %playbook.name(), steps = steps.len(), "planned");
    Ok(Plan {
        run_id: run_id.to_string(),
        playbook: playbook.name().to_string(),
        params: values,
        lock,
        notify: spec.notify.channels.clone(),
        snapshot,
        guards,
        steps,
    })
}

// === redaction ===

/// The environment variable a resumed run reads a secret parameter from
/// (`RIPCORD_PARAM_API_TOKEN` for `apiToken` or `api-token`).
pub fn secret_env_var(name: &str) -> String {
    let mut out = String::from("RIPCORD_PARAM_");
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        });
    }
    out
}

/// `$(params.NAME)`: what a secret parameter's value is replaced by inside the journaled plan.
fn placeholder(name: &str) -> String {
    format!("$(params.{name})")
}

/// Header names whose values are credentials.
fn is_secret_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    crate::journal::record::is_secret_name(name)
        || lower.contains("cookie")
        || lower.contains("key")
        || lower.contains("signature")
}

fn walk_strings(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|v| walk_strings(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| walk_strings(v, f)),
        _ => {}
    }
}

fn redact_headers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "headers"
                    && let Value::Object(headers) = child
                {
                    for (name, v) in headers.iter_mut() {
                        if let Value::String(text) = v
                            && is_secret_header(name)
                            && !text.contains("$(params.")
                        {
                            *text = crate::journal::REDACTED.to_string();
                        }
                    }
                } else {
                    redact_headers(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_headers),
        _ => {}
    }
}

/// The secret parameters (names that look like secrets) with a value, longest value first.
fn secret_values(params: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| crate::journal::record::is_secret_name(name))
        .filter_map(|(name, value)| {
            let text = match value {
                Value::Null => return None,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (text.len() >= 3).then(|| (name.clone(), text))
        })
        .collect();
    out.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    out
}

/// Puts the values of secret parameters back into a journaled plan (see
/// [`Plan::redacted_json`]), looking each up with `lookup` (the caller, an environment
/// variable). Returns the names it found no value for; their placeholders stay.
pub fn restore_secrets(plan: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let names: Vec<String> = plan
        .get("params")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(k, v)| {
                    crate::journal::record::is_secret_name(k)
                        && v.as_str() == Some(crate::journal::REDACTED)
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut missing = Vec::new();
    for name in names {
        let Some(secret) = lookup(&name) else {
            missing.push(name);
            continue;
        };
        let mark = placeholder(&name);
        for key in ["steps", "notify", "guards", "snapshot", "lock"] {
            if let Some(part) = plan.get_mut(key) {
                walk_strings(part, &mut |s| {
                    if s.contains(&mark) {
                        *s = s.replace(&mark, &secret);
                    }
                });
            }
        }
        if let Some(params) = plan.get_mut("params").and_then(Value::as_object_mut) {
            params.insert(name, Value::String(secret));
        }
    }
    missing
}

// === impl Plan ===

impl Plan {
    /// The plan as it is written anywhere outside this process (the journal's `RunStarted`,
    /// hence `runs show`, the daemon API and reports): secret parameters (names that look like
    /// secrets: `token`, `password`, `apiKey`…) read `<redacted>` in `params`, and their values
    /// inside resolved arguments are replaced by `$(params.NAME)` — which a resumed run fills
    /// in again from the caller ([`restore_secrets`], `RIPCORD_PARAM_NAME`), never from the
    /// journal. Header values that look like credentials (`Authorization`, `Cookie`,
    /// `X-Api-Key`…) and credentials in URLs are redacted too.
    pub fn redacted_json(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        let secrets = secret_values(&self.params);
        if let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) {
            for (name, v) in params.iter_mut() {
                if crate::journal::record::is_secret_name(name) && !v.is_null() {
                    *v = Value::String(crate::journal::REDACTED.to_string());
                }
            }
        }
        for key in ["steps", "notify", "guards", "snapshot", "lock"] {
            let Some(part) = value.get_mut(key) else {
                continue;
            };
            walk_strings(part, &mut |s| {
                for (name, secret) in &secrets {
                    if s.contains(secret.as_str()) {
                        *s = s.replace(secret.as_str(), &placeholder(name));
                    }
                }
                if !s.contains("$(params.")
                    && let Some(clean) = crate::journal::redact_url_credentials(s)
                {
                    *s = clean;
                }
            });
            redact_headers(part);
        }
        if let Some(object) = value.as_object_mut() {
            object.insert(
                PLAN_FORMAT_FIELD.to_string(),
                serde_json::json!(Format::EmbeddedPlan.current()),
            );
        }
        value
    }

    /// The plan a journal embeds (`RunStarted.plan`, see [`Plan::redacted_json`]): its format
    /// version checked (absent: version 1), then loaded. `location` names the journal.
    pub fn from_embedded(
        value: Value,
        location: impl std::fmt::Display,
    ) -> Result<Plan, EmbeddedPlanError> {
        Format::EmbeddedPlan.check_json(&value, PLAN_FORMAT_FIELD, &location)?;
        serde_json::from_value(value).map_err(|source| EmbeddedPlanError::Invalid {
            location: location.to_string(),
            source,
        })
    }

    /// Secret parameters whose value this plan lacks (a journaled plan whose secrets were not
    /// given back on resume).
    pub fn missing_secrets(&self) -> Vec<String> {
        let text = serde_json::to_string(&self.steps).unwrap_or_default();
        self.params
            .iter()
            .filter(|(name, value)| {
                crate::journal::record::is_secret_name(name)
                    && (value.as_str() == Some(crate::journal::REDACTED)
                        || text.contains(&placeholder(name)))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// True when some step writes.
    pub fn has_mutations(&self) -> bool {
        self.steps.iter().any(|s| s.action.is_mutating())
    }

    /// The plan for people: parameters, lock, guards, then each step with its resolved
    /// arguments.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan for playbook `{}` (run {})",
            self.playbook, self.run_id
        );
        if !self.params.is_empty() {
            let _ = writeln!(out, "Parameters:");
            for (name, value) in &self.params {
                let shown = match value {
                    Value::Null => "(not set)".to_string(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(out, "  {name} = {shown}");
            }
        }
        if let Some(lock) = &self.lock {
            let _ = writeln!(out, "Lock: {lock}");
        }
        if !self.notify.is_empty() {
            let names: Vec<&str> = self.notify.iter().map(|c| c.name.as_str()).collect();
            let _ = writeln!(out, "Notify: {}", names.join(", "));
        }
        let _ = writeln!(
            out,
            "Snapshot: {}",
            if self.snapshot.enabled {
                "before the first mutation"
            } else {
                "disabled"
            }
        );
        for check in &self.guards.pre_checks {
            let c = &check.prometheus;
            let _ = writeln!(
                out,
                "Pre-check `{}`: {} {} {}",
                check.name,
                c.query,
                c.op.symbol(),
                c.threshold
            );
        }
        for stop in &self.guards.stop_conditions {
            let c = &stop.prometheus;
            let _ = writeln!(
                out,
                "Stop when `{}`: {} {} {} (every {})",
                stop.name,
                c.query,
                c.op.symbol(),
                c.threshold,
                stop.interval
            );
        }
        let _ = writeln!(out, "Steps:");
        for (i, step) in self.steps.iter().enumerate() {
            let mode = if step.action.is_mutating() {
                "mutating"
            } else {
                "read-only"
            };
            let _ = writeln!(
                out,
                "  {}. {} [{}] ({mode}; timeout {}, {} attempt{}, on failure {}{})",
                i + 1,
                step.name,
                step.action.name(),
                step.timeout,
                step.retries.attempts,
                if step.retries.attempts == 1 { "" } else { "s" },
                step.on_failure.as_str(),
                step.context
                    .as_deref()
                    .map(|c| format!(", context {c}"))
                    .unwrap_or_default()
            );
            let args = serde_json::to_value(&step.action)
                .ok()
                .and_then(|v| v.get("with").cloned())
                .unwrap_or(Value::Null);
            if let Value::Object(map) = args {
                for (key, value) in map {
                    let shown = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    let _ = writeln!(out, "       {key}: {shown}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYBOOK: &str = r#"
apiVersion: ripcord.dev/v1alpha1
kind: Playbook
metadata:
  name: secret-test
spec:
  params:
    apiToken: {type: string, required: true}
    target: {type: string, default: hooks.example}
  steps:
    - name: ping
      action: http.request
      with:
        method: POST
        url: https://$(params.target)/hook?t=$(params.apiToken)
        headers:
          Authorization: Bearer $(params.apiToken)
          X-Api-Key: literal-k3y-value
          Content-Type: application/json
    - name: mirror
      action: http.request
      with:
        url: https://bot:pa55w0rd@git.example/repo
"#;

    #[test]
    fn issue14_the_journaled_plan_carries_its_version_and_a_newer_one_is_refused() {
        let valid = crate::playbook::validate::validate("p.yaml", PLAYBOOK).expect("valid");
        let params = BTreeMap::from([("apiToken".to_string(), "tok-123456".to_string())]);
        let plan = plan(&valid, &params, "r-20261125-120000-abcd").expect("plan");
        let mut journaled = plan.redacted_json();
        assert_eq!(journaled[PLAN_FORMAT_FIELD], 2);
        let loaded = Plan::from_embedded(journaled.clone(), "j").expect("v2 loads");
        assert_eq!(
            loaded.steps,
            Plan::from_embedded(journaled.clone(), "j").unwrap().steps
        );
        // Version 1: no field.
        journaled.as_object_mut().unwrap().remove(PLAN_FORMAT_FIELD);
        let v1 = Plan::from_embedded(journaled.clone(), "j").expect("v1 loads");
        assert_eq!(v1.steps, loaded.steps);
        journaled[PLAN_FORMAT_FIELD] = 3.into();
        let err = Plan::from_embedded(journaled, "runs/r/journal.jsonl").unwrap_err();
        assert!(matches!(err, EmbeddedPlanError::Version(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("runs/r/journal.jsonl: journaled plan format version 3"),
            "{err}"
        );
    }

    #[test]
    fn issue13_the_journaled_plan_holds_no_secret_and_resume_gets_it_back() {
        let valid = crate::playbook::validate::validate("p.yaml", PLAYBOOK).expect("valid");
        let params = BTreeMap::from([("apiToken".to_string(), "tok-123456".to_string())]);
        let plan = plan(&valid, &params, "r-20261125-120000-abcd").expect("plan");
        let mut journaled = plan.redacted_json();
        let text = journaled.to_string();
        for leaked in ["tok-123456", "literal-k3y-value", "pa55w0rd"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert_eq!(journaled["params"]["apiToken"], "<redacted>");
        assert!(text.contains("application/json"), "{text}");
        assert!(text.contains("Bearer $(params.apiToken)"), "{text}");
        let unrestored: Plan = serde_json::from_value(journaled.clone()).expect("loads");
        assert_eq!(unrestored.missing_secrets(), vec!["apiToken".to_string()]);

        let missing = restore_secrets(&mut journaled, &|name| {
            (name == "apiToken").then(|| "tok-123456".to_string())
        });
        assert!(missing.is_empty());
        let resumed: Plan = serde_json::from_value(journaled).expect("loads");
        assert!(resumed.missing_secrets().is_empty());
        assert_eq!(
            resumed.steps[0],
            plan.steps[0].clone().with_header_redacted()
        );
        assert_eq!(secret_env_var("apiToken"), "RIPCORD_PARAM_API_TOKEN");
    }

    impl PlannedStep {
        /// The step as restored: literal credential headers stay redacted.
        fn with_header_redacted(mut self) -> PlannedStep {
            if let Action::HttpRequest(args) = &mut self.action {
                args.headers
                    .insert("X-Api-Key".into(), crate::journal::REDACTED.into());
            }
            self
        }
    }
}
