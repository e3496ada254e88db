//! Readiness of the in-memory stores: always ready while the process lives.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::health::HealthProbe;

/// The [`HealthProbe`] of the embedded stores.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryHealth;

#[async_trait]
impl HealthProbe for MemoryHealth {
    fn dependency(&self) -> &'static str {
        "memory"
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
