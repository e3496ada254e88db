//! Who is calling: the identity that scopes idempotency keys and per-user rate limits.

use std::fmt;
use std::net::IpAddr;

use actix_web::{HttpMessage, HttpRequest};
use keel_domain::identity::values::Role;
use uuid::Uuid;

use super::client_ip::client_ip;
use crate::state::AppState;

/// An authenticated user, placed in the request extensions by authentication before any
/// per-user rule (idempotency scope, per-user rate limit) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: Uuid,
    /// The role the access token was issued for; for a state-changing request, the account's
    /// stored role.
    pub role: Role,
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

    /// Stable text form: `user:<id>`, `ip:<address>` or `unknown` (see the `Display` impl).
    pub fn subject(&self) -> String {
        self.to_string()
    }
}

/// The stable text form of [`Caller::subject`]: `user:<id>`, `ip:<address>` or `unknown`.
///
/// IPv6 clients are identified by their /64 network: one subscriber usually holds a whole /64,
/// and keying by /128 would hand it 2^64 fresh rate-limit budgets.
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Client(IpAddr::V6(v6)) => {
                let network = u128::from(*v6) & !((1u128 << 64) - 1);
                write!(f, "ip:{}/64", std::net::Ipv6Addr::from(network))
            }
            Self::Client(ip) => write!(f, "ip:{ip}"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let a = Caller::Client("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = Caller::Client("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = Caller::Client("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a.subject(), "ip:2001:db8:1:2::/64");
        assert_eq!(a.subject(), b.subject());
        assert_ne!(a.subject(), c.subject());
        assert_eq!(
            Caller::Client("192.0.2.1".parse().unwrap()).subject(),
            "ip:192.0.2.1"
        );
    }
}
