//! The stores a keel process runs on, chosen once at start from the settings.

use std::sync::Arc;

use keel_adapters_memory::{MemoryHealth, MemoryIdempotencyStore};
use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_adapters_postgres::{PgHealth, PgIdempotencyStore, PgPool};
use keel_domain::StoreError;
use keel_domain::health::HealthProbe;
use keel_domain::idempotency::IdempotencyStore;

use crate::config::Settings;

/// Which system of record this process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In-process maps: the embedded default; nothing survives a restart.
    Memory,
    /// Postgres (`DATABASE_URL`).
    Postgres,
}

/// The port implementations every handler uses, behind trait objects.
#[derive(Clone)]
pub struct Stores {
    /// Which system of record is in use.
    pub backend: Backend,
    /// `Idempotency-Key` records.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// One probe per configured dependency, for `/readyz`.
    pub probes: Vec<Arc<dyn HealthProbe>>,
    postgres: Option<PgPool>,
}

impl Stores {
    /// The embedded in-memory stores.
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory,
            idempotency: Arc::new(MemoryIdempotencyStore::new()),
            probes: vec![Arc::new(MemoryHealth)],
            postgres: None,
        }
    }

    /// Stores on Postgres behind `pool`.
    pub fn postgres(pool: PgPool) -> Self {
        Self {
            backend: Backend::Postgres,
            idempotency: Arc::new(PgIdempotencyStore::new(pool.clone())),
            probes: vec![Arc::new(PgHealth::new(pool.clone()))],
            postgres: Some(pool),
        }
    }

    /// Connects the stores named by `settings`: Postgres when `DATABASE_URL` is set (migrating
    /// first when `KEEL_MIGRATE` is on), else memory.
    pub async fn connect(settings: &Settings) -> Result<Self, StoreError> {
        let Some(url) = settings.database_url() else {
            return Ok(Self::memory());
        };
        if settings.database.migrate {
            let applied = run_pending_migrations(url).await?;
            tracing::info!(count = applied.len(), ?applied, "migrations applied");
        }
        let pool = PgPool::connect(url, settings.database.pool_size).await?;
        Ok(Self::postgres(pool))
    }

    /// Closes every pool; in-flight users finish with the connections they hold.
    pub fn close(&self) {
        if let Some(pool) = &self.postgres {
            pool.close();
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Everything a handler can reach, shared by all workers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The settings this process started with.
    pub settings: Arc<Settings>,
    /// The stores.
    pub stores: Stores,
}
