//! keel's domain: the business rules of every product and the port traits they need.
//!
//! Invariants of this crate (checked by `cargo xtask tidy` and the `tidy` test):
//! - no I/O, no HTTP framework, no database or Redis driver, no async runtime;
//! - every rule is a plain function or type, testable without adapters;
//! - every outside capability (storage, clock, cache) is a port trait in the module
//!   of the capability that needs it, implemented by the `keel-adapters-*` crates.

pub mod attendance;
pub mod audit;
pub mod clock;
pub mod competitions;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod jobs;
pub mod mail;
pub mod pii;
pub mod ratelimit;
pub mod scoreboard;
pub mod store_error;
pub mod wallet;
pub mod webhooks;

#[cfg(feature = "testkit")]
pub mod testkit;

#[cfg(test)]
mod fuzz;

pub use clock::{Clock, SystemClock};
pub use store_error::StoreError;
