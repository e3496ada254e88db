//! The [`Timer`] port over tokio's clock.

use std::time::Duration;

use async_trait::async_trait;
use keel_domain::jobs::Timer;

/// Sleeps on the tokio runtime; the timer of keel's workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

#[async_trait]
impl Timer for TokioTimer {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
