//! Rows of the `jobs` table and their translation into the domain's [`Job`].

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use keel_domain::StoreError;
use keel_domain::jobs::{AttemptError, ClaimedJob, Job, JobId, JobState};
use uuid::Uuid;

use crate::schema::jobs;

/// Every column of `jobs`, for hand-written statements (`RETURNING` lists).
pub(super) const JOB_COLUMNS: &str = "id, kind, payload, priority, state, attempt, max_attempts, \
     run_at, unique_key, errors, created_at, started_at, finished_at, locked_by, locked_until, \
     lease_id";

/// One stored job, as read by the query builder or by `sql_query`.
#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = jobs)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub(super) struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub state: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub unique_key: Option<String>,
    pub errors: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub lease_id: Option<Uuid>,
}

fn corrupt(id: Uuid, what: &str) -> StoreError {
    StoreError::Corrupt(format!("job {id}: {what}"))
}

impl JobRow {
    /// The domain's view of the row.
    pub fn into_job(self) -> Result<Job, StoreError> {
        let id = self.id;
        let state = JobState::parse(&self.state).ok_or_else(|| corrupt(id, "state"))?;
        let attempt = u32::try_from(self.attempt).map_err(|_| corrupt(id, "attempt"))?;
        let max_attempts =
            u32::try_from(self.max_attempts).map_err(|_| corrupt(id, "max_attempts"))?;
        let errors: Vec<AttemptError> =
            serde_json::from_value(self.errors).map_err(|e| corrupt(id, &e.to_string()))?;
        Ok(Job {
            id: JobId(id),
            kind: self.kind,
            payload: self.payload,
            priority: self.priority,
            state,
            attempt,
            max_attempts,
            run_at: self.run_at,
            unique_key: self.unique_key,
            errors,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            locked_by: self.locked_by,
            locked_until: self.locked_until,
        })
    }

    /// The row of a job just leased: the job with its lease.
    pub fn into_claimed(self) -> Result<ClaimedJob, StoreError> {
        let lease = self.lease_id.ok_or_else(|| corrupt(self.id, "lease"))?;
        Ok(ClaimedJob {
            job: self.into_job()?,
            lease,
        })
    }
}

/// Converts rows, failing on the first unreadable one.
pub(super) fn into_jobs(rows: Vec<JobRow>) -> Result<Vec<Job>, StoreError> {
    rows.into_iter().map(JobRow::into_job).collect()
}

/// Converts rows of leased jobs.
pub(super) fn into_claimed(rows: Vec<JobRow>) -> Result<Vec<ClaimedJob>, StoreError> {
    rows.into_iter().map(JobRow::into_claimed).collect()
}
