//! The generic cell rate algorithm (GCRA), as a pure function over the stored TAT.
//!
//! Time is integer **microseconds since the Unix epoch** ([`micros`]). With the emission
//! interval T = `period / count` (see [`RatePolicy::emission_interval_micros`]) and burst
//! B = `count`, a key's whole state is its theoretical arrival time (TAT): the instant at which
//! its budget would be full again. A request at `now` is allowed when
//! `now >= max(TAT, now) + T - B·T`, and then moves the TAT to `max(TAT, now) + T`. This is the
//! token bucket of capacity B refilled one token per T, stored as one number. A key whose TAT
//! is not after `now` is in the same state as a key never seen, so stores may forget it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{RateDecision, RatePolicy};

/// `now` as integer microseconds since the Unix epoch, the time unit of [`decide`].
pub fn micros(now: DateTime<Utc>) -> i64 {
    now.timestamp_micros()
}

/// Decides one request at `now` given the key's stored TAT (`None` when the key has none).
///
/// Returns the decision and the TAT to store: `Some` when the request was allowed, `None` when
/// it was refused (the stored state must not change). After an allowed request the key may be
/// forgotten after `decision.reset_after`.
pub fn decide(tat: Option<i64>, now: i64, policy: &RatePolicy) -> (RateDecision, Option<i64>) {
    let interval = policy.emission_interval_micros();
    let burst = policy.burst();
    let tat = tat.map_or(now, |tat| tat.max(now));
    let new_tat = tat.saturating_add(interval);
    let allow_at = new_tat.saturating_sub(interval.saturating_mul(i64::from(burst)));
    if now < allow_at {
        let decision = RateDecision {
            allowed: false,
            limit: burst,
            remaining: 0,
            reset_after: duration(tat - now),
            retry_after: Some(duration(allow_at - now)),
        };
        return (decision, None);
    }
    let remaining = ((now - allow_at) / interval).min(i64::from(burst - 1));
    let decision = RateDecision {
        allowed: true,
        limit: burst,
        remaining: u32::try_from(remaining).unwrap_or(0),
        reset_after: duration(new_tat - now),
        retry_after: None,
    };
    (decision, Some(new_tat))
}

fn duration(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ratelimit::Period;

    const NOW: i64 = 1_800_000_000_000_000;

    fn policy(count: u32, period: Period) -> RatePolicy {
        RatePolicy { count, period }
    }

    /// Applies `decide` and stores the result, like an adapter does.
    fn check(tat: &mut Option<i64>, now: i64, policy: &RatePolicy) -> RateDecision {
        let (decision, new_tat) = decide(*tat, now, policy);
        if let Some(new_tat) = new_tat {
            *tat = Some(new_tat);
        }
        decision
    }

    #[test]
    fn exactly_count_immediate_requests_are_allowed_then_denied() {
        let p = policy(5, Period::Minute);
        let mut tat = None;
        for expected_remaining in (0..5).rev() {
            let d = check(&mut tat, NOW, &p);
            assert!(d.allowed);
            assert_eq!(d.limit, 5);
            assert_eq!(d.remaining, expected_remaining);
            assert_eq!(d.retry_after, None);
        }
        let denied = check(&mut tat, NOW, &p);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 0);
        assert_eq!(denied.retry_after, Some(Duration::from_secs(12)));
        assert_eq!(denied.reset_after, Duration::from_secs(60));
        assert_eq!(denied.retry_after_secs(), Some(12));
    }

    #[test]
    fn one_more_request_is_allowed_after_one_emission_interval() {
        let p = policy(2, Period::Second);
        let mut tat = None;
        check(&mut tat, NOW, &p);
        check(&mut tat, NOW, &p);
        let early = check(&mut tat, NOW + 499_999, &p);
        assert!(!early.allowed);
        assert_eq!(early.retry_after, Some(Duration::from_micros(1)));
        assert_eq!(early.retry_after_secs(), Some(1));
        let on_time = check(&mut tat, NOW + 500_000, &p);
        assert!(on_time.allowed);
        assert_eq!(on_time.remaining, 0);
        assert!(!check(&mut tat, NOW + 500_000, &p).allowed);
    }

    #[test]
    fn retry_after_is_exactly_when_the_next_request_passes() {
        let p = policy(3, Period::Hour);
        let mut tat = None;
        for _ in 0..3 {
            check(&mut tat, NOW, &p);
        }
        let later = NOW + 7 * 60 * 1_000_000;
        let denied = check(&mut tat, later, &p);
        let retry = denied
            .retry_after
            .map(|d| d.as_micros())
            .unwrap_or_default();
        assert_eq!(retry, 13 * 60 * 1_000_000);
        let retry = i64::try_from(retry).unwrap_or(i64::MAX);
        assert!(!check(&mut tat, later + retry - 1, &p).allowed);
        assert!(check(&mut tat, later + retry, &p).allowed);
    }

    #[test]
    fn reset_after_measures_until_the_budget_is_full() {
        let p = policy(4, Period::Minute);
        let mut tat = None;
        assert_eq!(
            check(&mut tat, NOW, &p).reset_after,
            Duration::from_secs(15)
        );
        assert_eq!(
            check(&mut tat, NOW, &p).reset_after,
            Duration::from_secs(30)
        );
        let idle = check(&mut tat, NOW + 60_000_000, &p);
        assert_eq!(
            (idle.remaining, idle.reset_after),
            (3, Duration::from_secs(15))
        );
    }

    #[test]
    fn refused_requests_do_not_change_the_state() {
        let p = policy(1, Period::Second);
        let (_, tat) = decide(None, NOW, &p);
        let (denied, stored) = decide(tat, NOW + 10, &p);
        assert!(!denied.allowed);
        assert_eq!(stored, None);
    }

    #[test]
    fn a_lagging_clock_gains_nothing() {
        let p = policy(2, Period::Minute);
        let mut tat = None;
        check(&mut tat, NOW, &p);
        check(&mut tat, NOW, &p);
        assert!(!check(&mut tat, NOW - 5_000_000, &p).allowed);
    }

    #[test]
    fn stale_state_counts_as_a_full_budget() {
        let p = policy(3, Period::Second);
        let fresh = decide(None, NOW, &p);
        assert_eq!(decide(Some(NOW - 1), NOW, &p), fresh);
        assert_eq!(decide(Some(NOW), NOW, &p), fresh);
    }

    /// Reference model: a token bucket of capacity `count`, refilled one token per T, with its
    /// level kept exactly as "microseconds of refill" (one token = T) in integers.
    struct TokenBucket {
        interval: i64,
        capacity: i64,
        level: i64,
        last: Option<i64>,
    }

    impl TokenBucket {
        fn new(policy: &RatePolicy) -> Self {
            let interval = policy.emission_interval_micros();
            let capacity = interval * i64::from(policy.count);
            Self {
                interval,
                capacity,
                level: capacity,
                last: None,
            }
        }

        /// (allowed, remaining, retry_after µs, reset_after µs)
        fn take(&mut self, now: i64) -> (bool, i64, Option<i64>, i64) {
            let elapsed = self.last.map_or(0, |last| now - last);
            self.level = (self.level + elapsed).min(self.capacity);
            self.last = Some(now);
            if self.level >= self.interval {
                self.level -= self.interval;
                let remaining = self.level / self.interval;
                (true, remaining, None, self.capacity - self.level)
            } else {
                (
                    false,
                    0,
                    Some(self.interval - self.level),
                    self.capacity - self.level,
                )
            }
        }
    }

    fn period() -> impl Strategy<Value = Period> {
        prop_oneof![
            Just(Period::Second),
            Just(Period::Minute),
            Just(Period::Hour)
        ]
    }

    proptest! {
        #[test]
        fn gcra_agrees_with_a_token_bucket(
            count in 1u32..=20,
            period in period(),
            gaps in prop::collection::vec((0u8..4, 0u32..1_000_000), 1..200),
        ) {
            let p = policy(count, period);
            let interval = p.emission_interval_micros();
            let mut model = TokenBucket::new(&p);
            let mut tat = None;
            let mut now = NOW;
            for (kind, fraction) in gaps {
                // Many requests at the same instant, others a fraction of T to a few T apart.
                now += match kind {
                    0 => 0,
                    1 => interval * i64::from(fraction) / 1_000_000,
                    2 => interval,
                    _ => interval * 3 * i64::from(fraction) / 1_000_000,
                };
                let d = check(&mut tat, now, &p);
                let (allowed, remaining, retry_after, reset_after) = model.take(now);
                prop_assert_eq!(d.allowed, allowed, "at {}", now - NOW);
                prop_assert_eq!(i64::from(d.remaining), remaining);
                prop_assert_eq!(d.retry_after.map(|r| r.as_micros() as i64), retry_after);
                prop_assert_eq!(d.reset_after.as_micros() as i64, reset_after);
                prop_assert_eq!(d.limit, count);
            }
        }

        #[test]
        fn never_more_than_burst_plus_refills_in_any_window(
            count in 1u32..=10,
            offsets in prop::collection::vec(0i64..10_000_000, 1..100),
        ) {
            let p = policy(count, Period::Second);
            let interval = p.emission_interval_micros();
            let mut times = offsets;
            times.sort_unstable();
            let mut tat = None;
            let allowed: Vec<i64> = times
                .into_iter()
                .filter(|&t| check(&mut tat, NOW + t, &p).allowed)
                .collect();
            // In any window [a, b] at most count + (b - a) / T requests pass.
            for (i, a) in allowed.iter().enumerate() {
                for (j, b) in allowed.iter().enumerate().skip(i) {
                    let passed = i64::try_from(j - i + 1).unwrap_or(i64::MAX);
                    prop_assert!(passed <= i64::from(count) + (b - a) / interval);
                }
            }
        }
    }
}
