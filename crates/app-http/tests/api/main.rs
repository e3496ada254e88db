//! HTTP tests of the real `keel` server on a random port, over memory or real stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod attendance;
mod auth;
mod binary;
mod browser;
mod competitions;
mod hostile_inputs;
mod idempotency;
mod jobs;
mod log_secrets;
mod openapi_walk;
mod ops;
mod problems;
mod rate_limits;
mod revio_sim;
mod scoreboard;
mod scoreboard_cache;
mod scoreboard_live;
mod security;
mod support;
mod token_attacks;
mod wallet;
mod widgets;
