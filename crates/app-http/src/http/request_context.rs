//! The outermost middleware: request id, tracing span, access log, metrics, problem bodies.
//!
//! For every request it
//! 1. takes the client's `X-Request-Id` when safe, else makes one, and echoes it;
//! 2. runs the request inside a `request` span carrying that id, so every log line has it;
//! 3. records the per-route request counter and latency histogram;
//! 4. makes sure every error response is `application/problem+json` carrying the `request_id`,
//!    including actix's own bare errors (unknown route, wrong method, …).

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody, to_bytes_limited};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use futures_util::FutureExt;
use tracing::Instrument;

use super::metrics::{REQUEST_DURATION, REQUESTS_TOTAL, status_class};
use super::problem::{PROBLEM_JSON, Problem, ProblemType};
use super::request_id::{self, RequestId};

/// Largest problem body the middleware will read back to add the request id.
const MAX_PROBLEM_BODY: usize = 64 * 1024;

/// The middleware function; wrap the app with `actix_web::middleware::from_fn(request_context)`.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let request_id = req
        .headers()
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(request_id.clone());
    let method = method_label(req.method());
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %req.path());
    let started = Instant::now();

    // Note: the request must not be cloned before `next.call`: routing needs sole ownership.
    // A panicking handler becomes a 500 problem (with the request id) instead of a reset
    // connection; the worker keeps serving.
    let outcome = match AssertUnwindSafe(next.call(req).instrument(span.clone()))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let cause = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".to_owned());
            Err(actix_web::error::ErrorInternalServerError(format!(
                "panic: {cause}"
            )))
        }
    };
    let elapsed = started.elapsed();
    let (status, route, failure) = match &outcome {
        Ok(response) => (
            response.status().as_u16(),
            response
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
            response.response().error().map(ToString::to_string),
        ),
        Err(error) => (
            error.as_response_error().status_code().as_u16(),
            "unmatched".to_owned(),
            Some(error.to_string()),
        ),
    };
    record(&span, &method, route, status, elapsed, failure);

    match outcome {
        Ok(response) => {
            let mut response =
                ensure_problem_body(response.map_into_boxed_body(), &request_id).await;
            set_request_id_header(response.headers_mut(), &request_id);
            Ok(response)
        }
        // An inner service failed before producing a response (the request is gone): answer
        // with the problem ourselves, carried by an error whose response is final.
        Err(error) => {
            let kind = ProblemType::for_status(status).unwrap_or(ProblemType::INTERNAL);
            let mut problem = Problem::new(kind, default_detail(kind));
            problem.request_id = Some(request_id.to_string());
            let mut response = problem.to_response();
            set_request_id_header(response.headers_mut(), &request_id);
            Err(InternalError::from_response(error.to_string(), response).into())
        }
    }
}

/// The `method` metric label: standard methods by name, anything else as `OTHER`, so clients
/// cannot create unbounded metric series with made-up methods.
fn method_label(method: &actix_web::http::Method) -> String {
    use actix_web::http::Method;
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    if known.contains(method) {
        method.as_str().to_owned()
    } else {
        "OTHER".to_owned()
    }
}

fn set_request_id_header(headers: &mut header::HeaderMap, request_id: &RequestId) {
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        headers.insert(HeaderName::from_static(request_id::HEADER), value);
    }
}

/// Counts the request and writes its access-log line inside the request span.
fn record(
    span: &tracing::Span,
    method: &str,
    route: String,
    status: u16,
    elapsed: std::time::Duration,
    failure: Option<String>,
) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status_class", status_class(status).to_owned()),
    ];
    metrics::counter!(REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        match (status, failure) {
            (500.., Some(error)) => tracing::error!(status, latency_ms, %error, "request failed"),
            (500.., None) => tracing::error!(status, latency_ms, "request failed"),
            _ => tracing::info!(status, latency_ms, "request finished"),
        }
    });
}

/// Makes an error response a problem with this request's id; other responses pass untouched.
async fn ensure_problem_body(
    response: ServiceResponse<BoxBody>,
    request_id: &RequestId,
) -> ServiceResponse<BoxBody> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    let (request, response) = response.into_parts();
    let (mut head, body) = response.into_parts();
    let existing = if is_problem {
        match to_bytes_limited(body, MAX_PROBLEM_BODY).await {
            Ok(Ok(bytes)) => {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).ok()
            }
            _ => None,
        }
    } else {
        None
    };
    let mut problem = existing.unwrap_or_else(|| default_problem(status.as_u16()));
    problem.insert("request_id".into(), request_id.as_str().into());
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    head.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    // `set_body` keeps the status, the headers and the attached error (for the access log).
    ServiceResponse::new(request, head.set_body(BoxBody::new(body)))
}

/// The problem body for a bare error status (e.g. actix's 404 and 405, which have no body).
fn default_problem(status: u16) -> serde_json::Map<String, serde_json::Value> {
    let problem = match ProblemType::for_status(status) {
        Some(kind) => Problem::new(kind, default_detail(kind)),
        None => {
            let reason = actix_web::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            Problem {
                type_uri: "about:blank".into(),
                title: reason.into(),
                status,
                detail: reason.into(),
                request_id: None,
                errors: Vec::new(),
            }
        }
    };
    match serde_json::to_value(problem) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn default_detail(kind: ProblemType) -> &'static str {
    match kind.slug {
        "not-found" => "no resource matches this path",
        "method-not-allowed" => "this resource does not support the request method",
        _ => kind.title,
    }
}
