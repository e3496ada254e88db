//! The `JobObserver` port: what workers report for metrics and logs.

use std::time::Duration;

use crate::StoreError;

/// How one attempt ended, as a worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Ran to success.
    Completed,
    /// Failed; will run again after its backoff.
    Retrying,
    /// Failed for good; now in the dead-letter set.
    Dead,
    /// Given back unrun or unfinished at shutdown.
    Released,
    /// The worker lost its lease (it was too slow to heartbeat); the job's new holder decides.
    LeaseLost,
    /// Attempts are spent but the dead-letter hook failed and will be retried: the job stays
    /// leased until its lease runs out and a scheduler rescues it.
    HookFailed,
}

impl AttemptOutcome {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
            Self::Released => "released",
            Self::LeaseLost => "lease_lost",
            Self::HookFailed => "hook_failed",
        }
    }
}

/// Receives what workers and schedulers do. Every method defaults to nothing.
pub trait JobObserver: Send + Sync {
    /// An attempt started `waited` after the job was due.
    fn started(&self, kind: &str, waited: Duration) {
        let _ = (kind, waited);
    }

    /// An attempt ended after running `ran`; `error` says why it failed, if it did.
    fn finished(&self, kind: &str, outcome: AttemptOutcome, ran: Duration, error: Option<&str>) {
        let _ = (kind, outcome, ran, error);
    }

    /// The queue failed while a worker or scheduler was `doing` something; it will try again.
    fn store_failed(&self, doing: &'static str, error: &StoreError) {
        let _ = (doing, error);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreJobEvents;

impl JobObserver for IgnoreJobEvents {}
