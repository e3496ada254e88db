//! The `X-Request-Id` of a request: the client's when it is a safe token, else a new UUID.

use std::fmt;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use uuid::Uuid;

/// Header carrying the request id, in and out.
pub const HEADER: &str = "x-request-id";
/// Longest client-chosen id accepted.
pub const MAX_LEN: usize = 64;

/// A request id: at most 64 characters of `[A-Za-z0-9._-]`, safe to log and echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// Accepts a client-sent id when it is a safe token.
    pub fn parse(raw: &str) -> Option<Self> {
        let safe = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        safe.then(|| Self(raw.to_owned()))
    }

    /// A fresh random id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Handlers take the id with `request_id: RequestId` (set by the request-context middleware).
impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        std::future::ready(Ok(id.unwrap_or_else(RequestId::generate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_safe_tokens() {
        assert!(RequestId::parse("abc-DEF_1.2").is_some());
        assert!(RequestId::parse(&"a".repeat(MAX_LEN)).is_some());
        for bad in [
            "",
            "has space",
            "semi;colon",
            "new\nline",
            "ünï",
            "<script>",
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(RequestId::parse(&"a".repeat(MAX_LEN + 1)).is_none());
    }

    #[test]
    fn generated_ids_are_safe_and_unique() {
        let a = RequestId::generate();
        assert!(RequestId::parse(a.as_str()).is_some());
        assert_ne!(a, RequestId::generate());
    }
}

#[cfg(test)]
pub(crate) mod fuzz;
