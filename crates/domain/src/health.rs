//! The `HealthProbe` port: how readiness asks each configured store whether it can serve.

use async_trait::async_trait;

use crate::StoreError;

/// A dependency that can say whether it is reachable right now.
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Short name of the dependency, shown in readiness answers (`"postgres"`, `"redis"`, `"memory"`).
    fn dependency(&self) -> &'static str;

    /// Succeeds when the dependency answered a trivial request.
    async fn check(&self) -> Result<(), StoreError>;
}
