//! Every error is RFC 9457 problem+json with the request id, actix's own errors included.
//!
//! A test-only JSON route is mounted under `/api/v1` so the app-wide extractor settings (body
//! limit, JSON errors) are exercised exactly as product routes will use them.

use actix_web::{HttpResponse, web};
use keel_app_http::http::{ApiError, FieldError};
use serde::Deserialize;

use crate::support::{TestApp, assert_problem, spawn_app, spawn_app_with_routes};

#[derive(Debug, Deserialize)]
struct Payment {
    amount_minor: i64,
    currency: String,
}

async fn create_payment(body: web::Json<Payment>) -> Result<HttpResponse, ApiError> {
    if body.amount_minor <= 0 || body.currency.len() != 3 {
        let mut errors = Vec::new();
        if body.amount_minor <= 0 {
            errors.push(FieldError::new("amount_minor", "must be greater than 0"));
        }
        if body.currency.len() != 3 {
            errors.push(FieldError::new("currency", "must be an ISO 4217 code"));
        }
        return Err(ApiError::Validation(errors));
    }
    Ok(HttpResponse::Created().json(serde_json::json!({"amount_minor": body.amount_minor})))
}

async fn fail() -> Result<HttpResponse, ApiError> {
    Err(ApiError::Internal(
        "SELECT secret FROM vault failed: password=hunter2".into(),
    ))
}

#[allow(clippy::panic)]
async fn explode() -> HttpResponse {
    panic!("the handler's invariant broke: secret=hunter2")
}

fn app() -> TestApp {
    spawn_app_with_routes(|cfg| {
        cfg.service(web::resource("/payments").post(create_payment))
            .service(web::resource("/boom").get(fail))
            .service(web::resource("/panic").get(explode));
    })
}

async fn post_raw(
    app: &TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/payments"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_valid_body_passes() {
    let app = app();
    let response = post_raw(
        &app,
        "application/json",
        r#"{"amount_minor": 5, "currency": "ZAR"}"#,
    )
    .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn unknown_route_is_404() {
    let app = spawn_app().await;
    assert_problem(app.get("/api/v1/nothing-here").await, 404, "not-found").await;
    assert_problem(app.get("/nothing").await, 404, "not-found").await;
}

#[tokio::test]
async fn wrong_method_is_405() {
    let app = app();
    let response = app
        .client
        .delete(app.url("/api/v1/payments"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405, "method-not-allowed").await;
    let response = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_problem(response, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn malformed_json_is_400_with_the_position() {
    let app = app();
    let body = assert_problem(
        post_raw(
            &app,
            "application/json",
            "{\"amount_minor\": 5,\n \"currency\": }",
        )
        .await,
        400,
        "malformed-json",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("line 2 column"),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = app();
    assert_problem(
        post_raw(&app, "text/plain", "amount=5").await,
        415,
        "unsupported-media-type",
    )
    .await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let app = app();
    let big = format!("{{\"currency\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    assert_problem(
        post_raw(&app, "application/json", big).await,
        413,
        "payload-too-large",
    )
    .await;
}

#[tokio::test]
async fn invalid_fields_are_422_with_field_errors() {
    let app = app();
    let body = assert_problem(
        post_raw(
            &app,
            "application/json",
            r#"{"amount_minor": 0, "currency": "RANDS"}"#,
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["amount_minor", "currency"]);

    let body = assert_problem(
        post_raw(&app, "application/json", r#"{"currency": "ZAR"}"#).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "amount_minor");
}

#[tokio::test]
async fn internal_errors_never_leak_their_cause() {
    let app = app();
    let response = app.get("/api/v1/boom").await;
    let body = assert_problem(response, 500, "internal").await;
    let text = body.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("SELECT"),
        "{text}"
    );
}

#[tokio::test]
async fn the_client_request_id_is_in_the_problem_body() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "trace-me-7")
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 404, "not-found").await;
    assert_eq!(body["request_id"], "trace-me-7");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_server_keeps_serving() {
    let app = app();
    let response = app.get("/api/v1/panic").await;
    let body = assert_problem(response, 500, "internal").await;
    assert!(!body.to_string().contains("hunter2"), "{body}");
    assert_eq!(app.get("/healthz").await.status(), 200);
}
