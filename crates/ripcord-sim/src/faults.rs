//! Runtime fault injection (latency, error rates, dropped and expired watches) and the request
//! log.
//!
//! Faults are drawn from a seeded xorshift generator, so a run with the same seed and the same
//! request sequence fails the same way. Discovery and `/metrics` requests are never failed, only
//! resource requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rng::XorShift;
use crate::status::ApiError;

/// How many request records the log keeps (oldest are dropped first).
const REQUEST_LOG_LIMIT: usize = 100_000;

/// The fault settings; every field defaults to "no fault".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Added latency per resource request, in milliseconds (real time).
    pub latency_ms: u64,
    /// Probability (0..=1) that a resource request fails with 429 TooManyRequests.
    pub rate_429: f64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_seconds: u64,
    /// Probability that a resource request fails with 500 InternalError.
    pub rate_500: f64,
    /// Probability that a write (POST/PUT/PATCH/DELETE) fails with 409 Conflict.
    pub rate_409: f64,
    /// Inject the errors above only into requests for these resources (plural names, e.g.
    /// `leases`); empty: every resource.
    pub error_resources: Vec<String>,
    /// Close every watch after it has sent this many events (0 = never).
    pub drop_watch_after_events: usize,
    /// Probability that a watch is closed after any given event.
    pub watch_drop_rate: f64,
}

/// Runtime-settable fault injection, shared by the server and the test that drives it.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
}

struct FaultState {
    config: FaultConfig,
    rng: XorShift,
    expire_watches: usize,
}

// === impl Faults ===

impl Faults {
    /// No faults; `seed` drives the random draws once rates are set.
    pub fn new(seed: u64) -> Faults {
        Faults {
            inner: Arc::new(Mutex::new(FaultState {
                config: FaultConfig::default(),
                rng: XorShift::new(seed),
                expire_watches: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces all settings.
    pub fn configure(&self, config: FaultConfig) {
        self.lock().config = config;
    }

    /// The current settings.
    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// Removes every fault.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.config = FaultConfig::default();
        s.expire_watches = 0;
    }

    /// Adds `latency` to every resource request.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().config.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    }

    /// Sets the probability of injected failures with HTTP `code` (429, 500, or 409 for
    /// writes); other codes are ignored.
    pub fn set_error_rate(&self, code: u16, rate: f64) {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut s = self.lock();
        match code {
            429 => s.config.rate_429 = rate,
            500 => s.config.rate_500 = rate,
            409 => s.config.rate_409 = rate,
            _ => {}
        }
    }

    /// Sets `Retry-After` for injected 429s.
    pub fn set_retry_after(&self, seconds: u64) {
        self.lock().config.retry_after_seconds = seconds;
    }

    /// Closes every watch after `events` events (`0` = never).
    pub fn drop_watches_after(&self, events: usize) {
        self.lock().config.drop_watch_after_events = events;
    }

    /// Closes a watch after any event with probability `rate`.
    pub fn set_watch_drop_rate(&self, rate: f64) {
        self.lock().config.watch_drop_rate = if rate.is_finite() {
            rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
    }

    /// The next `count` watches that start from a resourceVersion get an `ERROR` event with a
    /// 410 Expired `Status` instead of events (forces clients to re-list).
    pub fn expire_next_watches(&self, count: usize) {
        self.lock().expire_watches = count;
    }

    /// Whether this watch must be answered with 410 Expired (consumes one).
    pub(crate) fn take_watch_expiry(&self) -> bool {
        let mut s = self.lock();
        if s.expire_watches > 0 {
            s.expire_watches -= 1;
            true
        } else {
            false
        }
    }

    /// The added latency.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.lock().config.latency_ms)
    }

    /// Limits injected errors to requests for the resources named (plural); empty: all.
    pub fn set_error_resources(&self, plurals: &[&str]) {
        self.lock().config.error_resources = plurals.iter().map(|p| p.to_string()).collect();
    }

    /// Draws whether this request for resource `plural` fails, and how.
    pub(crate) fn draw_error(&self, is_write: bool, plural: &str) -> Option<ApiError> {
        let mut s = self.lock();
        if !s.config.error_resources.is_empty()
            && !s.config.error_resources.iter().any(|r| r == plural)
        {
            return None;
        }
        let FaultConfig {
            rate_429,
            rate_500,
            rate_409,
            retry_after_seconds,
            ..
        } = s.config.clone();
        if rate_429 > 0.0 && s.rng.next_f64() < rate_429 {
            return Some(ApiError::TooManyRequests {
                message:
                    "the server has received too many requests and has asked us to try again later"
                        .into(),
                retry_after: Some(retry_after_seconds.max(1)),
            });
        }
        if rate_500 > 0.0 && s.rng.next_f64() < rate_500 {
            return Some(ApiError::Internal {
                message: "an error on the server (\"injected fault\") has prevented the request from succeeding"
                    .into(),
            });
        }
        if is_write && rate_409 > 0.0 && s.rng.next_f64() < rate_409 {
            return Some(ApiError::Conflict {
                message: "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected fault)"
                    .into(),
            });
        }
        None
    }

    /// Whether a watch that has sent `sent` events must now be closed.
    pub(crate) fn should_drop_watch(&self, sent: usize) -> bool {
        let mut s = self.lock();
        let after = s.config.drop_watch_after_events;
        if after > 0 && sent >= after {
            return true;
        }
        let rate = s.config.watch_drop_rate;
        rate > 0.0 && s.rng.next_f64() < rate
    }
}

/// One served request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// 1-based sequence number.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Raw query string (may be empty).
    pub query: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection,
    /// or `discovery` / `other`.
    pub verb: String,
    /// HTTP status code returned.
    pub status: u16,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl RequestRecord {
    /// Whether the request was a write (POST/PUT/PATCH/DELETE).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

/// The bounded log of served requests.
#[derive(Clone, Default)]
pub struct RequestLog {
    inner: Arc<Mutex<RequestLogState>>,
}

#[derive(Default)]
struct RequestLogState {
    next_seq: u64,
    records: VecDeque<RequestRecord>,
    writes: usize,
}

// === impl RequestLog ===

impl RequestLog {
    fn lock(&self) -> MutexGuard<'_, RequestLogState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record; `seq` is assigned here.
    pub fn push(&self, mut record: RequestRecord) {
        let mut s = self.lock();
        s.next_seq += 1;
        record.seq = s.next_seq;
        if record.is_write() {
            s.writes += 1;
        }
        s.records.push_back(record);
        while s.records.len() > REQUEST_LOG_LIMIT {
            s.records.pop_front();
        }
    }

    /// All kept records, oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.lock().records.iter().cloned().collect()
    }

    /// Number of POST/PUT/PATCH/DELETE requests served so far (including failed ones).
    pub fn write_count(&self) -> usize {
        self.lock().writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_seeded_and_bounded() {
        let draw = |seed| {
            let f = Faults::new(seed);
            f.set_error_rate(429, 0.5);
            (0..200)
                .map(|_| f.draw_error(false, "pods").is_some())
                .collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42));
        let failures = a.iter().filter(|x| **x).count();
        assert!((50..150).contains(&failures), "{failures}");
        let f = Faults::new(1);
        f.set_error_rate(409, 1.0);
        assert!(f.draw_error(false, "pods").is_none());
        assert_eq!(f.draw_error(true, "pods").map(|e| e.code()), Some(409));
        // Limited to some resources: the others are spared.
        f.set_error_resources(&["leases"]);
        assert!(f.draw_error(true, "pods").is_none());
        assert_eq!(f.draw_error(true, "leases").map(|e| e.code()), Some(409));
        f.clear();
        assert!(f.draw_error(true, "leases").is_none());
    }

    #[test]
    fn watch_drops_and_expiries() {
        let f = Faults::new(1);
        assert!(!f.should_drop_watch(100));
        f.drop_watches_after(3);
        assert!(!f.should_drop_watch(2));
        assert!(f.should_drop_watch(3));
        f.expire_next_watches(1);
        assert!(f.take_watch_expiry());
        assert!(!f.take_watch_expiry());
    }

    #[test]
    fn request_log_counts_writes() {
        let log = RequestLog::default();
        for method in ["GET", "POST", "PATCH", "GET", "DELETE"] {
            log.push(RequestRecord {
                seq: 0,
                method: method.into(),
                path: "/api/v1/pods".into(),
                query: String::new(),
                verb: "x".into(),
                status: 200,
                user_agent: "t".into(),
            });
        }
        assert_eq!(log.write_count(), 3);
        let seqs: Vec<_> = log.records().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }
}
