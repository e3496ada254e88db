//! Events, participants, attendances and certificates in Postgres.
