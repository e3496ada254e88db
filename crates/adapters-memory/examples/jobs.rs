//! Embedding keel's job queue without HTTP: a flaky "send receipt" job retries on its schedule,
//! then lands in the dead-letter set, and an admin-style retry runs it again.
//!
//! `cargo run -p keel-adapters-memory --example jobs`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::Utc;
use keel_adapters_memory::{ManualClock, MemoryJobQueue, TokioTimer};
use keel_domain::Clock;
use keel_domain::jobs::{
    Backoff, IgnoreJobEvents, JobChange, JobContext, JobFailure, JobHandler, JobKind, JobQueue,
    JobRegistry, JobRuntime, KindSettings, Worker, WorkerSettings,
};
use serde::{Deserialize, Serialize};

/// The job: e-mail a receipt for an order.
#[derive(Serialize, Deserialize)]
struct SendReceipt {
    order: u64,
}

impl JobKind for SendReceipt {
    const KIND: &'static str = "example.send_receipt";

    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 3,
            backoff: Backoff::seconds(&[2, 4]),
            ..KindSettings::default()
        }
    }

    fn unique_key(&self) -> Option<String> {
        Some(self.order.to_string()) // one receipt job per order
    }
}

/// A mail provider that is down for the first `outage` calls.
struct Provider {
    calls: AtomicU32,
    outage: u32,
}

#[async_trait]
impl JobHandler<SendReceipt> for Arc<Provider> {
    async fn run(&self, ctx: &JobContext, job: SendReceipt) -> Result<(), JobFailure> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= self.outage {
            return Err(JobFailure::retry(format!("provider down (call {call})")));
        }
        println!(
            "  receipt for order {} sent on attempt {}",
            job.order, ctx.attempt
        );
        Ok(())
    }

    async fn on_dead(&self, _ctx: &JobContext, job: SendReceipt) -> Result<(), JobFailure> {
        println!(
            "  order {}: receipt job is dead; flag the order for support",
            job.order
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let queue = Arc::new(MemoryJobQueue::new());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let provider = Arc::new(Provider {
        calls: AtomicU32::new(0),
        outage: 3,
    });
    let mut registry = JobRegistry::new();
    registry.register::<SendReceipt>(provider.clone());
    let runtime = JobRuntime {
        queue: queue.clone(),
        registry: Arc::new(registry),
        clock: clock.clone(),
        timer: Arc::new(TokioTimer),
        observer: Arc::new(IgnoreJobEvents),
        settings: WorkerSettings::default(),
    };
    let worker = Worker::new(runtime, "example-worker");

    let now = clock.now();
    let job = SendReceipt { order: 42 }
        .to_new_job(now)
        .expect("serializable");
    let id = queue.enqueue(job.clone(), now).await.expect("memory").id();
    let again = queue.enqueue(job, now).await.expect("memory");
    println!("enqueued job {id}; enqueuing the same order again: {again:?}");

    // Each failure schedules the next attempt (2 s, then 4 s); the fake clock jumps to it.
    for _ in 0..3 {
        let outcome = worker.run_once().await.expect("memory");
        let stored = queue.get(id).await.expect("memory").expect("kept");
        println!(
            "attempt {} of {}: {outcome:?} ({:?}), next run at {}",
            stored.attempt, stored.max_attempts, stored.state, stored.run_at
        );
        clock.set(stored.run_at);
    }

    // The provider is back: an admin retries the dead job with a fresh attempt budget.
    let JobChange::Changed(retried) = queue.retry(id, clock.now()).await.expect("memory") else {
        panic!("a dead job can be retried");
    };
    println!(
        "admin retry: {:?}, attempts used reset to {}",
        retried.state, retried.attempt
    );
    let outcome = worker.run_once().await.expect("memory");
    println!("after the retry: {outcome:?}");
}
