//! Job metrics and logs: the [`JobObserver`] of a keel process, and the queue-depth gauges.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use keel_domain::StoreError;
use keel_domain::jobs::{AttemptOutcome, JobObserver, JobQueue, JobState};

/// Histogram: seconds from a job being due to its attempt starting, by `kind`.
pub const JOB_WAIT_SECONDS: &str = "keel_job_wait_seconds";
/// Histogram: seconds an attempt ran, by `kind` and `outcome`.
pub const JOB_RUN_SECONDS: &str = "keel_job_run_seconds";
/// Counter: attempts ended, by `kind` and `outcome` (completed, retrying, dead, …).
pub const JOB_ATTEMPTS_TOTAL: &str = "keel_job_attempts_total";
/// Gauge: jobs by `kind` and `state` (queue depth; `state="dead"` is the dead-letter size).
pub const JOBS: &str = "keel_jobs";

/// Reports worker activity as Prometheus metrics and log lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobMetrics;

impl JobObserver for JobMetrics {
    fn started(&self, kind: &str, waited: Duration) {
        metrics::histogram!(JOB_WAIT_SECONDS, "kind" => kind.to_owned()).record(waited);
    }

    fn finished(&self, kind: &str, outcome: AttemptOutcome, ran: Duration, error: Option<&str>) {
        let labels = [
            ("kind", kind.to_owned()),
            ("outcome", outcome.as_str().to_owned()),
        ];
        metrics::histogram!(JOB_RUN_SECONDS, &labels).record(ran);
        metrics::counter!(JOB_ATTEMPTS_TOTAL, &labels).increment(1);
        match (outcome, error) {
            (AttemptOutcome::Dead, error) => {
                tracing::error!(
                    kind,
                    error,
                    "job is dead: attempts spent or failure permanent"
                );
            }
            (_, Some(error)) => tracing::warn!(
                kind,
                error,
                outcome = outcome.as_str(),
                "job attempt failed"
            ),
            (AttemptOutcome::LeaseLost | AttemptOutcome::HookFailed, None) => {
                tracing::warn!(
                    kind,
                    outcome = outcome.as_str(),
                    "job attempt did not finish cleanly"
                );
            }
            _ => tracing::debug!(kind, outcome = outcome.as_str(), "job attempt finished"),
        }
    }

    fn store_failed(&self, doing: &'static str, error: &StoreError) {
        tracing::warn!(error = %error, "job queue failed while {doing}; retrying");
    }
}

/// Label pairs already published, so a (kind, state) that emptied is set back to 0.
fn published() -> &'static Mutex<HashSet<(String, JobState)>> {
    static PUBLISHED: OnceLock<Mutex<HashSet<(String, JobState)>>> = OnceLock::new();
    PUBLISHED.get_or_init(Default::default)
}

/// Sets the [`JOBS`] gauges from the queue's counts (called when `/metrics` is scraped).
pub async fn record_queue_depth(queue: &dyn JobQueue) -> Result<(), StoreError> {
    let counts = queue.counts().await?;
    let mut published = published().lock().unwrap_or_else(|p| p.into_inner());
    let current: HashSet<(String, JobState)> =
        counts.iter().map(|c| (c.kind.clone(), c.state)).collect();
    for (kind, state) in published.difference(&current) {
        metrics::gauge!(JOBS, "kind" => kind.clone(), "state" => state.as_str()).set(0.0);
    }
    for count in &counts {
        metrics::gauge!(JOBS, "kind" => count.kind.clone(), "state" => count.state.as_str())
            .set(count.count as f64);
    }
    published.extend(current);
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use keel_adapters_memory::MemoryJobQueue;
    use keel_domain::jobs::{JobQueue, NewJob};

    use super::*;

    fn gauge(kind: &str, state: &str) -> Option<f64> {
        let series = format!("{JOBS}{{kind=\"{kind}\",state=\"{state}\"}} ");
        crate::http::metrics::handle()
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.parse().ok())
    }

    #[tokio::test]
    async fn queue_depth_gauges_follow_the_counts_and_return_to_zero() {
        crate::http::metrics::handle();
        let queue = MemoryJobQueue::new();
        let job = NewJob {
            kind: "depth.test".into(),
            payload: serde_json::Value::Null,
            priority: 0,
            max_attempts: 1,
            run_at: Utc::now(),
            unique_key: None,
        };
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                queue
                    .enqueue(job.clone(), Utc::now())
                    .await
                    .expect("memory")
                    .id(),
            );
        }
        record_queue_depth(&queue).await.expect("memory");
        assert_eq!(gauge("depth.test", "available"), Some(3.0));
        for id in ids {
            queue.delete(id).await.expect("memory");
        }
        record_queue_depth(&queue).await.expect("memory");
        assert_eq!(
            gauge("depth.test", "available"),
            Some(0.0),
            "emptied, not stale"
        );
    }
}
