//! In-memory users and refresh tokens.
