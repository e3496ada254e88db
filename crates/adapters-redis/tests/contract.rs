#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Redis adapters against a real Redis (`REDIS_URL`); skipped without one unless
//! `KEEL_REQUIRE_SERVICES=1`.

use std::time::{Duration, Instant};

use chrono::Utc;
use keel_adapters_redis::testkit::test_redis;
use keel_adapters_redis::{RedisHealth, RedisPool, RedisRateLimiter};
use keel_domain::StoreError;
use keel_domain::health::HealthProbe;
use keel_domain::ratelimit::{Period, RateLimiter, RatePolicy};

#[tokio::test(flavor = "multi_thread")]
async fn rate_limiter_keeps_the_contract() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(redis.pool().clone());
    keel_domain::testkit::rate_limiter::run_all(&limiter).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_one_budget() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let nodes = [
        RedisRateLimiter::new(redis.pool().clone()),
        RedisRateLimiter::new(redis.another_node().await),
    ];
    let policy = RatePolicy {
        count: 4,
        period: Period::Hour,
    };
    let now = Utc::now();
    for i in 0..4 {
        let d = nodes[i % 2]
            .check("auth:ip:192.0.2.7", &policy, now)
            .await
            .unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 3 - u32::try_from(i).unwrap());
    }
    for node in &nodes {
        let d = node.check("auth:ip:192.0.2.7", &policy, now).await.unwrap();
        assert!(!d.allowed, "the budget is shared: {d:?}");
        assert_eq!(d.retry_after, Some(Duration::from_secs(900)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_has_the_hash_tag_and_expires_when_the_budget_is_full() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(redis.pool().clone());
    let key = limiter.key("score:user:42");
    assert_eq!(
        key,
        format!("{}:rl:{{score:user:42}}", redis.pool().prefix())
    );
    let policy = RatePolicy {
        count: 10,
        period: Period::Minute,
    };
    let now = Utc::now();
    limiter.check("score:user:42", &policy, now).await.unwrap();
    let d = limiter.check("score:user:42", &policy, now).await.unwrap();
    assert_eq!(d.reset_after, Duration::from_secs(12));
    let pttl: i64 = redis
        .pool()
        .run(|mut conn| async move { redis::cmd("PTTL").arg(key).query_async(&mut conn).await })
        .await
        .unwrap();
    assert!(
        (10_000..=12_000).contains(&pttl),
        "PTTL {pttl} ms, expected about 12 s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_test_redis_deletes_its_keys() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let prefix = redis.pool().prefix().to_owned();
    let other = redis.another_node().await;
    let policy = RatePolicy {
        count: 1,
        period: Period::Hour,
    };
    RedisRateLimiter::new(other.clone())
        .check("x", &policy, Utc::now())
        .await
        .unwrap();
    drop(redis);
    let pattern = format!("{prefix}:*");
    let (_, keys): (u64, Vec<String>) = other
        .run(|mut conn| async move {
            redis::cmd("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await
        })
        .await
        .unwrap();
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_pings_redis() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let health = RedisHealth::new(redis.pool().clone());
    assert_eq!(health.dependency(), "redis");
    health.check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_redis_is_unavailable_quickly() {
    let started = Instant::now();
    let err = RedisPool::connect("redis://127.0.0.1:1", 2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                dependency: "redis",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let err = RedisPool::connect("not a url", 2).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                dependency: "redis",
                ..
            }
        ),
        "{err:?}"
    );
}
