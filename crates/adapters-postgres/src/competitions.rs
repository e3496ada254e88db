//! Competitions and registrations in Postgres.
