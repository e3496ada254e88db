//! Concurrent checks of one key, decided together in that key's next round trip.
//!
//! The first check of a key starts a task of the key's own; checks of the same key arriving
//! while it is out join the key's queue, and the task sends the whole queue (up to
//! [`MAX_BATCH`]) as its next batch, until the queue is empty. The task, not the callers, makes
//! the round trips, so a caller that goes away (a closed connection) never strands the
//! requests that joined after it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::BoxFuture;
use keel_domain::StoreError;
use keel_domain::ratelimit::RatePolicy;
use tokio::sync::oneshot;

/// Most requests decided by one script call.
pub(super) const MAX_BATCH: usize = 256;

/// Requests of one key to decide in one round trip, in arrival order.
pub(super) struct Batch {
    /// The Redis key.
    pub key: String,
    /// Emission interval T, µs.
    pub interval: i64,
    /// Burst.
    pub burst: u32,
    /// Each request's `now`, µs.
    pub nows: Vec<i64>,
}

/// What the script decided for one request, and the TAT it found stored before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verdict {
    /// Whether the request passed.
    pub allowed: bool,
    /// The TAT before this request (none when the key had none).
    pub stored: Option<i64>,
}

/// Makes one round trip for a batch.
pub(super) type RunBatch =
    dyn Fn(Batch) -> BoxFuture<'static, Result<Vec<Verdict>, StoreError>> + Send + Sync;

type Answer = oneshot::Sender<Result<Verdict, StoreError>>;

/// A key under one policy: only requests of the same budget are decided together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Budget {
    key: String,
    interval: i64,
    burst: u32,
}

/// The queues of keys whose task is running (a key is present exactly while it is).
#[derive(Debug, Default)]
pub(super) struct Coalescer {
    queues: Mutex<HashMap<Budget, Vec<(i64, Answer)>>>,
    round_trips: AtomicU64,
}

impl Coalescer {
    /// Decides one request of `key` at `now` (µs) under `policy`, in the key's next batch.
    pub(super) async fn decide(
        self: &Arc<Self>,
        key: String,
        policy: RatePolicy,
        now: i64,
        run: Arc<RunBatch>,
    ) -> Result<Verdict, StoreError> {
        let budget = Budget {
            key,
            interval: policy.emission_interval_micros(),
            burst: policy.burst(),
        };
        let (answer, answered) = oneshot::channel();
        let start = match self.lock().entry(budget.clone()) {
            Entry::Occupied(mut queue) => {
                queue.get_mut().push((now, answer));
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(vec![(now, answer)]);
                true
            }
        };
        if start {
            tokio::spawn(Arc::clone(self).drain(budget, run));
        }
        answered.await.map_err(|_| {
            StoreError::unavailable("redis", "the rate-limit round trip ended without an answer")
        })?
    }

    /// Script calls made so far.
    pub(super) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// The key's task: batches until its queue is empty, then removes the key.
    async fn drain(self: Arc<Self>, budget: Budget, run: Arc<RunBatch>) {
        let mut guard = Unqueue {
            coalescer: Arc::clone(&self),
            budget: Some(budget.clone()),
        };
        loop {
            let waiting: Vec<(i64, Answer)> = {
                let mut queues = self.lock();
                let Some(queue) = queues.get_mut(&budget) else {
                    return;
                };
                if queue.is_empty() {
                    queues.remove(&budget);
                    guard.budget = None;
                    return;
                }
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            let (nows, answers): (Vec<i64>, Vec<Answer>) = waiting.into_iter().unzip();
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let batch = Batch {
                key: budget.key.clone(),
                interval: budget.interval,
                burst: budget.burst,
                nows,
            };
            match run(batch).await {
                // A short answer leaves the rest unanswered: they fail as unavailable.
                Ok(verdicts) => answers
                    .into_iter()
                    .zip(verdicts)
                    .for_each(|(answer, verdict)| drop(answer.send(Ok(verdict)))),
                Err(error) => answers
                    .into_iter()
                    .for_each(|answer| drop(answer.send(Err(error.clone())))),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Budget, Vec<(i64, Answer)>>> {
        // Every critical section leaves the map consistent, so poisoning cannot corrupt it.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a key whose task ended without emptying it (a panic, a runtime shutting down): its
/// waiting requests fail as unavailable, and the key's next check starts a new task.
struct Unqueue {
    coalescer: Arc<Coalescer>,
    budget: Option<Budget>,
}

impl Drop for Unqueue {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            self.coalescer.lock().remove(&budget);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keel_domain::ratelimit::Period;
    use keel_domain::ratelimit::gcra;

    use super::*;

    fn policy() -> RatePolicy {
        RatePolicy {
            count: 5,
            period: Period::Minute,
        }
    }

    /// A fake Redis: the domain rule over one stored TAT per key, slow enough for checks to
    /// pile up behind a round trip.
    fn fake(tats: Arc<Mutex<HashMap<String, i64>>>) -> Arc<RunBatch> {
        Arc::new(move |batch: Batch| {
            let tats = Arc::clone(&tats);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let policy = policy();
                let mut tats = tats.lock().unwrap();
                let verdicts = batch
                    .nows
                    .iter()
                    .map(|&now| {
                        let stored = tats.get(&batch.key).copied();
                        let (decision, new_tat) = gcra::decide(stored, now, &policy);
                        if let Some(tat) = new_tat {
                            tats.insert(batch.key.clone(), tat);
                        }
                        Verdict {
                            allowed: decision.allowed,
                            stored,
                        }
                    })
                    .collect();
                Ok(verdicts)
            })
        })
    }

    #[tokio::test]
    async fn concurrent_checks_of_one_key_share_round_trips_and_the_burst() {
        let coalescer = Arc::new(Coalescer::default());
        let run = fake(Arc::default());
        let checks = (0..40).map(|_| coalescer.decide("k".into(), policy(), 1_000, run.clone()));
        let verdicts = futures_util::future::join_all(checks).await;
        let allowed = verdicts
            .iter()
            .filter(|v| v.as_ref().unwrap().allowed)
            .count();
        assert_eq!(allowed, 5, "exactly the burst passes");
        assert!(
            coalescer.round_trips() <= 2,
            "40 concurrent checks took {} round trips",
            coalescer.round_trips()
        );
        assert!(coalescer.lock().is_empty(), "an idle key leaves no queue");
    }

    #[tokio::test]
    async fn a_failed_round_trip_fails_every_request_in_it_and_the_key_recovers() {
        let coalescer = Arc::new(Coalescer::default());
        let failing: Arc<RunBatch> = Arc::new(|_| {
            Box::pin(async { Err(StoreError::unavailable("redis", "connection refused")) })
        });
        let checks = (0..3).map(|_| coalescer.decide("k".into(), policy(), 1, failing.clone()));
        for result in futures_util::future::join_all(checks).await {
            assert!(matches!(result, Err(StoreError::Unavailable { .. })));
        }
        let verdict = coalescer
            .decide("k".into(), policy(), 1, fake(Arc::default()))
            .await
            .unwrap();
        assert!(verdict.allowed);
    }

    #[tokio::test]
    async fn a_panicking_round_trip_frees_the_key() {
        let coalescer = Arc::new(Coalescer::default());
        let panicking: Arc<RunBatch> = Arc::new(|_| Box::pin(async { panic!("driver bug") }));
        let failed = coalescer.decide("k".into(), policy(), 1, panicking).await;
        assert!(matches!(failed, Err(StoreError::Unavailable { .. })));
        let verdict = coalescer
            .decide("k".into(), policy(), 1, fake(Arc::default()))
            .await
            .unwrap();
        assert!(verdict.allowed, "the key's next check starts a new task");
    }

    #[tokio::test]
    async fn keys_and_policies_are_batched_apart() {
        let coalescer = Arc::new(Coalescer::default());
        let tats: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
        let run = fake(Arc::clone(&tats));
        let other = RatePolicy {
            count: 7,
            period: Period::Hour,
        };
        let a = coalescer.decide("a".into(), policy(), 1, run.clone());
        let b = coalescer.decide("b".into(), policy(), 1, run.clone());
        let c = coalescer.decide("a".into(), other, 1, run.clone());
        let (a, b, c) = tokio::join!(a, b, c);
        assert!(a.unwrap().allowed && b.unwrap().allowed && c.unwrap().allowed);
        assert_eq!(coalescer.round_trips(), 3);
    }
}
