//! Embedding keel's cross-cutting HTTP layer in your own routes.
//!
//! Serves `POST /api/v1/notes` on keel's server (problem+json, request ids, metrics), opted into
//! `Idempotency-Key` replay and the `default` rate class with one line each. Stores follow the
//! usual settings: memory by default, Postgres/Redis with `DATABASE_URL` / `REDIS_URL`.
//!
//! ```sh
//! cargo run -p keel-app-http --example embedded_api
//! curl -si -XPOST localhost:8080/api/v1/notes -H 'idempotency-key: n1' \
//!      -H 'content-type: application/json' -d '{"text":"hello"}'     # 201, then replays
//! ```
//! `cargo xtask bench idempotency|ratelimit` drives this example.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use keel_app_http::http::idempotency::{idempotency_required, stored_json};
use keel_app_http::http::rate_limit::rate_limit;
use keel_app_http::http::{ApiError, FieldError};
use keel_app_http::{Application, Settings, telemetry};
use keel_domain::ratelimit::LimitClass;
use serde::Deserialize;

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

async fn create_note(
    counter: web::Data<AtomicU64>,
    note: web::Json<NewNote>,
) -> Result<HttpResponse, ApiError> {
    if note.text.is_empty() || note.text.len() > 1000 {
        return Err(ApiError::Validation(vec![FieldError::new(
            "text",
            "must be 1–1000 characters",
        )]));
    }
    let id = counter.fetch_add(1, Ordering::Relaxed) + 1;
    let (_, response) = stored_json(
        StatusCode::CREATED,
        &serde_json::json!({"id": id, "text": note.text}),
    )?;
    Ok(response)
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().body("pong")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::load()?;
    telemetry::init(&settings.log);
    let counter = web::Data::new(AtomicU64::new(0));
    let routes = Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(counter.clone())
            .service(
                web::resource("/notes")
                    .wrap(from_fn(idempotency_required))
                    .wrap(from_fn(rate_limit(LimitClass::Default)))
                    .post(create_note),
            )
            .service(
                web::resource("/ping")
                    .wrap(from_fn(rate_limit(LimitClass::Default)))
                    .get(ping),
            );
    });
    let app = Application::build_with_routes(settings, routes).await?;
    println!("embedded_api listening on 127.0.0.1:{}", app.port());
    app.run_until_signalled().await?;
    Ok(())
}
