//! Background work of a keel process: the job kinds it runs, its workers and scheduler, and
//! their metrics.

mod kinds;
mod observer;
mod runner;

pub use kinds::{periodic_jobs, registry};
pub use observer::{
    JOB_ATTEMPTS_TOTAL, JOB_RUN_SECONDS, JOB_WAIT_SECONDS, JOBS, JobMetrics, record_queue_depth,
};
pub use runner::Background;
