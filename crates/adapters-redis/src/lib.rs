//! Redis adapters for keel, over a `deadpool-redis` pool.
//!
//! Every key starts with the pool's prefix (`keel` by default), so several deployments or test
//! runs can share one Redis. Every command is bounded by [`pool::COMMAND_TIMEOUT`]: a dead
//! Redis turns into [`keel_domain::StoreError::Unavailable`], never a hung request.

pub mod board_feed;
pub mod health;
pub mod idempotency;
pub mod leaderboard;
pub mod pool;
pub mod ratelimit;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use board_feed::RedisBoardFeed;
pub use health::RedisHealth;
pub use idempotency::RedisIdempotencyCache;
pub use leaderboard::RedisLeaderboard;
pub use pool::RedisPool;
pub use ratelimit::RedisRateLimiter;
