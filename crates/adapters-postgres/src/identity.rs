//! Users and refresh tokens in Postgres.
