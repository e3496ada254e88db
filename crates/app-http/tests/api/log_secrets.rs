//! A full run of the real `keel` binary with logs at `debug` (on Postgres + Redis when
//! configured), then every line it wrote to stdout and stderr is scanned for the secrets, tokens
//! and personal data the flow handled: none may appear.
//!
//! The flow: bootstrap admin, registration with every PII field, login, refresh (and a reused
//! refresh token), a wrong password, PII read by its owner and by staff with a reason, an
//! idempotent deposit replayed on its key and settled by the simulator's RSA-signed webhook, a
//! deposit settled by a Standard Webhooks (HMAC) delivery and a forged one, an action started
//! and scored with its action token.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_redis::testkit::test_redis;
use keel_domain::webhooks::StandardWebhookSecret;
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::binary::{free_port, start_server_with, stop};
use crate::wallet::event;

const JWT_SECRET: &str = "log-scan-jwt-secret-4b1d9e7a0c3f5a8e2d6b";
const ACTION_SECRET: &str = "log-scan-action-secret-93c1f0e8d7a6b5c4";
/// The PII key's 32 bytes, base64 (`KEEL_PII_KEYS` is `<id>:<base64>`).
const PII_KEY: &str = "bG9nLXNjYW4tcGlpLWtleS0zMi1ieXRlcy1sb25nISE=";
/// The Standard Webhooks secret's base64 part (`KEEL_REVIO_WEBHOOK_SECRET` is `whsec_<base64>`).
const WEBHOOK_KEY: &str = "bG9nLXNjYW4td2ViaG9vay1zZWNyZXQtMzI=";
const ADMIN_EMAIL: &str = "root@keel.test";
const ADMIN_PASSWORD: &str = "log-scan-admin-passphrase-31";
const PASSWORD: &str = "my very secret passphrase";
const WRONG_PASSWORD: &str = "wrong password guess!!";
/// The personal data registered (the display name is public on the board; email is kept
/// plaintext but is still never logged).
const PII: [(&str, &str); 5] = [
    ("email", "zanele.secretperson@example.com"),
    ("phone", "+27825550199"),
    ("address", "17 Hidden Lane, Observatory, Cape Town"),
    ("date_of_birth", "1980-01-01"),
    ("national_id", "8001015009087"),
];

/// A `keel serve` process and a client for its API.
struct Node {
    base: String,
    client: reqwest::Client,
}

impl Node {
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> Response {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str, token: &str) -> Response {
        let request = self.client.get(format!("{}{path}", self.base));
        request.bearer_auth(token).send().await.unwrap()
    }

    /// `POST` that must answer `status`; its JSON body.
    async fn expect(
        &self,
        status: u16,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Value,
    ) -> Value {
        let response = self.post(path, token, key, &body).await;
        assert_eq!(response.status().as_u16(), status, "POST {path}");
        response.json().await.unwrap()
    }

    async fn login(&self, email: &str, password: &str) -> Value {
        self.expect(
            200,
            "/api/v1/auth/login",
            None,
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn available_zar(&self, token: &str) -> i64 {
        let balance: Value = self
            .get("/api/v1/wallet/balance?currency=ZAR", token)
            .await
            .json()
            .await
            .unwrap();
        balance["available"].as_i64().unwrap_or(0)
    }
}

/// Every secret value the flow handled, by name; grows as the flow runs.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    /// A secret, found as text or as the decimal byte list a driver's `Debug` prints (e.g.
    /// `[114, 111, 111, 116]`).
    fn add(&mut self, name: &str, value: &str) {
        assert!(value.len() >= 8, "{name} is long enough to scan for");
        let bytes: Vec<String> = value.bytes().map(|b| b.to_string()).collect();
        self.0.push((name.to_owned(), value.to_owned()));
        self.0.push((format!("{name} as bytes"), bytes.join(", ")));
    }

    /// A token, and its last dot-separated part (the signature) on its own.
    fn add_token(&mut self, name: &str, token: &str) {
        self.add(name, token);
        self.add(
            &format!("{name} signature"),
            token.rsplit('.').next().unwrap(),
        );
    }

    /// Each line holding a secret, with every secret in it replaced by its name.
    fn leaks(&self, lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .filter(|line| {
                self.0
                    .iter()
                    .any(|(_, value)| line.contains(value.as_str()))
            })
            .map(|line| {
                self.0.iter().fold(line.clone(), |line, (name, value)| {
                    line.replace(value.as_str(), &format!("<{name}>"))
                })
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_of_a_full_run_carry_no_secret_token_or_personal_data() {
    let db = TestDatabase::create().await;
    let redis = test_redis().await;
    let redis_url = std::env::var("REDIS_URL").unwrap_or_default();
    let pii_keys = format!("scan:{PII_KEY}");
    let whsec = format!("whsec_{WEBHOOK_KEY}");
    let mut env = vec![
        ("KEEL_LOG", "debug"),
        ("KEEL_JWT_SECRET", JWT_SECRET),
        ("KEEL_ACTION_TOKEN_SECRET", ACTION_SECRET),
        ("KEEL_PII_KEYS", pii_keys.as_str()),
        ("KEEL_REVIO_WEBHOOK_SECRET", whsec.as_str()),
        ("KEEL_REVIO_SIM_DELAY_MS", "50"),
        ("KEEL_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
        ("KEEL_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    if let (Some(db), Some(redis)) = (&db, &redis) {
        env.extend([
            ("DATABASE_URL", db.url()),
            ("KEEL_MIGRATE", "true"),
            ("REDIS_URL", redis_url.as_str()),
            ("KEEL_REDIS_PREFIX", redis.pool().prefix()),
        ]);
    }
    let port = free_port();
    let (mut child, mut lines, receiver) = start_server_with(port, &env);
    let node = Node {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
    };
    let mut secrets = Secrets::default();
    for (name, value) in [
        ("the JWT secret", JWT_SECRET),
        ("the action token secret", ACTION_SECRET),
        ("the PII key", PII_KEY),
        ("the webhook secret", whsec.as_str()),
        ("the webhook key", WEBHOOK_KEY),
        ("the admin password", ADMIN_PASSWORD),
        ("the password", PASSWORD),
        ("a wrong password", WRONG_PASSWORD),
    ] {
        secrets.add(name, value);
    }
    for (field, value) in PII {
        secrets.add(field, value);
    }
    run_flow(&node, &mut secrets).await;

    let exit = stop(&mut child);
    assert!(exit.success(), "keel stopped cleanly: {exit:?}");
    lines.extend(receiver.try_iter());
    assert!(
        lines.iter().any(|l| l.contains("request finished")) && lines.len() > 40,
        "the run was logged at debug: {} lines",
        lines.len()
    );
    let leaks = secrets.leaks(&lines);
    assert!(
        leaks.is_empty(),
        "secrets reached the logs:\n{}",
        leaks.join("\n")
    );
}

/// Drives every flow that handles a secret, recording the secrets it sees.
async fn run_flow(node: &Node, secrets: &mut Secrets) {
    let mut registration = json!({"password": PASSWORD, "display_name": "Zanele"});
    for (field, value) in PII {
        registration[field] = json!(value);
    }
    let user = node
        .expect(201, "/api/v1/auth/register", None, None, registration)
        .await;
    let id = user["id"].as_str().unwrap();
    let pair = node.login(PII[0].1, PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap();
    secrets.add_token("the access token", &access);
    secrets.add_token("the refresh token", refresh);
    let rotated = node
        .expect(
            200,
            "/api/v1/auth/refresh",
            None,
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    secrets.add_token(
        "a rotated access token",
        rotated["access_token"].as_str().unwrap(),
    );
    secrets.add_token(
        "a rotated refresh token",
        rotated["refresh_token"].as_str().unwrap(),
    );
    node.expect(
        401,
        "/api/v1/auth/refresh",
        None,
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    node.expect(
        401,
        "/api/v1/auth/login",
        None,
        None,
        json!({"email": PII[0].1, "password": WRONG_PASSWORD}),
    )
    .await;
    let access = node.login(PII[0].1, PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.add_token("the second access token", &access);

    let admin = node.login(ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.add_token("the admin's access token", &admin);
    for (token, query) in [(&access, ""), (&admin, "?reason=support%20ticket%2042")] {
        let response = node
            .get(&format!("/api/v1/users/{id}/pii{query}"), token)
            .await;
        assert_eq!(response.status(), 200, "PII read{query}");
    }

    deposit_settled_by_the_simulator(node, &access).await;
    deposit_settled_by_a_standard_webhook(node, &access, secrets).await;

    let started = node
        .expect(
            201,
            "/api/v1/actions/start",
            Some(&access),
            None,
            json!({"action_type": "COMPLETE_TASK"}),
        )
        .await;
    let action_token = started["action_token"].as_str().unwrap();
    secrets.add_token("the action token", action_token);
    let update = json!({"action_id": started["action_id"], "action_token": action_token});
    node.expect(
        200,
        "/api/v1/score/update",
        Some(&access),
        Some(&Uuid::now_v7().to_string()),
        update,
    )
    .await;
}

/// An idempotent deposit, replayed on its key, settled by the simulator's signed webhook.
async fn deposit_settled_by_the_simulator(node: &Node, access: &str) {
    let key = Uuid::now_v7().to_string();
    let body = json!({"amount_minor": 700, "currency": "ZAR"});
    node.expect(
        201,
        "/api/v1/wallet/deposits",
        Some(access),
        Some(&key),
        body.clone(),
    )
    .await;
    let replay = node
        .post("/api/v1/wallet/deposits", Some(access), Some(&key), &body)
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.available_zar(access).await < 700 {
        assert!(
            Instant::now() < deadline,
            "the simulator's webhook settled the deposit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A deposit settled by a Standard Webhooks delivery signed with the configured secret, after a
/// forged delivery was refused.
async fn deposit_settled_by_a_standard_webhook(node: &Node, access: &str, secrets: &mut Secrets) {
    let key = Uuid::now_v7().to_string();
    let deposit = node
        .expect(
            201,
            "/api/v1/wallet/deposits",
            Some(access),
            Some(&key),
            json!({"amount_minor": 300, "currency": "ZAR"}),
        )
        .await;
    let id = format!("msg_{}", Uuid::now_v7().simple());
    let body = event(
        &id,
        "deposit.succeeded",
        deposit["id"].as_str().unwrap(),
        300,
    );
    let now = chrono::Utc::now().timestamp();
    let signature = StandardWebhookSecret::from_whsec(&format!("whsec_{WEBHOOK_KEY}"))
        .unwrap()
        .sign(&id, now, &body);
    secrets.add("the webhook signature", &signature);
    let forged = format!("v1,{}", STANDARD.encode([7u8; 32]));
    for (signature, status) in [(forged, 401), (signature.clone(), 200)] {
        let response = node
            .client
            .post(format!("{}/api/v1/webhooks/revio", node.base))
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "Standard Webhooks delivery"
        );
    }
    assert_eq!(node.available_zar(access).await, 1_000);
}
