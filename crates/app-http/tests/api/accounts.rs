//! Accounts for HTTP tests: a server with a bootstrap admin, registration, login, roles.

use std::sync::Arc;

use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_redis::testkit::test_redis;
use keel_app_http::Application;
use keel_app_http::state::Stores;
use serde_json::{Value, json};

use crate::support::{TestApp, run_app, run_app_on, test_settings};

/// Password of every test account.
pub const PASSWORD: &str = "correct horse battery staple";
/// The bootstrap admin.
pub const ADMIN_EMAIL: &str = "root@keel.test";
/// The bootstrap admin's password.
pub const ADMIN_PASSWORD: &str = "admin-password-long-enough";

pub async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn register(app: &TestApp, email: &str) -> Value {
    let response = post(
        app,
        "/api/v1/auth/register",
        json!({"email": email, "password": PASSWORD, "display_name": "Thandi", "phone": "+27821234321"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

pub async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/auth/login",
        json!({"email": email, "password": password}),
    )
    .await
}

pub async fn tokens(app: &TestApp, email: &str, password: &str) -> Value {
    let response = login(app, email, password).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A server started like the binary (bootstrap admin included), on Postgres + Redis when they
/// are configured (so in CI every test here runs on real services) and on memory stores
/// otherwise; the test shares the stores to inspect them.
pub async fn spawn_with_admin(extra: &[(&str, &str)]) -> (TestApp, Stores) {
    let mut env = vec![
        ("KEEL_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
        ("KEEL_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    env.extend_from_slice(extra);
    let services = match (TestDatabase::create().await, test_redis().await) {
        (Some(db), Some(redis)) => Some((Arc::new(db), Arc::new(redis))),
        _ => None,
    };
    let Some((db, redis)) = services else {
        let stores = Stores::memory();
        let app = Application::start_over(
            test_settings(&env),
            stores.clone(),
            crate::support::no_routes(),
        )
        .await
        .unwrap();
        return (run_app(app), stores);
    };
    let redis_url = std::env::var("REDIS_URL").unwrap();
    env.extend([
        ("DATABASE_URL", db.url()),
        ("KEEL_MIGRATE", "true"),
        ("REDIS_URL", redis_url.as_str()),
        ("KEEL_REDIS_PREFIX", redis.pool().prefix()),
    ]);
    let settings = test_settings(&env);
    let stores = Stores::connect(&settings).await.unwrap();
    let app = Application::start_over(settings, stores.clone(), crate::support::no_routes())
        .await
        .unwrap();
    (run_app_on(app, db, redis), stores)
}

/// The bootstrap admin's access token.
pub async fn admin_token(app: &TestApp) -> String {
    tokens(app, ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The id of the account behind `token`.
pub async fn account_id(app: &TestApp, token: &str) -> String {
    let me: Value = get_as(app, token, "/api/v1/users/me")
        .await
        .json()
        .await
        .unwrap();
    me["id"].as_str().unwrap().to_owned()
}

pub async fn promote(app: &TestApp, admin_token: &str, id: &str, role: &str) {
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/admin/users/{id}")))
        .bearer_auth(admin_token)
        .json(&json!({"role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

pub async fn get_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Registers `email` with a role given by the admin; returns (user id, access token).
pub async fn account(
    app: &TestApp,
    admin_token: &str,
    email: &str,
    role: &str,
) -> (String, String) {
    let id = register(app, email).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    if role != "participant" {
        promote(app, admin_token, &id, role).await;
    }
    let token = tokens(app, email, PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, token)
}

/// Creates an account straight through the user store (no Argon2id, no `auth` rate limit) and
/// signs an access token for it with the test servers' JWT secret: for tests that need many
/// users at once. The password hash is a placeholder, so this account cannot log in.
pub async fn mint_user(
    stores: &Stores,
    role: &str,
) -> (keel_domain::identity::user::UserId, String) {
    use keel_app_http::state::{ACCESS_TOKEN_TTL_MINUTES, TOKEN_AUDIENCE, TOKEN_ISSUER};
    use keel_domain::identity::access_token::AccessTokenSigner;
    use keel_domain::identity::user::{NewUser, UserId};
    use keel_domain::identity::values::{DisplayName, Email, Role};

    let id = UserId::new_random();
    let user = NewUser {
        id,
        email: Email::parse(&format!("{}@minted.test", id.as_uuid().simple())).unwrap(),
        display_name: DisplayName::parse("Minted").unwrap(),
        role: role.parse::<Role>().unwrap(),
        password_hash: "not-a-password-hash".into(),
        pii: Default::default(),
        created_at: chrono::Utc::now(),
    };
    stores.users.create(&user).await.unwrap();
    let settings = test_settings(&[]);
    let signer = AccessTokenSigner::new(
        settings.secrets.jwt_secret.expose().as_bytes(),
        TOKEN_ISSUER,
        TOKEN_AUDIENCE,
        chrono::Duration::minutes(ACCESS_TOKEN_TTL_MINUTES),
    )
    .unwrap();
    let (token, _) = signer
        .issue(&id.to_string(), role, chrono::Utc::now())
        .unwrap();
    (id, token)
}
