//! The retry rule: what happens to a job after a failed attempt.

use chrono::{DateTime, Utc};

use super::{AfterFailure, Backoff, Job, JobFailure};

/// Decides a failed attempt's follow-up: dead when the failure is permanent or the attempts are
/// spent, otherwise a retry after the kind's backoff. `random` is uniform in `[0, 1)` (jitter).
pub fn after_failure(
    job: &Job,
    failure: &JobFailure,
    backoff: &Backoff,
    now: DateTime<Utc>,
    random: f64,
) -> AfterFailure {
    if !failure.is_retryable() || job.attempt >= job.max_attempts {
        return AfterFailure::Dead(now);
    }
    let wait = backoff.delay(job.attempt, random);
    AfterFailure::RetryAt(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobId, JobState};

    fn job(attempt: u32, max_attempts: u32) -> Job {
        let now = Utc::now();
        Job {
            id: JobId(uuid::Uuid::nil()),
            kind: "k".into(),
            payload: serde_json::Value::Null,
            priority: 0,
            state: JobState::Running,
            attempt,
            max_attempts,
            run_at: now,
            unique_key: None,
            errors: vec![],
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            locked_by: None,
            locked_until: None,
        }
    }

    #[test]
    fn retries_on_schedule_until_attempts_are_spent() {
        let now = Utc::now();
        let backoff = Backoff::seconds(&[2, 4, 8]);
        let fail = JobFailure::retry("boom");
        let at = |a| after_failure(&job(a, 4), &fail, &backoff, now, 0.5);
        assert_eq!(
            at(1),
            AfterFailure::RetryAt(now + chrono::Duration::seconds(2))
        );
        assert_eq!(
            at(2),
            AfterFailure::RetryAt(now + chrono::Duration::seconds(4))
        );
        assert_eq!(
            at(3),
            AfterFailure::RetryAt(now + chrono::Duration::seconds(8))
        );
        assert_eq!(at(4), AfterFailure::Dead(now));
    }

    #[test]
    fn permanent_failures_are_dead_at_once() {
        let now = Utc::now();
        let next = after_failure(
            &job(1, 10),
            &JobFailure::permanent("bad payload"),
            &Backoff::default(),
            now,
            0.0,
        );
        assert_eq!(next, AfterFailure::Dead(now));
    }
}
