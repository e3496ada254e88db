//! Live scoreboard: server-signed action tokens, scores kept once per action, one board order
//! shared by Postgres and the Redis sorted set.
//!
//! - [`token`]: `ActionTokenSigner` (HMAC-SHA256, constant-time verification, strict parsing).
//! - [`actions`]: the server's table of action types and their score deltas.
//! - [`ranking`]: the board order and its exact 53-bit encoding for Redis.
//! - [`store`]: the [`ScoreStore`] (truth) and [`LeaderboardCache`] ports.
//! - [`service`]: the use cases.
//! - [`cache`]: cache-first reads, write-through and the stale cache.
//! - [`drift`]: the rebuild and the `scoreboard.drift` check.
//! - [`feed`]: the [`BoardFeed`] port telling every node the board changed.
//! - [`replay`]: the bounded history of live events a node replays on reconnect.

pub mod actions;
pub mod cache;
pub mod drift;
pub mod feed;
pub mod ranking;
pub mod replay;
pub mod service;
pub mod store;
pub mod token;

pub use actions::{ActionTable, ActionTableError};
pub use cache::{BoardCache, CacheEvent, CacheObserver, FallbackReason, REBUILD_RETRY};
pub use drift::{
    CheckBoardDrift, CheckBoardDriftHandler, DRIFT_WINDOW, DriftObserver, DriftReport, compare,
};
pub use feed::{BoardFeed, BoardSignal, BoardSubscription};
pub use ranking::{
    MAX_SCORE, RankingError, Standing, board_order, composite, decompose, whole_second,
};
pub use replay::{LiveEvent, ReplayBuffer, Resume};
pub use service::{
    ACTION_TTL, MAX_TOP, ScoreError, ScoreService, Scored, StartedAction, token_hash,
};
pub use store::{
    ApplyScore, CacheRead, LeaderboardCache, RankedStanding, ScoreReceipt, ScoreStore, ScoredAction,
};
pub use token::{ActionClaims, ActionTokenSigner, TokenError};

#[cfg(test)]
pub use store::{MockLeaderboardCache, MockScoreStore};
