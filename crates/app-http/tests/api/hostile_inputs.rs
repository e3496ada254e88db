//! SQL-ish, NUL, Unicode and oversized input in every documented path parameter, query
//! parameter and JSON body field, sent as an admin (so role checks never hide a parser): each is
//! answered with a 4xx problem+json (a filter may answer 200 but never widens), never a 5xx, and
//! nothing is created.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::{account_id, admin_token, spawn_with_admin};
use crate::openapi_walk::{Operation, keyed_request, operations, percent_encode};
use crate::support::TestApp;

/// Values that break string-built SQL, C strings, terminals or path handling.
const HOSTILE: [&str; 6] = [
    "' OR 1=1 --",
    "\"; DROP TABLE users; --",
    "nul\u{0}byte",
    "ünïcødé 🙂 \u{202e}txt.exe",
    "../../etc/passwd",
    "%00%27",
];

/// No rate limit hides a parser; small bodies so the oversized one is cheap.
const ENV: &[(&str, &str)] = &[
    ("KEEL_WORKERS", "0"),
    ("KEEL_BODY_LIMIT", "4096"),
    ("KEEL_RATE_AUTH", "off"),
    ("KEEL_RATE_DEFAULT", "off"),
    ("KEEL_RATE_EXPENSIVE", "off"),
    ("KEEL_RATE_SCAN", "off"),
    ("KEEL_RATE_SCORE", "off"),
];

/// Tables that record refused requests by design (delivery log, idempotency records, job
/// scheduling) and so may grow while nothing is created.
const BOOKKEEPING: [&str; 4] = ["webhook_logs", "idempotency_keys", "jobs", "job_schedules"];

async fn admin_server() -> (TestApp, String, Vec<Operation>) {
    let (app, _) = spawn_with_admin(ENV).await;
    let admin = admin_token(&app).await;
    let ops = operations(&app).await;
    assert!(ops.len() >= 40, "the document lists the routes: {ops:?}");
    (app, admin, ops)
}

/// Rows per table of the test database (`None` on memory stores), bookkeeping tables left out.
pub async fn row_counts(app: &TestApp) -> Option<BTreeMap<String, i64>> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.db.as_ref()?.pool().get().await.unwrap();
    let rows: Vec<Count> = diesel::sql_query(
        "SELECT table_name::text AS name, (xpath('/row/n/text()', query_to_xml( \
         format('SELECT count(*) AS n FROM %I', table_name), false, true, '')))[1]::text::bigint AS n \
         FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    Some(
        rows.into_iter()
            .filter(|r| !BOOKKEEPING.contains(&r.name.as_str()))
            .map(|r| (r.name, r.n))
            .collect(),
    )
}

/// Asserts a 4xx answered as problem+json; `what` names the request in the message.
async fn assert_4xx_problem(response: reqwest::Response, what: &str) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").cloned();
    let body = response.text().await.unwrap();
    assert!((400..500).contains(&status), "{what}: {status} {body}");
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{what}: {status} {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_path_parameters_are_4xx_problems_and_create_nothing() {
    let (app, admin, ops) = admin_server().await;
    let before = row_counts(&app).await;
    for op in ops.iter().filter(|op| op.has_path_params()) {
        for value in HOSTILE.into_iter().chain([&*"x".repeat(5_000)]) {
            let path = op.path_with(value);
            let response = op.send_json(&app, &path, &admin, &json!({})).await;
            assert_4xx_problem(response, &format!("{} {} = {value:?}", op.method, op.path)).await;
        }
    }
    assert_eq!(row_counts(&app).await, before, "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_query_values_never_fail_the_server_nor_widen_a_filter() {
    let (app, admin, ops) = admin_server().await;
    let before = row_counts(&app).await;
    for op in ops.iter().filter(|op| op.method == Method::GET) {
        for (name, value) in op.query.iter().flat_map(|n| HOSTILE.map(|v| (n, v))) {
            let path = format!("{}?{name}={}", op.concrete(), percent_encode(value));
            let what = format!("GET {path}");
            let response = op.request(&app, &path, &admin).send().await.unwrap();
            let status = response.status().as_u16();
            if status >= 400 {
                assert_4xx_problem(response, &what).await;
                continue;
            }
            assert_eq!(status, 200, "{what}");
            let body = response.text().await.unwrap();
            // A free-text filter matches nothing: no row was stored with such a value.
            if let Ok(Value::Object(page)) = serde_json::from_str::<Value>(&body)
                && let Some(items) = page.get("items")
            {
                assert_eq!(items, &json!([]), "{what} widened the filter");
            }
        }
    }
    assert_eq!(row_counts(&app).await, before, "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_json_fields_of_every_body_are_4xx_problems_and_create_nothing() {
    let (app, admin, ops) = admin_server().await;
    let before = row_counts(&app).await;
    for op in &ops {
        let Some(fields) = &op.body_fields else {
            continue;
        };
        for value in HOSTILE {
            // A body documented without fields (raw text) gets the value itself.
            let body = if fields.is_empty() {
                json!(value)
            } else {
                Value::Object(fields.iter().map(|f| (f.clone(), json!(value))).collect())
            };
            let response = op.send_json(&app, &op.concrete(), &admin, &body).await;
            let what = format!("{} {} with {body}", op.method, op.path);
            assert_4xx_problem(response, &what).await;
        }
    }
    assert_eq!(row_counts(&app).await, before, "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_413_problems() {
    let (app, admin, ops) = admin_server().await;
    let huge = json!({ "title": "x".repeat(8_192) });
    for op in ops.iter().filter(|op| op.body_fields.is_some()) {
        let response = op.send_json(&app, &op.concrete(), &admin, &huge).await;
        let what = format!("{} {}", op.method, op.path);
        assert_eq!(response.status(), 413, "{what}");
        assert_4xx_problem(response, &what).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_and_ids_are_refused() {
    let (app, admin, _) = admin_server().await;
    let long = "a".repeat(300);
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = app
            .client
            .post(app.url("/api/v1/wallet/deposits"))
            .bearer_auth(&admin)
            .json(&json!({"amount_minor": 100, "currency": "ZAR"}));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    // An Idempotency-Key over 255 characters is a 400 problem, and nothing is deposited.
    let response = send(vec![("idempotency-key", long.clone())]).await.unwrap();
    assert_4xx_problem(response, "a 300-character Idempotency-Key").await;
    // A 300-character request id is not echoed: a fresh one replaces it.
    let key = ("idempotency-key", uuid::Uuid::now_v7().to_string());
    let response = send(vec![("x-request-id", long.clone()), key])
        .await
        .unwrap();
    assert!(response.status().as_u16() < 500);
    let echoed = response.headers()["x-request-id"].to_str().unwrap();
    assert!(echoed.len() <= 64 && echoed != long, "{echoed}");
    // A 20 kB bearer token is an invalid token, not a crash.
    let response = app
        .client
        .get(app.url("/api/v1/users/me"))
        .bearer_auth("e".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_4xx_problem(response, "a 20 kB bearer token").await;
    // A 100 kB header is refused by the HTTP layer with a 4xx.
    let response = send(vec![("x-padding", "p".repeat(100_000))])
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    let response = app
        .get(&format!("/api/v1/events/{}", "9".repeat(40_000)))
        .await;
    assert!(response.status().is_client_error(), "{}", response.status());
    let history: Value = app
        .client
        .get(app.url("/api/v1/wallet/transactions"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        history["items"].as_array().map(Vec::len),
        Some(1),
        "only the deposit with a replaced request id was made: {history}"
    );
}

/// Free-text fields of otherwise valid bodies: text with a NUL cannot be stored (Postgres text
/// refuses it), so it is a 422 on every store, never a 5xx and never a row.
#[tokio::test(flavor = "multi_thread")]
async fn nul_bytes_in_free_text_fields_are_refused() {
    let (app, admin, _) = admin_server().await;
    let admin_id = &account_id(&app, &admin).await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let nul = "Nul\u{0}Text";
    let cases = [
        (
            Method::POST,
            "/api/v1/auth/register".to_owned(),
            json!({"email": "nul@example.com", "password": crate::accounts::PASSWORD, "display_name": nul}),
        ),
        (
            Method::POST,
            "/api/v1/events".to_owned(),
            json!({"title": nul, "starts_at": soon, "ends_at": later}),
        ),
        (
            Method::POST,
            "/api/v1/competitions".to_owned(),
            json!({"title": nul, "capacity": 3, "registration_deadline": soon, "starts_at": later}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{admin_id}"),
            json!({"role": "admin", "reason": nul}),
        ),
        (
            Method::POST,
            "/api/v1/admin/ledger/adjustments".to_owned(),
            json!({"user_id": admin_id, "amount_minor": 100, "currency": "ZAR", "direction": "credit", "reason": nul}),
        ),
        (
            Method::POST,
            "/api/v1/wallet/withdrawals".to_owned(),
            json!({"amount_minor": 1, "currency": "ZAR", "destination": nul}),
        ),
        (
            Method::POST,
            "/api/v1/auth/login".to_owned(),
            json!({"email": nul, "password": nul}),
        ),
        (
            Method::POST,
            "/api/v1/actions/start".to_owned(),
            json!({"action_type": nul}),
        ),
    ];
    let before = row_counts(&app).await;
    for (method, path, body) in cases {
        let request = keyed_request(&app, method.clone(), &path, &admin);
        let response = request.json(&body).send().await.unwrap();
        assert_4xx_problem(response, &format!("{method} {path} with {body}")).await;
    }
    assert_eq!(row_counts(&app).await, before, "nothing was created");
}
