//! Jobs as the queue stores them: identity, state, attempts and the errors of past attempts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identifier of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job is in its life.
///
/// `Available` jobs wait for `run_at`; `Running` ones are leased by one worker; `Completed` and
/// `Dead` are final until an admin retries a dead job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to run at or after its `run_at`.
    Available,
    /// Claimed by a worker whose lease has not run out.
    Running,
    /// Ran successfully.
    Completed,
    /// Failed every attempt (the dead-letter set).
    Dead,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 4] = [Self::Available, Self::Running, Self::Completed, Self::Dead];

    /// The stored name (`available`, `running`, `completed`, `dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Dead => "dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A job to enqueue. Build it from a typed job with [`super::JobKind::to_new_job`] so its kind
/// settings (attempts, priority, uniqueness) come along.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Registered kind name, e.g. `mail.send`.
    pub kind: String,
    /// Serialized payload the handler will deserialize.
    pub payload: serde_json::Value,
    /// Higher runs first among jobs that are due.
    pub priority: i16,
    /// Attempts before the job is dead.
    pub max_attempts: u32,
    /// Earliest start.
    pub run_at: DateTime<Utc>,
    /// With a key, at most one job of this kind with this key exists at a time.
    pub unique_key: Option<String>,
}

impl NewJob {
    /// The same job, starting no earlier than `run_at`.
    pub fn at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = run_at;
        self
    }

    /// The same job with a uniqueness key.
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
}

/// What [`super::JobQueue::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new job was stored.
    Enqueued(JobId),
    /// A job of the same kind and uniqueness key already exists; nothing was stored.
    Duplicate(JobId),
}

impl EnqueueOutcome {
    /// The id of the new or existing job.
    pub fn id(self) -> JobId {
        match self {
            Self::Enqueued(id) | Self::Duplicate(id) => id,
        }
    }
}

/// The error of one failed attempt, kept for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Attempt number (1-based).
    pub attempt: u32,
    /// When the attempt failed.
    pub at: DateTime<Utc>,
    /// What went wrong.
    pub error: String,
}

/// A stored job, as admins and workers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Identity.
    pub id: JobId,
    /// Kind name.
    pub kind: String,
    /// Payload for the handler.
    pub payload: serde_json::Value,
    /// Priority among due jobs (higher first).
    pub priority: i16,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Earliest (next) start.
    pub run_at: DateTime<Utc>,
    /// Uniqueness key, if any.
    pub unique_key: Option<String>,
    /// Errors of failed attempts, oldest first.
    pub errors: Vec<AttemptError>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it completed or died.
    pub finished_at: Option<DateTime<Utc>>,
    /// Worker holding the lease while running.
    pub locked_by: Option<String>,
    /// End of the lease while running.
    pub locked_until: Option<DateTime<Utc>>,
}

/// A job leased to one worker: only the holder of `lease` may report its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job as it was when claimed (state `Running`, `attempt` already counted).
    pub job: Job,
    /// Proof of the lease; a re-claimed job gets a new one.
    pub lease: Uuid,
}
