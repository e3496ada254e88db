//! The job kinds keel runs and the periodic schedules it keeps.

use std::time::Duration;

use keel_domain::idempotency::{PurgeExpiredKeys, PurgeExpiredKeysHandler};
use keel_domain::jobs::{
    Every, JobRegistry, PeriodicJob, PurgeCompletedJobs, PurgeCompletedJobsHandler, ScheduleError,
};
use keel_domain::mail::{SendMail, SendMailHandler};

use crate::state::AppState;

/// How often old completed jobs are purged.
const JOBS_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Every job kind a keel node runs, with handlers over `state`'s stores.
pub fn registry(state: &AppState) -> JobRegistry {
    let stores = &state.stores;
    let clock = state.clock.clone();
    let retention = Duration::from_secs(state.settings.jobs.retention_hours.saturating_mul(3600));
    let mut registry = JobRegistry::new();
    registry
        .register::<SendMail>(SendMailHandler::new(
            stores.users.clone(),
            stores.mail_sender.clone(),
            clock.clone(),
        ))
        .register::<PurgeExpiredKeys>(PurgeExpiredKeysHandler::new(
            stores.idempotency.clone(),
            clock.clone(),
        ))
        .register::<PurgeCompletedJobs>(PurgeCompletedJobsHandler::new(
            stores.jobs.clone(),
            clock,
            retention,
        ));
    crate::products::register_jobs(&mut registry, state);
    registry
}

/// The periodic jobs: the idempotency purge every `KEEL_IDEMPOTENCY_PURGE_INTERVAL_SECS`, the
/// completed-job purge hourly, and every product's own (`products::periodic_jobs`).
pub fn periodic_jobs(state: &AppState) -> Result<Vec<PeriodicJob>, ScheduleError> {
    let purge_keys = Every::interval(Duration::from_secs(
        state.settings.idempotency.purge_interval_secs,
    ))?;
    let json = |e: serde_json::Error| ScheduleError::Cron {
        expression: "payload".into(),
        reason: e.to_string(),
    };
    let mut jobs = vec![
        PeriodicJob::new(purge_keys, &PurgeExpiredKeys).map_err(json)?,
        PeriodicJob::new(Every::interval(JOBS_PURGE_EVERY)?, &PurgeCompletedJobs).map_err(json)?,
    ];
    jobs.extend(crate::products::periodic_jobs(state)?);
    Ok(jobs)
}
