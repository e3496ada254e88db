//! Operations routes: liveness, readiness, metrics and the OpenAPI document.

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, ProblemType, metrics};
use crate::state::AppState;

/// How long readiness waits for one dependency before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Registers `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // `resource(..)` (not `route(..)`) so a wrong method gets 405 instead of falling through to 404.
    cfg.service(web::resource("/healthz").get(healthz))
        .service(web::resource("/readyz").get(readyz))
        .service(web::resource("/metrics").get(prometheus_metrics))
        .service(web::resource("/openapi.json").get(openapi_json));
}

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `"ok"` while the process serves.
    pub status: &'static str,
}

/// Readiness answer: each dependency and whether it answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `"ready"`.
    pub status: &'static str,
    /// Dependency name → `"up"`.
    pub checks: std::collections::BTreeMap<&'static str, &'static str>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Every configured store answers; 503 naming those that do not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, body = Readiness),
        (status = 503, description = "A dependency is down", body = crate::http::problem::Problem,
         content_type = "application/problem+json")
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<web::Json<Readiness>, ApiError> {
    let results = join_all(state.stores.probes.iter().map(|probe| async move {
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        (probe.dependency(), outcome)
    }))
    .await;
    let down: Vec<&str> = results
        .iter()
        .filter_map(|(name, outcome)| {
            outcome.as_ref().err().map(|reason| {
                tracing::warn!(dependency = name, %reason, "readiness check failed");
                *name
            })
        })
        .collect();
    if !down.is_empty() {
        return Err(ApiError::problem(
            ProblemType::DEPENDENCY_UNAVAILABLE,
            format!("not ready: {} unavailable", down.join(", ")),
        ));
    }
    Ok(web::Json(Readiness {
        status: "ready",
        checks: results.into_iter().map(|(name, _)| (name, "up")).collect(),
    }))
}

/// Longest a scrape waits for the job queue's counts.
const QUEUE_DEPTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus text exposition of every keel metric.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn prometheus_metrics(state: web::Data<AppState>) -> HttpResponse {
    // Queue depth is read at scrape time; a slow or failing queue must not fail the scrape.
    let depth = crate::background::record_queue_depth(state.stores.jobs.as_ref());
    match tokio::time::timeout(QUEUE_DEPTH_TIMEOUT, depth).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "queue depth unavailable for /metrics"),
        Err(_) => tracing::warn!("queue depth timed out for /metrics"),
    }
    metrics::record_heap();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics::handle().render())
}

/// The OpenAPI 3.1 document of this API, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        serde_json::to_string_pretty(&crate::openapi::document()).unwrap_or_default()
    });
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(DOCUMENT.as_str())
}
