//! When a failed attempt runs again: exponential backoff with jitter, or a fixed schedule.

use std::time::Duration;

/// The wait before each retry of a job kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    /// `base · 2^(attempt-1)`, capped at `max`, with "equal jitter": the wait is drawn uniformly
    /// from the upper half of that value, so retries of many failed jobs spread out.
    Exponential {
        /// Wait after the first failure.
        base: Duration,
        /// Largest wait.
        max: Duration,
    },
    /// Exact waits after failure 1, 2, …; the last repeats if attempts outlast the list.
    Schedule(Vec<Duration>),
}

impl Default for Backoff {
    /// 1 s doubling up to 1 h, with jitter.
    fn default() -> Self {
        Self::Exponential {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// A fixed schedule of waits in seconds.
    pub fn seconds(waits: &[u64]) -> Self {
        Self::Schedule(waits.iter().map(|s| Duration::from_secs(*s)).collect())
    }

    /// The wait after failed attempt `attempt` (1-based). `random` is uniform in `[0, 1)` and
    /// only moves exponential waits; schedules are exact.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        match self {
            Self::Schedule(waits) => {
                let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
                waits
                    .get(index)
                    .or_else(|| waits.last())
                    .copied()
                    .unwrap_or_default()
            }
            Self::Exponential { base, max } => {
                let doublings = attempt.saturating_sub(1).min(40);
                let full = base
                    .checked_mul(1u32 << doublings.min(31))
                    .map_or(*max, |d| d.min(*max));
                let half = full / 2;
                half + half.mul_f64(random.clamp(0.0, 1.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_exact_and_repeat_their_last_wait() {
        let b = Backoff::seconds(&[2, 4, 8]);
        let waits: Vec<_> = (1..=5).map(|a| b.delay(a, 0.9).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 8, 8]);
        assert_eq!(Backoff::Schedule(vec![]).delay(1, 0.5), Duration::ZERO);
    }

    #[test]
    fn exponential_doubles_within_jitter_bounds_and_caps() {
        let b = Backoff::Exponential {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        for attempt in 1..=10u32 {
            let full = (2u64 << (attempt - 1)).min(60);
            let low = b.delay(attempt, 0.0).as_secs_f64();
            let high = b.delay(attempt, 0.999_999).as_secs_f64();
            assert!((low - full as f64 / 2.0).abs() < 1e-6, "attempt {attempt}");
            assert!(
                high <= full as f64 && high > full as f64 * 0.99,
                "attempt {attempt}"
            );
        }
        // Huge attempt numbers do not overflow.
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(60));
    }
}
