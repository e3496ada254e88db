//! Identity: accounts, roles, credentials and tokens.
//!
//! Values are parsed once at the edge ([`values`]); passwords are hashed with Argon2id
//! ([`password`]); access tokens are short-lived HS256 JWTs ([`access_token`]); refresh tokens
//! are random secrets stored only as hashes, rotated on every use, and a reused one revokes its
//! whole family ([`refresh`]).

pub mod access_token;
pub mod password;
pub mod pii_rotation;
pub mod refresh;
pub mod refresh_secret;
pub mod store;
pub mod user;
pub mod values;
