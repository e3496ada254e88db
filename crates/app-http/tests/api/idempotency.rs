//! `Idempotency-Key` over HTTP: replay, mismatch, in flight, races, nodes, crashes.

use std::time::Duration;

use futures_util::future::join_all;
use keel_app_http::state::Stores;
use serde_json::{Value, json};

use crate::support::{
    TestApp, assert_problem, metric, spawn_memory, spawn_on_services, spawn_second_node,
};
use crate::widgets::Widgets;

async fn post(app: &TestApp, path: &str, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

fn memory_app(widgets: &Widgets) -> TestApp {
    spawn_memory(&[], Stores::memory(), widgets.routes())
}

async fn services_app(widgets: &Widgets, env: &[(&str, &str)]) -> Option<TestApp> {
    let app = spawn_on_services(env, widgets.routes()).await?;
    widgets.attach(&app).await;
    Some(app)
}

/// Ten sequential repeats: one execution (and one row), ten identical bodies.
async fn ten_repeats_execute_once(app: &TestApp, widgets: &Widgets) {
    let mut bodies = Vec::new();
    for attempt in 0..10 {
        let response = post(
            app,
            "/api/v1/widgets",
            Some("order-1"),
            json!({"name": "gear"}),
        )
        .await;
        assert_eq!(response.status(), 201);
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            replayed.as_deref(),
            (attempt > 0).then_some("true"),
            "attempt {attempt}"
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        bodies.push(response.bytes().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every replay is byte-for-byte the first body"
    );
    assert_eq!(widgets.executions(), 1);
}

#[tokio::test]
async fn sequential_repeats_execute_once_in_memory() {
    let widgets = Widgets::new();
    ten_repeats_execute_once(&memory_app(&widgets), &widgets).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_repeats_write_one_row_on_postgres() {
    let widgets = Widgets::new();
    let Some(app) = services_app(&widgets, &[]).await else {
        return;
    };
    ten_repeats_execute_once(&app, &widgets).await;
    assert_eq!(widgets.rows().await, 1);
}

/// Thirty parallel requests with one key: exactly one execution; the rest replay or wait.
async fn parallel_requests_execute_once(apps: &[&TestApp], widgets: &Widgets) {
    let responses = join_all((0..30).map(|i| {
        let app = apps[i % apps.len()];
        post(
            app,
            "/api/v1/widgets",
            Some("race-1"),
            json!({"name": "cog", "delay_ms": 300}),
        )
    }))
    .await;
    let mut created = 0;
    for response in responses {
        match response.status().as_u16() {
            201 if response.headers().get("idempotent-replayed").is_none() => created += 1,
            201 => {}
            409 => {
                assert!(response.headers().contains_key("retry-after"));
                assert_problem(response, 409, "idempotency-key-in-flight").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 1, "exactly one request may execute");
    assert_eq!(widgets.executions(), 1);
}

#[tokio::test]
async fn parallel_requests_execute_once_in_memory() {
    let widgets = Widgets::new();
    let app = memory_app(&widgets);
    parallel_requests_execute_once(&[&app], &widgets).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_requests_across_two_nodes_execute_once_on_postgres_and_redis() {
    let widgets = Widgets::new();
    let Some(a) = services_app(&widgets, &[]).await else {
        return;
    };
    let b = spawn_second_node(&a, &[], widgets.routes()).await;
    parallel_requests_execute_once(&[&a, &b], &widgets).await;
    assert_eq!(widgets.rows().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_claimed_on_one_node_replays_on_the_other() {
    let widgets = Widgets::new();
    let Some(a) = services_app(&widgets, &[]).await else {
        return;
    };
    let b = spawn_second_node(&a, &[], widgets.routes()).await;
    let first = post(
        &a,
        "/api/v1/widgets",
        Some("k-nodes"),
        json!({"name": "axle"}),
    )
    .await;
    assert_eq!(first.status(), 201);
    let first = first.bytes().await.unwrap();
    let again = post(
        &b,
        "/api/v1/widgets",
        Some("k-nodes"),
        json!({"name": "axle"}),
    )
    .await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first);
    assert_eq!(widgets.rows().await, 1);
}

#[tokio::test]
async fn reusing_a_key_for_another_request_is_422() {
    let widgets = Widgets::new();
    let app = memory_app(&widgets);
    assert_eq!(
        post(&app, "/api/v1/widgets", Some("k"), json!({"name": "a"}))
            .await
            .status(),
        201
    );
    let response = post(&app, "/api/v1/widgets", Some("k"), json!({"name": "b"})).await;
    assert_problem(response, 422, "idempotency-key-mismatch").await;
    let response = post(
        &app,
        "/api/v1/widgets/optional",
        Some("k"),
        json!({"name": "a"}),
    )
    .await;
    assert_problem(response, 422, "idempotency-key-mismatch").await;
    assert_eq!(widgets.executions(), 1);
}

#[tokio::test]
async fn bad_or_missing_keys_are_400() {
    let widgets = Widgets::new();
    let app = memory_app(&widgets);
    let missing = post(&app, "/api/v1/widgets", None, json!({"name": "a"})).await;
    assert_problem(missing, 400, "invalid-header").await;
    let long = "k".repeat(256);
    assert_problem(
        post(&app, "/api/v1/widgets", Some(&long), json!({"name": "a"})).await,
        400,
        "invalid-header",
    )
    .await;
    let response = app
        .client
        .post(app.url("/api/v1/widgets"))
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        )
        .json(&json!({"name": "a"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "invalid-header").await;
    assert_eq!(widgets.executions(), 0);
    // Where the key is optional, its absence just runs the request.
    assert_eq!(
        post(&app, "/api/v1/widgets/optional", None, json!({"name": "a"}))
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn server_errors_are_not_final_but_rule_violations_are() {
    let widgets = Widgets::new();
    let app = memory_app(&widgets);
    let failed = post(
        &app,
        "/api/v1/widgets",
        Some("k5"),
        json!({"name": "a", "fail": true}),
    )
    .await;
    assert_eq!(failed.status(), 500);
    // The identical retry runs again instead of replaying the failure.
    let retried = post(
        &app,
        "/api/v1/widgets",
        Some("k5"),
        json!({"name": "a", "fail": true}),
    )
    .await;
    assert_eq!(
        retried.status(),
        500,
        "the 5xx was not stored: the request ran again"
    );
    assert_eq!(widgets.executions(), 2);

    let invalid = post(&app, "/api/v1/widgets", Some("k4"), json!({"name": ""})).await;
    assert_problem(invalid, 422, "validation-failed").await;
    let replay = post(&app, "/api/v1/widgets", Some("k4"), json!({"name": ""})).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_problem(replay, 422, "validation-failed").await;
    assert_eq!(widgets.executions(), 3);
}

#[tokio::test]
async fn keys_are_scoped_per_caller() {
    let widgets = Widgets::new();
    // Behind a trusted proxy (this test client), X-Forwarded-For names the caller.
    let app = spawn_memory(
        &[("KEEL_TRUSTED_PROXIES", "127.0.0.1")],
        Stores::memory(),
        widgets.routes(),
    );
    let send = |client_ip: &'static str| {
        app.client
            .post(app.url("/api/v1/widgets"))
            .header("idempotency-key", "shared")
            .header("x-forwarded-for", client_ip)
            .json(&json!({"name": "a"}))
            .send()
    };
    let first = send("198.51.100.1").await.unwrap();
    let other_caller = send("198.51.100.2").await.unwrap();
    let same_caller = send("198.51.100.1").await.unwrap();
    assert_eq!(first.status(), 201);
    assert_eq!(other_caller.status(), 201);
    assert!(
        other_caller.headers().get("idempotent-replayed").is_none(),
        "another caller's key is its own"
    );
    assert_eq!(same_caller.headers()["idempotent-replayed"], "true");
    assert_eq!(widgets.executions(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_of_a_killed_node_is_recovered_after_its_lease() {
    let widgets = Widgets::new();
    let lease = [("KEEL_IDEMPOTENCY_LEASE_SECS", "3")];
    let Some(a) = services_app(&widgets, &lease).await else {
        return;
    };
    let b = spawn_second_node(&a, &lease, widgets.routes()).await;

    let url = a.url("/api/v1/widgets");
    let client = a.client.clone();
    let doomed = tokio::spawn(async move {
        client
            .post(url)
            .header("idempotency-key", "crash-1")
            .json(&json!({"name": "x", "delay_ms": 20000}))
            .send()
            .await
    });
    // Wait until node A holds the claim (its handler is then sleeping), then kill A.
    let mut claimed = false;
    for _ in 0..100 {
        if widgets.executions() == 1 {
            claimed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(claimed, "node A never started the request");
    a.kill().await;
    assert!(doomed.await.unwrap().is_err(), "node A died mid-request");
    assert_eq!(widgets.rows().await, 0, "nothing was committed");

    let waiting = post(
        &b,
        "/api/v1/widgets",
        Some("crash-1"),
        json!({"name": "x", "delay_ms": 20000}),
    )
    .await;
    assert_problem(waiting, 409, "idempotency-key-in-flight").await;

    // Once the lease has run out, the same request is taken over and runs on node B.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let retry = post(
            &b,
            "/api/v1/widgets",
            Some("crash-1"),
            json!({"name": "x", "delay_ms": 20000}),
        )
        .await;
        if retry.status() == 409 {
            assert!(
                std::time::Instant::now() < deadline,
                "the dead claim was never taken over"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert_eq!(retry.status(), 201);
        break;
    }
    assert_eq!(
        widgets.executions(),
        2,
        "A's attempt died uncommitted; B's ran once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_periodic_purge_deletes_expired_keys() {
    let widgets = Widgets::new();
    let env = [
        ("KEEL_IDEMPOTENCY_TTL_SECS", "2"),
        ("KEEL_IDEMPOTENCY_LEASE_SECS", "1"),
        ("KEEL_IDEMPOTENCY_PURGE_INTERVAL_SECS", "1"),
    ];
    let Some(app) = services_app(&widgets, &env).await else {
        return;
    };
    assert_eq!(
        post(&app, "/api/v1/widgets", Some("p1"), json!({"name": "a"}))
            .await
            .status(),
        201
    );
    let pool = app.db.as_ref().unwrap().pool().clone();
    let count = || async {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = pool.get().await.unwrap();
        diesel::sql_query("SELECT count(*) AS n FROM idempotency_keys")
            .get_result::<Count>(&mut conn)
            .await
            .unwrap()
            .n
    };
    assert_eq!(count().await, 1);
    let mut purged = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if count().await == 0 {
            purged = true;
            break;
        }
    }
    assert!(
        purged,
        "the expired key is purged within a few purge intervals"
    );
}

#[tokio::test]
async fn replays_are_counted_in_metrics() {
    let widgets = Widgets::new();
    let app = memory_app(&widgets);
    let replays = "keel_idempotency_outcomes_total{outcome=\"replayed\"}";
    let before = metric(&app, replays).await;
    for _ in 0..3 {
        post(&app, "/api/v1/widgets", Some("m1"), json!({"name": "a"})).await;
    }
    // The recorder is process-wide and other tests replay too: at least our two replays counted.
    assert!(metric(&app, replays).await - before >= 2.0);
}
