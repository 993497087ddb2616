//! Outbound notifications: Slack-compatible and generic JSON webhooks.
