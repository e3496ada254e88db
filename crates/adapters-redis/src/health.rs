//! Readiness of Redis: one `PING`.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::health::HealthProbe;

use crate::RedisPool;

/// The [`HealthProbe`] of Redis.
#[derive(Debug, Clone)]
pub struct RedisHealth {
    pool: RedisPool,
}

impl RedisHealth {
    /// A probe that pings through `pool`.
    pub fn new(pool: RedisPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl HealthProbe for RedisHealth {
    fn dependency(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.pool.ping().await
    }
}
