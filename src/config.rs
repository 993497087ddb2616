//! Configuration files: notification channels, Prometheus, defaults.
//!
//! Looked up at `--config FILE` / `$RIPCORD_CONFIG`, else `$XDG_CONFIG_HOME/ripcord/config.yaml`,
//! else `~/.config/ripcord/config.yaml`. A missing default file means an empty configuration;
//! a missing explicit file is an error. Unknown fields are rejected with their line and column.
//! `docs/cli.md` documents the file for people.
//!
//! ```yaml
//! notify:
//!   required: false          # true: refuse a run when nobody could be told
//!   channels:
//!     - name: incidents
//!       type: slack
//!       urlFromEnv: RIPCORD_SLACK_URL
//! prometheus:
//!   url: http://prometheus.monitoring:9090
//! defaults:
//!   who: alice
//!   callTimeout: 10s
//! ```

use crate::playbook::duration::Duration;
use crate::playbook::model::NotifyChannel;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The configuration file's content.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Notification channels every run uses (in addition to the playbook's own).
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The Prometheus used by guards, gates and impact queries.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
    /// Defaults for command-line flags.
    #[serde(default)]
    pub defaults: Defaults,
}

/// `notify:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyConfig {
    /// Channels, in the playbook's channel syntax.
    #[serde(default)]
    pub channels: Vec<NotifyChannel>,
    /// Require delivery: a run is refused before its first mutation when its "about to …"
    /// notification reached nobody, and every `notify` step fails when nobody got its message.
    /// Default `false`: failed deliveries are reported and journaled, never fatal.
    #[serde(default)]
    pub required: bool,
}

/// `prometheus:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API (`http://host:9090`).
    pub url: String,
}

/// `defaults:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Defaults {
    /// Who runs are attributed to (default: `$USER`).
    #[serde(default)]
    pub who: Option<String>,
    /// Timeout of each single API call (default 10s).
    #[serde(default)]
    pub call_timeout: Option<Duration>,
    /// Where journals and snapshots go (default: the XDG state directory).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("{source_name}:{line}:{column}: invalid configuration: {message}")]
    Invalid {
        /// The file name.
        source_name: String,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "config-read",
            ConfigError::Invalid { .. } => "config-invalid",
        }
    }
}

/// The default config file location (`$XDG_CONFIG_HOME/ripcord/config.yaml` or
/// `~/.config/ripcord/config.yaml`).
pub fn default_path() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("ripcord/config.yaml"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".config/ripcord/config.yaml"))
}

/// Loads the configuration: `explicit` (must exist) or the default location (may be missing).
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok(Config::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path.display().to_string(), &text),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// Parses configuration text; errors carry `source_name:line:column`.
pub fn parse(source_name: &str, text: &str) -> Result<Config, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    serde_saphyr::from_str::<Config>(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ConfigError::Invalid {
            source_name: source_name.to_string(),
            line,
            column,
            message: err.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_channels_prometheus_and_defaults() {
        let config = parse(
            "config.yaml",
            "notify:\n  channels:\n    - name: incidents\n      type: slack\n      urlFromEnv: SLACK_URL\nprometheus:\n  url: http://127.0.0.1:9090\ndefaults:\n  who: alice\n  callTimeout: 5s\n",
        )
        .unwrap();
        assert_eq!(config.notify.channels.len(), 1);
        assert_eq!(config.notify.channels[0].name, "incidents");
        assert_eq!(config.prometheus.unwrap().url, "http://127.0.0.1:9090");
        assert_eq!(config.defaults.who.as_deref(), Some("alice"));
        assert_eq!(
            config.defaults.call_timeout.map(|d| d.0),
            Some(std::time::Duration::from_secs(5))
        );
    }

    #[test]
    fn unknown_field_is_located() {
        let err = parse("c.yaml", "prometheus:\n  url: http://x\n  urll: y\n").unwrap_err();
        match &err {
            ConfigError::Invalid { line, .. } => assert_eq!(*line, 3, "{err}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert!(err.to_string().starts_with("c.yaml:3:"), "{err}");
    }

    #[test]
    fn missing_default_file_is_empty_but_explicit_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(Some(&dir.path().join("nope.yaml"))).unwrap_err();
        assert_eq!(err.category(), "config-read");
        assert_eq!(parse("x", "").unwrap(), Config::default());
    }
}
