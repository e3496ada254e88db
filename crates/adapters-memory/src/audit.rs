//! In-memory audit log.
