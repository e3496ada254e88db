//! The audit log in Postgres.
