//! The `JobQueue` port: durable storage of jobs, leases and outcomes.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AttemptError, ClaimedJob, EnqueueOutcome, Job, JobId, JobState, NewJob};
use crate::StoreError;

/// What a worker asks for when it claims work.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// Kinds the worker can run; other kinds are left alone.
    pub kinds: Vec<String>,
    /// Worker name, stored as `locked_by`.
    pub worker: String,
    /// Current time (from the worker's clock).
    pub now: DateTime<Utc>,
    /// How long the lease lasts without a heartbeat.
    pub lease: Duration,
    /// Most jobs to claim at once.
    pub limit: u32,
}

impl ClaimRequest {
    /// End of a lease taken now.
    pub fn lease_until(&self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX)
    }
}

/// The stored result of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Run again at this time.
    RetryAt(DateTime<Utc>),
    /// No attempts left, or the failure is permanent: the job is dead.
    Dead(DateTime<Utc>),
}

/// Which jobs an admin lists, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs created before this position (the previous page's last job).
    pub before: Option<(DateTime<Utc>, JobId)>,
    /// Page size.
    pub limit: u32,
}

/// How many jobs of one kind are in one state (queue depth, dead-letter size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount {
    /// Kind name.
    pub kind: String,
    /// State.
    pub state: JobState,
    /// Number of jobs.
    pub count: u64,
}

/// Result of an admin change to one job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    /// Done; the job as it is now (as it was, for a deletion).
    Changed(Box<Job>),
    /// No such job.
    NotFound,
    /// The job's state does not allow the change (a running job cannot be retried or deleted).
    NotAllowed(JobState),
}

/// Durable job storage.
///
/// Contract (proved for every adapter by `keel_domain::testkit::job_queue`):
/// - a due job is claimed by exactly one worker at a time; completing or failing needs the
///   claim's lease, so a worker whose lease ran out cannot overwrite the job's new holder;
/// - a job whose lease expired is rescued: retried while attempts remain, otherwise handed to
///   the rescuer so the kind's dead-letter hook runs before it is recorded dead;
/// - at most one job per (kind, uniqueness key) exists.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Stores a job (or finds the existing one with the same uniqueness key).
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<EnqueueOutcome, StoreError>;

    /// Leases up to `request.limit` due jobs of the requested kinds, highest priority and
    /// oldest `run_at` first; each claim counts one attempt.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Extends a lease that is still held; [`StoreError::Conflict`] once it was lost.
    async fn heartbeat(&self, claimed: &ClaimedJob, until: DateTime<Utc>)
    -> Result<(), StoreError>;

    /// Records success; [`StoreError::Conflict`] if the lease was lost.
    async fn complete(&self, claimed: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records success of `claimed` and claims the next due job for `next`, in one round trip
    /// where the adapter can (a busy worker's loop). The default completes, then claims; a
    /// failed claim only means no next job here (the worker's own claim will meet the error).
    async fn complete_and_claim(
        &self,
        claimed: &ClaimedJob,
        now: DateTime<Utc>,
        next: &ClaimRequest,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        self.complete(claimed, now).await?;
        Ok(self
            .claim(next)
            .await
            .map_or(None, |claimed| claimed.into_iter().next()))
    }

    /// Records a failed attempt and what follows; [`StoreError::Conflict`] if the lease was lost.
    async fn fail(
        &self,
        claimed: &ClaimedJob,
        error: AttemptError,
        next: AfterFailure,
    ) -> Result<(), StoreError>;

    /// Spends a held job's remaining attempts (`attempt` becomes `max_attempts`; its failure was
    /// permanent; an admin retry restores the full budget) and keeps the lease:
    /// should the lease then expire before the job is recorded dead, the rescuer hands it back for
    /// its dead-letter hook instead of running it again. [`StoreError::Conflict`] if the lease
    /// was lost.
    async fn exhaust(&self, claimed: &ClaimedJob) -> Result<(), StoreError>;

    /// Gives a claimed job back unrun (graceful shutdown): available at once, attempt not counted.
    async fn release(&self, claimed: &ClaimedJob) -> Result<(), StoreError>;

    /// Handles jobs whose lease expired at `request.now` (their worker died): those with attempts
    /// left become available again with the lost attempt recorded; exhausted ones are leased to
    /// the caller and returned, for their dead-letter hook and [`JobQueue::fail`].
    async fn rescue_expired(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError>;

    /// One job.
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Jobs matching `filter`, newest first.
    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;

    /// Runs a dead or waiting job again now; a dead job gets a fresh attempt budget.
    async fn retry(&self, id: JobId, now: DateTime<Utc>) -> Result<JobChange, StoreError>;

    /// Deletes a job that is not running.
    async fn delete(&self, id: JobId) -> Result<JobChange, StoreError>;

    /// Jobs per kind and state.
    async fn counts(&self) -> Result<Vec<JobCount>, StoreError>;

    /// Deletes completed jobs that finished before `before`; returns how many.
    async fn purge_completed(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// A number that changes whenever new work may be due (a job enqueued, released or retried,
    /// here or on another node). Read it before claiming, then wait with [`JobQueue::work_changed`].
    fn work_generation(&self) -> u64;

    /// Returns once [`JobQueue::work_generation`] differs from `seen` (at once if it already does).
    /// Adapters without notifications may never return; workers also poll.
    async fn work_changed(&self, seen: u64);
}
