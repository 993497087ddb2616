//! The daemon's clock: wall time for production, a virtual clock driven by `tokio::time` for
//! tests (under `tokio::time::pause()` it advances exactly as far as the test sleeps).

use jiff::{SignedDuration, Timestamp};

/// Where "now" comes from. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// `base` plus the `tokio::time` time elapsed since `start`.
    Virtual {
        /// The wall time at `start`.
        base: Timestamp,
        /// The tokio instant the clock was created.
        start: tokio::time::Instant,
    },
}

// === impl Clock ===

impl Clock {
    /// A virtual clock that reads `base` now and follows `tokio::time` from here.
    pub fn starting_at(base: Timestamp) -> Clock {
        Clock::Virtual {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Virtual { base, start } => {
                let elapsed =
                    SignedDuration::try_from(start.elapsed()).unwrap_or(SignedDuration::MAX);
                base.checked_add(elapsed).unwrap_or(*base)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn virtual_clock_follows_tokio_time() {
        let base: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let clock = Clock::starting_at(base);
        assert_eq!(clock.now(), base);
        tokio::time::sleep(std::time::Duration::from_secs(90)).await;
        assert_eq!(clock.now().to_string(), "2026-11-25T10:01:30Z");
    }
}
