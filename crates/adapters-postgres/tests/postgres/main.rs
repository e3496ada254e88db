//! Integration tests against a real Postgres (`DATABASE_URL`): each test gets its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attendance;
mod audit;
mod board_feed;
mod competitions;
mod idempotency;
mod identity;
mod jobs;
mod mail;
mod migrations;
mod scoreboard;
mod wallet;
