//! Outbound notifications: Slack-compatible and generic JSON webhooks.
//!
//! A run notifies before its first mutation, after each step and at the end. Delivery never
//! fails the caller: [`Notifier::send`] posts to every channel concurrently, each bounded by
//! [`SEND_TIMEOUT`], and returns one [`Delivery`] per channel for the journal.
//!
//! A webhook URL is a secret. It lives only inside [`ChannelConfig`], whose `Debug` hides it;
//! it is never logged, never journaled, and stripped from transport errors — deliveries and
//! logs name the channel only.

use crate::errors::error_chain;
use crate::playbook::{ChannelType, NotifyChannel};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The bound on one delivery.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The labels of [`delivery_counter`]: `channel` and `outcome` (`sent` or `failed`).
pub type DeliveryLabels = Vec<(&'static str, String)>;

/// Deliveries since the process started, by channel name and outcome (`sent`, `failed`).
/// Process-wide so that every run counts; the daemon serves it as
/// `ripcord_notifications_total`.
pub fn delivery_counter() -> &'static Family<DeliveryLabels, Counter> {
    static COUNTER: std::sync::LazyLock<Family<DeliveryLabels, Counter>> =
        std::sync::LazyLock::new(Family::default);
    &COUNTER
}

/// The payload format of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChannelKind {
    /// Slack-compatible incoming webhook: `{"text": …, "blocks": […]}`.
    Slack,
    /// Generic JSON webhook: the [`Notification`] itself.
    Webhook,
}

/// A resolved channel: its name, format and URL (a secret).
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// The channel's name (the only thing journals record).
    pub name: String,
    /// The payload format.
    pub kind: ChannelKind,
    /// The webhook URL. Secret: never log or journal it.
    pub url: String,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .finish()
    }
}

/// Why a channel could not be resolved. Messages never contain the URL.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The channel names neither `url` nor `urlFromEnv`.
    #[error("notification channel {channel:?} has neither url nor urlFromEnv")]
    MissingUrl {
        /// The channel.
        channel: String,
    },
    /// `urlFromEnv` names an unset or empty environment variable.
    #[error("notification channel {channel:?}: environment variable {var} is not set")]
    EnvNotSet {
        /// The channel.
        channel: String,
        /// The variable.
        var: String,
    },
    /// The URL is not an http(s) URL.
    #[error("notification channel {channel:?}: the URL is not a valid http(s) URL")]
    InvalidUrl {
        /// The channel.
        channel: String,
    },
}

impl NotifyError {
    /// A stable category for journals and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            NotifyError::MissingUrl { .. } => "missing-url",
            NotifyError::EnvNotSet { .. } => "env-not-set",
            NotifyError::InvalidUrl { .. } => "invalid-url",
        }
    }
}

impl ChannelConfig {
    /// Resolves a playbook/config channel: the inline `url`, else the variable `urlFromEnv`.
    pub fn resolve(channel: &NotifyChannel) -> Result<ChannelConfig, NotifyError> {
        let url = match (&channel.url, &channel.url_from_env) {
            (Some(url), _) => url.clone(),
            (None, Some(var)) => std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| NotifyError::EnvNotSet {
                    channel: channel.name.clone(),
                    var: var.clone(),
                })?,
            (None, None) => {
                return Err(NotifyError::MissingUrl {
                    channel: channel.name.clone(),
                });
            }
        };
        let url = url.trim().to_string();
        let valid = reqwest::Url::parse(&url)
            .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .unwrap_or(false);
        if !valid {
            return Err(NotifyError::InvalidUrl {
                channel: channel.name.clone(),
            });
        }
        Ok(ChannelConfig {
            name: channel.name.clone(),
            kind: match channel.channel_type {
                ChannelType::Slack => ChannelKind::Slack,
                ChannelType::Webhook => ChannelKind::Webhook,
            },
            url,
        })
    }
}

/// When in a run a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Before the first mutation ("about to …").
    Started,
    /// A step's result (or a `notify` step's message).
    Step,
    /// The run's outcome.
    Finished,
    /// An approval is pending.
    Approval,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The run.
    pub run_id: String,
    /// The playbook's name.
    pub playbook: String,
    /// When in the run.
    pub phase: Phase,
    /// One line.
    pub title: String,
    /// The body.
    pub text: String,
    /// Extra key/value facts (target, revision, who, incident, report path…).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl Notification {
    /// The JSON body posted to a channel of `kind`.
    pub fn payload(&self, kind: ChannelKind) -> Value {
        match kind {
            ChannelKind::Webhook => serde_json::to_value(self).unwrap_or(Value::Null),
            ChannelKind::Slack => {
                let mut text = format!("*{}*", self.title);
                if !self.text.is_empty() {
                    text.push('\n');
                    text.push_str(&self.text);
                }
                let mut blocks = vec![json!({
                    "type": "section",
                    "text": { "type": "mrkdwn", "text": text },
                })];
                let mut fields: Vec<Value> = self
                    .fields
                    .iter()
                    .map(|(k, v)| json!({ "type": "mrkdwn", "text": format!("*{k}*\n{v}") }))
                    .collect();
                fields.push(json!({ "type": "mrkdwn", "text": format!("*run*\n{}", self.run_id) }));
                // Slack allows at most 10 fields per section.
                for chunk in fields.chunks(10) {
                    blocks.push(json!({ "type": "section", "fields": chunk }));
                }
                json!({ "text": format!("{} (run {})", text, self.run_id), "blocks": blocks })
            }
        }
    }
}

/// The outcome of one delivery, as journaled (channel name only, never the URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The channel's name.
    pub channel: String,
    /// True for a 2xx answer.
    pub ok: bool,
    /// The HTTP status, if the receiver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong (URL stripped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sends notifications to a set of channels.
#[derive(Debug, Clone)]
pub struct Notifier {
    channels: Vec<ChannelConfig>,
    http: reqwest::Client,
    timeout: Duration,
}

// === impl Notifier ===

impl Notifier {
    /// A notifier for `channels`, posting with `http`.
    pub fn new(channels: Vec<ChannelConfig>, http: reqwest::Client) -> Notifier {
        Notifier {
            channels,
            http,
            timeout: SEND_TIMEOUT,
        }
    }

    /// Overrides the per-delivery bound (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Notifier {
        self.timeout = timeout;
        self
    }

    /// The channel names.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.name.clone()).collect()
    }

    /// True when no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Posts `notification` to every channel concurrently, each bounded by the timeout. Never
    /// fails: each channel's outcome is one [`Delivery`], in channel order.
    pub async fn send(&self, notification: &Notification) -> Vec<Delivery> {
        let sends = self
            .channels
            .iter()
            .map(|channel| self.send_one(channel, notification));
        futures::future::join_all(sends).await
    }

    async fn send_one(&self, channel: &ChannelConfig, notification: &Notification) -> Delivery {
        let body = notification.payload(channel.kind);
        let request = self
            .http
            .post(&channel.url)
            .header("user-agent", concat!("ripcord/", env!("CARGO_PKG_VERSION")))
            .json(&body)
            .send();
        let delivery = match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Delivery {
                channel: channel.name.clone(),
                ok: false,
                status: None,
                error: Some(format!("timed out after {:?}", self.timeout)),
            },
            Ok(Err(err)) => Delivery {
                channel: channel.name.clone(),
                ok: false,
                status: err.status().map(|s| s.as_u16()),
                error: Some(error_chain(&err.without_url())),
            },
            Ok(Ok(response)) => {
                let status = response.status();
                Delivery {
                    channel: channel.name.clone(),
                    ok: status.is_success(),
                    status: Some(status.as_u16()),
                    error: (!status.is_success()).then(|| format!("receiver answered {status}")),
                }
            }
        };
        let outcome = if delivery.ok { "sent" } else { "failed" };
        delivery_counter()
            .get_or_create(&vec![
                ("channel", delivery.channel.clone()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
        if delivery.ok {
            tracing::debug!(channel = %delivery.channel, run = %notification.run_id, "notification delivered");
        } else {
            tracing::warn!(
                channel = %delivery.channel,
                run = %notification.run_id,
                error = delivery.error.as_deref().unwrap_or(""),
                "notification not delivered"
            );
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(url: Option<&str>, env: Option<&str>) -> NotifyChannel {
        NotifyChannel {
            name: "oncall".into(),
            channel_type: ChannelType::Slack,
            url: url.map(str::to_string),
            url_from_env: env.map(str::to_string),
        }
    }

    #[test]
    fn resolve_prefers_inline_then_env_and_hides_the_url() {
        let resolved =
            ChannelConfig::resolve(&channel(Some("https://hooks.example/T/secret"), None)).unwrap();
        assert_eq!(resolved.kind, ChannelKind::Slack);
        assert!(!format!("{resolved:?}").contains("secret"));
        let err =
            ChannelConfig::resolve(&channel(None, Some("RIPCORD_TEST_UNSET_VAR_XYZ"))).unwrap_err();
        assert_eq!(err.category(), "env-not-set");
        let err = ChannelConfig::resolve(&channel(None, None)).unwrap_err();
        assert_eq!(err.category(), "missing-url");
        let err = ChannelConfig::resolve(&channel(Some("ftp://x/secret"), None)).unwrap_err();
        assert_eq!(err.category(), "invalid-url");
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn slack_payload_has_text_and_blocks() {
        let n = Notification {
            run_id: "r-1".into(),
            playbook: "rollback".into(),
            phase: Phase::Started,
            title: "about to roll back shop/checkout".into(),
            text: "from rev 7 to rev 6".into(),
            fields: BTreeMap::from([("who".to_string(), "alice".to_string())]),
        };
        let slack = n.payload(ChannelKind::Slack);
        assert!(
            slack["text"]
                .as_str()
                .unwrap()
                .contains("about to roll back")
        );
        assert_eq!(slack["blocks"][0]["type"], "section");
        let generic = n.payload(ChannelKind::Webhook);
        assert_eq!(generic["runId"], "r-1");
        assert_eq!(generic["phase"], "started");
    }
}
