//! Cross-cutting HTTP: problem+json errors, request ids, extractor limits, metrics.

pub mod extractors;
pub mod metrics;
pub mod problem;
pub mod request_context;
pub mod request_id;

pub use problem::{ApiError, FieldError, ProblemType};
pub use request_id::RequestId;
