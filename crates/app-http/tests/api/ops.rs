//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, request ids.

use std::sync::Arc;

use async_trait::async_trait;
use keel_app_http::state::Stores;
use keel_domain::StoreError;
use keel_domain::health::HealthProbe;

use crate::support::{
    assert_problem, metric, spawn_app, spawn_app_on, spawn_app_on_services, test_settings,
};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
}

#[tokio::test]
async fn readyz_lists_the_memory_store() {
    let app = spawn_app().await;
    let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["memory"], "up");
}

struct DownProbe;

#[async_trait]
impl HealthProbe for DownProbe {
    fn dependency(&self) -> &'static str {
        "redis"
    }
    async fn check(&self) -> Result<(), StoreError> {
        Err(StoreError::unavailable("redis", "connection refused"))
    }
}

#[tokio::test]
async fn readyz_names_the_dependency_that_is_down() {
    let mut stores = Stores::memory();
    stores.probes.push(Arc::new(DownProbe));
    let app = spawn_app_on(stores);
    let response = app.get("/readyz").await;
    assert!(response.headers().contains_key("retry-after"));
    let body = assert_problem(response, 503, "dependency-unavailable").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("redis") && !detail.contains("memory"),
        "{detail}"
    );
    assert!(
        !detail.contains("connection refused"),
        "internal reasons stay in the logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_backed_server_migrates_and_reports_ready_then_not_ready_when_cut_off() {
    let Some(app) = spawn_app_on_services().await else {
        return;
    };
    let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "up", "{body}");

    let db = app.db.as_ref().unwrap();
    db.cut_connections().await;
    // A pool connection being opened while the outage began can still slip in on a loaded
    // machine; it is cut again until the probe sees the outage.
    let mut response = app.get("/readyz").await;
    for _ in 0..20 {
        if response.status() == 503 {
            break;
        }
        db.cut_connections().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        response = app.get("/readyz").await;
    }
    let body = assert_problem(response, 503, "dependency-unavailable").await;
    assert!(body["detail"].as_str().unwrap().contains("postgres"));

    db.restore_connections().await;
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the pool must recover once Postgres is back");
}

#[tokio::test]
async fn request_id_is_echoed_when_safe_and_replaced_otherwise() {
    let app = spawn_app().await;
    let safe = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "scan-42.retry_1")
        .send()
        .await
        .unwrap();
    assert_eq!(safe.headers()["x-request-id"], "scan-42.retry_1");

    for unsafe_id in ["has spaces", "<script>", &"a".repeat(65)] {
        let response = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", unsafe_id)
            .send()
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(echoed, unsafe_id);
        assert!(
            uuid::Uuid::parse_str(echoed).is_ok(),
            "a fresh UUID replaces {unsafe_id:?}"
        );
    }
    let generated = app.get("/healthz").await;
    assert!(uuid::Uuid::parse_str(generated.headers()["x-request-id"].to_str().unwrap()).is_ok());
}

#[tokio::test]
async fn metrics_count_requests_per_route_with_latency_histograms() {
    let app = spawn_app().await;
    let healthz =
        "keel_http_requests_total{method=\"GET\",route=\"/healthz\",status_class=\"2xx\"}";
    let made_up =
        "keel_http_requests_total{method=\"OTHER\",route=\"unmatched\",status_class=\"4xx\"}";
    let (healthz_before, made_up_before) =
        (metric(&app, healthz).await, metric(&app, made_up).await);
    for _ in 0..3 {
        app.get("/healthz").await;
    }
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    app.client
        .request(brew, app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    // The recorder is process-wide (other tests count too): compare before and after.
    assert!(metric(&app, healthz).await - healthz_before >= 3.0);
    assert!(
        metric(&app, made_up).await - made_up_before >= 1.0,
        "made-up methods share one OTHER label"
    );
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("keel_http_request_duration_seconds_bucket"),
        "latency histogram missing"
    );
    assert!(
        !text.contains("BREW"),
        "client-chosen methods never become label values"
    );
}

#[tokio::test]
async fn openapi_document_is_generated_from_the_handlers() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn openapi_path_parameters_are_exactly_the_templates_parameters() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut wrong = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let params = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for param in &params {
                let name = param["name"].as_str().unwrap();
                let in_template = path.contains(&format!("{{{name}}}"));
                if (param["in"] == "path") != in_template {
                    wrong.push(format!("{method} {path}: {name} in {}", param["in"]));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "misplaced parameters: {wrong:#?}");
}

#[test]
fn test_settings_bind_a_random_port() {
    assert_eq!(test_settings(&[]).server.bind.port(), 0);
}
