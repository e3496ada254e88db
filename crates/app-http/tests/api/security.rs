//! Role escalation: every admin route of the OpenAPI document, called without a token, as a
//! participant and as an organizer, is refused before it reads its body or path, and changes
//! nothing. The table is the document itself, so a new admin route is covered the day it is
//! added.

use crate::accounts::{mint_user, spawn_with_admin};
use crate::openapi_walk::{Operation, operations};
use crate::support::TestApp;

/// Every operation of the document under `/api/v1/admin/`.
async fn admin_routes(app: &TestApp) -> Vec<Operation> {
    let mut all = operations(app).await;
    all.retain(|op| op.path.starts_with("/api/v1/admin/"));
    all
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
    for op in &routes {
        let (method, path) = (&op.method, &op.path);
        let url = app.url(&op.concrete());
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
