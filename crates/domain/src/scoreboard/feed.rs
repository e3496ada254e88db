//! The board's change feed: how every node learns that the top of the board may have changed,
//! with one sequence of change numbers shared by all nodes (the ids of live events).
//!
//! A change carries no data: each node re-reads the top of the board when told, so a lost or
//! duplicated signal can only cost a read, never show a wrong board. Adapters: in process
//! (memory), Postgres `NOTIFY` with a sequence, Redis `PUBLISH` with a counter.

use async_trait::async_trait;

use crate::StoreError;

/// A source of board-change signals shared by every node of a deployment.
///
/// Contract (proved for every adapter by `keel_domain::testkit::board_feed`):
/// - [`BoardFeed::publish`] returns a change number greater than every number it returned
///   before and greater than `floor`, and every live subscription (on any node) then sees a
///   signal carrying a number at least that large;
/// - a subscription that may have missed signals (a lost connection) reports
///   [`BoardSignal::Resync`] once it is listening again.
#[async_trait]
pub trait BoardFeed: Send + Sync {
    /// Announces a change; returns its number, always above `floor` (the highest number the
    /// caller has seen or used, so numbers keep increasing even if a counter was lost).
    async fn publish(&self, floor: u64) -> Result<u64, StoreError>;

    /// The highest change number published so far (0 before any).
    async fn current(&self) -> Result<u64, StoreError>;

    /// A subscription to every change published from now on, by any node (listening when
    /// this returns).
    async fn subscribe(&self) -> Result<Box<dyn BoardSubscription>, StoreError>;
}

/// What a subscription delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardSignal {
    /// Change number `n` was published.
    Changed(u64),
    /// Signals may have been lost (the subscription reconnected): read the board again.
    Resync,
}

/// One subscriber's stream of [`BoardSignal`]s.
#[async_trait]
pub trait BoardSubscription: Send {
    /// The next signal; `None` once the feed is gone. A subscription whose connection fails
    /// reconnects by itself (with backoff) and then reports [`BoardSignal::Resync`].
    async fn next(&mut self) -> Option<BoardSignal>;
}
