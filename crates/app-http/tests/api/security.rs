//! Role escalation: every admin route of the OpenAPI document, called without a token, as a
//! participant and as an organizer, is refused before it reads its body or path, and changes
//! nothing. The table is the document itself, so a new admin route is covered the day it is
//! added.

use reqwest::Method;
use serde_json::Value;

use crate::accounts::{mint_user, spawn_with_admin};
use crate::support::TestApp;

/// Every (method, path) of the document under `/api/v1/admin/`.
async fn admin_routes(app: &TestApp) -> Vec<(Method, String)> {
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut routes = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/admin/") {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            routes.push((method, path.clone()));
        }
    }
    routes
}

/// `path` with each `{parameter}` replaced by a value that parses (a fresh UUID).
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(&rest[..open]);
        out.push_str(&uuid::Uuid::now_v7().to_string());
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_route_refuses_anyone_but_an_admin() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let routes = admin_routes(&app).await;
    assert!(
        routes.len() >= 15,
        "the document lists the admin routes: {routes:?}"
    );
    let (_, participant) = mint_user(&stores, "participant").await;
    let (_, organizer) = mint_user(&stores, "organizer").await;
    for (method, path) in &routes {
        let url = app.url(&concrete(path));
        for (who, token, status) in [
            ("nobody", None, 401),
            ("a participant", Some(&participant), 403),
            ("an organizer", Some(&organizer), 403),
        ] {
            let mut request = app
                .client
                .request(method.clone(), &url)
                .header("idempotency-key", uuid::Uuid::now_v7().to_string())
                .json(&serde_json::json!({"role": "admin", "amount_minor": 1, "reason": "x"}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status().as_u16(),
                status,
                "{method} {path} as {who}: {}",
                response.text().await.unwrap()
            );
        }
    }
}
