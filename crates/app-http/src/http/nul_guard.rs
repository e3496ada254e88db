//! Refuses a request whose path or query string holds a NUL character (raw or `%00`).
//!
//! No keel resource or filter can contain U+0000, and Postgres text cannot store or compare it:
//! without this guard such a value reached the database and came back as a 503. Answered with a
//! 400 `bad-request` problem before authentication or any handler runs.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use super::{ApiError, ProblemType};

/// The middleware: `.wrap(from_fn(refuse_nul))` inside the request context.
pub async fn refuse_nul(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    if !holds_nul(target) {
        return next.call(req).await;
    }
    let response = ApiError::problem(
        ProblemType::BAD_REQUEST,
        "the path or query string contains a NUL character",
    )
    .error_response();
    Ok(req.into_response(response))
}

/// Whether `target` holds U+0000 raw or percent-encoded (`%00`).
fn holds_nul(target: &str) -> bool {
    target.contains('\0') || target.as_bytes().windows(3).any(|w| w == b"%00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_raw_and_encoded_nul_only() {
        for nul in ["/a%00b", "/a?x=%00", "/a\0", "%00"] {
            assert!(holds_nul(nul), "{nul:?}");
        }
        for clean in ["/a", "/a?x=%2500", "/a?x=%0A", "/a?x=100", "/%0", ""] {
            assert!(!holds_nul(clean), "{clean:?}");
        }
    }
}
