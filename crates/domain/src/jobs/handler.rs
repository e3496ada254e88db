//! Job handlers: the code that runs a kind, and how an attempt reports failure.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{JobId, JobKind};

/// What a handler knows about the attempt it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContext {
    /// The job.
    pub id: JobId,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// When the job was enqueued.
    pub created_at: DateTime<Utc>,
}

/// Why an attempt failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobFailure {
    message: String,
    retryable: bool,
}

impl JobFailure {
    /// A failure that may pass on a later attempt (a timeout, a dependency down).
    pub fn retry(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (a malformed payload, a rule the job breaks): the job is dead
    /// at once.
    pub fn permanent(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            retryable: false,
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl From<crate::StoreError> for JobFailure {
    fn from(error: crate::StoreError) -> Self {
        match error {
            crate::StoreError::Corrupt(_) => Self::permanent(error),
            _ => Self::retry(error),
        }
    }
}

/// Runs jobs of kind `J`.
///
/// A job runs at least once: after a crash or a lost lease it runs again, so handlers must be
/// idempotent (use the job id or the payload's natural key, as the certificate and payout
/// handlers do).
#[async_trait]
pub trait JobHandler<J: JobKind>: Send + Sync + 'static {
    /// Runs one attempt.
    async fn run(&self, ctx: &JobContext, job: J) -> Result<(), JobFailure>;

    /// Called once the job is dead (attempts exhausted or a permanent failure), before the queue
    /// records it dead: at least once, so it must be idempotent too. A payout releases its
    /// hold here. A retryable error leaves the job leased, so it is rescued after its lease and
    /// the hook runs again; a permanent error is recorded and the job is dead regardless.
    async fn on_dead(&self, ctx: &JobContext, job: J) -> Result<(), JobFailure> {
        let _ = (ctx, job);
        Ok(())
    }
}
