//! The `Timer` port: how the runtime-agnostic worker waits.

use std::time::Duration;

use async_trait::async_trait;

/// Sleeps; implemented over the host's async runtime (tokio in keel's adapters).
#[async_trait]
pub trait Timer: Send + Sync {
    /// Completes after `duration`.
    async fn sleep(&self, duration: Duration);
}
