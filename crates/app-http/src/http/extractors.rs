//! Extractor settings: body limits and how bad input becomes a problem.
//!
//! Registered once as app data, so every handler that takes `web::Json`, `web::Query`,
//! `web::Path` or `web::Bytes` gets the same limits and the same problem answers.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{HttpRequest, web};
use serde_json::error::Category;

use super::{ApiError, FieldError, ProblemType};

/// The extractor configurations for a body limit of `body_limit_bytes`.
pub fn configure(body_limit_bytes: usize) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(
            web::JsonConfig::default()
                .limit(body_limit_bytes)
                .error_handler(|e, _req: &HttpRequest| json_error(e).into()),
        )
        .app_data(web::PayloadConfig::default().limit(body_limit_bytes))
        .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| path_error(e).into()));
    }
}

/// Maps a JSON body failure: syntax → 400 with the position, wrong shape → 422 naming the
/// field where serde can tell, too big → 413, not JSON → 415.
pub fn json_error(error: JsonPayloadError) -> ApiError {
    match error {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::problem(
            ProblemType::PAYLOAD_TOO_LARGE,
            format!("the body exceeds the limit of {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::problem(
            ProblemType::UNSUPPORTED_MEDIA_TYPE,
            "the body must be sent as Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) => match e.classify() {
            Category::Data => ApiError::Validation(vec![field_error(&e)]),
            Category::Syntax | Category::Eof | Category::Io => ApiError::problem(
                ProblemType::MALFORMED_JSON,
                format!(
                    "invalid JSON at line {} column {}: {}",
                    e.line(),
                    e.column(),
                    strip_position(&e.to_string())
                ),
            ),
        },
        other => ApiError::problem(
            ProblemType::BAD_REQUEST,
            format!("cannot read the body: {other}"),
        ),
    }
}

fn query_error(error: QueryPayloadError) -> ApiError {
    ApiError::Validation(vec![FieldError::new("query", error.to_string())])
}

fn path_error(error: PathError) -> ApiError {
    match error {
        PathError::Deserialize(e) => {
            ApiError::problem(ProblemType::NOT_FOUND, format!("no such resource: {e}"))
        }
        other => ApiError::problem(ProblemType::BAD_REQUEST, other.to_string()),
    }
}

/// Builds a field error from a serde data error such as "missing field `title`" or
/// "invalid type: string \"x\", expected i64 at line 1 column 20".
fn field_error(error: &serde_json::Error) -> FieldError {
    let message = strip_position(&error.to_string());
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("missing field") || message.starts_with("unknown field"))
        .unwrap_or("body")
        .to_owned();
    FieldError::new(field, message)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        amount_minor: i64,
    }

    fn deserialize(raw: &str) -> JsonPayloadError {
        JsonPayloadError::Deserialize(serde_json::from_str::<Body>(raw).unwrap_err())
    }

    #[test]
    fn syntax_errors_are_malformed_with_position() {
        let problem = json_error(deserialize("{\"title\": ")).to_problem();
        assert_eq!(problem.status, 400);
        assert!(problem.type_uri.ends_with("/malformed-json"));
        assert!(
            problem.detail.contains("line 1 column"),
            "{}",
            problem.detail
        );
    }

    #[test]
    fn shape_errors_name_the_field() {
        let problem = json_error(deserialize("{\"amount_minor\": 5}")).to_problem();
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.errors,
            vec![FieldError::new("title", "missing field `title`")]
        );
        let problem =
            json_error(deserialize("{\"title\": \"t\", \"amount_minor\": \"x\"}")).to_problem();
        assert_eq!(problem.errors[0].field, "body");
        assert!(problem.errors[0].message.starts_with("invalid type"));
    }

    #[test]
    fn size_and_media_type_errors() {
        assert_eq!(
            json_error(JsonPayloadError::Overflow { limit: 10 })
                .to_problem()
                .status,
            413
        );
        assert_eq!(
            json_error(JsonPayloadError::ContentType)
                .to_problem()
                .status,
            415
        );
    }
}
