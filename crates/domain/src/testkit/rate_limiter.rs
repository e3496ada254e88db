//! The contract every [`RateLimiter`] keeps.
//!
//! Every case uses a fresh random key and explicit `now` values (a fake clock that only moves
//! forward), with minute- and hour-long policies so a store that expires keys on its own (real)
//! clock never forgets a key while a case still needs it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use uuid::Uuid;

use crate::ratelimit::{Period, RateDecision, RateLimiter, RatePolicy};

/// Runs every case of the contract against `limiter`, starting at the real current time.
pub async fn run_all(limiter: &dyn RateLimiter) {
    burst_is_allowed_then_denied_with_retry_after(limiter).await;
    remaining_counts_down_and_reset_after_grows(limiter).await;
    budget_refills_one_request_per_interval(limiter).await;
    idle_key_gets_its_whole_burst_back(limiter).await;
    refused_requests_are_not_counted(limiter).await;
    keys_are_independent(limiter).await;
    concurrent_checks_allow_exactly_the_burst(limiter).await;
}

fn key() -> String {
    format!("contract:{}", Uuid::new_v4())
}

fn policy(count: u32, period: Period) -> RatePolicy {
    RatePolicy { count, period }
}

async fn check(
    limiter: &dyn RateLimiter,
    key: &str,
    policy: &RatePolicy,
    now: DateTime<Utc>,
) -> RateDecision {
    limiter
        .check(key, policy, now)
        .await
        .unwrap_or_else(|e| panic!("rate limiter failed: {e}"))
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

async fn burst_is_allowed_then_denied_with_retry_after(limiter: &dyn RateLimiter) {
    let (key, p, now) = (key(), policy(5, Period::Minute), Utc::now());
    for i in 0..5 {
        let d = check(limiter, &key, &p, now).await;
        assert!(d.allowed, "request {i} of the burst must pass: {d:?}");
        assert_eq!((d.limit, d.retry_after), (5, None));
    }
    for _ in 0..2 {
        let d = check(limiter, &key, &p, now).await;
        assert!(
            !d.allowed,
            "the request after the burst must be denied: {d:?}"
        );
        assert_eq!(d.limit, 5);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Some(Duration::from_secs(12)), "T = 60 s / 5");
        assert_eq!(d.retry_after_secs(), Some(12));
        assert_eq!(d.reset_after, Duration::from_secs(60));
    }
}

async fn remaining_counts_down_and_reset_after_grows(limiter: &dyn RateLimiter) {
    let (key, p, now) = (key(), policy(4, Period::Hour), Utc::now());
    for n in 1..=4u32 {
        let d = check(limiter, &key, &p, now).await;
        assert!(d.allowed);
        assert_eq!(d.remaining, 4 - n);
        assert_eq!(
            d.reset_after,
            Duration::from_secs(900 * u64::from(n)),
            "n × T, T = 15 min"
        );
    }
    let d = check(limiter, &key, &p, now + secs(600)).await;
    assert!(!d.allowed);
    assert_eq!(
        d.reset_after,
        Duration::from_secs(3_000),
        "the budget fills up over time"
    );
    assert_eq!(d.retry_after, Some(Duration::from_secs(300)));
}

async fn budget_refills_one_request_per_interval(limiter: &dyn RateLimiter) {
    let (key, p, now) = (key(), policy(2, Period::Minute), Utc::now());
    check(limiter, &key, &p, now).await;
    check(limiter, &key, &p, now).await;
    let early = check(
        limiter,
        &key,
        &p,
        now + secs(30) - TimeDelta::milliseconds(1),
    )
    .await;
    assert!(!early.allowed);
    assert_eq!(early.retry_after, Some(Duration::from_millis(1)));
    assert_eq!(early.retry_after_secs(), Some(1));
    let on_time = check(limiter, &key, &p, now + secs(30)).await;
    assert!(
        on_time.allowed,
        "one request refills after T = 30 s: {on_time:?}"
    );
    assert_eq!(on_time.remaining, 0);
    assert!(!check(limiter, &key, &p, now + secs(30)).await.allowed);
}

async fn idle_key_gets_its_whole_burst_back(limiter: &dyn RateLimiter) {
    let (key, p, now) = (key(), policy(3, Period::Minute), Utc::now());
    for _ in 0..3 {
        check(limiter, &key, &p, now).await;
    }
    let later = now + secs(60);
    for expected_remaining in [2, 1, 0] {
        let d = check(limiter, &key, &p, later).await;
        assert!(d.allowed);
        assert_eq!(d.remaining, expected_remaining);
    }
    assert!(!check(limiter, &key, &p, later).await.allowed);
}

async fn refused_requests_are_not_counted(limiter: &dyn RateLimiter) {
    let (key, p, now) = (key(), policy(1, Period::Minute), Utc::now());
    assert!(check(limiter, &key, &p, now).await.allowed);
    for s in [1, 10, 59] {
        let d = check(limiter, &key, &p, now + secs(s)).await;
        assert!(!d.allowed);
        assert_eq!(
            d.retry_after,
            Some(Duration::from_secs(60 - s.unsigned_abs()))
        );
    }
    assert!(check(limiter, &key, &p, now + secs(60)).await.allowed);
}

async fn keys_are_independent(limiter: &dyn RateLimiter) {
    let (a, b, p, now) = (key(), key(), policy(1, Period::Hour), Utc::now());
    assert!(check(limiter, &a, &p, now).await.allowed);
    assert!(!check(limiter, &a, &p, now).await.allowed);
    let other = check(limiter, &b, &p, now).await;
    assert!(other.allowed, "another key has its own budget: {other:?}");
    assert_eq!(other.remaining, 0);
}

async fn concurrent_checks_allow_exactly_the_burst(limiter: &dyn RateLimiter) {
    const N: u32 = 10;
    let (key, p, now) = (key(), policy(N, Period::Hour), Utc::now());
    let decisions = join_all((0..3 * N).map(|_| check(limiter, &key, &p, now))).await;
    let allowed = decisions.iter().filter(|d| d.allowed).count();
    assert_eq!(allowed, N as usize, "decisions: {decisions:?}");
    let mut remaining: Vec<u32> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.remaining)
        .collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..N).collect::<Vec<_>>(),
        "each allowed request saw its own budget"
    );
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allowed)
            .all(|d| d.retry_after == Some(Duration::from_secs(360)))
    );
}
