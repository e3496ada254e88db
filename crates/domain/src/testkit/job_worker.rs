//! Worker behaviour that depends on real time, run on every [`JobQueue`]: heartbeats keep a long
//! job's lease, a kind's timeout fails an attempt, and shutdown lets running jobs finish within
//! the grace period and gives back the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join;
use serde::{Deserialize, Serialize};

use super::support::ok;
use crate::SystemClock;
use crate::jobs::{
    AttemptOutcome, IgnoreJobEvents, JobContext, JobFailure, JobHandler, JobId, JobKind, JobQueue,
    JobRegistry, JobRuntime, JobState, KindSettings, Scheduler, Shutdown, Timer, Worker,
    WorkerSettings,
};

/// Runs every case against `queue` with the host's `timer`, on the system clock.
pub async fn run_all(queue: &Arc<dyn JobQueue>, timer: &Arc<dyn Timer>) {
    heartbeats_keep_a_long_job_leased(queue, timer).await;
    a_job_past_its_timeout_fails_its_attempt(queue, timer).await;
    shutdown_finishes_short_jobs_and_releases_long_ones(queue, timer).await;
}

/// Sleeps for `millis`, then succeeds.
#[derive(Serialize, Deserialize)]
struct Sleep {
    millis: u64,
}

impl JobKind for Sleep {
    const KIND: &'static str = "testkit.sleep";
}

struct Sleeper {
    timer: Arc<dyn Timer>,
    runs: AtomicUsize,
}

#[async_trait]
impl JobHandler<Sleep> for Arc<Sleeper> {
    async fn run(&self, _ctx: &JobContext, job: Sleep) -> Result<(), JobFailure> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.timer.sleep(Duration::from_millis(job.millis)).await;
        Ok(())
    }
}

struct Setup {
    runtime: JobRuntime,
    sleeper: Arc<Sleeper>,
}

fn setup(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
    timeout: Duration,
    settings: WorkerSettings,
) -> Setup {
    let sleeper = Arc::new(Sleeper {
        timer: timer.clone(),
        runs: AtomicUsize::new(0),
    });
    let mut registry = JobRegistry::new();
    let kind = KindSettings {
        timeout,
        max_attempts: 3,
        ..KindSettings::default()
    };
    registry.register_with::<Sleep>(kind, sleeper.clone());
    let runtime = JobRuntime {
        queue: queue.clone(),
        registry: Arc::new(registry),
        clock: Arc::new(SystemClock),
        timer: timer.clone(),
        observer: Arc::new(IgnoreJobEvents),
        settings,
    };
    Setup { runtime, sleeper }
}

async fn enqueue(runtime: &JobRuntime, millis: u64) -> JobId {
    let now = runtime.clock.now();
    let job = Sleep { millis }
        .to_new_job(now)
        .unwrap_or_else(|e| panic!("{e}"));
    ok(runtime.queue.enqueue(job, now).await).id()
}

async fn job_state(queue: &Arc<dyn JobQueue>, id: JobId) -> (JobState, u32, usize) {
    let job = ok(queue.get(id).await).unwrap_or_else(|| panic!("job {id} is gone"));
    (job.state, job.attempt, job.errors.len())
}

async fn heartbeats_keep_a_long_job_leased(queue: &Arc<dyn JobQueue>, timer: &Arc<dyn Timer>) {
    let settings = WorkerSettings {
        lease: Duration::from_secs(1),
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(5),
    };
    let Setup { runtime, sleeper } = setup(queue, timer, Duration::from_secs(30), settings);
    // Runs three times longer than its lease (renewed every third of it).
    let id = enqueue(&runtime, 3_000).await;
    let worker = Worker::new(runtime.clone(), "long-runner");
    let rival = Worker::new(runtime.clone(), "rival");
    let mut scheduler = Scheduler::new(runtime.clone(), "rescuer", vec![]);
    let rivalry = async {
        // Meanwhile another node keeps rescuing expired leases and claiming work.
        for _ in 0..20 {
            timer.sleep(Duration::from_millis(200)).await;
            ok(scheduler.tick().await);
            assert_eq!(ok(rival.run_once().await), None, "the lease was taken over");
        }
    };
    let (outcome, ()) = join(worker.run_once(), rivalry).await;
    assert_eq!(ok(outcome), Some(AttemptOutcome::Completed));
    assert_eq!(job_state(queue, id).await, (JobState::Completed, 1, 0));
    assert_eq!(sleeper.runs.load(Ordering::SeqCst), 1);
}

async fn a_job_past_its_timeout_fails_its_attempt(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
) {
    let settings = WorkerSettings {
        poll_interval: Duration::from_millis(20),
        ..WorkerSettings::default()
    };
    let Setup { runtime, .. } = setup(queue, timer, Duration::from_millis(100), settings);
    let id = enqueue(&runtime, 60_000).await;
    let worker = Worker::new(runtime, "impatient");
    assert_eq!(ok(worker.run_once().await), Some(AttemptOutcome::Retrying));
    let job = ok(queue.get(id).await).unwrap_or_else(|| panic!("job {id} is gone"));
    assert_eq!((job.state, job.attempt), (JobState::Available, 1));
    assert!(
        job.errors[0].error.contains("timed out"),
        "{:?}",
        job.errors
    );
    ok(queue.delete(id).await);
}

async fn shutdown_finishes_short_jobs_and_releases_long_ones(
    queue: &Arc<dyn JobQueue>,
    timer: &Arc<dyn Timer>,
) {
    let settings = WorkerSettings {
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_millis(300),
        ..WorkerSettings::default()
    };
    let Setup { runtime, .. } = setup(queue, timer, Duration::from_secs(60), settings);
    let short = enqueue(&runtime, 150).await;
    let long = enqueue(&runtime, 60_000).await;
    // Shutdown is asked for once both workers are busy (bounded: 10 s).
    let (watch, stop_timer) = (queue.clone(), timer.clone());
    let shutdown = Shutdown::on(async move {
        for _ in 0..500 {
            let counts = watch.counts().await.unwrap_or_default();
            let running = counts
                .iter()
                .find(|c| c.kind == Sleep::KIND && c.state == JobState::Running);
            if running.is_some_and(|c| c.count >= 2) {
                break;
            }
            stop_timer.sleep(Duration::from_millis(20)).await;
        }
    });
    let a = Worker::new(runtime.clone(), "drain-a").run(shutdown.clone());
    let b = Worker::new(runtime.clone(), "drain-b").run(shutdown);
    join(a, b).await;
    assert_eq!(job_state(queue, short).await, (JobState::Completed, 1, 0));
    assert_eq!(
        job_state(queue, long).await,
        (JobState::Available, 0, 0),
        "released unrun: the attempt does not count"
    );
    ok(queue.delete(long).await);
}
