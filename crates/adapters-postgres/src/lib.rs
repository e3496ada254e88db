//! Postgres adapters for keel: the system of record.
//!
//! diesel's query builder over diesel-async connections from a deadpool pool. Every use case
//! that changes several rows runs in one transaction on one pooled connection; correctness rules
//! are enforced again by the schema (unique keys, checks, triggers), see `migrations/`.

pub mod attendance;
pub mod audit;
pub mod board_feed;
pub mod competitions;
pub mod error;
mod group;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod jobs;
mod listen;
pub mod mail;
pub mod migrate;
pub mod pool;
pub mod schema;
pub mod scoreboard;
pub mod wallet;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use audit::PgAuditLog;
pub use board_feed::PgBoardFeed;
pub use group::GroupStats;
pub use health::PgHealth;
pub use idempotency::PgIdempotencyStore;
pub use identity::{PgRefreshTokenStore, PgUserStore};
pub use jobs::{PgJobQueue, enqueue_in};
pub use mail::PgMailbox;
pub use pool::PgPool;
pub use scoreboard::PgScoreStore;
pub use wallet::PgLedgerStore;
