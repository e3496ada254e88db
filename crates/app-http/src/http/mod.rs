//! Cross-cutting HTTP: problem+json errors, request ids, extractor limits, metrics.

pub mod audit;
pub mod auth;
pub mod client_ip;
pub mod extractors;
pub mod idempotency;
pub mod metrics;
pub mod nul_guard;
pub mod page;
pub mod principal;
pub mod problem;
pub mod rate_limit;
pub mod request_context;
pub mod request_id;

pub use problem::{ApiError, FieldError, ProblemType};
pub use request_id::RequestId;
