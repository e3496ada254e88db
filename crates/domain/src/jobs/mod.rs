//! Durable background jobs: typed kinds, the retry rule, the `JobQueue` port, and the
//! runtime-agnostic worker and scheduler that drive any adapter of it.
//!
//! - A job is enqueued inside the transaction of the business rows it belongs to (the
//!   transactional outbox: the Postgres adapter's `enqueue_in`), so it exists iff they committed.
//! - Workers lease jobs, renew the lease while running, and record each outcome with
//!   [`after_failure`]: retry after the kind's [`Backoff`], or dead (the dead-letter set) with
//!   the kind's `on_dead` hook. A job whose worker died is rescued when its lease expires.
//! - Handlers run at least once per job and must be idempotent; uniqueness keys keep one job per
//!   natural key, and [`PeriodicJob`] slots make each schedule slot one job across all nodes.

mod backoff;
mod handler;
mod housekeeping;
mod job;
mod kind;
mod observer;
mod periodic;
mod queue;
mod registry;
mod retry;
mod scheduler;
mod shutdown;
mod timer;
mod worker;

pub use backoff::Backoff;
pub use handler::{JobContext, JobFailure, JobHandler};
pub use housekeeping::{PurgeCompletedJobs, PurgeCompletedJobsHandler};
pub use job::{AttemptError, ClaimedJob, EnqueueOutcome, Job, JobId, JobState, NewJob};
pub use kind::{JobKind, KindSettings};
pub use observer::{AttemptOutcome, IgnoreJobEvents, JobObserver};
pub use periodic::{Every, PeriodicJob, ScheduleError};
#[cfg(test)]
pub use queue::MockJobQueue;
pub use queue::{AfterFailure, ClaimRequest, JobChange, JobCount, JobFilter, JobQueue};
pub use registry::{JobRegistry, RegisteredKind};
pub use retry::after_failure;
pub use scheduler::{Scheduler, TickReport};
pub use shutdown::Shutdown;
pub use timer::Timer;
pub use worker::{JobRuntime, Worker, WorkerSettings};
