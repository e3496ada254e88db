//! The worker: claims due jobs, runs them under a lease with heartbeats and a timeout, and
//! records each outcome by the retry rule. Runtime-agnostic: waiting goes through the
//! [`Timer`] port, so the host spawns [`Worker::run`] on whatever executor it uses.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, pin_mut, select_biased};

use super::{
    AfterFailure, AttemptError, AttemptOutcome, ClaimRequest, ClaimedJob, JobContext, JobFailure,
    JobObserver, JobQueue, JobRegistry, Shutdown, Timer, after_failure,
};
use crate::{Clock, StoreError};

/// Timing of workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Lease of a claimed job; renewed every third of it while the job runs.
    pub lease: Duration,
    /// Longest idle wait between claims when no wake-up arrives.
    pub poll_interval: Duration,
    /// How long a running job may go on after shutdown is requested before it is released.
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    /// 30 s lease, 1 s poll, 10 s shutdown grace.
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything workers and schedulers share.
#[derive(Clone)]
pub struct JobRuntime {
    /// Where jobs live.
    pub queue: Arc<dyn JobQueue>,
    /// The kinds this node runs.
    pub registry: Arc<JobRegistry>,
    /// Source of "now".
    pub clock: Arc<dyn Clock>,
    /// How to wait.
    pub timer: Arc<dyn Timer>,
    /// Metrics and logs.
    pub observer: Arc<dyn JobObserver>,
    /// Timing.
    pub settings: WorkerSettings,
}

impl std::fmt::Debug for JobRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRuntime")
            .field("registry", &self.registry)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JobRuntime {
    /// A claim request for the registered kinds, made now by `worker`.
    pub fn claim_request(&self, worker: &str, limit: u32) -> ClaimRequest {
        ClaimRequest {
            kinds: self.registry.kind_names(),
            worker: worker.to_owned(),
            now: self.clock.now(),
            lease: self.settings.lease,
            limit,
        }
    }

    fn context(claimed: &ClaimedJob) -> JobContext {
        let job = &claimed.job;
        JobContext {
            id: job.id,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            created_at: job.created_at,
        }
    }

    /// Records a failed attempt: schedules the retry, or runs the kind's dead-letter hook and
    /// records the job dead. Returns the outcome.
    pub async fn record_failure(
        &self,
        claimed: &ClaimedJob,
        failure: JobFailure,
    ) -> Result<AttemptOutcome, StoreError> {
        let job = &claimed.job;
        let kind = self.registry.get(&job.kind);
        let backoff = kind
            .map(|k| k.settings().backoff.clone())
            .unwrap_or_default();
        let now = self.clock.now();
        let mut error = AttemptError {
            attempt: job.attempt,
            at: now,
            error: failure.message().to_owned(),
        };
        match after_failure(job, &failure, &backoff, now, jitter()) {
            retry @ AfterFailure::RetryAt(_) => {
                self.queue.fail(claimed, error, retry).await?;
                Ok(AttemptOutcome::Retrying)
            }
            dead @ AfterFailure::Dead(_) => {
                if job.attempt < job.max_attempts {
                    // A permanent failure: no attempt may follow, even if the hook below fails
                    // and the job has to be rescued.
                    self.queue.exhaust(claimed).await?;
                }
                if let Some(kind) = kind {
                    match kind.on_dead(&Self::context(claimed), &job.payload).await {
                        Ok(()) => {}
                        // Left leased: rescued after the lease, and the hook runs again.
                        Err(hook) if hook.is_retryable() => {
                            return Ok(AttemptOutcome::HookFailed);
                        }
                        Err(hook) => {
                            error.error =
                                format!("{}; dead-letter hook failed: {hook}", error.error);
                        }
                    }
                }
                self.queue.fail(claimed, error, dead).await?;
                Ok(AttemptOutcome::Dead)
            }
        }
    }
}

/// A uniform draw from `[0, 1)` for backoff jitter.
fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// How a supervised attempt ended.
enum Supervised {
    Finished(Result<(), JobFailure>),
    TimedOut(Duration),
    Interrupted,
    LeaseLost,
}

/// One worker: runs one job at a time. Start several for parallelism.
#[derive(Debug, Clone)]
pub struct Worker {
    runtime: JobRuntime,
    name: String,
}

impl Worker {
    /// A worker called `name` (stored as the lease holder; make it unique per process).
    pub fn new(runtime: JobRuntime, name: impl Into<String>) -> Self {
        Self {
            runtime,
            name: name.into(),
        }
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Claims one due job and runs it to an outcome; `None` when nothing was due.
    pub async fn run_once(&self) -> Result<Option<AttemptOutcome>, StoreError> {
        self.run_next(&Shutdown::never()).await
    }

    /// Claims and runs jobs until `shutdown`; an idle worker sleeps until a wake-up or the poll
    /// interval. A job still running at shutdown gets the grace period, then is released.
    pub async fn run(self, shutdown: Shutdown) {
        let rt = &self.runtime;
        // The next job, claimed in the same round trip that completed the previous one.
        let mut carried: Option<ClaimedJob> = None;
        while !shutdown.is_requested() {
            let seen = rt.queue.work_generation();
            let claimed = match carried.take() {
                Some(next) => Ok(Some(next)),
                None => rt
                    .queue
                    .claim(&rt.claim_request(&self.name, 1))
                    .await
                    .map(|c| c.into_iter().next()),
            };
            let idle = match claimed {
                Ok(Some(claimed)) => {
                    match self.process(&claimed, &shutdown, true).await {
                        Ok((_, next)) => carried = next,
                        Err(e) => rt.observer.store_failed("recording a job's outcome", &e),
                    }
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    rt.observer.store_failed("claiming a job", &e);
                    true
                }
            };
            if idle {
                let woken = rt.queue.work_changed(seen).fuse();
                let poll = rt.timer.sleep(rt.settings.poll_interval).fuse();
                let stop = shutdown.requested().fuse();
                pin_mut!(woken, poll, stop);
                select_biased! {
                    () = stop => break,
                    () = woken => {},
                    () = poll => {},
                }
            }
        }
        if let Some(unstarted) = carried
            && let Err(e) = rt.queue.release(&unstarted).await
        {
            rt.observer.store_failed("releasing a job at shutdown", &e);
        }
    }

    async fn run_next(&self, shutdown: &Shutdown) -> Result<Option<AttemptOutcome>, StoreError> {
        let rt = &self.runtime;
        let request = rt.claim_request(&self.name, 1);
        let Some(claimed) = rt.queue.claim(&request).await?.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(self.process(&claimed, shutdown, false).await?.0))
    }

    /// Runs `claimed` to an outcome; with `chain`, a success also claims the next job (returned).
    async fn process(
        &self,
        claimed: &ClaimedJob,
        shutdown: &Shutdown,
        chain: bool,
    ) -> Result<(AttemptOutcome, Option<ClaimedJob>), StoreError> {
        let rt = &self.runtime;
        let job = &claimed.job;
        let started = rt.clock.now();
        let waited = (started - job.run_at).to_std().unwrap_or_default();
        rt.observer.started(&job.kind, waited);
        let ran = || (rt.clock.now() - started).to_std().unwrap_or_default();

        let Some(kind) = rt.registry.get(&job.kind) else {
            let failure = JobFailure::permanent(format!("no handler for kind {}", job.kind));
            let outcome = rt.record_failure(claimed, failure).await?;
            rt.observer.finished(&job.kind, outcome, ran(), None);
            return Ok((outcome, None));
        };
        let mut next = None;
        let ctx = JobRuntime::context(claimed);
        let timeout = kind.settings().timeout;
        let run = kind.run(&ctx, &job.payload);
        let recorded = match self.supervise(claimed, run, timeout, shutdown).await {
            Supervised::Finished(Ok(())) if chain && !shutdown.is_requested() => {
                let request = rt.claim_request(&self.name, 1);
                rt.queue
                    .complete_and_claim(claimed, rt.clock.now(), &request)
                    .await
                    .map(|claimed_next| {
                        next = claimed_next;
                        (AttemptOutcome::Completed, None)
                    })
            }
            Supervised::Finished(Ok(())) => rt
                .queue
                .complete(claimed, rt.clock.now())
                .await
                .map(|()| (AttemptOutcome::Completed, None)),
            Supervised::Finished(Err(failure)) => {
                let message = failure.message().to_owned();
                rt.record_failure(claimed, failure)
                    .await
                    .map(|outcome| (outcome, Some(message)))
            }
            Supervised::TimedOut(after) => {
                let failure = JobFailure::retry(format!("timed out after {after:?}"));
                let message = failure.message().to_owned();
                rt.record_failure(claimed, failure)
                    .await
                    .map(|outcome| (outcome, Some(message)))
            }
            Supervised::Interrupted => rt
                .queue
                .release(claimed)
                .await
                .map(|()| (AttemptOutcome::Released, None)),
            Supervised::LeaseLost => Ok((AttemptOutcome::LeaseLost, None)),
        };
        let (outcome, error) = match recorded {
            Ok(recorded) => recorded,
            // Too slow to record: the lease went to someone else, whose outcome stands.
            Err(StoreError::Conflict(_)) => (AttemptOutcome::LeaseLost, None),
            Err(e) => return Err(e),
        };
        rt.observer
            .finished(&job.kind, outcome, ran(), error.as_deref());
        Ok((outcome, next))
    }

    /// Drives `run` while renewing the lease, until it finishes, times out, loses its lease or
    /// outlives the shutdown grace.
    async fn supervise(
        &self,
        claimed: &ClaimedJob,
        run: impl Future<Output = Result<(), JobFailure>>,
        timeout: Duration,
        shutdown: &Shutdown,
    ) -> Supervised {
        let rt = &self.runtime;
        let heartbeat_every = rt.settings.lease / 3;
        let grace = rt.settings.shutdown_grace;
        let run = run.fuse();
        let deadline = rt.timer.sleep(timeout).fuse();
        let stop = async {
            shutdown.requested().await;
            rt.timer.sleep(grace).await;
        }
        .fuse();
        pin_mut!(run, deadline, stop);
        loop {
            let beat = rt.timer.sleep(heartbeat_every).fuse();
            pin_mut!(beat);
            select_biased! {
                result = run => return Supervised::Finished(result),
                () = deadline => return Supervised::TimedOut(timeout),
                () = stop => return Supervised::Interrupted,
                () = beat => {
                    let until = rt.clock.now()
                        + chrono::Duration::from_std(rt.settings.lease).unwrap_or(chrono::Duration::MAX);
                    match rt.queue.heartbeat(claimed, until).await {
                        Ok(()) => {}
                        Err(StoreError::Conflict(_)) => return Supervised::LeaseLost,
                        Err(e) => rt.observer.store_failed("renewing a lease", &e),
                    }
                }
            }
        }
    }
}
