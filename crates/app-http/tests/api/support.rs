//! `spawn_app()`: the real server on 127.0.0.1:0 with memory or Postgres stores, and a client.

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::web;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_redis::testkit::{TestRedis, test_redis};
use keel_app_http::config::Env;
use keel_app_http::server::ApiRoutes;
use keel_app_http::state::Stores;
use keel_app_http::{Application, Settings};

/// A running server and what it runs on; stops the server when dropped.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    handle: ServerHandle,
    pub db: Option<TestDatabase>,
    pub redis: Option<TestRedis>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// Settings for a test server: random port, quiet logs, plus `extra` env pairs.
pub fn test_settings(extra: &[(&str, &str)]) -> Settings {
    let mut pairs = vec![("KEEL_BIND", "127.0.0.1:0"), ("KEEL_HTTP_WORKERS", "2")];
    pairs.extend_from_slice(extra);
    Settings::load_from(&Env::from_pairs(pairs)).unwrap()
}

/// The server on in-memory stores.
pub async fn spawn_app() -> TestApp {
    start(test_settings(&[]), Stores::memory(), None, Arc::new(|_| {}))
}

/// The server over the given stores.
pub fn spawn_app_on(stores: Stores) -> TestApp {
    start(test_settings(&[]), stores, None, Arc::new(|_| {}))
}

/// The server on in-memory stores with test-only routes mounted under `/api/v1`.
pub fn spawn_app_with_routes(
    routes: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static,
) -> TestApp {
    start(test_settings(&[]), Stores::memory(), None, Arc::new(routes))
}

/// The server on a fresh Postgres database and a private Redis key prefix, started exactly as
/// the binary does (`Application::build` from `DATABASE_URL` / `REDIS_URL`, migrating at
/// start); `None` when service tests are skipped.
pub async fn spawn_app_on_services() -> Option<TestApp> {
    let db = TestDatabase::create().await?;
    let redis = test_redis().await?;
    let redis_url = std::env::var("REDIS_URL").unwrap();
    let settings = test_settings(&[
        ("DATABASE_URL", db.url()),
        ("KEEL_MIGRATE", "true"),
        ("REDIS_URL", &redis_url),
        ("KEEL_REDIS_PREFIX", redis.pool().prefix()),
    ]);
    let app = Application::build(settings).await.unwrap();
    let mut app = run(app, Some(db));
    app.redis = Some(redis);
    Some(app)
}

fn start(
    settings: Settings,
    stores: Stores,
    db: Option<TestDatabase>,
    routes: ApiRoutes,
) -> TestApp {
    run(
        Application::build_with(settings, stores, routes).unwrap(),
        db,
    )
}

fn run(app: Application, db: Option<TestDatabase>) -> TestApp {
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        handle,
        db,
        redis: None,
    }
}

/// Asserts a problem+json response with `status`, `type` ending in `slug` and a request id;
/// returns the body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    slug: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json",
        "content type"
    );
    let header_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{slug}")),
        "type of {body}"
    );
    assert_eq!(body["status"], status, "status field of {body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "title of {body}"
    );
    assert!(body["detail"].as_str().is_some(), "detail of {body}");
    assert_eq!(body["request_id"], header_id, "request_id of {body}");
    body
}
