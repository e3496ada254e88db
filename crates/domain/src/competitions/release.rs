//! The `competitions.release_deleted` periodic job: the crash-safe path that frees the seats of
//! deleted accounts.
//!
//! Deleting an account anonymises its registrations at once (`user_id` set to NULL by the
//! foreign key) but frees their seats only when the in-process `UserDeleted` subscriber runs
//! [`CompetitionStore::release_user`]. That event is best effort (lost on a crash, a lagging
//! subscriber, a failed release or a shutdown), so this job sweeps the anonymised registrations
//! of competitions that have not started on a schedule: every seat of a deleted account is freed
//! within one period even when the event never arrived. The subscriber stays the fast path.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::store::CompetitionStore;
use crate::Clock;
use crate::jobs::{JobContext, JobFailure, JobHandler, JobKind, KindSettings};

/// Frees the seats of registrations anonymised by an account deletion, in competitions that
/// have not started (run once per schedule slot across nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDeletedSeats;

impl JobKind for ReleaseDeletedSeats {
    const KIND: &'static str = "competitions.release_deleted";

    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 3,
            ..KindSettings::default()
        }
    }
}

/// Runs [`ReleaseDeletedSeats`] against a store.
#[derive(Clone)]
pub struct ReleaseDeletedSeatsHandler {
    store: Arc<dyn CompetitionStore>,
    clock: Arc<dyn Clock>,
}

impl ReleaseDeletedSeatsHandler {
    /// Sweeps `store`, with "now" from `clock`.
    pub fn new(store: Arc<dyn CompetitionStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl JobHandler<ReleaseDeletedSeats> for ReleaseDeletedSeatsHandler {
    async fn run(&self, _ctx: &JobContext, _job: ReleaseDeletedSeats) -> Result<(), JobFailure> {
        self.store.release_anonymised(self.clock.now()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::SystemClock;
    use crate::competitions::MockCompetitionStore;
    use crate::jobs::JobId;

    #[test]
    fn the_job_sweeps_anonymised_registrations_at_now() {
        let mut store = MockCompetitionStore::new();
        let before = Utc::now();
        store
            .expect_release_anonymised()
            .withf(move |now| *now >= before)
            .times(1)
            .returning(|_| Ok(2));
        store.expect_release_user().never();
        let handler = ReleaseDeletedSeatsHandler::new(Arc::new(store), Arc::new(SystemClock));
        let ctx = JobContext {
            id: JobId(Uuid::nil()),
            attempt: 1,
            max_attempts: 3,
            created_at: Utc::now(),
        };
        let done = futures_executor::block_on(handler.run(&ctx, ReleaseDeletedSeats));
        assert!(done.is_ok());
    }
}
