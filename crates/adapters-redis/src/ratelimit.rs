//! Rate limits shared by every node: the GCRA rule in one Lua script, one round trip per check.
//!
//! A key's TAT lives at `{prefix}:rl:{<subject>}` (the braces are a Redis Cluster hash tag), as
//! integer microseconds since the Unix epoch, and expires (`PX`) when its budget is full again,
//! so idle keys clean themselves up. The script is sent with `EVALSHA` and loaded on `NOSCRIPT`.
//!
//! **Clocks:** `now` comes from the calling node, not from Redis `TIME`, so the domain rule and
//! tests with a fake clock behave the same everywhere. Nodes must keep their clocks in sync
//! (NTP): a node whose clock runs δ ahead of the others sees δ more refill, i.e. at most δ / T
//! extra requests per key. The values stay exact as long as they are below 2⁵³ µs (year 2255),
//! since Lua computes with doubles.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::ratelimit::{RateDecision, RateLimiter, RatePolicy, gcra};
use redis::Script;

use crate::RedisPool;

/// KEYS[1]: the TAT key. ARGV: now (µs), emission interval T (µs), burst.
/// Returns `{allowed (0|1), stored TAT before this request (nil when none)}`.
const GCRA_LUA: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local stored = tonumber(redis.call('GET', KEYS[1]))
local tat = now
if stored and stored > now then
  tat = stored
end
local new_tat = tat + interval
if now < new_tat - interval * burst then
  return {0, stored or false}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, stored or false}
";

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_LUA));

/// The [`RateLimiter`] shared by every node using the same Redis and key prefix.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    pool: RedisPool,
}

impl RedisRateLimiter {
    /// A limiter storing its keys through `pool`.
    pub fn new(pool: RedisPool) -> Self {
        Self { pool }
    }

    /// The Redis key of `subject`: `{prefix}:rl:{<subject>}`.
    pub fn key(&self, subject: &str) -> String {
        self.pool.key(&format!("rl:{{{subject}}}"))
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(
        &self,
        key: &str,
        policy: &RatePolicy,
        now: DateTime<Utc>,
    ) -> Result<RateDecision, StoreError> {
        let now = gcra::micros(now);
        let key = self.key(key);
        let (allowed, stored): (i64, Option<i64>) = self
            .pool
            .run(|mut conn| async move {
                GCRA.key(key)
                    .arg(now)
                    .arg(policy.emission_interval_micros())
                    .arg(policy.burst())
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        // The script returns the state it decided on; the domain rule gives the full answer.
        let (decision, _) = gcra::decide(stored, now, policy);
        if decision.allowed != (allowed == 1) {
            return Err(StoreError::Corrupt(format!(
                "the Redis GCRA script answered {allowed} for TAT {stored:?} at {now}; the domain rule disagrees"
            )));
        }
        Ok(decision)
    }
}
