//! The board's change feed within one process: a counter and a broadcast channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::scoreboard::{BoardFeed, BoardSignal, BoardSubscription};
use tokio::sync::broadcast;

/// Signals buffered per subscriber before a slow one is told to resync.
pub const CAPACITY: usize = 256;

/// [`BoardFeed`] for one process; clones share the counter and the subscribers.
#[derive(Debug, Clone)]
pub struct MemoryBoardFeed {
    counter: Arc<AtomicU64>,
    sender: broadcast::Sender<u64>,
}

impl Default for MemoryBoardFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBoardFeed {
    /// A feed at change 0 with no subscribers.
    pub fn new() -> Self {
        Self {
            counter: Arc::default(),
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

#[async_trait]
impl BoardFeed for MemoryBoardFeed {
    async fn publish(&self, floor: u64) -> Result<u64, StoreError> {
        let previous = self
            .counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.max(floor) + 1)
            })
            .unwrap_or_else(|n| n);
        let number = previous.max(floor) + 1;
        // No subscriber is not an error: nobody needed to hear it.
        let _ = self.sender.send(number);
        Ok(number)
    }

    async fn current(&self) -> Result<u64, StoreError> {
        Ok(self.counter.load(Ordering::Acquire))
    }

    async fn subscribe(&self) -> Result<Box<dyn BoardSubscription>, StoreError> {
        Ok(Box::new(MemoryBoardSubscription(self.sender.subscribe())))
    }
}

struct MemoryBoardSubscription(broadcast::Receiver<u64>);

#[async_trait]
impl BoardSubscription for MemoryBoardSubscription {
    async fn next(&mut self) -> Option<BoardSignal> {
        match self.0.recv().await {
            Ok(number) => Some(BoardSignal::Changed(number)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(BoardSignal::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn keeps_the_feed_contract() {
        let feed = MemoryBoardFeed::new();
        let other_handle = feed.clone();
        tokio::time::timeout(
            Duration::from_secs(5),
            keel_domain::testkit::board_feed::run_all(&feed, &other_handle),
        )
        .await
        .expect("the contract suite finished in time");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_resync() {
        let feed = MemoryBoardFeed::new();
        let mut slow = feed.subscribe().await.unwrap();
        for _ in 0..CAPACITY + 1 {
            feed.publish(0).await.unwrap();
        }
        assert_eq!(slow.next().await, Some(BoardSignal::Resync));
    }
}
