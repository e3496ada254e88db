//! The answer of a rate limit check, with what the HTTP layer needs for its headers.

use std::time::Duration;

/// Whether one request may proceed, and the state of its key's budget afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed (it has been counted) or must be refused with 429.
    pub allowed: bool,
    /// The policy's burst size (its `count`).
    pub limit: u32,
    /// Requests that could still be made at once right now, after this one.
    pub remaining: u32,
    /// Time until the budget is full again (zero when it already is).
    pub reset_after: Duration,
    /// When refused: time until one request would be allowed. `None` when allowed.
    pub retry_after: Option<Duration>,
}

impl RateDecision {
    /// `retry_after` rounded up to whole seconds and at least 1, for the `Retry-After` header.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| ceil_secs(d).max(1))
    }

    /// `reset_after` rounded up to whole seconds (the `t` of the `RateLimit` header).
    pub fn reset_after_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(retry_after: Duration) -> RateDecision {
        RateDecision {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset_after: retry_after,
            retry_after: Some(retry_after),
        }
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(denied(Duration::from_micros(1)).retry_after_secs(), Some(1));
        assert_eq!(denied(Duration::ZERO).retry_after_secs(), Some(1));
        assert_eq!(denied(Duration::from_secs(2)).retry_after_secs(), Some(2));
        assert_eq!(
            denied(Duration::from_millis(2_001)).retry_after_secs(),
            Some(3)
        );
        let allowed = RateDecision {
            allowed: true,
            retry_after: None,
            ..denied(Duration::ZERO)
        };
        assert_eq!(allowed.retry_after_secs(), None);
    }

    #[test]
    fn reset_after_rounds_up_and_may_be_zero() {
        assert_eq!(denied(Duration::ZERO).reset_after_secs(), 0);
        assert_eq!(denied(Duration::from_millis(1_500)).reset_after_secs(), 2);
    }
}
