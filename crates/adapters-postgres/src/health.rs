//! Readiness of Postgres: a trivial query on a pooled connection.

use async_trait::async_trait;
use diesel_async::SimpleAsyncConnection;
use keel_domain::StoreError;
use keel_domain::health::HealthProbe;

use crate::PgPool;
use crate::error::{POSTGRES, query_error};

/// The [`HealthProbe`] of Postgres.
#[derive(Debug, Clone)]
pub struct PgHealth {
    pool: PgPool,
}

impl PgHealth {
    /// Probes the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl HealthProbe for PgHealth {
    fn dependency(&self) -> &'static str {
        POSTGRES
    }

    async fn check(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        conn.batch_execute("SELECT 1").await.map_err(query_error)
    }
}
