//! Rate limits shared by every node: the GCRA rule in one Lua script, one round trip per batch.
//!
//! A key's TAT lives at `{prefix}:rl:{<subject>}` (the braces are a Redis Cluster hash tag), as
//! integer microseconds since the Unix epoch, and expires (`PX`) when its budget is full again,
//! so idle keys clean themselves up. The script is sent with `EVALSHA` and loaded on `NOSCRIPT`.
//!
//! **Hot keys:** checks of one key that arrive while that key's round trip is out wait for it
//! and then travel together, as one script call deciding them in arrival order (see
//! [`coalesce`]). The answers are those of the same checks made one after another, so a flood
//! from one subject costs Redis one call per round trip instead of one per request.
//!
//! **Clocks:** `now` comes from the calling node, not from Redis `TIME`, so the domain rule and
//! tests with a fake clock behave the same everywhere. Nodes must keep their clocks in sync
//! (NTP): a node whose clock runs δ ahead of the others sees δ more refill, i.e. at most δ / T
//! extra requests per key. The values stay exact as long as they are below 2⁵³ µs (year 2255),
//! since Lua computes with doubles.

mod coalesce;

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::ratelimit::{RateDecision, RateLimiter, RatePolicy, gcra};
use redis::Script;

use self::coalesce::{Batch, Coalescer, RunBatch, Verdict};
use crate::RedisPool;

/// KEYS[1]: the TAT key. ARGV: emission interval T (µs), burst, then the `now` (µs) of each
/// request, in order. Decides them one after another, stores the final TAT once, and returns
/// `{allowed (0|1), stored TAT before that request (nil when none)}` for each, flattened.
const GCRA_LUA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
local changed = false
local latest = 0
local out = {}
for i = 3, #ARGV do
  local now = tonumber(ARGV[i])
  if now > latest then
    latest = now
  end
  local base = now
  if tat and tat > now then
    base = tat
  end
  local new_tat = base + interval
  if now < new_tat - interval * burst then
    out[#out + 1] = 0
    out[#out + 1] = tat or false
  else
    out[#out + 1] = 1
    out[#out + 1] = tat or false
    tat = new_tat
    changed = true
  end
end
if changed then
  local ttl_ms = math.ceil((tat - latest) / 1000)
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', ttl_ms))
end
return out
";

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_LUA));

/// The [`RateLimiter`] shared by every node using the same Redis and key prefix.
#[derive(Clone)]
pub struct RedisRateLimiter {
    pool: RedisPool,
    coalescer: Arc<Coalescer>,
    run: Arc<RunBatch>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("pool", &self.pool)
            .field("round_trips", &self.round_trips())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter storing its keys through `pool`.
    pub fn new(pool: RedisPool) -> Self {
        let run: Arc<RunBatch> = {
            let pool = pool.clone();
            Arc::new(move |batch: Batch| {
                let pool = pool.clone();
                Box::pin(async move { run_batch(&pool, &batch).await })
            })
        };
        Self {
            pool,
            coalescer: Arc::default(),
            run,
        }
    }

    /// The Redis key of `subject`: `{prefix}:rl:{<subject>}`.
    pub fn key(&self, subject: &str) -> String {
        self.pool.key(&format!("rl:{{{subject}}}"))
    }

    /// Script calls made so far by this limiter (and its clones): fewer than checks when
    /// concurrent checks of one key were decided together.
    pub fn round_trips(&self) -> u64 {
        self.coalescer.round_trips()
    }
}

/// Decides `batch` in one script call.
async fn run_batch(pool: &RedisPool, batch: &Batch) -> Result<Vec<Verdict>, StoreError> {
    let flat: Vec<Option<i64>> = pool
        .run(|mut conn| async move {
            let mut call = GCRA.key(&batch.key);
            call.arg(batch.interval).arg(batch.burst).arg(&batch.nows);
            call.invoke_async(&mut conn).await
        })
        .await?;
    if flat.len() != 2 * batch.nows.len() {
        return Err(StoreError::Corrupt(format!(
            "the Redis GCRA script answered {} values for {} requests",
            flat.len(),
            batch.nows.len()
        )));
    }
    flat.chunks_exact(2)
        .map(|pair| match pair[0] {
            Some(allowed @ (0 | 1)) => Ok(Verdict {
                allowed: allowed == 1,
                stored: pair[1],
            }),
            other => Err(StoreError::Corrupt(format!(
                "the Redis GCRA script answered {other:?} for a decision"
            ))),
        })
        .collect()
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
        let verdict = self
            .coalescer
            .decide(self.key(key), *policy, now, Arc::clone(&self.run))
            .await?;
        // The script returns the state it decided on; the domain rule gives the full answer.
        let (decision, _) = gcra::decide(verdict.stored, now, policy);
        if decision.allowed != verdict.allowed {
            return Err(StoreError::Corrupt(format!(
                "the Redis GCRA script answered {} for TAT {:?} at {now}; the domain rule disagrees",
                verdict.allowed, verdict.stored
            )));
        }
        Ok(decision)
    }
}
