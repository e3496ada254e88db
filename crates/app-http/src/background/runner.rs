//! Starts a node's job workers and scheduler on tokio, and stops them gracefully.

use std::sync::Arc;
use std::time::Duration;

use keel_adapters_memory::TokioTimer;
use keel_domain::jobs::{JobRuntime, Scheduler, Shutdown, Worker, WorkerSettings};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{JobMetrics, periodic_jobs, registry};
use crate::state::AppState;

/// Extra time, beyond the jobs' shutdown grace, that stopping waits for workers to hand back.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// The running workers and scheduler of one process.
#[derive(Debug)]
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    subscribers: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl Background {
    /// Starts the products' domain-event subscribers, then `KEEL_WORKERS` workers (none when 0)
    /// and one scheduler over `state`'s queue.
    pub fn start(state: &AppState) -> Self {
        let settings = &state.settings.jobs;
        let grace = Duration::from_secs(settings.shutdown_grace_secs);
        let (stop, stopped) = watch::channel(false);
        let mut background = Self {
            stop,
            tasks: Vec::new(),
            subscribers: crate::products::subscribe(state),
            grace,
        };
        if settings.workers == 0 {
            tracing::info!("job workers disabled (KEEL_WORKERS=0)");
            return background;
        }
        let periodic = match periodic_jobs(state) {
            Ok(periodic) => periodic,
            Err(e) => {
                tracing::error!(error = %e, "periodic jobs are misconfigured; none scheduled");
                Vec::new()
            }
        };
        let runtime = JobRuntime {
            queue: state.stores.jobs.clone(),
            registry: Arc::new(registry(state)),
            clock: state.clock.clone(),
            timer: Arc::new(TokioTimer),
            observer: Arc::new(JobMetrics),
            settings: WorkerSettings {
                lease: Duration::from_secs(settings.lease_secs),
                poll_interval: Duration::from_millis(settings.poll_interval_ms),
                shutdown_grace: grace,
            },
        };
        let shutdown = Shutdown::on(async move {
            let mut stopped = stopped;
            // An error means the sender is gone: stop too.
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        let node = format!(
            "keel-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        for n in 0..settings.workers {
            let worker = Worker::new(runtime.clone(), format!("{node}-w{n}"));
            background
                .tasks
                .push(tokio::spawn(worker.run(shutdown.clone())));
        }
        let scheduler = Scheduler::new(runtime, format!("{node}-scheduler"), periodic);
        background.tasks.push(tokio::spawn(scheduler.run(shutdown)));
        tracing::info!(workers = settings.workers, "job workers started");
        background
    }

    /// Stops claiming, lets running jobs finish within the grace period (then releases them),
    /// and waits for every task.
    pub async fn stop(self) {
        for subscriber in &self.subscribers {
            subscriber.abort();
        }
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(self.grace + STOP_MARGIN, all)
            .await
            .is_err()
        {
            tracing::warn!("job workers did not stop in time");
        } else {
            tracing::info!("job workers stopped");
        }
    }
}
