//! `spawn_app()`: the real server on 127.0.0.1:0 with memory or real stores, and a client.

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::web;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_redis::testkit::{TestRedis, test_redis};
use keel_app_http::config::Env;
use keel_app_http::server::ApiRoutes;
use keel_app_http::state::Stores;
use keel_app_http::{Application, Settings};

/// Test-only routes mounted under `/api/v1`.
pub type Routes = ApiRoutes;

/// No extra routes.
pub fn no_routes() -> Routes {
    Arc::new(|_| {})
}

/// Wraps a route-registering closure.
pub fn routes(f: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static) -> Routes {
    Arc::new(f)
}

/// A running server and what it runs on; stops the server when dropped.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub handle: ServerHandle,
    pub db: Option<Arc<TestDatabase>>,
    pub redis: Option<Arc<TestRedis>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Stops the server at once, abandoning in-flight requests (a crashed node).
    pub async fn kill(&self) {
        self.handle.stop(false).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// Settings for a test server: random port, two workers, plus `extra` env pairs.
pub fn test_settings(extra: &[(&str, &str)]) -> Settings {
    let mut pairs = vec![("KEEL_BIND", "127.0.0.1:0"), ("KEEL_HTTP_WORKERS", "2")];
    pairs.extend_from_slice(extra);
    Settings::load_from(&Env::from_pairs(pairs)).unwrap()
}

/// The server on in-memory stores.
pub async fn spawn_app() -> TestApp {
    spawn_app_on(Stores::memory())
}

/// The server over the given stores.
pub fn spawn_app_on(stores: Stores) -> TestApp {
    spawn_memory(&[], stores, no_routes())
}

/// The server on in-memory stores with test-only routes mounted under `/api/v1`.
pub fn spawn_app_with_routes(
    f: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static,
) -> TestApp {
    spawn_memory(&[], Stores::memory(), routes(f))
}

/// The server over `stores` with extra settings and routes.
pub fn spawn_memory(env: &[(&str, &str)], stores: Stores, routes: Routes) -> TestApp {
    let app = Application::build_with(test_settings(env), stores, routes).unwrap();
    run(app, None, None)
}

/// The server on a fresh Postgres database and a private Redis key prefix, started exactly as
/// the binary does (`Application::build` from `DATABASE_URL` / `REDIS_URL`, migrating at
/// start); `None` when service tests are skipped.
pub async fn spawn_app_on_services() -> Option<TestApp> {
    spawn_on_services(&[], no_routes()).await
}

/// [`spawn_app_on_services`] with extra settings and routes.
pub async fn spawn_on_services(env: &[(&str, &str)], routes: Routes) -> Option<TestApp> {
    let db = Arc::new(TestDatabase::create().await?);
    let redis = Arc::new(test_redis().await?);
    Some(start_node(env, routes, db, redis).await)
}

/// Another node on the same Postgres database and Redis prefix as `first`.
pub async fn spawn_second_node(first: &TestApp, env: &[(&str, &str)], routes: Routes) -> TestApp {
    let db = first.db.clone().expect("first node runs on services");
    let redis = first.redis.clone().expect("first node runs on services");
    start_node(env, routes, db, redis).await
}

async fn start_node(
    env: &[(&str, &str)],
    routes: Routes,
    db: Arc<TestDatabase>,
    redis: Arc<TestRedis>,
) -> TestApp {
    let redis_url = std::env::var("REDIS_URL").unwrap();
    let mut pairs = vec![
        ("DATABASE_URL", db.url()),
        ("KEEL_MIGRATE", "true"),
        ("REDIS_URL", redis_url.as_str()),
        ("KEEL_REDIS_PREFIX", redis.pool().prefix()),
    ];
    pairs.extend_from_slice(env);
    let app = Application::build_with_routes(test_settings(&pairs), routes)
        .await
        .unwrap();
    run(app, Some(db), Some(redis))
}

/// Runs an application built by the test itself over services the test created.
pub fn run_app_on(app: Application, db: Arc<TestDatabase>, redis: Arc<TestRedis>) -> TestApp {
    run(app, Some(db), Some(redis))
}

/// Runs an application built by the test itself, over its own stores.
pub fn run_app(app: Application) -> TestApp {
    run(app, None, None)
}

fn run(app: Application, db: Option<Arc<TestDatabase>>, redis: Option<Arc<TestRedis>>) -> TestApp {
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        handle,
        db,
        redis,
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

/// The current value of the metric line starting with `series` (0 when absent).
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
