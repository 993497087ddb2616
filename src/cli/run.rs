//! `ripcord run FILE|builtin:NAME -p k=v... [--dry-run] [--yes] [--incident ID] [--resume RUN]`
//! and the pieces other run-like commands (`rollback`, `demo`) share: the configuration flags,
//! the Kubernetes client, confirmation, progress display and the final one-line summary.

use super::exit::with_exit;
use super::{Exit, GlobalArgs, Output};
use crate::engine::{
    self, Engine, EngineEvent, MutationPreview, RunOptions, RunOutcome, StepResult,
};
use crate::journal::{self, Outcome};
use crate::plan::{NotifyChannel, Plan};
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Flags for the configuration file and run attribution, shared by run-like commands.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The configuration file (default: ~/.config/ripcord/config.yaml).
    #[arg(long, env = "RIPCORD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Prometheus HTTP API base URL (overrides the configuration file).
    #[arg(long, env = "RIPCORD_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,

    /// Who the run is attributed to (default: the config's defaults.who, then the kubeconfig
    /// user, then $USER, then the OS user).
    #[arg(long, env = "RIPCORD_WHO", value_name = "NAME")]
    pub who: Option<String>,

    /// The namespace of the run's lock Lease (default: the target's namespace). Set it to the
    /// daemon's namespace to be kept apart from the daemon's runs on the same target.
    #[arg(long, env = "RIPCORD_LOCK_NAMESPACE", value_name = "NS")]
    pub lock_namespace: Option<String>,

    /// Wait up to DURATION (`30s`, `2m`) for a lock another run holds — it may be released,
    /// or expire when its holder died — instead of refusing at once.
    #[arg(long, value_name = "DURATION", value_parser = super::duration)]
    pub wait_lock: Option<Duration>,
}

/// `ripcord run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook: a file or `builtin:NAME` (omit with --resume).
    #[arg(value_name = "FILE|builtin:NAME", required_unless_present = "resume")]
    pub playbook: Option<String>,

    /// A parameter, `-p key=value` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    /// Show each step's diff and inverse; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// The incident this run belongs to.
    #[arg(long, value_name = "ID", value_parser = super::incident_id)]
    pub incident: Option<String>,

    /// Resume an interrupted run from its journal (skips what is verifiably done): its id, a
    /// unique prefix, or `last`.
    #[arg(long, value_name = "RUN", value_parser = super::run_id, conflicts_with_all = ["playbook", "params", "dry_run"])]
    pub resume: Option<String>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `ripcord run`.
pub async fn run(args: RunArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let settings = Settings::load(&args.config, &global)?;
    // `--resume` takes an id, a unique prefix or `last`: resolved once, here.
    let resume = match &args.resume {
        Some(name) => Some(super::runs::resolve_run_id(&settings.state_dir, name)?),
        None => None,
    };
    // Resuming a run that already succeeded is a no-op, not an error: say so and exit 0.
    if let Some(run_id) = &resume
        && let Some(at) = succeeded_at(&settings.state_dir, run_id)
    {
        let line = format!("run {run_id} already succeeded (finished {at}); nothing to resume");
        match global.output {
            Output::Json => outln!(
                "{}",
                serde_json::json!({
                    "runId": run_id,
                    "outcome": "succeeded",
                    "resumed": false,
                    "finishedAt": at.to_string(),
                    "message": line,
                })
            ),
            Output::Text => outln!("{line}"),
        }
        return Ok(Exit::Ok);
    }
    let plan = match &resume {
        Some(run_id) => {
            let plan = engine::load_plan(&settings.state_dir, run_id)
                .map_err(|e| with_exit(Exit::Usage, e))?;
            let missing = plan.missing_secrets();
            if !missing.is_empty() {
                let vars: Vec<String> = missing
                    .iter()
                    .map(|n| crate::plan::secret_env_var(n))
                    .collect();
                return Err(with_exit(
                    Exit::Usage,
                    anyhow::anyhow!(
                        "run {run_id} needs its secret parameter(s) {} again (they are never \
                         journaled): set {} and resume",
                        missing.join(", "),
                        vars.join(", ")
                    ),
                ));
            }
            plan
        }
        None => {
            let source = args.playbook.as_deref().unwrap_or_default();
            let params = parse_params(&args.params)?;
            plan_playbook(source, &params, &journal::new_run_id())?
        }
    };
    let plan = settings.with_config_channels(plan);
    let (client, runs_served) = connected_client_with_runs(&global).await?;
    let namespace = global
        .namespace
        .clone()
        .or_else(|| plan_namespace(&plan))
        .unwrap_or_else(|| client.default_namespace().to_string());
    ensure_incident(&settings, args.incident.as_deref(), args.dry_run)?;
    let mut opts = settings.run_options(&namespace);
    opts.incident = args.incident.clone();
    opts.resume = args.resume.is_some().then(|| plan.run_id.clone());
    let engine = Engine::new(client, settings.http.clone())
        .with_step_contexts(global.kubeconfig.clone())
        .with_run_crd_served(runs_served);

    if args.dry_run {
        opts.dry_run = true;
        let outcome = engine.run(plan, opts, None).await?;
        print_dry_run(&outcome, global.output)?;
        return Ok(outcome_exit(&outcome));
    }
    if !args.yes && args.resume.is_none() {
        let mut preview = opts.clone();
        preview.dry_run = true;
        let dry = engine.run(plan.clone(), preview, None).await?;
        print_dry_run(&dry, Output::Text)?;
        if dry.steps.iter().any(|s| !s.mutations.is_empty()) {
            confirm(&format!("Run playbook {} now?", plan.playbook))?;
        }
    }
    opts.handle_signals = true;
    let outcome = run_with_progress(&engine, plan, opts).await?;
    if let Some(line) = notification_summary(&outcome, &settings) {
        errln!("{line}");
    }
    print_outcome(
        &outcome,
        global.output,
        &outcome_line(&outcome, &plan_label(&outcome)),
    )?;
    Ok(outcome_exit(&outcome))
}

/// When the journal of `run_id` ends with a successful `RunFinished`: its time.
fn succeeded_at(state_dir: &std::path::Path, run_id: &str) -> Option<jiff::Timestamp> {
    journal::validate_run_id(run_id).ok()?;
    let (entries, _torn) = journal::read(&journal::journal_path(state_dir, run_id)).ok()?;
    let last = entries.iter().rev().find_map(|e| match &e.record {
        journal::Record::RunFinished { outcome, .. } => Some((*outcome, e.at)),
        _ => None,
    })?;
    (last.0 == Outcome::Succeeded).then_some(last.1)
}

/// A live plan (`ripcord plan FILE` without `--offline`): the engine's dry run against the
/// cluster — each step's diff and inverse, nothing written. For `src/cli/plan.rs` to call.
pub async fn live_plan(
    plan: Plan,
    global: &GlobalArgs,
    config: &ConfigArgs,
) -> anyhow::Result<Exit> {
    let settings = Settings::load(config, global)?;
    let client = connected_client(global).await?;
    let namespace = global
        .namespace
        .clone()
        .or_else(|| plan_namespace(&plan))
        .unwrap_or_else(|| client.default_namespace().to_string());
    let mut opts = settings.run_options(&namespace);
    opts.dry_run = true;
    let outcome = Engine::new(client, settings.http.clone())
        .with_step_contexts(global.kubeconfig.clone())
        .run(plan, opts, None)
        .await?;
    print_dry_run(&outcome, global.output)?;
    Ok(outcome_exit(&outcome))
}

/// Everything a run-like command needs from the configuration file and flags.
pub struct Settings {
    /// The state directory.
    pub state_dir: PathBuf,
    /// Who runs are attributed to.
    pub who: String,
    /// Prometheus base URL.
    pub prometheus_url: Option<String>,
    /// Notification channels from the configuration file.
    pub notify: Vec<NotifyChannel>,
    /// `notify.required` of the configuration file.
    pub notify_required: bool,
    /// The configuration file in use (for messages), if any.
    pub config_path: Option<PathBuf>,
    /// Per-call timeout.
    pub call_timeout: Duration,
    /// Outbound HTTP client.
    pub http: reqwest::Client,
    /// How long to wait for a lock another run holds (`--wait-lock`; zero: refuse at once).
    pub wait_lock: Duration,
    /// The namespace of lock Leases (`None`: the target's).
    pub lock_namespace: Option<String>,
}

impl Settings {
    /// Loads the configuration file and applies flag overrides.
    pub fn load(args: &ConfigArgs, global: &GlobalArgs) -> anyhow::Result<Settings> {
        let config =
            crate::config::load(args.config.as_deref()).map_err(|e| with_exit(Exit::Usage, e))?;
        // Configured channels join the plan's (see `with_config_channels`); one that cannot
        // be resolved is journaled by the engine as a failed delivery and shown once in the
        // run's notification summary — never fatal unless `notify.required`.
        let state_dir = match (&global.state_dir, &config.defaults.state_dir) {
            (None, Some(dir)) => dir.clone(),
            _ => global.state_dir(),
        };
        let who = args
            .who
            .clone()
            .filter(|w| !w.trim().is_empty())
            .or(config.defaults.who.clone())
            .unwrap_or_else(|| default_operator(global));
        let config_path = args
            .config
            .clone()
            .or_else(crate::config::default_path)
            .filter(|p| p.is_file());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Settings {
            state_dir,
            who,
            prometheus_url: args
                .prometheus_url
                .clone()
                .or(config.prometheus.map(|p| p.url)),
            notify: config.notify.channels.clone(),
            notify_required: config.notify.required,
            config_path,
            call_timeout: config
                .defaults
                .call_timeout
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(10)),
            http,
            wait_lock: args.wait_lock.unwrap_or(Duration::ZERO),
            lock_namespace: args.lock_namespace.clone(),
        })
    }

    /// The plan with the configured channels joined to its own (a configured channel
    /// replaces a plan channel of the same name, so a resumed plan does not get them twice).
    /// With `notify.required`, every `notify` step of the plan is required too.
    pub fn with_config_channels(&self, mut plan: Plan) -> Plan {
        for channel in &self.notify {
            plan.notify.retain(|c| c.name != channel.name);
            plan.notify.push(channel.clone());
        }
        if self.notify_required {
            for step in &mut plan.steps {
                if let crate::playbook::catalog::Action::Notify(message) = &mut step.action {
                    message.required = true;
                }
            }
        }
        plan
    }

    /// Where notification channels are configured, for "none configured" messages.
    pub fn config_hint(&self) -> String {
        match &self.config_path {
            Some(path) => format!("add notify.channels to {}", path.display()),
            None => {
                let path = crate::config::default_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the config file".into());
                format!("add notify.channels to {path} or pass --config FILE; see docs/cli.md")
            }
        }
    }

    /// Engine options for a CLI run in `namespace`.
    pub fn run_options(&self, namespace: &str) -> RunOptions {
        let mut opts = RunOptions::new(self.who.clone(), self.state_dir.clone());
        opts.prometheus_url = self.prometheus_url.clone();
        opts.namespace = Some(namespace.to_string());
        opts.lock_namespace = self.lock_namespace.clone();
        opts.call_timeout = self.call_timeout;
        opts.wait_lock = self.wait_lock;
        opts.notify_required = self.notify_required;
        opts
    }
}

/// `--incident ID` for an incident never opened: a run opens it (mitigation does not wait for
/// book-keeping; the incident is filled in later with `ripcord incident update`), a dry run
/// only says that the real run will. A malformed id is a usage error (exit 2).
pub fn ensure_incident(settings: &Settings, id: Option<&str>, dry_run: bool) -> anyhow::Result<()> {
    use crate::cleanup::{CleanupError, incident};
    let Some(id) = id else {
        return Ok(());
    };
    match incident::load(&settings.state_dir, id) {
        Ok(_) => Ok(()),
        Err(CleanupError::IncidentNotFound { .. }) if dry_run => {
            errln!("note: incident {id} is not open yet; the run will open it");
            Ok(())
        }
        Err(CleanupError::IncidentNotFound { .. }) => {
            incident::open(
                &settings.state_dir,
                id,
                &settings.who,
                incident::IncidentChanges::default(),
            )?;
            errln!(
                "opened incident {id} (it was not open); add details with `ripcord incident \
                 update {id} --severity S --service X --impact TEXT`"
            );
            Ok(())
        }
        Err(err @ CleanupError::InvalidIncidentId { .. }) => Err(with_exit(Exit::Usage, err)),
        Err(err) => Err(err.into()),
    }
}

/// Who a run is attributed to when neither `--who` nor the config says: the kubeconfig
/// context's user (what `kubectl` authenticates as), then `$USER`, then `$LOGNAME`, then the OS
/// user (`id -un`). Never `unknown` while any of them is known.
pub fn default_operator(global: &GlobalArgs) -> String {
    kubeconfig_user(global)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.trim().is_empty())
        .or_else(os_user)
        .unwrap_or_else(|| "unknown".to_string())
}

/// The user of the kubeconfig's selected context (`--context`, else `current-context`).
fn kubeconfig_user(global: &GlobalArgs) -> Option<String> {
    let kubeconfig = match &global.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path).ok()?,
        None => kube::config::Kubeconfig::read().ok()?,
    };
    let context = global
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())?;
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .user
        .clone()
        .filter(|u| !u.trim().is_empty())
}

/// The OS user name, from `id -un` (no libc call: the crate forbids unsafe code).
fn os_user() -> Option<String> {
    let out = std::process::Command::new("id").arg("-un").output().ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !name.is_empty()).then_some(name)
}

/// The run's notifications summed up from its journal, for the lines after the outcome:
/// `notifications: 3 sent, 1 failed (ops: HTTP 500)`, a warning when nobody was told, or a
/// plain statement that no channel is configured. `None` for a dry run or a run that wrote
/// nothing and sent nothing.
pub fn notification_summary(outcome: &RunOutcome, settings: &Settings) -> Option<String> {
    let path = outcome.journal.as_ref()?;
    let (entries, _) = journal::read(path).ok()?;
    let mut sent = 0usize;
    let mut failed: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut any = false;
    for entry in &entries {
        if let journal::Record::Notified { deliveries, .. } = &entry.record {
            any = true;
            for d in deliveries {
                if d.ok {
                    sent += 1;
                } else {
                    let slot = failed
                        .entry(d.channel.clone())
                        .or_insert_with(|| (0, d.error.clone().unwrap_or_default()));
                    slot.0 += 1;
                }
            }
        }
    }
    if !any {
        if outcome.mutations_applied == 0 {
            return None;
        }
        return Some(format!(
            "notifications: none configured, nobody was told ({})",
            settings.config_hint()
        ));
    }
    let failures: usize = failed.values().map(|(n, _)| n).sum();
    let detail = failed
        .iter()
        .map(|(channel, (n, error))| format!("{channel}: {n}× {error}"))
        .collect::<Vec<_>>()
        .join("; ");
    Some(if sent == 0 {
        format!("warning: nobody was notified: all {failures} deliveries failed ({detail})")
    } else if failures > 0 {
        format!("notifications: {sent} sent, {failures} failed ({detail})")
    } else {
        format!("notifications: {sent} sent")
    })
}

/// A one-command mitigation through a built-in playbook (`failout`, `failback`, `restart`).
#[derive(Debug, Clone)]
pub struct BuiltinRun {
    /// `builtin:NAME`.
    pub playbook: &'static str,
    /// The playbook's parameters.
    pub params: BTreeMap<String, String>,
    /// What is done, for the final line ("fail-out of zone zone-a").
    pub what: String,
    /// The confirmation question.
    pub question: String,
    /// `--yes`.
    pub yes: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--incident`.
    pub incident: Option<String>,
    /// Printed on stderr when the run is refused for a reason it applies to (how to override
    /// with this command's flags).
    pub refusal_hint: Option<RefusalHint>,
    /// Action arguments the playbook has no parameter for (an HTTPRoute to shift, a ramp, a
    /// warm-up request), merged into every step's `with` after planning; the journaled plan
    /// carries them, so a resumed run keeps them.
    pub extra_args: serde_json::Map<String, serde_json::Value>,
}

/// A hint for one kind of refusal: printed only when the refusal's reason contains `when`
/// (the blast-radius hint is noise under a last-healthy-zone refusal, which nothing overrides).
#[derive(Debug, Clone)]
pub struct RefusalHint {
    /// A phrase of the refusals the hint applies to.
    pub when: &'static str,
    /// What to do, in this command's flags.
    pub hint: String,
}

impl RefusalHint {
    /// The hint line for `reason`, if it applies.
    pub fn for_reason(&self, reason: &str) -> Option<String> {
        reason
            .contains(self.when)
            .then(|| format!("hint: {}", self.hint))
    }
}

/// Merges `extra` into the `with` of every step of `plan` (typed again, so a bad value is a
/// usage error naming the step).
pub fn merge_step_args(
    plan: &mut Plan,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    if extra.is_empty() {
        return Ok(());
    }
    for step in &mut plan.steps {
        let mut value = serde_json::to_value(&step.action)?;
        if let Some(with) = value.get_mut("with").and_then(|w| w.as_object_mut()) {
            for (k, v) in extra {
                with.insert(k.clone(), v.clone());
            }
        }
        step.action = serde_json::from_value(value).map_err(|e| {
            with_exit(
                Exit::Usage,
                anyhow::anyhow!("step {}: invalid arguments: {e}", step.name),
            )
        })?;
    }
    Ok(())
}

/// Runs a [`BuiltinRun`] like `rollback` does: the plan diff first (a dry run), a
/// confirmation unless `--yes` (no terminal: refused, exit 4), the run with progress, and one
/// final line.
pub async fn run_builtin(
    run: BuiltinRun,
    config: &ConfigArgs,
    global: &GlobalArgs,
) -> anyhow::Result<Exit> {
    let settings = Settings::load(config, global)?;
    let client = connected_client(global).await?;
    let mut plan = plan_playbook(run.playbook, &run.params, &journal::new_run_id())?;
    merge_step_args(&mut plan, &run.extra_args)?;
    let plan = settings.with_config_channels(plan);
    let namespace = global
        .namespace
        .clone()
        .or_else(|| plan_namespace(&plan))
        .unwrap_or_else(|| client.default_namespace().to_string());
    ensure_incident(&settings, run.incident.as_deref(), run.dry_run)?;
    let mut opts = settings.run_options(&namespace);
    opts.incident = run.incident.clone();
    let engine =
        Engine::new(client, settings.http.clone()).with_step_contexts(global.kubeconfig.clone());
    let what = &run.what;

    if run.dry_run || !run.yes {
        let mut preview = opts.clone();
        preview.dry_run = true;
        let dry = engine.run(plan.clone(), preview, None).await?;
        if run.dry_run {
            print_dry_run(&dry, global.output)?;
            return Ok(outcome_exit(&dry));
        }
        if let Some(failed) = dry.reason.as_deref() {
            let exit = match outcome_exit(&dry) {
                Exit::Ok => Exit::Failed,
                other => other,
            };
            if exit == Exit::Refused
                && let Some(hint) = run.refusal_hint.as_ref().and_then(|h| h.for_reason(failed))
            {
                errln!("{hint}");
            }
            return Err(with_exit(exit, anyhow::anyhow!("{what}: {failed}")));
        }
        let mutations: Vec<_> = dry.steps.iter().flat_map(|s| s.mutations.iter()).collect();
        if mutations.is_empty() {
            let summary = dry
                .steps
                .first()
                .map(|s| s.summary.clone())
                .unwrap_or_default();
            errln!("{what}: nothing to change ({summary})");
        } else {
            for step in &dry.steps {
                if !step.summary.is_empty() {
                    errln!(
                        "{}: {}",
                        step.name,
                        indent_continuation(&step.summary, "  ")
                    );
                }
                if !step.mutations.is_empty() {
                    errln!("  {} write(s) now:", step.mutations.len());
                }
                for m in &step.mutations {
                    errln!("{}", render_mutation(m, "    "));
                }
            }
            confirm(&run.question)?;
        }
    }

    opts.handle_signals = true;
    let outcome = run_with_progress(&engine, plan, opts).await?;
    // A lock's refusal carries its own way out (--wait-lock); the command's hint is about
    // its guards.
    if outcome.outcome == Outcome::Refused
        && let Some(hint) = run
            .refusal_hint
            .as_ref()
            .zip(outcome.reason.as_deref())
            .filter(|(_, reason)| !reason.contains("is locked by run"))
            .and_then(|(h, reason)| h.for_reason(reason))
    {
        errln!("{hint}");
    }
    if let Some(line) = notification_summary(&outcome, &settings) {
        errln!("{line}");
    }
    print_outcome(&outcome, global.output, &outcome_line(&outcome, what))?;
    Ok(outcome_exit(&outcome))
}

/// Parses `-p key=value` flags.
pub fn parse_params(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in raw {
        let Some((k, v)) = item.split_once('=') else {
            return Err(with_exit(
                Exit::Usage,
                anyhow::anyhow!("parameter {item:?} is not KEY=VALUE"),
            ));
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// Loads, validates and plans a playbook (`FILE` or `builtin:NAME`).
pub fn plan_playbook(
    source: &str,
    params: &BTreeMap<String, String>,
    run_id: &str,
) -> anyhow::Result<Plan> {
    let valid = if let Some(name) = source.strip_prefix("builtin:") {
        let Some((file, text)) = crate::playbook::builtin(name) else {
            return Err(with_exit(
                Exit::Usage,
                anyhow::anyhow!(
                    "no built-in playbook {name:?} (built-ins: {})",
                    crate::playbook::builtin_names().join(", ")
                ),
            ));
        };
        crate::playbook::parse_str(&format!("builtin:{file}"), text)
            .map_err(|d| with_exit(Exit::Usage, d))?
    } else {
        crate::playbook::load_file(std::path::Path::new(source))
            .map_err(|d| with_exit(Exit::Usage, d))?
    };
    crate::plan::plan(&valid, params, run_id).map_err(|e| with_exit(Exit::Usage, e))
}

/// The plan's `namespace` parameter, if it has a string one.
pub fn plan_namespace(plan: &Plan) -> Option<String> {
    plan.params
        .get("namespace")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A Kubernetes client from `--kubeconfig`/`--context` (else the inferred configuration).
pub async fn kube_client(global: &GlobalArgs) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &global.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .context("invalid kubeconfig")?
        }
        None if global.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("invalid kubeconfig")?,
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration found (use --kubeconfig)")?,
    };
    kube::Client::try_from(config).context("cannot build the Kubernetes client")
}

/// [`kube_client`], then one `GET /version` (bounded by 10 s) so that an unreachable cluster
/// ends the command before any journal is created, with exit code 3 and a hint — instead of
/// a run whose every step fails.
pub async fn connected_client(global: &GlobalArgs) -> anyhow::Result<kube::Client> {
    let client = kube_client(global).await?;
    let probe = tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await;
    let hint = "check --kubeconfig/--context (or KUBECONFIG) and that the API server is up";
    match probe {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(kube::Error::Api(_))) => Ok(client),
        Ok(Err(err)) => Err(with_exit(
            Exit::Unreachable,
            anyhow::Error::new(err).context(format!("cannot reach the cluster; {hint}")),
        )),
        Err(_) => Err(with_exit(
            Exit::Unreachable,
            anyhow::anyhow!("the cluster did not answer within 10s; {hint}"),
        )),
    }
}

/// As [`connected_client`], for commands that run the engine: the probe is the discovery
/// read of the `Run` CRD's group version instead of `/version`, so the same request tells
/// whether the cluster answers and whether the `Run` mirror can be written (`bool`: served).
/// The engine then makes no mirror request when it cannot be (issue 18).
pub async fn connected_client_with_runs(
    global: &GlobalArgs,
) -> anyhow::Result<(kube::Client, bool)> {
    let client = kube_client(global).await?;
    let hint = "check --kubeconfig/--context (or KUBECONFIG) and that the API server is up";
    match crate::k8s::runs::crd_served(&client, Duration::from_secs(10)).await {
        Ok(served) => Ok((client, served)),
        Err(err) => Err(with_exit(
            Exit::Unreachable,
            anyhow::Error::new(err).context(format!("cannot reach the cluster; {hint}")),
        )),
    }
}

/// Asks "QUESTION [y/N]" on the terminal. Without a terminal, refuses (exit 4): pass `--yes`.
pub fn confirm(question: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(with_exit(
            Exit::Refused,
            anyhow::anyhow!("not confirmed: no terminal to ask on; pass --yes to proceed"),
        ));
    }
    err!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(with_exit(
            Exit::Refused,
            anyhow::anyhow!("not confirmed; nothing was changed"),
        ))
    }
}

/// The exit code of an outcome.
pub fn exit_for(outcome: Outcome) -> Exit {
    match outcome {
        Outcome::Succeeded => Exit::Ok,
        Outcome::Failed | Outcome::Undone | Outcome::Stopped => Exit::Failed,
        Outcome::Refused => Exit::Refused,
        Outcome::Interrupted => Exit::Interrupted,
    }
}

/// The exit code of a run: [`exit_for`] its outcome, except that a run which failed before
/// writing anything because its input named nothing real (an unknown zone, a Deployment that is
/// not there: the `invalid` category) is a usage error, exit 2.
pub fn outcome_exit(outcome: &RunOutcome) -> Exit {
    let invalid_input = outcome.outcome == Outcome::Failed
        && outcome.mutations_applied == 0
        && outcome.steps.iter().any(
            |s| matches!(&s.result, StepResult::Failed { category, .. } if category == "invalid"),
        );
    if invalid_input {
        Exit::Usage
    } else {
        exit_for(outcome.outcome)
    }
}

/// Indents every line after the first by `indent` (multi-line step summaries).
pub fn indent_continuation(text: &str, indent: &str) -> String {
    text.replace('\n', &format!("\n{indent}"))
}

/// Runs the engine while drawing progress on stderr (spinners on a terminal, plain lines
/// otherwise).
pub async fn run_with_progress(
    engine: &Engine,
    plan: Plan,
    opts: RunOptions,
) -> anyhow::Result<RunOutcome> {
    let (tx, rx) = mpsc::channel(256);
    let display = tokio::spawn(show_progress(rx));
    let result = engine.run(plan, opts, Some(tx)).await;
    let _ = display.await;
    Ok(result?)
}

/// Whether progress shows every mutation (`-v`) or a summary: a 33-node fail-out is a bar
/// with counts and the current wave, not a thousand lines. Set once by [`super::run`].
static DETAIL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Chooses detailed progress (every mutation, its inverse and diff; each applied write).
pub fn set_detailed_progress(detailed: bool) {
    DETAIL.store(detailed, std::sync::atomic::Ordering::Relaxed);
}

fn detailed_progress() -> bool {
    DETAIL.load(std::sync::atomic::Ordering::Relaxed)
}

async fn show_progress(mut rx: mpsc::Receiver<EngineEvent>) {
    let fancy = std::io::stderr().is_terminal();
    let detail = detailed_progress();
    let mut bar: Option<ProgressBar> = None;
    let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let counted = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {prefix} [{bar:30}] {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let line = |bar: &Option<ProgressBar>, text: String| match bar {
        Some(b) => b.println(text),
        None => errln!("{text}"),
    };
    // Without a terminal and without -v: the last count printed per step (a line per tenth
    // of the total, not per pod), and the writes applied per step.
    let mut last_count: Option<(String, String, u64)> = None;
    let mut applied: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(event) = rx.recv().await {
        match event {
            EngineEvent::RunStarted {
                run_id,
                journal,
                resumed,
                ..
            } => {
                let verb = if resumed { "resuming" } else { "starting" };
                let at = journal
                    .map(|j| format!(" (journal {})", j.display()))
                    .unwrap_or_default();
                line(&bar, format!("{verb} run {run_id}{at}"));
            }
            EngineEvent::StepStarted {
                index,
                total,
                step,
                action,
            } => {
                let text = format!("[{}/{total}] {step} ({action})", index + 1);
                if fancy {
                    if let Some(b) = bar.take() {
                        b.finish_and_clear();
                    }
                    let b = ProgressBar::new_spinner();
                    b.set_style(style.clone());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b.set_message(text);
                    bar = Some(b);
                } else {
                    errln!("{text}");
                }
            }
            EngineEvent::StepDiff {
                summary, mutations, ..
            } => {
                let repeated = mutations.len() == 1 && mutations[0].description == summary;
                if !repeated {
                    line(&bar, format!("  {}", indent_continuation(&summary, "  ")));
                }
                if detail {
                    for m in &mutations {
                        line(&bar, render_mutation(m, "    "));
                    }
                } else if mutations.len() > 1 {
                    line(
                        &bar,
                        format!("    {} write(s) (-v lists them)", mutations.len()),
                    );
                } else if let Some(m) = mutations.first().filter(|_| repeated) {
                    line(&bar, format!("  {} ({})", m.description, m.target));
                }
            }
            EngineEvent::Prepared { notes } => {
                for note in notes {
                    line(&bar, format!("  {note}"));
                }
            }
            EngineEvent::MutationApplied { step, description } => {
                *applied.entry(step).or_default() += 1;
                if detail {
                    line(&bar, format!("  applied: {description}"));
                }
            }
            EngineEvent::Progress {
                step,
                what,
                done,
                total,
            } => {
                if fancy {
                    let b = match bar.take() {
                        Some(b) if b.length().is_some() => b,
                        other => {
                            let message = other
                                .as_ref()
                                .map(|b| b.message())
                                .unwrap_or_else(|| step.clone());
                            if let Some(old) = other {
                                old.finish_and_clear();
                            }
                            let b = ProgressBar::new(total);
                            b.set_style(counted.clone());
                            b.enable_steady_tick(Duration::from_millis(120));
                            b.set_prefix(message);
                            b
                        }
                    };
                    b.set_length(total);
                    b.set_position(done.min(total));
                    b.set_message(what);
                    bar = Some(b);
                } else {
                    // A new phase (`batch 2 of 4`, another wave) always gets its line; within
                    // one, a line per tenth of the total and the last.
                    let printed = match &last_count {
                        Some((s, w, last)) if *s == step && *w == what => Some(*last),
                        _ => None,
                    };
                    let due = detail
                        || done >= total
                        || printed.is_none_or(|last| done.saturating_sub(last) * 10 >= total);
                    if due && printed != Some(done) {
                        errln!("{}", progress_line(&step, &what, done, total));
                        last_count = Some((step, what, done));
                    }
                }
            }
            EngineEvent::Approved {
                step, by, source, ..
            } => line(&bar, format!("  {step}: approved by {by} (via {source})")),
            EngineEvent::ApprovalRejected { step, by, reason } => {
                line(&bar, format!("  {step}: ACK by {by} rejected: {reason}"))
            }
            EngineEvent::Verifying { step, timeout } => {
                let text = format!("  {step}: verifying (up to {}s)", timeout.as_secs());
                match &bar {
                    Some(b) => b.set_message(text),
                    None if detail => errln!("{text}"),
                    None => {}
                }
            }
            EngineEvent::StepFinished { step, result } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let writes = applied
                    .get(&step)
                    .map(|n| format!(" ({n} write(s) applied)"))
                    .unwrap_or_default();
                errln!("  {step}: {}{writes}", describe_result(&result));
            }
            EngineEvent::Warning { message } => line(&bar, format!("  warning: {message}")),
            EngineEvent::Finished { .. } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
            }
        }
    }
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
}

/// A progress report without a terminal: `  STEP: WHAT DONE/TOTAL`.
pub fn progress_line(step: &str, what: &str, done: u64, total: u64) -> String {
    format!("  {step}: {what} {done}/{total}")
}

/// One line per step result.
pub fn describe_result(result: &StepResult) -> String {
    match result {
        StepResult::Verified => "verified".into(),
        StepResult::AlreadySatisfied => "already satisfied (nothing to do)".into(),
        StepResult::DoneEarlier => "done earlier in this run".into(),
        StepResult::Failed { error, category } => {
            // `refused: refused: …` says it twice.
            let error = error
                .strip_prefix(&format!("{category}: "))
                .unwrap_or(error);
            format!("FAILED ({category}): {error}")
        }
        StepResult::WouldApply => "would apply".into(),
        StepResult::NotRun => "not run".into(),
    }
}

/// A mutation for people: its description, inverse and indented diff.
pub fn render_mutation(m: &MutationPreview, indent: &str) -> String {
    let inverse = match &m.inverse {
        crate::actions::Inverse::MergePatch { patch, .. } => format!("merge patch {patch}"),
        crate::actions::Inverse::NotReverted { reason, .. } => format!("not reverted: {reason}"),
        crate::actions::Inverse::None { reason } => format!("none: {reason}"),
    };
    let mut out = format!(
        "{indent}{} ({})\n{indent}inverse: {inverse}",
        m.description, m.target
    );
    for l in m.diff.lines() {
        out.push('\n');
        out.push_str(indent);
        out.push_str("  ");
        out.push_str(l);
    }
    out
}

/// Prints a dry run's report.
pub fn print_dry_run(outcome: &RunOutcome, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        outln!("{}", serde_json::to_string_pretty(outcome)?);
        return Ok(());
    }
    outln!("dry run of {} (nothing will be written):", outcome.run_id);
    for (i, step) in outcome.steps.iter().enumerate() {
        outln!(
            "{}. {} ({}): {}",
            i + 1,
            step.name,
            step.action,
            describe_result(&step.result)
        );
        // A one-mutation step's summary usually says what its mutation says: print it once.
        let repeated = step.mutations.iter().any(|m| m.description == step.summary);
        if !step.summary.is_empty() && !repeated {
            outln!("   {}", indent_continuation(&step.summary, "   "));
        }
        if step.mutations.len() > 1 {
            outln!("   {} write(s) now:", step.mutations.len());
        }
        for m in &step.mutations {
            outln!("{}", render_mutation(m, "   "));
        }
    }
    Ok(())
}

fn plan_label(outcome: &RunOutcome) -> String {
    format!("run {}", outcome.run_id)
}

/// The final one-line summary: outcome, duration, run id, journal path.
///
/// A reason that a failed step's line already printed (the progress display shows every
/// step's result) is not repeated: a refusal is printed once.
pub fn outcome_line(outcome: &RunOutcome, what: &str) -> String {
    let said = |reason: &str| {
        outcome.steps.iter().any(|s| {
            matches!(&s.result, StepResult::Failed { error, .. } if reason.contains(error.as_str()))
        })
    };
    let reason = outcome
        .reason
        .as_deref()
        .filter(|r| outcome.dry_run || !said(r))
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let journal = outcome
        .journal
        .as_ref()
        .map(|j| format!(", journal {}", j.display()))
        .unwrap_or_default();
    format!(
        "{what} {} in {:.1}s{reason} — run {}{journal}",
        outcome.outcome,
        outcome.duration.as_secs_f64(),
        outcome.run_id
    )
}

/// Prints the outcome (the one line, or JSON).
pub fn print_outcome(outcome: &RunOutcome, output: Output, line: &str) -> anyhow::Result<()> {
    match output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(outcome)?),
        Output::Text => outln!("{line}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_split_on_the_first_equals() {
        let p = parse_params(&["a=b=c".into(), "n=1".into()]).unwrap();
        assert_eq!(p["a"], "b=c");
        assert_eq!(p["n"], "1");
        assert!(parse_params(&["novalue".into()]).is_err());
    }

    #[test]
    fn outcomes_map_to_documented_exit_codes() {
        assert_eq!(exit_for(Outcome::Succeeded).code(), 0);
        assert_eq!(exit_for(Outcome::Failed).code(), 1);
        assert_eq!(exit_for(Outcome::Stopped).code(), 1);
        assert_eq!(exit_for(Outcome::Refused).code(), 4);
        assert_eq!(exit_for(Outcome::Interrupted).code(), 130);
    }
}
