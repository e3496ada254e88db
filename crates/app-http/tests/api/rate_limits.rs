//! Rate limits over HTTP: 429 with `Retry-After` and IETF fields, shared budgets across nodes,
//! and what each class does while Redis is down.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_adapters_redis::{RedisPool, RedisRateLimiter};
use keel_app_http::state::Stores;
use keel_domain::StoreError;
use keel_domain::ratelimit::{RateDecision, RateLimiter, RatePolicy};
use serde_json::json;
use uuid::Uuid;

use crate::support::{
    TestApp, assert_problem, metric, spawn_memory, spawn_on_services, spawn_second_node,
};
use crate::widgets::Widgets;

async fn create(app: &TestApp) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/widgets"))
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(&json!({"name": "w"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_budget_is_spent_then_429_with_retry_after_and_ietf_fields() {
    let widgets = Widgets::new();
    let app = spawn_memory(
        &[("KEEL_RATE_DEFAULT", "3/minute")],
        Stores::memory(),
        widgets.routes(),
    );
    for remaining in [2, 1, 0] {
        let response = create(&app).await;
        assert_eq!(response.status(), 201);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"default\";q=3;w=60"
        );
        let field = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            field.starts_with(&format!("\"default\";r={remaining};t=")),
            "{field}"
        );
    }
    let limited = create(&app).await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry_after),
        "one request refills every 20 s: {retry_after}"
    );
    assert!(
        limited.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .contains("r=0")
    );
    assert_problem(limited, 429, "rate-limited").await;
    assert_eq!(
        widgets.executions(),
        3,
        "a limited request never reaches the handler"
    );
}

#[tokio::test]
async fn a_class_set_off_is_not_limited() {
    let widgets = Widgets::new();
    let app = spawn_memory(
        &[("KEEL_RATE_DEFAULT", "off")],
        Stores::memory(),
        widgets.routes(),
    );
    for _ in 0..5 {
        let response = create(&app).await;
        assert_eq!(response.status(), 201);
        assert!(response.headers().get("ratelimit").is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_one_budget_through_redis() {
    let widgets = Widgets::new();
    // Per hour: no refill can sneak in while the 40 requests run on a slow machine.
    let env = [("KEEL_RATE_DEFAULT", "20/hour")];
    let Some(a) = spawn_on_services(&env, widgets.routes()).await else {
        return;
    };
    let b = spawn_second_node(&a, &env, widgets.routes()).await;
    let (mut allowed, mut limited) = (0, 0);
    for i in 0..40 {
        let node = if i % 2 == 0 { &a } else { &b };
        match create(node).await.status().as_u16() {
            201 => allowed += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (allowed, limited),
        (20, 20),
        "one budget of 20 across both nodes"
    );
}

/// A shared limiter whose backend is down.
struct Unreachable;

#[async_trait]
impl RateLimiter for Unreachable {
    async fn check(
        &self,
        _: &str,
        _: &RatePolicy,
        _: DateTime<Utc>,
    ) -> Result<RateDecision, StoreError> {
        Err(StoreError::unavailable("redis", "connection refused"))
    }
}

fn with_redis_down(mode: &str) -> (TestApp, Widgets) {
    let widgets = Widgets::new();
    let mut stores = Stores::memory();
    stores.rate_limiter = Arc::new(Unreachable);
    let env = [
        ("KEEL_RATE_DEFAULT", "2/minute"),
        ("KEEL_RATE_FALLBACK_DEFAULT", mode),
    ];
    (spawn_memory(&env, stores, widgets.routes()), widgets)
}

#[tokio::test]
async fn redis_down_falls_back_to_the_local_budget() {
    let (app, _) = with_redis_down("local");
    let series = "keel_rate_limit_decisions_total{class=\"default\",outcome=\"fallback_local\"}";
    let before = metric(&app, series).await;
    assert_eq!(create(&app).await.status(), 201);
    assert_eq!(create(&app).await.status(), 201);
    assert_problem(create(&app).await, 429, "rate-limited").await;
    assert!(
        metric(&app, series).await - before >= 3.0,
        "fallbacks are counted"
    );
}

#[tokio::test]
async fn redis_down_fails_open_when_told_to() {
    let (app, widgets) = with_redis_down("open");
    for _ in 0..4 {
        assert_eq!(create(&app).await.status(), 201);
    }
    assert_eq!(widgets.executions(), 4);
}

#[tokio::test]
async fn redis_down_fails_closed_when_told_to() {
    let (app, widgets) = with_redis_down("closed");
    let response = create(&app).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503, "dependency-unavailable").await;
    assert_eq!(widgets.executions(), 0);
}

/// A private `redis-server` on a spare port, killed on drop.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_redis_outage_keeps_limiting_locally_and_recovers() {
    let Some(mut redis) = OwnRedis::start() else {
        assert!(
            !keel_adapters_redis::testkit::require_services(),
            "KEEL_REQUIRE_SERVICES=1 but redis-server cannot be started"
        );
        return;
    };
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let pool = RedisPool::connect(&url, 4).await.unwrap();
    let widgets = Widgets::new();
    let mut stores = Stores::memory();
    stores.rate_limiter = Arc::new(RedisRateLimiter::new(pool));
    let app = spawn_memory(
        &[("KEEL_RATE_DEFAULT", "3/minute")],
        stores,
        widgets.routes(),
    );

    assert_eq!(
        create(&app).await.status(),
        201,
        "served from the Redis budget"
    );
    redis.kill();
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(
            create(&app).await.status(),
            201,
            "this node's own budget serves while Redis is down"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a dead Redis never hangs a request"
    );
    assert_problem(create(&app).await, 429, "rate-limited").await;

    // Redis comes back (empty): the shared budget is used again, so requests pass once more
    // although the local budget is spent.
    let _redis = OwnRedis::start_on(redis.port).expect("redis-server restarts on its port");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if create(&app).await.status() == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shared limiter is not used again after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_node_starts_and_serves_degraded_when_redis_is_down_at_start() {
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis_url = format!("redis://127.0.0.1:{dead_port}");
    let widgets = Widgets::new();
    let settings = crate::support::test_settings(&[
        ("REDIS_URL", &redis_url),
        ("KEEL_RATE_DEFAULT", "2/hour"),
    ]);
    let app = keel_app_http::Application::build_with_routes(settings, widgets.routes())
        .await
        .expect("Redis being down must not stop start-up");
    let app = crate::support::run_app(app);
    let ready = app.get("/readyz").await;
    let body = assert_problem(ready, 503, "dependency-unavailable").await;
    assert!(body["detail"].as_str().unwrap().contains("redis"));
    // Limits fall back to this node's budget; idempotency to the durable store.
    assert_eq!(create(&app).await.status(), 201);
    assert_eq!(create(&app).await.status(), 201);
    assert_problem(create(&app).await, 429, "rate-limited").await;
}
