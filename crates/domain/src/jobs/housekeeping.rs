//! The queue's own upkeep: deleting completed jobs once they are old.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{JobContext, JobFailure, JobHandler, JobKind, JobQueue, KindSettings};
use crate::Clock;

/// The `jobs.purge_completed` job: deletes completed jobs older than the retention. Dead jobs
/// stay until an admin retries or deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeCompletedJobs;

impl JobKind for PurgeCompletedJobs {
    const KIND: &'static str = "jobs.purge_completed";

    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 3,
            ..KindSettings::default()
        }
    }
}

/// Runs [`PurgeCompletedJobs`].
#[derive(Clone)]
pub struct PurgeCompletedJobsHandler {
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    retention: Duration,
}

impl PurgeCompletedJobsHandler {
    /// Keeps completed jobs of `queue` for `retention`.
    pub fn new(queue: Arc<dyn JobQueue>, clock: Arc<dyn Clock>, retention: Duration) -> Self {
        Self {
            queue,
            clock,
            retention,
        }
    }
}

#[async_trait]
impl JobHandler<PurgeCompletedJobs> for PurgeCompletedJobsHandler {
    async fn run(&self, _ctx: &JobContext, _job: PurgeCompletedJobs) -> Result<(), JobFailure> {
        let keep = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        self.queue.purge_completed(self.clock.now() - keep).await?;
        Ok(())
    }
}
