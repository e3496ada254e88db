//! In-memory implementations of every keel port.
//!
//! They are the embedded default of the `keel` server (no `DATABASE_URL`) and the fixture of
//! unit tests. Each keeps the same contract as its Postgres/Redis twin (the shared suites in
//! `keel_domain::testkit` prove it), with atomicity from one lock per store instead of a
//! database transaction. Nothing here survives a restart.

pub mod attendance;
pub mod audit;
pub mod board_feed;
pub mod clock;
pub mod competitions;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod idempotency_cache;
pub mod identity;
pub mod jobs;
pub mod mail;
pub mod ratelimit;
pub mod revio;
pub mod scoreboard;
pub mod timer;
pub mod wallet;

pub use audit::MemoryAuditLog;
pub use board_feed::MemoryBoardFeed;
pub use clock::ManualClock;
pub use events::MemoryEventBus;
pub use health::MemoryHealth;
pub use idempotency::MemoryIdempotencyStore;
pub use idempotency_cache::{CacheBounds, MemoryIdempotencyCache};
pub use identity::{MemoryRefreshTokenStore, MemoryUserStore};
pub use jobs::{MemoryJobQueue, MemoryOutbox};
pub use mail::MemoryMailbox;
pub use scoreboard::{MemoryLeaderboard, MemoryScoreStore};
pub use timer::TokioTimer;
pub use wallet::MemoryLedgerStore;
