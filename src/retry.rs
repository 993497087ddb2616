//! The one retry policy. Every retried call in ripcord goes through [`retry`]; nothing else
//! writes a retry loop of its own.
//!
//! A [`Policy`] is exponential backoff with jitter (built on `backon`), a maximum number of
//! attempts and a total bound in wall-clock time:
//!
//! - wait `n` (0-based) lies in `[d/2, d)` with `d = first · 2ⁿ` capped at `max_delay`: the
//!   configured delays are upper bounds, and the jitter spreads clients that failed together;
//! - at most `attempts` calls (the first one included);
//! - a wait is cut to the time left until `total` (counted from the first call) has passed; once
//!   none is left, no further call starts. A call under way is bounded by its own timeout.
//!
//! What is worth another attempt is the caller's classification, one per error type
//! (`K8sError::is_retryable`, `ActionError::is_retryable`, `LeaseError::is_transient`,
//! `PromError::is_retryable`: 429, 5xx, timeouts and transport errors yes; other 4xx no — the
//! 409 conflict is the call site's: a Lease take re-reads, the engine re-diffs).
//!
//! A wait is cancellable: [`retry`] takes a `cancel` signal, and when it fires during a wait
//! the wait ends at once and [`retry`] returns [`Stopped::Cancelled`] without another call.
//! Dropping the future returned by [`retry`] cancels it as well (a call under way is dropped).

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Exponential backoff with jitter, bounded in attempts and in time. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    first: Duration,
    max_delay: Duration,
    attempts: u32,
    total: Duration,
}

/// Kubernetes API calls that must go through (taking a Lease): up to 6 calls, waits of at most
/// 100 ms, 200 ms, … 2 s, within 30 s.
pub fn api_call() -> Policy {
    Policy::new(
        Duration::from_millis(100),
        Duration::from_secs(2),
        6,
        Duration::from_secs(30),
    )
}

/// Re-reading after a write lost a race (409 Conflict on a conditional write): up to 3 calls,
/// short waits, within 2 s.
pub fn conflict_reread() -> Policy {
    Policy::new(
        Duration::from_millis(20),
        Duration::from_millis(200),
        3,
        Duration::from_secs(2),
    )
}

/// An eviction a PodDisruptionBudget refuses (429) until `within` has passed: waits of at most
/// 200 ms, 400 ms, … 5 s. The time bound is what ends it; the attempt count (10 000) only
/// keeps it finite.
pub fn pdb_eviction(within: Duration) -> Policy {
    Policy::new(
        Duration::from_millis(200),
        Duration::from_secs(5),
        10_000,
        within,
    )
}

/// A playbook step's `retries` (attempts, first wait, longest wait) within the step's time.
pub fn step(retries: &crate::playbook::Retries, within: Duration) -> Policy {
    Policy::new(
        retries.backoff.0,
        retries.max_backoff.0,
        retries.attempts,
        within,
    )
}

// === impl Policy ===

impl Policy {
    /// At most `attempts` calls (at least 1), waits growing from `first` (doubled each time)
    /// up to `max_delay`, all within `total`.
    pub const fn new(
        first: Duration,
        max_delay: Duration,
        attempts: u32,
        total: Duration,
    ) -> Policy {
        Policy {
            first,
            max_delay,
            attempts: if attempts == 0 { 1 } else { attempts },
            total,
        }
    }

    /// The same policy with another total bound.
    pub const fn within(self, total: Duration) -> Policy {
        Policy { total, ..self }
    }

    /// The most calls this policy makes.
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The total bound.
    pub const fn total(&self) -> Duration {
        self.total
    }

    /// The upper bound of wait `n` (0-based): `first · 2ⁿ`, capped at `max_delay`.
    pub fn max_wait(&self, n: u32) -> Duration {
        let cap = self.max_delay;
        self.first
            .checked_mul(2u32.saturating_pow(n.min(31)))
            .unwrap_or(cap)
            .min(cap)
    }

    /// The waits this policy would sleep between calls, jittered (not yet cut to the total
    /// bound, which depends on the clock).
    pub fn waits(&self) -> impl Iterator<Item = Duration> + use<> {
        self.backoff().build()
    }

    /// `backon` adds a random share of `[0, 1)` of the delay on top of it, so halving the
    /// delays gives waits in `[d/2, d)`.
    fn backoff(&self) -> ExponentialBuilder {
        let first = self.first.min(self.max_delay);
        ExponentialBuilder::new()
            .with_min_delay(first / 2)
            .with_max_delay(self.max_delay / 2)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.attempts.saturating_sub(1) as usize)
    }
}

/// Why [`retry`] returned without a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped<E> {
    /// The last call's error: not retryable, or no attempt or time was left.
    Failed(E),
    /// `cancel` fired during a wait.
    Cancelled,
}

/// A `cancel` signal that never fires.
pub fn never() -> impl Fn() -> std::future::Pending<()> + 'static {
    std::future::pending
}

/// Calls `op` until it succeeds, fails with an error `retryable` rejects, or `policy` has no
/// attempt or time left; waits between calls as `policy` says, reporting each retry to
/// `notify` (the error and the wait). `cancel` makes a future that completes when the caller
/// is asked to stop: it ends a wait at once ([`Stopped::Cancelled`]). A call under way is not
/// interrupted by `cancel` (the caller bounds it; dropping the returned future drops it).
pub async fn retry<T, E, Fut, Op, C, CF>(
    policy: &Policy,
    mut op: Op,
    retryable: impl Fn(&E) -> bool,
    cancel: C,
    mut notify: impl FnMut(&E, Duration),
) -> Result<T, Stopped<E>>
where
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Fn() -> CF + 'static,
    CF: Future + 'static,
{
    let deadline = Instant::now() + policy.total;
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancelled);
    let sleeper = move |wait: Duration| {
        let cancel = cancel();
        let flag = Arc::clone(&flag);
        async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel => flag.store(true, Ordering::SeqCst),
            }
        }
    };
    let attempt = || {
        let call = (!cancelled.load(Ordering::SeqCst)).then(&mut op);
        async move {
            match call {
                Some(call) => call.await.map_err(Stopped::Failed),
                None => Err(Stopped::Cancelled),
            }
        }
    };
    attempt
        .retry(policy.backoff())
        .sleep(sleeper)
        .when(|err| matches!(err, Stopped::Failed(e) if retryable(e)))
        .adjust(move |_, wait| {
            let left = deadline.saturating_duration_since(Instant::now());
            wait.filter(|_| !left.is_zero()).map(|w| w.min(left))
        })
        .notify(|err, wait| {
            if let Stopped::Failed(err) = err {
                notify(err, wait);
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::sync::watch;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        Transient,
        Permanent,
    }

    fn transient(err: &Fault) -> bool {
        *err == Fault::Transient
    }

    /// Calls to an operation that fails with `fault` until call `succeed_on` (1-based; 0:
    /// never), and the instants of the calls.
    async fn run(
        policy: Policy,
        fault: Fault,
        succeed_on: u32,
    ) -> (Result<u32, Stopped<Fault>>, Vec<Duration>) {
        let start = Instant::now();
        let calls = std::cell::RefCell::new(Vec::new());
        let result = retry(
            &policy,
            || {
                calls.borrow_mut().push(start.elapsed());
                let n = calls.borrow().len() as u32;
                let fault = (n != succeed_on).then_some(fault);
                async move {
                    match fault {
                        None => Ok(n),
                        Some(f) => Err(f),
                    }
                }
            },
            transient,
            never(),
            |_, _| {},
        )
        .await;
        (result, calls.into_inner())
    }

    #[tokio::test(start_paused = true)]
    async fn issue14_stops_after_the_attempt_count() {
        let policy = Policy::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            4,
            Duration::from_secs(3600),
        );
        let (result, calls) = run(policy, Fault::Transient, 0).await;
        assert_eq!(result, Err(Stopped::Failed(Fault::Transient)));
        assert_eq!(calls.len(), 4, "{calls:?}");
        // The third call succeeds: no further call.
        let (result, calls) = run(policy, Fault::Transient, 3).await;
        assert_eq!(result, Ok(3));
        assert_eq!(calls.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn issue14_waits_grow_exponentially_within_their_jitter() {
        let policy = Policy::new(
            Duration::from_millis(100),
            Duration::from_millis(700),
            6,
            Duration::from_secs(3600),
        );
        let (_, calls) = run(policy, Fault::Transient, 0).await;
        assert_eq!(calls.len(), 6);
        let waits: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
        let caps = [100u64, 200, 400, 700, 700].map(Duration::from_millis);
        for (n, (wait, cap)) in waits.iter().zip(caps).enumerate() {
            assert_eq!(policy.max_wait(n as u32), cap);
            assert!(
                *wait >= cap / 2 && *wait < cap,
                "wait {n}: {wait:?} not in [{:?}, {cap:?})",
                cap / 2
            );
        }
    }

    #[test]
    fn issue14_jitter_stays_within_half_to_full_delay_and_varies() {
        let policy = Policy::new(
            Duration::from_secs(1),
            Duration::from_secs(8),
            6,
            Duration::from_secs(3600),
        );
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let waits: Vec<Duration> = policy.waits().collect();
            assert_eq!(waits.len(), 5, "one wait between each two of 6 calls");
            for (n, wait) in waits.iter().enumerate() {
                let cap = policy.max_wait(n as u32);
                assert!(*wait >= cap / 2 && *wait < cap, "wait {n}: {wait:?}");
            }
            firsts.insert(waits[0]);
        }
        assert!(
            firsts.len() > 100,
            "jitter is random: {} distinct first waits",
            firsts.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn issue14_the_total_bound_cuts_waits_and_ends_the_retries() {
        let policy = Policy::new(
            Duration::from_millis(400),
            Duration::from_secs(10),
            100,
            Duration::from_secs(1),
        );
        let (result, calls) = run(policy, Fault::Transient, 0).await;
        assert_eq!(result, Err(Stopped::Failed(Fault::Transient)));
        let last = calls.last().copied().unwrap_or_default();
        assert!(
            last <= Duration::from_secs(1),
            "no call after the bound: {calls:?}"
        );
        assert!(
            calls.len() < 5,
            "the bound, not the 100 attempts, ended it: {calls:?}"
        );
        assert_eq!(
            last,
            Duration::from_secs(1),
            "the last wait was cut to the bound"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn issue14_a_non_retryable_error_is_not_retried() {
        let (result, calls) = run(super::api_call(), Fault::Permanent, 0).await;
        assert_eq!(result, Err(Stopped::Failed(Fault::Permanent)));
        assert_eq!(calls, vec![Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn issue14_cancel_ends_a_wait_at_once_without_another_call() {
        let policy = Policy::new(
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            5,
            Duration::from_secs(7200),
        );
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = tx.send(true);
        });
        let start = Instant::now();
        let calls = Cell::new(0);
        let notified = Cell::new(0);
        let result: Result<(), _> = retry(
            &policy,
            || {
                calls.set(calls.get() + 1);
                async { Err(Fault::Transient) }
            },
            transient,
            move || {
                let mut rx = rx.clone();
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
            },
            |_, wait| {
                notified.set(notified.get() + 1);
                assert!(wait >= Duration::from_secs(1800));
            },
        )
        .await;
        assert_eq!(result, Err(Stopped::Cancelled));
        assert_eq!(calls.get(), 1);
        assert_eq!(notified.get(), 1);
        assert_eq!(start.elapsed(), Duration::from_millis(10));
    }

    #[test]
    fn issue14_named_policies_are_bounded() {
        for policy in [
            api_call(),
            conflict_reread(),
            pdb_eviction(Duration::from_secs(60)),
        ] {
            assert!(policy.attempts() >= 2);
            assert!(policy.total() <= Duration::from_secs(60));
            assert!(policy.max_wait(u32::MAX) <= Duration::from_secs(5));
        }
        let retries = crate::playbook::Retries::default();
        let from_step = step(&retries, Duration::from_secs(9));
        assert_eq!(from_step.attempts(), retries.attempts.max(1));
        assert_eq!(from_step.max_wait(0), retries.delay_after(0));
        assert_eq!(from_step.max_wait(40), retries.delay_after(40));
        assert_eq!(from_step.total(), Duration::from_secs(9));
    }
}
