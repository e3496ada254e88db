//! The durable job queue on Postgres: migrate, enqueue a job inside the transaction of the work
//! it belongs to (the transactional outbox), and let a worker run it.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run -p keel-adapters-postgres --example pg_jobs`

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use diesel_async::AsyncConnection;
use keel_adapters_memory::TokioTimer;
use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_adapters_postgres::{PgJobQueue, PgPool, enqueue_in};
use keel_domain::SystemClock;
use keel_domain::jobs::{
    IgnoreJobEvents, JobContext, JobFailure, JobHandler, JobKind, JobQueue, JobRegistry,
    JobRuntime, Shutdown, Worker, WorkerSettings,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The example's job kind: greet someone.
#[derive(Debug, Serialize, Deserialize)]
struct Greet {
    name: String,
}

impl JobKind for Greet {
    const KIND: &'static str = "example.greet";
}

/// Prints the greeting and reports the attempt that ran it.
struct Greeter(mpsc::UnboundedSender<u32>);

#[async_trait]
impl JobHandler<Greet> for Greeter {
    async fn run(&self, ctx: &JobContext, job: Greet) -> Result<(), JobFailure> {
        println!("job {}: hello, {}!", ctx.id, job.name);
        let _ = self.0.send(ctx.attempt);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("DATABASE_URL is not set: nothing to do (set it to a Postgres database to run)");
        return Ok(());
    };
    run_pending_migrations(&url).await?;
    let pool = PgPool::connect(&url, 4).await?;
    // The listener wakes the worker as soon as the enqueuing transaction commits.
    let queue: Arc<dyn JobQueue> = Arc::new(PgJobQueue::with_listener(pool.clone(), &url).await?);

    let (ran, mut ran_rx) = mpsc::unbounded_channel();
    let mut registry = JobRegistry::new();
    registry.register::<Greet>(Greeter(ran));
    let runtime = JobRuntime {
        queue: queue.clone(),
        registry: Arc::new(registry),
        clock: Arc::new(SystemClock),
        timer: Arc::new(TokioTimer),
        observer: Arc::new(IgnoreJobEvents),
        settings: WorkerSettings::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(runtime, format!("example-{}", std::process::id())).run(Shutdown::on(async {
            let _ = stopped.await;
        })),
    );

    // The job commits with the business rows, or not at all.
    let job = Greet {
        name: "keel".into(),
    }
    .to_new_job(Utc::now())?;
    let mut conn = pool.get().await?;
    let outcome = conn
        .transaction(async |conn| {
            // ... insert the business rows on `conn` here ...
            enqueue_in(conn, &job, Utc::now()).await
        })
        .await?;
    drop(conn);
    println!("enqueued: {outcome:?}");

    let attempt = tokio::time::timeout(Duration::from_secs(30), ran_rx.recv())
        .await
        .map_err(|_| "the job did not run within 30 s")?;
    println!("ran on attempt {}", attempt.unwrap_or_default());
    let _ = stop.send(());
    worker.await?;

    match queue.get(outcome.id()).await? {
        Some(job) => println!(
            "job {} is {} after {} attempt(s)",
            job.id,
            job.state.as_str(),
            job.attempt
        ),
        None => println!("job {} is gone", outcome.id()),
    }
    Ok(())
}
