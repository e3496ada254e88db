//! The contract every [`JobQueue`] keeps, driven through the port and the domain's own
//! [`Worker`] and [`Scheduler`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::support::{SetClock, ok, whole_second_now};
use crate::StoreError;
use crate::jobs::{
    AfterFailure, AttemptError, AttemptOutcome, Backoff, ClaimRequest, ClaimedJob, EnqueueOutcome,
    Every, IgnoreJobEvents, JobChange, JobContext, JobFailure, JobFilter, JobHandler, JobId,
    JobKind, JobQueue, JobRegistry, JobRuntime, JobState, KindSettings, NewJob, PeriodicJob,
    Scheduler, Shutdown, Timer, Worker, WorkerSettings,
};

/// Runs every case of the contract against `queue`; `timer` is the host runtime's.
pub async fn run_all(queue: Arc<dyn JobQueue>, timer: Arc<dyn Timer>) {
    let q = queue.as_ref();
    claimed_job_belongs_to_its_lease_holder(q).await;
    future_jobs_wait_and_priority_orders(q).await;
    uniqueness_key_keeps_one_job(q).await;
    workers_only_claim_their_kinds(q).await;
    heartbeat_keeps_the_lease(q).await;
    expired_lease_is_rescued_and_the_old_holder_loses(q).await;
    exhausted_expired_job_is_handed_to_the_rescuer(q).await;
    release_gives_the_job_back_uncounted(q).await;
    completing_can_claim_the_next_job_in_the_same_step(q).await;
    admin_changes_respect_state(q).await;
    listing_pages_and_counts(q).await;
    purge_removes_only_old_completed_jobs(q).await;
    enqueue_changes_the_work_generation(q).await;
    backoff_follows_the_schedule_then_dead_then_retry(&queue, &timer).await;
    killed_worker_job_reruns_after_its_lease(&queue, &timer).await;
    two_schedulers_enqueue_one_job_per_slot(&queue, &timer).await;
    a_permanent_failure_never_runs_again_even_when_its_hook_fails(&queue, &timer).await;
    many_jobs_over_four_workers_run_exactly_once(&queue, &timer, 1_000).await;
    super::job_worker::run_all(&queue, &timer).await;
}

fn kind() -> String {
    format!("test.{}", Uuid::new_v4().simple())
}

fn job(kind: &str, at: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: kind.to_owned(),
        payload: serde_json::json!({"n": 1}),
        priority: 0,
        max_attempts: 3,
        run_at: at,
        unique_key: None,
    }
}

fn request(kinds: &[&str], now: DateTime<Utc>) -> ClaimRequest {
    ClaimRequest {
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        worker: "suite".into(),
        now,
        lease: Duration::from_secs(30),
        limit: 10,
    }
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

async fn enqueue(q: &dyn JobQueue, job: NewJob, now: DateTime<Utc>) -> JobId {
    match ok(q.enqueue(job, now).await) {
        EnqueueOutcome::Enqueued(id) => id,
        EnqueueOutcome::Duplicate(id) => panic!("unexpected duplicate {id}"),
    }
}

async fn claim_one(q: &dyn JobQueue, kind: &str, now: DateTime<Utc>) -> ClaimedJob {
    let one = ClaimRequest {
        limit: 1,
        ..request(&[kind], now)
    };
    let mut claimed = ok(q.claim(&one).await);
    assert_eq!(
        claimed.len(),
        1,
        "exactly one job of {kind} must be claimable at {now}"
    );
    claimed.remove(0)
}

fn error(attempt: u32, at: DateTime<Utc>) -> AttemptError {
    AttemptError {
        attempt,
        at,
        error: "boom".into(),
    }
}

async fn claimed_job_belongs_to_its_lease_holder(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    let id = enqueue(q, job(&k, now), now).await;
    let claimed = claim_one(q, &k, now).await;
    assert_eq!(claimed.job.id, id);
    assert_eq!(
        (claimed.job.state, claimed.job.attempt),
        (JobState::Running, 1)
    );
    assert_eq!(claimed.job.locked_by.as_deref(), Some("suite"));
    assert!(
        ok(q.claim(&request(&[&k], now)).await).is_empty(),
        "claimed twice"
    );

    let forged = ClaimedJob {
        lease: Uuid::new_v4(),
        ..claimed.clone()
    };
    assert!(matches!(
        q.complete(&forged, now).await,
        Err(StoreError::Conflict(_))
    ));
    ok(q.complete(&claimed, now + secs(1)).await);
    let done = ok(q.get(id).await).expect("kept");
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.finished_at, Some(now + secs(1)));
    assert!(done.locked_by.is_none() && done.locked_until.is_none());
    assert!(matches!(
        q.complete(&claimed, now).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn future_jobs_wait_and_priority_orders(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    let later = enqueue(q, job(&k, now + secs(60)), now).await;
    let low = enqueue(q, job(&k, now - secs(10)), now).await;
    let high = enqueue(
        q,
        NewJob {
            priority: 5,
            ..job(&k, now)
        },
        now,
    )
    .await;
    assert_eq!(claim_one(q, &k, now).await.job.id, high, "priority first");
    assert_eq!(claim_one(q, &k, now).await.job.id, low);
    assert!(
        ok(q.claim(&request(&[&k], now)).await).is_empty(),
        "not due yet"
    );
    assert_eq!(claim_one(q, &k, now + secs(60)).await.job.id, later);
}

async fn uniqueness_key_keeps_one_job(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    let first = ok(q.enqueue(job(&k, now).unique("event-1:user-1"), now).await);
    let again = ok(q.enqueue(job(&k, now).unique("event-1:user-1"), now).await);
    assert!(matches!(first, EnqueueOutcome::Enqueued(_)));
    assert_eq!(again, EnqueueOutcome::Duplicate(first.id()));
    // The key stays taken after the job ran: a slot or a certificate is done once.
    let claimed = claim_one(q, &k, now).await;
    ok(q.complete(&claimed, now).await);
    let after = ok(q.enqueue(job(&k, now).unique("event-1:user-1"), now).await);
    assert_eq!(after, EnqueueOutcome::Duplicate(first.id()));
    let other_kind = ok(q
        .enqueue(job(&kind(), now).unique("event-1:user-1"), now)
        .await);
    assert!(matches!(other_kind, EnqueueOutcome::Enqueued(_)));
}

async fn workers_only_claim_their_kinds(q: &dyn JobQueue) {
    let (mine, theirs, now) = (kind(), kind(), whole_second_now());
    enqueue(q, job(&theirs, now), now).await;
    assert!(ok(q.claim(&request(&[&mine], now)).await).is_empty());
    claim_one(q, &theirs, now).await;
}

async fn heartbeat_keeps_the_lease(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    enqueue(q, job(&k, now), now).await;
    let claimed = claim_one(q, &k, now).await;
    ok(q.heartbeat(&claimed, now + secs(90)).await);
    let rescued = ok(q.rescue_expired(&request(&[&k], now + secs(60))).await);
    assert!(rescued.is_empty());
    let job = ok(q.get(claimed.job.id).await).expect("kept");
    assert_eq!(
        (job.state, job.locked_until),
        (JobState::Running, Some(now + secs(90)))
    );
    ok(q.complete(&claimed, now + secs(61)).await);
}

async fn expired_lease_is_rescued_and_the_old_holder_loses(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    let id = enqueue(q, job(&k, now), now).await;
    let dead_worker = claim_one(q, &k, now).await;
    let later = now + secs(31);
    assert!(ok(q.rescue_expired(&request(&[&k], later)).await).is_empty());
    let job = ok(q.get(id).await).expect("kept");
    assert_eq!(
        (job.state, job.attempt, job.run_at),
        (JobState::Available, 1, later)
    );
    assert_eq!(job.errors.len(), 1, "the lost attempt is recorded");
    assert_eq!((job.errors[0].attempt, job.errors[0].at), (1, later));

    let second = claim_one(q, &k, later).await;
    assert_eq!(second.job.attempt, 2);
    assert!(matches!(
        q.complete(&dead_worker, later).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        q.heartbeat(&dead_worker, later + secs(30)).await,
        Err(StoreError::Conflict(_))
    ));
    ok(q.complete(&second, later).await);
}

async fn exhausted_expired_job_is_handed_to_the_rescuer(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    let id = enqueue(
        q,
        NewJob {
            max_attempts: 1,
            ..job(&k, now)
        },
        now,
    )
    .await;
    claim_one(q, &k, now).await;
    let later = now + secs(31);
    let mut rescued = ok(q.rescue_expired(&request(&[&k], later)).await);
    assert_eq!(rescued.len(), 1);
    let held = rescued.remove(0);
    assert_eq!(
        (held.job.id, held.job.state, held.job.attempt),
        (id, JobState::Running, 1)
    );
    assert!(
        ok(q.rescue_expired(&request(&[&k], later)).await).is_empty(),
        "held now"
    );
    ok(q.fail(&held, error(1, later), AfterFailure::Dead(later))
        .await);
    let job = ok(q.get(id).await).expect("kept");
    assert_eq!((job.state, job.finished_at), (JobState::Dead, Some(later)));
}

async fn release_gives_the_job_back_uncounted(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    let id = enqueue(q, job(&k, now), now).await;
    let claimed = claim_one(q, &k, now).await;
    ok(q.release(&claimed).await);
    let job = ok(q.get(id).await).expect("kept");
    assert_eq!((job.state, job.attempt), (JobState::Available, 0));
    assert!(job.locked_by.is_none());
    assert_eq!(claim_one(q, &k, now).await.job.attempt, 1);
}

async fn admin_changes_respect_state(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    assert_eq!(
        ok(q.retry(JobId(Uuid::new_v4()), now).await),
        JobChange::NotFound
    );
    assert_eq!(
        ok(q.delete(JobId(Uuid::new_v4())).await),
        JobChange::NotFound
    );
    let id = enqueue(
        q,
        NewJob {
            max_attempts: 1,
            ..job(&k, now)
        },
        now,
    )
    .await;
    let claimed = claim_one(q, &k, now).await;
    assert_eq!(
        ok(q.delete(id).await),
        JobChange::NotAllowed(JobState::Running)
    );
    assert_eq!(
        ok(q.retry(id, now).await),
        JobChange::NotAllowed(JobState::Running)
    );
    ok(q.fail(&claimed, error(1, now), AfterFailure::Dead(now))
        .await);

    let JobChange::Changed(retried) = ok(q.retry(id, now + secs(5)).await) else {
        panic!("a dead job can be retried");
    };
    assert_eq!((retried.state, retried.attempt), (JobState::Available, 0));
    assert_eq!((retried.run_at, retried.finished_at), (now + secs(5), None));
    assert_eq!(retried.errors.len(), 1, "history is kept");
    let again = claim_one(q, &k, now + secs(5)).await;
    assert_eq!(again.job.attempt, 1, "fresh attempt budget");
    ok(q.complete(&again, now + secs(5)).await);
    assert_eq!(
        ok(q.retry(id, now).await),
        JobChange::NotAllowed(JobState::Completed)
    );

    let JobChange::Changed(deleted) = ok(q.delete(id).await) else {
        panic!("a completed job can be deleted");
    };
    assert_eq!(deleted.id, id);
    assert_eq!(ok(q.get(id).await), None);
}

async fn listing_pages_and_counts(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(enqueue(q, job(&k, now), now + secs(i)).await);
    }
    let claimed = claim_one(q, &k, now).await;
    ok(q.complete(&claimed, now).await);
    let page = |state, before| JobFilter {
        state,
        kind: Some(k.clone()),
        before,
        limit: 3,
    };
    let first = ok(q.list(&page(None, None)).await);
    let listed: Vec<_> = first.iter().map(|j| j.id).collect();
    assert_eq!(listed, [ids[4], ids[3], ids[2]], "newest first");
    let last = &first[2];
    let second = ok(q.list(&page(None, Some((last.created_at, last.id)))).await);
    assert_eq!(
        second.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[1], ids[0]]
    );
    let done = ok(q.list(&page(Some(JobState::Completed), None)).await);
    assert_eq!(
        done.iter().map(|j| j.id).collect::<Vec<_>>(),
        [claimed.job.id]
    );

    let mut counts: Vec<_> = ok(q.counts().await)
        .into_iter()
        .filter(|c| c.kind == k)
        .map(|c| (c.state, c.count))
        .collect();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(counts, [(JobState::Available, 4), (JobState::Completed, 1)]);
}

async fn purge_removes_only_old_completed_jobs(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    // Claimed in run_at order: `old` first.
    let old = enqueue(q, job(&k, now - secs(2)), now).await;
    let recent = enqueue(q, job(&k, now - secs(1)), now).await;
    let waiting = enqueue(q, job(&k, now + secs(3600)), now).await;
    for at in [now - secs(7200), now] {
        let claimed = claim_one(q, &k, now).await;
        ok(q.complete(&claimed, at).await);
    }
    assert!(ok(q.purge_completed(now - secs(3600)).await) >= 1);
    assert_eq!(ok(q.get(old).await), None);
    assert!(ok(q.get(recent).await).is_some());
    assert!(ok(q.get(waiting).await).is_some());
}

async fn enqueue_changes_the_work_generation(q: &dyn JobQueue) {
    let now = whole_second_now();
    let seen = q.work_generation();
    enqueue(q, job(&kind(), now), now).await;
    assert_ne!(q.work_generation(), seen);
    // Already changed: returns at once.
    q.work_changed(seen).await;
}

/// Fails its first `failures` attempts, then succeeds; counts runs per job.
struct Flaky {
    failures: u32,
    runs: Mutex<HashMap<JobId, u32>>,
    dead_hooks: AtomicUsize,
}

impl Flaky {
    fn new(failures: u32) -> Arc<Self> {
        Arc::new(Self {
            failures,
            runs: Mutex::new(HashMap::new()),
            dead_hooks: AtomicUsize::new(0),
        })
    }

    fn runs(&self) -> HashMap<JobId, u32> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Serialize, Deserialize)]
struct Probe;

impl JobKind for Probe {
    const KIND: &'static str = "testkit.probe";
}

#[async_trait]
impl JobHandler<Probe> for Arc<Flaky> {
    async fn run(&self, ctx: &JobContext, _job: Probe) -> Result<(), JobFailure> {
        *self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ctx.id)
            .or_default() += 1;
        if ctx.attempt <= self.failures {
            return Err(JobFailure::retry(format!("attempt {} fails", ctx.attempt)));
        }
        Ok(())
    }

    async fn on_dead(&self, _ctx: &JobContext, _job: Probe) -> Result<(), JobFailure> {
        self.dead_hooks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A runtime on `queue` whose only kind is [`Probe`] with `settings`.
fn runtime(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
    clock: Arc<SetClock>,
    handler: Arc<Flaky>,
    settings: KindSettings,
) -> JobRuntime {
    let mut registry = JobRegistry::new();
    registry.register_with::<Probe>(settings, handler);
    JobRuntime {
        queue: queue.clone(),
        registry: Arc::new(registry),
        clock,
        timer: timer.clone(),
        observer: Arc::new(IgnoreJobEvents),
        settings: WorkerSettings {
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(20),
            shutdown_grace: Duration::from_secs(5),
        },
    }
}

/// Deletes every leftover [`Probe`] job, so each case starts with none.
async fn clear_probes(q: &dyn JobQueue) {
    for state in JobState::ALL {
        let filter = JobFilter {
            state: Some(state),
            kind: Some(Probe::KIND.into()),
            before: None,
            limit: 10_000,
        };
        for job in ok(q.list(&filter).await) {
            ok(q.delete(job.id).await);
        }
    }
}

async fn backoff_follows_the_schedule_then_dead_then_retry(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
) {
    clear_probes(queue.as_ref()).await;
    let now = whole_second_now();
    let clock = Arc::new(SetClock::new(now));
    let handler = Flaky::new(4);
    let settings = KindSettings {
        max_attempts: 4,
        backoff: Backoff::seconds(&[2, 4, 8]),
        ..KindSettings::default()
    };
    let rt = runtime(queue, timer, clock.clone(), handler.clone(), settings);
    let worker = Worker::new(rt, "backoff-worker");
    let new_job = NewJob {
        max_attempts: 4,
        ..Probe.to_new_job(now).expect("json")
    };
    let id = ok(queue.enqueue(new_job, now).await).id();

    let mut at = now;
    for wait in [2, 4, 8] {
        assert_eq!(ok(worker.run_once().await), Some(AttemptOutcome::Retrying));
        let job = ok(queue.get(id).await).expect("kept");
        assert_eq!(
            job.run_at,
            at + secs(wait),
            "retry {} after {wait}s",
            job.attempt
        );
        clock.set(at + secs(wait) - secs(1));
        assert_eq!(ok(worker.run_once().await), None, "not before its backoff");
        at += secs(wait);
        clock.set(at);
    }
    assert_eq!(ok(worker.run_once().await), Some(AttemptOutcome::Dead));
    let dead = ok(queue.get(id).await).expect("kept");
    assert_eq!((dead.state, dead.attempt), (JobState::Dead, 4));
    assert_eq!(
        dead.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        handler.dead_hooks.load(Ordering::SeqCst),
        1,
        "on_dead ran once"
    );

    assert!(matches!(
        ok(queue.retry(id, at).await),
        JobChange::Changed(_)
    ));
    assert_eq!(ok(worker.run_once().await), Some(AttemptOutcome::Retrying));
    // A retried job starts a fresh budget: attempt 1 of 4 again (the handler fails ≤ 4).
    let job = ok(queue.get(id).await).expect("kept");
    assert_eq!((job.state, job.attempt), (JobState::Available, 1));
    ok(queue.delete(id).await);
}

async fn killed_worker_job_reruns_after_its_lease(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
) {
    clear_probes(queue.as_ref()).await;
    let now = whole_second_now();
    let clock = Arc::new(SetClock::new(now));
    let handler = Flaky::new(0);
    let rt = runtime(
        queue,
        timer,
        clock.clone(),
        handler.clone(),
        KindSettings::default(),
    );
    let id = ok(queue
        .enqueue(Probe.to_new_job(now).expect("json"), now)
        .await)
    .id();
    // A worker claims the job and dies: the claim is dropped, never released.
    drop(claim_one(queue.as_ref(), Probe::KIND, now).await);

    let worker = Worker::new(rt.clone(), "survivor");
    assert_eq!(
        ok(worker.run_once().await),
        None,
        "held by the dead worker's lease"
    );
    clock.set(now + secs(31));
    let mut scheduler = Scheduler::new(rt, "scheduler", vec![]);
    ok(scheduler.tick().await);
    assert_eq!(ok(worker.run_once().await), Some(AttemptOutcome::Completed));
    let job = ok(queue.get(id).await).expect("kept");
    assert_eq!((job.state, job.attempt), (JobState::Completed, 2));
    assert_eq!(
        handler.runs().get(&id),
        Some(&1),
        "the survivor ran it once"
    );
}

async fn two_schedulers_enqueue_one_job_per_slot(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
) {
    clear_probes(queue.as_ref()).await;
    let now = whole_second_now();
    let clock = Arc::new(SetClock::new(now));
    let rt = runtime(
        queue,
        timer,
        clock.clone(),
        Flaky::new(0),
        KindSettings::default(),
    );
    let every = Every::interval(Duration::from_secs(3600)).expect("valid");
    let periodic = PeriodicJob::new(every, &Probe).expect("json");
    let mut a = Scheduler::new(rt.clone(), "node-a", vec![periodic.clone()]);
    let mut b = Scheduler::new(rt, "node-b", vec![periodic]);
    let mut enqueued = 0;
    for _ in 0..3 {
        enqueued += ok(a.tick().await).enqueued + ok(b.tick().await).enqueued;
    }
    assert_eq!(
        enqueued, 1,
        "one job for the current slot across both nodes"
    );
    clock.set(now + secs(3600 * 5));
    enqueued = ok(b.tick().await).enqueued + ok(a.tick().await).enqueued;
    assert_eq!(enqueued, 1, "five hours of missed slots run once");
    let filter = JobFilter {
        state: None,
        kind: Some(Probe::KIND.into()),
        before: None,
        limit: 100,
    };
    assert_eq!(ok(queue.list(&filter).await).len(), 2);
    clear_probes(queue.as_ref()).await;
}

async fn many_jobs_over_four_workers_run_exactly_once(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
    count: usize,
) {
    clear_probes(queue.as_ref()).await;
    let now = whole_second_now();
    let clock = Arc::new(SetClock::new(now));
    let handler = Flaky::new(0);
    let rt = runtime(
        queue,
        timer,
        clock,
        handler.clone(),
        KindSettings::default(),
    );
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(
            ok(queue
                .enqueue(Probe.to_new_job(now).expect("json"), now)
                .await)
            .id(),
        );
    }
    let done = {
        let (handler, timer) = (handler.clone(), timer.clone());
        Shutdown::on(async move {
            // Bounded: give up after 120 s so a broken queue fails the test instead of hanging.
            for _ in 0..12_000 {
                if handler.runs().len() >= count {
                    break;
                }
                timer.sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let workers = (0..4).map(|i| Worker::new(rt.clone(), format!("worker-{i}")).run(done.clone()));
    join_all(workers).await;

    let runs = handler.runs();
    assert_eq!(runs.len(), count, "every job ran");
    assert!(runs.values().all(|n| *n == 1), "no job ran twice");
    let completed = JobFilter {
        state: Some(JobState::Completed),
        kind: Some(Probe::KIND.into()),
        before: None,
        limit: 10_000,
    };
    assert_eq!(ok(queue.list(&completed).await).len(), count);
    clear_probes(queue.as_ref()).await;
}

/// Fails permanently; its dead-letter hook fails once, then succeeds.
struct Doomed {
    runs: AtomicUsize,
    hooks: AtomicUsize,
}

#[derive(Serialize, Deserialize)]
struct Doom;

impl JobKind for Doom {
    const KIND: &'static str = "testkit.doom";
}

#[async_trait]
impl JobHandler<Doom> for Arc<Doomed> {
    async fn run(&self, _ctx: &JobContext, _job: Doom) -> Result<(), JobFailure> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Err(JobFailure::permanent("the payout was rejected"))
    }

    async fn on_dead(&self, _ctx: &JobContext, _job: Doom) -> Result<(), JobFailure> {
        if self.hooks.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(JobFailure::retry("releasing the hold failed"));
        }
        Ok(())
    }
}

async fn a_permanent_failure_never_runs_again_even_when_its_hook_fails(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
) {
    let now = whole_second_now();
    let clock = Arc::new(SetClock::new(now));
    let doomed = Arc::new(Doomed {
        runs: AtomicUsize::new(0),
        hooks: AtomicUsize::new(0),
    });
    let mut registry = JobRegistry::new();
    registry.register::<Doom>(doomed.clone());
    let rt = JobRuntime {
        registry: Arc::new(registry),
        ..runtime(
            queue,
            timer,
            clock.clone(),
            Flaky::new(0),
            KindSettings::default(),
        )
    };
    let job = NewJob {
        max_attempts: 5,
        ..Doom.to_new_job(now).expect("json")
    };
    let id = ok(queue.enqueue(job, now).await).id();
    let worker = Worker::new(rt.clone(), "doomed-worker");
    assert_eq!(
        ok(worker.run_once().await),
        Some(AttemptOutcome::HookFailed)
    );
    let held = ok(queue.get(id).await).expect("kept");
    assert_eq!(
        (held.state, held.attempt, held.max_attempts),
        (JobState::Running, 5, 5),
        "every remaining attempt is spent"
    );

    // The lease runs out; the rescuer must hand the job back for its hook, not run it again.
    clock.set(now + secs(31));
    ok(Scheduler::new(rt, "rescuer", vec![]).tick().await);
    assert_eq!(ok(worker.run_once().await), None);
    let dead = ok(queue.get(id).await).expect("kept");
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(
        doomed.runs.load(Ordering::SeqCst),
        1,
        "a permanent failure runs once"
    );
    assert_eq!(
        doomed.hooks.load(Ordering::SeqCst),
        2,
        "the hook ran again and succeeded"
    );
    // An admin retry restores the whole budget.
    let JobChange::Changed(retried) = ok(queue.retry(id, now + secs(40)).await) else {
        panic!("a dead job can be retried");
    };
    assert_eq!((retried.attempt, retried.max_attempts), (0, 5));
    ok(queue.delete(id).await);
}

async fn completing_can_claim_the_next_job_in_the_same_step(q: &dyn JobQueue) {
    let (k, now) = (kind(), whole_second_now());
    let first = enqueue(q, job(&k, now - secs(1)), now).await;
    let second = enqueue(q, job(&k, now), now).await;
    let claimed = claim_one(q, &k, now).await;
    assert_eq!(claimed.job.id, first);
    let next_request = ClaimRequest {
        limit: 1,
        ..request(&[&k], now)
    };
    let forged = ClaimedJob {
        lease: Uuid::new_v4(),
        ..claimed.clone()
    };
    assert!(matches!(
        q.complete_and_claim(&forged, now, &next_request).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        ok(q.get(second).await).expect("kept").state,
        JobState::Available,
        "a lost lease claims nothing"
    );
    let next = ok(q.complete_and_claim(&claimed, now, &next_request).await).expect("a next job");
    assert_eq!((next.job.id, next.job.attempt), (second, 1));
    assert_eq!(
        ok(q.get(first).await).expect("kept").state,
        JobState::Completed
    );
    assert_eq!(
        ok(q.complete_and_claim(&next, now, &next_request).await),
        None
    );
    assert_eq!(
        ok(q.get(second).await).expect("kept").state,
        JobState::Completed
    );
}
