//! The scheduler: enqueues periodic jobs once per slot and rescues jobs whose worker died.
//! Every node may run one; the queue's uniqueness keys make their work idempotent.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::{FutureExt, pin_mut, select_biased};

use super::{EnqueueOutcome, JobFailure, JobRuntime, PeriodicJob, Shutdown};
use crate::StoreError;

/// What one scheduler tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Periodic jobs enqueued for a new slot (not counting slots another node already took).
    pub enqueued: usize,
    /// Jobs whose lease had expired and whose attempts were spent, now dead-lettered.
    pub dead_lettered: usize,
}

/// Enqueues periodic jobs and rescues expired leases, once per tick.
#[derive(Debug)]
pub struct Scheduler {
    runtime: JobRuntime,
    name: String,
    periodic: Vec<PeriodicJob>,
    last_slots: HashMap<String, DateTime<Utc>>,
}

impl Scheduler {
    /// A scheduler called `name` for `periodic` jobs.
    pub fn new(runtime: JobRuntime, name: impl Into<String>, periodic: Vec<PeriodicJob>) -> Self {
        Self {
            runtime,
            name: name.into(),
            periodic,
            last_slots: HashMap::new(),
        }
    }

    /// One pass: enqueue every schedule's latest slot not yet enqueued from here, then rescue
    /// jobs with expired leases (dead-lettering those with no attempts left).
    pub async fn tick(&mut self) -> Result<TickReport, StoreError> {
        let rt = self.runtime.clone();
        let now = rt.clock.now();
        let mut report = TickReport::default();
        for periodic in &self.periodic {
            let Some((slot, job)) = periodic.due(now) else {
                continue;
            };
            if self.last_slots.get(periodic.kind()) == Some(&slot) {
                continue;
            }
            if let EnqueueOutcome::Enqueued(_) = rt.queue.enqueue(job, now).await? {
                report.enqueued += 1;
            }
            self.last_slots.insert(periodic.kind().to_owned(), slot);
        }
        let request = rt.claim_request(&self.name, 100);
        for claimed in rt.queue.rescue_expired(&request).await? {
            let failure = JobFailure::retry("lease expired: the worker stopped responding");
            rt.record_failure(&claimed, failure).await?;
            report.dead_lettered += 1;
        }
        Ok(report)
    }

    /// Ticks every poll interval until `shutdown`.
    pub async fn run(mut self, shutdown: Shutdown) {
        let rt = self.runtime.clone();
        while !shutdown.is_requested() {
            if let Err(e) = self.tick().await {
                rt.observer.store_failed("scheduling", &e);
            }
            let poll = rt.timer.sleep(rt.settings.poll_interval).fuse();
            let stop = shutdown.requested().fuse();
            pin_mut!(poll, stop);
            select_biased! {
                () = stop => break,
                () = poll => {},
            }
        }
    }
}
