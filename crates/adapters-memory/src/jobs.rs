//! The job queue in memory: one lock over every job, a `Notify` for wake-ups.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::jobs::{
    AfterFailure, AttemptError, ClaimRequest, ClaimedJob, EnqueueOutcome, Job, JobChange, JobCount,
    JobFilter, JobId, JobQueue, JobState, NewJob,
};
use tokio::sync::Notify;
use uuid::Uuid;

/// Error recorded for an attempt whose worker stopped renewing its lease.
const LEASE_EXPIRED: &str = "lease expired: the worker stopped responding";

#[derive(Debug, Default)]
struct Jobs {
    by_id: HashMap<JobId, Job>,
    leases: HashMap<JobId, Uuid>,
    unique: HashMap<(String, String), JobId>,
}

impl Jobs {
    fn insert(&mut self, new: NewJob, now: DateTime<Utc>) -> EnqueueOutcome {
        if let Some(key) = &new.unique_key
            && let Some(id) = self.unique.get(&(new.kind.clone(), key.clone()))
        {
            return EnqueueOutcome::Duplicate(*id);
        }
        let id = JobId(Uuid::now_v7());
        if let Some(key) = &new.unique_key {
            self.unique.insert((new.kind.clone(), key.clone()), id);
        }
        let job = Job {
            id,
            kind: new.kind,
            payload: new.payload,
            priority: new.priority,
            state: JobState::Available,
            attempt: 0,
            max_attempts: new.max_attempts.max(1),
            run_at: new.run_at,
            unique_key: new.unique_key,
            errors: Vec::new(),
            created_at: now,
            started_at: None,
            finished_at: None,
            locked_by: None,
            locked_until: None,
        };
        self.by_id.insert(id, job);
        EnqueueOutcome::Enqueued(id)
    }

    /// The job `claimed` refers to, if `claimed` still holds its lease.
    fn held(&mut self, claimed: &ClaimedJob) -> Result<&mut Job, StoreError> {
        let id = claimed.job.id;
        if self.leases.get(&id) != Some(&claimed.lease) {
            return Err(StoreError::Conflict(format!("lease on job {id} was lost")));
        }
        self.by_id
            .get_mut(&id)
            .ok_or_else(|| StoreError::Conflict(format!("job {id} is gone")))
    }

    fn lease(&mut self, id: JobId, request: &ClaimRequest) -> Option<ClaimedJob> {
        let job = self.by_id.get_mut(&id)?;
        let lease = Uuid::new_v4();
        job.state = JobState::Running;
        job.locked_by = Some(request.worker.clone());
        job.locked_until = Some(request.lease_until());
        self.leases.insert(id, lease);
        Some(ClaimedJob {
            job: job.clone(),
            lease,
        })
    }

    fn unlock(&mut self, id: JobId) {
        self.leases.remove(&id);
        if let Some(job) = self.by_id.get_mut(&id) {
            job.locked_by = None;
            job.locked_until = None;
        }
    }

    fn remove(&mut self, id: JobId) -> Option<Job> {
        let job = self.by_id.remove(&id)?;
        self.leases.remove(&id);
        if let Some(key) = &job.unique_key {
            self.unique.remove(&(job.kind.clone(), key.clone()));
        }
        Some(job)
    }
}

/// [`JobQueue`] in memory. Clones share one queue.
#[derive(Debug, Clone, Default)]
pub struct MemoryJobQueue {
    jobs: Arc<Mutex<Jobs>>,
    generation: Arc<AtomicU64>,
    wake: Arc<Notify>,
}

impl MemoryJobQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// A unit of work for jobs: jobs staged in it are enqueued together by
    /// [`MemoryOutbox::commit`] and never if it is dropped, like `enqueue_in` inside a Postgres
    /// transaction that rolls back.
    pub fn outbox(&self) -> MemoryOutbox {
        MemoryOutbox {
            queue: self.clone(),
            staged: Vec::new(),
        }
    }
}

/// Jobs staged for one atomic enqueue; see [`MemoryJobQueue::outbox`].
#[derive(Debug)]
pub struct MemoryOutbox {
    queue: MemoryJobQueue,
    staged: Vec<NewJob>,
}

impl MemoryOutbox {
    /// Stages `job`.
    pub fn push(&mut self, job: NewJob) {
        self.staged.push(job);
    }

    /// Enqueues every staged job at once.
    pub fn commit(self, now: DateTime<Utc>) -> Vec<EnqueueOutcome> {
        let outcomes = {
            let mut jobs = self.queue.lock();
            self.staged
                .into_iter()
                .map(|job| jobs.insert(job, now))
                .collect()
        };
        self.queue.bump();
        outcomes
    }
}

fn matches(job: &Job, filter: &JobFilter) -> bool {
    filter.state.is_none_or(|s| job.state == s)
        && filter.kind.as_deref().is_none_or(|k| job.kind == k)
        && filter
            .before
            .is_none_or(|before| (job.created_at, job.id) < before)
}

#[async_trait]
impl JobQueue for MemoryJobQueue {
    async fn enqueue(&self, job: NewJob, now: DateTime<Utc>) -> Result<EnqueueOutcome, StoreError> {
        let outcome = self.lock().insert(job, now);
        self.bump();
        Ok(outcome)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        let mut jobs = self.lock();
        let mut due: Vec<&Job> = jobs
            .by_id
            .values()
            .filter(|j| {
                j.state == JobState::Available
                    && j.run_at <= request.now
                    && request.kinds.contains(&j.kind)
            })
            .collect();
        due.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.run_at, j.id));
        let ids: Vec<JobId> = due
            .into_iter()
            .take(request.limit as usize)
            .map(|j| j.id)
            .collect();
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let job = jobs.by_id.get_mut(&id)?;
                job.attempt += 1;
                job.started_at = Some(request.now);
                jobs.lease(id, request)
            })
            .collect())
    }

    async fn heartbeat(
        &self,
        claimed: &ClaimedJob,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.lock().held(claimed)?.locked_until = Some(until);
        Ok(())
    }

    async fn complete(&self, claimed: &ClaimedJob, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut jobs = self.lock();
        let job = jobs.held(claimed)?;
        job.state = JobState::Completed;
        job.finished_at = Some(now);
        jobs.unlock(claimed.job.id);
        Ok(())
    }

    async fn fail(
        &self,
        claimed: &ClaimedJob,
        error: AttemptError,
        next: AfterFailure,
    ) -> Result<(), StoreError> {
        let mut jobs = self.lock();
        let job = jobs.held(claimed)?;
        job.errors.push(error);
        match next {
            AfterFailure::RetryAt(at) => {
                job.state = JobState::Available;
                job.run_at = at;
            }
            AfterFailure::Dead(at) => {
                job.state = JobState::Dead;
                job.finished_at = Some(at);
            }
        }
        jobs.unlock(claimed.job.id);
        drop(jobs);
        self.bump();
        Ok(())
    }

    async fn exhaust(&self, claimed: &ClaimedJob) -> Result<(), StoreError> {
        let mut jobs = self.lock();
        let job = jobs.held(claimed)?;
        job.attempt = job.max_attempts;
        Ok(())
    }

    async fn release(&self, claimed: &ClaimedJob) -> Result<(), StoreError> {
        let mut jobs = self.lock();
        let job = jobs.held(claimed)?;
        job.state = JobState::Available;
        job.attempt = job.attempt.saturating_sub(1);
        jobs.unlock(claimed.job.id);
        drop(jobs);
        self.bump();
        Ok(())
    }

    async fn rescue_expired(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        let mut jobs = self.lock();
        let mut expired: Vec<&Job> = jobs
            .by_id
            .values()
            .filter(|j| {
                j.state == JobState::Running
                    && j.locked_until.is_some_and(|until| until < request.now)
                    && request.kinds.contains(&j.kind)
            })
            .collect();
        expired.sort_by_key(|j| (j.locked_until, j.id));
        let ids: Vec<JobId> = expired
            .into_iter()
            .take(request.limit as usize)
            .map(|j| j.id)
            .collect();
        let mut exhausted = Vec::new();
        let mut retried = false;
        for id in ids {
            let Some(job) = jobs.by_id.get_mut(&id) else {
                continue;
            };
            if job.attempt >= job.max_attempts {
                exhausted.extend(jobs.lease(id, request));
                continue;
            }
            job.errors.push(AttemptError {
                attempt: job.attempt,
                at: request.now,
                error: LEASE_EXPIRED.into(),
            });
            job.state = JobState::Available;
            job.run_at = request.now;
            jobs.unlock(id);
            retried = true;
        }
        drop(jobs);
        if retried {
            self.bump();
        }
        Ok(exhausted)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().by_id.get(&id).cloned())
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let jobs = self.lock();
        let mut listed: Vec<Job> = jobs
            .by_id
            .values()
            .filter(|j| matches(j, filter))
            .cloned()
            .collect();
        listed.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        listed.truncate(filter.limit as usize);
        Ok(listed)
    }

    async fn retry(&self, id: JobId, now: DateTime<Utc>) -> Result<JobChange, StoreError> {
        let mut jobs = self.lock();
        let Some(job) = jobs.by_id.get_mut(&id) else {
            return Ok(JobChange::NotFound);
        };
        match job.state {
            JobState::Dead => {
                job.attempt = 0;
                job.finished_at = None;
            }
            JobState::Available => {}
            other => return Ok(JobChange::NotAllowed(other)),
        }
        job.state = JobState::Available;
        job.run_at = now;
        let changed = JobChange::Changed(Box::new(job.clone()));
        drop(jobs);
        self.bump();
        Ok(changed)
    }

    async fn delete(&self, id: JobId) -> Result<JobChange, StoreError> {
        let mut jobs = self.lock();
        match jobs.by_id.get(&id).map(|j| j.state) {
            None => Ok(JobChange::NotFound),
            Some(JobState::Running) => Ok(JobChange::NotAllowed(JobState::Running)),
            Some(_) => Ok(jobs
                .remove(id)
                .map_or(JobChange::NotFound, |job| JobChange::Changed(Box::new(job)))),
        }
    }

    async fn counts(&self) -> Result<Vec<JobCount>, StoreError> {
        let mut counts: HashMap<(String, JobState), u64> = HashMap::new();
        for job in self.lock().by_id.values() {
            *counts.entry((job.kind.clone(), job.state)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((kind, state), count)| JobCount { kind, state, count })
            .collect())
    }

    async fn purge_completed(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut jobs = self.lock();
        let old: Vec<JobId> = jobs
            .by_id
            .values()
            .filter(|j| j.state == JobState::Completed && j.finished_at.is_some_and(|f| f < before))
            .map(|j| j.id)
            .collect();
        for id in &old {
            jobs.remove(*id);
        }
        Ok(old.len() as u64)
    }

    fn work_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    async fn work_changed(&self, seen: u64) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.work_generation() != seen {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_domain::jobs::{JobQueue, Timer};
    use keel_domain::testkit::job_queue;

    use super::*;
    use crate::TokioTimer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_the_job_queue_contract() {
        let queue: Arc<dyn JobQueue> = Arc::new(MemoryJobQueue::new());
        let timer: Arc<dyn Timer> = Arc::new(TokioTimer);
        job_queue::run_all(queue, timer).await;
    }

    fn new_job(kind: &str) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload: serde_json::Value::Null,
            priority: 0,
            max_attempts: 1,
            run_at: Utc::now(),
            unique_key: None,
        }
    }

    #[tokio::test]
    async fn a_dropped_outbox_enqueues_nothing() {
        let queue = MemoryJobQueue::new();
        let mut rolled_back = queue.outbox();
        rolled_back.push(new_job("outbox.test"));
        drop(rolled_back);
        assert!(queue.counts().await.expect("counts").is_empty());

        let mut committed = queue.outbox();
        committed.push(new_job("outbox.test"));
        committed.push(new_job("outbox.test"));
        assert_eq!(committed.commit(Utc::now()).len(), 2);
        let counts = queue.counts().await.expect("counts");
        assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), 2);
    }
}
