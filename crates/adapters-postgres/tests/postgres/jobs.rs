use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, RunQueryDsl};
use keel_adapters_memory::TokioTimer;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_postgres::{PgJobQueue, PgPool, enqueue_in};
use keel_domain::SystemClock;
use keel_domain::jobs::{
    AttemptOutcome, EnqueueOutcome, IgnoreJobEvents, JobContext, JobFailure, JobHandler, JobKind,
    JobQueue, JobRegistry, JobRuntime, Shutdown, Worker, WorkerSettings,
};
use keel_domain::testkit::job_queue;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Longest wait for a wake-up; workers poll only once an hour in these tests.
const WAKE_BOUND: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
struct Ping(u32);

impl JobKind for Ping {
    const KIND: &'static str = "test.ping";
}

/// Reports every ping it runs.
struct Pinged(mpsc::UnboundedSender<u32>);

#[async_trait]
impl JobHandler<Ping> for Pinged {
    async fn run(&self, _ctx: &JobContext, job: Ping) -> Result<(), JobFailure> {
        let _ = self.0.send(job.0);
        Ok(())
    }
}

fn runtime(queue: Arc<dyn JobQueue>, pinged: mpsc::UnboundedSender<u32>) -> JobRuntime {
    let mut registry = JobRegistry::new();
    registry.register::<Ping>(Pinged(pinged));
    JobRuntime {
        queue,
        registry: Arc::new(registry),
        clock: Arc::new(SystemClock),
        timer: Arc::new(TokioTimer),
        observer: Arc::new(IgnoreJobEvents),
        settings: WorkerSettings {
            poll_interval: Duration::from_secs(3600),
            ..WorkerSettings::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_job_queue_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    job_queue::run_all(
        Arc::new(PgJobQueue::new(db.pool().clone())),
        Arc::new(TokioTimer),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_exists() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let queue = Arc::new(PgJobQueue::new(db.pool().clone()));
    let (tx, mut pinged) = mpsc::unbounded_channel();
    let worker = Worker::new(runtime(queue.clone(), tx), "w1");
    let now = Utc::now();
    let mut conn = db.pool().get().await.unwrap();

    let rolled_back = Ping(1).to_new_job(now).unwrap();
    let mut id = None;
    let result = conn
        .transaction(async |conn| {
            id = Some(enqueue_in(conn, &rolled_back, now).await?.id());
            Err::<(), _>(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(result.is_err());
    assert_eq!(queue.get(id.unwrap()).await.unwrap(), None);
    assert_eq!(worker.run_once().await.unwrap(), None, "nothing to run");

    // Committed, with a duplicate in the same transaction that does not abort it.
    let committed = Ping(2).to_new_job(now).unwrap().unique("two");
    let (first, second) = conn
        .transaction(async |conn| {
            let first = enqueue_in(conn, &committed, now).await?;
            let second = enqueue_in(conn, &committed, now).await?;
            Ok::<_, diesel::result::Error>((first, second))
        })
        .await
        .unwrap();
    assert!(matches!(first, EnqueueOutcome::Enqueued(_)));
    assert_eq!(second, EnqueueOutcome::Duplicate(first.id()));
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(AttemptOutcome::Completed)
    );
    assert_eq!(pinged.try_recv().unwrap(), 2);
    assert!(pinged.try_recv().is_err(), "the rolled-back job never ran");
}

/// Starts a worker on `queue`; stops it when the returned sender is dropped or fired.
fn start_worker(queue: Arc<dyn JobQueue>) -> (mpsc::UnboundedReceiver<u32>, oneshot::Sender<()>) {
    let (tx, pinged) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = Worker::new(runtime(queue, tx), "listening-worker");
    tokio::spawn(worker.run(Shutdown::on(async {
        let _ = stopped.await;
    })));
    (pinged, stop)
}

/// Enqueues a ping through another node (its own pool and queue, no listener).
async fn enqueue_elsewhere(other: &PgJobQueue, n: u32) {
    let job = Ping(n).to_new_job(Utc::now()).unwrap();
    other.enqueue(job, Utc::now()).await.unwrap();
}

async fn expect_ping(pinged: &mut mpsc::UnboundedReceiver<u32>, n: u32) {
    let got = tokio::time::timeout(WAKE_BOUND, pinged.recv())
        .await
        .unwrap_or_else(|_| panic!("ping {n} did not run within {WAKE_BOUND:?}"));
    assert_eq!(got, Some(n));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_wakes_an_idle_worker_on_another_node() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let queue = PgJobQueue::with_listener(db.pool().clone(), db.url())
        .await
        .unwrap();
    let (mut pinged, _stop) = start_worker(Arc::new(queue));
    // Let the worker find nothing and go idle (its next poll is an hour away).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let other = PgJobQueue::new(PgPool::connect(db.url(), 2).await.unwrap());
    enqueue_elsewhere(&other, 1).await;
    expect_ping(&mut pinged, 1).await;
    enqueue_elsewhere(&other, 2).await;
    expect_ping(&mut pinged, 2).await;
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// Backends of this database whose last statement was a LISTEN.
async fn listeners(pool: &PgPool) -> Vec<i32> {
    let mut conn = pool.get().await.unwrap();
    diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .load::<Pid>(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|p| p.pid)
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_reconnects_after_its_connection_is_killed() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let queue = Arc::new(
        PgJobQueue::with_listener(db.pool().clone(), db.url())
            .await
            .unwrap(),
    );
    let (mut pinged, _stop) = start_worker(queue.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = PgJobQueue::new(PgPool::connect(db.url(), 2).await.unwrap());
    enqueue_elsewhere(&other, 1).await;
    expect_ping(&mut pinged, 1).await;

    let before = listeners(db.pool()).await;
    assert_eq!(before.len(), 1, "one listening connection: {before:?}");
    let generation = queue.work_generation();
    let mut conn = db.pool().get().await.unwrap();
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    // The listener reconnects and, having maybe missed notifications, wakes everyone once.
    tokio::time::timeout(WAKE_BOUND, queue.work_changed(generation))
        .await
        .expect("the listener reconnected");
    let after = listeners(db.pool()).await;
    assert_eq!(after.len(), 1, "listening again: {after:?}");
    assert_ne!(after, before, "on a new connection");

    enqueue_elsewhere(&other, 2).await;
    expect_ping(&mut pinged, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_refuses_invalid_jobs() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut conn = db.pool().get().await.unwrap();
    let insert = |state: &str, unique_key: &str, leased: bool| {
        let lease = if leased {
            "'w', now(), gen_random_uuid()"
        } else {
            "NULL, NULL, NULL"
        };
        format!(
            "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, \
             unique_key, created_at, locked_by, locked_until, lease_id) \
             VALUES (gen_random_uuid(), 'k', '{{}}', '{state}', 0, 1, now(), '{unique_key}', \
             now(), {lease})"
        )
    };
    diesel::sql_query(insert("available", "a", false))
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(insert("running", "b", true))
        .execute(&mut conn)
        .await
        .unwrap();
    for (sql, why) in [
        (insert("available", "a", false), "same kind and uniqueness key"),
        (insert("sleeping", "c", false), "unknown state"),
        (insert("running", "d", false), "running without a lease"),
        (insert("available", "e", true), "a lease while not running"),
        (
            "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, created_at) \
             VALUES (gen_random_uuid(), '', '{}', 'available', 0, 1, now(), now())"
                .to_owned(),
            "empty kind",
        ),
        (
            "INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, created_at) \
             VALUES (gen_random_uuid(), 'k', '{}', 'available', 0, 0, now(), now())"
                .to_owned(),
            "no attempts allowed",
        ),
    ] {
        let result = diesel::sql_query(&sql).execute(&mut conn).await;
        assert!(result.is_err(), "{why} must be refused");
    }
    // The same key in another kind is fine.
    diesel::sql_query(insert("available", "a", false).replace("'k'", "'other'"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_workers_complete_in_groups_and_run_each_job_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    const JOBS: u32 = 300;
    let queue = Arc::new(PgJobQueue::new(db.pool().clone()));
    for n in 0..JOBS {
        let job = Ping(n).to_new_job(Utc::now()).unwrap();
        queue.enqueue(job, Utc::now()).await.unwrap();
    }
    let (tx, mut pinged) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let worker = Worker::new(runtime(queue.clone(), tx.clone()), format!("busy-{w}"));
            let mut stopped = stopped.clone();
            tokio::spawn(worker.run(Shutdown::on(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })))
        })
        .collect();
    let mut seen = vec![0u32; JOBS as usize];
    for _ in 0..JOBS {
        let n = tokio::time::timeout(WAKE_BOUND, pinged.recv())
            .await
            .expect("the workers went on running jobs")
            .unwrap();
        seen[n as usize] += 1;
    }
    // A ping is sent while its job runs: the workers record the last outcomes as they stop.
    stop.send(true).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(seen.iter().all(|&runs| runs == 1), "each job ran once");
    #[derive(QueryableByName)]
    struct Left {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.pool().get().await.unwrap();
    let not_completed: Left =
        diesel::sql_query("SELECT count(*) AS n FROM jobs WHERE state <> 'completed'")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(not_completed.n, 0);
    let stats = queue.completion_stats();
    // Every completion went through the groups, with the claims of idle workers.
    assert!(stats.actions >= u64::from(JOBS), "{stats:?}");
    assert!(stats.largest > 1, "completions were grouped: {stats:?}");
}
