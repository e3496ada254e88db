//! Who is calling: the identity that scopes idempotency keys and per-user rate limits.

use std::net::IpAddr;

use actix_web::{HttpMessage, HttpRequest};
use uuid::Uuid;

use super::client_ip::client_ip;
use crate::state::AppState;

/// An authenticated user, placed in the request extensions by authentication before any
/// per-user rule (idempotency scope, per-user rate limit) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: Uuid,
}

/// The caller as cross-cutting rules see it: a user when authenticated, else a client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An authenticated user.
    User(Uuid),
    /// An anonymous client.
    Client(IpAddr),
    /// No identity at all (no peer address: only in unit tests).
    Unknown,
}

impl Caller {
    /// The caller of `req`.
    pub fn of(req: &HttpRequest, state: &AppState) -> Self {
        match req.extensions().get::<Principal>() {
            Some(principal) => Self::User(principal.user_id),
            None => Self::client_of(req, state),
        }
    }

    /// The anonymous client of `req`, ignoring any authenticated user.
    pub fn client_of(req: &HttpRequest, state: &AppState) -> Self {
        match client_ip(req, &state.settings.server.trusted_proxies) {
            Some(ip) => Self::Client(ip),
            None => Self::Unknown,
        }
    }

    /// Stable text form: `user:<id>`, `ip:<address>` or `unknown`.
    pub fn subject(&self) -> String {
        match self {
            Self::User(id) => format!("user:{id}"),
            Self::Client(ip) => format!("ip:{ip}"),
            Self::Unknown => "unknown".to_owned(),
        }
    }
}
