//! RFC 9457 problem details: the one place where errors become HTTP responses.
//!
//! Every error keel returns is `application/problem+json` with `type`, `title`, `status`,
//! `detail`, `request_id` (added by the request-context middleware) and, for validation,
//! `errors: [{field, message}]`. The `type` URIs are listed in `docs/PROBLEMS.md`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use keel_domain::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Base of every problem `type` URI.
pub const TYPE_BASE: &str = "https://keel.dev/problems/";
/// Seconds a client should wait before retrying when a dependency is down.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// A kind of problem: its `type` slug, `title` and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    /// Last segment of the `type` URI.
    pub slug: &'static str,
    /// Short, stable, human-readable summary.
    pub title: &'static str,
    /// HTTP status code.
    pub status: u16,
}

macro_rules! problem_types {
    ($($name:ident = $slug:literal, $status:literal, $title:literal;)*) => {
        impl ProblemType {
            $(
                #[doc = concat!("`", $slug, "` (", stringify!($status), "): ", $title, ".")]
                pub const $name: ProblemType = ProblemType { slug: $slug, title: $title, status: $status };
            )*
            /// Every problem type keel can return.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$name),*];
        }
    };
}

problem_types! {
    BAD_REQUEST = "bad-request", 400, "The request is malformed";
    MALFORMED_JSON = "malformed-json", 400, "The request body is not valid JSON";
    INVALID_HEADER = "invalid-header", 400, "A request header is invalid";
    UNAUTHENTICATED = "unauthenticated", 401, "Authentication is required";
    INVALID_TOKEN = "invalid-token", 401, "The access token is invalid or expired";
    INVALID_CREDENTIALS = "invalid-credentials", 401, "Email or password is wrong";
    INVALID_REFRESH_TOKEN = "invalid-refresh-token", 401, "The refresh token is invalid, expired or revoked";
    REFRESH_TOKEN_REUSED = "refresh-token-reused", 401, "The refresh token was already used; its session is revoked";
    FORBIDDEN = "forbidden", 403, "You are not allowed to do this";
    NOT_FOUND = "not-found", 404, "No such resource";
    METHOD_NOT_ALLOWED = "method-not-allowed", 405, "Method not allowed on this resource";
    NOT_ACCEPTABLE = "not-acceptable", 406, "No acceptable representation";
    REQUEST_TIMEOUT = "request-timeout", 408, "The request took too long to arrive";
    CONFLICT = "conflict", 409, "The request conflicts with the current state";
    EMAIL_TAKEN = "email-taken", 409, "An account with this email already exists";
    COMPETITION_FULL = "competition-full", 409, "Every seat of the competition is taken";
    ALREADY_REGISTERED = "already-registered", 409, "You are already registered for this competition";
    REGISTRATION_CLOSED = "registration-closed", 422, "Registration for this competition is closed";
    SCAN_OUTSIDE_WINDOW = "scan-outside-window", 422, "The event is not running at this time";
    NOT_A_PARTICIPANT = "not-a-participant", 422, "The user is not a participant of this event";
    NOT_ATTENDED = "not-attended", 422, "The participant has no recorded attendance at this event";
    JOB_STATE_CONFLICT = "job-state-conflict", 409, "The job's state does not allow this change";
    INSUFFICIENT_FUNDS = "insufficient-funds", 422, "The available balance is too low";
    NOT_REVERSIBLE = "not-reversible", 422, "This transaction cannot be reversed";
    ALREADY_REVERSED = "already-reversed", 409, "This transaction was already reversed";
    ADJUSTMENT_ALREADY_APPLIED = "adjustment-already-applied", 409, "This adjustment was already applied";
    SECOND_APPROVER_REQUIRED = "second-approver-required", 403, "Another admin must approve this adjustment";
    INVALID_WEBHOOK_SIGNATURE = "invalid-webhook-signature", 401, "The webhook's signature or timestamp is invalid";
    PROVIDER_REJECTED = "provider-rejected", 502, "The payment provider refused the request";
    UNKNOWN_ACTION_TYPE = "unknown-action-type", 422, "The server has no such action type";
    MALFORMED_ACTION_TOKEN = "malformed-action-token", 400, "The action token or its action id is malformed";
    INVALID_ACTION_TOKEN = "invalid-action-token", 401, "The action token's signature is invalid";
    ACTION_TOKEN_EXPIRED = "action-token-expired", 401, "The action token has expired";
    FOREIGN_ACTION_TOKEN = "foreign-action-token", 403, "The action token belongs to another user";
    ACTION_ALREADY_USED = "action-already-used", 409, "The action was already used with another request";
    SCORE_OVERFLOW = "score-overflow", 422, "The score would pass the board's maximum";
    IDEMPOTENCY_KEY_IN_FLIGHT = "idempotency-key-in-flight", 409, "A request with this Idempotency-Key is still in progress";
    PAYLOAD_TOO_LARGE = "payload-too-large", 413, "The request body is too large";
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type", 415, "Unsupported content type";
    VALIDATION_FAILED = "validation-failed", 422, "The request has invalid fields";
    IDEMPOTENCY_KEY_MISMATCH = "idempotency-key-mismatch", 422, "The Idempotency-Key was used for a different request";
    RATE_LIMITED = "rate-limited", 429, "Too many requests";
    INTERNAL = "internal", 500, "Internal server error";
    DEPENDENCY_UNAVAILABLE = "dependency-unavailable", 503, "A dependency is unavailable";
    TOO_MANY_LIVE_CONNECTIONS = "too-many-live-connections", 503, "This node has no room for another live connection";
}

impl ProblemType {
    /// The full `type` URI.
    pub fn uri(&self) -> String {
        format!("{TYPE_BASE}{}", self.slug)
    }

    /// The problem type used for a bare error status that carries no problem of its own.
    pub fn for_status(status: u16) -> Option<ProblemType> {
        Self::ALL.iter().copied().find(|p| p.status == status)
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Field path in the body or query (`amount_minor`, `items[2].id`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The JSON body of every error response (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// URI naming the kind of problem (`https://keel.dev/problems/<slug>`).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation of this occurrence.
    pub detail: String,
    /// The request's `X-Request-Id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Invalid fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem of `kind` with an occurrence-specific `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.uri(),
            title: kind.title.to_owned(),
            status: kind.status,
            detail: detail.into(),
            request_id: None,
            errors: Vec::new(),
        }
    }

    /// The response carrying this problem.
    pub fn to_response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
            .json(self)
    }
}

/// Every error a handler can return; [`ResponseError`] turns each into its problem.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A specific problem type with a detail message.
    #[error("{}: {detail}", kind.slug)]
    Problem {
        /// Which problem.
        kind: ProblemType,
        /// Explanation of this occurrence.
        detail: String,
    },
    /// Request fields broke validation rules (422).
    #[error("validation failed on {} field(s)", .0.len())]
    Validation(Vec<FieldError>),
    /// Too many requests; retry after the given number of seconds (429).
    #[error("rate limited for {retry_after_secs}s")]
    RateLimited {
        /// Whole seconds until a retry may succeed (at least 1).
        retry_after_secs: u64,
    },
    /// The first request with this `Idempotency-Key` is still running (409 with `Retry-After`).
    #[error("idempotency key in flight for {retry_after_secs}s")]
    InFlight {
        /// Whole seconds until its lease ends (at least 1).
        retry_after_secs: u64,
    },
    /// A store could not serve (503 with `Retry-After`).
    #[error("{dependency} unavailable: {reason}")]
    Unavailable {
        /// Which dependency failed.
        dependency: &'static str,
        /// Operator-facing reason, logged, never sent to clients.
        reason: String,
    },
    /// A bug or broken invariant; logged in full, answered with a bare 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Shorthand for [`ApiError::Problem`].
    pub fn problem(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self::Problem {
            kind,
            detail: detail.into(),
        }
    }

    /// The problem body of this error, exactly as it is sent.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Problem { kind, detail } => Problem::new(*kind, detail.clone()),
            Self::Validation(errors) => Problem {
                errors: errors.clone(),
                ..Problem::new(
                    ProblemType::VALIDATION_FAILED,
                    "one or more fields are invalid",
                )
            },
            Self::RateLimited { retry_after_secs } => Problem::new(
                ProblemType::RATE_LIMITED,
                format!("rate limit exceeded; retry in {retry_after_secs} s"),
            ),
            Self::InFlight { retry_after_secs } => Problem::new(
                ProblemType::IDEMPOTENCY_KEY_IN_FLIGHT,
                format!(
                    "a request with this Idempotency-Key is still in progress; retry in {retry_after_secs} s"
                ),
            ),
            Self::Unavailable { dependency, .. } => Problem::new(
                ProblemType::DEPENDENCY_UNAVAILABLE,
                format!("{dependency} is unavailable; retry later"),
            ),
            Self::Internal(_) => {
                Problem::new(ProblemType::INTERNAL, "an unexpected error occurred")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { dependency, reason } => {
                Self::Unavailable { dependency, reason }
            }
            StoreError::Conflict(reason) => {
                // The reason may name tables or constraints: it goes to the log, not the client.
                tracing::info!(%reason, "store conflict");
                Self::problem(
                    ProblemType::CONFLICT,
                    "a concurrent change conflicts with this request; retry",
                )
            }
            StoreError::Corrupt(reason) => Self::Internal(reason),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.to_problem().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.to_problem().to_response();
        let retry_after = match self {
            Self::RateLimited { retry_after_secs } | Self::InFlight { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            _ if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                Some(UNAVAILABLE_RETRY_AFTER_SECS)
            }
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_and_statuses_are_errors() {
        let mut slugs: Vec<_> = ProblemType::ALL.iter().map(|p| p.slug).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemType::ALL.len());
        assert!(
            ProblemType::ALL
                .iter()
                .all(|p| (400..600).contains(&p.status))
        );
    }

    #[test]
    fn every_problem_type_is_documented() {
        let doc = include_str!("../../../../docs/PROBLEMS.md");
        for kind in ProblemType::ALL {
            assert!(
                doc.contains(&format!("`{}`", kind.slug)),
                "docs/PROBLEMS.md lacks {}",
                kind.slug
            );
        }
    }

    #[test]
    fn conflicts_never_leak_constraint_names() {
        let err = ApiError::from(StoreError::Conflict(
            "duplicate key value violates unique constraint \"users_email_key\"".into(),
        ));
        let body = serde_json::to_string(&err.to_problem()).unwrap();
        assert!(!body.contains("users_email_key"), "{body}");
        assert_eq!(err.status_code(), StatusCode::CONFLICT);
    }

    #[test]
    fn unavailable_never_leaks_its_reason() {
        let err = ApiError::Unavailable {
            dependency: "postgres",
            reason: "password authentication failed for user keel".into(),
        };
        let body = serde_json::to_string(&err.to_problem()).unwrap();
        assert!(!body.contains("password"));
        assert_eq!(err.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            err.error_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }
}
