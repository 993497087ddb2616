//! The daemon's configuration file (`ripcord daemon --config FILE`).
//!
//! Every top-level setting can also be given as a command-line flag or `RIPCORD_*` environment
//! variable (see `src/cli/daemon.rs`); flags win over the file.
//!
//! ```yaml
//! listen: 0.0.0.0:8080
//! stateDir: /var/lib/ripcord
//! tokensFile: /etc/ripcord/tokens/tokens     # one `NAME TOKEN` per line
//! runKeyFile: /etc/ripcord/run-key/key       # seals the daemon's Run resources (>= 32 bytes)
//! tokens:                                    # what each named token may do
//!   - name: oncall
//!     playbooks: ["*"]                       # named playbooks (default: all)
//!     inlinePlaybooks: true                  # default false
//!     objectPatch: {namespaces: [shop], kinds: [ConfigMap, Deployment]}
//!   - name: alertmanager
//!     endpoints: [alertmanager]
//!   - name: metrics
//!     endpoints: [metrics]
//! http: {headerReadTimeout: 10s, bodyReadTimeout: 30s, maxConnections: 64}
//! namespace: ripcord                         # leader Lease; default namespace of runs
//! playbooksDir: /etc/ripcord/playbooks       # extra playbooks (*.yaml), e.g. a ConfigMap
//! bodyLimitBytes: 1048576
//! stepKubeconfig: /etc/ripcord/step-contexts/kubeconfig  # contexts for steps with `context:`
//! prometheus:
//!   url: http://prometheus.monitoring:9090
//! notify:
//!   channels:
//!     - {name: incidents, type: slack, urlFromEnv: RIPCORD_SLACK_URL}
//! leaderElection:
//!   enabled: true
//!   leaseName: ripcord-leader
//!   leaseDuration: 15s
//! alertmanager:
//!   cooldown: 10m
//!   maxRunsPerMinute: 10
//!   rules:
//!     - name: high-error-rate
//!       match: {alertname: HighErrorRate}
//!       playbook: rollback
//!       params: {namespace: "$(labels.namespace)", name: "$(labels.deployment)"}
//! drills:
//!   - name: zone-a
//!     schedule: "0 10 * * 2"
//!     timezone: "+02:00"           # a fixed UTC offset, `UTC`, or an IANA name (needs tzdata)
//!     window: {start: "09:00", end: "17:00"}
//!     errorBudget: {query: "slo:error_budget_remaining", op: gt, threshold: 0.2}
//!     failout: {playbook: failout-zone, params: {zone: zone-a}}
//!     failback: {playbook: failback-zone, params: {zone: zone-a}}
//!     hypothesis:
//!       probes: [{name: errors, query: "slo:error_ratio:rate5m", op: lt, threshold: 0.01}]
//!       http: [{name: shop, url: "http://shop.example/healthz", expectStatus: 200}]
//!     hold: 10m
//!     holdInterval: 30s
//!     returned:
//!       probes: [{name: pods, query: "sum(kube_pod_info{zone=\"zone-a\"})", op: ge, threshold: 3}]
//!       within: 5m
//!     budgetBurn: 0.02
//! ```

use crate::playbook::duration::Duration;
use crate::playbook::model::PromCondition;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The daemon configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonConfig {
    /// The listen address (default `0.0.0.0:8080`).
    #[serde(default)]
    pub listen: Option<String>,
    /// Where journals, snapshots, approvals and drill reports go.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The bearer tokens file (`NAME TOKEN` per line, or a bare `TOKEN` named `api`; `#`
    /// comments and blank lines ignored).
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// What each named token may do (unlisted names: every endpoint and named playbook, no
    /// inline playbooks, `object.patch` outside the protected namespaces and kinds).
    #[serde(default)]
    pub tokens: Vec<crate::daemon::auth::TokenScope>,
    /// The key sealing the daemon's `Run` resources (a file of at least 32 bytes, from the
    /// daemon's Secret). Unset: runs are not sealed and none is taken over from the cluster.
    #[serde(default)]
    pub run_key_file: Option<PathBuf>,
    /// Connection bounds.
    #[serde(default)]
    pub http: HttpConfig,
    /// The namespace of the leader Lease and the default namespace of runs.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A directory of extra playbooks (`*.yaml`, file stem = name), searched before the
    /// built-in ones.
    #[serde(default)]
    pub playbooks_dir: Option<PathBuf>,
    /// Request body limit in bytes (default 1 MiB).
    #[serde(default)]
    pub body_limit_bytes: Option<usize>,
    /// The kubeconfig whose contexts playbook steps with `context:` may name (a colo that is a
    /// whole cluster). Unset (and no `--kubeconfig`): such steps are refused.
    #[serde(default)]
    pub step_kubeconfig: Option<PathBuf>,
    /// Serve the status page at `/` without a token (default false).
    #[serde(default)]
    pub public_status_page: bool,
    /// Who daemon runs are attributed to (default `ripcord-daemon`).
    #[serde(default)]
    pub who: Option<String>,
    /// Timeout of each single API call (default 10s).
    #[serde(default)]
    pub call_timeout: Option<Duration>,
    /// The Prometheus used by guards, gates and drills' error-budget gates.
    #[serde(default)]
    pub prometheus: Option<crate::config::PrometheusConfig>,
    /// Notification channels for every run.
    #[serde(default)]
    pub notify: crate::config::NotifyConfig,
    /// Leader election.
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    /// The Alertmanager webhook's rules.
    #[serde(default)]
    pub alertmanager: AlertmanagerConfig,
    /// Scheduled drills.
    #[serde(default)]
    pub drills: Vec<DrillConfig>,
}

/// `http:`: bounds on client connections.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    /// Time for a request head and for the idle time between requests (default 10s).
    #[serde(default)]
    pub header_read_timeout: Option<Duration>,
    /// Time for a whole request body (default 30s).
    #[serde(default)]
    pub body_read_timeout: Option<Duration>,
    /// Connections open at once (default 64).
    #[serde(default)]
    pub max_connections: Option<usize>,
}

// === impl HttpConfig ===

impl HttpConfig {
    /// The bounds, defaults filled in.
    pub fn limits(&self) -> crate::daemon::http::HttpLimits {
        let default = crate::daemon::http::HttpLimits::default();
        crate::daemon::http::HttpLimits {
            header_read_timeout: self
                .header_read_timeout
                .map(|d| d.0)
                .unwrap_or(default.header_read_timeout),
            body_read_timeout: self
                .body_read_timeout
                .map(|d| d.0)
                .unwrap_or(default.body_read_timeout),
            max_connections: self.max_connections.unwrap_or(default.max_connections),
        }
    }
}

/// `leaderElection:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Off: this process always leads (one replica, or tests).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The Lease's name.
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// How long a leader's Lease lives without renewal (renewed every third of it).
    #[serde(default = "default_lease_duration")]
    pub lease_duration: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: true,
            lease_name: default_lease_name(),
            lease_duration: default_lease_duration(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_lease_name() -> String {
    "ripcord-leader".to_string()
}

fn default_lease_duration() -> Duration {
    Duration(std::time::Duration::from_secs(15))
}

/// `alertmanager:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// After a triggered run, further alerts for the same target are de-duplicated for this
    /// long (default 10m); a rule may override it.
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
    /// At most this many alert-triggered runs per minute, all rules together (default 10).
    #[serde(default = "default_rate")]
    pub max_runs_per_minute: u32,
    /// The rules, first match wins.
    #[serde(default)]
    pub rules: Vec<AlertRule>,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            cooldown: default_cooldown(),
            max_runs_per_minute: default_rate(),
            rules: Vec::new(),
        }
    }
}

fn default_cooldown() -> Duration {
    Duration(std::time::Duration::from_secs(600))
}

fn default_rate() -> u32 {
    10
}

/// One alert rule: labels to match → playbook and params (templated with `$(labels.X)`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRule {
    /// The rule's name (logs, metrics).
    pub name: String,
    /// Every label here must equal the alert's.
    #[serde(rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// The playbook to run.
    pub playbook: String,
    /// Parameters; `$(labels.NAME)` is replaced by the alert's label.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Overrides the global cooldown.
    #[serde(default)]
    pub cooldown: Option<Duration>,
}

/// One scheduled drill: fail out, fail back, verify.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrillConfig {
    /// The drill's name.
    pub name: String,
    /// A cron expression (croner syntax; 5 or 6 fields).
    pub schedule: String,
    /// `UTC` (default), a fixed offset `+02:00`, or an IANA name (needs tzdata on the host).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Only start inside this local-time window.
    #[serde(default)]
    pub window: Option<TimeWindow>,
    /// Must hold before the drill starts (e.g. "error budget left > 20%").
    #[serde(default)]
    pub error_budget: Option<PromCondition>,
    /// The fail-out run.
    pub failout: DrillRun,
    /// The fail-back run, always attempted after the fail-out ran.
    pub failback: DrillRun,
    /// Checked after the fail-back (in addition to both runs succeeding).
    #[serde(default)]
    pub verify: Option<PromCondition>,
    /// The steady-state hypothesis: checked before the fail-out (not holding: the drill is
    /// skipped), every `holdInterval` during the hold (not holding: the drill ends early,
    /// fails back and opens an incident) and after the fail-back.
    #[serde(default)]
    pub hypothesis: Option<Hypothesis>,
    /// How long the zone stays failed out while the hypothesis is watched (default 0).
    #[serde(default)]
    pub hold: Option<Duration>,
    /// How often the hypothesis is checked during the hold (default 30s).
    #[serde(default)]
    pub hold_interval: Option<Duration>,
    /// After the fail-back: the zone got its pods and its traffic share back (checked until
    /// they hold, at most `within`).
    #[serde(default)]
    pub returned: Option<ReturnCheck>,
    /// Error budget (a ratio) a failed hypothesis burns: added to
    /// `ripcord_drill_error_budget_burn_total{drill}`, which the budget rule can subtract.
    #[serde(default)]
    pub budget_burn: Option<f64>,
}

/// A drill's steady-state hypothesis: every probe must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hypothesis {
    /// PromQL probes.
    #[serde(default)]
    pub probes: Vec<PromProbe>,
    /// HTTP probes (a user-facing endpoint answers).
    #[serde(default)]
    pub http: Vec<HttpProbe>,
}

/// A named PromQL condition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromProbe {
    /// The probe's name (reports).
    pub name: String,
    /// The PromQL expression; must return one value.
    pub query: String,
    /// The comparison.
    pub op: crate::playbook::model::CompareOp,
    /// The right-hand side.
    pub threshold: f64,
}

impl PromProbe {
    /// As a condition.
    pub fn condition(&self) -> PromCondition {
        PromCondition {
            query: self.query.clone(),
            op: self.op,
            threshold: self.threshold,
        }
    }
}

/// An HTTP probe: `GET url` answers with the expected status within the timeout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpProbe {
    /// The probe's name (reports).
    pub name: String,
    /// The URL.
    pub url: String,
    /// The expected status (default: any 2xx).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// Bound of the request (default 5s).
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// `returned:` — after the fail-back, the zone is whole again.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReturnCheck {
    /// Every probe must hold (e.g. ready pods in the zone, the zone's traffic weight).
    #[serde(default)]
    pub probes: Vec<PromProbe>,
    /// Checked until they hold, at most this long (default 5m).
    #[serde(default)]
    pub within: Option<Duration>,
}

/// A playbook and its parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrillRun {
    /// The playbook.
    pub playbook: String,
    /// Its parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A daily local-time window `HH:MM`–`HH:MM` (an end before the start spans midnight).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeWindow {
    /// Start, `HH:MM`.
    pub start: String,
    /// End, `HH:MM` (exclusive).
    pub end: String,
}

/// Why the daemon configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DaemonConfigError {
    /// The file could not be read.
    #[error("cannot read daemon config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not fit.
    #[error("{source_name}:{line}:{column}: invalid daemon configuration: {message}")]
    Invalid {
        /// The file name.
        source_name: String,
        /// 1-based line (0 unknown).
        line: u64,
        /// 1-based column (0 unknown).
        column: u64,
        /// What is wrong.
        message: String,
    },
    /// A drill's schedule, timezone or window is not usable.
    #[error("drill {drill}: {message}")]
    Drill {
        /// The drill.
        drill: String,
        /// What is wrong.
        message: String,
    },
}

impl DaemonConfigError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            DaemonConfigError::Read { .. } => "config-read",
            DaemonConfigError::Invalid { .. } => "config-invalid",
            DaemonConfigError::Drill { .. } => "config-drill",
        }
    }
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<DaemonConfig, DaemonConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| DaemonConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses a daemon configuration and checks its drills.
pub fn parse(source_name: &str, text: &str) -> Result<DaemonConfig, DaemonConfigError> {
    if text.trim().is_empty() {
        return Ok(DaemonConfig::default());
    }
    let config = serde_saphyr::from_str::<DaemonConfig>(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        DaemonConfigError::Invalid {
            source_name: source_name.to_string(),
            line,
            column,
            message: err.to_string(),
        }
    })?;
    for drill in &config.drills {
        crate::daemon::drills::Schedule::from_config(drill)?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```yaml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.strip_prefix("//! ").unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let config = parse("doc", &text).unwrap();
        assert_eq!(config.listen.as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(config.alertmanager.rules.len(), 1);
        assert_eq!(
            config.alertmanager.rules[0].matchers["alertname"],
            "HighErrorRate"
        );
        assert_eq!(config.drills[0].failout.playbook, "failout-zone");
        assert_eq!(config.leader_election.lease_name, "ripcord-leader");
        assert_eq!(config.tokens.len(), 3);
        assert!(config.tokens[0].inline_playbooks);
        assert_eq!(
            config.tokens[1].endpoints,
            vec![crate::daemon::auth::Endpoint::Alertmanager]
        );
        assert_eq!(config.http.limits().max_connections, 64);
        assert_eq!(
            config.step_kubeconfig.as_deref(),
            Some(Path::new("/etc/ripcord/step-contexts/kubeconfig"))
        );
    }

    #[test]
    fn unknown_field_and_bad_cron_are_rejected() {
        let err = parse("c.yaml", "listen: x\nlisen: y\n").unwrap_err();
        assert_eq!(err.category(), "config-invalid");
        let err = parse(
            "c.yaml",
            "drills:\n  - name: d\n    schedule: 'not a cron'\n    failout: {playbook: a}\n    failback: {playbook: b}\n",
        )
        .unwrap_err();
        assert_eq!(err.category(), "config-drill", "{err}");
    }
}
