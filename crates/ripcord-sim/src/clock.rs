//! Simulated time with an acceleration factor.
//!
//! The simulated wall clock starts at the real time when the [`SimClock`] is created and then
//! advances `factor` times faster than the tokio clock. Because elapsed time is measured with
//! [`tokio::time::Instant`], `tokio::time::pause()` / `advance()` drive it in tests.

use std::sync::Arc;
use std::time::Duration;

/// A cheap-to-clone simulated clock shared by the store, the controllers and the server.
#[derive(Clone, Debug)]
pub struct SimClock {
    inner: Arc<ClockInner>,
}

#[derive(Debug)]
struct ClockInner {
    /// Simulated wall time at `start`.
    origin: jiff::Timestamp,
    /// Tokio instant the clock started at.
    start: tokio::time::Instant,
    /// Simulated seconds per real second (always finite and > 0).
    factor: f64,
}

// === impl SimClock ===

impl SimClock {
    /// A clock starting at the real current time; `factor` 10.0 runs simulated time 10x faster
    /// than real time. Non-finite or non-positive factors are treated as 1.0.
    pub fn new(factor: f64) -> SimClock {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        SimClock {
            inner: Arc::new(ClockInner {
                origin: jiff::Timestamp::now(),
                start: tokio::time::Instant::now(),
                factor,
            }),
        }
    }

    /// The current simulated wall time.
    pub fn now(&self) -> jiff::Timestamp {
        let real = self.inner.start.elapsed();
        let simulated = real.mul_f64(self.inner.factor);
        let span = jiff::SignedDuration::try_from(simulated).unwrap_or(jiff::SignedDuration::MAX);
        self.inner
            .origin
            .checked_add(span)
            .unwrap_or(jiff::Timestamp::MAX)
    }

    /// Simulated seconds per real second.
    pub fn factor(&self) -> f64 {
        self.inner.factor
    }

    /// Sleeps for `simulated` simulated time, i.e. `simulated / factor` of tokio time.
    pub async fn sleep(&self, simulated: Duration) {
        tokio::time::sleep(self.to_real(simulated)).await;
    }

    /// Converts a simulated duration to the real (tokio) duration it takes.
    pub fn to_real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.inner.factor)
    }

    /// [`SimClock::now`] formatted as Kubernetes does: RFC 3339 UTC with seconds precision,
    /// e.g. `2026-11-25T11:00:00Z`.
    pub fn rfc3339(&self) -> String {
        format_k8s_time(self.now())
    }
}

/// Formats a timestamp like Kubernetes `metav1.Time` (`2026-11-25T11:00:00Z`).
pub fn format_k8s_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn time_runs_factor_times_faster() {
        let clock = SimClock::new(10.0);
        let before = clock.now();
        tokio::time::advance(Duration::from_secs(3)).await;
        let after = clock.now();
        let diff = after.duration_since(before);
        assert_eq!(diff.as_secs(), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_divides_by_factor() {
        let clock = SimClock::new(4.0);
        let real_start = tokio::time::Instant::now();
        clock.sleep(Duration::from_secs(8)).await;
        assert_eq!(real_start.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn bad_factor_falls_back_to_one() {
        assert_eq!(SimClock::new(0.0).factor(), 1.0);
        assert_eq!(SimClock::new(f64::NAN).factor(), 1.0);
    }

    #[tokio::test]
    async fn rfc3339_has_seconds_precision() {
        let s = SimClock::new(1.0).rfc3339();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z'));
        assert_eq!(&s[10..11], "T");
    }
}
