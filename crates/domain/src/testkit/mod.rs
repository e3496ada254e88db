//! Contract test suites, one per port, generic over the implementation.
//!
//! Each adapter crate runs the same suite against its own implementation (memory in unit tests,
//! Postgres/Redis in integration tests), so every implementation keeps one contract. Suites
//! isolate themselves with fresh random scopes and keys, so they may share a store.

pub mod attendance_store;
pub mod audit_log;
pub mod board_feed;
pub mod competition_store;
pub mod idempotency_store;
pub mod identity_stores;
pub mod job_queue;
pub mod job_worker;
pub mod ledger_store;
pub mod rate_limiter;
pub mod score_store;
pub mod support;
