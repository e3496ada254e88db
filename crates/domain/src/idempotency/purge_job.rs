//! The `idempotency.purge` periodic job: deletes expired `Idempotency-Key` records.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::IdempotencyStore;
use crate::Clock;
use crate::jobs::{JobContext, JobFailure, JobHandler, JobKind, KindSettings};

/// Deletes every idempotency record that expired (run once per schedule slot across nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeExpiredKeys;

impl JobKind for PurgeExpiredKeys {
    const KIND: &'static str = "idempotency.purge";

    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 3,
            ..KindSettings::default()
        }
    }
}

/// Runs [`PurgeExpiredKeys`] against a store.
#[derive(Clone)]
pub struct PurgeExpiredKeysHandler {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
}

impl PurgeExpiredKeysHandler {
    /// Purges `store` by `clock`.
    pub fn new(store: Arc<dyn IdempotencyStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl JobHandler<PurgeExpiredKeys> for PurgeExpiredKeysHandler {
    async fn run(&self, _ctx: &JobContext, _job: PurgeExpiredKeys) -> Result<(), JobFailure> {
        self.store.purge_expired(self.clock.now()).await?;
        Ok(())
    }
}
