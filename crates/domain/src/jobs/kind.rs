//! Typed job kinds: a serde payload with a name and the settings every job of the kind shares.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Backoff, NewJob};

/// How every job of one kind is run and retried.
#[derive(Debug, Clone, PartialEq)]
pub struct KindSettings {
    /// Attempts before a job is dead (at least 1). Copied into each job when it is built
    /// ([`JobKind::to_new_job`]); the job's stored value is the one that counts.
    pub max_attempts: u32,
    /// Wait before each retry.
    pub backoff: Backoff,
    /// Longest one attempt may run before it counts as failed.
    pub timeout: Duration,
    /// Higher runs first among due jobs.
    pub priority: i16,
}

impl Default for KindSettings {
    /// 5 attempts, exponential backoff with jitter, 60 s timeout, priority 0.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::default(),
            timeout: Duration::from_secs(60),
            priority: 0,
        }
    }
}

/// A kind of background work: its payload type, its stored name and its settings.
///
/// ```
/// use keel_domain::jobs::{Backoff, JobKind, KindSettings};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct IssueCertificate { event_id: u64, participant_id: u64 }
///
/// impl JobKind for IssueCertificate {
///     const KIND: &'static str = "certificate.issue";
///     fn settings() -> KindSettings {
///         KindSettings { max_attempts: 3, backoff: Backoff::seconds(&[2, 4]), ..KindSettings::default() }
///     }
///     fn unique_key(&self) -> Option<String> {
///         Some(format!("{}:{}", self.event_id, self.participant_id))
///     }
/// }
/// ```
pub trait JobKind: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stored kind name; must never change once jobs of it exist.
    const KIND: &'static str;

    /// Settings shared by every job of this kind.
    fn settings() -> KindSettings {
        KindSettings::default()
    }

    /// A key that makes this job unique within its kind (one certificate per event and
    /// participant, one run per schedule slot); `None` allows duplicates.
    fn unique_key(&self) -> Option<String> {
        None
    }

    /// The job to enqueue for this payload, due at `run_at`.
    fn to_new_job(&self, run_at: DateTime<Utc>) -> Result<NewJob, serde_json::Error> {
        let settings = Self::settings();
        Ok(NewJob {
            kind: Self::KIND.to_owned(),
            payload: serde_json::to_value(self)?,
            priority: settings.priority,
            max_attempts: settings.max_attempts.max(1),
            run_at,
            unique_key: self.unique_key(),
        })
    }
}
