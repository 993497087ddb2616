//! A client for the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`).
//!
//! Guards and gates need one number: [`Prometheus::query_scalar`] takes the first sample of an
//! instant query (a scalar or the first element of a vector) and reports an empty result as
//! an error that says so — an absent series must never read as "0, all good".
//! [`Prometheus::evaluate`] compares that value with a [`PromCondition`]. Impact graphs use
//! [`Prometheus::query_range`]. Every request is bounded by the client's timeout.

use crate::playbook::PromCondition;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// The default bound on one query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a query failed. [`PromError::category`] is stable and low-cardinality.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The request could not be sent or the answer not read.
    #[error("querying Prometheus at {url} failed: {reason}")]
    Request {
        /// The base URL, credentials removed.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The request did not finish in time.
    #[error("querying Prometheus at {url} timed out after {after:?}")]
    Timeout {
        /// The base URL, credentials removed.
        url: String,
        /// The bound.
        after: Duration,
    },
    /// Prometheus answered with an error (bad PromQL, execution error…).
    #[error("Prometheus rejected query {query:?} ({status}): {error_type}: {error}")]
    Api {
        /// The query.
        query: String,
        /// The HTTP status.
        status: u16,
        /// Prometheus' `errorType`.
        error_type: String,
        /// Prometheus' `error`.
        error: String,
    },
    /// The query returned no sample.
    #[error("query {query:?} returned no data (empty result): the series may not exist yet")]
    EmptyResult {
        /// The query.
        query: String,
    },
    /// The answer had an unexpected shape.
    #[error("unexpected answer to query {query:?}: {reason}")]
    Decode {
        /// The query.
        query: String,
        /// What was unexpected.
        reason: String,
    },
}

impl PromError {
    /// A stable category for journals and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            PromError::Request { .. } => "prometheus-unreachable",
            PromError::Timeout { .. } => "prometheus-timeout",
            PromError::Api { .. } => "prometheus-query",
            PromError::EmptyResult { .. } => "prometheus-empty",
            PromError::Decode { .. } => "prometheus-decode",
        }
    }

    /// True for transient failures (network, timeout, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            PromError::Request { .. } | PromError::Timeout { .. } => true,
            PromError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// A Prometheus HTTP API client.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData {
    result_type: String,
    result: Value,
}

// === impl Prometheus ===

impl Prometheus {
    /// A client for the Prometheus at `base_url` (e.g. `http://127.0.0.1:9090`).
    pub fn new(base_url: impl Into<String>, http: reqwest::Client) -> Prometheus {
        let base = base_url.into().trim_end_matches('/').to_string();
        Prometheus {
            base,
            http,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Overrides the per-query bound.
    pub fn with_timeout(mut self, timeout: Duration) -> Prometheus {
        self.timeout = timeout;
        self
    }

    /// The base URL fit for messages ([`crate::redact::url`]), without a trailing `/`.
    pub fn display_url(&self) -> String {
        crate::redact::url(&self.base)
            .trim_end_matches('/')
            .to_string()
    }

    async fn get(
        &self,
        path: &str,
        query: &str,
        params: &[(&str, String)],
    ) -> Result<ApiData, PromError> {
        let url = format!("{}{}", self.base, path);
        let request = self.http.get(&url).query(params).send();
        let response = match tokio::time::timeout(self.timeout, request).await {
            Err(_) => {
                return Err(PromError::Timeout {
                    url: self.display_url(),
                    after: self.timeout,
                });
            }
            Ok(Err(err)) => {
                return Err(PromError::Request {
                    url: self.display_url(),
                    reason: err.without_url().to_string(),
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let body = match tokio::time::timeout(self.timeout, response.bytes()).await {
            Err(_) => {
                return Err(PromError::Timeout {
                    url: self.display_url(),
                    after: self.timeout,
                });
            }
            Ok(Err(err)) => {
                return Err(PromError::Request {
                    url: self.display_url(),
                    reason: err.without_url().to_string(),
                });
            }
            Ok(Ok(body)) => body,
        };
        let parsed: ApiResponse = serde_json::from_slice(&body).map_err(|err| {
            if status >= 400 {
                PromError::Api {
                    query: query.to_string(),
                    status,
                    error_type: "http".into(),
                    error: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                }
            } else {
                PromError::Decode {
                    query: query.to_string(),
                    reason: err.to_string(),
                }
            }
        })?;
        if parsed.status != "success" {
            return Err(PromError::Api {
                query: query.to_string(),
                status,
                error_type: parsed.error_type.unwrap_or_default(),
                error: parsed.error.unwrap_or_default(),
            });
        }
        parsed.data.ok_or_else(|| PromError::Decode {
            query: query.to_string(),
            reason: "no data in a successful answer".into(),
        })
    }

    /// Runs an instant query and returns its first sample: a scalar, or the value of the first
    /// element of a vector. An empty vector is [`PromError::EmptyResult`].
    pub async fn query_scalar(&self, query: &str) -> Result<f64, PromError> {
        let data = self
            .get("/api/v1/query", query, &[("query", query.to_string())])
            .await?;
        let decode = |reason: &str| PromError::Decode {
            query: query.to_string(),
            reason: reason.to_string(),
        };
        match data.result_type.as_str() {
            "scalar" => parse_sample(&data.result).ok_or_else(|| decode("malformed scalar")),
            "vector" => {
                let items = data
                    .result
                    .as_array()
                    .ok_or_else(|| decode("vector result is not an array"))?;
                let first = items.first().ok_or_else(|| PromError::EmptyResult {
                    query: query.to_string(),
                })?;
                parse_sample(&first["value"]).ok_or_else(|| decode("malformed vector sample"))
            }
            other => Err(decode(&format!(
                "result type {other:?}; the query must return a scalar or an instant vector"
            ))),
        }
    }

    /// Evaluates `condition`: `(holds, observed value)`.
    pub async fn evaluate(&self, condition: &PromCondition) -> Result<(bool, f64), PromError> {
        let value = self.query_scalar(&condition.query).await?;
        Ok((condition.holds(value), value))
    }

    /// Runs a range query and returns the first series as `(unix seconds, value)` pairs. An
    /// empty result is an empty list (an impact graph may legitimately have no data yet).
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<(f64, f64)>, PromError> {
        let step_secs = step.as_secs_f64().max(0.001);
        let data = self
            .get(
                "/api/v1/query_range",
                query,
                &[
                    ("query", query.to_string()),
                    ("start", format!("{start:.3}")),
                    ("end", format!("{end:.3}")),
                    ("step", format!("{step_secs:.3}")),
                ],
            )
            .await?;
        if data.result_type != "matrix" {
            return Err(PromError::Decode {
                query: query.to_string(),
                reason: format!(
                    "range query returned {:?}, expected a matrix",
                    data.result_type
                ),
            });
        }
        let Some(first) = data.result.as_array().and_then(|a| a.first()) else {
            return Ok(Vec::new());
        };
        let values = first["values"].as_array().cloned().unwrap_or_default();
        Ok(values
            .iter()
            .filter_map(|pair| Some((pair.get(0)?.as_f64()?, parse_sample(pair)?)))
            .collect())
    }
}

/// `[<unix time>, "<value>"]` → the value (`NaN`, `+Inf`, `-Inf` included).
fn parse_sample(sample: &Value) -> Option<f64> {
    let raw = sample.get(1)?.as_str()?;
    match raw {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// A one-line explanation of a condition's evaluation: `0.31 > 0.05 (holds)`.
pub fn explain(condition: &PromCondition, value: f64, holds: bool) -> String {
    format!(
        "{value} {} {} ({}) for query {:?}",
        condition.op.symbol(),
        condition.threshold,
        if holds { "holds" } else { "does not hold" },
        condition.query
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn samples_parse_special_values() {
        assert_eq!(parse_sample(&json!([1.0, "0.25"])), Some(0.25));
        assert_eq!(parse_sample(&json!([1.0, "+Inf"])), Some(f64::INFINITY));
        assert!(parse_sample(&json!([1.0, "NaN"])).is_some_and(f64::is_nan));
        assert_eq!(parse_sample(&json!([1.0])), None);
        assert_eq!(parse_sample(&json!([1.0, "abc"])), None);
    }

    #[test]
    fn display_url_drops_credentials() {
        let p = Prometheus::new("http://user:pw@127.0.0.1:9090/", reqwest::Client::new());
        assert_eq!(p.display_url(), "http://<redacted>@127.0.0.1:9090");
    }

    #[test]
    fn issue14_display_url_trims_the_trailing_slash_of_a_path_prefix() {
        // Kept from the old copy: the base is shown without its trailing `/`.
        let p = Prometheus::new("http://prom.test/prometheus/", reqwest::Client::new());
        assert_eq!(p.display_url(), "http://prom.test/prometheus");
    }

    #[tokio::test]
    async fn unreachable_prometheus_is_a_request_error() {
        // Port 9 (discard) on loopback is closed on test machines.
        let p = Prometheus::new("http://127.0.0.1:9", reqwest::Client::new())
            .with_timeout(Duration::from_secs(2));
        let err = p.query_scalar("up").await.unwrap_err();
        assert!(
            matches!(err, PromError::Request { .. } | PromError::Timeout { .. }),
            "{err}"
        );
        assert!(err.is_retryable());
    }
}
