//! Access tokens an attacker can make: another algorithm (HS512 with the real secret, an RS256
//! header over an HS256 MAC), another secret, an expired token, a participant's token with the
//! role changed to admin under the old signature, the token of a deleted account and the token
//! of a demoted admin.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_app_http::state::{ACCESS_TOKEN_TTL_MINUTES, TOKEN_AUDIENCE, TOKEN_ISSUER};
use keel_domain::identity::access_token::AccessTokenSigner;
use ring::hmac;
use serde_json::{Value, json};

use crate::accounts::{account, account_id, admin_token, get_as, spawn_with_admin};
use crate::hostile_inputs::row_counts;
use crate::openapi_walk::keyed_request;
use crate::support::{assert_problem, test_settings};

/// The JWT secret of the test servers.
fn jwt_secret() -> String {
    test_settings(&[]).secrets.jwt_secret.expose().clone()
}

/// Claims of a fresh admin token for `sub`, as the server would write them.
fn admin_claims(sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": sub, "role": "admin", "iat": now, "nbf": now, "exp": now + 600,
        "iss": TOKEN_ISSUER, "aud": TOKEN_AUDIENCE, "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// A JWT with `header` and `claims`, MAC'd with `algorithm` under `secret`.
fn mac_token(header: &Value, claims: &Value, algorithm: hmac::Algorithm, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let tag = hmac::sign(&hmac::Key::new(algorithm, secret), message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// `token` with its payload's role set to admin, keeping the original signature.
fn promoted(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_expired_and_tampered_tokens_are_invalid() {
    let (app, _) = spawn_with_admin(&[]).await;
    let admin = admin_token(&app).await;
    let (_, participant) = account(&app, &admin, "mallory@example.com", "participant").await;
    let sub = account_id(&app, &admin).await;
    let secret = jwt_secret();
    let claims = admin_claims(&sub);
    let expired = AccessTokenSigner::new(
        secret.as_bytes(),
        TOKEN_ISSUER,
        TOKEN_AUDIENCE,
        chrono::Duration::minutes(ACCESS_TOKEN_TTL_MINUTES),
    )
    .unwrap()
    .issue(
        &sub,
        "admin",
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .unwrap()
    .0;
    let forged = [
        (
            "HS512 with the real secret",
            mac_token(
                &json!({"alg": "HS512", "typ": "JWT"}),
                &claims,
                hmac::HMAC_SHA512,
                secret.as_bytes(),
            ),
        ),
        (
            "an RS256 header over an HS256 MAC",
            mac_token(
                &json!({"alg": "RS256", "typ": "JWT"}),
                &claims,
                hmac::HMAC_SHA256,
                secret.as_bytes(),
            ),
        ),
        (
            "another secret",
            mac_token(
                &json!({"alg": "HS256", "typ": "JWT"}),
                &claims,
                hmac::HMAC_SHA256,
                b"not-the-server-secret-but-32-bytes-long",
            ),
        ),
        ("an expired token", expired),
        ("role changed to admin", promoted(&participant)),
    ];
    // The controls: the same route answers the real admin, and refuses the real participant.
    assert_eq!(
        get_as(&app, &admin, "/api/v1/admin/audit").await.status(),
        200
    );
    assert_eq!(
        get_as(&app, &participant, "/api/v1/admin/audit")
            .await
            .status(),
        403
    );
    for (what, token) in forged {
        for path in ["/api/v1/admin/audit", "/api/v1/users/me"] {
            let response = get_as(&app, &token, path).await;
            assert_eq!(response.status(), 401, "{what} on {path}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer error=\"invalid_token\"",
                "{what}"
            );
            assert_problem(response, 401, "invalid-token").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_of_a_deleted_account_creates_nothing() {
    let (app, _) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let admin = admin_token(&app).await;
    let (id, token) = account(&app, &admin, "gone@example.com", "organizer").await;
    let deleted = app
        .client
        .delete(app.url(&format!("/api/v1/users/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let before = row_counts(&app).await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let creating = [
        (
            "/api/v1/wallet/deposits",
            json!({"amount_minor": 500, "currency": "ZAR"}),
        ),
        (
            "/api/v1/actions/start",
            json!({"action_type": "COMPLETE_TASK"}),
        ),
        (
            "/api/v1/events",
            json!({"title": "Ghost event", "starts_at": soon, "ends_at": later}),
        ),
        (
            "/api/v1/competitions",
            json!({"title": "Ghost cup", "capacity": 3, "registration_deadline": soon, "starts_at": later}),
        ),
    ];
    for (path, body) in creating {
        let request = keyed_request(&app, reqwest::Method::POST, path, &token);
        let response = request.json(&body).send().await.unwrap();
        assert_problem(response, 401, "invalid-token").await;
    }
    // Reads only check the token; the account itself is gone.
    let me = get_as(&app, &token, "/api/v1/users/me").await;
    assert_problem(me, 404, "not-found").await;
    assert_eq!(row_counts(&app).await, before, "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_admins_token_changes_nothing_as_admin() {
    let (app, _) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let admin = admin_token(&app).await;
    let (id, token) = account(&app, &admin, "demoted@example.com", "admin").await;
    let (victim, _) = account(&app, &admin, "victim@example.com", "participant").await;
    let patch = |token: &str, target: &str, role: &str| {
        let path = format!("/api/v1/admin/users/{target}");
        keyed_request(&app, reqwest::Method::PATCH, &path, token)
            .json(&json!({"role": role}))
            .send()
    };
    // The control: while an admin, the token changes roles.
    assert_eq!(
        patch(&token, &victim, "organizer").await.unwrap().status(),
        200
    );
    assert_eq!(
        patch(&admin, &id, "participant").await.unwrap().status(),
        200
    );
    // Demoted: the token still says admin, the stored role decides.
    let refused = patch(&token, &victim, "admin").await.unwrap();
    assert_problem(refused, 403, "forbidden").await;
    let role_changes = get_as(&app, &admin, "/api/v1/admin/audit?action=user.role_changed")
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        role_changes, 3,
        "the promotion, the control and the demotion; nothing by the demoted token"
    );
}
