//! Integration tests against a real Postgres (`DATABASE_URL`): each test gets its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod idempotency;
mod identity;
mod jobs;
mod mail;
mod migrations;
