//! Group commit: concurrent calls of one kind run together, as one statement and one commit.
//!
//! Why: a small write (a job's completion, a mailbox row, a score) costs little next to what
//! every statement pays anyway: a round trip, a transaction, a WAL flush at commit and the
//! backend's wake-ups. Under load, the calls that arrive while a group runs are coalesced into the
//! next group, so these costs are paid once per group instead of once per call.
//!
//! How: a caller queues its item; at most [`GroupWork::MAX_IN_FLIGHT`] driver tasks each take the
//! oldest queued items that fit together (at most [`GroupWork::MAX_GROUP`], and those
//! [`GroupWork::fits`] accepts; the others keep their place) and hand them to
//! [`GroupWork::run`], then answer each caller with its own outcome. No artificial wait: a lone
//! call runs at once, as a group of one. Drivers are tasks of their own, so a caller whose future
//! is dropped cannot cut a group short (its item is still written once).
//!
//! Correctness must not rest on grouping: each [`GroupWork`] writes its statement so that the
//! schema's keys, locks and conditions hold whatever else runs concurrently.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use keel_domain::StoreError;
use tokio::sync::oneshot;

use crate::error::POSTGRES;

/// One kind of call that can run in groups.
#[async_trait]
pub(crate) trait GroupWork: Send + Sync + 'static {
    /// What one caller asks for.
    type Item: Send + 'static;
    /// What one caller gets back.
    type Output: Send + 'static;

    /// Most items in one group.
    const MAX_GROUP: usize;
    /// Most groups running at once (each holds one pooled connection).
    const MAX_IN_FLIGHT: usize;
    /// Names the work in errors ("the score batch", "the job completions").
    const NAME: &'static str;

    /// Whether `item` may join `group` (already non-empty); by default every item may.
    fn fits(group: &[Self::Item], item: &Self::Item) -> bool {
        let _ = (group, item);
        true
    }

    /// Runs one group; returns one outcome per item, in the items' order.
    async fn run(&self, items: &[Self::Item]) -> Vec<Result<Self::Output, StoreError>>;
}

/// Counters of the groups run (for tests and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Groups run.
    pub batches: u64,
    /// Items written in them.
    pub actions: u64,
    /// Items in the largest group.
    pub largest: u64,
}

/// One queued item and where its outcome goes.
struct Call<W: GroupWork> {
    item: W::Item,
    reply: oneshot::Sender<Result<W::Output, StoreError>>,
}

/// The queue and the number of drivers serving it.
struct Queue<W: GroupWork> {
    pending: VecDeque<Call<W>>,
    drivers: usize,
}

/// Queues calls of `W` and runs them in groups.
pub(crate) struct Grouper<W: GroupWork> {
    work: W,
    queue: Mutex<Queue<W>>,
    batches: AtomicU64,
    actions: AtomicU64,
    largest: AtomicU64,
}

impl<W: GroupWork> std::fmt::Debug for Grouper<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouper")
            .field("work", &W::NAME)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Where one caller's outcome goes.
type Reply<W> = oneshot::Sender<Result<<W as GroupWork>::Output, StoreError>>;

/// Takes the next group from `pending`: the oldest calls that fit together, at most
/// [`GroupWork::MAX_GROUP`]; the others stay queued in their order. Returns the items and, in the
/// same order, where their outcomes go.
fn take_group<W: GroupWork>(pending: &mut VecDeque<Call<W>>) -> (Vec<W::Item>, Vec<Reply<W>>) {
    let mut items: Vec<W::Item> = Vec::new();
    let mut replies = Vec::new();
    let mut kept = VecDeque::new();
    while items.len() < W::MAX_GROUP
        && let Some(call) = pending.pop_front()
    {
        if items.is_empty() || W::fits(&items, &call.item) {
            items.push(call.item);
            replies.push(call.reply);
        } else {
            kept.push_back(call);
        }
    }
    kept.append(pending);
    *pending = kept;
    (items, replies)
}

/// Keeps the driver count right if a driver ends abnormally (a panic): the queue is then served
/// by a replacement, or its callers see their channel close (an error), never a hang.
struct DriverGuard<W: GroupWork> {
    grouper: Arc<Grouper<W>>,
    armed: bool,
}

impl<W: GroupWork> Drop for DriverGuard<W> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut queue = self.grouper.queue();
        queue.drivers -= 1;
        if queue.pending.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                queue.drivers += 1;
                runtime.spawn(Arc::clone(&self.grouper).drive());
            }
            Err(_) => queue.pending.clear(),
        }
    }
}

impl<W: GroupWork> Grouper<W> {
    /// Groups calls of `work`.
    pub(crate) fn new(work: W) -> Self {
        Self {
            work,
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                drivers: 0,
            }),
            batches: AtomicU64::new(0),
            actions: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<W>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The groups run so far.
    pub(crate) fn stats(&self) -> GroupStats {
        GroupStats {
            batches: self.batches.load(Ordering::Relaxed),
            actions: self.actions.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
        }
    }

    /// Queues `item`, starting a driver if fewer than [`GroupWork::MAX_IN_FLIGHT`] run, and waits
    /// for its outcome. Needs a tokio runtime.
    pub(crate) async fn call(self: &Arc<Self>, item: W::Item) -> Result<W::Output, StoreError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::unavailable(POSTGRES, e))?;
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.queue();
            queue.pending.push_back(Call { item, reply });
            let start = queue.drivers < W::MAX_IN_FLIGHT;
            if start {
                queue.drivers += 1;
            }
            start
        };
        if start {
            runtime.spawn(Arc::clone(self).drive());
        }
        answer.await.map_err(|_| {
            StoreError::unavailable(POSTGRES, format!("{} ended without an answer", W::NAME))
        })?
    }

    /// Runs groups until the queue is empty.
    async fn drive(self: Arc<Self>) {
        let mut guard = DriverGuard {
            grouper: Arc::clone(&self),
            armed: true,
        };
        loop {
            let (items, replies) = {
                let mut queue = self.queue();
                let group = take_group(&mut queue.pending);
                if group.0.is_empty() {
                    queue.drivers -= 1;
                    guard.armed = false;
                    return;
                }
                group
            };
            let size = items.len() as u64;
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.actions.fetch_add(size, Ordering::Relaxed);
            self.largest.fetch_max(size, Ordering::Relaxed);
            let outcomes = self.work.run(&items).await;
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A caller that went away still had its item written.
                let _ = reply.send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups numbers; an even number and an odd one never share a group.
    struct Parity;

    #[async_trait]
    impl GroupWork for Parity {
        type Item = u32;
        type Output = usize;
        const MAX_GROUP: usize = 3;
        const MAX_IN_FLIGHT: usize = 1;
        const NAME: &'static str = "the parity groups";

        fn fits(group: &[u32], item: &u32) -> bool {
            group[0] % 2 == item % 2
        }

        async fn run(&self, items: &[u32]) -> Vec<Result<usize, StoreError>> {
            items.iter().map(|_| Ok(items.len())).collect()
        }
    }

    fn queued(items: &[u32]) -> VecDeque<Call<Parity>> {
        items
            .iter()
            .map(|&item| Call {
                item,
                reply: oneshot::channel().0,
            })
            .collect()
    }

    #[test]
    fn a_group_takes_the_oldest_items_that_fit_and_leaves_the_rest_in_order() {
        let mut pending = queued(&[1, 2, 3, 4, 5, 7, 9]);
        let (taken, replies) = take_group(&mut pending);
        assert_eq!(taken, vec![1, 3, 5]);
        assert_eq!(replies.len(), 3);
        let left: Vec<u32> = pending.iter().map(|c| c.item).collect();
        assert_eq!(left, vec![2, 4, 7, 9]);
        assert_eq!(take_group(&mut pending).0, vec![2, 4]);
        assert_eq!(take_group(&mut pending).0, vec![7, 9]);
        assert!(take_group(&mut pending).0.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_are_answered_each_once_in_groups_no_larger_than_the_maximum() {
        let grouper = Arc::new(Grouper::new(Parity));
        let calls = (0..40u32).map(|n| {
            let grouper = Arc::clone(&grouper);
            tokio::spawn(async move { grouper.call(n).await })
        });
        for call in calls {
            let size = call.await.expect("task").expect("outcome");
            assert!((1..=Parity::MAX_GROUP).contains(&size), "group of {size}");
        }
        let stats = grouper.stats();
        assert_eq!(stats.actions, 40);
        assert!(stats.largest <= Parity::MAX_GROUP as u64);
        assert!(stats.batches >= 40 / Parity::MAX_GROUP as u64);
    }
}
